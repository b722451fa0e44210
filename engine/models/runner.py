"""Running Keras models on numpy batches the way ``Model.predict`` does (one traced graph), so
every path in PruneLab computes bit-identical numbers for the same image."""

from __future__ import annotations

import numpy as np

from engine.core.tfsetup import tf


class Runner:
    """``model(x)`` through one ``tf.function``; rows do not depend on batch composition."""

    def __init__(self, model):
        t = tf()
        self.model = model
        self._fn = t.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, x) -> np.ndarray:
        """``x``: a batch, or a list of batches for a model with several inputs."""
        if len(x[0] if isinstance(x, (list, tuple)) else x) == 0:
            shape = tuple(int(d) for d in self.model.outputs[0].shape[1:])
            return np.zeros((0,) + shape, np.float32)
        if isinstance(x, (list, tuple)):
            out = self._fn([_contiguous(a) for a in x])
        else:
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


def _contiguous(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(a, dtype=np.float32 if a.dtype.kind == "f" else a.dtype)


_RUNNER_ATTR = "_prunelab_runner"


def runner_for(model) -> Runner:
    """One Runner per model, so its graph is traced once, not once per dataset.

    The runner is kept on the model object itself: a runner holds its model (its traced function
    calls it), so a cache beside the model (even a WeakKeyDictionary, whose values are strong)
    would keep every model ever run alive; on the model, the pair goes when the model does."""
    run = getattr(model, _RUNNER_ATTR, None)
    if run is None or run.model is not model:
        run = Runner(model)
        object.__setattr__(model, _RUNNER_ATTR, run)  # past Keras's attribute tracking: not a layer or weight
    return run


def predict_dataset_labels(model, dataset, batch_size: int = 256, state=None,
                           input_scale: float = 255.0) -> np.ndarray:
    """argmax predictions of ``model`` (a Keras model, or a LoadedModel whose input scale then
    applies) over a whole dataset of 0–255 images, read in chunks."""
    from engine.models.loading import to_model_input

    if hasattr(model, "input_scale") and hasattr(model, "model"):
        model, input_scale = model.model, model.input_scale
    run = runner_for(model)
    out = np.empty(dataset.n, np.int32)
    for start, x in dataset.batches(batch_size, prefetch=True):
        if state is not None:
            state.cancel_point()
        out[start:start + len(x)] = np.argmax(run(to_model_input(x, input_scale)), axis=1)
    return out


def warm_up(loaded) -> None:
    """Run a just-opened model once on two blank images. A process's first traced TensorFlow
    function costs about 0.2 s with the GIL held, and the window's thread cannot draw meanwhile
    (measured: benchmarks/gui_responsiveness.py); paid here, while the model opens, it no longer
    freezes the curves when a sweep starts. Best effort: a model that cannot run on blanks is
    left for the real data to report."""
    try:
        x = np.zeros((2,) + tuple(loaded.input_hwc), np.float32)
        runner_for(loaded.model)(loaded.model_input(x))
    except Exception:  # noqa: BLE001 - a warm-up never refuses a model
        pass
