"""What a repair run leaves on disk: ``repair.json`` (per method: its files, measures, seconds,
parameters), ``repairs.csv`` (the comparison table), ``repairs.png`` (the comparison figure),
``B_unlearned.keras`` and every G (``G_unlearned``, ``G_filter``, ``G_strip``, ``G_combined``) with
its ``<name>_eval.py`` (and ``trigger_<t>.npz`` when the scan ran inside the repair). Everything is staged and moved in only when all of it was written: a
failure or a cancel leaves the destination as it was."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from engine.core.state import JobState
from engine.report.compare import _fmt  # one way to write a table cell

CSV_HEADER = ["method", "kind", "clean_acc", "asr", "detection", "detection_working", "false_flags", "seconds", "source", "note"]
G_FILES = {"unlearned": "G_unlearned.keras", "filter": "G_filter.keras", "strip": "G_strip.keras",
           "combined": "G_combined.keras"}
B_UNLEARNED = "B_unlearned.keras"
FLAG_MEANING = {"unlearned": "the backdoored network and its unlearned copy disagree",
                "filter": "stamping the reversed trigger does not move the network's answer",
                "strip": "blends with clean images stay confident (STRIP: low entropy)"}


def repairs_csv(result) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in result.rows:
        w.writerow([_fmt(getattr(r, k)) for k in CSV_HEADER])
    return buf.getvalue()


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def repair_summary(result, extra: dict | None = None) -> dict:
    d = {"model": result.model_path, "n_classes": result.n_classes, "flag_class": result.n_classes,
         "input_scale": result.input_scale, "methods": result.methods, "frr": result.frr,
         "thresholds": result.thresholds, "split": result.split, "evaluated_on": result.eval_sources,
         "note": "thresholds, training and the choice of G_combined's detectors use clean validation data "
                 "only; poisoned data is only evaluated",
         "triggers": [{"label": t.label, "mask_l1": t.l1} for t in result.triggers],
         "combined_detectors": result.combined, "skipped": result.skipped, "scan": result.scan,
         "seconds": result.seconds, "rows": [r.as_dict() for r in result.rows]}
    d.update(extra or {})
    return _jsonable(d)


def comparison_figure(result, path: Path) -> None:
    """Grouped bars per method: clean accuracy, ASR, poisoned detected, clean falsely flagged."""
    from engine.report.figures import _plt, save_figure

    plt = _plt()
    rows = [r for r in result.rows if r.kind != "skipped" and r.clean_acc is not None]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(rows) + 2), 4.8))
    groups = [("clean accuracy", "clean_acc", "tab:green"), ("attack success", "asr", "tab:red"),
              ("poisoned detected (N)", "detection", "tab:orange"), ("clean falsely flagged", "false_flags", "tab:blue")]
    idx = np.arange(len(rows))
    w = 0.8 / len(groups)
    for i, (lab, key, col) in enumerate(groups):
        vals = [np.nan if getattr(r, key) is None else float(getattr(r, key)) for r in rows]
        rects = ax.bar(idx + i * w, vals, w, label=lab, color=col)
        for rc, v in zip(rects, vals):
            if np.isfinite(v):
                ax.text(rc.get_x() + rc.get_width() / 2, rc.get_height() + 1, f"{v:.1f}", ha="center",
                        va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(idx + w * (len(groups) - 1) / 2)
    ax.set_xticklabels([r.method.replace(" + ", "+\n") for r in rows], fontsize=7)
    ax.set_ylim(0, 128)
    ax.set_ylabel("%")
    pois = "poisoned test" if "poisoned_test" in result.eval_sources else (
        "stand-in poisoned" if "standin_poisoned" in result.eval_sources else "poisoned validation")
    ax.set_title(f"Defences compared (clean test / {pois}; thresholds from clean validation only)", fontsize=9)
    ax.spines["right"].set_visible(False)
    ax.spines["top"].set_visible(False)
    ax.legend(loc="upper center", fontsize=7, ncol=4, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    save_figure(fig, path)


def write_repair_outputs(result, out: str | os.PathLike, *, inputs: Iterable = (), extra: dict | None = None,
                         state: JobState | None = None, with_models: bool = True) -> Path:
    from engine.io.atomic import atomic_write_text
    from engine.report.outputs import staged_output
    from engine.pruning.rules import save_model
    from engine.report.evalscript import save_goodnet

    state = state or JobState()
    inputs = list(inputs)
    with staged_output(out, inputs, "repair") as stage:
        if with_models:
            if result.unlearned is not None:
                state.cancel_point()
                save_model(result.unlearned, stage / B_UNLEARNED, inputs)
            for key, g in result.goodnets.items():
                state.cancel_point()
                names = {"unlearn": "unlearning disagreement", "filter": "trigger filter", "strip": "STRIP"}
                meaning = FLAG_MEANING.get(key) or "any of its detectors flags (" + ", ".join(
                    names[d] for d in result.combined) + ")"
                save_goodnet(g, stage / G_FILES[key], inputs, flag_meaning=meaning)
        if result.scan is not None:  # the scan ran here: keep the triggers it reversed
            from engine.io.triggerfile import save_trigger, trigger_file_name

            for t in result.triggers:
                save_trigger(stage / trigger_file_name(t.label), t, inputs)
        state.cancel_point()
        atomic_write_text(stage / "repairs.csv", repairs_csv(result))
        atomic_write_text(stage / "repair.json", json.dumps(repair_summary(result, extra), indent=2))
        comparison_figure(result, stage / "repairs.png")
        state.cancel_point()
    return Path(out)


def summary_lines(result) -> list[str]:
    def f(v):
        return "     –" if v is None else f"{v:6.2f}"

    lines = [f"{'method':<28} {'clean':>6} {'ASR':>6} {'detect':>6} {'(work)':>6} {'false':>6} {'sec':>7}  source"]
    for r in result.rows:
        if r.kind == "skipped":
            lines.append(f"{r.method:<28} skipped: {r.note}")
            continue
        sec = "      –" if r.seconds is None else f"{r.seconds:7.1f}"
        lines.append(f"{r.method:<28} {f(r.clean_acc)} {f(r.asr)} {f(r.detection)} {f(r.detection_working)} {f(r.false_flags)} {sec}  "
                     f"{r.source}")
    return lines


# ------------------------------------------------------------------------------- pruning rows
def rows_from_sweep(folder) -> tuple[list, dict]:
    """Pruning's checkpoints (and fine-pruning runs in sub-folders) from a sweep folder, as rows.
    Their numbers are the sweep's, measured on the sweep's data files (named in ``source``)."""
    import json
    from pathlib import Path

    from engine.analysis.repair import MethodRow
    from engine.report.outputs import read_sweep_summary

    d = Path(folder)
    s = read_sweep_summary(d)
    rows = []
    secs = s.get("timings_s", {}).get("total")
    src = f"sweep folder {d}"
    for cp in s["checkpoints"]:
        if cp.get("step") is None:
            rows.append(MethodRow(f"pruning {cp['threshold']:g} %", "repaired model", source=src,
                                  note="checkpoint never reached"))
            continue
        ev = cp.get("evaluation", {})
        row = MethodRow(f"pruning {cp['threshold']:g} %", "repaired model", source=src, seconds=secs,
                        files=[f for f in (cp.get("b_prime"), cp.get("goodnet")) if f],
                        params={"step": cp["step"], "fraction_pruned": cp.get("fraction_pruned")})
        _sweep_eval_row(row, ev)
        rows.append(row)
    for sub in sorted(p for p in d.iterdir() if p.is_dir()):
        f = sub / "summary.json"
        if not f.is_file():
            continue
        try:
            info = json.loads(f.read_text())
        except (ValueError, OSError, UnicodeDecodeError):
            continue
        if "fine_pruned" in info and "evaluation" in info:
            row = MethodRow(f"fine-pruning step {info.get('step')}", "repaired model", source=f"{sub}",
                            seconds=sum(e.get("seconds", 0) for e in info.get("epochs", [])[-1:]) or None,
                            files=[x for x in (info.get("b_prime"), info.get("goodnet")) if x],
                            params={"step": info.get("step"), "config": info.get("config")})
            _sweep_eval_row(row, info["evaluation"])
            rows.append(row)
    return rows, s


def _sweep_eval_row(row, ev: dict) -> None:
    names = {"clean_valid": "clean_valid", "clean_test": "clean_test", "poisoned_valid": "poisoned_valid",
             "poisoned_test": "poisoned_test"}
    for role, m in ev.items():
        if role not in names:
            continue
        if role.startswith("poisoned"):
            row.metrics[role] = {"asr": m.get("bprime_asr"), "goodnet_asr": m.get("goodnet_asr"),
                                 "flagged": m.get("goodnet_flagged")}
        else:
            row.metrics[role] = {"acc": m.get("bprime_acc"), "goodnet_acc": m.get("goodnet_acc"),
                                 "false_flagged": m.get("goodnet_false_flagged")}
    clean = row.metrics.get("clean_test") or row.metrics.get("clean_valid")
    pois = row.metrics.get("poisoned_test") or row.metrics.get("poisoned_valid")
    if clean:
        row.clean_acc, row.false_flags = clean["acc"], clean["false_flagged"]
    if pois:
        row.asr, row.detection = pois["asr"], pois["flagged"]
