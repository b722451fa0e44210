"""Pruning's domain rules, each written once: zeroing channels, B′ (the pruned network), G (the
detector with N+1 outputs) and the evaluation of B′ and G from their predicted labels.

G is built from built-in layers and Keras ops only, so a fresh Python process with nothing
but TensorFlow/Keras loads it in safe mode and gets the same labels (the lab's subclassed
G could not be saved). G answers B's class where B and B' agree and class N where they
disagree; where they agree its scores are B's (normalised), so users keep B's confidence."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.io.atomic import atomic_path
from engine.core.errors import PruneLabError
from engine.io.hdf5 import short_reason
from engine.models.loading import GOODNET_NAME

MODEL_SUFFIXES = (".keras", ".h5")


def zeroed_weights(weights: list[np.ndarray], channels) -> list[np.ndarray]:
    """Copies of a layer's [kernel, bias] with the output ``channels`` zeroed: the kernel's last
    axis and the bias. This is what "pruning a channel" means everywhere in PruneLab."""
    ws = [np.array(w, copy=True) for w in weights]
    idx = np.asarray(list(channels), dtype=np.int64)
    if idx.size:
        ws[0][..., idx] = 0
        if len(ws) > 1:
            ws[1][idx] = 0
    return ws


def channel_mask(n_channels: int, channels) -> np.ndarray:
    """1.0 for kept channels, 0.0 for pruned ones (multiplying by it re-applies the pruning)."""
    mask = np.ones(int(n_channels), np.float32)
    mask[np.asarray(list(channels), dtype=np.int64)] = 0.0
    return mask


def hold_zero(layer, channels) -> None:
    """Zero ``channels`` of a Keras layer's kernel and bias in place (its variables), by the rule
    of :func:`zeroed_weights`: training calls it after every update so pruned channels stay
    exactly zero (fine-pruning, the demo's pruning-aware attack)."""
    bias = layer.bias if getattr(layer, "use_bias", True) and getattr(layer, "bias", None) is not None else None
    variables = [layer.kernel] + ([bias] if bias is not None else [])
    for v, w in zip(variables, zeroed_weights([v.numpy() for v in variables], channels)):
        v.assign(w)


def make_bprime(model, layer: str, channels, name: str | None = None):
    """A copy of ``model`` with ``channels`` of ``layer`` zeroed (kernel slices and bias)."""
    from engine.core.tfsetup import keras

    k = keras()
    clone = k.models.clone_model(model)
    clone.set_weights(model.get_weights())
    target = clone.get_layer(layer)
    target.set_weights(zeroed_weights(target.get_weights(), channels))
    if name:
        clone.name = name
    return clone


def make_goodnet(badnet, bprime, name: str = GOODNET_NAME, input_scale: float = 255.0):
    """G(x) = B's class if argmax B(x) == argmax B'(x), else class N (one extra output). G takes
    what B takes (``input_scale``: B's convention, recorded in G's name)."""
    from engine.models.loading import goodnet_name

    name = goodnet_name(input_scale, name)
    from engine.core.tfsetup import keras

    k = keras()
    ops = k.ops
    shape = tuple(int(d) for d in badnet.inputs[0].shape[1:])
    b = k.models.clone_model(badnet)
    b.set_weights(badnet.get_weights())
    b.name = "badnet_B"
    bp = k.models.clone_model(bprime)
    bp.set_weights(bprime.get_weights())
    bp.name = "repaired_B_prime"
    x = k.Input(shape=shape, name="image")
    p = _single(b(x))
    q = _single(bp(x))
    from engine.models.logits import answers_probabilities

    if not answers_probabilities(badnet):  # the one rule: a softmax in any form, or logits
        p = k.layers.Softmax(name="badnet_scores")(p)
    agree = ops.cast(ops.equal(ops.argmax(p, axis=-1), ops.argmax(q, axis=-1)), "float32")
    agree = ops.expand_dims(agree, -1)
    scores = k.layers.Multiply(name="agree_scores")([p, agree])
    flag = ops.subtract(1.0, agree)
    out = k.layers.Concatenate(name="goodnet_output")([scores, flag])
    return k.Model(x, out, name=name)


def _single(t):
    """Keras-2 configs list their one output; calling such a model returns a list."""
    return t[0] if isinstance(t, (list, tuple)) else t


def save_model(model, path: str | os.PathLike, inputs=()) -> Path:
    """Save atomically as .keras or legacy .h5 by extension; never over an input file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise PruneLabError(path, "use a .keras or .h5 file name for models")
    if suffix == ".h5" and str(model.name).startswith(GOODNET_NAME):
        raise PruneLabError(path, "G uses Keras operations that only the .keras format stores; "
                            "save G as .keras")
    try:
        with atomic_path(path, inputs) as tmp:
            model.save(str(tmp))
    except PruneLabError:
        raise
    except Exception as e:
        raise PruneLabError(path, f"could not be saved: {short_reason(e)}") from None
    return path


def goodnet_labels(badnet_labels: np.ndarray, bprime_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The G rule on predicted labels: B's class where B and B′ agree, class N where they don't.
    :func:`make_goodnet` builds the same rule into a Keras model."""
    return np.where(badnet_labels == bprime_labels, badnet_labels, n_classes).astype(np.int32)


def verdicts(model, layer: str | None, channels, dataset, n_classes: int, state=None,
             input_scale: float = 255.0) -> dict[str, np.ndarray]:
    """What B, B′ (``channels`` of ``layer`` pruned) and G answer for every image of ``dataset``
    (images the sweep never saw, such as a user's photos): ``{"B", "B'", "G"}`` label arrays.
    Without a layer only B's answers are given."""
    from engine.models.runner import predict_dataset_labels

    out = {"B": predict_dataset_labels(model, dataset, state=state, input_scale=input_scale)}
    if layer is not None:
        bp = make_bprime(model, layer, channels)
        out["B'"] = predict_dataset_labels(bp, dataset, state=state, input_scale=input_scale)
        out["G"] = goodnet_labels(out["B"], out["B'"], n_classes)
    return out


def pct(mask: np.ndarray) -> float:
    """Share of True in ``mask``, in %."""
    return float(100.0 * np.count_nonzero(mask) / max(1, mask.size))


def evaluate_labels(badnet: np.ndarray, bprime: np.ndarray, labels: np.ndarray, n_classes: int,
                    poisoned: bool) -> dict[str, float]:
    """B, B′ and G on one dataset from their predicted labels. On clean data: accuracies and the
    share G wrongly flags; on poisoned data: attack success rates and the share G flags."""
    g = goodnet_labels(badnet, bprime, n_classes)
    kind = "asr" if poisoned else "acc"
    return {f"bprime_{kind}": pct(bprime == labels),
            f"goodnet_{kind}": pct(g == labels),
            "goodnet_" + ("flagged" if poisoned else "false_flagged"): pct(g == n_classes),
            f"badnet_{kind}": pct(badnet == labels)}


def check_labels_in_range(dataset, n_classes: int) -> None:
    """The one check that a labelled dataset's labels are classes of the model (0 … N−1): a
    one-line error naming the file otherwise (accuracy against a class the model cannot answer
    would silently be 0)."""
    labels = np.asarray(dataset.labels)
    top = int(labels.max(initial=0)) if labels.size else 0
    if top >= int(n_classes):
        raise PruneLabError(getattr(dataset, "path", None), f"labels go up to {top} but the model has only "
                            f"{n_classes} classes (0–{int(n_classes) - 1})")
