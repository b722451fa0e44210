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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from engine.errors import PruneLabError

METHODS = ("channels", "gradcam", "occlusion")
DEFAULT_TOP = 5
GREY = 127.5
Progress = Callable[[int, int], None]


# ----------------------------------------------------------------------------- helpers
def _keras_model(model):
    """A Keras model from either a Keras model or an ``engine.models.LoadedModel``."""
    from engine.models import LoadedModel

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
    """Where the pre-softmax class scores come from: the one rule of :mod:`engine.logits`."""
    from engine.logits import logits_of

    return logits_of(model)


def conv_layer(model, layer: str | None, path=None):
    """The Conv2D to map, checked as :func:`engine.split.make_split` checks it (same default:
    the layer the sweep prunes), but without building the split's head: a Keras model that
    starts at an inner tensor re-calls the layers after it, which adds nodes to the user's
    model and changes which layer ``default_layer`` picks afterwards."""
    from engine.split import find_layer

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
    last_classes: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        from engine.tfsetup import keras, tf

        t, k = tf(), keras()
        self.model = _keras_model(self.model)
        if self.method not in METHODS:
            raise PruneLabError(self.path, f"unknown map method '{self.method}' (use {', '.join(METHODS)})")
        conv = conv_layer(self.model, self.layer, self.path)
        self.layer = conv.name
        self._input = self.model.inputs[0]  # one tensor, not a list: Keras warns on every call otherwise
        from engine.split import layer_channels

        self.n_channels = layer_channels(conv)
        if any(d is None for d in tuple(self._input.shape[1:]) + tuple(conv.output.shape[1:3])):
            raise PruneLabError(self.path, "the model's input size is not fixed; maps need a fixed image size")
        self.input_hw = tuple(int(d) for d in self._input.shape[1:3])
        self.layer_hw = tuple(int(d) for d in conv.output.shape[1:3])
        hwc = tuple(int(d) for d in self._input.shape[1:])
        sig = [t.TensorSpec((None,) + hwc, t.float32)]
        if self.method == "channels":
            chans = self._check_channels(self.channels)
            self.channels = chans
            act = k.Model(self._input, conv.output, name="prunelab_maps_layer")
            idx = t.constant(chans, t.int32)

            def fn(x):
                a = act(x, training=False)
                s = t.reduce_sum(t.gather(a, idx, axis=-1), axis=-1, keepdims=True)
                up = t.image.resize(s, self.input_hw, method="bilinear")[..., 0]
                return _tf_normalise(t, up), t.zeros((t.shape(x)[0],), t.int32)

            self._fn = t.function(fn, input_signature=sig)
            return
        spec = score_spec(self.model)
        tensor = spec.tensor
        if self.method == "gradcam":
            both = k.Model(self._input, [conv.output, tensor], name="prunelab_maps_grad")

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

            self._fn = t.function(fn, input_signature=sig + [t.TensorSpec((None,), t.int32)])
            return
        # occlusion
        scorer = k.Model(self._input, tensor, name="prunelab_maps_scores")
        masks = occlusion_masks(self.input_hw, self.patch, self.stride)
        self.n_patches = len(masks)
        m_t = t.constant(masks[..., None])  # P×H×W×1
        cover = t.constant(np.maximum(masks.sum(axis=0), 1.0))  # H×W: patches over each pixel
        grey = float(self.grey)

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

        self._fn = t.function(fn, input_signature=sig + [t.TensorSpec((None,), t.int32)])

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
        x = np.ascontiguousarray(x, dtype=np.float32)
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
    from engine.prefetch import prefetched

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
              state=None, progress: Progress | None = None) -> Iterator[MapChunk]:
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
                 classes: np.ndarray | None = None, state=None, progress: Progress | None = None) -> np.ndarray:
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
             mask: np.ndarray | None = None, state=None, progress: Progress | None = None) -> MeanMap:
    """The mean of the per-image maps over a dataset, without keeping the maps."""
    if _limited(ds, limit) == 0:
        raise PruneLabError(getattr(ds, "path", None), "holds no images to map")
    acc = MeanAccumulator(maker.input_hw, maker.method, mask)
    for ch in iter_maps(maker, ds, limit=limit, batch_size=batch_size, state=state, progress=progress):
        acc.add(ch.images, ch.maps)
    return acc.result()


