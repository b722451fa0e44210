"""Where the backdoor lives: per-image maps over the input, and their means over a dataset.

Three methods, all at input resolution, non-negative, each image's map scaled to max 1:

* ``channels`` — the chosen channels' activations at the pruned layer's output (before any
  pooling: the lab's ``conv_3`` is 10×8), summed and upsampled bilinearly. Shows what the
  channels that pruning is about look at; one forward pass to the layer.
* ``gradcam`` — Grad-CAM (Selvaraju et al., ICCV 2017) for the model's predicted class at the
  pruned layer: ``ReLU(Σ_k w_k A_k)`` with ``w_k`` the spatial mean of ``∂y_c/∂A_k``. ``y_c``
  is the class score *before* the softmax: on a confidently poisoned image the softmax is
  saturated, its gradient is ~0 and the map would be empty.
* ``occlusion`` — the drop of the predicted class's logit margin (its logit minus the best other
  logit; a probability saturates at 1 and would not drop) when a grey patch hides each
  part of the image. Model-agnostic and the most faithful for a patch trigger, but it costs one
  forward pass per patch position, so it is for a few images, not a dataset.

Everything here is plain TensorFlow/Keras; callers (CLI, window, report) pass batches or
``LabDataset`` files, a ``JobState`` to cancel and a ``progress(done, total)`` callback."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from engine.core.errors import PruneLabError
from engine.core.state import ProgressCallback
from engine.models.loading import to_model_input
from engine.pruning.criteria.difference import difference_scores, top_difference

METHODS = ("channels", "gradcam", "occlusion")
DEFAULT_TOP = 5
GREY = 127.5


# ----------------------------------------------------------------------------- helpers
def _keras_model(model):
    """A Keras model from either a Keras model or an ``engine.models.loading.LoadedModel``."""
    from engine.models.loading import LoadedModel

    return model.model if isinstance(model, LoadedModel) else model


def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map (N×H×W) scaled to max 1; NaN and negative values become 0, empty maps stay 0."""
    m = np.nan_to_num(np.asarray(maps, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    top = m.reshape(len(m), -1).max(axis=1) if m.size else np.zeros(len(m), np.float32)
    scale = np.where(top > 0, top, 1.0).astype(np.float32)
    return (m / scale[:, None, None]).astype(np.float32)


def _tf_normalise(t, m):
    """The same as :func:`normalise`, inside a TensorFlow graph (N×H×W)."""
    m = t.where(t.math.is_finite(m), m, 0.0)
    m = t.nn.relu(m)
    top = t.reduce_max(m, axis=[1, 2], keepdims=True)
    return t.math.divide_no_nan(m, top)


def score_spec(model):
    """Where the pre-softmax class scores come from: the one rule of :mod:`engine.models.logits`."""
    from engine.models.logits import logits_of

    return logits_of(model)


def conv_layer(model, layer: str | None, path=None):
    """The Conv2D to map, checked as :func:`engine.pruning.graph.make_split` checks it (same default:
    the layer the sweep prunes), but without building the split's head: a Keras model that
    starts at an inner tensor re-calls the layers after it, which adds nodes to the user's
    model and changes which layer ``default_layer`` picks afterwards."""
    from engine.pruning.graph import find_layer

    return find_layer(model, layer, path, kinds=("Conv2D",))


# ----------------------------------------------------------------------------- map makers
@dataclass
class MapMaker:
    """Per-image maps of one model at one layer, one method. Traced once (no retracing per
    batch size, so the window does not stall), then called on float32 N×H×W×C batches (0–255).

    ``classes`` (optional, per call) overrides the predicted class for ``gradcam`` and
    ``occlusion``, e.g. to show B′'s evidence for B's answer."""

    model: object
    layer: str | None = None
    method: str = "gradcam"
    channels: Sequence[int] | None = None
    patch: int = 8
    stride: int = 4
    grey: float = GREY
    path: object = None
    input_scale: float | None = None  # None: the LoadedModel's, else raw pixels
    last_classes: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        from engine.core.tfsetup import tf

        t = tf()
        if self.input_scale is None:
            self.input_scale = float(getattr(self.model, "input_scale", 255.0))
        self.model = _keras_model(self.model)
        if self.method not in METHODS:
            raise PruneLabError(self.path, f"unknown map method '{self.method}' (use {', '.join(METHODS)})")
        conv = conv_layer(self.model, self.layer, self.path)
        self.layer = conv.name
        self._input = self.model.inputs[0]  # one tensor, not a list: Keras warns on every call otherwise
        from engine.pruning.graph import layer_channels

        self.n_channels = layer_channels(conv)
        if any(d is None for d in tuple(self._input.shape[1:]) + tuple(conv.output.shape[1:3])):
            raise PruneLabError(self.path, "the model's input size is not fixed; maps need a fixed image size")
        self.input_hw = tuple(int(d) for d in self._input.shape[1:3])
        self.layer_hw = tuple(int(d) for d in conv.output.shape[1:3])
        hwc = tuple(int(d) for d in self._input.shape[1:])
        sig = [t.TensorSpec((None,) + hwc, t.float32)]
        trace = {"channels": self._trace_channels, "gradcam": self._trace_gradcam}.get(self.method,
                                                                                  self._trace_occlusion)
        self._fn = trace(conv, sig)

    def _trace_channels(self, conv, sig):
        """The summed activation of the chosen channels, upsampled to the image."""
        from engine.core.tfsetup import keras, tf

        t, k = tf(), keras()
        chans = self._check_channels(self.channels)
        self.channels = chans
        act = k.Model(self._input, conv.output, name="prunelab_maps_layer")
        idx = t.constant(chans, t.int32)

        def fn(x):
            a = act(x, training=False)
            s = t.reduce_sum(t.gather(a, idx, axis=-1), axis=-1, keepdims=True)
            up = t.image.resize(s, self.input_hw, method="bilinear")[..., 0]
            return _tf_normalise(t, up), t.zeros((t.shape(x)[0],), t.int32)

        return t.function(fn, input_signature=sig)

    def _trace_gradcam(self, conv, sig):
        """Grad-CAM of the explained class's logit at the layer."""
        from engine.core.tfsetup import keras, tf

        t, k = tf(), keras()
        spec = score_spec(self.model)
        both = k.Model(self._input, [conv.output, spec.tensor], name="prunelab_maps_grad")

        def fn(x, cls):
            with t.GradientTape() as tape:
                a, h = both(x, training=False)
                tape.watch(a)
                z = spec.apply(h)
                c = t.where(cls < 0, t.cast(t.argmax(z, axis=1), t.int32), cls)
                y = t.reduce_sum(t.gather(z, c, axis=1, batch_dims=1))
            g = tape.gradient(y, a)  # rows are independent: d(sum)/dA_i = dy_i/dA_i
            w = t.reduce_mean(g, axis=[1, 2], keepdims=True)
            cam = t.nn.relu(t.reduce_sum(w * a, axis=-1, keepdims=True))
            up = t.image.resize(cam, self.input_hw, method="bilinear")[..., 0]
            return _tf_normalise(t, up), c

        return t.function(fn, input_signature=sig + [t.TensorSpec((None,), t.int32)])

    def _trace_occlusion(self, conv, sig):
        """How much the explained class's margin drops with a grey patch over each place."""
        from engine.core.tfsetup import keras, tf

        t, k = tf(), keras()
        spec = score_spec(self.model)
        scorer = k.Model(self._input, spec.tensor, name="prunelab_maps_scores")
        masks = occlusion_masks(self.input_hw, self.patch, self.stride)
        self.n_patches = len(masks)
        m_t = t.constant(masks[..., None])  # P×H×W×1
        cover = t.constant(np.maximum(masks.sum(axis=0), 1.0))  # H×W: patches over each pixel
        grey = float(to_model_input(np.float32(self.grey), self.input_scale))

        def margin(z, c):
            """The explained class's logit minus the best other logit: unlike its softmax
            probability, it does not saturate at 1 on a confident answer (a saturated
            probability drops by exactly 0 wherever the patch is, and the map came out empty)."""
            zc = t.gather(z, c, axis=-1, batch_dims=1)
            others = t.where(t.one_hot(c, t.shape(z)[-1], on_value=True, off_value=False, dtype=t.bool),
                             t.constant(-np.inf, z.dtype), z)
            return zc - t.reduce_max(others, axis=-1)

        def fn(x, cls):
            n = t.shape(x)[0]
            z0 = spec.apply(scorer(x, training=False))
            c = t.where(cls < 0, t.cast(t.argmax(z0, axis=1), t.int32), cls)
            base = margin(z0, c)  # n
            xo = x[:, None] * (1.0 - m_t[None]) + grey * m_t[None]  # n×P×H×W×C
            xo = t.reshape(xo, t.concat([[-1], t.shape(x)[1:]], 0))
            z = spec.apply(scorer(xo, training=False))
            z = t.reshape(z, [n, self.n_patches, -1])
            cp = t.repeat(c, self.n_patches)
            pc = t.reshape(margin(t.reshape(z, [n * self.n_patches, -1]), cp), [n, self.n_patches])
            drop = t.nn.relu(base[:, None] - pc)
            m = t.einsum("np,phw->nhw", drop, m_t[..., 0]) / cover
            return _tf_normalise(t, m), c

        return t.function(fn, input_signature=sig + [t.TensorSpec((None,), t.int32)])

    def _check_channels(self, chans) -> list[int]:
        if chans is None or len(chans) == 0:
            raise PruneLabError(self.path, "the 'channels' map needs a list of channels (or --top K with poisoned data)")
        out = []
        for c in chans:
            c = int(c)
            if not 0 <= c < self.n_channels:
                raise PruneLabError(self.path, f"channel {c} does not exist; layer '{self.layer}' has "
                                    f"channels 0–{self.n_channels - 1}")
            out.append(c)
        return out

    @property
    def batch_size(self) -> int:
        """Images per call that keep the work per call near 256 forward passes."""
        return max(1, 256 // self.n_patches) if self.method == "occlusion" else 256

    def explain(self, x: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Maps for a batch (float32 N×H×W in [0, 1]) and the class each one explains (None
        for ``channels``)."""
        x = np.ascontiguousarray(to_model_input(x, self.input_scale), dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0,) + self.input_hw, np.float32), np.zeros(0, np.int32)
        if self.method == "channels":
            return np.asarray(self._fn(x)[0], np.float32), None
        cls = np.full(len(x), -1, np.int32) if classes is None else np.asarray(classes, np.int32).reshape(-1)
        if len(cls) != len(x):
            raise PruneLabError(self.path, f"{len(cls)} classes given for {len(x)} images")
        m, c = self._fn(x, cls)
        return np.asarray(m, np.float32), np.asarray(c)

    def __call__(self, x: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Maps for a batch; the classes they explain are kept in ``last_classes``."""
        m, self.last_classes = self.explain(x, classes)
        return m


def occlusion_masks(hw: tuple[int, int], patch: int = 8, stride: int = 4) -> np.ndarray:
    """P×H×W float32 masks of every patch position; the last row/column of patches is moved
    to the image's edge so that every pixel is covered."""
    h, w = hw
    if patch < 1 or stride < 1:
        raise PruneLabError(None, "the occlusion patch and stride must be at least 1 pixel")
    ph, pw = min(patch, h), min(patch, w)

    def starts(n, p):
        s = list(range(0, n - p + 1, stride))
        if s[-1] != n - p:
            s.append(n - p)
        return s

    out = []
    for y in starts(h, ph):
        for x in starts(w, pw):
            m = np.zeros((h, w), np.float32)
            m[y:y + ph, x:x + pw] = 1.0
            out.append(m)
    return np.stack(out)


# ----------------------------------------------------------------------------- datasets
def _limited(ds, limit: int | None) -> int:
    return ds.n if limit is None else max(0, min(int(limit), ds.n))


def _read_chunks(ds, batch_size: int, n: int) -> Iterable[tuple[int, np.ndarray]]:
    for start in range(0, n, batch_size):
        yield start, ds.read(start, min(n, start + batch_size))


@contextlib.contextmanager
def _chunks(ds, batch_size: int, limit: int | None):
    """The first ``limit`` images in batches, the next one read in a background thread while
    TensorFlow works on this one (as the sweep reads); the reader stops when the loop ends."""
    from engine.io.prefetch import prefetched

    it = prefetched(_read_chunks(ds, batch_size, _limited(ds, limit)), depth=2)
    try:
        yield it
    finally:
        it.close()


@dataclass
class MapChunk:
    """One batch of a dataset's maps: images ``[start, start + len(maps))``."""

    start: int
    images: np.ndarray  # N×H×W×C float32, 0–255
    maps: np.ndarray  # N×H×W float32 in [0, 1]
    classes: np.ndarray | None  # the class each map explains (None for 'channels')


def iter_maps(maker: MapMaker, ds, *, limit: int | None = None, batch_size: int | None = None,
              state=None, progress: ProgressCallback | None = None) -> Iterator[MapChunk]:
    """The maps of the first ``limit`` images (all by default), a batch at a time: the reader
    runs ahead in a thread, ``state.cancel_point()`` between batches, nothing kept here. The
    window maps a page this way; the CLI streams it into maps.npz."""
    n = _limited(ds, limit)
    bs = batch_size or maker.batch_size
    if progress:
        progress(0, n)  # starts the clock of a progress bar
    with _chunks(ds, bs, n) as chunks:
        for start, x in chunks:
            if state is not None:
                state.cancel_point()
            m, c = maker.explain(x)
            yield MapChunk(start, x, m, c)
            if progress:
                progress(start + len(x), n)


def dataset_maps(maker: MapMaker, ds, *, limit: int | None = None, batch_size: int | None = None,
                 classes: np.ndarray | None = None, state=None, progress: ProgressCallback | None = None) -> np.ndarray:
    """All maps of the first ``limit`` images in one N×H×W float32 array (12,830 lab images:
    133 MB). ``classes`` (an int array of length N), when given, receives the explained class."""
    n = _limited(ds, limit)
    out = np.empty((n,) + maker.input_hw, np.float32)
    for ch in iter_maps(maker, ds, limit=n, batch_size=batch_size, state=state, progress=progress):
        out[ch.start:ch.start + len(ch.maps)] = ch.maps
        if classes is not None and ch.classes is not None:
            classes[ch.start:ch.start + len(ch.maps)] = ch.classes
    return out


@dataclass
class MeanMap:
    """A dataset's mean map (H×W, in [0, 1]) and its mean image (H×W×C, 0–255)."""

    map: np.ndarray
    image: np.ndarray
    n: int
    method: str
    localisation: float | None = None  # mean per-image ratio when a trigger mask was given


class MeanAccumulator:
    """Running sums for a :class:`MeanMap` (and the localisation ratios, given a mask)."""

    def __init__(self, hw: tuple[int, int], method: str, mask: np.ndarray | None = None):
        self.acc = np.zeros(hw, np.float64)
        self.img = None
        self.n = 0
        self.method = method
        self.mask = mask
        self.ratios: list[np.ndarray] = []

    def add(self, images: np.ndarray, maps_: np.ndarray) -> None:
        self.acc += maps_.sum(axis=0)
        s = images.astype(np.float64).sum(axis=0)
        self.img = s if self.img is None else self.img + s
        self.n += len(maps_)
        if self.mask is not None:
            self.ratios.append(localisation(maps_, self.mask))

    def result(self) -> MeanMap:
        loc = None
        if self.mask is not None:
            r = np.concatenate(self.ratios) if self.ratios else np.zeros(0)
            loc = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
        n = max(self.n, 1)
        img = self.img if self.img is not None else np.zeros(self.acc.shape + (3,))
        return MeanMap((self.acc / n).astype(np.float32), (img / n).astype(np.float32), self.n, self.method, loc)


def mean_map(maker: MapMaker, ds, *, limit: int | None = None, batch_size: int | None = None,
             mask: np.ndarray | None = None, state=None, progress: ProgressCallback | None = None) -> MeanMap:
    """The mean of the per-image maps over a dataset, without keeping the maps."""
    if _limited(ds, limit) == 0:
        raise PruneLabError(getattr(ds, "path", None), "holds no images to map")
    acc = MeanAccumulator(maker.input_hw, maker.method, mask)
    for ch in iter_maps(maker, ds, limit=limit, batch_size=batch_size, state=state, progress=progress):
        acc.add(ch.images, ch.maps)
    return acc.result()


def mean_activation_maps(model, layer: str | None, ds, *, limit: int | None = None, batch_size: int = 256,
                         state=None, progress: ProgressCallback | None = None) -> np.ndarray:
    """Each channel's mean activation map at the layer's output over a dataset: h×w×C (the
    lab's conv_3: 10×8×60). Its spatial mean per channel ranks the trigger channels; one
    channel of it, upsampled, is what the Activations tab shows for a clicked channel."""
    from engine.models.runner import Runner
    from engine.core.tfsetup import keras

    scale = float(getattr(model, "input_scale", 255.0))
    km = _keras_model(model)
    conv = conv_layer(km, layer, getattr(ds, "path", None))
    run = Runner(keras().Model(km.inputs[0], conv.output, name="prunelab_maps_layer"))
    n = _limited(ds, limit)
    if n == 0:
        raise PruneLabError(getattr(ds, "path", None), "holds no images")
    acc = None
    with _chunks(ds, batch_size, n) as chunks:
        for start, x in chunks:
            if state is not None:
                state.cancel_point()
            s = run(to_model_input(x, scale)).astype(np.float64).sum(axis=0)
            acc = s if acc is None else acc + s
            if progress:
                progress(start + len(x), n)
    return (acc / n).astype(np.float32)


@dataclass
class TriggerChannels:
    channels: list[int]  # the k largest differences, largest first
    difference: np.ndarray  # per channel: mean activation poisoned − clean
    clean_maps: np.ndarray  # h×w×C mean activation maps
    poisoned_maps: np.ndarray


def trigger_channels(model, layer: str | None, clean_ds, poisoned_ds, k: int = DEFAULT_TOP, *,
                     limit: int | None = None, state=None, progress: ProgressCallback | None = None) -> TriggerChannels:
    """The k channels whose mean activation rises most from clean to poisoned images."""
    if k < 1:
        raise PruneLabError(None, f"--top must be at least 1 (got {k})")
    total = _limited(clean_ds, limit) + _limited(poisoned_ds, limit)

    def sub(offset):
        return (lambda d, n: progress(offset + d, total)) if progress else None

    c = mean_activation_maps(model, layer, clean_ds, limit=limit, state=state, progress=sub(0))
    p = mean_activation_maps(model, layer, poisoned_ds, limit=limit, state=state,
                             progress=sub(_limited(clean_ds, limit)))
    diff = difference_scores({"clean_valid": c.mean(axis=(0, 1)), "poisoned_valid": p.mean(axis=(0, 1))})
    return TriggerChannels(top_difference(diff, k), diff, c, p)


# ----------------------------------------------------------------------------- localisation
def trigger_mask(add_trigger: Callable[[np.ndarray], np.ndarray], hw: tuple[int, int], channels: int = 3,
                 opacity: float = 0.5) -> np.ndarray:
    """Boolean H×W mask of the pixels a trigger function replaces by at least ``opacity``:
    stamp it on a black and a white image; where it covers a pixel fully both come out the
    same, where it leaves it alone they differ by 255."""
    h, w = hw
    black = add_trigger(np.zeros((h, w, channels), np.uint8)).astype(np.float64)
    white = add_trigger(np.full((h, w, channels), 255, np.uint8)).astype(np.float64)
    kept = (white - black).mean(axis=-1) / 255.0  # 1 − the trigger's opacity at each pixel
    return (1.0 - kept) >= opacity


def localisation(maps: np.ndarray, mask: np.ndarray) -> np.ndarray | float:
    """Share of a map's mass inside ``mask`` ÷ the mask's share of the image area: 1 means the
    map is no more on the trigger than anywhere else, 1/area the most it can be. One value per
    map for N×H×W (NaN for an all-zero map), a float for one H×W map."""
    m = np.asarray(maps, np.float64)
    single = m.ndim == 2
    m = m[None] if single else m
    mask = np.asarray(mask, bool)
    if mask.shape != m.shape[1:]:
        raise PruneLabError(None, f"the trigger mask is {mask.shape}, the maps are {m.shape[1:]}")
    area = mask.mean()
    if area == 0:
        raise PruneLabError(None, "the trigger mask is empty")
    total = m.reshape(len(m), -1).sum(axis=1)
    inside = m[:, mask].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(total > 0, inside / np.where(total > 0, total, 1.0) / area, np.nan)
    return float(r[0]) if single else r


def top_difference_channels(mean_activation: dict, k: int = DEFAULT_TOP) -> list[int] | None:
    """The ``k`` channels whose mean activation rises most from clean to poisoned validation
    data, from means a sweep already measured (no forward pass); None without poisoned data."""
    if "clean_valid" not in mean_activation or "poisoned_valid" not in mean_activation:
        return None
    return top_difference(difference_scores(mean_activation), k)
