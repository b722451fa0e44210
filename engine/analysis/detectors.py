"""Backdoor detectors built as plain Keras graphs: the trigger filter and STRIP, and their
thresholds. Computation only: nothing here reads or writes files.

* **Trigger filter** (a CSAW-HackML-2020 team's defence): stamp the reversed trigger on the
  input with Neural Cleanse's rule x′ = (1 − m)·x + m·p and compare B's predictions on x and
  x′ (KL divergence KL(B(x) ‖ B(x′))). A clean image is pushed to the target by the trigger
  (a large KL); an image that already carries the trigger does not move (KL near 0).
* **STRIP** (Gao et al., ACSAC 2019): blend the input 50/50 with n clean images and average
  the entropy of B's softmax over the blends. A clean image's blends are confused (high
  entropy); a trojaned input keeps answering the target (low entropy).

Each detector gives a *score* per image; an image is flagged (class N) when its score falls
below a threshold chosen on clean validation images only, at a false-rejection rate
(:func:`threshold_at_frr`). The scores are computed by the same Keras graph that G embeds
(:func:`score_model`), so the thresholds and G's answers agree.

Every G built here takes what B takes (B's input scale; the trigger's pattern and the blending
images are stored as constants in that scale), answers N+1 classes (B's class, or N) and is
made of built-in layers and Keras ops only, so plain Keras loads it in safe mode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.core.errors import PruneLabError
from engine.models.loading import GOODNET_NAME
from engine.analysis.trigger import Trigger

EPS = 1e-7
MAX_STRIP_N = 10


@dataclass
class FilterSpec:
    """The trigger filter: one reversed trigger (or several: a flag if any one does not move
    the prediction), with the KL threshold of each."""

    triggers: list[Trigger]
    thresholds: list[float] = field(default_factory=list)


@dataclass
class StripSpec:
    """STRIP: the n clean blending images (0–255 pixels, N×H×W×C) and the entropy threshold."""

    images: np.ndarray
    threshold: float | None = None


def probabilities(t, model):
    """B's class probabilities from ``t``, a tensor that is (or is computed like) ``model``'s
    output: a Dense with a softmax activation or a separate Softmax layer already gives them;
    a model that ends in plain logits gets a softmax here; a model whose last layer is a nested
    model is read through it (the one rule of :mod:`engine.models.logits`)."""
    from engine.core.tfsetup import keras
    from engine.models.logits import answers_probabilities

    if answers_probabilities(model):
        return t
    return keras().ops.softmax(t, axis=-1)


def _single(t):
    return t[0] if isinstance(t, (list, tuple)) else t


def _clone(model, name: str):
    from engine.core.tfsetup import keras

    c = keras().models.clone_model(model)
    c.set_weights(model.get_weights())
    c.name = name
    return c


def input_shape(model) -> tuple[int, int, int]:
    return tuple(int(d) for d in model.inputs[0].shape[1:])


def _check_triggers(triggers, hwc, n_classes):
    if not triggers:
        raise PruneLabError(None, "the trigger filter needs at least one reversed trigger")
    for t in triggers:
        if t.hw != hwc[:2] or t.pattern.shape[-1] != hwc[2]:
            raise PruneLabError(None, f"the trigger for label {t.label} is {t.hw + (t.pattern.shape[-1],)}, "
                                f"the model takes {hwc}")
        if not 0 <= t.label < n_classes:
            raise PruneLabError(None, f"the trigger's label {t.label} is not one of the model's {n_classes} classes")


# ------------------------------------------------------------------------------- graph pieces
def _kl_scores(k, b, badnet, x, p, triggers, input_scale):
    """KL(B(x) ‖ B(stamp(x))) per trigger: a (batch, T) tensor."""
    ops = k.ops
    s = np.float32(float(input_scale) / 255.0)
    out = []
    for i, t in enumerate(triggers):
        m = t.mask.astype(np.float32)[None, :, :, None]
        pat = (t.pattern.astype(np.float32) * s)[None]
        stamped = ops.add(ops.multiply(x, 1.0 - m), m * pat)
        q = probabilities(_single(b(stamped)), badnet)
        kl = ops.sum(ops.multiply(p, ops.log(p + EPS) - ops.log(q + EPS)), axis=-1)
        out.append(ops.expand_dims(kl, -1))
    return out[0] if len(out) == 1 else ops.concatenate(out, axis=-1)


def _strip_scores(k, b, badnet, x, images, input_scale):
    """STRIP's mean entropy over the n 50/50 blends: a (batch,) tensor."""
    ops = k.ops
    h, w, c = input_shape(badnet)
    imgs = (np.asarray(images, np.float32) * np.float32(float(input_scale) / 255.0))
    n = len(imgs)
    blends = ops.add(ops.multiply(ops.expand_dims(x, 1), 0.5), 0.5 * imgs[None])  # (batch, n, H, W, C)
    flat = ops.reshape(blends, (-1, h, w, c))
    q = probabilities(_single(b(flat)), badnet)
    ent = -ops.sum(ops.multiply(q, ops.log(q + EPS)), axis=-1)
    return ops.mean(ops.reshape(ent, (-1, n)), axis=-1)


