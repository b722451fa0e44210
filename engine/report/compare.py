"""Side-by-side comparison of pruning criteria: the table (``rankings.csv``) and the overlaid
curves (``rankings.png``). Headless; the window shows the same rows.

The defender's question is not only "where do the 2/4/10 % checkpoints fall" but "is there a
step where the attack fails (ASR ≤ 10 % on validation) and, among those, how much clean
accuracy is left" — that operating point is a column of its own. A ranking that never gets
there has empty cells (None), never a made-up number."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from engine.core.vocabulary import METRICS, SPLIT_KEYS
from engine.pruning.criteria import Ranking, banded_families, colour_of, family_of
from engine.pruning.records import SweepResult

ASR_MAX = 10.0
DROP_MAX = 4.0  # the defender's region: ASR <= ASR_MAX and a relative clean accuracy drop <= DROP_MAX %
POINT_COLOURS = {"fine-pruned": "#c2185b", "unlearned": "#00838f", "filter": "#455a64", "STRIP": "#558b2f",
                 "combined": "#6a1b9a"}


def defender_region(base_clean: float, asr_max: float = ASR_MAX, drop_max: float = DROP_MAX) -> tuple[float, float]:
    """(lowest clean accuracy, highest ASR) of the region a defender wants: ASR <= ``asr_max``
    and clean accuracy at most ``drop_max`` % (relative, like the checkpoints) below ``base_clean``."""
    return base_clean * (1 - drop_max / 100), asr_max


def tradeoff_xy(records, split: str = "valid") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean accuracy, ASR, record index) of the records where both are known, in step order:
    one point per step of a sweep on the trade-off plot."""
    acc_key, asr_key = SPLIT_KEYS[split]
    rows = [(r.metric(acc_key), r.metric(asr_key), i) for i, r in enumerate(records)]
    rows = [r for r in rows if r[0] is not None and r[1] is not None]
    if not rows:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    a, b, i = zip(*rows)
    return np.array(a, float), np.array(b, float), np.array(i, np.int64)


@dataclass(frozen=True)
class NamedPoint:
    """A single repaired model on the trade-off plot (fine-pruned, unlearned, filtered, STRIP):
    its clean accuracy and ASR (%, validation unless said otherwise)."""

    name: str
    clean: float
    asr: float
    kind: str = "fine-pruned"  # picks the colour (POINT_COLOURS)


@dataclass(frozen=True)
class Point:
    """One record of a curve (validation and test metrics; None where not measured). ``step``
    is the record's position (what checkpoints and ``finetune --step`` name), ``pruned`` the
    channels it prunes (equal unless the sweep ran with a step size > 1)."""

    step: int
    fraction: float
    clean: float | None
    asr: float | None
    clean_test: float | None = None
    asr_test: float | None = None
    pruned: int | None = None


@dataclass(frozen=True)
class Curve:
    """A ranking's metrics per record as float arrays (NaN where a dataset is missing).
    Entry i is record ``rows[i]`` with ``pruned[i]`` channels pruned; checkpoints name
    entries. For a random band, the entries are the channel counts every seed measured and
    ``rows`` are those counts (a mean curve has no records of its own)."""

    name: str
    fraction: np.ndarray
    values: dict  # metric key -> float64 array
    checkpoints: dict  # threshold -> entry or None
    pruned: np.ndarray  # channels pruned per entry
    rows: np.ndarray  # record position per entry
    lo: dict = field(default_factory=dict)  # the random band: per-entry minimum …
    hi: dict = field(default_factory=dict)  # … and maximum over its seeds

    def point(self, i: int | None) -> Point | None:
        if i is None:
            return None

        def v(key):
            x = self.values[key][i]
            return None if np.isnan(x) else float(x)

        return Point(int(self.rows[i]), float(self.fraction[i]), *(v(k) for k in METRICS), int(self.pruned[i]))


