"""The one rule for "the logits of this model" and "does it answer probabilities".

A classifier ends in one of three ways, and everything that needs class scores before the
softmax (G's scores, ANP's loss, Grad-CAM, occlusion) asks here:

* ``Dense(..., activation="softmax")`` — the logits are ``kernel·x + bias`` of the Dense
  layer's input, computed with that layer's own weights (``kind="dense"``);
* a separate ``Softmax`` layer or ``Activation("softmax")`` — the logits are its input
  (``kind="input"``);
* no softmax at the end — the output already is the logits (``kind="output"``).

Only the first two answer probabilities. Nothing here changes the user's model."""

from __future__ import annotations

from dataclasses import dataclass

def _is_softmax(fn) -> bool:
    return getattr(fn, "__name__", "") == "softmax"


def output_layer(model):
    """The layer that produces the model's (first) output."""
    out = model.outputs[0]
    hist = getattr(out, "_keras_history", None)
    op = getattr(hist, "operation", None) if hist is not None else None
    if op is None and isinstance(hist, tuple) and hist:
        op = hist[0]
    return op if op is not None else model.layers[-1]


@dataclass
class Logits:
    """Where a model's logits come from: ``tensor`` (a tensor of the model's graph), turned into
    logits by :meth:`apply`; ``layer`` is the model's last layer."""

    tensor: object
    kind: str
    layer: object

    @property
    def probabilities(self) -> bool:
        """Whether the model's output is probabilities (it ends in a softmax)."""
        return self.kind != "output"

    def apply(self, t):
        """The logits from a value of :attr:`tensor` (inside a TensorFlow graph or eagerly)."""
        if self.kind != "dense":
            return t
        from engine.core.tfsetup import keras

        ops = keras().ops
        z = ops.matmul(t, self.layer.kernel)
        if getattr(self.layer, "use_bias", True) and getattr(self.layer, "bias", None) is not None:
            z = z + self.layer.bias
        return z


def logits_of(model) -> Logits:
    """The rule, for a Keras model (or an ``engine.models.loading.LoadedModel``)."""
    model = getattr(model, "model", model) if not hasattr(model, "outputs") else model
    last = output_layer(model)
    kind = type(last).__name__
    if kind == "Dense" and _is_softmax(getattr(last, "activation", None)):
        return Logits(last.input, "dense", last)
    if kind == "Softmax" or (kind == "Activation" and _is_softmax(getattr(last, "activation", None))):
        return Logits(last.input, "input", last)
    return Logits(model.outputs[0], "output", last)


def answers_probabilities(model) -> bool:
    """Whether ``model`` ends in a softmax (in any of its forms), looking inside a model whose last
    layer is itself a model (a G wraps its B that way)."""
    spec = logits_of(model)
    while spec.kind == "output" and hasattr(spec.layer, "layers") and getattr(spec.layer, "outputs", None):
        spec = logits_of(spec.layer)
    return spec.probabilities


def training_loss(model):
    """The loss every training run on ``model`` compiles with (fine-pruning, unlearning): sparse
    cross-entropy told whether the output is logits, so a model without a softmax at the end is
    not trained as if its logits were probabilities."""
    from engine.core.tfsetup import keras

    return keras().losses.SparseCategoricalCrossentropy(from_logits=not answers_probabilities(model))


def logits_function(model, name: str = "prunelab_logits"):
    """``f(x)`` → the logits of ``model`` for a batch of model inputs (a Keras sub-model that
    shares ``model``'s layers, plus the Dense layer's own weights for ``kind="dense"``)."""
    from engine.core.tfsetup import keras

    model = getattr(model, "model", model) if not hasattr(model, "outputs") else model
    spec = logits_of(model)
    inner = keras().Model(model.inputs[0], spec.tensor, name=name)

    def f(x, training=False):
        return spec.apply(inner(x, training=training))

    return f
