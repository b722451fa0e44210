"""The pruning sweep as a generator of per-step records.

Step 0 is the unpruned model; step s has the s lowest-ranked channels pruned. The fast
path caches the activations at the cut once (see :mod:`engine.split`), then per step
re-evaluates only the head, and only for the images whose pruned channel was not already
at its pruned value everywhere — for every other image nothing the network sees has
changed, so its prediction is bit-for-bit what the naive loop would compute."""

from __future__ import annotations

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
PREFIX_BATCH = 256  # small: conv_1's output for 1024 images alone is ~190 MB
HEAD_BATCH = 2048  # the head is cheap per image; big batches keep the two cores busy


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
    total_steps: int = 0

    def metric(self, key: str) -> float | None:
        return getattr(self, key)

    def csv_row(self) -> list[str]:
        def cell(v):
            return "" if v is None else f"{v:.6f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)

        return [str(self.step), "" if self.channel is None else str(self.channel),
                f"{self.fraction_pruned:.6f}".rstrip("0").rstrip(".") if self.fraction_pruned else "0"] + \
               [cell(self.metric(m)) for m in METRICS]


@dataclass
class Checkpoint:
    threshold: float
    step: int | None  # None: the drop never reached this threshold

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

    @property
    def steps(self) -> int:
        return len(self.records) - 1

    @property
    def flag_class(self) -> int:
        return self.n_classes

    def pruned_channels(self, step: int) -> list[int]:
        return list(self.order[:step])

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


