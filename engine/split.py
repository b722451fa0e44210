"""Where to cut the network for the fast sweep.

Zeroing a channel's kernel slice and bias (a Conv2D filter, or a Dense neuron: a kernel
column and its bias) makes that channel's pre-activation exactly 0, so the layer outputs
``activation(0)`` there for every image. Channel-wise layers that follow (pooling, elementwise
activations, batch norm, dropout at inference) keep it a known constant, the *fill*. We cache
the tensor at the end of that chain (the lab's ``pool_3``) once, and per step run only the
*head* — the rest of the network — with the pruned channels set to the fill.

The rest of the network may also read tensors computed before the pruned layer (a skip
connection around a residual block, DeepID's ``fc_1`` beside ``conv_4``). Pruning cannot
change those, so they are cached too: the *frontier* of the cut. The head is a function of
the cut tensor and the frontier tensors, which is all it reads.

The graph is walked from the model's own outputs: Keras adds a node to every layer each time
a sub-model (such as our head) is built from it, so ``layer._inbound_nodes`` lists more than
the model's own calls."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.errors import PruneLabError

PRUNABLE = ("Conv2D", "Dense")
POOLS = {"MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D"}
CHANNELWISE = POOLS | {"Activation", "ReLU", "LeakyReLU", "ELU", "BatchNormalization", "Dropout",
                       "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Identity"}
# activations that act on each value alone (softmax and friends mix channels)
ELEMENTWISE = {"linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid",
               "tanh", "silu", "swish", "hard_silu", "hard_swish", "softplus", "softsign", "exponential",
               "mish", "celu", "squareplus", "sparse_plus", "sparse_sigmoid", "log_sigmoid", "tanh_shrink",
               "soft_shrink", "hard_shrink", "hard_tanh"}


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    return "linear" if act is None else str(getattr(act, "__name__", act))


def _elementwise(layer) -> bool:
    return _activation_name(layer) in ELEMENTWISE


def _is_channelwise(op) -> bool:
    kind = type(op).__name__
    if kind not in CHANNELWISE:
        return False
    if kind == "Activation" and not _elementwise(op):
        return False
    if kind in POOLS and getattr(op, "data_format", "channels_last") != "channels_last":
        return False
    return True


class Graph:
    """The model's own nodes in topological order and who reads each tensor."""

    def __init__(self, model):
        self.outputs = list(model.outputs)
        self.output_ids = {id(t) for t in self.outputs}
        self.consumers: dict[int, list] = {}
        seen: dict[int, object] = {}
        order: list = []
        stack = [(self._producer(t), False) for t in reversed(self.outputs)]
        while stack:  # iterative depth-first walk: deep networks exceed Python's recursion limit
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen[id(node)] = node
            stack.append((node, True))
            for t in node.input_tensors:
                readers = self.consumers.setdefault(id(t), [])
                if node not in readers:
                    readers.append(node)
                parent = self._producer(t)
                if id(parent) not in seen:
                    stack.append((parent, False))
        self.nodes = order  # every node after the nodes it reads from

    @staticmethod
    def _producer(t):
        op, index, _ = t._keras_history
        return op._inbound_nodes[index]

    def nodes_of(self, layer) -> list:
        return [n for n in self.nodes if n.operation is layer]

    def readers(self, t) -> list:
        return self.consumers.get(id(t), [])

    def descendants(self, t) -> set[int]:
        """ids of ``t`` and of every tensor computed from it."""
        dep = {id(t)}
        for node in self.nodes:
            if any(id(i) in dep for i in node.input_tensors):
                dep.update(id(o) for o in node.output_tensors)
        return dep

    def chain(self, t) -> list:
        """Nodes after tensor ``t`` that only transform channels independently, each the one
        reader of the tensor before it."""
        out = []
        while id(t) not in self.output_ids:
            readers = self.readers(t)
            if len(readers) != 1:
                break
            nxt = readers[0]
            if not _is_channelwise(nxt.operation) or len(nxt.input_tensors) != 1 or len(nxt.output_tensors) != 1:
                break
            out.append(nxt)
            t = nxt.output_tensors[0]
        return out

    def feeds_output(self, t) -> bool:
        """Whether ``t`` becomes a model output through single-reader channel-wise layers or a
        softmax: the logits of the output layer (pruning them removes classes)."""
        while True:
            if id(t) in self.output_ids:
                return True
            readers = self.readers(t)
            if len(readers) != 1 or len(readers[0].output_tensors) != 1:
                return False
            kind = type(readers[0].operation).__name__
            if kind not in CHANNELWISE | {"Softmax", "Activation"}:
                return False
            t = readers[0].output_tensors[0]


