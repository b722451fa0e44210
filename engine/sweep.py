"""The pruning sweep as a generator of per-step records.

Step 0 is the unpruned model. With the default step size of 1, step s has the s
lowest-ranked channels pruned. With a step size of K channels (``step_size=K`` or ``"P%"``
of the layer), a step prunes the next K channels; where a step first reaches a drop
threshold, the channels inside it are tried one by one, in order, up to the one where the
drop is first reached, and each of those gets its own record. So ``StepRecord.step`` is the
record's position (the row of ``SweepResult.predictions``, the index in ``records``, what a
checkpoint's ``step`` names) and ``StepRecord.pruned`` is how many channels it prunes (the
first ``pruned`` of ``SweepResult.order``); with step size 1 the two are equal. The fast
path caches the activations at the cut once (see :mod:`engine.split`), then per step
re-evaluates only the head, and only for the images whose pruned channel was not already
at its pruned value everywhere — for every other image nothing the network sees has
changed, so its prediction is bit-for-bit what the naive loop would compute."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np

from engine.data import ROLES, LabDataset
from engine.errors import PruneLabError, warn
from engine.memory import check_fits
from engine.models import LoadedModel
from engine.pruning import evaluate_labels, goodnet_labels, pct, zeroed_weights
from engine.state import JobState
from engine.thresholds import DEFAULT_THRESHOLDS, reached, validate_thresholds

METRICS = ("clean_valid_acc", "asr_valid", "clean_test_acc", "asr_test")
ROLE_METRIC = dict(zip(ROLES, METRICS))
FRONTIER_KEY = "frontier"  # cache entries of the tensors before the cut that the head reads
PREFIX_BATCH = 256  # small: conv_1's output for 1024 images alone is ~190 MB
HEAD_BATCH = 2048  # the head is cheap per image; big batches keep every core busy


@dataclass(frozen=True)
class Progress:
    phase: str  # "activations" | "steps"
    done: int
    total: int
    text: str = ""


@dataclass(frozen=True)
class StepRecord:
    """One step's metrics. Immutable: when another dataset's metrics for the same step
    arrive, the sweep yields a new record for that step (the window replaces the old one)."""

    step: int
    channel: int | None
    fraction_pruned: float
    clean_valid_acc: float | None = None
    asr_valid: float | None = None
    clean_test_acc: float | None = None
    asr_test: float | None = None
    recomputed: int = 0  # images whose head was evaluated at this step (all roles)
    reached: tuple[float, ...] = ()  # thresholds first reached at this step
    total_steps: int = 0  # steps the sweep plans (without the channel-by-channel refinements)
    pruned: int | None = None  # channels pruned (the first ``pruned`` of the order); None: ``step``
    channels: tuple[int, ...] = ()  # channels pruned since the previous record (``channel``: the last)

    def __post_init__(self):
        if self.pruned is None:
            object.__setattr__(self, "pruned", self.step)

    def metric(self, key: str) -> float | None:
        return getattr(self, key)

    def csv_row(self) -> list[str]:
        def cell(v):
            return "" if v is None else f"{v:.6f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)

        return [str(self.step), "" if self.channel is None else str(self.channel),
                f"{self.fraction_pruned:.6f}".rstrip("0").rstrip(".") if self.fraction_pruned else "0"] + \
               [cell(self.metric(m)) for m in METRICS] + [str(self.pruned)]


@dataclass
class Checkpoint:
    threshold: float
    step: int | None  # the record (row) where the drop is first reached; None: never reached
    pruned: int | None = None  # channels pruned there (equals ``step`` with step size 1)

    @property
    def label(self) -> str:
        return f"{self.threshold:g} %"


@dataclass
class SweepResult:
    model_path: str
    layer: str
    measured_at: str
    n_channels: int
    n_classes: int
    order: list[int]
    mean_activation: dict[str, np.ndarray]
    records: list[StepRecord]
    predictions: dict[str, np.ndarray]  # role -> (steps+1, N) int32
    labels: dict[str, np.ndarray]
    thresholds: tuple[float, ...]
    checkpoints: list[Checkpoint]
    method: str
    timings: dict[str, float] = field(default_factory=dict)
    dataset_paths: dict[str, str] = field(default_factory=dict)
    complete: bool = True
    step_size: int = 1  # channels pruned per planned step
    fallback_reason: str | None = None  # why the naive loop ran although the fast path was asked for

    @property
    def steps(self) -> int:
        return len(self.records) - 1

    @property
    def flag_class(self) -> int:
        return self.n_classes

    def pruned_at(self, step: int) -> int:
        """How many channels record ``step`` prunes (see :func:`pruned_count`)."""
        return pruned_count(self.pruned_per_record(), step)

    def pruned_per_record(self) -> list[int]:
        return [int(r.pruned) for r in self.records]

    def pruned_channels(self, step: int) -> list[int]:
        """The channels pruned at record ``step`` (its ``pruned`` first channels of the order)."""
        return list(self.order[:self.pruned_at(step)])

    def bprime_labels(self, role: str, step: int) -> np.ndarray:
        return self.predictions[role][step]

    def goodnet_labels(self, role: str, step: int) -> np.ndarray:
        return goodnet_labels(self.predictions[role][0], self.predictions[role][step], self.flag_class)

    def evaluate_step(self, step: int) -> dict[str, dict[str, float]]:
        """B' and G at ``step`` on every loaded dataset: accuracy/ASR, flagged shares."""
        return {role: evaluate_labels(self.predictions[role][0], self.predictions[role][step], y,
                                      self.flag_class, role.startswith("poisoned"))
                for role, y in self.labels.items()}

    def checkpoint_step(self, threshold: float) -> int | None:
        for c in self.checkpoints:
            if c.threshold == threshold:
                return c.step
        return None


