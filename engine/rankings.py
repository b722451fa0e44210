"""Pruning criteria ("rankings"): which channel of the pruned layer goes first.

Every ranking prunes the same layer with the same exact sweep (:class:`engine.sweep.Sweep`
takes its ``order``), so curves of different criteria are comparable step by step and an
extra ranking reuses the cached activations instead of another forward pass.

* ``activation`` — the lab's: mean |activation| at the cut on clean validation, lowest first.
* ``l1`` — L1 norm of each output channel's kernel, lowest first (Li et al., ICLR 2017).
* ``clp`` — Channel Lipschitzness (Zheng et al., ECCV 2022): largest singular value of the
  channel's kernel as a (C_in, kh·kw) matrix, times |γ/sqrt(var+ε)| of a BatchNormalization
  that follows; highest first. The paper prunes the channels above mean + u·std.
* ``anp`` — Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021) on clean validation only:
  per-channel masks trained against adversarial multiplicative noise; lowest mask first.
* ``random`` — seeded random orders: the control every criterion must beat.
* ``difference`` — mean activation on poisoned minus clean validation, highest first. It
  uses the trigger, so it is a diagnostic (where the backdoor lives), never a defense.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from engine.errors import PruneLabError

RANKINGS = ("activation", "l1", "clp", "anp", "random", "difference")
NEEDS: dict[str, tuple[str, ...]] = {
    "activation": ("clean_valid",), "l1": (), "clp": (), "anp": ("clean_valid",), "random": (),
    "difference": ("clean_valid", "poisoned_valid")}
TITLES = {"activation": "mean clean activation (lab)", "l1": "L1 norm of kernel", "clp": "CLP (Lipschitz)",
          "anp": "ANP (adversarial masks)", "random": "random", "difference": "poisoned − clean (diagnostic)"}
OPTIONS = {"clean_valid": "--clean-valid", "poisoned_valid": "--poisoned-valid"}
WORDS = {"clean_valid": "clean validation", "poisoned_valid": "poisoned validation"}
CLP_U = 3.0


@dataclass(frozen=True, eq=False)
class Ranking:
    """One criterion's verdict on the layer's channels.

    ``order`` is the pruning order (channel indices); ``scores`` the per-channel numbers it
    was sorted by; ``cost_s`` the seconds this process spent computing the scores (a cache
    hit is cheap: ``cached`` says so); ``threshold_step`` is clp's own operating point (the
    number of channels above mean + u·std, pruned first)."""

    name: str
    method: str  # one of RANKINGS; several ``random-k`` rankings share "random"
    needs: tuple[str, ...]
    scores: np.ndarray
    order: tuple[int, ...]
    cost_s: float = 0.0
    diagnostic: bool = False
    threshold_step: int | None = None
    seed: int | None = None
    cached: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        t = TITLES.get(self.method, self.name)
        if self.method == "random" and self.seed is not None:
            return f"{t} (seed {self.seed})"
        return t if self.name == self.method else f"{t} ({self.name})"

    def summary(self) -> dict:
        """JSON-ready description (order, scores and where they came from)."""
        out = {"method": self.method, "needs": list(self.needs), "order": [int(c) for c in self.order],
               "scores": [float(s) for s in self.scores], "cost_s": round(float(self.cost_s), 4),
               "diagnostic": self.diagnostic, "cached": self.cached}
        if self.threshold_step is not None:
            out["threshold_step"] = self.threshold_step
        if self.seed is not None:
            out["seed"] = self.seed
        out.update(self.extra)
        return out


def _lowest_first(scores: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(scores, kind="stable"))


def _highest_first(scores: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(-scores, kind="stable"))


# ---------------------------------------------------------------------------- parsing
def parse_rankings(text: str) -> list[str]:
    """``"activation,clp"`` → names, checked; one-line error on an unknown or repeated name."""
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not names:
        raise PruneLabError(None, "--rankings needs at least one name (" + ", ".join(RANKINGS) + ")")
    for n in names:
        if n not in RANKINGS:
            raise PruneLabError(None, f"unknown ranking '{n}' (choose from {', '.join(RANKINGS)})")
    if len(set(names)) != len(names):
        raise PruneLabError(None, f"a ranking is named twice in '{text}'")
    return names


def check_available(names: Sequence[str], roles) -> None:
    """Raise a one-line error naming the data a ranking needs but was not given."""
    roles = set(roles)
    for n in names:
        missing = [r for r in NEEDS[n] if r not in roles]
        if missing:
            what = " and ".join(f"{WORDS.get(r, r)} data ({OPTIONS.get(r, r)})" for r in missing)
            raise PruneLabError(None, f"the '{n}' ranking needs {what}")


def random_names(seeds: int) -> list[str]:
    """Names of the random orders: ``random``, or ``random-1`` … ``random-N`` for N > 1."""
    if seeds < 1 or seeds > 1000:
        raise PruneLabError(None, f"--random-seeds must be between 1 and 1000 (got {seeds})")
    return ["random"] if seeds == 1 else [f"random-{k}" for k in range(1, seeds + 1)]


# ---------------------------------------------------------------------------- data-free
def _conv_kernel(model, layer: str) -> np.ndarray:
    """The layer's kernel as (kh, kw, C_in, C_out); a Dense layer's (in, units) as (1, 1, in, units)."""
    k = np.asarray(model.get_layer(layer).get_weights()[0], np.float64)
    return k.reshape((1, 1) + k.shape) if k.ndim == 2 else k


def l1_scores(kernel: np.ndarray) -> np.ndarray:
    """Sum of |w| over each output channel's kernel."""
    return np.abs(np.asarray(kernel, np.float64)).sum(axis=(0, 1, 2))