def mean_activation_maps(model, layer: str | None, ds, *, limit: int | None = None, batch_size: int = 256,
                         state=None, progress: Progress | None = None) -> np.ndarray:
    """Each channel's mean activation map at the layer's output over a dataset: h×w×C (the
    lab's conv_3: 10×8×60). Its spatial mean per channel ranks the trigger channels; one
    channel of it, upsampled, is what the Activations tab shows for a clicked channel."""
    from engine.runtime import Runner
    from engine.tfsetup import keras

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
            s = run(x).astype(np.float64).sum(axis=0)
            acc = s if acc is None else acc + s
            if progress:
                progress(start + len(x), n)
    return (acc / n).astype(np.float32)


def upsample(maps: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of h×w or N×h×w maps to H×W (as the map makers do)."""
    from engine.tfsetup import tf

    m = np.asarray(maps, np.float32)
    single = m.ndim == 2
    m = m[None] if single else m
    up = np.asarray(tf().image.resize(m[..., None], tuple(hw), method="bilinear"))[..., 0]
    return up[0] if single else up


@dataclass
class TriggerChannels:
    channels: list[int]  # the k largest differences, largest first
    difference: np.ndarray  # per channel: mean activation poisoned − clean
    clean_maps: np.ndarray  # h×w×C mean activation maps
    poisoned_maps: np.ndarray


def trigger_channels(model, layer: str | None, clean_ds, poisoned_ds, k: int = DEFAULT_TOP, *,
                     limit: int | None = None, state=None, progress: Progress | None = None) -> TriggerChannels:
    """The k channels whose mean activation rises most from clean to poisoned images."""
    if k < 1:
        raise PruneLabError(None, f"--top must be at least 1 (got {k})")
    total = _limited(clean_ds, limit) + _limited(poisoned_ds, limit)

    def sub(offset):
        return (lambda d, n: progress(offset + d, total)) if progress else None

    c = mean_activation_maps(model, layer, clean_ds, limit=limit, state=state, progress=sub(0))
    p = mean_activation_maps(model, layer, poisoned_ds, limit=limit, state=state,
                             progress=sub(_limited(clean_ds, limit)))
    diff = p.mean(axis=(0, 1)) - c.mean(axis=(0, 1))
    order = np.argsort(-diff, kind="stable")[: min(k, len(diff))]
    return TriggerChannels([int(i) for i in order], diff, c, p)


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


def demo_trigger_mask() -> np.ndarray:
    """Where the demo's sunglasses are (55×47)."""
    from engine.faces import H, W, add_sunglasses

    return trigger_mask(add_sunglasses, (H, W))


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


# ----------------------------------------------------------------------------- figures
def _overlay(ax, image, m, vmax, cmap="inferno"):
    grey = np.asarray(image, np.float32)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
    return ax.imshow(m, cmap=cmap, vmin=0, vmax=vmax, alpha=0.6, interpolation="bilinear")


def backdoor_map_figure(clean: MeanMap, poisoned: MeanMap, title: str | None = None,
                        names: tuple[str, str] = ("clean", "poisoned")):
    """Mean maps side by side (clean | poisoned), over the mean image, with one colour scale."""
    from engine.report import _plt

    plt = _plt()
    vmax = float(max(clean.map.max(), poisoned.map.max(), 1e-6))
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 4.6), layout="constrained")
    im = None
    for ax, mm, name in ((axes[0], clean, names[0]), (axes[1], poisoned, names[1])):
        im = _overlay(ax, mm.image, mm.map, vmax)
        sub = f"{name} ({mm.n:,} images)"
        if mm.localisation is not None and np.isfinite(mm.localisation):
            sub += f"\non the trigger: {mm.localisation:.2f}×"
        ax.set_title(sub, fontsize=9)
        ax.axis("off")
    cb = fig.colorbar(im, ax=list(axes), fraction=0.04, pad=0.03)
    cb.set_label("mean map (each image's map scaled to max 1)", fontsize=8)
    fig.suptitle(title or f"Where the model looks: mean {METHOD_TITLES[clean.method]}", fontsize=10)
    return fig


METHOD_TITLES = {"channels": "activation of the chosen channels", "gradcam": "Grad-CAM map",
                 "occlusion": "occlusion map"}


MAP_SAMPLE = 512  # images per set behind a sweep's backdoor_map.png (a mean needs no more)
MAP_SEED = 0