def _check_strip(images, hwc):
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(hwc):
        raise PruneLabError(None, f"STRIP's blending images are {images.shape}, the model takes {hwc}")
    if not 1 <= len(images) <= MAX_STRIP_N:
        raise PruneLabError(None, f"STRIP blends with 1 to {MAX_STRIP_N} images (got {len(images)})")


def score_model(badnet, *, triggers=None, strip_images=None, input_scale: float = 255.0):
    """A Keras model: images (B's input scale) → a dict: B's ``"probs"`` and per-image scores ``"kl"`` (batch, T)
    for the triggers, ``"entropy"`` (batch,) for STRIP. Thresholds are set on its outputs."""
    from engine.core.tfsetup import keras

    k = keras()
    hwc = input_shape(badnet)
    b = _clone(badnet, "badnet_B")
    x = k.Input(shape=hwc, name="image")
    p = probabilities(_single(b(x)), badnet)
    outs = {"probs": p}
    if triggers:
        _check_triggers(triggers, hwc, int(badnet.outputs[0].shape[-1]))
        outs["kl"] = _kl_scores(k, b, badnet, x, p, triggers, input_scale)
    if strip_images is not None:
        _check_strip(strip_images, hwc)
        outs["entropy"] = _strip_scores(k, b, badnet, x, strip_images, input_scale)
    return k.Model(x, outs, name="prunelab_detector_scores")


def threshold_at_frr(clean_scores, frr_pct: float) -> float:
    """The flagging threshold (flag when score < threshold) that rejects at most ``frr_pct`` %
    of ``clean_scores`` — clean validation images, never poisoned ones."""
    s = np.asarray(clean_scores, np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise PruneLabError(None, "no clean validation scores to set a threshold on")
    if not 0 <= frr_pct < 100:
        raise PruneLabError(None, f"the false-rejection rate must be in [0, 100) % (got {frr_pct})")
    srt = np.sort(s)
    k = int(np.floor(frr_pct / 100.0 * s.size))  # at most k clean scores may lie below
    return float(srt[k])


def flags_from_scores(scores: dict, filter_thresholds=None, strip_threshold=None) -> dict[str, np.ndarray]:
    """Per detector, True where it flags: the rule G embeds, on numpy scores."""
    out = {}
    if filter_thresholds is not None and "kl" in scores:
        kl = np.asarray(scores["kl"]).reshape(len(scores["kl"]), -1)
        out["filter"] = np.any(kl < np.asarray(filter_thresholds, np.float32)[None], axis=1)
    if strip_threshold is not None and "entropy" in scores:
        out["strip"] = np.asarray(scores["entropy"]).ravel() < np.float32(strip_threshold)
    return out


# ------------------------------------------------------------------------------- G
def detector_goodnet(badnet, *, filter_spec: FilterSpec | None = None, strip_spec: StripSpec | None = None,
                     unlearned=None, input_scale: float = 255.0, name: str = GOODNET_NAME):
    """G with N+1 outputs: class N when any given detector flags the image — the trigger filter,
    STRIP, or disagreement between B and ``unlearned`` (the lab's rule for a repaired B) — else
    B's class, with B's (normalised) scores."""
    from engine.models.loading import goodnet_name

    name = goodnet_name(input_scale, name)  # G carries its B's input convention
    from engine.core.tfsetup import keras

    k = keras()
    ops = k.ops
    hwc = input_shape(badnet)
    n_classes = int(badnet.outputs[0].shape[-1])
    b = _clone(badnet, "badnet_B")
    x = k.Input(shape=hwc, name="image")
    p = probabilities(_single(b(x)), badnet)
    flags = []
    if filter_spec is not None:
        _check_triggers(filter_spec.triggers, hwc, n_classes)
        if len(filter_spec.thresholds) != len(filter_spec.triggers):
            raise PruneLabError(None, "the trigger filter needs one threshold per trigger")
        kl = _kl_scores(k, b, badnet, x, p, filter_spec.triggers, input_scale)
        thr = np.asarray(filter_spec.thresholds, np.float32)[None]
        below = ops.cast(ops.less(kl, thr), "float32")
        flags.append(ops.max(below, axis=-1, keepdims=True))
    if strip_spec is not None:
        _check_strip(strip_spec.images, hwc)
        if strip_spec.threshold is None:
            raise PruneLabError(None, "STRIP has no threshold yet")
        ent = _strip_scores(k, b, badnet, x, strip_spec.images, input_scale)
        flags.append(ops.expand_dims(ops.cast(ops.less(ent, np.float32(strip_spec.threshold)), "float32"), -1))
    if unlearned is not None:
        u = _clone(unlearned, "repaired_B_unlearned")
        q = _single(u(x))
        agree = ops.cast(ops.equal(ops.argmax(p, axis=-1), ops.argmax(q, axis=-1)), "float32")
        flags.append(ops.expand_dims(1.0 - agree, -1))
    if not flags:
        raise PruneLabError(None, "G needs at least one detector")
    flag = flags[0] if len(flags) == 1 else ops.max(ops.concatenate(flags, axis=-1), axis=-1, keepdims=True)
    scores = k.layers.Multiply(name="kept_scores")([p, 1.0 - flag])
    out = k.layers.Concatenate(name="goodnet_output")([scores, flag])
    return k.Model(x, out, name=name)