def clp_scores(kernel: np.ndarray, bn_scale: np.ndarray | None = None) -> np.ndarray:
    """Largest singular value of each channel's kernel as a (C_in, kh·kw) matrix, times
    |γ/sqrt(var+ε)| of a following BatchNormalization (its per-channel gain)."""
    k = np.asarray(kernel, np.float64)
    kh, kw, cin, cout = k.shape
    mats = k.transpose(3, 2, 0, 1).reshape(cout, cin, kh * kw)
    sigma = np.linalg.svd(mats, compute_uv=False)[:, 0]
    if bn_scale is not None:
        sigma = sigma * np.abs(np.asarray(bn_scale, np.float64))
    return sigma


def following_batchnorm_scale(model, layer: str) -> np.ndarray | None:
    """γ/sqrt(var+ε) of the first BatchNormalization in the channel-wise chain after
    ``layer`` (channels last), or None when none follows."""
    from engine.split import Graph

    conv = model.get_layer(layer)
    graph = Graph(model)
    nodes = graph.nodes_of(conv)
    for node in graph.chain(nodes[0].output_tensors[0]) if len(nodes) == 1 else []:
        l = node.operation
        if type(l).__name__ != "BatchNormalization":
            continue
        axis = l.axis if isinstance(l.axis, int) else l.axis[0]
        if axis not in (-1, 3):
            return None
        n = int(np.shape(conv.get_weights()[0])[-1])
        gamma = np.asarray(l.gamma.numpy(), np.float64) if getattr(l, "gamma", None) is not None else np.ones(n)
        var = np.asarray(l.moving_variance.numpy(), np.float64)
        return gamma / np.sqrt(var + float(l.epsilon))
    return None


def l1_ranking(model, layer: str) -> Ranking:
    t = time.perf_counter()
    s = l1_scores(_conv_kernel(model, layer))
    return Ranking("l1", "l1", (), s, _lowest_first(s), time.perf_counter() - t)


def clp_ranking(model, layer: str, u: float = CLP_U) -> Ranking:
    t = time.perf_counter()
    s = clp_scores(_conv_kernel(model, layer), following_batchnorm_scale(model, layer))
    above = int(np.count_nonzero(s > s.mean() + u * s.std()))
    return Ranking("clp", "clp", (), s, _highest_first(s), time.perf_counter() - t, threshold_step=above,
                   extra={"u": u})