def sample_indices(n: int, size: int | None = MAP_SAMPLE, seed: int = MAP_SEED) -> np.ndarray:
    """Up to ``size`` of ``n`` image indices, drawn without replacement by a seeded generator,
    in file order (all of them when ``size`` is None or ``n`` ≤ ``size``)."""
    if size is None or n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, int(size), replace=False))


class _Sample:
    """A dataset's sampled images, in memory, read like a dataset by :func:`iter_maps`."""

    def __init__(self, ds, idx: np.ndarray):
        self.path = getattr(ds, "path", None)
        self.x = ds.take(idx) if len(idx) != ds.n else ds.read(0, ds.n)
        self.n = len(self.x)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.x[start:stop]


def sampled_mean_map(maker: MapMaker, ds, *, key_parts=None, sample: int | None = MAP_SAMPLE,
                     seed: int = MAP_SEED, state=None, progress: Progress | None = None) -> MeanMap:
    """The mean map of a bounded, seeded sample of ``ds`` (``sample`` images; all when None).
    With ``key_parts`` (what identifies the model and the map: file digests, layer, method) it
    is cached by content like the activations: the data file's digest, the sample and the
    seed complete the key, so a repeated sweep draws it without a forward pass."""
    from engine import cache

    idx = sample_indices(ds.n, sample, seed)
    if len(idx) == 0:
        raise PruneLabError(getattr(ds, "path", None), "holds no images to map")
    key = None
    if key_parts is not None:
        try:
            key = cache.derived_key("mean_map", cache.CACHE_VERSION, *key_parts, maker.layer, maker.method,
                                    tuple(maker.channels or ()), cache.file_digest(ds.path), len(idx), ds.n, seed)
        except (OSError, TypeError):
            key = None
    if key is not None:
        hit = cache.load(key)
        if hit is not None and hit.shape[:2] == maker.input_hw and hit.ndim == 3:
            if progress:
                progress(len(idx), len(idx))
            return MeanMap(np.array(hit[..., 0], np.float32), np.array(hit[..., 1:], np.float32), len(idx),
                           maker.method)
    mm = mean_map(maker, _Sample(ds, idx), state=state, progress=progress)
    if key is not None:
        cache.store(key, np.concatenate([mm.map[..., None], mm.image.reshape(mm.map.shape + (-1,))],
                                        axis=-1).astype(np.float32))
    return mm


def model_key_parts(loaded) -> tuple | None:
    """What identifies a :class:`LoadedModel`'s weights for the map cache (file digests and
    the input scale); None for a model not read from files (nothing to key it by)."""
    from engine import cache
    from engine.models import LoadedModel

    if not isinstance(loaded, LoadedModel) or not loaded.input_files():
        return None
    try:
        return tuple(cache.file_digest(p) for p in loaded.input_files()) + (loaded.input_scale,)
    except OSError:
        return None


def write_backdoor_map(model, layer: str | None, clean_ds, poisoned_ds, path: str | os.PathLike,
                       state=None, *, method: str = "gradcam", channels: Sequence[int] | None = None,
                       limit: int | None = None, mask: np.ndarray | None = None,
                       names: tuple[str, str] = ("clean validation", "poisoned validation"),
                       progress: Progress | None = None, sample: int | None = None,
                       use_cache: bool = False) -> Path:
    """``backdoor_map.png``: mean maps over clean and poisoned (validation) data, side by side,
    written atomically. ``method='channels'`` without ``channels`` uses the top trigger channels.
    ``sample``: map a seeded sample of that many images per set (see :func:`sampled_mean_map`),
    cached by content when ``use_cache`` (and ``model`` is a LoadedModel read from files)."""
    from engine.report import save_figure

    km = _keras_model(model)
    if method == "channels" and not channels:
        channels = trigger_channels(km, layer, clean_ds, poisoned_ds, limit=limit, state=state).channels
    maker = MapMaker(km, layer, method, channels)
    if sample is not None and mask is None and limit is None:
        parts = model_key_parts(model) if use_cache else None
        nc = len(sample_indices(clean_ds.n, sample))
        both = nc + len(sample_indices(poisoned_ds.n, sample))
        step = (lambda off: (lambda d, n: progress(off + d, both))) if progress else (lambda off: None)
        c = sampled_mean_map(maker, clean_ds, key_parts=parts, sample=sample, state=state, progress=step(0))
        p = sampled_mean_map(maker, poisoned_ds, key_parts=parts, sample=sample, state=state, progress=step(nc))
    else:
        nc, npz = _limited(clean_ds, limit), _limited(poisoned_ds, limit)
        step = (lambda off: (lambda d, n: progress(off + d, nc + npz))) if progress else (lambda off: None)
        c = mean_map(maker, clean_ds, limit=limit, mask=mask, state=state, progress=step(0))
        p = mean_map(maker, poisoned_ds, limit=limit, mask=mask, state=state, progress=step(nc))
    title = f"Where {maker.layer} looks: mean {METHOD_TITLES[method]}"
    if method == "channels":
        title += f" (channels {', '.join(map(str, maker.channels))})"
    fig = backdoor_map_figure(c, p, title, names)
    path = Path(path)
    save_figure(fig, path)
    return path


