"""The sweep's report: ``metrics.csv``, ``summary.json`` and the lab's figures (headless)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from engine.io.atomic import atomic_path, atomic_write_text
from engine.core.vocabulary import METRICS, SPLIT_KEYS, poisoned_roles, role_metric, set_metric_keys, set_name
from engine.pruning.records import SweepResult

# ``pruned`` (channels pruned at the row) comes last so the lab's column prefix stays
CSV_HEADER = ["step", "channel", "fraction_pruned"] + list(METRICS) + ["pruned"]
FIGURES = {"curves_valid": "curves_valid.png", "curves_test": "curves_test.png",
           "bprime_bars": "bprime_bars.png", "goodnet_bars": "goodnet_bars.png"}


def metrics_csv(result: SweepResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = set_metric_keys(result.labels)  # asr_valid_<name>... with several named poisoned sets
    w.writerow(CSV_HEADER + extra)
    for rec in result.records:
        w.writerow(rec.csv_row(extra))
    return buf.getvalue()


def summary_dict(result: SweepResult, checkpoint_files: dict | None = None, extra: dict | None = None) -> dict:
    base = result.records[0]
    keys = list(METRICS) + set_metric_keys(result.labels)
    checkpoint_files = checkpoint_files or {}
    cps = []
    for cp in result.checkpoints:
        entry = {"threshold": cp.threshold, "step": cp.step, "b_prime": None, "goodnet": None}
        if cp.step is not None:
            rec = result.records[cp.step]
            entry.update({"pruned": result.pruned_at(cp.step), "fraction_pruned": rec.fraction_pruned,
                          "pruned_channels": result.pruned_channels(cp.step),
                          "metrics": {m: rec.metric(m) for m in keys},
                          "evaluation": result.evaluate_step(cp.step)})
            files = checkpoint_files.get(cp.threshold, {})
            entry["b_prime"] = files.get("b_prime")
            entry["goodnet"] = files.get("goodnet")
        cps.append(entry)
    out = {
        "model": result.model_path,
        "datasets": result.dataset_paths,
        "layer": result.layer,
        "n_classes": result.n_classes,
        "flag_class": result.flag_class,
        "method": result.method,
        "thresholds": list(result.thresholds),
        "baseline": {m: base.metric(m) for m in keys},
        "ranking": {"layer": result.layer, "measured_at": result.measured_at,
                    "order": list(result.order),
                    "mean_activation": {r: [float(v) for v in a] for r, a in result.mean_activation.items()}},
        "checkpoints": cps,
        "steps": result.steps,
        "step_size": result.step_size,
        "pruned": result.pruned_per_record(),  # channels pruned at each record (row of metrics.csv)
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }
    sets = poisoned_sets(result)
    if any(set_name(r) for r in sets):
        out["poisoned_sets"] = sets
    if extra:
        out.update(extra)
    return out


def poisoned_sets(result: SweepResult) -> dict[str, dict]:
    """Each poisoned set: its name, the attacker's target read from its labels, its metric."""
    out = {}
    for split in ("valid", "test"):
        for r in poisoned_roles(result.labels, split):
            y = np.asarray(result.labels[r])
            vals, counts = np.unique(y, return_counts=True) if y.size else (np.array([-1]), np.array([0]))
            out[r] = {"name": set_name(r), "target": int(vals[np.argmax(counts)]), "metric": role_metric(r),
                      "file": result.dataset_paths.get(r)}
    return out


# ------------------------------------------------------------------------ figures
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# one ASR curve per poisoned set: reds and warm colours (ASR is red everywhere), told apart by dashes too
SET_COLOURS = ("#d62728", "#ff7f0e", "#8c1c5a", "#b5651d", "#e377c2")
SET_STYLES = ("-", "--", "-.", ":")


def asr_label(standin: str | None, base: str = "Attack success rate") -> str:
    """The ASR's name; with a stand-in poisoned set (``prunelab stamp``) it says so:
    "ASR (reversed trigger, label T)", so no one mistakes it for the attacker's data."""
    return f"ASR ({standin})" if standin else base