def curve_of(name: str, result: SweepResult) -> Curve:
    vals = {k: np.array([np.nan if r.metric(k) is None else r.metric(k) for r in result.records], np.float64)
            for k in METRICS}
    frac = np.array([r.fraction_pruned for r in result.records], np.float64)
    pruned = np.array(result.pruned_per_record(), np.int64)  # the sweep's rule: record -> channels pruned
    return Curve(name, frac, vals, {c.threshold: c.step for c in result.checkpoints}, pruned,
                 np.arange(len(result.records)))


def band_of(name: str, curves: Sequence[Curve], thresholds: Sequence[float]) -> Curve:
    """Mean curve of several (random) orders with their min–max band, at the channel counts
    all of them measured (with a step size > 1 each order refines other steps); its
    checkpoints are those of the mean clean validation accuracy."""
    common = sorted(set.intersection(*(set(c.pruned.tolist()) for c in curves)))
    picks = [[int(np.flatnonzero(c.pruned == p)[0]) for p in common] for c in curves]
    stack = {k: np.stack([c.values[k][idx] for c, idx in zip(curves, picks)]) for k in METRICS}
    mean = {k: s.mean(axis=0) for k, s in stack.items()}
    clean = mean[SPLIT_KEYS["valid"][0]]
    cps = {}
    for t in thresholds:
        drop = (clean[0] - clean) / clean[0] * 100 if clean[0] > 0 else np.zeros_like(clean)
        hit = np.flatnonzero(drop >= t - 1e-9)
        cps[t] = int(hit[0]) if len(hit) else None
    grid = np.array(common, np.int64)
    return Curve(name, curves[0].fraction[picks[0]], mean, cps, grid, grid,
                 {k: s.min(axis=0) for k, s in stack.items()}, {k: s.max(axis=0) for k, s in stack.items()})


@dataclass(frozen=True)
class ComparisonRow:
    name: str
    title: str
    needs: tuple[str, ...]
    diagnostic: bool
    cost_s: float | None  # computing the ranking's scores (None for a band)
    sweep_s: float | None  # its exact sweep
    checkpoints: dict  # threshold -> Point | None
    first_defended: Point | None  # first step with validation ASR ≤ asr_max
    best_defended: Point | None  # best clean validation accuracy among those steps
    threshold_point: Point | None = None  # clp's own operating point
    members: int = 1  # > 1: the mean of a random band
    cached: bool = False  # the scores came from the cache (cost_s is then the look-up)
    train_s: float | None = None  # what computing them really took (ANP's training), cached or not

    @property
    def real_cost_s(self) -> float | None:
        """The seconds the scores cost to compute, even when this run read them from the cache."""
        return self.train_s if self.train_s is not None else self.cost_s


def defended_points(curve: Curve, asr_max: float = ASR_MAX) -> tuple[Point | None, Point | None]:
    """(first step with ASR ≤ asr_max, the step with the best clean accuracy among those —
    the earliest of equals)."""
    clean, asr = (curve.values[k] for k in SPLIT_KEYS["valid"])
    ok = np.flatnonzero(~np.isnan(asr) & (asr <= asr_max + 1e-9))
    if not len(ok):
        return None, None
    best = ok[int(np.argmax(np.nan_to_num(clean[ok], nan=-1.0)))]
    return curve.point(int(ok[0])), curve.point(int(best))


def own_point(curve: Curve, rk: Ranking) -> int | None:
    """The entry of a ranking's own operating point (clp: its channels above mean + u·std),
    None when it has none or the sweep did not measure that channel count."""
    if rk.threshold_step is None:
        return None
    hit = np.flatnonzero(curve.pruned == rk.threshold_step)
    return int(hit[0]) if len(hit) else None


