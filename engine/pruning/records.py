"""What a sweep produces: one :class:`StepRecord` per record (step), the :class:`Checkpoint`\ s
where the clean validation accuracy first dropped by each threshold, the :class:`SweepResult`
holding every answer, and the one rule "record → channels pruned" (:func:`pruned_count`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import numpy as np

from engine.core.errors import PruneLabError
from engine.core.vocabulary import METRICS, aggregate_metric, is_poisoned, poisoned_roles, set_name
from engine.pruning.rules import evaluate_labels, goodnet_labels


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
    # several named poisoned sets: ``asr_valid_<name>`` → ASR (``asr_valid`` is then the highest)
    sets: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if self.pruned is None:
            object.__setattr__(self, "pruned", self.step)

    def metric(self, key: str) -> float | None:
        return self.sets.get(key) if key in self.sets or key not in _FIELDS else getattr(self, key)

    def with_metrics(self, known: dict[str, float]) -> "StepRecord":
        """This record with the metrics of newly measured datasets (``role_metric`` → value);
        an ASR measured on several named sets is the highest of them so far."""
        plain, sets = fold_metrics(known, self.sets, _FIELDS)
        return replace(self, sets=sets, **plain)

    def csv_row(self, set_keys: Sequence[str] = ()) -> list[str]:
        def cell(v):
            return "" if v is None else f"{v:.6f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)

        return [str(self.step), "" if self.channel is None else str(self.channel),
                f"{self.fraction_pruned:.6f}".rstrip("0").rstrip(".") if self.fraction_pruned else "0"] + \
               [cell(self.metric(m)) for m in METRICS] + [str(self.pruned)] + [cell(self.metric(k)) for k in set_keys]


_FIELDS = {f.name for f in fields(StepRecord)}


def fold_metrics(known: dict, sets: dict, plain_fields) -> tuple[dict, dict]:
    """Split newly measured metrics into a record's own fields and its per-set ones
    (``asr_valid_<name>``), the per-set ASRs folded into their highest (``asr_valid``)."""
    plain = {k: v for k, v in known.items() if k in plain_fields}
    sets = {**sets, **{k: v for k, v in known.items() if k not in plain_fields}}
    for key in {aggregate_metric(k) for k in sets} - {None}:
        vals = [v for k, v in sets.items() if aggregate_metric(k) == key and v is not None]
        plain[key] = max(vals) if vals else None
    return plain, sets


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
        return pruned_channels_of(self.order, self.pruned_per_record(), step)

    def bprime_labels(self, role: str, step: int) -> np.ndarray:
        return self.predictions[role][step]

    def goodnet_labels(self, role: str, step: int) -> np.ndarray:
        return goodnet_labels(self.predictions[role][0], self.predictions[role][step], self.flag_class)

    def evaluate_step(self, step: int) -> dict[str, dict[str, float]]:
        """B' and G at ``step`` on every loaded dataset: accuracy/ASR, flagged shares."""
        return {role: evaluate_labels(self.predictions[role][0], self.predictions[role][step], y,
                                      self.flag_class, is_poisoned(role))
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


def pruned_channels_of(order: Sequence[int], pruned_per_record: Sequence[int] | None, step: int) -> list[int]:
    """The channels record ``step`` has pruned: the first :func:`pruned_count` of ``order``."""
    return [int(c) for c in list(order)[:pruned_count(pruned_per_record, step)]]


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


def pool_poisoned_means(means: dict, counts: dict[str, int]) -> None:
    """With several named poisoned sets in a split, the plain role's mean activation (what the
    ``difference`` criterion reads) is their image-weighted mean — what one file holding all of
    them would give. Filled in once every named set of the split is measured."""
    for split in ("valid", "test"):
        named = [r for r in poisoned_roles(counts, split) if set_name(r)]
        if named and all(r in means for r in named):
            total = sum(counts[r] for r in named)
            means[f"poisoned_{split}"] = sum(np.asarray(means[r], np.float64) * counts[r] for r in named) / total
