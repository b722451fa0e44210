"""The Scan and Repair tabs' jobs, as plain functions (like :mod:`guiapp.tasks`): inputs as
values plus the engine's :class:`JobState`, reports through what they yield and return. No Qt, no
math: they call engine.analysis.scan / repair and engine.report.scan / repair."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.core.state import JobState
from engine.core.vocabulary import primary_role

STANDIN_FOR = {"poisoned_valid": "clean_valid", "poisoned_test": "clean_test"}  # slot -> the clean set stamped


@dataclass(frozen=True)
class TriggerView:
    """One reversed trigger as the tab draws it: mask, pattern, a clean image of another class
    stamped with it, the model's answer for it, and Grad-CAM of that answer on the stamped image."""

    label: int
    mask: np.ndarray  # H×W in [0, 1]
    pattern: np.ndarray  # H×W×C uint8
    stamped: np.ndarray | None  # H×W×C uint8
    answer: int | None  # the model's class for the stamped image
    gradcam: np.ndarray | None  # H×W in [0, 1]
    flagged: bool = False


@dataclass(frozen=True)
class ScanDone:
    result: object  # engine.analysis.scan.ScanResult
    views: dict = field(default_factory=dict)  # label -> TriggerView (flagged first, then most suspicious)
    model_path: str = ""
    clean_path: str = ""


def run_scan(model, clean_valid, state: JobState, *, seed: int = 0, budget: int | None = None,
             labels=None, layer: str | None = None) -> Iterator:
    """Yield the scan's Progress; return a :class:`ScanDone` with the images of its triggers."""
    from engine.analysis.scan import scan_events

    result = yield from scan_events(model, clean_valid, labels=labels, seed=seed, budget=budget, state=state)
    state.cancel_point()
    return ScanDone(result, trigger_views(model, clean_valid, result, layer, state), str(model.path),
                    str(clean_valid.path))


def trigger_views(model, clean_valid, result, layer: str | None, state: JobState) -> dict:
    from engine.analysis.trigger import stamp
    from engine.core.errors import PruneLabError

    order = [t for t in result.flagged if t in result.triggers]
    order += [r.label for r in result.scanned if r.label in result.triggers and r.label not in order]
    maker = None
    try:
        from engine.analysis.maps import MapMaker

        maker = MapMaker(model, layer, "gradcam")
    except PruneLabError:  # no Conv2D to map: the images without Grad-CAM
        maker = None
    out = {}
    labels = clean_valid.labels
    for t in order:
        state.cancel_point()
        trig = result.triggers[t]
        others = np.flatnonzero(labels != t)
        stamped = answer = cam = None
        if len(others):
            x = stamp(clean_valid.take(others[:1]), trig)
            x = np.clip(np.rint(x), 0, 255).astype(np.float32)
            stamped = x[0].astype(np.uint8)
            if maker is not None:
                maps, cls = maker.explain(x)
                cam, answer = maps[0], int(cls[0])
            else:
                answer = int(np.argmax(np.asarray(model.model(model.model_input(x), training=False))[0]))
        out[int(t)] = TriggerView(int(t), np.asarray(trig.mask, np.float32),
                                  np.clip(trig.pattern, 0, 255).astype(np.uint8), stamped, answer, cam,
                                  t in result.flagged)
    return out


def write_standins(trigger, datasets: dict, inputs, state: JobState, folder: Path | None = None) -> dict:
    """The stamped stand-in (engine.report.scan.write_standin) of each clean set there is — clean
    validation for the poisoned validation slot, clean test for the poisoned test slot — in a new
    temporary folder (never over an input). Returns {poisoned role: path}."""
    from engine.report.scan import write_standin

    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="prunelab-standin-"))
    out = {}
    for role, source in STANDIN_FOR.items():
        ds = datasets.get(source)
        if ds is None:
            continue
        state.cancel_point()
        name = f"standin_{'valid' if role == 'poisoned_valid' else 'test'}_label{trigger.label}.h5"
        out[role] = write_standin(trigger, ds, folder / name, inputs=inputs, state=state)
    return out


def save_scan(done: ScanDone, model, clean_valid, folder: Path, inputs, state: JobState) -> Path:
    """The folder ``prunelab scan`` writes, through the same function."""
    from engine.report.scan import write_scan_outputs

    return write_scan_outputs(done.result, model, folder, clean_ds=clean_valid, inputs=inputs, state=state)


# ---------------------------------------------------------------------------- repair
def run_repair(model, datasets: dict, triggers, methods, frr: float, state: JobState, *, epochs: int = 5,
               strip_n: int = 10, seed: int = 0) -> Iterator:
    """Yield the repair's Progress (the scan's first when no trigger is given and a method needs
    one); return the engine's RepairResult."""
    from engine.analysis.repair import repair_events

    # several poisoned sets (several triggers): the repairs are measured on the first of each split
    sets = {r: datasets[primary_role(datasets, r)] for r in ("clean_valid", "clean_test", "poisoned_valid",
                                                               "poisoned_test") if primary_role(datasets, r)}
    return (yield from repair_events(model, sets, triggers=triggers, methods=methods, frr=frr, epochs=epochs,
                                     strip_n=strip_n, seed=seed, state=state))


def repair_points(result) -> list:
    """Each repaired model or detector G of ``result`` as a named point for the trade-off plot
    (engine.report.compare.NamedPoint): clean accuracy on the held-out clean validation images and
    ASR on poisoned validation (else the stand-in, else poisoned test) — validation, like the
    sweep's curves there. The repaired model's answers for unlearning, G's for a detector."""
    from engine.report.compare import NamedPoint

    kinds = {"unlearn": ("B unlearned", "unlearned"), "filter": ("G trigger filter", "filter"),
             "strip": ("G STRIP", "STRIP"), "combined": ("G combined", "combined")}
    pts = []
    for row in result.rows:
        if row.method not in kinds:
            continue
        repaired = row.kind == "repaired model"
        clean = row.metrics.get("clean_valid_heldout")
        pois = next((row.metrics[r] for r in ("poisoned_valid", "standin_poisoned", "poisoned_test")
                     if r in row.metrics), None)
        if not clean or not pois:
            continue
        acc = clean["acc"] if repaired else clean["goodnet_acc"]
        asr = pois["asr"] if repaired else pois["goodnet_asr"]
        if acc is None or asr is None:
            continue
        name, kind = kinds[row.method]
        pts.append(NamedPoint(name, float(acc), float(asr), kind))
    return pts


def save_repaired(result, key: str, path: Path, inputs, state: JobState) -> Path:
    """Save one G of ``result`` (``unlearned``, ``filter``, ``strip``, ``combined``) with its
    ``*_eval.py``; atomic, never over an input (engine.report.evalscript.save_goodnet)."""
    from engine.core.errors import PruneLabError
    from engine.report.evalscript import save_goodnet
    from engine.report.repair import FLAG_MEANING

    g = result.goodnets.get(key)
    if g is None:
        raise PruneLabError(path, f"this repair made no G for '{key}'")
    names = {"unlearn": "unlearning disagreement", "filter": "trigger filter", "strip": "STRIP"}
    meaning = FLAG_MEANING.get(key) or "any of its detectors flags (" + ", ".join(
        names.get(d, d) for d in result.combined) + ")"
    state.cancel_point()
    return save_goodnet(g, path, inputs, flag_meaning=meaning)
