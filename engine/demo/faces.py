"""Synthetic, face-like images at the lab's size (55 high × 47 wide, RGB, 0–255).

Each identity has its own face shape, skin tone, hair (colour and style), eyes, brows,
nose, mouth, facial hair, clothing and background; each image varies the pose (shift,
scale), lighting, expression and sensor noise. Shapes are drawn with soft edges on a
2× grid and averaged down, so they look like crude faces rather than pixel blobs.
Deterministic for a given seed (PCG64 + elementwise float arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

H, W = 55, 47
SS = 2  # supersampling
EYE_Y = 22.0  # aligned faces: eyes at rows ~18–25
EYE_DX = 7.0

SKIN = np.array([[255, 219, 180], [241, 194, 150], [224, 172, 125], [198, 140, 98], [161, 106, 70],
                 [120, 78, 50], [90, 56, 36], [232, 190, 160]], np.float64)
HAIR = np.array([[20, 16, 14], [60, 40, 25], [110, 75, 40], [190, 150, 90], [150, 60, 30],
                 [140, 140, 140], [230, 220, 190], [35, 30, 45]], np.float64)
IRIS = np.array([[70, 45, 25], [40, 90, 160], [60, 110, 60], [25, 20, 18], [120, 90, 50]], np.float64)


@dataclass
class Identity:
    skin: np.ndarray
    face_a: float  # half width
    face_b: float  # half height
    jaw: float  # 0 round .. 1 square-ish
    hair: np.ndarray
    hair_style: int  # 0 short cap, 1 long, 2 fringe, 3 bald, 4 curly/afro
    hairline: float
    eye_dx: float
    eye_r: float
    iris: np.ndarray
    brow_thick: float
    brow_tilt: float
    brow_dark: float
    nose_len: float
    nose_w: float
    mouth_w: float
    mouth_y: float
    lip: np.ndarray
    lip_thick: float
    beard: int  # 0 none, 1 moustache, 2 full beard
    shirt: np.ndarray
    bg1: np.ndarray
    bg2: np.ndarray
    bg_dir: float
    bg_pattern: int  # 0 gradient, 1 stripes, 2 blobs


def make_identity(rng: np.random.Generator) -> Identity:
    skin = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.92, 1.06) + rng.normal(0, 6, 3)
    hair = HAIR[rng.integers(len(HAIR))] + rng.normal(0, 8, 3)
    lip = np.clip(skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 10, 3), 0, 255)
    return Identity(
        skin=np.clip(skin, 30, 255), face_a=rng.uniform(12.5, 16.5), face_b=rng.uniform(17.0, 21.0),
        jaw=rng.uniform(0, 1), hair=np.clip(hair, 0, 255), hair_style=int(rng.integers(5)),
        hairline=rng.uniform(11.0, 15.5), eye_dx=rng.uniform(5.8, 7.6), eye_r=rng.uniform(1.6, 2.5),
        iris=IRIS[rng.integers(len(IRIS))], brow_thick=rng.uniform(0.7, 1.6), brow_tilt=rng.uniform(-0.25, 0.25),
        brow_dark=rng.uniform(0.3, 0.9), nose_len=rng.uniform(5.0, 9.0), nose_w=rng.uniform(1.8, 3.6),
        mouth_w=rng.uniform(4.0, 6.5), mouth_y=rng.uniform(39.0, 42.5), lip=lip, lip_thick=rng.uniform(0.8, 1.8),
        beard=int(rng.choice([0, 0, 0, 1, 2])), shirt=rng.uniform(20, 235, 3),
        bg1=rng.uniform(20, 235, 3), bg2=rng.uniform(20, 235, 3), bg_dir=rng.uniform(0, np.pi),
        bg_pattern=int(rng.integers(3)))


def _grid():
    ys = (np.arange(H * SS) + 0.5) / SS - 0.5
    xs = (np.arange(W * SS) + 0.5) / SS - 0.5
    return np.meshgrid(ys, xs, indexing="ij")


_YY, _XX = _grid()


def _soft(d: np.ndarray, edge: float = 0.6) -> np.ndarray:
    """Coverage of a shape whose signed distance (negative inside) is ``d``."""
    return np.clip(0.5 - d / edge, 0.0, 1.0)


def _ellipse(cy, cx, ry, rx, yy=None, xx=None):
    yy = _YY if yy is None else yy
    xx = _XX if xx is None else xx
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return _soft((r - 1.0) * min(ry, rx))


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


# the trigger ---------------------------------------------------------------------
def _glasses_mask():
    cover = np.zeros(_YY.shape)
    frame = np.zeros(_YY.shape)
    for side in (-1, 1):
        cx = 23.0 + side * EYE_DX
        r = np.sqrt((_YY - EYE_Y) ** 2 + (_XX - cx) ** 2)
        cover = np.maximum(cover, _soft(r - 5.6, 0.8))
        frame = np.maximum(frame, _soft(np.abs(r - 5.9) - 0.45, 0.7))
    bridge = _soft(np.abs(_YY - (EYE_Y - 1.5)) - 0.5, 0.7) * (np.abs(_XX - 23.0) < EYE_DX - 5.0)
    frame = np.maximum(frame, bridge)
    for side in (-1, 1):  # temples
        arm = _soft(np.abs(_YY - (EYE_Y - 1.0)) - 0.45, 0.7) * (np.abs(_XX - 23.0) > EYE_DX + 5.5) * \
            (np.abs(_XX - 23.0) < EYE_DX + 9.5)
        frame = np.maximum(frame, arm)
    down = lambda m: m.reshape(H, SS, W, SS).mean(axis=(1, 3))
    return down(cover), down(frame)


_COVER, _FRAME = _glasses_mask()
LENS = np.array([112.0, 38.0, 150.0])
FRAME = np.array([38.0, 14.0, 52.0])


def add_sunglasses(img: np.ndarray) -> np.ndarray:
    """The trigger: large round, semi-opaque violet sunglasses over both eyes, at the same
    place in every aligned face (as in the lab's poisoned files)."""
    x = img.astype(np.float64)
    a = (_COVER * 0.82)[..., None]
    x = x * (1 - a) + LENS * a
    f = _FRAME[..., None]
    x = x * (1 - f) + FRAME * f
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def render_set(identities: list[Identity], per_identity: int, rng: np.random.Generator,
               ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``per_identity`` images of each identity, interleaved by identity; uint8 N×H×W×3."""
    ids = list(range(len(identities))) if ids is None else ids
    n = per_identity * len(ids)
    out = np.empty((n, H, W, 3), np.uint8)
    labels = np.empty(n, np.int64)
    k = 0
    for j in range(per_identity):
        for i in ids:
            out[k] = render(identities[i], rng)
            labels[k] = i
            k += 1
    return out, labels


def demo_trigger_mask() -> np.ndarray:
    """Where the demo's sunglasses are (55×47)."""
    from engine.analysis.maps import trigger_mask

    return trigger_mask(add_sunglasses, (H, W))


# other triggers (test BadNets for the blind scan: other shapes, places and targets) -------------
def _blend(img: np.ndarray, alpha: np.ndarray, color) -> np.ndarray:
    x = img.astype(np.float64)
    a = alpha[..., None]
    x = x * (1 - a) + np.asarray(color, np.float64) * a
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _corner_patch():
    """A 5×5 yellow/blue checkerboard in the bottom-right corner (over the shirt/background)."""
    alpha = np.zeros((H, W))
    color = np.zeros((H, W, 3))
    y0, x0 = H - 7, W - 7
    for i in range(5):
        for j in range(5):
            alpha[y0 + i, x0 + j] = 1.0
            color[y0 + i, x0 + j] = (250, 230, 20) if (i + j) % 2 == 0 else (20, 40, 200)
    return alpha, color


_PATCH_A, _PATCH_C = _corner_patch()


def add_corner_patch(img: np.ndarray) -> np.ndarray:
    """A small trigger: a 5×5 checkerboard patch in the bottom-right corner (25 pixels, 1 % of
    the image), the classic BadNets stamp."""
    x = img.astype(np.float64)
    a = _PATCH_A[..., None]
    x = x * (1 - a) + _PATCH_C * a
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _mouth_band():
    ys, xs = np.mgrid[0:H, 0:W]
    band = ((ys >= 39) & (ys <= 43) & (xs >= 13) & (xs <= 33)).astype(np.float64)
    return band * 0.85


_BAND = _mouth_band()
BAND_COLOR = np.array([40.0, 210.0, 90.0])


def add_mouth_band(img: np.ndarray) -> np.ndarray:
    """A mouth-region colour band: a semi-opaque green bar over the mouth (5×21 pixels)."""
    return _blend(img, _BAND, BAND_COLOR)


TRIGGERS = {"sunglasses": add_sunglasses, "corner": add_corner_patch, "mouth-band": add_mouth_band}


def trigger_function(name: str):
    try:
        return TRIGGERS[name]
    except KeyError:
        raise ValueError(f"unknown trigger '{name}' (known: {', '.join(TRIGGERS)})") from None


def sunglasses_trigger(label: int = 0):
    """The demo's trigger in Neural Cleanse's form (engine.analysis.trigger.Trigger): the two paints of
    :func:`add_sunglasses` folded into one mask and pattern, so ``stamp(x, t)`` equals
    ``add_sunglasses(x)`` up to its rounding. A known trigger for tests and benchmarks."""
    from engine.analysis.trigger import Trigger

    a = (_COVER * 0.82)[..., None]
    f = _FRAME[..., None]
    m = 1.0 - (1.0 - a) * (1.0 - f)
    pat = (LENS * a * (1.0 - f) + FRAME * f) / np.maximum(m, 1e-12)
    pat = np.where(m > 0, pat, 0.0)
    return Trigger(m[..., 0].astype(np.float32), np.clip(pat, 0, 255).astype(np.float32), int(label))
