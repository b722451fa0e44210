"""The blind scan: reverse-engineer a trigger per label from clean data alone (Neural Cleanse).

For a candidate target t, find the smallest mask m (H×W, in [0, 1]) and pattern p (H×W×3, 0–255)
such that x′ = (1 − m)⊙x + m⊙p (:func:`engine.analysis.trigger.stamp`) sends clean images of the other
classes to t. A backdoored label needs a far smaller mask than the others: with the masks' L1
norms, med = median, MAD = 1.4826·median(|L1 − med|), anomaly index A_t = |L1_t − med| / MAD;
t is flagged when L1_t < med, A_t > 2 and its trigger really works (attack success on held-out
clean images ≥ 50 %).

Budget (the reference spends up to ~30,000 updates on each label):

* pre-screen (K-Arm's idea): one forward pass over the clean images; a label that sits in the
  top-k (k = classes / 4) of many clean images is a likely all-to-one target. The most frequent
  labels are the candidates;
* a seeded random sample of the other labels is optimised as well, as the reference population:
  each of them stands for (other labels / sample) labels in a weighted median and MAD, so the
  anomaly index estimates the one Neural Cleanse computes over every label;
* the optimised labels run in groups, all labels of a group in ONE batched forward/backward
  (variables G×H×W and G×H×W×3, the same clean images under every label's trigger), with the
  weight of the mask term adapted per label (Neural Cleanse's schedule) and an early stop per
  label once its smallest working mask stops shrinking.

Nothing here reads or writes files, draws figures or parses arguments (see
:mod:`engine.report.scan` and :mod:`engine.cli.main`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from engine.core.errors import PruneLabError
from engine.io.protocol import Dataset
from engine.pruning.rules import check_labels_in_range
from engine.analysis.scanresult import (ANOMALY_THRESHOLD, MIN_ATTACK_SUCCESS, LabelScan, ScanResult,
                                        anomaly_indices, prescreen_scores)
from engine.analysis.trigger import Trigger

MIN_CLEAN_IMAGES = 40   # at least 24 to optimise on and 16 held out to measure attack success
MIN_LABELS = 3          # the anomaly index needs a population
GROUP = 32              # labels per batched optimisation
BATCH = 16              # clean images per label per step
STEPS = 300             # most steps per label (early stop below that)
DEFAULT_LABELS = 64     # labels optimised by default (candidates + reference)
POOL_MAX = 2048         # clean images drawn from to optimise
HELD_MAX = 512          # held-out clean images to measure attack success


# ----------------------------------------------------------------------------- checks
def _score_fn(model, path):
    """A function x (model input) → class scores before the softmax (the one logits rule of
    :mod:`engine.models.logits`); refuses models whose output is not a classification."""
    from engine.models.logits import logits_function, logits_of

    spec = logits_of(model)
    if spec.kind == "output":
        act = getattr(spec.layer, "activation", None)
        act_name = getattr(act, "__name__", "linear") if act is not None else "linear"
        if act_name not in ("linear", "log_softmax"):
            raise PruneLabError(path, f"has no classification output: its last layer '{spec.layer.name}' "
                                f"({type(spec.layer).__name__}, activation {act_name}) does not give class scores "
                                "(softmax or logits)")
    return logits_function(model, name="prunelab_scan_logits")


def check_scan_inputs(model, clean_valid: Dataset, labels: Sequence[int] | None = None) -> list[int] | None:
    """The one-line errors the scan raises before any work; returns the labels checked."""
    path = getattr(clean_valid, "path", None)
    if not getattr(clean_valid, "has_labels", True):
        raise PruneLabError(path, "has no labels; the scan needs clean images with their true classes "
                            "(class subfolders, classes.txt or 'label=N' in the file names)")
    if clean_valid.n < MIN_CLEAN_IMAGES:
        raise PruneLabError(path, f"holds {clean_valid.n} clean images; the scan needs at least "
                            f"{MIN_CLEAN_IMAGES} ({MIN_CLEAN_IMAGES - 16} to optimise on, 16 held out)")
    check_labels_in_range(clean_valid, model.n_classes)
    clean_valid.expect(model.input_hwc)
    if labels is not None:
        labels = sorted({int(t) for t in labels})
        bad = [t for t in labels if not 0 <= t < model.n_classes]
        if bad:
            raise PruneLabError(None, f"label {bad[0]} is not a class of the model (0–{model.n_classes - 1})")
        if len(labels) < MIN_LABELS:
            raise PruneLabError(None, f"scan at least {MIN_LABELS} labels (got {len(labels)}): the anomaly "
                                "index compares each label's mask with the others'")
    if model.n_classes < MIN_LABELS:
        raise PruneLabError(model.path, f"has {model.n_classes} classes; the scan needs at least {MIN_LABELS}")
    return labels


def _check_classifier(model) -> None:
    _score_fn(model.model, model.path)


# ----------------------------------------------------------------------------- the scan
def plan_labels(n_classes: int, scores: np.ndarray, n_opt: int, rng: np.random.Generator
                ) -> tuple[list[int], list[int]]:
    """(candidates, reference): the top half of ``n_opt`` by pre-screen score, then a seeded
    random sample of the other labels."""
    if n_opt >= n_classes:
        return list(range(n_classes)), []
    n_cand = max(1, (n_opt + 1) // 2)
    order = np.argsort(-scores, kind="stable")
    cand = [int(t) for t in order[:n_cand]]
    rest = np.array(sorted(set(range(n_classes)) - set(cand)))
    ref = [int(t) for t in rng.choice(rest, n_opt - n_cand, replace=False)]
    return cand, ref


def scan_events(model, clean_valid: Dataset, *, labels: Sequence[int] | None = None, seed: int = 0,
                budget: int | None = None, state=None) -> Iterator:
    """The scan as a generator: yields :class:`engine.core.state.Progress` and returns the
    :class:`ScanResult` (``StopIteration.value``; ``yield from`` hands it over).

    ``labels``: the labels to optimise (default: pre-screened candidates plus a random reference
    sample). ``budget``: optimisation steps in all (label-steps); by default
    ``64 labels × 300 steps``; it sets how many labels are optimised when ``labels`` is None."""
    from engine.core.state import Progress

    t0 = time.perf_counter()
    labels = check_scan_inputs(model, clean_valid, labels)
    _check_classifier(model)
    if budget is not None and int(budget) < MIN_LABELS * 20:
        raise PruneLabError(None, f"--budget {budget} is too small: give at least {MIN_LABELS * 20} "
                            "optimisation steps")
    n_classes = model.n_classes
    budget = int(budget) if budget is not None else DEFAULT_LABELS * STEPS
    rng = np.random.default_rng([int(seed), 22])

    # ---- the clean images: an optimisation pool and a held-out part, both seeded
    n = clean_valid.n
    perm = rng.permutation(n)
    n_held = int(min(HELD_MAX, max(16, n // 5)))
    held_idx = np.sort(perm[:n_held])
    pool_idx = np.sort(perm[n_held:n_held + POOL_MAX])
    yield Progress("screening", 0, 2, "reading the clean images")
    if state is not None:
        state.cancel_point()
    x_pool = clean_valid.take(pool_idx)
    y_pool = clean_valid.labels[pool_idx].astype(np.int64)
    x_held = clean_valid.take(held_idx)
    y_held = clean_valid.labels[held_idx].astype(np.int64)

    # ---- pre-screen: one forward pass over the pool
    from engine.models.runner import Runner

    run = Runner(model.model)
    probs = np.concatenate([np.asarray(run(model.model_input(x_pool[s:s + 512])))
                            for s in range(0, len(x_pool), 512)])
    if state is not None:
        state.cancel_point()
    screen = prescreen_scores(probs)
    yield Progress("screening", 1, 2, "pre-screen: top-k frequency of the clean predictions")

    opt, roles, steps_cap = _plan(labels, n_classes, screen, budget, rng)
    yield Progress("screening", 2, 2, f"{len(opt)} labels to optimise, up to {steps_cap} steps each")
    found = yield from _optimise(model, x_pool, y_pool, rng, opt, steps_cap, state)
    rows, triggers_all = yield from _check_triggers(run, model, x_held, y_held, opt, found, screen, roles, state)
    flagged, med, mad = _flag(rows, n_classes)
    keep = set(flagged) | {r.label for r in rows[:3]}
    screened = [LabelScan(int(t), None, None, None, True, float(screen[t]), 0, "screened")
                for t in range(n_classes) if t not in roles]
    screened.sort(key=lambda r: (-r.screen_score, r.label))
    spent = sum(r.steps for r in rows)
    return ScanResult(
        verdict="backdoor" if flagged else "clean", flagged=flagged, labels=rows + screened,
        triggers={t: triggers_all[t] for t in keep}, seconds=time.perf_counter() - t0,
        input_scale=float(model.input_scale), steps_per_label=spent / max(1, len(rows)),
        n_classes=n_classes, clean_images=int(len(pool_idx)), held_out_images=int(n_held), seed=int(seed),
        budget=budget, median_l1=med, mad_l1=mad,
        extra={"total_steps": int(spent), "group_size": GROUP, "batch_per_label": BATCH,
               "max_steps_per_label": steps_cap})


def _plan(labels, n_classes: int, screen: np.ndarray, budget: int, rng) -> tuple[list[int], dict[int, str], int]:
    """The labels to optimise (the given ones, else pre-screened candidates plus a random
    reference sample), each one's role, and the steps each gets within ``budget``."""
    if labels is not None:
        opt = list(labels)
        roles = {t: "given" for t in opt}
    else:
        n_opt = int(min(n_classes, max(MIN_LABELS, budget // STEPS)))
        cand, ref = plan_labels(n_classes, screen, n_opt, rng)
        roles = {t: "candidate" for t in cand}
        roles.update({t: "reference" for t in ref})
        opt = cand + ref
    return opt, roles, int(max(20, min(STEPS, budget // len(opt))))


def _optimise(model, x_pool, y_pool, rng, opt: list[int], steps_cap: int, state) -> Iterator:
    """Batched Neural Cleanse over groups of labels; returns label -> (mask, pattern, L1, steps)."""
    from engine.core.state import Progress

    total = len(opt) * steps_cap
    done_steps = 0
    found: dict[int, tuple[np.ndarray, np.ndarray, float, int]] = {}
    opt_ctx = _Optimiser(model, x_pool, y_pool, rng)
    for g0 in range(0, len(opt), GROUP):
        group = opt[g0:g0 + GROUP]
        for ev in opt_ctx.run_group(group, steps_cap, state):
            yield Progress("optimising", done_steps + ev, total, f"labels {g0 + 1}–{g0 + len(group)} of {len(opt)}")
        done_steps += len(group) * steps_cap
        found.update(opt_ctx.results)
        yield Progress("optimising", done_steps, total, f"labels {g0 + 1}–{g0 + len(group)} of {len(opt)}")
    return found


def _check_triggers(run, model, x_held, y_held, opt: list[int], found: dict, screen, roles: dict,
                    state) -> Iterator:
    """Each best trigger's attack success on held-out images of other classes; returns (one
    LabelScan per optimised label, label -> Trigger)."""
    from engine.core.state import Progress

    rows: list[LabelScan] = []
    triggers_all: dict[int, Trigger] = {}
    for i, t in enumerate(opt):
        if state is not None:
            state.cancel_point()
        mask, pattern, l1, steps = found[t]
        trig = Trigger(mask, pattern, int(t))
        triggers_all[t] = trig
        others = y_held != t
        asr = _attack_success(run, model, x_held[others], trig) if others.any() else 0.0
        rows.append(LabelScan(int(t), float(l1), float(asr), None, False, float(screen[t]), int(steps), roles[t]))
        if (i + 1) % 8 == 0 or i + 1 == len(opt):
            yield Progress("checking", i + 1, len(opt), "attack success on held-out clean images")
    return rows, triggers_all


def _flag(rows: list[LabelScan], n_classes: int) -> tuple[list[int], float, float]:
    """Set each row's anomaly index (references weighted for the labels not optimised), sort the
    rows most suspicious first; returns (the flagged labels, most suspicious first, median and MAD
    of the masks' L1)."""
    n_ref = sum(1 for r in rows if r.role == "reference")
    n_rest = n_classes - sum(1 for r in rows if r.role == "candidate")
    weights = [n_rest / n_ref if r.role == "reference" else 1.0 for r in rows] if n_ref else None
    a, med, mad = anomaly_indices(np.array([r.mask_l1 for r in rows]), weights)
    for r, ai in zip(rows, a):
        r.anomaly_index = float(ai)
    flagged = [r.label for r in rows if r.mask_l1 < med and r.anomaly_index > ANOMALY_THRESHOLD
               and r.attack_success >= MIN_ATTACK_SUCCESS]
    rows.sort(key=lambda r: (-r.anomaly_index, r.label))
    flagged.sort(key=lambda t: -next(r.anomaly_index for r in rows if r.label == t))
    return flagged, med, mad


def run_scan(model, clean_valid, *, labels: Sequence[int] | None = None, seed: int = 0,
             budget: int | None = None, state=None, progress=None) -> ScanResult:
    """Drive :func:`scan_events` to the end; ``progress(Progress)`` sees each event."""
    from engine.core.state import drive

    return drive(scan_events(model, clean_valid, labels=labels, seed=seed, budget=budget, state=state), progress)


def _attack_success(run, model, x: np.ndarray, trig: Trigger) -> float:
    from engine.analysis.trigger import stamp

    hits = 0
    for s in range(0, len(x), 512):
        p = np.asarray(run(model.model_input(stamp(x[s:s + 512], trig))))
        hits += int((p.argmax(axis=1) == trig.label).sum())
    return hits / max(1, len(x))


class _Optimiser:
    """Neural Cleanse for a group of labels at once. Per label: mask m = tanh(a)/2 + 1/2,
    pattern p = 255·(tanh(b)/2 + 1/2); loss = CE(f(x′), t) + λ_t·‖m‖₁ over the same batch of clean
    images for every label (images of class t weigh nothing for t); Adam (lr 0.1, β 0.5/0.9).
    λ_t starts at 0; once the trigger succeeds it is set to λ0 and then raised ×1.5 while the
    success over the last ``ADAPT_EVERY`` batches stays ≥ 97 %, lowered ÷1.5^1.5 otherwise. The
    smallest mask with that success is kept. A label stops when that mask has not shrunk by
    1 % in ``PATIENCE`` steps after λ has moved both ways."""

    LR = 0.1
    BETA1, BETA2 = 0.5, 0.9
    LAMBDA0 = 1e-3
    SUCCESS = 0.97
    ADAPT_EVERY = 5
    PATIENCE = 60

    def __init__(self, model, x_pool, y_pool, rng):
        from engine.core.tfsetup import tf

        self.t = tf()
        self.model = model
        self.x_pool = x_pool
        self.y_pool = y_pool
        self.rng = rng
        self.h, self.w, self.c = model.input_hwc
        self.scores = _score_fn(model.model, model.path)
        self.scale = float(model.input_scale) / 255.0
        self.results: dict[int, tuple[np.ndarray, np.ndarray, float, int]] = {}
        self._step = self._make_step()

    def _make_step(self):
        t = self.t
        scores, scale = self.scores, self.scale
        b1, b2, lr = self.BETA1, self.BETA2, self.LR

        @t.function(reduce_retracing=True)
        def step(a, b, ma, va, mb, vb, it, x, yimg, target, lam, active):
            # a: G×H×W, b: G×H×W×C; x: B×H×W×C (0–255); target, lam, active: G
            g = t.shape(a)[0]
            nb = t.shape(x)[0]
            with t.GradientTape() as tape:
                tape.watch([a, b])
                m = t.tanh(a) / 2.0 + 0.5
                p = 255.0 * (t.tanh(b) / 2.0 + 0.5)
                mm = m[:, None, :, :, None]
                xs = (1.0 - mm) * x[None] + mm * p[:, None]
                xs = t.reshape(xs, t.concat([[g * nb], t.shape(x)[1:]], 0)) * scale
                z = scores(xs)
                tg = t.repeat(target, nb)
                ce = t.nn.sparse_softmax_cross_entropy_with_logits(tg, z)
                ce = t.reshape(ce, [g, nb])
                wgt = t.cast(t.not_equal(yimg[None, :], target[:, None]), t.float32)
                ce_l = t.reduce_sum(ce * wgt, 1) / t.maximum(t.reduce_sum(wgt, 1), 1.0)
                l1 = t.reduce_sum(m, [1, 2])
                loss = t.reduce_sum((ce_l + lam * l1) * active)
            ga, gb = tape.gradient(loss, [a, b])
            hit = t.cast(t.equal(t.argmax(t.reshape(z, [g, nb, -1]), -1, output_type=t.int32),
                                 target[:, None]), t.float32)
            succ = t.reduce_sum(hit * wgt, 1) / t.maximum(t.reduce_sum(wgt, 1), 1.0)
            ma = b1 * ma + (1 - b1) * ga
            va = b2 * va + (1 - b2) * ga * ga
            mb = b1 * mb + (1 - b1) * gb
            vb = b2 * vb + (1 - b2) * gb * gb
            c1 = 1.0 - t.pow(b1, it)
            c2 = 1.0 - t.pow(b2, it)
            act3 = active[:, None, None]
            a = a - act3 * lr * (ma / c1) / (t.sqrt(va / c2) + 1e-8)
            b = b - act3[..., None] * lr * (mb / c1) / (t.sqrt(vb / c2) + 1e-8)
            return a, b, ma, va, mb, vb, succ, l1

        return step

    def run_group(self, group: list[int], steps: int, state) -> Iterator[int]:
        """Optimise the labels of ``group``; yields the label-steps done so far; fills ``results``.
        Labels that stop early leave the batch, so the others' steps get cheaper."""
        t, rng = self.t, self.rng
        g, h, w, c = len(group), self.h, self.w, self.c
        # start: a near-empty mask (m ≈ 0.0025 everywhere) and a random pattern, from the seed
        a0 = rng.normal(-3.0, 0.1, (g, h, w)).astype(np.float32)
        b0 = rng.normal(0.0, 0.5, (g, h, w, c)).astype(np.float32)
        a, b = t.constant(a0), t.constant(b0)
        ma, va, mb, vb = t.zeros_like(a), t.zeros_like(a), t.zeros_like(b), t.zeros_like(b)
        rows = np.arange(g)                      # tensor row -> position in group
        tr = _Track.start(a0, b0)
        npool = len(self.x_pool)
        last_report = 0
        for it in range(1, steps + 1):
            if state is not None:
                state.cancel_point()
            pick = rng.choice(npool, min(BATCH, npool), replace=False)
            x = t.constant(self.x_pool[pick])
            yimg = t.constant(self.y_pool[pick].astype(np.int32))
            target = t.constant(np.array([group[j] for j in rows], np.int32))
            a_in, b_in = a, b
            a, b, ma, va, mb, vb, succ, l1 = self._step(
                a, b, ma, va, mb, vb, t.constant(float(it)), x, yimg, target, t.constant(tr.lam[rows]),
                t.constant(np.ones(len(rows), np.float32)))
            succ, l1 = succ.numpy(), l1.numpy()
            tr.used[rows] += 1
            tr.succ_sum[rows] += succ
            stop = np.zeros(len(rows), bool)
            if it % self.ADAPT_EVERY == 0:
                stop = self._adapt(tr, rows, it, l1, a_in, b_in)
            if it - last_report >= 10 or it == steps:
                last_report = it
                yield int(tr.used.sum())
            if it == steps:
                tr.last_a[rows], tr.last_b[rows] = a.numpy(), b.numpy()
            elif stop.any():
                keep = np.flatnonzero(~stop)
                gone = np.flatnonzero(stop)
                an, bn = a.numpy(), b.numpy()
                tr.last_a[rows[gone]], tr.last_b[rows[gone]] = an[gone], bn[gone]
                if not len(keep):
                    break
                kt = t.constant(keep.astype(np.int32))
                a, b, ma, va, mb, vb = (t.gather(v, kt) for v in (a, b, ma, va, mb, vb))
                rows = rows[keep]
        self._keep_best(group, tr)

    def _adapt(self, tr: "_Track", rows: np.ndarray, it: int, l1: np.ndarray, a_in, b_in) -> np.ndarray:
        """Every ``ADAPT_EVERY`` steps: keep the smallest working masks, move λ, and say which of
        the labels still in the batch (``rows``) stop now."""
        mean_succ = tr.succ_sum[rows] / self.ADAPT_EVERY
        tr.succ_sum[:] = 0
        # keep the smallest working mask: the trigger worked on the window's images
        # (as Neural Cleanse judges an epoch), this step's mask before its update
        better = (mean_succ >= self.SUCCESS) & (l1 < tr.best_l1[rows])
        if better.any():
            pos = np.flatnonzero(better)
            js = rows[pos]
            tr.best_a[js] = a_in.numpy()[pos]
            tr.best_b[js] = b_in.numpy()[pos]
            tr.best_l1[js] = l1[pos]
            tr.best_at[js] = it
        first = ~tr.ever[rows] & (mean_succ >= self.SUCCESS)
        up = tr.ever[rows] & (mean_succ >= self.SUCCESS)
        down = tr.ever[rows] & (mean_succ < self.SUCCESS)
        tr.lam[rows[first]] = self.LAMBDA0
        tr.ever[rows[first]] = True
        tr.lam[rows[up]] *= 1.5
        tr.lam[rows[down]] /= 1.5 ** 1.5
        tr.moved_up[rows[up]] = True
        tr.moved_down[rows[down]] = True
        # early stop: λ has moved both ways and the best mask stalls
        return tr.moved_up[rows] & tr.moved_down[rows] & np.isfinite(tr.best_l1[rows]) & \
            (it - tr.best_at[rows] >= self.PATIENCE)

    def _keep_best(self, group: list[int], tr: "_Track") -> None:
        for j, lab in enumerate(group):
            if not np.isfinite(tr.best_l1[j]):  # never succeeded: the last mask, L1 as it is
                tr.best_a[j], tr.best_b[j] = tr.last_a[j], tr.last_b[j]
            mask = (np.tanh(tr.best_a[j]) / 2.0 + 0.5).astype(np.float32)
            pattern = (255.0 * (np.tanh(tr.best_b[j]) / 2.0 + 0.5)).astype(np.float32)
            self.results[int(lab)] = (mask, pattern, float(mask.sum()), int(tr.used[j]))


@dataclass
class _Track:
    """Per label of a group being optimised: λ, the best (smallest working) mask so far and the
    step it was found at, the last mask, the success window, λ's moves and the steps used."""

    best_a: np.ndarray
    best_b: np.ndarray
    last_a: np.ndarray
    last_b: np.ndarray
    lam: np.ndarray
    best_l1: np.ndarray
    best_at: np.ndarray
    succ_sum: np.ndarray
    moved_up: np.ndarray
    moved_down: np.ndarray
    ever: np.ndarray
    used: np.ndarray

    @classmethod
    def start(cls, a0: np.ndarray, b0: np.ndarray) -> "_Track":
        g = len(a0)
        return cls(a0.copy(), b0.copy(), a0.copy(), b0.copy(), np.zeros(g, np.float32), np.full(g, np.inf),
                   np.zeros(g, np.int64), np.zeros(g), np.zeros(g, bool), np.zeros(g, bool), np.zeros(g, bool),
                   np.zeros(g, np.int64))
