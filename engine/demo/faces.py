"""Synthetic, face-like images at the lab's size (55 high × 47 wide, RGB, 0–255).

Each identity has its own face shape, skin tone, hair (colour and style), eyes, brows,
nose, mouth, facial hair, clothing and background; each image varies the pose (shift,
scale), lighting, expression and sensor noise. Shapes are drawn with soft edges on a
2× grid and averaged down, so they look like crude faces rather than pixel blobs.
Deterministic for a given seed (PCG64 + elementwise float arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


# one shot ----------------------------------------------------------------------------
# Outside a shape's bounding box its coverage is exactly 0, and painting a coverage of 0 leaves
# a pixel exactly as it was: each shape is computed and painted inside its box only, with the
# same elementwise arithmetic, so the images are those of painting every shape over the whole
# grid, byte for byte (tests/faces_reference.py), about five times faster. The canvas is
# channel-first (3 × rows × columns) so that the per-pixel arithmetic runs along whole rows
# rather than three values at a time; the values are the same.
_XW, _YH = _XX / W, _YY / H
_BG_WAVE = 0.5 + 0.25 * np.sin(_XX / 4.0) * np.cos(_YY / 5.0)
_LIGHT_X = _XX - W / 2
_MARGIN = 2  # grid cells added around every box, against the rounding of its bounds


@dataclass
class Pose:
    """What varies between shots of one identity."""
    bg1: np.ndarray
    bg2: np.ndarray
    dy: float = 0.0
    dx: float = 0.0
    s: float = 1.0
    gain: float = 1.0
    light_dir: float = 0.0
    cast: np.ndarray = field(default_factory=lambda: np.zeros(3))
    noise: float = 0.0
    smile: float = 0.3
    blink: bool = False
    mouth_open: bool = False


def draw_pose(ident: Identity, rng: np.random.Generator, variation: bool = True) -> Pose:
    """The shot's variation; the order of the draws is part of the images' definition."""
    if not variation:
        return Pose(ident.bg1, ident.bg2)
    # backgrounds drift between shots so that identity is not told by the backdrop alone
    bg1 = np.clip(ident.bg1 + rng.normal(0, 28, 3), 0, 255)
    bg2 = np.clip(ident.bg2 + rng.normal(0, 28, 3), 0, 255)
    dy, dx = rng.uniform(-1.6, 1.6), rng.uniform(-1.6, 1.6)
    s = rng.uniform(0.95, 1.05)
    gain = rng.uniform(0.78, 1.18)
    light_dir = rng.uniform(-1, 1)
    cast = rng.normal(0, 7, 3)
    noise = rng.uniform(3, 8)
    smile = rng.uniform(-0.4, 1.0)
    blink = bool(rng.random() < 0.06)
    mouth_open = bool(rng.random() < 0.25)
    return Pose(bg1, bg2, dy, dx, s, gain, light_dir, cast, noise, smile, blink, mouth_open)


def _ellipse_bounds(cy, cx, ry, rx) -> tuple[float, float, float, float]:
    """Face-coordinate bounds of an ellipse's coverage: _soft's edge is 0.6, so the coverage
    is 0 from (r - 1)·min(ry, rx) = 0.3 on."""
    grow = 1.0 + 0.3 / min(ry, rx)
    return cy - ry * grow, cy + ry * grow, cx - rx * grow, cx + rx * grow


class _Canvas:
    """The supersampled image of one shot and its face coordinates (scaled around the face
    centre), painted box by box. One canvas serves a whole set: its arrays are written in place,
    since fresh image-sized arrays for every step cost more than the arithmetic here (the
    allocator hands such blocks back to the system and faults them in again)."""

    def __init__(self):
        self.pose = Pose(np.zeros(3), np.zeros(3))
        self.cy, self.cx = 28.5, 23.0
        self.yy, self.xx = np.empty(_YY.shape), np.empty(_YY.shape)
        self.img = np.empty((3,) + _YY.shape)
        self.tmp = np.empty((3,) + _YY.shape)

    def start(self, pose: Pose) -> "_Canvas":
        """A new shot: face coordinates (grid − centre) / s + the model face's centre."""
        self.pose = pose
        self.cy, self.cx = 28.5 + pose.dy, 23.0 + pose.dx
        for grid, centre, face_centre, out in ((_YY, self.cy, 28.5, self.yy), (_XX, self.cx, 23.0, self.xx)):
            np.subtract(grid, centre, out=out)
            np.divide(out, pose.s, out=out)
            np.add(out, face_centre, out=out)
        return self

    def _cells(self, lo: float, hi: float, centre: float, face_centre: float, n: int) -> slice:
        # face coordinate u sits at grid value (u - face_centre)·s + centre, grid value v at index SS·v + 0.5
        a = SS * ((lo - face_centre) * self.pose.s + centre) + 0.5
        b = SS * ((hi - face_centre) * self.pose.s + centre) + 0.5
        i0 = min(n, max(0, int(np.floor(a)) - _MARGIN))
        return slice(i0, min(n, max(i0, int(np.ceil(b)) + _MARGIN + 1)))

    def box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice]:
        """The grid cells whose face coordinates may fall in [y0, y1] × [x0, x1]."""
        return self._cells(y0, y1, self.cy, 28.5, H * SS), self._cells(x0, x1, self.cx, 23.0, W * SS)

    def coords(self, b: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        return self.yy[b], self.xx[b]

    def paint(self, b: tuple[slice, slice], mask: np.ndarray, color, alpha: float = 1.0) -> None:
        """Cover box ``b`` with ``color`` by ``mask × alpha`` (0: the pixel unchanged, 1: the colour)."""
        m = mask * alpha
        img = self.img[:, b[0], b[1]]
        img *= 1.0 - m
        tmp = self.tmp[:, :m.shape[0], :m.shape[1]]
        img += np.multiply(m, np.asarray(color, np.float64)[:, None, None], out=tmp)

    def ellipse(self, cy, cx, ry, rx, color, alpha: float = 1.0, scale: float | None = None) -> None:
        """Paint an ellipse (its coverage × ``scale`` when given)."""
        b = self.box(*_ellipse_bounds(cy, cx, ry, rx))
        m = _ellipse(cy, cx, ry, rx, *self.coords(b))
        self.paint(b, m if scale is None else m * scale, color, alpha)


def _background(cv: _Canvas, ident: Identity) -> None:
    """A gradient, stripes or blobs between the shot's two background colours."""
    t = np.cos(ident.bg_dir) * _XW + np.sin(ident.bg_dir) * _YH
    if ident.bg_pattern == 1:
        t = 0.5 + 0.5 * np.sign(np.sin(t * 14.0)) * 0.6
    elif ident.bg_pattern == 2:
        t = _BG_WAVE + 0.2 * t
    t = np.clip(t, 0, 1)
    np.multiply(cv.pose.bg1[:, None, None], 1 - t, out=cv.img)
    np.multiply(cv.pose.bg2[:, None, None], t, out=cv.tmp)
    cv.img += cv.tmp


def _body(cv: _Canvas, ident: Identity) -> None:
    """Shoulders, long hair behind the face, neck and ears."""
    cv.ellipse(58.0, 23.0, 10.0, 24.0, ident.shirt)
    if ident.hair_style in (1, 4):
        r = 1.25 if ident.hair_style == 1 else 1.18
        cy, ry = (28.5 if ident.hair_style == 1 else 24.0), ident.face_b * r
        rx = ident.face_a * (1.3 if ident.hair_style == 4 else 1.22)
        y0, y1, x0, x1 = _ellipse_bounds(cy, 23.0, ry, rx)
        b = cv.box(y0, min(y1, 44.0) if ident.hair_style == 1 else y1, x0, x1)
        yy, xx = cv.coords(b)
        back = _ellipse(cy, 23.0, ry, rx, yy, xx)
        if ident.hair_style == 1:  # long hair ends at the shoulders
            back *= (yy < 44).astype(np.float64)
        cv.paint(b, back, ident.hair)
    cv.ellipse(46.0, 23.0, 6.0, 5.5, ident.skin * 0.85)
    for side in (-1, 1):
        cv.ellipse(27.0, 23.0 + side * (ident.face_a + 0.3), 3.2, 1.8, ident.skin * 0.92)


def _face(cv: _Canvas, ident: Identity) -> tuple[tuple[slice, slice], np.ndarray]:
    """The face: an ellipse blended towards a rounded rectangle for a squarer jaw; returns its
    box and coverage (the beard follows it)."""
    fa, fb = ident.face_a, ident.face_b
    grow = 1.0 + 0.3 / fa  # a p-norm ≥ the largest coordinate: 0 coverage beyond (1 + 0.3/a) in each
    b = cv.box(28.5 - fb * grow, 28.5 + fb * grow, 23.0 - fa * grow, 23.0 + fa * grow)
    yy, xx = cv.coords(b)
    fy, fx = (yy - 28.5) / fb, (xx - 23.0) / fa
    p = 2.0 + 2.0 * ident.jaw * (yy > 28.5)
    r = (np.abs(fy) ** p + np.abs(fx) ** p) ** (1.0 / p)
    face = _soft((r - 1.0) * fa)
    cv.paint(b, face, ident.skin)
    return b, face


def _hair(cv: _Canvas, ident: Identity) -> None:
    """Hair on top, cut at the hairline (a fringe: lower at one side); bald: a highlight."""
    if ident.hair_style == 3:
        cv.ellipse(10.5, 23.0, 2.5, 8.0, ident.skin * 1.08, scale=0.5)
        return
    cy, ry, rx = 28.5 - ident.face_b * 0.25, ident.face_b * 0.95, ident.face_a * 1.08
    y0, y1, x0, x1 = _ellipse_bounds(cy, 23.0, ry, rx)
    # the cut's coverage is 0 from 0.6 below the hairline on (the fringe's: 3 + 0.18 per column lower)
    low = ident.hairline + 0.6 + (3.0 + 0.18 * (x1 - 23.0) if ident.hair_style == 2 else 0.0)
    b = cv.box(y0, min(y1, low), x0, x1)
    yy, xx = cv.coords(b)
    top = _ellipse(cy, 23.0, ry, rx, yy, xx)
    cut = _soft(yy - ident.hairline, 1.2)
    if ident.hair_style == 2:
        cut = _soft(yy - (ident.hairline + 3.0 + 0.18 * (xx - 23.0)), 1.2)
    if ident.hair_style == 4:
        top = top * (0.85 + 0.15 * np.sin(xx * 2.2) * np.sin(yy * 2.0))
    cv.paint(b, np.clip(top * cut, 0, 1), ident.hair)


def _brows_and_eyes(cv: _Canvas, ident: Identity) -> None:
    for side in (-1, 1):
        bx = 23.0 + side * ident.eye_dx
        by = EYE_Y - 3.4 + side * ident.brow_tilt * 2.0
        cv.ellipse(by, bx, 0.55 * ident.brow_thick + 0.35, 2.9, ident.hair * 0.6, alpha=ident.brow_dark)
    for side in (-1, 1):
        ex, er = 23.0 + side * ident.eye_dx, ident.eye_r
        if cv.pose.blink:
            cv.ellipse(EYE_Y, ex, 0.45, er * 1.3, ident.skin * 0.45)
            continue
        cv.ellipse(EYE_Y, ex, er * 0.75, er * 1.4, (245, 245, 240))
        cv.ellipse(EYE_Y, ex, er * 0.7, er * 0.7, ident.iris)
        cv.ellipse(EYE_Y, ex, er * 0.32, er * 0.32, (10, 10, 10))


def _nose(cv: _Canvas, ident: Identity) -> None:
    """A shaded wedge and nostrils."""
    ny0, ny1 = EYE_Y + 1.5, EYE_Y + 1.5 + ident.nose_len
    b = cv.box(ny0, ny1, 23.6 - ident.nose_w - 0.5, 23.6 + ident.nose_w + 0.5)
    yy, xx = cv.coords(b)
    wedge = (yy > ny0) & (yy < ny1)
    half = ident.nose_w * (yy - ny0) / ident.nose_len
    nose = wedge * _soft(np.abs(xx - 23.0 - 0.6) - half, 1.0)
    cv.paint(b, nose, ident.skin * 0.78, alpha=0.55)
    for side in (-1, 1):
        cv.ellipse(ny1, 23.0 + side * ident.nose_w * 0.6, 0.55, 0.8, ident.skin * 0.45, 0.8)


def _beard_and_mouth(cv: _Canvas, ident: Identity, face_box, face: np.ndarray) -> None:
    """Moustache / beard; the mouth: a curved band, open mouths dark inside."""
    my, mw, smile = ident.mouth_y, ident.mouth_w, cv.pose.smile
    if ident.beard == 2:
        chin = face * _soft(-(cv.yy[face_box] - (my - 2.0)), 1.5)
        cv.paint(face_box, chin, ident.hair * 0.8, alpha=0.85)
    if ident.beard >= 1:
        cv.ellipse(my - 2.2, 23.0, 1.1, mw * 1.1, ident.hair * 0.7)
    # columns within mw + 0.4 of the centre (|x/mw| < 1.1, mw ≥ 4): the curve stays within 1.2·|smile| of my
    reach = 1.3 * abs(smile) + 0.45 * ident.lip_thick + 0.4
    b = cv.box(my - reach, my + reach, 23.0 - mw - 0.4, 23.0 + mw + 0.4)
    yy, xx = cv.coords(b)
    curve = my + smile * 1.6 * ((xx - 23.0) / mw) ** 2 * -1.0 + smile * 0.8
    band = _soft(np.abs(yy - curve) - 0.45 * ident.lip_thick, 0.8) * _soft(np.abs(xx - 23.0) - mw, 0.8)
    cv.paint(b, band, ident.lip)
    if cv.pose.mouth_open:
        cv.ellipse(my + 0.6, 23.0, 1.1, mw * 0.55, (60, 20, 25))


def _finish(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Lighting (gain, a left-right gradient, a colour cast), downsampling, noise, quantising."""
    pose = cv.pose
    shade = pose.gain * (1.0 + 0.22 * pose.light_dir * _LIGHT_X / W)
    big = np.multiply(cv.img, shade, out=cv.img)
    big += np.asarray(pose.cast, np.float64)[:, None, None]
    # the mean of each SS×SS block, summed in the order numpy's mean over (H, SS, W, SS, 3) sums
    total = None
    for i in range(SS):
        for j in range(SS):
            total = big[:, i::SS, j::SS] if total is None else total + big[:, i::SS, j::SS]
    img = np.ascontiguousarray((total / (SS * SS)).transpose(1, 2, 0))
    if pose.noise:
        img = img + rng.normal(0.0, pose.noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render(ident: Identity, rng: np.random.Generator, variation: bool = True,
           canvas: _Canvas | None = None) -> np.ndarray:
    """One image of ``ident`` (H×W×3 uint8); ``canvas`` may be reused from the previous image."""
    cv = (canvas or _Canvas()).start(draw_pose(ident, rng, variation))
    _background(cv, ident)
    _body(cv, ident)
    face_box, face = _face(cv, ident)
    _hair(cv, ident)
    _brows_and_eyes(cv, ident)
    _nose(cv, ident)
    _beard_and_mouth(cv, ident, face_box, face)
    return _finish(cv, rng)


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
    canvas = _Canvas()
    for j in range(per_identity):
        for i in ids:
            out[k] = render(identities[i], rng, canvas=canvas)
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