# ----------------------------------------------------------------------------- the CLI
GRID_IMAGES = 20


def parse_channels(text: str | None) -> list[int] | None:
    """``"7,11"`` → ``[7, 11]``; a one-line error for anything else."""
    if text is None:
        return None
    try:
        out = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise PruneLabError(None, f"--channels must be comma-separated channel numbers (got '{text}')") from None
    if not out:
        raise PruneLabError(None, "--channels is empty")
    return out


def array_names(paths: Sequence[Path]) -> list[str]:
    """One npz/PNG name per data file: its stem, made unique with the folder name
    (the lab's cl/valid.h5 and bd/valid.h5 → cl_valid, bd_valid) and, failing that, a number."""
    import re

    def clean(s):
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._") or "data"

    stems = [clean(Path(p).stem) for p in paths]
    names = [f"{clean(Path(p).parent.name)}_{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 and names.count(n) == 1 else f"{n}_{seen[n]}")
    return out


def mean_figure(mm: MeanMap, title: str):
    """One dataset's mean map over its mean image, with a colour scale."""
    from engine.report import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 4.6), layout="constrained")
    im = _overlay(ax, mm.image, mm.map, float(max(mm.map.max(), 1e-6)))
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03).set_label("mean map", fontsize=8)
    return fig


def grid_figure(images: np.ndarray, maps_: np.ndarray, labels: np.ndarray, classes: np.ndarray | None, title: str):
    """The first images, each beside its map (over the image), with label → explained class."""
    from engine.report import _plt

    plt = _plt()
    n = len(images)
    cols = 5
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 0.95 + 0.8, rows * 1.3 + 0.4), squeeze=False,
                             layout="constrained")
    im = None
    for i in range(rows * cols):
        a, b = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        a.axis("off")
        b.axis("off")
        if i >= n:
            continue
        a.imshow(np.clip(images[i], 0, 255).astype(np.uint8))
        im = b.imshow(np.clip(images[i], 0, 255).astype(np.uint8).mean(axis=-1), cmap="gray", vmin=0, vmax=255)
        im = b.imshow(maps_[i], cmap="inferno", vmin=0, vmax=1, alpha=0.6, interpolation="bilinear")
        txt = f"#{i} label {labels[i]}" + (f" → {classes[i]}" if classes is not None else "")
        a.set_title(txt, fontsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
    fig.suptitle(title, fontsize=9)
    return fig


@contextlib.contextmanager
def _npz_entry(zf, name: str, shape: tuple[int, ...]):
    """Stream one float32 array into an open .npz (a zip of .npy files) chunk by chunk, so a
    file's maps never sit in memory all at once. Yields ``write(rows)``."""
    written = [0]
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_2_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": shape})

        def write(rows: np.ndarray) -> None:
            rows = np.ascontiguousarray(rows, dtype="<f4")
            fh.write(rows.tobytes())
            written[0] += len(rows)

        yield write
    if written[0] != shape[0]:
        raise PruneLabError(None, f"internal: wrote {written[0]} of {shape[0]} maps for {name}")


def run_maps_cli(args, bar) -> int:
    """``prunelab maps``: check every input first, then map each --data file into --out."""
    import zipfile

    from engine import atomic
    from engine.data import open_dataset
    from engine.outputs import staged_output
    from engine.report import save_figure

    from engine.outputs import check_output_folder

    check_output_folder(args.out, "maps")
    if args.limit is not None and args.limit < 1:
        raise PruneLabError(None, f"--limit must be at least 1 (got {args.limit})")
    chans = parse_channels(args.channels)
    if args.method != "channels" and (chans is not None or args.top is not None):
        raise PruneLabError(None, "--channels and --top only apply to --method channels")
    if args.method == "channels" and chans is None and args.poisoned is None:
        raise PruneLabError(None, "--method channels needs --channels 7,11 or --top K --poisoned F")
    if args.top is not None and args.top < 1:
        raise PruneLabError(None, f"--top must be at least 1 (got {args.top})")
    if args.poisoned is not None and (args.method != "channels" or chans is not None):
        raise PruneLabError(args.poisoned, "--poisoned only picks the --top channels for --method channels "
                            "(not with --channels)")
    datasets = [open_dataset(p) for p in args.data]  # bad data fails before TensorFlow starts
    poisoned = open_dataset(args.poisoned) if args.poisoned is not None and chans is None else None
    from engine.cli import open_model

    lm = open_model(args)
    for d in datasets + ([poisoned] if poisoned else []):
        d.expect(lm.input_hwc)
    inputs = lm.input_files() + [d.path for d in datasets] + ([poisoned.path] if poisoned else [])
    atomic.protect(inputs)
    if poisoned is not None:
        ppath = Path(poisoned.path).resolve()
        clean = next((d for d in datasets if Path(d.path).resolve() != ppath), None)
        if clean is None:
            raise PruneLabError(args.poisoned, "--top compares it with clean data: give a clean --data file too")
        tc = trigger_channels(lm, args.layer, clean, poisoned, args.top or DEFAULT_TOP, limit=args.limit,
                              progress=lambda d, n: bar.update("channels", d, n, "ranking channels"))
        bar.close()
        chans = tc.channels
    maker = MapMaker(lm, args.layer, args.method, chans, path=lm.path)
    names = array_names([d.path for d in datasets])
    how = args.method if args.method == "occlusion" else f"{args.method} at {maker.layer}"
    how += f" (channels {','.join(map(str, chans))})" if chans else ""
    with staged_output(args.out, inputs, "maps") as stage:
        with zipfile.ZipFile(stage / "maps.npz", "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for ds, name in zip(datasets, names):
                n = _limited(ds, args.limit)
                acc = MeanAccumulator(maker.input_hw, args.method)
                first: list[MapChunk] = []
                peak = 0.0
                with _npz_entry(zf, name, (n,) + maker.input_hw) as write:
                    for ch in iter_maps(maker, ds, limit=n,
                                        progress=lambda d, t, name=name: bar.update("maps", d, t, name)):
                        write(ch.maps)
                        acc.add(ch.images, ch.maps)
                        peak = max(peak, float(ch.maps.max())) if len(ch.maps) else peak
                        if ch.start < GRID_IMAGES:
                            first.append(ch)
                bar.close()
                if peak == 0.0:
                    from engine.errors import warn

                    warn(ds.path, f"every {args.method} map is zero: nothing in these images moves the "
                         "model's answer at this layer")
                k = min(GRID_IMAGES, n)
                x = np.concatenate([c.images for c in first])[:k]
                m = np.concatenate([c.maps for c in first])[:k]
                cls = None if args.method == "channels" else np.concatenate([c.classes for c in first])[:k]
                save_figure(grid_figure(x, m, ds.labels[:k], cls, f"{Path(ds.path).name}: {how}"),
                            stage / f"{name}_grid.png")
                save_figure(mean_figure(acc.result(), f"{Path(ds.path).name}: mean {how}\n{n:,} images"),
                            stage / f"{name}_mean.png")
    if not args.quiet:
        for ds, name in zip(datasets, names):
            print(f"{ds.path}: {name} in maps.npz, {name}_mean.png, {name}_grid.png")
        print(f"wrote {args.out} ({how})")
    return 0


def top_difference_channels(mean_activation: dict, k: int = DEFAULT_TOP) -> list[int] | None:
    """The ``k`` channels whose mean activation rises most from clean to poisoned validation
    data, from means a sweep already measured (no forward pass); None without poisoned data."""
    if "clean_valid" not in mean_activation or "poisoned_valid" not in mean_activation:
        return None
    diff = np.asarray(mean_activation["poisoned_valid"], float) - np.asarray(mean_activation["clean_valid"], float)
    return [int(c) for c in np.argsort(-diff, kind="stable")[:k]]