def _prunable(graph: Graph, layer) -> bool:
    if type(layer).__name__ not in PRUNABLE:
        return False
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    nodes = graph.nodes_of(layer)
    return len(nodes) == 1 and not graph.feeds_output(nodes[0].output_tensors[0])


def layer_channels(layer) -> int:
    """THE rule for how many channels a prunable layer has: a Conv2D's filters, a Dense
    layer's neurons (units) — the last axis of its kernel either way."""
    kind = type(layer).__name__
    if kind == "Conv2D":
        return int(layer.filters)
    if kind == "Dense":
        return int(layer.units)
    raise PruneLabError(None, f"layer '{layer.name}' is a {kind}, not a {' or '.join(PRUNABLE)} layer")


def conv_before(model, name: str) -> str | None:
    """The Conv2D whose maps stand for layer ``name``: the layer itself when it is a Conv2D,
    else (a hidden Dense layer) the last Conv2D, in model order, that it is computed from;
    None when there is none (a model without convolutions before it)."""
    layer = model.get_layer(name)
    if type(layer).__name__ == "Conv2D":
        return layer.name
    graph = Graph(model)
    nodes = graph.nodes_of(layer)
    if not nodes:
        return None
    seen, stack, found = set(), list(nodes[0].input_tensors), set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        node = graph._producer(t)
        if type(node.operation).__name__ == "Conv2D":
            found.add(id(node.operation))
        stack.extend(node.input_tensors)
    convs = [l for l in model.layers if id(l) in found]
    return convs[-1].name if convs else None


def prunable_layers(model) -> list:
    """The layers the sweep can prune, in model order: Conv2D (channels_last) and Dense layers
    called once, except the output layer. The window's layer chooser lists their names."""
    graph = Graph(model)
    return [l for l in model.layers if _prunable(graph, l)]


def prunable_layer_names(model) -> list[str]:
    return [l.name for l in prunable_layers(model)]


def conv_layers(model) -> list:
    return [l for l in model.layers if type(l).__name__ == "Conv2D"]


def default_layer(model, path=None) -> str:
    """The lab's choice: the last Conv2D that feeds a pooling layer (``conv_3`` → ``pool_3``);
    the last Conv2D when none does; the last hidden Dense layer in a model without Conv2D."""
    graph = Graph(model)
    layers = [l for l in model.layers if _prunable(graph, l)]
    convs = [l for l in layers if type(l).__name__ == "Conv2D"]
    if not layers:
        raise PruneLabError(path, "the model has no Conv2D layer to prune (nor a Dense layer before its output)")
    pooled = [c for c in convs if any(type(n.operation).__name__ in POOLS
                                      for n in graph.chain(graph.nodes_of(c)[0].output_tensors[0]))]
    return (pooled or convs or layers)[-1].name


def _layer_list(model) -> str:
    names = {kind: [l.name for l in prunable_layers(model) if type(l).__name__ == kind] for kind in PRUNABLE}
    text = f"Conv2D layers: {', '.join(names['Conv2D']) or 'none'}"
    return text + (f"; Dense layers: {', '.join(names['Dense'])}" if names["Dense"] else "")


@dataclass
class PruneSplit:
    conv: object  # the layer being pruned (a Conv2D or a Dense layer)
    cut: object  # last layer of the channel-wise chain (where activations are cached)
    prefix: object  # keras.Model: input -> cut output
    head: object | None  # keras.Model: [cut output] + frontier -> model output; None = naive fallback
    fill: np.ndarray  # (h, w, C) or (C,): the cut tensor's value for a pruned channel
    n_channels: int
    head_problem: str | None = None
    model: object = None
    cut_tensor: object = None
    frontier: list = field(default_factory=list)  # tensors before the cut that the head reads

    @property
    def layer(self) -> str:
        return self.conv.name

    @property
    def measured_at(self) -> str:
        return self.cut.name

    @property
    def kind(self) -> str:
        return type(self.conv).__name__

    def cached_shapes(self) -> list[tuple[tuple[int, ...], np.dtype]]:
        """Per-image shape and dtype of every cached tensor: the cut, then the frontier."""
        out = [(tuple(self.fill.shape), np.dtype(np.float32))]
        for t in self.frontier:
            out.append((tuple(int(d) for d in t.shape[1:]), np.dtype(str(t.dtype))))
        return out

    def bytes_per_image(self, fast: bool = True) -> int:
        shapes = self.cached_shapes() if fast else self.cached_shapes()[:1]
        return int(sum(int(np.prod(s)) * d.itemsize for s, d in shapes))

    def tensors_model(self, with_outputs: bool = True):
        """input -> [cut, *frontier, *outputs]: one forward pass gives everything the fast
        path caches and the unpruned model's answers."""
        from engine.tfsetup import keras

        outs = [self.cut_tensor] + list(self.frontier) + (list(self.model.outputs) if with_outputs else [])
        return keras().Model(self.model.inputs, outs, name="prunelab_tensors")


