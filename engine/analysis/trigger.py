"""A reversed (or known) trigger: a mask over the image and a pattern, and the one stamping rule.

Neural Cleanse's form: x′ = (1 − m)⊙x + m⊙p with m (H×W, in [0, 1]) and p (H×W×3, 0–255). The
scan writes triggers in this form (``trigger_<t>.npz``; the file format, written and read, is
:mod:`engine.io.triggerfile`: analysis only computes), and every defense that uses a trigger
(the stand-in poisoned set, unlearning, the trigger filter) reads them through this module, so
the stamping rule is written once. Images here are always 0–255 pixels,
as on disk; a model's input scale is applied where images enter the model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.core.errors import PruneLabError
from engine.io.triggerfile import read_trigger, scan_folder_triggers


@dataclass(frozen=True)
class Trigger:
    mask: np.ndarray      # H×W float32 in [0, 1]
    pattern: np.ndarray   # H×W×C float32, 0–255
    label: int            # the target label it sends images to

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def l1(self) -> float:
        return float(np.abs(self.mask).sum())


def stamp(x: np.ndarray, trigger: Trigger) -> np.ndarray:
    """Images (N×H×W×C or H×W×C, 0–255) with the trigger stamped on: (1 − m)·x + m·p."""
    x = np.asarray(x, np.float32)
    m = trigger.mask.astype(np.float32)[..., None]
    return (1.0 - m) * x + m * trigger.pattern.astype(np.float32)


def load_trigger(path: str | os.PathLike, label: int | None = None) -> Trigger:
    """Read a trigger file (checked by :func:`engine.io.triggerfile.read_trigger`); ``label``
    overrides the one it stores."""
    mask, pattern, stored = read_trigger(path)
    if label is None:
        label = stored
    if label is None:
        raise PruneLabError(Path(path), "names no target label; give the label")
    return Trigger(mask, pattern, int(label))


def load_scan_triggers(folder: str | os.PathLike, label: int | None = None) -> list[Trigger]:
    """The triggers a scan folder holds for its flagged labels (``scan.json`` + ``trigger_<t>.npz``),
    most suspicious first; or the one for ``label``. A scan that flagged nothing gives []."""
    return [load_trigger(f, t) for t, f in scan_folder_triggers(folder, label)]
