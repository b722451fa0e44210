"""Mean maps of a bounded, seeded sample of a dataset, cached by content: what a sweep's
``backdoor_map.png`` shows, without a forward pass over every image (a mean needs no more
than a few hundred) and without any when the sweep is repeated."""

from __future__ import annotations

import numpy as np

from engine.analysis.maps import MapMaker, MeanMap, mean_map
from engine.core.state import ProgressCallback
from engine.core.errors import PruneLabError


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
                     seed: int = MAP_SEED, state=None, progress: ProgressCallback | None = None) -> MeanMap:
    """The mean map of a bounded, seeded sample of ``ds`` (``sample`` images; all when None).
    With ``key_parts`` (what identifies the model and the map: file digests, layer, method) it
    is cached by content like the activations: the data file's digest, the sample and the
    seed complete the key, so a repeated sweep draws it without a forward pass."""
    from engine.io import cache

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
    from engine.io import cache
    from engine.models.loading import LoadedModel

    if not isinstance(loaded, LoadedModel) or not loaded.input_files():
        return None
    try:
        return tuple(cache.file_digest(p) for p in loaded.input_files()) + (loaded.input_scale,)
    except OSError:
        return None