def random_rankings(n_channels: int, seeds: int = 1, base_seed: int = 0) -> list[Ranking]:
    """N seeded random orders (seed base_seed + k): the control band."""
    out = []
    for k, name in enumerate(random_names(seeds)):
        t = time.perf_counter()
        s = np.random.default_rng(base_seed + k).random(n_channels)
        out.append(Ranking(name, "random", (), s, _lowest_first(s), time.perf_counter() - t,
                           seed=base_seed + k))
    return out


# ---------------------------------------------------------------------------- from activations
def activation_ranking(mean_activation: dict[str, np.ndarray], cost_s: float = 0.0) -> Ranking:
    t = time.perf_counter()
    s = np.asarray(mean_activation["clean_valid"], np.float64)
    return Ranking("activation", "activation", NEEDS["activation"], s, _lowest_first(s),
                   cost_s + time.perf_counter() - t)


def difference_ranking(mean_activation: dict[str, np.ndarray], cost_s: float = 0.0) -> Ranking:
    check_available(["difference"], mean_activation)
    t = time.perf_counter()
    s = np.asarray(mean_activation["poisoned_valid"], np.float64) - np.asarray(mean_activation["clean_valid"], np.float64)
    return Ranking("difference", "difference", NEEDS["difference"], s, _highest_first(s),
                   cost_s + time.perf_counter() - t, diagnostic=True)


# ---------------------------------------------------------------------------- ANP
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

    from engine import cache

    base = cache.activation_key([model.path, model.weights_path], layer, "anp", dataset.path, 0)
    return cache.derived_key("anp", "logits-v2", base, *astuple(cfg))  # v2: the loss on the logits rule


def anp_ranking(model, dataset, layer: str | None = None, config: ANPConfig | None = None, *,
                use_cache: bool = True, state=None,
                progress: Callable[[int, int], None] | None = None) -> Ranking:
    """Train ANP's masks on ``dataset`` (clean validation; nothing else is read)."""
    gen = anp_events(model, dataset, layer, config, use_cache=use_cache, state=state)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(ev.done, ev.total)


def anp_events(model, dataset, layer: str | None = None, config: ANPConfig | None = None, *,
               use_cache: bool = True, state=None) -> Iterator:
    """ANP as a generator: yields Progress("ranking", …) between iterations and returns the
    Ranking (``StopIteration.value``; ``yield from`` hands it over). Cached by file content."""
    from engine import cache
    from engine.split import make_split

    cfg = config or ANPConfig()
    cfg.check()
    split = make_split(model.model, layer, model.path)
    if split.head is None:
        raise PruneLabError(model.path, f"the 'anp' ranking needs the network after '{split.layer}' to "
                            f"depend on it alone ({split.head_problem})")
    if dataset.label_max >= model.n_classes:
        raise PruneLabError(dataset.path, f"labels go up to {dataset.label_max} but the model has only "
                            f"{model.n_classes} classes")
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
            return Ranking("anp", "anp", NEEDS["anp"], masks, _lowest_first(masks), 0.0, cached=True,
                           seed=cfg.seed, extra=dict(info, train_s=float(hit[-1])))
    t0 = time.perf_counter()
    masks = yield from _train_anp_masks(model, dataset, split, cfg, state)
    cost = time.perf_counter() - t0
    if key:
        cache.store(key, np.concatenate([masks, [cost]]))
    return Ranking("anp", "anp", NEEDS["anp"], masks, _lowest_first(masks), cost, seed=cfg.seed,
                   extra=dict(info, train_s=cost))