def curve_figure(result: SweepResult, split: str, standin: str | None = None):
    """The lab's figure: clean accuracy and ASR against % channels removed, threshold lines.
    ``standin``: the poisoned set's stand-in text (:attr:`engine.io.datasets.LabDataset.standin`)."""
    plt = _plt()
    acc_key, asr_key = SPLIT_KEYS[split]
    x = np.array([r.fraction_pruned * 100 for r in result.records])
    fig, ax = plt.subplots(figsize=(9, 6))
    acc = [r.metric(acc_key) for r in result.records]
    asr = [r.metric(asr_key) for r in result.records]
    if acc[0] is not None:
        ax.plot(x, acc, "b-", label="Clean classification accuracy")
    named = [r for r in poisoned_roles(result.labels, split) if set_name(r)]
    if named:  # several triggers: one ASR curve per poisoned set, each with its target
        targets = poisoned_sets(result)
        for i, role in enumerate(named):
            ax.plot(x, [r.metric(role_metric(role)) for r in result.records], color=SET_COLOURS[i % len(SET_COLOURS)],
                    ls=SET_STYLES[i % len(SET_STYLES)],
                    label=f"ASR · {set_name(role)} (target {targets[role]['target']})")
    elif asr[0] is not None:
        ax.plot(x, asr, "r-", label=asr_label(standin))
    base = result.records[0].clean_valid_acc
    for t in result.thresholds:
        y = base * (1 - t / 100)
        ax.axhline(y, color="k", ls="--", lw=0.8)
        ax.text(x[-1], y, f" {t:g} %", va="center", fontsize=9)
    for cp in result.checkpoints:
        if cp.step is not None:
            ax.axvline(x[cp.step], color="0.6", ls=":", lw=0.8)
    name = "Validation" if split == "valid" else "Test"
    ax.set_title(f"Clean accuracy and attack success rate on the {name.lower()} data\n"
                 f"pruning {result.layer} (ranked at {result.measured_at})", fontsize=11)
    rate_axes(ax)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def rate_axes(ax) -> None:
    """The lab's axes: % of channels removed (0–100) against a rate in %, gridded."""
    ax.set_xlabel("Channels removed (%)")
    ax.set_ylabel("Rate (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(-2, 102)
    ax.set_xticks(np.arange(0, 101, 10))
    ax.set_yticks(np.arange(0, 101, 10))
    ax.grid(alpha=0.4)


def bars_figure(result: SweepResult, which: str, steps: list[tuple[str, int]] | None = None,
                standin: str | None = None):
    """Grouped bars of accuracy and ASR for B' (or G) at each checkpoint, as in the lab."""
    plt = _plt()
    steps = steps if steps is not None else [(c.label, c.step) for c in result.checkpoints if c.step is not None]
    has_test = "clean_test" in result.labels
    split = "test" if has_test else "valid"
    clean_role = f"clean_{split}"
    bd_roles = poisoned_roles(result.labels, split) or [f"poisoned_{split}"]
    fig, ax = plt.subplots(figsize=(7 if len(bd_roles) == 1 else 7 + 1.3 * len(bd_roles), 4.5))
    names = [s[0] for s in steps]
    evs = [result.evaluate_step(k) for _, k in steps]
    groups = [("accuracy", [ev.get(clean_role, {}).get(f"{which}_acc", np.nan) for ev in evs], "tab:green", None)]
    for i, role in enumerate(bd_roles):  # per poisoned set (several triggers: its ASR and flagged share)
        name = set_name(role)
        groups.append((f"ASR · {name}" if name else asr_label(standin, "attack success rate"),
                       [ev.get(role, {}).get(f"{which}_asr", np.nan) for ev in evs],
                       SET_COLOURS[i % len(SET_COLOURS)] if name else "tab:red", None))
        if which == "goodnet":
            groups.append((f"flagged · {name}" if name else "poisoned flagged",
                           [ev.get(role, {}).get("goodnet_flagged", np.nan) for ev in evs],
                           SET_COLOURS[i % len(SET_COLOURS)] if name else "tab:orange", "//" if name else None))
    if not steps:
        ax.text(0.5, 0.5, "no threshold was reached", ha="center", va="center", transform=ax.transAxes)
    idx = np.arange(len(steps))
    w = 0.8 / len(groups)
    for i, (lab, vals, col, hatch) in enumerate(groups):
        rects = (ax.bar(idx + i * w, vals, w, label=lab, color=col) if hatch is None else
                 ax.bar(idx + i * w, vals, w, label=lab, color="white", edgecolor=col, hatch=hatch))
        for r, v in zip(rects, vals):
            if np.isfinite(v):
                ax.text(r.get_x() + r.get_width() / 2, r.get_height() + 1, f"{v:.1f}", ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(idx + w * (len(groups) - 1) / 2)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 112)
    ax.set_ylabel("%")
    ax.set_xlabel("Validation accuracy drop (checkpoint)")
    title = "repaired models (B')" if which == "bprime" else "goodnet detectors (G)"
    ax.set_title(f"Performance of the {title} on the {'test' if has_test else 'validation'} data", pad=22)
    ax.spines["right"].set_visible(False)
    ax.spines["top"].set_visible(False)
    # the legend goes above the axes, in one row: inside, it covered the tallest bars and their values
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(groups), fontsize=8, frameon=False,
              borderaxespad=0.2)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> None:
    plt = _plt()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(result: SweepResult, out: str | os.PathLike, checkpoint_files: dict | None = None,
                 extra: dict | None = None) -> list[Path]:
    """Write metrics.csv, summary.json and the figures into ``out`` (atomically, file by file)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    standin = (extra or {}).get("standin") or {}
    written = [atomic_write_text(out / "metrics.csv", metrics_csv(result)),
               atomic_write_text(out / "summary.json",
                                 json.dumps(summary_dict(result, checkpoint_files, extra), indent=2))]
    if "clean_valid" in result.labels:
        p = out / FIGURES["curves_valid"]
        save_figure(curve_figure(result, "valid", standin.get("poisoned_valid")), p)
        written.append(p)
    if "clean_test" in result.labels or poisoned_roles(result.labels, "test"):
        p = out / FIGURES["curves_test"]
        save_figure(curve_figure(result, "test", standin.get("poisoned_test")), p)
        written.append(p)
    if result.checkpoints:
        for which in ("bprime", "goodnet"):
            p = out / FIGURES[f"{which}_bars"]
            bd_role = "poisoned_test" if "clean_test" in result.labels else "poisoned_valid"
            save_figure(bars_figure(result, which, standin=standin.get(bd_role)), p)
            written.append(p)
    return written


# ------------------------------------------------------------------------ fine-tuning
def epochs_csv(records) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "loss", *METRICS])
    for r in records:
        w.writerow([r.epoch] + ["" if v is None else f"{v:.6f}".rstrip("0").rstrip(".")
                                for v in (r.loss, *(r.metric(k) for k in METRICS))])
    return buf.getvalue()


def finetune_figure(res, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    e = [r.epoch for r in res.records]
    for key, style, name in zip(METRICS, ("b-o", "r-o", "b--s", "r--s"),
                                ("clean accuracy (held-out validation)", "ASR (validation)", "clean accuracy (test)",
                                 "ASR (test)")):
        ys = [r.metric(key) for r in res.records]
        if ys[0] is not None:
            ax.plot(e, ys, style, label=name, ms=4)
    ax.set_xlabel("fine-tuning epoch (0 = pruning only)")
    ax.set_ylabel("%")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.4)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title(f"Fine-pruning from step {res.step} ({len(res.pruned)} channels of {res.layer} pruned)")
    fig.tight_layout()
    save_figure(fig, path)
