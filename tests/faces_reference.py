"""The demo faces' painter as it was before it painted box by box (engine.demo.faces.render):
every shape over the whole supersampled grid, image-last. The reference the fast painter is
compared with byte for byte (tests/test_demo.py); kept as it was, not for use."""

from __future__ import annotations

import numpy as np

from engine.demo.faces import EYE_Y, SS, H, Identity, W  # noqa: F401
# the shape primitives are the painter's own (unchanged by the box-by-box painting); what this
# reference keeps is the old way of using them: every shape over the whole grid
from engine.demo.faces import _XX, _YY, _ellipse, _soft  # noqa: F401


def _paint(img, mask, color, alpha=1.0):
    m = (mask * alpha)[..., None]
    img *= 1.0 - m
    img += m * np.asarray(color, np.float64)


def render(ident: Identity, rng: np.random.Generator, variation: bool = True) -> np.ndarray:
    """One image of ``ident`` (H×W×3 uint8)."""
    bg1, bg2 = ident.bg1, ident.bg2
    if variation:
        # backgrounds drift between shots so that identity is not told by the backdrop alone
        bg1 = np.clip(bg1 + rng.normal(0, 28, 3), 0, 255)
        bg2 = np.clip(bg2 + rng.normal(0, 28, 3), 0, 255)
        dy, dx = rng.uniform(-1.6, 1.6), rng.uniform(-1.6, 1.6)
        s = rng.uniform(0.95, 1.05)
        gain = rng.uniform(0.78, 1.18)
        light_dir = rng.uniform(-1, 1)
        cast = rng.normal(0, 7, 3)
        noise = rng.uniform(3, 8)
        smile = rng.uniform(-0.4, 1.0)
        blink = rng.random() < 0.06
        mouth_open = rng.random() < 0.25
    else:
        dy = dx = 0.0
        s, gain, light_dir, cast, noise, smile, blink, mouth_open = 1.0, 1.0, 0.0, np.zeros(3), 0.0, 0.3, False, False
    cy, cx = 28.5 + dy, 23.0 + dx
    # face coordinates (scaled around the face centre)
    yy = (_YY - cy) / s + 28.5
    xx = (_XX - cx) / s + 23.0
    img = np.empty(_YY.shape + (3,), np.float64)
    # background
    t = np.cos(ident.bg_dir) * (_XX / W) + np.sin(ident.bg_dir) * (_YY / H)
    if ident.bg_pattern == 1:
        t = 0.5 + 0.5 * np.sign(np.sin(t * 14.0)) * 0.6
    elif ident.bg_pattern == 2:
        t = 0.5 + 0.25 * np.sin(_XX / 4.0) * np.cos(_YY / 5.0) + 0.2 * t
    t = np.clip(t, 0, 1)[..., None]
    img[:] = bg1 * (1 - t) + bg2 * t
    # shoulders / shirt
    _paint(img, _ellipse(58.0, 23.0, 10.0, 24.0, yy, xx), ident.shirt)
    # long hair behind the face
    if ident.hair_style in (1, 4):
        r = 1.25 if ident.hair_style == 1 else 1.18
        back = _ellipse(28.5 if ident.hair_style == 1 else 24.0, 23.0, ident.face_b * r,
                        ident.face_a * (1.3 if ident.hair_style == 4 else 1.22), yy, xx)
        if ident.hair_style == 1:
            back *= (yy < 44).astype(np.float64)
        _paint(img, back, ident.hair)
    # neck and ears
    _paint(img, _ellipse(46.0, 23.0, 6.0, 5.5, yy, xx), ident.skin * 0.85)
    for side in (-1, 1):
        _paint(img, _ellipse(27.0, 23.0 + side * (ident.face_a + 0.3), 3.2, 1.8, yy, xx), ident.skin * 0.92)
    # face: ellipse blended towards a rounded rectangle for a squarer jaw
    fy, fx = (yy - 28.5) / ident.face_b, (xx - 23.0) / ident.face_a
    p = 2.0 + 2.0 * ident.jaw * (yy > 28.5)
    r = (np.abs(fy) ** p + np.abs(fx) ** p) ** (1.0 / p)
    face = _soft((r - 1.0) * ident.face_a)
    _paint(img, face, ident.skin)
    # hair on top
    if ident.hair_style != 3:
        top = _ellipse(28.5 - ident.face_b * 0.25, 23.0, ident.face_b * 0.95, ident.face_a * 1.08, yy, xx)
        cut = _soft(yy - ident.hairline, 1.2)
        if ident.hair_style == 2:  # fringe: lower at one side
            cut = _soft(yy - (ident.hairline + 3.0 + 0.18 * (xx - 23.0)), 1.2)
        if ident.hair_style == 4:
            top = top * (0.85 + 0.15 * np.sin(xx * 2.2) * np.sin(yy * 2.0))
        _paint(img, np.clip(top * cut, 0, 1), ident.hair)
    else:
        _paint(img, _ellipse(10.5, 23.0, 2.5, 8.0, yy, xx) * 0.5, ident.skin * 1.08)
    # eyebrows
    for side in (-1, 1):
        bx = 23.0 + side * ident.eye_dx
        by = EYE_Y - 3.4 + side * ident.brow_tilt * 2.0
        brow = _ellipse(by, bx, 0.55 * ident.brow_thick + 0.35, 2.9, yy, xx)
        _paint(img, brow, ident.hair * 0.6, alpha=ident.brow_dark)
    # eyes
    for side in (-1, 1):
        ex = 23.0 + side * ident.eye_dx
        if blink:
            _paint(img, _ellipse(EYE_Y, ex, 0.45, ident.eye_r * 1.3, yy, xx), ident.skin * 0.45)
            continue
        _paint(img, _ellipse(EYE_Y, ex, ident.eye_r * 0.75, ident.eye_r * 1.4, yy, xx), (245, 245, 240))
        _paint(img, _ellipse(EYE_Y, ex, ident.eye_r * 0.7, ident.eye_r * 0.7, yy, xx), ident.iris)
        _paint(img, _ellipse(EYE_Y, ex, ident.eye_r * 0.32, ident.eye_r * 0.32, yy, xx), (10, 10, 10))
    # nose: a shaded wedge and nostrils
    ny0, ny1 = EYE_Y + 1.5, EYE_Y + 1.5 + ident.nose_len
    wedge = (yy > ny0) & (yy < ny1)
    half = ident.nose_w * (yy - ny0) / ident.nose_len
    nose = wedge * _soft(np.abs(xx - 23.0 - 0.6) - half, 1.0)
    _paint(img, nose, ident.skin * 0.78, alpha=0.55)
    for side in (-1, 1):
        _paint(img, _ellipse(ny1, 23.0 + side * ident.nose_w * 0.6, 0.55, 0.8, yy, xx), ident.skin * 0.45, 0.8)
    # moustache / beard
    if ident.beard == 2:
        chin = face * _soft(-(yy - (ident.mouth_y - 2.0)), 1.5)
        _paint(img, chin, ident.hair * 0.8, alpha=0.85)
    if ident.beard >= 1:
        _paint(img, _ellipse(ident.mouth_y - 2.2, 23.0, 1.1, ident.mouth_w * 1.1, yy, xx), ident.hair * 0.7)
    # mouth: a curved band, open mouths dark inside
    my = ident.mouth_y
    curve = my + smile * 1.6 * ((xx - 23.0) / ident.mouth_w) ** 2 * -1.0 + smile * 0.8
    band = _soft(np.abs(yy - curve) - 0.45 * ident.lip_thick, 0.8) * _soft(np.abs(xx - 23.0) - ident.mouth_w, 0.8)
    _paint(img, band, ident.lip)
    if mouth_open:
        _paint(img, _ellipse(my + 0.6, 23.0, 1.1, ident.mouth_w * 0.55, yy, xx), (60, 20, 25))
    # lighting: gain and a left-right gradient, colour cast
    shade = gain * (1.0 + 0.22 * light_dir * (_XX - W / 2) / W)
    img = img * shade[..., None] + cast
    # downsample, noise, quantise
    img = img.reshape(H, SS, W, SS, 3).mean(axis=(1, 3))
    if noise:
        img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)