def _train_anp_masks(model, dataset, split, cfg: ANPConfig, state) -> Iterator:
    """The ANP loop on the layer: z = (m+δ)·(W∗x) + (1+ξ)·b per channel. Per batch: one
    signed-gradient ascent step on the noise (δ, ξ from uniform [−ε, ε], clipped there), then
    one SGD step with momentum on the masks for α·CE(clean) + (1−α)·CE(perturbed), clipped
    to [0, 1]. The layers before the pruned one are fixed, so their output is computed once."""
    from engine.runtime import Runner
    from engine.split import Graph
    from engine.sweep import Progress
    from engine.tfsetup import keras, tf

    t, k = tf(), keras()
    rng = np.random.default_rng(cfg.seed)
    n = min(cfg.images, dataset.n)
    pick = np.sort(rng.choice(dataset.n, n, replace=False))
    x_img = dataset.take(pick)
    labels = dataset.labels[pick].astype(np.int32)
    conv = split.conv
    # the layer's input and the tensors before the cut that the head also reads (skip
    # connections) do not depend on the masks: computed once
    graph = Graph(model.model)
    node = graph.nodes_of(conv)[0]
    fixed = [node.input_tensors[0]] + list(split.frontier)
    feed = Runner(k.Model(model.model.inputs, fixed))
    parts = [feed(x_img[s:s + 256]) for s in range(0, n, 256)]
    parts = [p if isinstance(p, list) else [p] for p in parts]
    x_in, *x_front = [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(fixed))]
    del x_img, parts
    chain = []
    for c in graph.chain(node.output_tensors[0]):
        chain.append(c.operation)
        if c.output_tensors[0] is split.cut_tensor:
            break
    # the loss is taken on the logits (the one rule of engine.logits): the head up to them
    from engine.logits import logits_of

    spec = logits_of(model.model)
    if spec.tensor is split.cut_tensor:  # the pruned layer feeds the output layer directly
        def head(inputs, training=False):
            return inputs[0] if isinstance(inputs, list) else inputs
    else:
        head = k.Model([split.cut_tensor] + list(split.frontier) if split.frontier else split.cut_tensor,
                       spec.tensor, name="prunelab_anp_logits")
    kernel = t.constant(np.asarray(conv.get_weights()[0], np.float32))
    bias = t.constant(np.asarray(conv.get_weights()[1], np.float32)) if conv.use_bias else None
    c = split.n_channels
    mask = t.Variable(t.ones(c, t.float32))
    vel = t.Variable(t.zeros(c, t.float32))
    eps, alpha, lr, mom = (float(v) for v in (cfg.eps, cfg.alpha, cfg.lr, cfg.momentum))

    def forward(x, front, scale, bias_scale):
        z = (conv.convolution_op(x, kernel) if kernel.shape.rank == 4 else t.matmul(x, kernel)) * scale
        if bias is not None:
            z = z + bias * bias_scale
        a = conv.activation(z) if conv.activation is not None else z
        for layer in chain:
            a = layer(a, training=False)
        out = head([a] + list(front) if front else a, training=False)
        return spec.apply(out[0] if isinstance(out, (list, tuple)) else out)

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


# ---------------------------------------------------------------------------- running them
@dataclass(frozen=True)
class RankingStep:
    """A step record of one ranking's sweep (the window routes it to that ranking's curve)."""

    name: str
    record: object  # engine.sweep.StepRecord


def expand_names(names: Sequence[str], random_seeds: int = 1) -> list[str]:
    """Ranking names with ``random`` expanded into its seeds' names."""
    out: list[str] = []
    for n in names:
        out += random_names(random_seeds) if n == "random" else [n]
    return out