def _row(curve: Curve, title: str, needs, diagnostic: bool, cost, sweep_s, asr_max, tstep=None,
         members=1) -> ComparisonRow:
    first, best = defended_points(curve, asr_max)
    return ComparisonRow(curve.name, title, tuple(needs), diagnostic, cost, sweep_s,
                         {t: curve.point(s) for t, s in curve.checkpoints.items()}, first, best,
                         curve.point(tstep), members)


def comparison_table(rankings: Sequence[Ranking], results: dict, asr_max: float = ASR_MAX) -> list[ComparisonRow]:
    """One row per ranking (in the given order) and, after several orders of a seeded family,
    one row for their mean curve (named by the family: ``random``)."""
    rows: list[ComparisonRow] = []
    curves: dict[str, Curve] = {}
    for rk in rankings:
        res = results[rk.name]
        c = curves[rk.name] = curve_of(rk.name, res)
        tstep = own_point(c, rk)
        row = _row(c, rk.title, rk.needs, rk.diagnostic, rk.cost_s, res.timings.get("total"), asr_max, tstep)
        train = rk.extra.get("train_s")
        rows.append(replace(row, cached=bool(rk.cached), train_s=None if train is None else float(train)))
    for fam, members in banded_families(curves).items():  # one band row per family, after its last order
        band = band_of(fam, [curves[n] for n in members], results[members[0]].thresholds)
        at = max(i for i, r in enumerate(rows) if r.name == members[-1]) + 1
        rows.insert(at, _row(band, f"{fam} (mean of {len(members)} seeds)", (), False, None, None, asr_max,
                             members=len(members)))
    return rows


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def csv_header(thresholds: Sequence[float], asr_max: float = ASR_MAX) -> list[str]:
    a = f"{asr_max:g}"
    head = ["ranking", "title", "needs", "diagnostic", "cost_s", "sweep_s"]
    for t in thresholds:
        head += [f"step_at_{t:g}", f"clean_valid_at_{t:g}", f"asr_valid_at_{t:g}"]
    head += [f"first_step_asr_le_{a}", f"clean_valid_at_first_asr_le_{a}",
             f"best_clean_valid_asr_le_{a}", f"step_of_best_asr_le_{a}", f"clean_test_at_best_asr_le_{a}",
             f"asr_test_at_best_asr_le_{a}", f"channels_pruned_at_best_asr_le_{a}", "own_threshold_step", "seeds"]
    return head


def rankings_csv(rows: Sequence[ComparisonRow], asr_max: float = ASR_MAX) -> str:
    thresholds = list(rows[0].checkpoints) if rows else []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(thresholds, asr_max))
    for r in rows:
        line = [r.name, r.title, "+".join(r.needs) or "none", "yes" if r.diagnostic else "no",
                _fmt(None if r.cost_s is None else round(r.cost_s, 4)),
                _fmt(None if r.sweep_s is None else round(r.sweep_s, 4))]
        for t in thresholds:
            p = r.checkpoints.get(t)
            line += [_fmt(p and p.step), _fmt(p and p.clean), _fmt(p and p.asr)]
        f, b = r.first_defended, r.best_defended
        line += [_fmt(f and f.step), _fmt(f and f.clean), _fmt(b and b.clean), _fmt(b and b.step),
                 _fmt(b and b.clean_test), _fmt(b and b.asr_test), _fmt(b and b.pruned),
                 _fmt(r.threshold_point and r.threshold_point.step), str(r.members)]
        w.writerow(line)
    return buf.getvalue()


