"""Fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018): prune, then fine-tune the pruned
network briefly on clean data, with the pruned channels held at exactly zero.

A held-out share of the clean validation data (default 20 %) never enters training; it is
the clean validation accuracy reported here. Training is cancellable between batches and
streams one record per epoch (epoch 0 is B' before fine-tuning: pruning alone)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator

import numpy as np

from engine.io.datasets import LabDataset
from engine.core.errors import PruneLabError
from engine.io.memory import check_fits
from engine.models.loading import LoadedModel
from engine.core.state import JobState
from engine.pruning.rules import evaluate_labels, hold_zero, goodnet_labels, pct
from engine.core.state import Progress
from engine.core.vocabulary import METRICS, is_poisoned, role_metric
from engine.pruning.records import fold_metrics


@dataclass
class FineTuneConfig:
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 64
    holdout: float = 0.2
    seed: int = 0

    def check(self) -> None:
        check_training(self.epochs, self.learning_rate, self.batch_size, self.holdout)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float | None
    clean_valid_acc: float | None = None  # on the held-out part only
    asr_valid: float | None = None
    clean_test_acc: float | None = None
    asr_test: float | None = None
    seconds: float = 0.0
    sets: dict = field(default_factory=dict, hash=False)  # several poisoned sets: asr_valid_<name> -> ASR

    def metric(self, key: str):
        return self.sets.get(key) if key in self.sets else getattr(self, key)


@dataclass
class FineTuneResult:
    step: int
    layer: str
    pruned: list[int]
    config: FineTuneConfig
    train_indices: np.ndarray
    holdout_indices: np.ndarray
    records: list[EpochRecord] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # final fine-pruned B'
    badnet_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    n_classes: int = 0
    model: object = None  # the fine-pruned B' (keras.Model)

    def goodnet_labels(self, role: str) -> np.ndarray:
        return goodnet_labels(self.badnet_predictions[role], self.predictions[role], self.n_classes)

    def evaluation(self) -> dict[str, dict[str, float]]:
        """Same keys as SweepResult.evaluate_step, for the fine-pruned B' and its G."""
        return {role: evaluate_labels(self.badnet_predictions[role], self.predictions[role], y,
                                      self.n_classes, is_poisoned(role))
                for role, y in self.labels.items()}

    def summary(self) -> dict:
        return {"step": self.step, "layer": self.layer, "pruned_channels": self.pruned,
                "config": asdict(self.config), "held_out_images": int(len(self.holdout_indices)),
                "trained_images": int(len(self.train_indices)),
                "epochs": [asdict(r) for r in self.records],
                "pruning_only": {m: self.records[0].metric(m) for m in METRICS},
                "fine_pruned": {m: self.records[-1].metric(m) for m in METRICS},
                "evaluation": self.evaluation()}


def check_training(epochs: int, learning_rate: float, batch_size: int, holdout: float) -> None:
    """The one check of a training run's settings (fine-pruning, unlearning)."""
    if not 1 <= epochs <= 10_000:
        raise PruneLabError(None, f"epochs must be between 1 and 10000 (got {epochs})")
    if not (0 < learning_rate < 10):
        raise PruneLabError(None, f"learning rate {learning_rate} is out of range")
    if not (1 <= batch_size <= 65536):
        raise PruneLabError(None, f"batch size {batch_size} is out of range")
    if not (0 < holdout < 1):
        raise PruneLabError(None, f"held-out share must be in (0, 1) (got {holdout})")


