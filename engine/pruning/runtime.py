"""The fast sweep's step in one traced graph (:class:`MaskedHeadRunner`). Plain model runs are
:mod:`engine.models.runner`'s."""

from __future__ import annotations

import numpy as np

from engine.core.tfsetup import tf
from engine.models.runner import Runner, _contiguous


class MaskedHeadRunner:
    """One sweep step for a batch of images, inside one traced graph: gather the images'
    cached activations, put the pruned channels at their pruned value, run the head and
    take numpy's argmax (the first maximum). The activations stay a TensorFlow tensor, so a
    step copies no image data through Python and returns one integer per image instead of
    a row of class scores — the same numbers as masking a numpy copy and calling the head.

    ``frontier``: per-image shapes and dtypes of the other tensors the head reads (those
    computed before the cut, such as a skip connection); they are gathered unchanged."""

    def __init__(self, head, fill: np.ndarray, frontier=()):
        t = tf()
        fill_t = t.constant(np.asarray(fill, np.float32))
        self.frontier = [(tuple(int(d) for d in s), np.dtype(d)) for s, d in frontier]
        several = bool(self.frontier)

        def step(acts, idx, keep):
            x = t.where(keep, t.gather(acts[0], idx), fill_t)
            inputs = [x] + [t.gather(a, idx) for a in acts[1:]] if several else x
            out = head(inputs, training=False)
            if isinstance(out, (list, tuple)):
                out = out[0]
            n_cls = t.shape(out)[1]
            top = t.reduce_max(out, axis=1, keepdims=True)
            first = t.reduce_min(t.where(t.equal(out, top), t.range(n_cls)[None, :], n_cls), axis=1)
            # numpy's argmax answers the first NaN; mark such rows for the caller to redo
            return t.where(t.reduce_any(t.math.is_nan(out), axis=1), -1, first)

        # one trace for every dataset and batch size: tracing holds the GIL (a GUI stall)
        shapes = [(tuple(int(d) for d in np.shape(fill)), np.dtype(np.float32))] + self.frontier
        acts_spec = [t.TensorSpec((None,) + s, t.as_dtype(d)) for s, d in shapes]
        spec = [acts_spec, t.TensorSpec((None,), t.int32), t.TensorSpec((int(np.shape(fill)[-1]),), t.bool)]
        self._shapes = shapes
        self._fn = t.function(step, input_signature=spec)
        self._plain = Runner(head)
        self.fill = np.asarray(fill, np.float32)

    def warm_up(self) -> None:
        """Trace the graph now (on one blank image), not in the middle of a sweep: tracing is
        Python work that holds the GIL for ~0.1 s and would stall the window there."""
        t = tf()
        acts = [t.zeros((1,) + s, t.as_dtype(d)) for s, d in self._shapes]
        self._fn(acts, t.zeros((1,), t.int32), t.ones((self.fill.shape[-1],), t.bool))

    def tensor(self, acts):
        """The activations (the cut's array, or a list: the cut's, then the frontier's) as
        tensors the steps read from (one copy, made once)."""
        t = tf()
        arrays = list(acts) if isinstance(acts, (list, tuple)) else [acts]
        return [t.convert_to_tensor(_contiguous(a)) for a in arrays]

    def __call__(self, acts_t, idx: np.ndarray, keep: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.zeros(0, np.int32)
        t = tf()
        acts_t = list(acts_t) if isinstance(acts_t, (list, tuple)) else [acts_t]
        out = self._fn(acts_t, t.constant(idx, t.int32), t.constant(keep, t.bool)).numpy()
        redo = np.flatnonzero(out < 0)
        if len(redo):  # NaN scores: answer exactly as np.argmax on the plain head's output
            xs = [np.asarray(t.gather(a, idx[redo])) for a in acts_t]
            xs[0] = np.where(keep, xs[0], self.fill)
            out[redo] = np.argmax(self._plain(xs if len(xs) > 1 else xs[0]), axis=1)
        return out