# ------------------------------------------------------------------------------ figure
def rankings_figure(rankings: Sequence[Ranking], results: dict, splits: Sequence[str] = ("valid", "test")):
    """Overlaid curves, one panel per split: one colour per ranking, clean accuracy solid,
    ASR dashed, several random orders as a shaded min–max band around their mean; clp's own
    threshold is a marker; the diagnostic ranking is labelled so."""
    from engine.report.figures import _plt, rate_axes

    plt = _plt()
    first = results[rankings[0].name]
    splits = [s for s in splits if (f"clean_{s}" in first.labels or f"poisoned_{s}" in first.labels)]
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(7.5 * max(1, len(splits)), 5.5), squeeze=False)
    families = banded_families(rk.name for rk in rankings)
    entries: list[tuple[str, Curve, Ranking | None]] = []
    for rk in rankings:
        fam = family_of(rk.name)
        if fam in families:
            members = families[fam]
            if rk.name == members[0]:
                band = band_of(fam, [curve_of(n, results[n]) for n in members], first.thresholds)
                entries.append((f"{fam} (mean, band of {len(members)} seeds)", band, None))
            continue
        label = rk.name + (" — diagnostic, uses the trigger" if rk.diagnostic else "")
        entries.append((label, curve_of(rk.name, results[rk.name]), rk))
    for ax, split in zip(axes[0], splits):
        acc_key, asr_key = SPLIT_KEYS[split]
        for label, c, rk in entries:
            col = colour_of(c.name)
            x = c.fraction * 100
            for key, ls, suffix in ((acc_key, "-", "clean"), (asr_key, "--", "ASR")):
                y = c.values[key]
                if np.all(np.isnan(y)):
                    continue
                ax.plot(x, y, ls, color=col, lw=1.6, label=f"{label}: {suffix}")
                if c.lo:
                    ax.fill_between(x, c.lo[key], c.hi[key], color=col, alpha=0.15, lw=0)
            s = own_point(c, rk) if rk is not None else None
            if s is not None:
                ax.plot([x[s]], [c.values[acc_key][s]], "o", color=col, ms=7, mfc="none", mew=1.8,
                        label=f"{rk.name}: {rk.point_label} ({rk.threshold_step} channels)")
        ax.axhline(ASR_MAX, color="0.5", lw=0.7, ls=":")
        ax.set_title(f"{'Validation' if split == 'valid' else 'Test'} data: pruning {first.layer} "
                     f"in each ranking's order", fontsize=10)
        rate_axes(ax)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels) // 2 + 1)), fontsize=7.5,
               frameon=False)
    fig.suptitle("Pruning criteria compared (clean accuracy solid, attack success rate dashed)", fontsize=11)
    rows = (len(labels) + 3) // 4
    fig.tight_layout(rect=(0, 0.035 * rows + 0.02, 1, 0.95))
    return fig


def write_comparison(rankings: Sequence[Ranking], results: dict, out, asr_max: float = ASR_MAX) -> list:
    """Write ``rankings.csv`` and ``rankings.png`` into folder ``out`` (atomically)."""
    from pathlib import Path

    from engine.io.atomic import atomic_write_text
    from engine.report.figures import save_figure

    out = Path(out)
    rows = comparison_table(rankings, results, asr_max)
    written = [atomic_write_text(out / "rankings.csv", rankings_csv(rows, asr_max))]
    save_figure(rankings_figure(rankings, results), out / "rankings.png")
    return written + [out / "rankings.png", write_tradeoff(rankings, results, out, asr_max=asr_max)]