def mean_abs_per_channel(a: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Mean |activation| per channel over images and positions, without a full-size temporary."""
    total = np.zeros(a.shape[-1], np.float64)
    for s in range(0, len(a), chunk):
        total += np.abs(a[s:s + chunk]).sum(axis=(0, 1, 2), dtype=np.float64)
    return total / max(1, a.shape[0] * a.shape[1] * a.shape[2])


class Sweep:
    """Validate inputs up front; ``events()`` then yields Progress and StepRecord objects and
    leaves the :class:`SweepResult` in ``self.result``."""

    def __init__(self, model: LoadedModel, datasets: dict[str, LabDataset], layer: str | None = None,
                 thresholds=DEFAULT_THRESHOLDS, *, method: str = "auto", use_cache: bool = True,
                 state: JobState | None = None, max_steps: int | None = None,
                 order: Sequence[int] | None = None):
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
        if method == "fast" and self.split.head is None:
            raise PruneLabError(model.path, f"the fast path is impossible here: {self.split.head_problem}")
        self.method = "naive" if (method == "naive" or self.split.head is None) else "fast"
        self.n_channels = self.split.n_channels
        if order is not None:
            order = [int(c) for c in order]
            if sorted(order) != list(range(self.n_channels)):
                raise PruneLabError(None, f"a pruning order must list each of the {self.n_channels} "
                                    f"channels of '{self.split.layer}' once")
        self.order = order  # None: the lab's ranking (mean |activation| on clean validation)
        self.total_steps = self.n_channels if max_steps is None else min(self.n_channels, int(max_steps))
        cut_elems = int(np.prod(self.split.fill.shape))
        need = 0
        for ds in self.datasets.values():
            keep = ds.n * cut_elems * 4 if self.method == "fast" else 0
            need += keep + ds.n * (self.n_channels + 4 * (self.total_steps + 2))
        if "clean_valid" in self.datasets and self.method == "naive":
            need += self.datasets["clean_valid"].n * cut_elems * 4
        check_fits(need, self.datasets["clean_valid"].path, "the sweep's activations")

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
        """Yield progress, then ``(P, step0_predictions or None)`` for one dataset."""
        from engine import cache
        from engine.runtime import Runner
        from engine.tfsetup import keras

        ds = self.datasets[role]
        if isinstance(key, str):
            hit = cache.load(key)
            if hit is not None and hit.shape == (ds.n,) + self.split.fill.shape:
                yield Progress("activations", ds.n, ds.n, f"{role}: activations from cache")
                yield hit, None
                return
        # one pass gives the cut activations and the unpruned model's answers (step 0)
        both = self.split.head is not None and self.method == "fast"
        model = keras().Model(self.model.model.inputs, [self.split.cut.output] + list(self.model.model.outputs)) \
            if both else self.split.prefix
        run = Runner(model)
        out = np.empty((ds.n,) + self.split.fill.shape, np.float32)
        pred0 = np.empty(ds.n, np.int32) if both else None
        for start, x in ds.batches(PREFIX_BATCH, prefetch=True):
            self.state.cancel_point()
            y = run(x)
            if both:
                out[start:start + len(x)] = y[0]
                pred0[start:start + len(x)] = np.argmax(y[1], axis=1)
            else:
                out[start:start + len(x)] = y
            yield Progress("activations", start + len(x), ds.n, f"{role}: activations")
        key = self._resolve(key)
        if key is not None:
            cache.store(key, out)
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
        acts: dict[str, np.ndarray] = {}
        step0: dict[str, np.ndarray] = {}

        def load_acts(role):
            for ev in self._activations(role, keys[role]):
                if isinstance(ev, Progress):
                    yield ev
                else:
                    acts[role], p0 = ev
                    if p0 is not None:
                        step0[role] = p0
                    mean_act[role] = mean_abs_per_channel(acts[role])
                    keys[role] = self._resolve(keys[role])
                    if keys[role] is not None:
                        cache.store(cache.derived_key("mean", keys[role]), mean_act[role])

        if "clean_valid" not in mean_act:
            yield from load_acts("clean_valid")
        order = self.order if self.order is not None else \
            [int(i) for i in np.argsort(mean_act["clean_valid"], kind="stable")]
        labels = {r: self.datasets[r].labels for r in roles}
        preds = {r: np.zeros((steps + 1, self.datasets[r].n), np.int32) for r in roles}
        # a finished sweep's answers are cached per dataset (keyed by content, layer, order)
        keys.update({r: self._resolve(k) for r, k in keys.items() if r in acts or isinstance(k, str)})
        hist_keys = {r: (cache.derived_key("hist", keys[r], order, steps)
                         if isinstance(keys[r], str) and self.method == "fast" else None) for r in roles}
        todo = []
        for r in roles:
            hit = cache.load(hist_keys[r]) if hist_keys[r] else None
            if hit is not None and hit.shape == preds[r].shape:
                preds[r][:] = hit
                yield Progress("activations", 1, 1, f"{r}: results from cache")
            else:
                todo.append(r)
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
            complete=False)
        self.result = result
        t1 = time.perf_counter()
        if self.method == "fast":
            # one dataset at a time: its activations are loaded (or computed) just before its
            # steps and dropped after them, so only one dataset's activations are in memory
            def fetch(role):
                if role not in acts:
                    yield from load_acts(role)
                    result.mean_activation[role] = mean_act[role]
                return acts.pop(role)

            if todo:
                self._masked_head()  # traced before any record is on screen to be kept smooth
            stepper = self._fast_steps(todo, fetch, order, preds, step0)
        else:
            stepper = self._naive_steps(order, preds)
        # records stream as soon as the clean validation answers of a step are known; the
        # other datasets' metrics are filled into the same record objects as they arrive
        # (dataset by dataset), so the validation curve and the checkpoints come first
        cached = [r for r in roles if r not in todo] if self.method == "fast" else []
        if self.method == "fast" and not todo:  # every dataset came from the cache
            stepper = ((None, step, 0) for step in range(steps + 1))
        base = int(np.count_nonzero(preds["clean_valid"][0] == labels["clean_valid"])) if cached else None
        units = (steps + 1) * (len(todo) if self.method == "fast" and todo else 1)
        done = 0
        for item in stepper:
            if isinstance(item, Progress):
                yield item
                continue
            role, step, recomputed = item
            done += 1
            created = step == len(result.records)
            known = {ROLE_METRIC[r]: pct(preds[r][step] == labels[r])
                     for r in ([role] if role else roles) + (cached if created else [])}
            if created:  # clean validation is known for this step: first dataset, or cached
                rec = StepRecord(step, None if step == 0 else order[step - 1], step / self.n_channels,
                                 recomputed=recomputed, total_steps=steps, **known)
                correct = int(np.count_nonzero(preds["clean_valid"][step] == labels["clean_valid"]))
                if step == 0:
                    base = correct
                else:
                    now = tuple(cp.threshold for cp in result.checkpoints if cp.step is None and
                                reached(base, correct, [cp.threshold]))
                    for cp in result.checkpoints:
                        if cp.threshold in now:
                            cp.step = step
                    rec = replace(rec, reached=now)
                result.records.append(rec)
            else:
                old = result.records[step]
                rec = replace(old, recomputed=old.recomputed + recomputed, **known)
                result.records[step] = rec
            yield rec
            yield Progress("steps", done, units, f"{role or 'all datasets'}: step {step}/{steps}")
        for r in todo:  # keys of files hashed in the background are known by now
            k = self._resolve(keys[r])
            if k is not None and self.method == "fast":
                cache.store(cache.derived_key("hist", k, order, steps), preds[r])
        timings["steps"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        result.complete = True

    def run(self) -> SweepResult:
        for _ in self.events():
            pass
        return self.result

    # ------------------------------------------------------------------ fast path
    def _masked_head(self):
        if self._head_runner is None:
            from engine.runtime import MaskedHeadRunner

            self._head_runner = MaskedHeadRunner(self.split.head, self.split.fill)
            self._head_runner.warm_up()
        return self._head_runner

    def _fast_steps(self, roles, fetch, order, preds, step0) -> Iterator:
        """Yield (role, step, images re-evaluated), dataset by dataset (clean validation first),
        and the Progress of loading each dataset's activations (``fetch(role)``)."""
        fill = self.split.fill
        head = self._masked_head()
        bs = HEAD_BATCH
        for role in roles:
            a = yield from fetch(role)
            # an image is affected by pruning channel c iff c is not already at its pruned value
            flat = a.reshape(len(a), -1, a.shape[-1])
            pruned_value = fill.reshape(-1, fill.shape[-1])[None]
            active = np.concatenate([np.any(flat[s:s + 4096] != pruned_value, axis=1)
                                     for s in range(0, len(a), 4096)])
            acts = head.tensor(a)  # the steps read the activations from here
            del a, flat
            keep = np.ones(self.n_channels, bool)
            n0 = 0
            if role in step0:
                preds[role][0] = step0[role]
            else:
                everyone = np.arange(len(active))
                for s in range(0, len(everyone), bs):
                    self.state.cancel_point()
                    preds[role][0, s:s + bs] = head(acts, everyone[s:s + bs], keep)
                n0 = len(everyone)
            yield role, 0, n0
            for step in range(1, self.total_steps + 1):
                self.state.cancel_point()
                c = order[step - 1]
                keep[c] = False
                idx = np.flatnonzero(active[:, c])
                cur = preds[role][step]
                cur[:] = preds[role][step - 1]
                for s in range(0, len(idx), bs):
                    self.state.cancel_point()
                    part = idx[s:s + bs]
                    cur[part] = head(acts, part, keep)
                yield role, step, len(idx)
            del acts, active
            from engine.tfsetup import release_free_memory

            release_free_memory()

    # ------------------------------------------------------------------ naive path
    def _naive_steps(self, order, preds) -> Iterator[tuple[None, int, int]]:
        """Zero the weights, run the whole model over every dataset: the reference loop,
        used when the fast path is impossible (and to measure it)."""
        from engine.runtime import Runner

        conv = self.split.conv
        original = [w.copy() for w in conv.get_weights()]
        run = Runner(self.model.model)
        try:
            for step in range(0, self.total_steps + 1):
                if step:
                    conv.set_weights(zeroed_weights(original, order[:step]))
                total = 0
                for role, ds in self.datasets.items():
                    for start, x in ds.batches(PREFIX_BATCH, prefetch=True):
                        self.state.cancel_point()
                        preds[role][step, start:start + len(x)] = np.argmax(run(x), axis=1)
                    total += ds.n
                yield None, step, total
        finally:
            conv.set_weights(original)
