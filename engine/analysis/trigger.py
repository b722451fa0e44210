"""A reversed (or known) trigger: a mask over the image and a pattern, and the one stamping rule.

Neural Cleanse's form: x′ = (1 − m)⊙x + m⊙p with m (H×W, in [0, 1]) and p (H×W×3, 0–255). The
scan writes triggers in this form (``trigger_<t>.npz``), and every defense that uses a trigger
(the stand-in poisoned set, unlearning, the trigger filter) reads them through this module, so
the stamping rule and the file format are written once. Images here are always 0–255 pixels,
as on disk; a model's input scale is applied where images enter the model."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.core.errors import PruneLabError


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


def save_trigger(path: str | os.PathLike, trigger: Trigger, inputs=()) -> Path:
    """``trigger_<t>.npz``: ``mask`` H×W in [0, 1], ``pattern`` H×W×C in 0–255, ``label``."""
    import io

    from engine.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, mask=trigger.mask.astype(np.float32), pattern=trigger.pattern.astype(np.float32),
             label=np.int64(trigger.label))
    return atomic_write_bytes(path, buf.getvalue(), inputs)


def load_trigger(path: str | os.PathLike, label: int | None = None) -> Trigger:
    """Read a trigger file, checking what it holds (it may come from anywhere: no pickles)."""
    p = Path(path)
    if not p.is_file():
        raise PruneLabError(p, "no such trigger file")
    if not zipfile.is_zipfile(p):
        raise PruneLabError(p, "is not a trigger file (.npz with 'mask' and 'pattern')")
    try:
        with np.load(p, allow_pickle=False) as z:
            if "mask" not in z or "pattern" not in z:
                raise PruneLabError(p, "is not a trigger file: it needs 'mask' and 'pattern' arrays")
            mask = np.asarray(z["mask"], np.float32)
            pattern = np.asarray(z["pattern"], np.float32)
            stored = int(z["label"]) if "label" in z else None
    except PruneLabError:
        raise
    except Exception as e:
        raise PruneLabError(p, f"cannot be read as a trigger file ({type(e).__name__})") from None
    if mask.ndim != 2 or pattern.ndim != 3 or pattern.shape[:2] != mask.shape:
        raise PruneLabError(p, f"mask {mask.shape} and pattern {pattern.shape} do not fit: expected "
                            "H×W and H×W×C")
    if not (np.isfinite(mask).all() and np.isfinite(pattern).all()):
        raise PruneLabError(p, "holds NaN or infinite values")
    if mask.min() < 0 or mask.max() > 1 or pattern.min() < 0 or pattern.max() > 255:
        raise PruneLabError(p, "mask must lie in [0, 1] and pattern in 0–255")
    if label is None:
        label = stored
    if label is None:
        raise PruneLabError(p, "names no target label; give the label")
    return Trigger(mask, pattern, int(label))


def trigger_file_name(label: int) -> str:
    return f"trigger_{int(label)}.npz"


def load_scan_triggers(folder: str | os.PathLike, label: int | None = None) -> list[Trigger]:
    """The triggers a scan folder holds for its flagged labels (``scan.json`` + ``trigger_<t>.npz``),
    most suspicious first; or the one for ``label``. A scan that flagged nothing gives []."""
    import json

    d = Path(folder)
    summary = d / "scan.json"
    if not summary.is_file():
        raise PruneLabError(d, "is not a scan folder (no scan.json); run `prunelab scan` first")
    try:
        info = json.loads(summary.read_text(encoding="utf-8"))
        flagged = [int(t) for t in info.get("flagged", [])]
    except Exception as e:
        raise PruneLabError(summary, f"cannot be read ({type(e).__name__})") from None
    labels = flagged if label is None else [int(label)]
    out = []
    for t in labels:
        f = d / trigger_file_name(t)
        if not f.is_file():
            raise PruneLabError(d, f"holds no reversed trigger for label {t} ({f.name})")
        out.append(load_trigger(f, t))
    return out
