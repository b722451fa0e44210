"""Where to cut the network for the fast sweep.

Zeroing a channel's kernel and bias makes that channel's pre-activation exactly 0, so the
layer outputs ``activation(0)`` there for every image. Channel-wise layers that follow
(pooling, activations, batch norm, dropout at inference) keep it a known constant. We cache
the tensor at the end of that chain (the lab's ``pool_3``) once, and per step run only the
*head* — the rest of the network — with the pruned channels set to that constant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import PruneLabError

POOLS = {"MaxPooling2D", "AveragePooling2D"}
CHANNELWISE = POOLS | {"Activation", "ReLU", "LeakyReLU", "ELU", "BatchNormalization", "Dropout",
                       "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Identity"}


def _consumers(model, layer) -> list:
    names = {l.name for l in model.layers}
    out = []
    for node in getattr(layer, "_outbound_nodes", []):
        op = node.operation
        if op.name in names and op not in out:
            out.append(op)
    return out


def channel_chain(model, conv) -> list:
    """Layers after ``conv`` that only transform channels independently (single consumer)."""
    chain = []
    cur = conv
    while True:
        nxt = _consumers(model, cur)
        if len(nxt) != 1 or type(nxt[0]).__name__ not in CHANNELWISE:
            break
        if len(getattr(nxt[0], "_inbound_nodes", [])) != 1:
            break
        chain.append(nxt[0])
        cur = nxt[0]
    return chain


def conv_layers(model) -> list:
    return [l for l in model.layers if type(l).__name__ == "Conv2D"]


def default_layer(model, path=None) -> str:
    """The lab's choice: the last Conv2D that feeds a pooling layer (``conv_3`` → ``pool_3``);
    the last Conv2D when none does."""
    convs = conv_layers(model)
    if not convs:
        raise PruneLabError(path, "the model has no Conv2D layer to prune")
    pooled = [c for c in convs if any(type(l).__name__ in POOLS for l in channel_chain(model, c))]
    return (pooled or convs)[-1].name


@dataclass
class PruneSplit:
    conv: object  # the Conv2D layer being pruned
    cut: object  # last layer of the channel-wise chain (where activations are cached)
    prefix: object  # keras.Model: input -> cut output
    head: object | None  # keras.Model: cut output -> model output; None = naive fallback
    fill: np.ndarray  # (h, w, C): the cut tensor's value for a pruned channel
    n_channels: int
    head_problem: str | None = None

    @property
    def layer(self) -> str:
        return self.conv.name

    @property
    def measured_at(self) -> str:
        return self.cut.name


def make_split(model, layer_name: str | None, path=None) -> PruneSplit:
    from engine.tfsetup import keras

    k = keras()
    name = layer_name or default_layer(model, path)
    try:
        conv = model.get_layer(name)
    except ValueError:
        convs = ", ".join(l.name for l in conv_layers(model)) or "none"
        raise PruneLabError(path, f"the model has no layer named '{name}' (Conv2D layers: {convs})") from None
    if type(conv).__name__ != "Conv2D":
        raise PruneLabError(path, f"layer '{name}' is a {type(conv).__name__}, not a Conv2D")
    if getattr(conv, "data_format", "channels_last") != "channels_last":
        raise PruneLabError(path, f"layer '{name}' is channels_first; only channels_last is supported")
    chain = channel_chain(model, conv)
    # stop the chain at the last pooling layer if there is one (that is where the lab measures)
    pools = [i for i, l in enumerate(chain) if type(l).__name__ in POOLS]
    chain = chain[: pools[-1] + 1] if pools else chain
    cut = chain[-1] if chain else conv
    prefix = k.Model(model.inputs, cut.output, name="prunelab_prefix")
    head, problem = None, None
    try:
        head = k.Model(cut.output, model.outputs, name="prunelab_head")
        needed = {l.name for l in head.layers}
        before = {l.name for l in prefix.layers} - {cut.name}
        if needed & before:
            head, problem = None, "the rest of the network also reads layers before the pruned one"
    except Exception as e:  # a skip connection crosses the cut
        head, problem = None, f"the rest of the network is not a function of '{cut.name}' alone ({e})"
    n_channels = int(conv.filters)
    shape = tuple(int(d) for d in conv.output.shape[1:])
    z = np.zeros((1,) + shape, np.float32)
    t = conv.activation(z) if conv.activation is not None else z
    for layer in chain:
        t = layer(t, training=False)
    fill = np.asarray(t)[0].astype(np.float32)
    return PruneSplit(conv, cut, prefix, head, fill, n_channels, problem)
