"""Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021) on clean validation data only: per-channel
masks trained against adversarial multiplicative noise; lowest mask first. Cached by content."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from engine.core.errors import PruneLabError
from engine.core.state import ProgressCallback
from engine.pruning.criteria.base import Criterion, Inputs, Ranking, register


@dataclass(frozen=True)
class ANPConfig:
    """The paper's settings by default. ``momentum`` is that of the authors' mask optimiser."""

    eps: float = 0.4
    alpha: float = 0.2
    lr: float = 0.2
    momentum: float = 0.9
    iterations: int = 2000
    batch_size: int = 128
    images: int = 500
    seed: int = 0

    def check(self) -> None:
        if not (0 <= self.eps < 1) or not (0 <= self.alpha <= 1) or not (0 < self.lr < 100):
            raise PruneLabError(None, "ANP needs 0 ≤ eps < 1, 0 ≤ alpha ≤ 1 and a positive learning rate")
        if self.iterations < 1 or self.batch_size < 1 or self.images < 1:
            raise PruneLabError(None, "ANP needs at least one iteration, one image and a batch of one")


def _anp_cache_key(model, dataset, layer: str, cfg: ANPConfig) -> str:
    from dataclasses import astuple

    from engine.io import cache

    base = cache.activation_key([model.path, model.weights_path], layer, "anp", dataset.path, 0)
    return cache.derived_key("anp", "logits-v2", base, *astuple(cfg))  # v2: the loss on the logits rule


def anp_ranking(model, dataset, layer: str | None = None, config: ANPConfig | None = None, *,
                use_cache: bool = True, state=None,
                progress: ProgressCallback | None = None) -> Ranking:
    """Train ANP's masks on ``dataset`` (clean validation; nothing else is read)."""
    from engine.core.state import drive

    return drive(anp_events(model, dataset, layer, config, use_cache=use_cache, state=state),
                 (lambda ev: progress(ev.done, ev.total)) if progress is not None else None)


def anp_events(model, dataset, layer: str | None = None, config: ANPConfig | None = None, *,
               use_cache: bool = True, state=None) -> Iterator:
    """ANP as a generator: yields Progress("ranking", …) between iterations and returns the
    Ranking (``StopIteration.value``; ``yield from`` hands it over). Cached by file content."""
    from engine.io import cache
    from engine.pruning.graph import make_split

    cfg = config or ANPConfig()
    cfg.check()
    split = make_split(model.model, layer, model.path)
    if split.head is None:
        raise PruneLabError(model.path, f"the 'anp' ranking needs the network after '{split.layer}' to "
                            f"depend on it alone ({split.head_problem})")
    from engine.pruning.rules import check_labels_in_range

    check_labels_in_range(dataset, model.n_classes)
    info = {"config": asdict(cfg)}
    key = None
    if use_cache:
        try:
            key = _anp_cache_key(model, dataset, split.layer, cfg)
        except OSError:
            key = None
        hit = cache.load(key) if key else None
        if hit is not None and hit.shape == (split.n_channels + 1,):
            masks = np.array(hit[:-1], np.float64)
            return ANP().ranking(masks, 0.0, cached=True, seed=cfg.seed, extra=dict(info, train_s=float(hit[-1])))
    t0 = time.perf_counter()
    masks = yield from _train_anp_masks(model, dataset, split, cfg, state)
    cost = time.perf_counter() - t0
    if key:
        cache.store(key, np.concatenate([masks, [cost]]))
    return ANP().ranking(masks, cost, seed=cfg.seed, extra=dict(info, train_s=cost))


