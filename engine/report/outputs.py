"""What a finished sweep (or fine-tuning run) leaves on disk — written by one function each,
used by the CLI and by the window's export alike.

Everything goes into a hidden staging folder next to the destination and is moved in only
when every file was written: a failure or a cancel leaves the destination as it was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from engine.core.errors import PruneLabError
from engine.core.vocabulary import is_poisoned, primary_role
from engine.core.state import JobState
from engine.pruning.thresholds import label as tname


KIND_NAMES = {"sweep": "'prunelab sweep'", "finetune": "'prunelab finetune'", "maps": "'prunelab maps'",
              "demo": "'prunelab demo'", "scan": "'prunelab scan'", "repair": "'prunelab repair'"}


def output_kind(folder: str | os.PathLike) -> str | None:
    """Which command's output a folder holds ("sweep", "finetune", "maps", "demo", "scan", "repair"), or None."""
    folder = Path(folder)
    if (folder / "maps.npz").is_file():
        return "maps"
    if (folder / "scan.json").is_file():
        return "scan"
    if (folder / "repair.json").is_file():
        return "repair"
    if (folder / "demo.json").is_file():
        return "demo"
    if (folder / "summary.json").is_file():
        try:
            head = json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            head = {}
        return "finetune" if isinstance(head, dict) and "from_sweep" in head else "sweep"
    return None


def check_output_folder(out: str | os.PathLike, kind: str | None = None) -> None:
    """``out`` may receive a run's files: it does not exist yet (its parent does), is empty, or
    is a previous output folder of the same command (``kind``; any PruneLab output when None),
    whose files are then replaced by the new run's. A folder holding anything else is refused,
    so a user's own files (or another command's results) are never deleted."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PruneLabError(out, "exists and is not a folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise PruneLabError(out, "its parent folder does not exist")
    if not out.is_dir() or not any(out.iterdir()):
        return
    found = output_kind(out)
    if found is None:
        raise PruneLabError(out, "holds files that PruneLab did not write; give a new or empty folder "
                            "(or a previous PruneLab output folder, whose files are replaced)")
    if kind is not None and found != kind:
        raise PruneLabError(out, f"holds a {KIND_NAMES[found]} output, which this {KIND_NAMES[kind]} run would "
                            "replace; give another folder")


def _holds_input(path: Path, inputs: set[str]) -> bool:
    key = os.path.realpath(path)
    return any(i == key or i.startswith(key.rstrip(os.sep) + os.sep) for i in inputs)


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, inputs: Iterable = (), kind: str | None = None) -> Iterator[Path]:
    """Yield a hidden staging folder; on success the folder ``out`` holds exactly its files:
    a previous run's files are replaced (never an input file, nor a folder holding one)."""
    from engine.io.atomic import check_not_input

    out = Path(out)
    inputs = list(inputs)
    check_output_folder(out, kind)
    parent = out.parent if str(out.parent) else Path(".")
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.prunelab-", dir=parent))
    trash = None
    try:
        yield stage
        for f in stage.iterdir():
            check_not_input(out / f.name, inputs)
        check_output_folder(out, kind)  # still ours (nobody put files there while we ran)
        out.mkdir(exist_ok=True)
        keep = {os.path.realpath(os.fspath(p)) for p in inputs if p}
        old = [f for f in out.iterdir() if not _holds_input(f, keep)]
        if old:  # the previous run's files move aside first, and are deleted once the new ones are in
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.prunelab-old-", dir=parent))
            for f in old:
                os.replace(f, trash / f.name)
        try:
            for f in sorted(stage.iterdir()):
                os.replace(f, out / f.name)
        except BaseException:
            if trash is not None:  # put the previous run back where the new files are not
                for f in trash.iterdir():
                    if not (out / f.name).exists():
                        with contextlib.suppress(OSError):
                            os.replace(f, out / f.name)
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


@dataclass
class SweepOutputs:
    """What :func:`write_sweep_outputs` wrote: the folder and the B′/G files per threshold."""

    folder: Path
    models: dict[float, dict[str, str]] = field(default_factory=dict)


def checkpoint_file_names(threshold: float) -> dict[str, str]:
    t = tname(threshold)
    return {"b_prime": f"B_prime_{t}.h5", "goodnet": f"G_{t}.keras"}


def write_sweep_outputs(result, model, out: str | os.PathLike, *, inputs: Iterable = (),
                        with_models: bool = True, extra: dict | None = None,
                        datasets: dict | None = None, state: JobState | None = None,
                        log: Callable[[str], None] | None = None, use_cache: bool = True) -> SweepOutputs:
    """A sweep's folder: ``metrics.csv``, ``summary.json``, the figures, B′ and G (with its
    ``G_<t>_eval.py``) at every checkpoint that was reached (``with_models``), and — when
    ``datasets`` holds clean and poisoned validation data — ``backdoor_map.png``, the mean
    Grad-CAM maps of both. ``model`` is the :class:`LoadedModel` swept."""
    from engine.pruning.rules import make_bprime, make_goodnet, save_model
    from engine.report.evalscript import save_goodnet
    from engine.report.figures import write_report

    state = state or JobState()
    inputs = list(inputs)
    written = SweepOutputs(Path(out))
    with staged_output(out, inputs, "sweep") as stage:
        if with_models:
            for cp in result.checkpoints:
                if cp.step is None:
                    continue
                state.cancel_point()
                if log:
                    log(f"saving B' and G at the {cp.label} checkpoint (step {cp.step})")
                names = checkpoint_file_names(cp.threshold)
                bp = make_bprime(model.model, result.layer, result.pruned_channels(cp.step),
                                 name=f"repaired_{tname(cp.threshold)}")
                save_model(bp, stage / names["b_prime"], inputs)
                state.cancel_point()
                save_goodnet(make_goodnet(model.model, bp, input_scale=model.input_scale), stage / names["goodnet"], inputs)
                written.models[cp.threshold] = names
        state.cancel_point()
        datasets = datasets or {}
        poisoned = primary_role(datasets, "poisoned_valid")  # with several triggers: the first set's
        if "clean_valid" in datasets and poisoned:
            _backdoor_map(result, model, datasets["clean_valid"], datasets[poisoned], stage / "backdoor_map.png",
                          state, log, use_cache)
        info = {"weights": str(model.weights_path) if model.weights_path else None,
                "input_scale": float(getattr(model, "input_scale", 255.0)),
                "input_scale_source": getattr(model, "input_scale_source", "default")}
        standin = {r: d.standin for r, d in datasets.items()
                   if is_poisoned(r) and getattr(d, "standin", None)}
        if standin:  # the poisoned set is a reversed trigger's stand-in, not the attacker's data
            info["standin"] = standin
        info.update(extra or {})
        write_report(result, stage, written.models, extra=info)
        state.cancel_point()
    return written