class RankingSweeps:
    """Compute each ranking and sweep in its order, in the order given; the first ranking's
    sweep computes (or loads from the cache) the activations and the later sweeps read them
    from the cache. ``events()`` yields Progress (text prefixed with the ranking's name) and
    :class:`RankingStep`; afterwards ``rankings`` and ``results`` map name → Ranking/SweepResult."""

    def __init__(self, model, datasets: dict, names: Sequence[str], layer: str | None = None,
                 thresholds=None, *, random_seeds: int = 1, seed: int = 0, method: str = "auto",
                 use_cache: bool = True, state=None, anp: ANPConfig | None = None,
                 max_steps: int | None = None, step_size: int | str = 1):
        from engine.state import JobState
        from engine.sweep import DEFAULT_THRESHOLDS

        self.model = model
        self.datasets = {r: d for r, d in datasets.items() if d is not None}
        self.names = list(names)
        for n in self.names:
            if n not in RANKINGS:
                raise PruneLabError(None, f"unknown ranking '{n}' (choose from {', '.join(RANKINGS)})")
        check_available(self.names, self.datasets)
        self.expanded = expand_names(self.names, random_seeds)
        self.layer = layer
        self.thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
        self.random_seeds, self.seed = random_seeds, seed
        self.method, self.use_cache, self.max_steps, self.step_size = method, use_cache, max_steps, step_size
        self.state = state or JobState()
        self.anp = anp or ANPConfig(seed=seed)
        self.rankings: dict[str, Ranking] = {}
        self.results: dict = {}
        self.means: dict[str, np.ndarray] = {}
        # every one-line input error (layer, thresholds, labels, memory) now, not mid-way
        check = self._sweep(max_steps=0)
        self.layer, self.n_channels = check.split.layer, check.n_channels

    def _sweep(self, order=None, max_steps=None):
        from engine.sweep import Sweep

        return Sweep(self.model, self.datasets, self.layer, self.thresholds, method=self.method,
                     use_cache=self.use_cache, state=self.state, order=order, step_size=self.step_size,
                     max_steps=self.max_steps if max_steps is None else max_steps)

    def _tagged(self, name: str, events) -> Iterator:
        from dataclasses import replace

        from engine.sweep import Progress

        for ev in events:
            yield replace(ev, text=f"{name}: {ev.text}") if isinstance(ev, Progress) else RankingStep(name, ev)

    def _compute(self, method: str) -> Iterator:
        """Yield progress; return the method's ranking(s) (several for ``random``)."""
        from engine.sweep import Progress

        cost = 0.0  # the activations are already known (from an earlier sweep) unless measured here
        if method in ("activation", "difference") and any(r not in self.means for r in NEEDS[method]):
            t = time.perf_counter()
            sw = self._sweep(max_steps=0)  # activations only (cached for the sweeps after it)
            for ev in self._tagged(method, sw.events()):
                if isinstance(ev, Progress):
                    yield ev
            self.means.update(sw.result.mean_activation)
            cost = time.perf_counter() - t
        model, layer = self.model.model, self.layer
        if method == "activation":
            return [activation_ranking(self.means, cost)]
        if method == "difference":
            return [difference_ranking(self.means, cost)]
        if method == "l1":
            return [l1_ranking(model, layer)]
        if method == "clp":
            return [clp_ranking(model, layer)]
        if method == "random":
            return random_rankings(self.n_channels, self.random_seeds, self.seed)
        return [(yield from anp_events(self.model, self.datasets["clean_valid"], layer, self.anp,
                                       use_cache=self.use_cache, state=self.state))]

    def events(self) -> Iterator:
        for method in self.names:
            if method == "activation" and not self.means:
                # the lab's ranking first: the sweep itself measures the activations
                t = time.perf_counter()
                sw = self._sweep()
                yield from self._tagged("activation", sw.events())
                res = sw.result
                self.means.update(res.mean_activation)
                rk = activation_ranking(self.means, res.timings.get("activations", time.perf_counter() - t))
                self.rankings[rk.name], self.results[rk.name] = rk, res
                continue
            for rk in (yield from self._compute(method)):
                self.rankings[rk.name] = rk
                sw = self._sweep(order=rk.order)
                yield from self._tagged(rk.name, sw.events())
                self.results[rk.name] = sw.result
                for r, m in sw.result.mean_activation.items():
                    self.means.setdefault(r, m)

    def run(self) -> "RankingSweeps":
        for _ in self.events():
            pass
        return self