def _train_anp_masks(model, dataset, split, cfg: ANPConfig, state) -> Iterator:
    """The ANP loop on the layer: z = (m+δ)·(W∗x) + (1+ξ)·b per channel. Per batch: one
    signed-gradient ascent step on the noise (δ, ξ from uniform [−ε, ε], clipped there), then
    one SGD step with momentum on the masks for α·CE(clean) + (1−α)·CE(perturbed), clipped
    to [0, 1]. The layers before the pruned one are fixed, so their output is computed once."""
    from engine.core.state import Progress
    from engine.core.tfsetup import tf

    t = tf()
    rng = np.random.default_rng(cfg.seed)
    n = min(cfg.images, dataset.n)
    pick = np.sort(rng.choice(dataset.n, n, replace=False))
    x_in, x_front, chain = _fixed_features(model, split, model.model_input(dataset.take(pick)))
    labels = dataset.labels[pick].astype(np.int32)
    forward = _masked_forward(model, split, chain)
    c = split.n_channels
    mask = t.Variable(t.ones(c, t.float32))
    vel = t.Variable(t.zeros(c, t.float32))
    eps, alpha, lr, mom = (float(v) for v in (cfg.eps, cfg.alpha, cfg.lr, cfg.momentum))

    def ce(logits, y):
        return t.reduce_mean(t.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    @t.function(reduce_retracing=True)
    def step(x, front, y, delta0, xi0):
        with t.GradientTape() as tape:
            tape.watch([delta0, xi0])
            loss = ce(forward(x, front, mask + delta0, 1.0 + xi0), y)
        gd, gx = tape.gradient(loss, [delta0, xi0])
        delta = t.clip_by_value(delta0 + eps * t.sign(gd), -eps, eps)
        xi = t.clip_by_value(xi0 + eps * t.sign(gx), -eps, eps) if gx is not None else xi0
        with t.GradientTape() as tape:
            loss = alpha * ce(forward(x, front, mask, 1.0), y) + \
                (1 - alpha) * ce(forward(x, front, mask + delta, 1.0 + xi), y)
        g = tape.gradient(loss, mask)
        vel.assign(mom * vel + g)
        mask.assign(t.clip_by_value(mask - lr * vel, 0.0, 1.0))
        return loss

    x_t = t.constant(x_in, t.float32)
    front_t = [t.constant(f) for f in x_front]
    y_t = t.constant(labels, t.int32)
    batches: list[np.ndarray] = []
    for it in range(cfg.iterations):
        if state is not None:
            state.cancel_point()
        if not batches:  # a fresh seeded shuffle per pass over the images
            perm = rng.permutation(n)
            batches = [perm[s:s + cfg.batch_size] for s in range(0, n, cfg.batch_size)][::-1]
        idx = t.constant(np.sort(batches.pop()), t.int32)
        noise = rng.uniform(-eps, eps, (2, c)).astype(np.float32)
        step(t.gather(x_t, idx), [t.gather(f, idx) for f in front_t], t.gather(y_t, idx), t.constant(noise[0]),
             t.constant(noise[1]))
        if it + 1 == cfg.iterations or (it + 1) % 20 == 0:
            yield Progress("ranking", it + 1, cfg.iterations, f"anp: training masks {it + 1}/{cfg.iterations}")
    return np.asarray(mask.numpy(), np.float64)


def _fixed_features(model, split, x_img: np.ndarray):
    """What does not depend on the masks, computed once: the pruned layer's input and the tensors
    before the cut that the head also reads (skip connections); with the layers between the pruned
    layer and the cut (``chain``)."""
    from engine.core.tfsetup import keras
    from engine.models.runner import Runner
    from engine.pruning.graph import Graph

    k, n = keras(), len(x_img)
    graph = Graph(model.model)
    node = graph.nodes_of(split.target)[0]
    fixed = [node.input_tensors[0]] + list(split.frontier)
    feed = Runner(k.Model(model.model.inputs, fixed))
    parts = [feed(x_img[s:s + 256]) for s in range(0, n, 256)]
    parts = [p if isinstance(p, list) else [p] for p in parts]
    x_in, *x_front = [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(fixed))]
    chain = []
    for c in graph.chain(node.output_tensors[0]):
        chain.append(c.operation)
        if c.output_tensors[0] is split.cut_tensor:
            break
    return x_in, x_front, chain


def _masked_forward(model, split, chain):
    """``forward(x, front, scale, bias_scale)``: the logits with the pruned layer's kernel output
    scaled per channel by ``scale`` and its bias by ``bias_scale`` (a Conv2D or a Dense layer).
    The loss is taken on the logits (the one rule of engine.models.logits): the head up to them."""
    from engine.core.tfsetup import keras, tf
    from engine.models.logits import logits_of

    t, k = tf(), keras()
    pruned = split.target
    spec = logits_of(model.model)
    if spec.tensor is split.cut_tensor:  # the pruned layer feeds the output layer directly
        def head(inputs, training=False):
            return inputs[0] if isinstance(inputs, list) else inputs
    else:
        head = k.Model([split.cut_tensor] + list(split.frontier) if split.frontier else split.cut_tensor,
                       spec.tensor, name="prunelab_anp_logits")
    kernel = t.constant(np.asarray(pruned.get_weights()[0], np.float32))
    bias = t.constant(np.asarray(pruned.get_weights()[1], np.float32)) if pruned.use_bias else None

    def forward(x, front, scale, bias_scale):
        z = (pruned.convolution_op(x, kernel) if kernel.shape.rank == 4 else t.matmul(x, kernel)) * scale
        if bias is not None:
            z = z + bias * bias_scale
        a = pruned.activation(z) if pruned.activation is not None else z
        for layer in chain:
            a = layer(a, training=False)
        out = head([a] + list(front) if front else a, training=False)
        return spec.apply(out[0] if isinstance(out, (list, tuple)) else out)

    return forward


@register
class ANP(Criterion):
    name = "anp"
    title = "ANP (adversarial masks)"
    short = "ANP"
    needs = ("clean_valid",)
    colour = "#e67e22"

    def rankings(self, inp: Inputs) -> Iterator:
        return [(yield from anp_events(inp.model, inp.datasets["clean_valid"], inp.layer, inp.anp,
                                       use_cache=inp.use_cache, state=inp.state))]