def pruned_count(pruned_per_record: Sequence[int] | None, step: int) -> int:
    """THE rule "record → channels pruned": record ``step`` prunes ``pruned_per_record[step]``
    channels (the first ones of the pruning order). With a step size above 1 this is not
    ``step``; only without a per-record list (a sweep of step size 1) is it ``step`` itself.
    Every place that turns a record (a checkpoint, ``finetune --step``, the window's cursor)
    into pruned channels goes through here."""
    step = int(step)
    if pruned_per_record is None:
        return step
    if not 0 <= step < len(pruned_per_record):
        raise PruneLabError(None, f"step {step} is outside the sweep (0–{len(pruned_per_record) - 1})")
    return int(pruned_per_record[step])


def summary_pruned_per_record(summary: dict) -> list[int] | None:
    """The per-record channel counts a sweep's ``summary.json`` carries (``pruned``); for a
    summary written before they were recorded: None when its step size was 1 (record =
    count), else an error naming what is missing."""
    per = summary.get("pruned")
    if per is not None:
        return [int(v) for v in per]
    # older summaries have no step size either: their checkpoints tell whether records were channels
    stepped = any(cp.get("step") is not None and len(cp.get("pruned_channels", [])) != cp["step"]
                  for cp in summary.get("checkpoints", []))
    if int(summary.get("step_size", 1)) == 1 and not stepped:
        return None
    raise PruneLabError(None, "this sweep's summary.json has no 'pruned' list (channels pruned per "
                        "record); run the sweep again")


