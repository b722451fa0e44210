"""Running Keras models on numpy batches the way ``Model.predict`` does (one traced graph),
so every path in PruneLab computes bit-identical numbers for the same image."""

from __future__ import annotations

import weakref

import numpy as np

from engine.tfsetup import tf


class Runner:
    """``model(x)`` through one ``tf.function``; rows do not depend on batch composition."""

    def __init__(self, model):
        t = tf()
        self.model = model
        self._fn = t.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            shape = tuple(int(d) for d in self.model.outputs[0].shape[1:])
            return np.zeros((0,) + shape, np.float32)
        out = self._fn(np.ascontiguousarray(x, dtype=np.float32))
        if isinstance(out, (list, tuple)):  # several outputs (or a Keras-2 config's list of one)
            outs = [np.asarray(o) for o in out]
            return outs[0] if len(outs) == 1 else outs
        return np.asarray(out)

    def predict_labels(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """argmax class of every row, batched."""
        out = np.empty(len(x), np.int32)
        for s in range(0, len(x), batch_size):
            out[s:s + batch_size] = np.argmax(self(x[s:s + batch_size]), axis=1)
        return out


_runners: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def runner_for(model) -> Runner:
    """One Runner per model, so its graph is traced once, not once per dataset."""
    run = _runners.get(model)
    if run is None:
        run = _runners[model] = Runner(model)
    return run


def predict_dataset_labels(model, dataset, batch_size: int = 256, state=None) -> np.ndarray:
    """argmax predictions of ``model`` over a whole LabDataset, read in chunks."""
    run = runner_for(model)
    out = np.empty(dataset.n, np.int32)
    for start, x in dataset.batches(batch_size):
        if state is not None:
            state.checkpoint()
        out[start:start + len(x)] = np.argmax(run(x), axis=1)
    return out
