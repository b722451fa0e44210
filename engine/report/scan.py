"""What a finished scan leaves on disk: ``scan.json``, ``trigger_<t>.npz`` / ``trigger_<t>.png``
for the flagged and most suspicious labels, and ``scan.png`` (the anomaly chart). Written into a
staging folder and moved in only when complete (:func:`engine.report.outputs.staged_output`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from engine.io.atomic import atomic_path, atomic_write_text
from engine.report.figures import _plt, save_figure
from engine.analysis.scanresult import ANOMALY_THRESHOLD, ScanResult
from engine.analysis.trigger import Trigger, stamp
from engine.io.triggerfile import save_trigger, trigger_file_name


def trigger_png_name(label: int) -> str:
    return f"trigger_{int(label)}.png"


def trigger_figure(trig: Trigger, path: Path, clean: np.ndarray | None = None, model=None) -> Path:
    """Mask, pattern, mask·pattern and up to three clean images stamped with the trigger (with
    the model's answer when ``model`` is given)."""
    plt = _plt()
    n_ex = 0 if clean is None else min(3, len(clean))
    fig, axes = plt.subplots(1, 3 + n_ex, figsize=(2.0 * (3 + n_ex), 2.8))
    axes = np.atleast_1d(axes)
    im = axes[0].imshow(trig.mask, cmap="magma", vmin=0, vmax=1)
    axes[0].set_title(f"mask (L1 {trig.l1:.1f})", fontsize=8)
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04)
    axes[1].imshow(np.clip(trig.pattern, 0, 255).astype(np.uint8))
    axes[1].set_title("pattern", fontsize=8)
    axes[2].imshow(np.clip(trig.mask[..., None] * trig.pattern, 0, 255).astype(np.uint8))
    axes[2].set_title("mask × pattern", fontsize=8)
    if n_ex:
        xs = stamp(clean[:n_ex], trig)
        answers = None
        if model is not None:
            from engine.models.runner import Runner

            answers = np.asarray(Runner(model.model)(model.model_input(xs))).argmax(axis=1)
        for i in range(n_ex):
            ax = axes[3 + i]
            ax.imshow(np.clip(np.rint(xs[i]), 0, 255).astype(np.uint8))
            ax.set_title("stamped" + (f" → {int(answers[i])}" if answers is not None else ""), fontsize=8,
                         color="purple" if answers is not None and answers[i] == trig.label else "black")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"Reversed trigger for label {trig.label}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def scan_figure(result: ScanResult, path: Path) -> Path:
    """Mask L1 norm per scanned label (bars, most suspicious first) and the anomaly index, flagged
    labels in red, the flag threshold dashed."""
    plt = _plt()
    rows = result.scanned
    n = len(rows)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6.0, min(16.0, 0.12 * n + 4)), 5.6), sharex=True)
    xs = np.arange(n)
    flagged = set(result.flagged)
    colors = ["tab:red" if r.label in flagged else ("tab:blue" if r.role != "reference" else "tab:gray")
              for r in rows]
    ax1.bar(xs, [r.mask_l1 for r in rows], color=colors)
    if result.median_l1 is not None:
        ax1.axhline(result.median_l1, color="k", lw=0.8, ls=":", label=f"median {result.median_l1:.1f}")
        ax1.legend(fontsize=8, loc="upper left")
    ax1.set_ylabel("mask L1 norm")
    ax2.bar(xs, [r.anomaly_index for r in rows], color=colors)
    ax2.axhline(ANOMALY_THRESHOLD, color="tab:red", lw=0.8, ls="--", label=f"flag at {ANOMALY_THRESHOLD:g}")
    ax2.axhline(0, color="k", lw=0.5)
    ax2.set_ylabel("anomaly index")
    ax2.legend(fontsize=8, loc="upper right")
    step = max(1, n // 40)
    ax2.set_xticks(xs[::step])
    ax2.set_xticklabels([str(r.label) for r in rows][::step], rotation=90, fontsize=7)
    ax2.set_xlabel("label (most suspicious first; red flagged, grey: random reference labels)")
    verdict = (f"backdoor: label(s) {', '.join(map(str, result.flagged))} flagged" if result.flagged
               else "no evidence of a backdoor")
    ax1.set_title(f"Blind scan of {n} labels ({result.n_classes - n} screened out): {verdict}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def write_scan_outputs(result: ScanResult, model, out: str | os.PathLike, *, clean_ds=None,
                       inputs: Iterable = (), state=None, extra: dict | None = None) -> Path:
    """The scan folder: ``scan.json``, ``scan.png``, ``trigger_<t>.npz`` and ``trigger_<t>.png``."""
    from engine.report.outputs import staged_output

    inputs = list(inputs)
    clean = None
    if clean_ds is not None:
        clean = clean_ds.take(np.arange(min(clean_ds.n, 3)))
    with staged_output(out, inputs, "scan") as stage:
        for t, trig in result.triggers.items():
            if state is not None:
                state.cancel_point()
            save_trigger(stage / trigger_file_name(t), trig, inputs)
            keep = clean
            if clean is not None and clean_ds is not None and getattr(clean_ds, "has_labels", False):
                idx = np.flatnonzero(clean_ds.labels != t)[:3]
                keep = clean_ds.take(idx)
            trigger_figure(trig, stage / trigger_png_name(t), keep, model)
        scan_figure(result, stage / "scan.png")
        info = result.to_json()
        info["model"] = str(model.path) if getattr(model, "path", None) else None
        info["weights"] = str(model.weights_path) if getattr(model, "weights_path", None) else None
        if clean_ds is not None:
            info["clean_valid"] = str(clean_ds.path)
        info.update(extra or {})
        atomic_write_text(stage / "scan.json", json.dumps(info, indent=2))
        if state is not None:
            state.cancel_point()
    return Path(out)


# ----------------------------------------------------------------------------- stand-in data
STANDIN_ATTR = "prunelab_standin"


def standin_text(label: int) -> str:
    return f"reversed trigger, label {int(label)}"


def write_standin(trig: Trigger, data, out: str | os.PathLike, *, inputs: Iterable = (), state=None,
                  batch: int = 1024) -> Path:
    """A lab HDF5 file (``data`` N×C×H×W float32 0–255, ``label`` all the trigger's label) of the
    images of ``data`` stamped with ``trig``, marked as a stand-in with the file attribute
    ``prunelab_standin = "reversed trigger, label T"``. Atomic; never overwrites an input."""
    import h5py

    from engine.io.atomic import check_not_input
    from engine.core.errors import PruneLabError

    out = Path(out)
    inputs = list(inputs) + [getattr(data, "path", None)]
    check_not_input(out, [p for p in inputs if p is not None])
    h, w, c = data.image_shape
    if (h, w) != trig.hw or c != trig.pattern.shape[2]:
        raise PruneLabError(getattr(data, "path", None), f"images are {h}×{w}×{c}, the trigger is "
                            f"{trig.hw[0]}×{trig.hw[1]}×{trig.pattern.shape[2]}")
    if not out.parent.exists():
        raise PruneLabError(out, "its folder does not exist")
    with atomic_path(out, [p for p in inputs if p is not None]) as tmp:
        with h5py.File(tmp, "w") as f:
            d = f.create_dataset("data", shape=(data.n, c, h, w), dtype="float32")
            for s, x in data.batches(batch):
                if state is not None:
                    state.cancel_point()
                xs = np.clip(np.rint(stamp(x, trig)), 0, 255).astype(np.float32)
                d[s:s + len(xs)] = xs.transpose(0, 3, 1, 2)
            f.create_dataset("label", data=np.full(data.n, trig.label, np.float32))
            f.attrs[STANDIN_ATTR] = standin_text(trig.label)
    return out