def mean_abs_per_channel(a: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Mean |activation| per channel over images and positions, without a full-size temporary
    (any rank: a Dense layer's output has no positions)."""
    total = np.zeros(a.shape[-1], np.float64)
    axes = tuple(range(a.ndim - 1))
    for s in range(0, len(a), chunk):
        total += np.abs(a[s:s + chunk]).sum(axis=axes, dtype=np.float64)
    return total / max(1, int(np.prod(a.shape[:-1])))


def parse_step_size(value, n_channels: int) -> int:
    """Channels per step: a whole number K ≥ 1, or ``"P%"`` of the layer's channels (rounded
    up, at least 1)."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct_ = float(text[:-1])
            if not 0 < pct_ <= 100:
                raise ValueError
            return max(1, math.ceil(round(pct_ * n_channels / 100, 9)))
        k = int(text)
        if k < 1:
            raise ValueError
        return k
    except ValueError:
        raise PruneLabError(None, f"step size '{value}': give a whole number of channels (1 or more) or a "
                            "percentage of the layer such as 10%") from None


class Sweep:
    """Validate inputs up front; ``events()`` then yields Progress and StepRecord objects and
    leaves the :class:`SweepResult` in ``self.result``."""

    def __init__(self, model: LoadedModel, datasets: dict[str, LabDataset], layer: str | None = None,
                 thresholds=DEFAULT_THRESHOLDS, *, method: str = "auto", use_cache: bool = True,
                 state: JobState | None = None, max_steps: int | None = None,
                 order: Sequence[int] | None = None, step_size: int | str = 1):
        from engine.split import make_split

        self.model = model
        self.datasets = {r: d for r, d in datasets.items() if d is not None}
        for r in self.datasets:
            if r not in ROLES:
                raise PruneLabError(None, f"unknown dataset role '{r}'")
        if "clean_valid" not in self.datasets:
            raise PruneLabError(None, "the ranking needs clean validation data (--clean-valid)")
        try:
            self.thresholds = validate_thresholds(thresholds)
        except ValueError as e:
            raise PruneLabError(None, str(e)) from None
        self.state = state or JobState()
        self._head_runner = None  # the fast path's step graph, traced once per sweep
        self.use_cache = use_cache
        self.result: SweepResult | None = None
        for role, ds in self.datasets.items():
            ds.expect(model.input_hwc)
            self._check_labels(role, ds)
        self.split = make_split(model.model, layer, model.path)
        if method not in ("auto", "fast", "naive"):
            raise PruneLabError(None, f"unknown method '{method}'")
        self.n_channels = self.split.n_channels
        if order is not None:
            order = [int(c) for c in order]
            if sorted(order) != list(range(self.n_channels)):
                raise PruneLabError(None, f"a pruning order must list each of the {self.n_channels} "
                                    f"channels of '{self.split.layer}' once")
        self.order = order  # None: the lab's ranking (mean |activation| on clean validation)
        self.total_steps = self.n_channels if max_steps is None else min(self.n_channels, int(max_steps))
        self.step_size = parse_step_size(step_size, self.n_channels)
        # rows of the prediction arrays: the planned steps, plus at most K-1 refinements per threshold
        self.planned_steps = -(-self.total_steps // self.step_size)
        self.max_rows = min(self.total_steps + 1, self.planned_steps + 1 +
                            (self.step_size - 1) * len(self.thresholds))
        # the fast path caches the cut and its frontier for every image; if that does not fit
        # (or the network cannot be cut there), the naive loop runs and says why
        problem = self.split.head_problem
        if method != "naive" and problem is None:
            try:
                check_fits(self._memory_need(fast=True), self.datasets["clean_valid"].path,
                           f"caching the {1 + len(self.split.frontier)} tensor(s) the fast path reads")
            except PruneLabError as e:
                problem = e.message
        if method == "fast" and problem is not None:
            raise PruneLabError(model.path, f"the fast path is impossible here: {problem}")
        self.method = "naive" if (method == "naive" or problem is not None) else "fast"
        self.fallback_reason = problem if self.method == "naive" and method == "auto" else None
        check_fits(self._memory_need(fast=self.method == "fast"), self.datasets["clean_valid"].path,
                   "the sweep's activations")

    def _memory_need(self, fast: bool) -> int:
        """Bytes the sweep holds: the cached tensors (fast path: the cut and its frontier for
        every image; naive: the cut of clean validation, for the ranking), predictions, masks."""
        need = 0
        for role, ds in self.datasets.items():
            if fast:
                need += ds.n * self.split.bytes_per_image(fast=True)
            elif role == "clean_valid":
                need += ds.n * self.split.bytes_per_image(fast=False)
            need += ds.n * (self.n_channels + 4 * (self.max_rows + 2))
        return need

    def _check_labels(self, role: str, ds: LabDataset) -> None:
        n = self.model.n_classes
        if ds.label_max >= n:
            raise PruneLabError(ds.path, f"labels go up to {ds.label_max} but the model has only {n} "
                                f"classes (0–{n - 1})")
        if role.startswith("poisoned") and not ds.single_target:
            warn(ds.path, f"a poisoned file should carry the attacker's target as every label, but it "
                 f"holds {ds.n_labels} different labels; ASR counts predictions equal to each image's label")
        if role.startswith("clean") and n >= 40 and ds.label_max + 1 <= n // 4:
            warn(ds.path, f"labels cover only classes 0–{ds.label_max} of the model's {n}; is this data "
                 "for this model?")

    # ------------------------------------------------------------------ activations
    def _keys(self, role: str):
        """The cache key of a dataset's activations: a string when the files were hashed
        before (a cache hit is possible), else a Future computing it in the background while
        the activations are computed (a file nobody hashed cannot be in the cache yet)."""
        from concurrent.futures import ThreadPoolExecutor

        from engine import cache

        if not self.use_cache:
            return None
        files = [self.model.path, self.model.weights_path, self.datasets[role].path]

        def key():
            return cache.activation_key(files[:2], self.split.layer, self.split.measured_at, files[2], PREFIX_BATCH)

        try:
            if all(cache.known_digest(f) for f in files if f):
                return key()
        except OSError:
            return None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prunelab-hash")
        fut = pool.submit(key)
        pool.shutdown(wait=False)
        return fut

    @staticmethod
    def _resolve(key):
        if key is None or isinstance(key, str):
            return key
        try:
            return key.result()
        except OSError:
            return None

    def _activations(self, role: str, key: str | None) -> Iterator[Progress | tuple]:
        """Yield progress, then ``(tensors, step0_predictions or None)`` for one dataset:
        ``tensors`` is ``[cut]`` (naive path: for the ranking) or ``[cut, *frontier]`` (fast)."""
        from engine import cache
        from engine.runtime import Runner

        ds = self.datasets[role]
        fast = self.method == "fast"
        shapes = self.split.cached_shapes() if fast else self.split.cached_shapes()[:1]
        if isinstance(key, str):
            hits = [cache.load(key)] + [cache.load(cache.derived_key(FRONTIER_KEY, key, i))
                                        for i in range(1, len(shapes))]
            if all(h is not None and h.shape == (ds.n,) + s and h.dtype == d for h, (s, d) in zip(hits, shapes)):
                yield Progress("activations", ds.n, ds.n, f"{role}: activations from cache")
                yield hits, None
                return
        # one pass gives the cached tensors and the unpruned model's answers (step 0)
        run = Runner(self.split.tensors_model(with_outputs=True) if fast else self.split.prefix)
        out = [np.empty((ds.n,) + s, d) for s, d in shapes]
        pred0 = np.empty(ds.n, np.int32) if fast else None
        for start, x in ds.batches(PREFIX_BATCH, prefetch=True):
            self.state.cancel_point()
            y = run(x)
            y = y if isinstance(y, list) else [y]
            for arr, part in zip(out, y):
                arr[start:start + len(x)] = part
            if fast:
                pred0[start:start + len(x)] = np.argmax(y[len(shapes)], axis=1)
            yield Progress("activations", start + len(x), ds.n, f"{role}: activations")
        key = self._resolve(key)
        if key is not None:
            cache.store(key, out[0])
            for i, arr in enumerate(out[1:], 1):
                cache.store(cache.derived_key(FRONTIER_KEY, key, i), arr)
        yield out, pred0

    # ------------------------------------------------------------------ events
    def events(self) -> Iterator[Progress | StepRecord]:
        from engine import cache

        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        roles = [r for r in ROLES if r in self.datasets]
        steps = self.total_steps
        keys = {r: self._keys(r) for r in roles}
        mean_act: dict[str, np.ndarray] = {}
        for r in roles:
            if isinstance(keys[r], str):
                m = cache.load(cache.derived_key("mean", keys[r]))
                if m is not None and m.shape == (self.n_channels,):
                    mean_act[r] = np.array(m, np.float64)
        acts: dict[str, list] = {}
        step0: dict[str, np.ndarray] = {}

        def load_acts(role):
            for ev in self._activations(role, keys[role]):
                if isinstance(ev, Progress):
                    yield ev
                else:
                    acts[role], p0 = ev
                    if p0 is not None:
                        step0[role] = p0
                    mean_act[role] = mean_abs_per_channel(acts[role][0])
                    keys[role] = self._resolve(keys[role])
                    if keys[role] is not None:
                        cache.store(cache.derived_key("mean", keys[role]), mean_act[role])

        if "clean_valid" not in mean_act:
            yield from load_acts("clean_valid")
        order = self.order if self.order is not None else \
            [int(i) for i in np.argsort(mean_act["clean_valid"], kind="stable")]
        labels = {r: self.datasets[r].labels for r in roles}
        preds = {r: np.zeros((self.max_rows, self.datasets[r].n), np.int32) for r in roles}
        # a finished sweep's answers are cached per dataset (keyed by content, layer, order, and
        # with a step size above 1 the thresholds, which decide where steps are refined)
        keys.update({r: self._resolve(k) for r, k in keys.items() if r in acts or isinstance(k, str)})
        fast = self.method == "fast"
        hist_keys = {r: (self._hist_key(keys[r], order) if isinstance(keys[r], str) and fast else None)
                     for r in roles}
        # the pruned-channel counts that get a record: known up front with step size 1, else
        # decided by the clean validation answers (kept in the cache with them)
        schedule = list(range(steps + 1)) if self.step_size == 1 else None
        if schedule is None and hist_keys.get("clean_valid"):
            hit = cache.load(cache.derived_key("schedule", hist_keys["clean_valid"]))
            schedule = [int(v) for v in hit] if hit is not None and hit.ndim == 1 else None
        todo = []
        for r in roles:
            hit = cache.load(hist_keys[r]) if hist_keys[r] and schedule is not None else None
            if hit is not None and hit.shape == (len(schedule), preds[r].shape[1]):
                preds[r][:len(schedule)] = hit
                yield Progress("activations", 1, 1, f"{r}: results from cache")
            else:
                todo.append(r)
        if fast and "clean_valid" in todo:
            schedule = None  # found again while clean validation is swept
        timings["activations"] = time.perf_counter() - t0
        from engine.tfsetup import release_free_memory

        release_free_memory()
        result = SweepResult(
            model_path=str(self.model.path), layer=self.split.layer, measured_at=self.split.measured_at,
            n_channels=self.n_channels, n_classes=self.model.n_classes, order=order,
            mean_activation={r: m.astype(np.float64) for r, m in mean_act.items()}, records=[],
            predictions=preds, labels=labels, thresholds=self.thresholds,
            checkpoints=[Checkpoint(t, None) for t in self.thresholds], method=self.method,
            timings=timings, dataset_paths={r: str(d.path) for r, d in self.datasets.items()},
            complete=False, step_size=self.step_size, fallback_reason=self.fallback_reason)
        self.result = result
        t1 = time.perf_counter()
        found: list[int] = []  # the schedule as the sweep finds it
        if fast:
            # one dataset at a time: its activations are loaded (or computed) just before its
            # steps and dropped after them, so only one dataset's activations are in memory
            def fetch(role):
                if role not in acts:
                    yield from load_acts(role)
                    result.mean_activation[role] = mean_act[role]
                return acts.pop(role)

            if todo:
                self._masked_head()  # traced before any record is on screen to be kept smooth
                stepper = self._fast_steps(todo, fetch, order, preds, step0, labels, schedule, found)
            else:  # every dataset came from the cache
                stepper = ((None, row, p, 0) for row, p in enumerate(schedule))
        else:
            stepper = self._naive_steps(order, preds, labels, found)
        # records stream as soon as the clean validation answers of a step are known; the
        # other datasets' metrics are filled into the same record objects as they arrive
        # (dataset by dataset), so the validation curve and the checkpoints come first
        cached = [r for r in roles if r not in todo] if fast else []
        base = int(np.count_nonzero(preds["clean_valid"][0] == labels["clean_valid"])) if cached else None
        planned = self.planned_steps + 1
        units = planned * (len(todo) if fast and todo else 1)
        done = 0
        for item in stepper:
            if isinstance(item, Progress):
                yield item
                continue
            role, step, pruned, recomputed = item
            done += 1
            created = step == len(result.records)
            known = {ROLE_METRIC[r]: pct(preds[r][step] == labels[r])
                     for r in ([role] if role else roles) + (cached if created else [])}
            if created:  # clean validation is known for this step: first dataset, or cached
                before = result.records[-1].pruned if result.records else 0
                new = tuple(order[before:pruned])
                rec = StepRecord(step, new[-1] if new else None, pruned / self.n_channels,
                                 recomputed=recomputed, total_steps=planned - 1, pruned=pruned,
                                 channels=new, **known)
                correct = int(np.count_nonzero(preds["clean_valid"][step] == labels["clean_valid"]))
                if step == 0:
                    base = correct
                else:
                    now = tuple(cp.threshold for cp in result.checkpoints if cp.step is None and
                                reached(base, correct, [cp.threshold]))
                    for cp in result.checkpoints:
                        if cp.threshold in now:
                            cp.step, cp.pruned = step, pruned
                    rec = replace(rec, reached=now)
                result.records.append(rec)
                if len(result.records) > planned:
                    units += len(todo) if fast and todo else 1
            else:
                old = result.records[step]
                rec = replace(old, recomputed=old.recomputed + recomputed, **known)
                result.records[step] = rec
            yield rec
            yield Progress("steps", min(done, units), units,
                           f"{role or 'all datasets'}: step {step}/{max(planned, len(result.records)) - 1}")
        n_rows = len(result.records)
        for r in roles:
            result.predictions[r] = preds[r][:n_rows]
        schedule = [rec.pruned for rec in result.records]
        for r in todo:  # keys of files hashed in the background are known by now
            k = self._resolve(keys[r])
            if k is not None and fast:
                hk = self._hist_key(k, order)
                cache.store(hk, result.predictions[r])
                if r == "clean_valid" and self.step_size > 1:
                    cache.store(cache.derived_key("schedule", hk), np.asarray(schedule, np.int64))
        timings["steps"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        result.complete = True

    def _hist_key(self, key: str, order) -> str:
        from engine import cache

        steps = self.total_steps
        if self.step_size == 1:
            return cache.derived_key("hist", key, order, steps)
        return cache.derived_key("hist", key, order, steps, self.step_size, self.thresholds)

    def run(self) -> SweepResult:
        for _ in self.events():
            pass
        return self.result

    # ------------------------------------------------------------------ schedule
    def _walk(self, evaluate, labels) -> Iterator[tuple[int, dict, int]]:
        """Yield ``(pruned, predictions by role, images evaluated)`` in increasing order of
        pruned channels: every ``step_size`` channels, and, inside a step that reaches a
        threshold no earlier record reached, channel by channel until each such threshold's
        first channel count is found — the checkpoints of step size 1. ``evaluate(prev,
        prev_pruned, pruned)`` gives a count's answers from those at ``prev_pruned`` (``prev``).
        A drop that is reached inside a step and gone again at its end is not seen."""
        y = labels["clean_valid"]
        K, total = self.step_size, self.total_steps

        def correct(res):
            return int(np.count_nonzero(res["clean_valid"] == y))

        res_p, n = evaluate(None, 0, 0)
        base = correct(res_p)
        pending = set(self.thresholds)
        yield 0, res_p, n
        p = 0
        while p < total:
            q = min(total, p + K)
            res_q, n_q = evaluate(res_p, p, q)
            left = set(reached(base, correct(res_q), pending)) if q - p > 1 else set()
            j, res_j = p, res_p
            while left and j + 1 < q:
                j += 1
                res_j, n_j = evaluate(res_j, j - 1, j)
                hit = set(reached(base, correct(res_j), pending))
                pending -= hit
                left -= hit
                yield j, res_j, n_j
            pending -= set(reached(base, correct(res_q), pending))
            # answers at q from those at p: exact, and the images to re-run are counted at q
            yield q, res_q, n_q
            p, res_p = q, res_q

    # ------------------------------------------------------------------ fast path
    def _masked_head(self):
        if self._head_runner is None:
            from engine.runtime import MaskedHeadRunner

            self._head_runner = MaskedHeadRunner(self.split.head, self.split.fill,
                                                 self.split.cached_shapes()[1:])
            self._head_runner.warm_up()
        return self._head_runner

    def _fast_steps(self, roles, fetch, order, preds, step0, labels, schedule, found) -> Iterator:
        """Yield (role, step, channels pruned, images re-evaluated), dataset by dataset (clean
        validation first: its answers decide the schedule when it is not known), and the
        Progress of loading each dataset's activations (``fetch(role)``)."""
        fill = self.split.fill
        head = self._masked_head()
        bs = HEAD_BATCH
        order_arr = np.asarray(order, np.int64)
        for role in roles:
            tensors = yield from fetch(role)
            a = tensors[0]
            # an image is affected by pruning channel c iff c is not already at its pruned value
            flat = a.reshape(len(a), -1, a.shape[-1])
            pruned_value = fill.reshape(-1, fill.shape[-1])[None]
            active = np.concatenate([np.any(flat[s:s + 4096] != pruned_value, axis=1)
                                     for s in range(0, len(a), 4096)])
            acts = head.tensor(tensors)  # the steps read the activations from here
            del a, flat, tensors

            def evaluate(prev, p_prev, p, role=role, acts=acts, active=active):
                if prev is None:  # the unpruned model
                    if role in step0:
                        return {role: step0.pop(role)}, 0
                    everyone = np.arange(len(active))
                    cur = np.empty(len(active), np.int32)
                    keep = np.ones(self.n_channels, bool)
                    for s in range(0, len(everyone), bs):
                        self.state.cancel_point()
                        cur[s:s + bs] = head(acts, everyone[s:s + bs], keep)
                    return {role: cur}, len(everyone)
                keep = np.ones(self.n_channels, bool)
                keep[order_arr[:p]] = False
                newly = order_arr[p_prev:p]
                idx = np.flatnonzero(active[:, newly[0]] if len(newly) == 1 else active[:, newly].any(axis=1))
                cur = prev[role].copy()
                for s in range(0, len(idx), bs):
                    self.state.cancel_point()
                    part = idx[s:s + bs]
                    cur[part] = head(acts, part, keep)
                return {role: cur}, len(idx)

            if schedule is None:  # the first dataset (clean validation) finds the schedule
                for row, (p, res, n) in enumerate(self._walk(evaluate, {role: labels[role]})):
                    self.state.cancel_point()
                    preds[role][row] = res[role]
                    found.append(p)
                    yield role, row, p, n
                schedule = list(found)
            else:
                prev = None
                for row, p in enumerate(schedule):
                    self.state.cancel_point()
                    prev, n = evaluate(prev, schedule[row - 1] if row else 0, p)
                    preds[role][row] = prev[role]
                    yield role, row, p, n
            del acts, active
            from engine.tfsetup import release_free_memory

            release_free_memory()

    # ------------------------------------------------------------------ naive path
    def _naive_steps(self, order, preds, labels, found) -> Iterator[tuple[None, int, int, int]]:
        """Zero the weights, run the whole model over every dataset: the reference loop,
        used when the fast path is impossible (and to measure it)."""
        from engine.runtime import Runner

        conv = self.split.conv
        original = [w.copy() for w in conv.get_weights()]
        run = Runner(self.model.model)

        def evaluate(prev, p_prev, p):
            conv.set_weights(zeroed_weights(original, order[:p]))
            out, total = {}, 0
            for role, ds in self.datasets.items():
                out[role] = np.empty(ds.n, np.int32)
                for start, x in ds.batches(PREFIX_BATCH, prefetch=True):
                    self.state.cancel_point()
                    out[role][start:start + len(x)] = np.argmax(run(x), axis=1)
                total += ds.n
            return out, total

        try:
            for row, (p, res, n) in enumerate(self._walk(evaluate, labels)):
                for role, pred in res.items():
                    preds[role][row] = pred
                found.append(p)
                yield None, row, p, n
        finally:
            conv.set_weights(original)
