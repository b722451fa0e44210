"""Trigger files on disk: ``trigger_<t>.npz`` (``mask`` H×W in [0, 1], ``pattern`` H×W×C in 0–255,
``label``) and the scan folder's ``scan.json`` that names the flagged labels. Written atomically,
read as hostile input (no pickles, every array checked). The trigger itself and its stamping rule
are computation and live in :mod:`engine.analysis.trigger`, which builds its ``Trigger`` from
what :func:`read_trigger` returns."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from engine.core.errors import PruneLabError


def trigger_file_name(label: int) -> str:
    return f"trigger_{int(label)}.npz"


def save_trigger(path: str | os.PathLike, trigger, inputs=()) -> Path:
    """Write ``trigger`` (anything with ``mask``, ``pattern`` and ``label``) as a trigger file;
    ``inputs``: opened files it must not overwrite."""
    from engine.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, mask=trigger.mask.astype(np.float32), pattern=trigger.pattern.astype(np.float32),
             label=np.int64(trigger.label))
    return atomic_write_bytes(path, buf.getvalue(), inputs)


def read_trigger(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int | None]:
    """``(mask, pattern, stored label or None)`` of a trigger file, checked (it may come from
    anywhere); a one-line PruneLabError otherwise."""
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
    return mask, pattern, stored


def scan_folder_triggers(folder: str | os.PathLike, label: int | None = None) -> list[tuple[int, Path]]:
    """``[(label, its trigger file)]`` of a scan folder: its flagged labels (``scan.json``), most
    suspicious first, or ``label`` alone; each file checked to exist."""
    d = Path(folder)
    summary = d / "scan.json"
    if not summary.is_file():
        raise PruneLabError(d, "is not a scan folder (no scan.json); run `prunelab scan` first")
    try:
        info = json.loads(summary.read_text(encoding="utf-8"))
        flagged = [int(t) for t in info.get("flagged", [])]
    except Exception as e:
        raise PruneLabError(summary, f"cannot be read ({type(e).__name__})") from None
    out = []
    for t in (flagged if label is None else [int(label)]):
        f = d / trigger_file_name(t)
        if not f.is_file():
            raise PruneLabError(d, f"holds no reversed trigger for label {t} ({f.name})")
        out.append((t, f))
    return out
