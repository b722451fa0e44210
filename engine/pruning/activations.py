"""The activation store of a sweep: per dataset, the tensors at the cut (and, for the fast path,
the frontier the head also reads), from the content-keyed cache or from one forward pass; the
mean |activation| per channel that ranks the channels; and the datasets' cache keys, hashed in
the background while the first pass runs."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from engine.core.state import Progress

FRONTIER_KEY = "frontier"  # cache entries of the tensors before the cut that the head reads
PREFIX_BATCH = 256  # small: conv_1's output for 1024 images alone is ~190 MB


def mean_abs_per_channel(a: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Mean |activation| per channel over images and positions, without a full-size temporary
    (any rank: a Dense layer's output has no positions)."""
    total = np.zeros(a.shape[-1], np.float64)
    axes = tuple(range(a.ndim - 1))
    for s in range(0, len(a), chunk):
        total += np.abs(a[s:s + chunk]).sum(axis=axes, dtype=np.float64)
    return total / max(1, int(np.prod(a.shape[:-1])))


class ActivationStore:
    """``load(role)`` yields Progress while it fills ``acts[role]`` (and ``step0[role]``, the
    unpruned answers, on the fast path) and ``mean[role]``; ``means_from_cache()`` fills
    ``mean`` for datasets a previous sweep measured, without their tensors."""

    def __init__(self, model, split, datasets: dict, fast: bool, use_cache: bool, state):
        self.model, self.split, self.datasets = model, split, datasets
        self.fast, self.use_cache, self.state = fast, use_cache, state
        self.keys = {r: self._key(r) for r in datasets}
        self.mean: dict[str, np.ndarray] = {}
        self.acts: dict[str, list] = {}
        self.step0: dict[str, np.ndarray] = {}

    def means_from_cache(self) -> None:
        from engine.io import cache

        for r, k in self.keys.items():
            if isinstance(k, str):
                m = cache.load(cache.derived_key("mean", k))
                if m is not None and m.shape == (self.split.n_channels,):
                    self.mean[r] = np.array(m, np.float64)

    def load(self, role: str) -> Iterator[Progress]:
        from engine.io import cache

        for ev in self._compute(role, self.keys[role]):
            if isinstance(ev, Progress):
                yield ev
            else:
                self.acts[role], p0 = ev
                if p0 is not None:
                    self.step0[role] = p0
                self.mean[role] = mean_abs_per_channel(self.acts[role][0])
                self.keys[role] = self._resolve(self.keys[role])
                if self.keys[role] is not None:
                    cache.store(cache.derived_key("mean", self.keys[role]), self.mean[role])

    def key(self, role: str) -> str | None:
        """The dataset's cache key once known (waits for a background hash)."""
        self.keys[role] = self._resolve(self.keys[role])
        return self.keys[role]

    def _key(self, role: str):
        """The cache key of a dataset's activations: a string when the files were hashed
        before (a cache hit is possible), else a Future computing it in the background while
        the activations are computed (a file nobody hashed cannot be in the cache yet)."""
        from concurrent.futures import ThreadPoolExecutor

        from engine.io import cache

        if not self.use_cache:
            return None
        files = [self.model.path, self.model.weights_path, self.datasets[role].path]

        def key():
            return cache.activation_key(files[:2], self.split.layer, self.split.measured_at, files[2], PREFIX_BATCH,
                                        self.model.input_scale)

        try:
            if all(cache.known_digest(f) for f in files if f):
                return key()
        except OSError:
            return None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prunelab-hash")
        fut = pool.submit(key)
        pool.shutdown(wait=False)
        return fut

    @staticmethod
    def _resolve(key):
        if key is None or isinstance(key, str):
            return key
        try:
            return key.result()
        except OSError:
            return None

    def _compute(self, role: str, key) -> Iterator[Progress | tuple]:
        """Yield progress, then ``(tensors, step0_predictions or None)`` for one dataset:
        ``tensors`` is ``[cut]`` (naive path: for the ranking) or ``[cut, *frontier]`` (fast)."""
        from engine.io import cache
        from engine.models.runner import Runner

        ds = self.datasets[role]
        fast = self.fast
        shapes = self.split.cached_shapes() if fast else self.split.cached_shapes()[:1]
        if isinstance(key, str):
            hits = [cache.load(key)] + [cache.load(cache.derived_key(FRONTIER_KEY, key, i))
                                        for i in range(1, len(shapes))]
            if all(h is not None and h.shape == (ds.n,) + s and h.dtype == d for h, (s, d) in zip(hits, shapes)):
                yield Progress("activations", ds.n, ds.n, f"{role}: activations from cache")
                yield hits, None
                return
        # one pass gives the cached tensors and the unpruned model's answers (step 0)
        run = Runner(self.split.tensors_model(with_outputs=True) if fast else self.split.prefix)
        out = [np.empty((ds.n,) + s, d) for s, d in shapes]
        pred0 = np.empty(ds.n, np.int32) if fast else None
        for start, x in ds.batches(PREFIX_BATCH, prefetch=True):
            self.state.cancel_point()
            y = run(self.model.model_input(x))
            y = y if isinstance(y, list) else [y]
            for arr, part in zip(out, y):
                arr[start:start + len(x)] = part
            if fast:
                pred0[start:start + len(x)] = np.argmax(y[len(shapes)], axis=1)
            yield Progress("activations", start + len(x), ds.n, f"{role}: activations")
        key = self._resolve(key)
        if key is not None:
            cache.store(key, out[0])
            for i, arr in enumerate(out[1:], 1):
                cache.store(cache.derived_key(FRONTIER_KEY, key, i), arr)
        yield out, pred0