def find_layer(model, name: str | None, path=None, kinds=PRUNABLE):
    """The layer called ``name`` (default: the one the lab prunes), checked: it exists, it is one
    of ``kinds``, and its channels come last. One line naming the problem otherwise."""
    name = name or default_layer(model, path)
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise PruneLabError(path, f"the model has no layer named '{name}' ({_layer_list(model)})") from None
    kind = type(layer).__name__
    if kind not in kinds:
        raise PruneLabError(path, f"layer '{name}' is a {kind}, not a {' or '.join(kinds)} layer")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise PruneLabError(path, f"layer '{name}' is channels_first; only channels_last is supported")
    return layer


def make_split(model, layer_name: str | None, path=None) -> PruneSplit:
    from engine.tfsetup import keras

    k = keras()
    graph = Graph(model)
    layer = find_layer(model, layer_name, path)
    name = layer.name
    nodes = graph.nodes_of(layer)
    if len(nodes) != 1:
        raise PruneLabError(path, f"layer '{name}' is used {len(nodes)} times in the model; pruning needs a "
                            "layer used once")
    out = nodes[0].output_tensors[0]
    if graph.feeds_output(out):
        raise PruneLabError(path, f"layer '{name}' computes the model's output; pruning it would remove classes "
                            f"({_layer_list(model)})")
    problem = None
    if not _elementwise(layer):
        chain = []  # a channel-mixing activation: a pruned channel has no constant value
        problem = f"the activation '{_activation_name(layer)}' of '{name}' mixes channels"
    else:
        chain = graph.chain(out)
    # stop the chain at the last pooling layer if there is one (that is where the lab measures)
    pools = [i for i, n in enumerate(chain) if type(n.operation).__name__ in POOLS]
    chain = chain[: pools[-1] + 1] if pools else chain
    cut_node = chain[-1] if chain else nodes[0]
    cut_t = cut_node.output_tensors[0]
    prefix = k.Model(model.inputs, cut_t, name="prunelab_prefix")
    head, frontier = None, []
    if problem is None:
        frontier, problem = _frontier(graph, out, cut_t)
    if problem is None:
        try:
            head = k.Model([cut_t] + frontier if frontier else cut_t, model.outputs, name="prunelab_head")
        except Exception as e:  # noqa: BLE001 - any Keras refusal means: no fast path
            head, problem = None, f"the rest of the network cannot be cut at '{cut_node.operation.name}' ({e})"
    n_channels = layer_channels(layer)
    z = np.zeros((1,) + tuple(int(d) for d in out.shape[1:]), np.float32)
    t = layer.activation(z) if getattr(layer, "activation", None) is not None else z
    for node in chain:
        t = node.operation(t, training=False)
    fill = np.asarray(t)[0].astype(np.float32)
    return PruneSplit(layer, cut_node.operation, prefix, head, fill, n_channels, problem, model, cut_t,
                      frontier if head is not None else [])


def _frontier(graph: Graph, out, cut_t) -> tuple[list, str | None]:
    """The tensors computed before the cut that the rest of the network reads, or why the
    rest of the network is not a function of the cut and such tensors."""
    after_cut = graph.descendants(cut_t)
    after_layer = graph.descendants(out)
    if id(graph.outputs[0]) not in after_cut:
        return [], "the model's output does not depend on the pruned layer"
    frontier, seen = [], set()
    for node in graph.nodes:
        if not any(id(i) in after_cut for i in node.input_tensors):
            continue
        for t in node.input_tensors:
            if id(t) in after_cut or id(t) in seen:
                continue
            if id(t) in after_layer:  # between the pruned layer and the cut: it changes per step
                return [], (f"'{node.operation.name}' reads '{t._keras_history[0].name}', which lies between "
                            "the pruned layer and the cut")
            seen.add(id(t))
            frontier.append(t)
    return frontier, None