def _backdoor_map(result, model, clean, poisoned, path: Path, state, log, use_cache: bool) -> None:
    """``backdoor_map.png`` of a sweep, at the pruned layer or, for a hidden Dense layer, at the
    last Conv2D before it; mean Grad-CAM over a seeded sample of each validation set, cached.
    A figure never loses a sweep: when it cannot be drawn, one warning line says why."""
    from engine.core.errors import Cancelled, warn
    from engine.analysis.meanmaps import MAP_SAMPLE
    from engine.report.maps import write_backdoor_map
    from engine.pruning.graph import conv_before

    layer = conv_before(model.model, result.layer)
    if layer is None:
        warn(None, f"no backdoor_map.png: the maps are drawn at a Conv2D layer and '{result.layer}' has "
             "none before it")
        return
    if log:
        where = layer if layer == result.layer else f"{layer}, the last Conv2D before {result.layer}"
        log(f"drawing the backdoor map (mean Grad-CAM at {where}, clean vs poisoned validation)")
    try:
        write_backdoor_map(model, layer, clean, poisoned, path, state,
                           sample=MAP_SAMPLE, use_cache=use_cache)
    except Cancelled:
        raise
    except Exception as e:  # noqa: BLE001 - the sweep's results are worth more than its figure
        msg = e.message if isinstance(e, PruneLabError) else " ".join(str(e).split())[:200]
        warn(None, f"no backdoor_map.png: {msg}")
        try:
            path.unlink()
        except OSError:
            pass


def write_finetune_outputs(result, model, sweep_dir: Path, out: str | os.PathLike, *,
                           inputs: Iterable = (), source_model: str | None = None) -> Path:
    """A fine-tuning run's folder: the fine-pruned B′ and its G, ``finetune.csv``,
    ``summary.json`` and ``finetune.png``."""
    from engine.io.atomic import atomic_write_text
    from engine.pruning.rules import make_goodnet, save_model
    from engine.report.evalscript import save_goodnet
    from engine.report.figures import epochs_csv, finetune_figure

    inputs = list(inputs)
    step = result.step
    bname, gname = f"B_prime_finetuned_step{step}.h5", f"G_finetuned_step{step}.keras"
    with staged_output(out, inputs, "finetune") as stage:
        save_model(result.model, stage / bname, inputs)
        save_goodnet(make_goodnet(model.model, result.model, input_scale=model.input_scale), stage / gname, inputs)
        atomic_write_text(stage / "finetune.csv", epochs_csv(result.records))
        summary = result.summary()
        summary.update({"from_sweep": str(Path(sweep_dir).resolve()), "model": source_model or str(model.path),
                        "b_prime": bname, "goodnet": gname})
        atomic_write_text(stage / "summary.json", json.dumps(summary, indent=2))
        finetune_figure(result, stage / "finetune.png")
    return Path(out)


# ------------------------------------------------------------------------ reading a sweep back
def read_sweep_summary(folder: str | os.PathLike) -> dict:
    """The ``summary.json`` of a ``prunelab sweep`` folder, checked enough to fine-tune from it."""
    sdir = Path(folder)
    sfile = sdir / "summary.json"
    if not sfile.is_file():
        raise PruneLabError(sdir, "has no summary.json (is it a 'prunelab sweep' output folder?)")
    try:
        summary = json.loads(sfile.read_text())
    except (ValueError, UnicodeDecodeError):
        raise PruneLabError(sfile, "is not valid JSON") from None
    for key in ("model", "datasets", "layer", "ranking", "steps", "checkpoints"):
        if key not in summary:
            raise PruneLabError(sfile, f"has no '{key}' entry (is it a 'prunelab sweep' summary?)")
    return summary


def resolve_step(summary: dict, text: str) -> int:
    t = text.strip()
    if t.endswith("%"):
        thr = float(t[:-1])
        for cp in summary.get("checkpoints", []):
            if abs(cp["threshold"] - thr) < 1e-9:
                if cp["step"] is None:
                    raise PruneLabError(None, f"the sweep never reached the {thr:g} % checkpoint")
                return int(cp["step"])
        raise PruneLabError(None, f"the sweep has no {thr:g} % checkpoint")
    try:
        k = int(t)
    except ValueError:
        raise PruneLabError(None, f"--step must be a step number or a checkpoint such as 4% (got '{text}')") from None
    if not (0 <= k <= summary["steps"]):
        raise PruneLabError(None, f"step {k} is outside the sweep (0–{summary['steps']})")
    return k