def split_clean_valid(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of the clean validation set; disjoint, seeded."""
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(holdout * n)))
    if k >= n:
        raise PruneLabError(None, "the clean validation set is too small to hold images out")
    return np.sort(perm[k:]), np.sort(perm[:k])


class FineTune:
    def __init__(self, model: LoadedModel, datasets: dict[str, LabDataset], layer: str, pruned,
                 step: int, config: FineTuneConfig | None = None, state: JobState | None = None):
        self.model = model
        self.datasets = {r: d for r, d in datasets.items() if d is not None}
        if "clean_valid" not in self.datasets:
            raise PruneLabError(None, "fine-tuning needs clean validation data")
        self.layer = layer
        self.pruned = [int(c) for c in pruned]
        self.step = int(step)
        self.cfg = config or FineTuneConfig()
        self.cfg.check()
        self.state = state or JobState()
        for ds in self.datasets.values():
            ds.expect(model.input_hwc)
        cv = self.datasets["clean_valid"]
        self.train_idx, self.holdout_idx = split_clean_valid(cv.n, self.cfg.holdout, self.cfg.seed)
        check_fits(len(self.train_idx) * int(np.prod(cv.image_shape)) * 4, cv.path, "the fine-tuning set")
        self.result: FineTuneResult | None = None

    def _evaluate(self, keras_model) -> dict[str, np.ndarray]:
        from engine.models.runner import Runner

        run = Runner(keras_model)
        preds = {}
        for role, ds in self.datasets.items():
            out = np.empty(ds.n, np.int32)
            for start, x in ds.batches(512):
                self.state.cancel_point()
                out[start:start + len(x)] = np.argmax(run(self.model.model_input(x)), axis=1)
            preds[role] = out[self.holdout_idx] if role == "clean_valid" else out
        return preds

    def _record(self, epoch: int, loss, preds, labels, t0) -> EpochRecord:
        metrics = {role_metric(role): pct(p == labels[role]) for role, p in preds.items()}
        plain, sets = fold_metrics(metrics, {}, {f.name for f in fields(EpochRecord)})
        return EpochRecord(epoch, loss, seconds=time.perf_counter() - t0, sets=sets, **plain)

    def events(self) -> Iterator[Progress | EpochRecord]:
        from engine.pruning.rules import make_bprime
        from engine.core.tfsetup import keras
        from engine.models.logits import training_loss

        k = keras()
        cfg = self.cfg
        k.utils.set_random_seed(cfg.seed)
        t0 = time.perf_counter()
        cv = self.datasets["clean_valid"]
        labels = {r: (d.labels[self.holdout_idx] if r == "clean_valid" else d.labels) for r, d in self.datasets.items()}
        x_train = self.model.model_input(cv.take(self.train_idx))
        y_train = cv.labels[self.train_idx]
        res = FineTuneResult(self.step, self.layer, self.pruned, cfg, self.train_idx, self.holdout_idx,
                             labels=labels, n_classes=self.model.n_classes)
        self.result = res
        res.badnet_predictions = self._evaluate(self.model.model)
        net = make_bprime(self.model.model, self.layer, self.pruned, name=f"fine_pruned_step{self.step}")
        res.model = net
        pruned_layer = net.get_layer(self.layer)
        preds = self._evaluate(net)
        rec = self._record(0, None, preds, labels, t0)
        res.records.append(rec)
        res.predictions = preds
        yield rec
        net.compile(optimizer=k.optimizers.Adam(cfg.learning_rate), loss=training_loss(self.model.model))
        rng = np.random.default_rng(cfg.seed + 1)
        n = len(x_train)
        batches = -(-n // cfg.batch_size)
        for epoch in range(1, cfg.epochs + 1):
            order = rng.permutation(n)
            losses = []
            for b in range(batches):
                self.state.cancel_point()
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                loss = net.train_on_batch(x_train[idx], y_train[idx])
                hold_zero(pruned_layer, self.pruned)  # pruned channels stay exactly zero after every update
                losses.append(float(np.asarray(loss).ravel()[0]))
                if b % 10 == 0 or b == batches - 1:
                    yield Progress("fine-tuning", (epoch - 1) * batches + b + 1, cfg.epochs * batches,
                                   f"epoch {epoch}/{cfg.epochs}")
            preds = self._evaluate(net)
            rec = self._record(epoch, float(np.mean(losses)), preds, labels, t0)
            res.records.append(rec)
            res.predictions = preds
            yield rec

    def run(self) -> FineTuneResult:
        for _ in self.events():
            pass
        return self.result