def tradeoff_figure(rankings: Sequence[Ranking], results: dict, points: Sequence[NamedPoint] = (),
                    split: str = "valid", asr_max: float = ASR_MAX, drop_max: float = DROP_MAX):
    """The defender's picture: clean accuracy (x) against ASR (y), one curve per criterion
    (each step a point, step 0 — the unpruned model — ringed), the random orders as faint
    lines around their mean, repaired models as single named points, and the region a
    defender wants (ASR <= asr_max, clean drop <= drop_max %) shaded. The legend sits
    outside the axes."""
    from engine.report.figures import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(10.5, 6))
    first = results[rankings[0].name]
    acc_key, asr_key = SPLIT_KEYS[split]
    base = first.records[0].metric(acc_key)
    families = banded_families(rk.name for rk in rankings)
    lo_x = 100.0
    if base is not None:
        x0, y1 = defender_region(base, asr_max, drop_max)
        ax.axvspan(x0, 100, ymin=0, ymax=(y1 + 2) / 104, color="#2a9d3a", alpha=0.13, lw=0,
                   label=f"defender's region: ASR ≤ {asr_max:g} %, clean drop ≤ {drop_max:g} %")
        ax.plot([x0, x0, 100], [-2, y1, y1], color="#2a9d3a", lw=0.9)
    for fam, members in families.items():  # each seeded family: its orders faint, their mean bold
        curves = [curve_of(n, results[n]) for n in members]
        for c in curves:
            ax.plot(c.values[acc_key], c.values[asr_key], "-", color=colour_of(fam),
                    lw=0.7, alpha=0.45)
        band = band_of(fam, curves, first.thresholds)
        bx, by = band.values[acc_key], band.values[asr_key]
        ax.plot(bx, by, "-", color=colour_of(fam), lw=2,
                label=f"{fam}: mean of {len(members)} orders (faint: each)")
        lo_x = min(lo_x, float(np.nanmin(bx)) if np.isfinite(bx).any() else lo_x)
    for rk in rankings:
        if family_of(rk.name) in families:
            continue
        x, y, _ = tradeoff_xy(results[rk.name].records, split)
        if not len(x):
            continue
        label = rk.title + (" — uses the trigger" if rk.diagnostic else "")
        ax.plot(x, y, "-o", color=colour_of(rk.name), lw=1.6, ms=2.5, label=label)
        lo_x = min(lo_x, float(x.min()))
    if len(rankings) and base is not None:
        x, y, _ = tradeoff_xy(first.records[:1], split)
        if len(x):
            ax.plot(x, y, "o", ms=10, mfc="none", mec="#222", mew=1.4, label="unpruned model (step 0)")
    for p in points:
        ax.plot([p.clean], [p.asr], "*", ms=15, color=POINT_COLOURS.get(p.kind, "#c2185b"), mec="#222", mew=0.6,
                label=p.name)
        ax.annotate(p.name, (p.clean, p.asr), textcoords="offset points", xytext=(8, 6), fontsize=8)
        lo_x = min(lo_x, p.clean)
    ax.set_xlim(max(0.0, lo_x - 5), 101)
    ax.set_ylim(-2, 102)
    ax.set_xlabel(f"Clean {'validation' if split == 'valid' else 'test'} accuracy (%)  →  better")
    ax.set_ylabel("Attack success rate (%)  ↓  better")
    ax.grid(alpha=0.35)
    ax.set_title(f"Which defense keeps the most accuracy for the least attack success?\n"
                 f"pruning {first.layer}: each point a step (channels removed), right-to-left", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    fig.tight_layout()
    return fig


def write_tradeoff(rankings: Sequence[Ranking], results: dict, out, points: Sequence[NamedPoint] = (),
                   asr_max: float = ASR_MAX):
    """``tradeoff.png`` in folder ``out`` (atomically)."""
    from pathlib import Path

    from engine.report.figures import save_figure

    path = Path(out) / "tradeoff.png"
    save_figure(tradeoff_figure(rankings, results, points, asr_max=asr_max), path)
    return path


# ------------------------------------------------------------------------------ a sweep folder
def rankings_index(rankings: Sequence[Ranking]) -> dict:
    """The top ``summary.json``'s ``rankings`` entry: name → order, scores, folder."""
    return {rk.name: {"order": [int(c) for c in rk.order], "scores": [float(s) for s in rk.scores],
                      "dir": f"rankings/{rk.name}", "title": rk.title, "diagnostic": rk.diagnostic}
            for rk in rankings}


def write_rankings_sweep(rankings: Sequence[Ranking], results: dict, model, out, *, inputs=(),
                         with_models: bool = True, datasets: dict | None = None, state=None, log=None) -> None:
    """A sweep folder for several rankings: the top-level files exactly as a plain sweep
    writes them, for the first ranking (its ``summary.json`` gains ``rankings``), plus
    ``rankings/<name>/`` (the same files for each ranking, with its ``order`` and ``scores``),
    ``rankings.csv`` and ``rankings.png``. The top level is staged and moved in as one unit;
    ``rankings/`` is staged beside it and swapped in only after that succeeded."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from engine.core.errors import PruneLabError
    from engine.report.outputs import staged_output, write_sweep_outputs

    out = Path(out)
    rankings = list(rankings)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise PruneLabError(out, "its parent folder does not exist")
    old = out / "rankings"
    for f in inputs:  # the earlier rankings/ folder is replaced as a whole: never with an input in it
        if old.exists() and Path(f).resolve().is_relative_to(old.resolve()):
            raise PruneLabError(f, f"is inside {old}, which this sweep replaces; choose another --out")
    side = Path(tempfile.mkdtemp(prefix=f".{out.name}.rankings-", dir=parent))
    try:
        for rk in rankings:
            extra = {"order": [int(c) for c in rk.order], "scores": [float(s) for s in rk.scores],
                     "criterion": {k: v for k, v in rk.summary().items() if k not in ("order", "scores")},
                     "ranking_name": rk.name}
            write_sweep_outputs(results[rk.name], model, side / rk.name, inputs=inputs, with_models=with_models,
                                extra=extra, state=state, log=log)
        with staged_output(out, inputs, "sweep") as stage:
            write_sweep_outputs(results[rankings[0].name], model, stage, inputs=inputs, with_models=with_models,
                                extra={"rankings": rankings_index(rankings)}, datasets=datasets, state=state,
                                log=log)
            write_comparison(rankings, results, stage)
        if old.exists() or old.is_symlink():  # an earlier run's rankings: replaced, not merged
            os.replace(old, side / ".previous")
        os.replace(side, old)
    finally:
        shutil.rmtree(side, ignore_errors=True)
        shutil.rmtree(out / "rankings" / ".previous", ignore_errors=True)


def ranking_folder(sweep_dir, name: str):
    """``rankings/<name>`` of a ``sweep --rankings`` folder (a sweep folder of its own)."""
    import json
    from pathlib import Path

    from engine.core.errors import PruneLabError

    sfile = Path(sweep_dir) / "summary.json"
    try:
        index = json.loads(sfile.read_text()).get("rankings") or {}
    except FileNotFoundError:
        raise PruneLabError(sweep_dir, "has no summary.json (is it a 'prunelab sweep' output folder?)") from None
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        raise PruneLabError(sfile, "is not a readable 'prunelab sweep' summary") from None
    if name not in index:
        known = ", ".join(index) or "none: it was swept with the lab's ranking only"
        raise PruneLabError(sfile, f"has no ranking '{name}' (rankings: {known})")
    folder = (Path(sweep_dir) / str(index[name].get("dir", ""))).resolve()
    if not folder.is_relative_to(Path(sweep_dir).resolve()) or not folder.is_dir():
        raise PruneLabError(sfile, f"names a folder for ranking '{name}' that is not inside {sweep_dir}")
    return folder


def summary_lines(rows: Sequence[ComparisonRow], asr_max: float = ASR_MAX) -> list[str]:
    """A few lines for the terminal: per ranking, where ASR first falls to ≤ asr_max and the
    best clean accuracy among such steps."""
    out = [f"{'ranking':<12} {'first step ASR <= ' + format(asr_max, 'g') + ' %':<32} best clean with ASR <= "
           f"{asr_max:g} %"]
    for r in rows:
        f, b = r.first_defended, r.best_defended
        first = "never" if f is None else f"step {f.step} (clean {f.clean:.2f} %)"
        best = "-" if b is None else f"{b.clean:.2f} % at step {b.step}"
        out.append(f"{r.name:<12} {first:<32} {best}" + ("   [diagnostic: uses the trigger]" if r.diagnostic else ""))
    return out
