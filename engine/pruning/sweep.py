"""The pruning sweep as a generator of per-step records.

Step 0 is the unpruned model. With the default step size of 1, step s has the s
lowest-ranked channels pruned. With a step size of K channels (``step_size=K`` or ``"P%"``
of the layer), a step prunes the next K channels; where a step first reaches a drop
threshold, the channels inside it are tried one by one, in order, up to the one where the
drop is first reached, and each of those gets its own record. So ``StepRecord.step`` is the
record's position (the row of ``SweepResult.predictions``, the index in ``records``, what a
checkpoint's ``step`` names) and ``StepRecord.pruned`` is how many channels it prunes (the
first ``pruned`` of ``SweepResult.order``); with step size 1 the two are equal. The fast
path caches the activations at the cut once (see :mod:`engine.pruning.graph`), then per step
re-evaluates only the head, and only for the images whose pruned channel was not already
at its pruned value everywhere — for every other image nothing the network sees has
changed, so its prediction is bit-for-bit what the naive loop would compute."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from engine.core.vocabulary import is_poisoned, is_role, ordered_roles, role_metric
from engine.io.datasets import LabDataset
from engine.core.errors import PruneLabError, warn
from engine.io.memory import check_fits
from engine.models.loading import LoadedModel
from engine.pruning.rules import check_labels_in_range, pct, zeroed_weights
from engine.core.state import JobState, Progress
from engine.pruning.activations import PREFIX_BATCH, ActivationStore
from engine.pruning.criteria.activation import lab_order
from engine.pruning.records import Checkpoint, StepRecord, SweepResult, pool_poisoned_means
from engine.pruning.schedule import parse_step_size, walk
from engine.pruning.thresholds import DEFAULT_THRESHOLDS, reached, validate_thresholds

HEAD_BATCH = 2048  # the head is cheap per image; big batches keep every core busy



@dataclass
class _Prepared:
    """What the steps of a sweep start from."""

    store: ActivationStore
    roles: list
    order: list
    labels: dict
    preds: dict
    todo: list  # datasets whose answers must be computed (the others came from the cache)
    schedule: list | None  # pruned counts that get a record, when known before the steps


class Sweep:
    """Validate inputs up front; ``events()`` then yields Progress and StepRecord objects and
    leaves the :class:`SweepResult` in ``self.result``."""

    def __init__(self, model: LoadedModel, datasets: dict[str, LabDataset], layer: str | None = None,
                 thresholds=DEFAULT_THRESHOLDS, *, method: str = "auto", use_cache: bool = True,
                 state: JobState | None = None, max_steps: int | None = None,
                 order: Sequence[int] | None = None, step_size: int | str = 1):
        from engine.pruning.graph import make_split

        self.model = model
        self.datasets = {r: d for r, d in datasets.items() if d is not None}
        for r in self.datasets:
            if not is_role(r):
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

    @property
    def _counts(self) -> dict[str, int]:
        return {r: d.n for r, d in self.datasets.items()}

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
        check_labels_in_range(ds, n)
        if is_poisoned(role) and not ds.single_target:
            warn(ds.path, f"a poisoned file should carry the attacker's target as every label, but it "
                 f"holds {ds.n_labels} different labels; ASR counts predictions equal to each image's label")
        if role.startswith("clean") and n >= 40 and ds.label_max + 1 <= n // 4:
            warn(ds.path, f"labels cover only classes 0–{ds.label_max} of the model's {n}; is this data "
                 "for this model?")

    # ------------------------------------------------------------------ events
    def events(self) -> Iterator[Progress | StepRecord]:
        """Yield Progress and StepRecord values; the result is in ``self.result`` meanwhile."""
        t0 = time.perf_counter()
        prep = yield from self._prepare()
        self.result.timings["activations"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        yield from self._assemble(prep)
        self._store_answers(prep)
        self.result.timings["steps"] = time.perf_counter() - t1
        self.result.timings["total"] = time.perf_counter() - t0
        self.result.complete = True

    def _prepare(self) -> Iterator:
        """The activations (or the answers) each dataset needs, the pruning order and the
        answers a previous sweep left in the cache; returns what the steps need."""
        from engine.core.tfsetup import release_free_memory
        from engine.io import cache

        roles = ordered_roles(self.datasets)
        fast = self.method == "fast"
        store = ActivationStore(self.model, self.split, self.datasets, fast, self.use_cache, self.state)
        store.means_from_cache()
        if "clean_valid" not in store.mean:
            yield from store.load("clean_valid")
        order = self.order if self.order is not None else lab_order(store.mean["clean_valid"])
        labels = {r: self.datasets[r].labels for r in roles}
        preds = {r: np.zeros((self.max_rows, self.datasets[r].n), np.int32) for r in roles}
        # a finished sweep's answers are cached per dataset (keyed by content, layer, order, and
        # with a step size above 1 the thresholds, which decide where steps are refined)
        keys = {r: store.key(r) for r in roles if r in store.acts or isinstance(store.keys[r], str)}
        hist_keys = {r: (self._hist_key(keys[r], order) if isinstance(keys.get(r), str) and fast else None)
                     for r in roles}
        # the pruned-channel counts that get a record: known up front with step size 1, else
        # decided by the clean validation answers (kept in the cache with them)
        schedule = list(range(self.total_steps + 1)) if self.step_size == 1 else None
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
        release_free_memory()
        self.result = SweepResult(
            model_path=str(self.model.path), layer=self.split.layer, measured_at=self.split.measured_at,
            n_channels=self.n_channels, n_classes=self.model.n_classes, order=order,
            mean_activation={r: m.astype(np.float64) for r, m in store.mean.items()}, records=[],
            predictions=preds, labels=labels, thresholds=self.thresholds,
            checkpoints=[Checkpoint(t, None) for t in self.thresholds], method=self.method,
            timings={}, dataset_paths={r: str(d.path) for r, d in self.datasets.items()},
            complete=False, step_size=self.step_size, fallback_reason=self.fallback_reason)
        pool_poisoned_means(self.result.mean_activation, self._counts)
        return _Prepared(store, roles, order, labels, preds, todo, schedule)

    def _stepper(self, prep: "_Prepared", found: list) -> Iterator:
        """``(role, record, pruned, images re-run)`` per dataset and step, in the order the
        records fill in (and Progress while a dataset's activations load)."""
        if self.method != "fast":
            return self._naive_steps(prep.order, prep.preds, prep.labels, found)
        store, result = prep.store, self.result

        # one dataset at a time: its activations are loaded (or computed) just before its
        # steps and dropped after them, so only one dataset's activations are in memory
        def fetch(role):
            if role not in store.acts:
                yield from store.load(role)
                result.mean_activation[role] = store.mean[role]
                pool_poisoned_means(result.mean_activation, self._counts)
            return store.acts.pop(role)

        if not prep.todo:  # every dataset came from the cache
            return ((None, row, p, 0) for row, p in enumerate(prep.schedule))
        self._masked_head()  # traced before any record is on screen to be kept smooth
        return self._fast_steps(prep.todo, fetch, prep.order, prep.preds, store.step0, prep.labels,
                                prep.schedule, found)

    def _assemble(self, prep: "_Prepared") -> Iterator[Progress | StepRecord]:
        """Turn the answers into records. Records stream as soon as the clean validation
        answers of a step are known; the other datasets' metrics fill into the same record
        (a new frozen record each time) as they arrive, so the validation curve and the
        checkpoints come first."""
        fast = self.method == "fast"
        result, preds, labels, roles, todo = self.result, prep.preds, prep.labels, prep.roles, prep.todo
        found: list[int] = []  # the schedule as the sweep finds it
        cached = [r for r in roles if r not in todo] if fast else []
        base = int(np.count_nonzero(preds["clean_valid"][0] == labels["clean_valid"])) if cached else None
        planned = self.planned_steps + 1
        per_step = len(todo) if fast and todo else 1
        units, done = planned * per_step, 0
        for item in self._stepper(prep, found):
            if isinstance(item, Progress):
                yield item
                continue
            role, step, pruned, recomputed = item
            done += 1
            created = step == len(result.records)
            known = {role_metric(r): pct(preds[r][step] == labels[r])
                     for r in ([role] if role else roles) + (cached if created else [])}
            if created:  # clean validation is known for this step: first dataset, or cached
                rec, base = self._new_record(step, pruned, recomputed, planned, known, base, prep)
                result.records.append(rec)
                if len(result.records) > planned:
                    units += per_step
            else:
                old = result.records[step]
                rec = replace(old, recomputed=old.recomputed + recomputed).with_metrics(known)
                result.records[step] = rec

            yield rec
            yield Progress("steps", min(done, units), units,
                           f"{role or 'all datasets'}: step {step}/{max(planned, len(result.records)) - 1}")

    def _new_record(self, step, pruned, recomputed, planned, known, base, prep):
        """The record of a new step, and the checkpoints it reaches (``base``: step 0's count of
        correct clean validation answers)."""
        result = self.result
        before = result.records[-1].pruned if result.records else 0
        new = tuple(prep.order[before:pruned])
        rec = StepRecord(step, new[-1] if new else None, pruned / self.n_channels, recomputed=recomputed,
                         total_steps=planned - 1, pruned=pruned, channels=new).with_metrics(known)
        correct = int(np.count_nonzero(prep.preds["clean_valid"][step] == prep.labels["clean_valid"]))
        if step == 0:
            return rec, correct
        now = tuple(cp.threshold for cp in result.checkpoints
                    if cp.step is None and reached(base, correct, [cp.threshold]))
        for cp in result.checkpoints:
            if cp.threshold in now:
                cp.step, cp.pruned = step, pruned
        return replace(rec, reached=now), base

    def _store_answers(self, prep: "_Prepared") -> None:
        """Trim the answers to the records made, and cache them (and the schedule) by content."""
        from engine.io import cache

        result = self.result
        n_rows = len(result.records)
        for r in prep.roles:
            result.predictions[r] = prep.preds[r][:n_rows]
        if self.method != "fast":
            return
        schedule = [rec.pruned for rec in result.records]
        for r in prep.todo:  # keys of files hashed in the background are known by now
            k = prep.store.key(r)
            if k is not None:
                hk = self._hist_key(k, prep.order)
                cache.store(hk, result.predictions[r])
                if r == "clean_valid" and self.step_size > 1:
                    cache.store(cache.derived_key("schedule", hk), np.asarray(schedule, np.int64))

    def _hist_key(self, key: str, order) -> str:
        from engine.io import cache

        steps = self.total_steps
        if self.step_size == 1:
            return cache.derived_key("hist", key, order, steps)
        return cache.derived_key("hist", key, order, steps, self.step_size, self.thresholds)

    def run(self) -> SweepResult:
        for _ in self.events():
            pass
        return self.result

    # ------------------------------------------------------------------ fast path
    def _masked_head(self):
        if self._head_runner is None:
            from engine.pruning.runtime import MaskedHeadRunner

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
                for row, (p, res, n) in enumerate(walk(evaluate, {role: labels[role]}, self.step_size, self.total_steps, self.thresholds)):
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
            from engine.core.tfsetup import release_free_memory

            release_free_memory()

    # ------------------------------------------------------------------ naive path
    def _naive_steps(self, order, preds, labels, found) -> Iterator[tuple[None, int, int, int]]:
        """Zero the weights, run the whole model over every dataset: the reference loop,
        used when the fast path is impossible (and to measure it)."""
        from engine.core.tfsetup import keras
        from engine.models.runner import Runner

        # a copy of the user's model: the window may be drawing maps with the original meanwhile
        copy = keras().models.clone_model(self.model.model)
        copy.set_weights(self.model.model.get_weights())
        target = copy.get_layer(self.split.layer)  # a Conv2D or a Dense layer
        original = [w.copy() for w in target.get_weights()]
        run = Runner(copy)

        def evaluate(prev, p_prev, p):
            target.set_weights(zeroed_weights(original, order[:p]))
            out, total = {}, 0
            for role, ds in self.datasets.items():
                out[role] = np.empty(ds.n, np.int32)
                for start, x in ds.batches(PREFIX_BATCH, prefetch=True):
                    self.state.cancel_point()
                    out[role][start:start + len(x)] = np.argmax(run(self.model.model_input(x)), axis=1)
                total += ds.n
            return out, total

        try:
            for row, (p, res, n) in enumerate(walk(evaluate, labels, self.step_size, self.total_steps, self.thresholds)):
                for role, pred in res.items():
                    preds[role][row] = pred
                found.append(p)
                yield None, row, p, n
        finally:
            target.set_weights(original)
