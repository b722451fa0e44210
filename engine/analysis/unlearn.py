"""Unlearning, Neural Cleanse's mitigation (Wang et al., IEEE S&P 2019): fine-tune B on clean
validation images of which a share (≈ 20 %) carry the reversed trigger while keeping their true
label, so the network learns that the trigger means nothing.

The clean validation set is split as fine-pruning splits it (:func:`engine.pruning.finetune.split_clean_valid`):
the held-out share never enters training and is what the repaired model's clean validation
accuracy is measured on. Which images carry the trigger is drawn again every epoch. Every layer
keeps its configuration; only trained weights change (and B itself is never touched: the copy is
trained). Training is cancellable between batches."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from engine.core.errors import PruneLabError
from engine.pruning.finetune import split_clean_valid
from engine.io.memory import check_fits
from engine.core.state import JobState
from engine.pruning.sweep import Progress
from engine.analysis.trigger import Trigger, stamp


@dataclass
class UnlearnConfig:
    epochs: int = 5
    learning_rate: float = 1e-4
    batch_size: int = 32
    holdout: float = 0.2       # share of clean validation never trained on
    stamped_share: float = 0.2  # share of training images that carry the trigger (true label kept)
    seed: int = 0

    def check(self) -> None:
        from engine.pruning.finetune import check_training

        check_training(self.epochs, self.learning_rate, self.batch_size, self.holdout)
        if not (0 < self.stamped_share < 1):
            raise PruneLabError(None, f"the stamped share must be in (0, 1) (got {self.stamped_share})")


@dataclass
class UnlearnResult:
    model: object                 # B_unlearned (keras.Model, B's architecture)
    config: UnlearnConfig
    train_indices: np.ndarray
    holdout_indices: np.ndarray
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    seconds: float = 0.0


def unlearn_events(model, clean_valid, triggers: list[Trigger], config: UnlearnConfig | None = None,
                   state: JobState | None = None, split=None) -> Iterator[Progress]:
    """Yield Progress while training; return the :class:`UnlearnResult` (``yield from``).
    ``model`` is a LoadedModel; ``split``: (train, held-out) indices to use instead of drawing
    them (the repair run shares one split between its methods)."""
    from engine.core.tfsetup import keras
    from engine.models.logits import training_loss

    cfg = config or UnlearnConfig()
    cfg.check()
    state = state or JobState()
    if not triggers:
        raise PruneLabError(None, "unlearning needs a reversed trigger (run the scan first)")
    k = keras()
    t0 = time.perf_counter()
    k.utils.set_random_seed(cfg.seed)
    train_idx, hold_idx = split if split is not None else split_clean_valid(clean_valid.n, cfg.holdout, cfg.seed)
    check_fits(len(train_idx) * int(np.prod(clean_valid.image_shape)) * 4 * 2, clean_valid.path,
               "the unlearning set")
    x_train = clean_valid.take(train_idx)  # 0–255 pixels
    y_train = clean_valid.labels[train_idx]
    net = k.models.clone_model(model.model)
    net.set_weights(model.model.get_weights())
    net.name = "repaired_unlearned"
    net.compile(optimizer=k.optimizers.Adam(cfg.learning_rate),
                loss=training_loss(model.model))
    rng = np.random.default_rng(cfg.seed + 7)
    n = len(x_train)
    batches = -(-n // cfg.batch_size)
    res = UnlearnResult(net, cfg, train_idx, hold_idx)
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(n)
        stamped = rng.random(n) < cfg.stamped_share
        which = rng.integers(0, len(triggers), n)
        losses = []
        for b in range(batches):
            state.cancel_point()
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb = x_train[idx].copy()
            for j, i in enumerate(idx):
                if stamped[i]:
                    xb[j] = stamp(xb[j], triggers[which[i]])
            loss = net.train_on_batch(model.model_input(xb), y_train[idx])
            losses.append(float(np.asarray(loss).ravel()[0]))
            if b % 10 == 0 or b == batches - 1:
                yield Progress("unlearning", (epoch - 1) * batches + b + 1, cfg.epochs * batches,
                               f"epoch {epoch}/{cfg.epochs}")
        res.losses.append(float(np.mean(losses)))
    # rebuilt from its config, without the optimizer (clone_model keeps it compiled): saved, it is B's size
    plain = type(net).from_config(net.get_config())
    plain.set_weights(net.get_weights())
    plain.name = net.name
    res.model = plain
    res.seconds = time.perf_counter() - t0
    return res
