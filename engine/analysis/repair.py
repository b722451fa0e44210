"""Repair and detection next to pruning: unlearning, the trigger filter, STRIP and their
combination, run on one model and compared on the same data.

:func:`repair_events` is the one job (a generator of :class:`engine.pruning.sweep.Progress`, cancellable,
for the CLI and the window alike); it returns a :class:`RepairResult` (``yield from``).

Data discipline: the clean validation set is split once (:func:`engine.pruning.finetune.split_clean_valid`,
as fine-pruning splits it). Unlearning trains on the training part; STRIP's blending images are
drawn from it; the detectors' thresholds are set on the training part's other images (clean
only). The held-out part and the test files are only evaluated. Poisoned data — real, or a
stand-in made by stamping the reversed trigger on clean test images (labelled as such) — is read
only in the evaluation phase, after every threshold and every model is fixed."""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from engine.analysis.repairresult import MethodRow, RepairResult
from engine.core.errors import PruneLabError
from engine.io.protocol import Dataset
from engine.pruning.rules import check_labels_in_range
from engine.pruning.finetune import split_clean_valid
from engine.models.loading import GOODNET_NAME, LoadedModel
from engine.core.state import JobState
from engine.pruning.sweep import Progress

METHODS = ("unlearn", "filter", "strip")
NEEDS_TRIGGER = ("unlearn", "filter")
EVAL_BATCH = 128


class ArrayDataset:
    """Images held in memory, an :class:`engine.io.protocol.Dataset` (the stand-in poisoned set)."""

    has_labels = True

    def __init__(self, x: np.ndarray, labels: np.ndarray, name: str):
        self.x = np.asarray(x, np.float32)
        self.labels = np.asarray(labels, np.int64)
        self.path = name
        self.n = len(self.x)
        self.image_shape = tuple(self.x.shape[1:])

    def batches(self, batch_size: int = 1024, prefetch: bool = False):
        for s in range(0, self.n, batch_size):
            yield s, self.x[s:s + batch_size]

    def take(self, indices):
        return self.x[np.asarray(indices, np.int64)]

    def expect(self, hwc: tuple[int, int, int]) -> None:
        """The stamped images already have the model's input size; anything else is refused."""
        if tuple(int(v) for v in hwc) != self.image_shape:
            raise PruneLabError(None, f"{self.path}: images are {self.image_shape}, the model expects {tuple(hwc)}")


class DictRunner:
    """A model with named outputs through one traced graph: numpy in, dict of numpy out."""

    def __init__(self, model):
        from engine.core.tfsetup import tf

        t = tf()
        self._fn = t.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, x) -> dict:
        out = self._fn(np.ascontiguousarray(x, dtype=np.float32))
        return {k: np.asarray(v) for k, v in out.items()}


def parse_methods(text: str) -> list[str]:
    parts = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    if parts == ["all"] or not parts:
        return list(METHODS)
    bad = [p for p in parts if p not in METHODS]
    if bad:
        raise PruneLabError(None, f"unknown repair method '{bad[0]}' (use {', '.join(METHODS)} or all)")
    return [m for m in METHODS if m in parts]


def find_triggers(model: LoadedModel, clean_valid, *, seed: int = 0, state=None):
    """Reverse the trigger with the scan: yields its Progress and returns (triggers, scan summary)."""
    from engine.analysis.scan import scan_events

    res = yield from scan_events(model, clean_valid, seed=seed, state=state)
    trig = [res.triggers[t] for t in res.flagged if t in res.triggers]
    return trig, {"flagged": [int(t) for t in res.flagged], "verdict": str(getattr(res, "verdict", ""))}


# ------------------------------------------------------------------------------- helpers
def _score_pass(runner, ds, model: LoadedModel, state, indices=None, unlearned_runner=None,
                label: str = "", phase: str = "scoring") -> Iterator[Progress | dict]:
    """One pass over ``ds`` (or its ``indices``): B's answers and the detectors' scores (and
    B_unlearned's answers). Yields Progress, then a dict of arrays."""
    n = ds.n if indices is None else len(indices)
    parts: dict[str, list] = {}
    if indices is None:
        chunks = ds.batches(EVAL_BATCH)
    else:
        chunks = ((s, ds.take(indices[s:s + EVAL_BATCH])) for s in range(0, n, EVAL_BATCH))
    for s, x in chunks:
        state.cancel_point()
        xin = model.model_input(x)
        if runner is not None:
            out = runner(xin)
            for key, v in out.items():
                parts.setdefault(key, []).append(np.asarray(v))
        if unlearned_runner is not None:
            parts.setdefault("unlearned", []).append(np.argmax(unlearned_runner(xin), axis=1).astype(np.int32))
        yield Progress(phase, s + len(x), n, label)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    if "probs" in out:
        out["b"] = np.argmax(out.pop("probs"), axis=1).astype(np.int32)
    yield out


def _run_pass(gen, sink: dict):
    for ev in gen:
        if isinstance(ev, Progress):
            yield ev
        else:
            sink.update(ev)


def _stand_in(ds, triggers, n_classes):
    """Clean images of other classes with the (first) reversed trigger stamped on, labelled
    with its target: a stand-in poisoned set when no real one is given."""
    from engine.analysis.trigger import stamp

    t = triggers[0]
    keep = np.flatnonzero(ds.labels != t.label)
    x = stamp(ds.take(keep), t)
    return ArrayDataset(np.clip(x, 0, 255), np.full(len(keep), t.label), f"stand-in: {ds.path} + reversed "
                        f"trigger for label {t.label}")


# ------------------------------------------------------------------------------- the job
def _checked(model: LoadedModel, datasets: dict, methods, frr: float, strip_n: int):
    """The one-line errors before any work; returns (the methods in their order, clean validation)."""
    methods = [m for m in METHODS if m in list(methods)]
    if not methods:
        raise PruneLabError(None, "choose at least one repair method")
    if not 0 <= frr < 50:
        raise PruneLabError(None, f"--frr must be between 0 and 50 % (got {frr})")
    if not 1 <= strip_n <= 10:
        raise PruneLabError(None, f"STRIP blends with 1 to 10 images (got {strip_n})")
    cv = datasets.get("clean_valid")
    if cv is None:
        raise PruneLabError(None, "repair needs clean validation data (--clean-valid)")
    for role, ds in datasets.items():
        if ds is not None:
            ds.expect(model.input_hwc)
            check_labels_in_range(ds, model.n_classes)
    if model.is_goodnet:
        raise PruneLabError(model.path, "is a detector G (N+1 outputs); repair the backdoored network B")
    return methods, cv


def repair_events(model: LoadedModel, datasets: dict[str, Dataset | None], *, triggers=None, methods=METHODS,
                  frr: float = 1.0, epochs: int = 5, state: JobState | None = None, strip_n: int = 10, seed: int = 0,
                  holdout: float = 0.2, learning_rate: float = 1e-4,
                  sweep_rows: list[MethodRow] | None = None) -> Iterator[Progress]:
    """Run the chosen ``methods`` (unlearn, filter, strip) on ``model`` and evaluate them.

    ``datasets``: role -> dataset; ``clean_valid`` is required (training and thresholds), the
    others (``clean_test``, ``poisoned_test``, ``poisoned_valid``) are only evaluated.
    ``triggers``: reversed triggers (engine.analysis.trigger.Trigger); None runs the scan when a method
    needs one. ``frr``: STRIP's and the filter's false-rejection rate on clean validation (%).
    G_combined flags when any of the filter and STRIP flags, each at an equal share of ``frr``
    (plus unlearning's disagreement when its held-out clean rate fits its share): decided on
    clean validation data only."""
    from engine.analysis.repairrows import assemble_rows

    t_start = time.perf_counter()
    state = state or JobState()
    methods, cv = _checked(model, datasets, methods, frr, strip_n)
    res = RepairResult(str(model.path), model.n_classes, float(model.input_scale), methods, float(frr))
    if triggers is None and any(m in NEEDS_TRIGGER for m in methods):
        yield Progress("scan", 0, 1, "reversing the trigger (scan)")
        triggers, res.scan = yield from find_triggers(model, cv, seed=seed, state=state)
        yield Progress("scan", 1, 1, f"scan flagged {res.scan['flagged']}")
    triggers = list(triggers or [])
    res.triggers = triggers
    if not triggers:
        for m in methods:
            if m in NEEDS_TRIGGER:
                res.skipped[m] = "no reversed trigger (the scan flagged no label)"
    run_methods = [m for m in methods if m not in res.skipped]
    cal = yield from _calibrate(model, cv, res, run_methods, frr, strip_n, holdout, seed, state)
    if "unlearn" in run_methods:
        yield from _unlearn(model, cv, res, cal, epochs, learning_rate, holdout, seed, state)
    state.cancel_point()
    _goodnets(model, res, cal, run_methods)
    scores = yield from _evaluate(model, cv, datasets, res, cal, state)
    assemble_rows(res, scores, cal, run_methods, frr, model.model, model.input_scale, sweep_rows)
    for m, why in res.skipped.items():
        res.rows.append(MethodRow(m, "skipped", note=why))
    res.seconds = time.perf_counter() - t_start
    yield Progress("done", 1, 1, "repair finished")
    return res


def _calibrate(model: LoadedModel, cv, res: RepairResult, run_methods, frr: float, strip_n: int, holdout: float,
               seed: int, state) -> Iterator[Progress]:
    """Split clean validation once; set the filter's and STRIP's thresholds at ``frr`` on its
    training part (clean only), STRIP's blending images drawn from it. Returns a Calibration."""
    from engine.analysis.detectors import FilterSpec, StripSpec, score_model, threshold_at_frr
    from engine.analysis.repairrows import Calibration

    train_idx, hold_idx = split_clean_valid(cv.n, holdout, seed)
    rng = np.random.default_rng(seed + 11)
    blend_idx = np.sort(rng.choice(train_idx, size=min(strip_n, len(train_idx)), replace=False)) \
        if "strip" in run_methods else np.zeros(0, np.int64)
    cal = Calibration(train_idx, hold_idx, blend_idx, np.setdiff1d(train_idx, blend_idx))
    res.split = {"trained_or_calibrated": int(len(train_idx)), "held_out": int(len(hold_idx)),
                 "strip_blend_indices": [int(i) for i in blend_idx], "calibration_images": int(len(cal.calib_idx)),
                 "holdout_share": holdout, "seed": seed}
    dets = [m for m in ("filter", "strip") if m in run_methods]
    if not dets:
        return cal
    t0 = time.perf_counter()
    blend = cv.take(blend_idx) if "strip" in dets else None
    trig = res.triggers if "filter" in dets else None
    sm = score_model(model.model, triggers=trig, strip_images=blend, input_scale=model.input_scale)
    yield from _run_pass(_score_pass(DictRunner(sm), cv, model, state, cal.calib_idx, label="clean validation",
                                     phase="thresholds"), cal.scores)
    setup = time.perf_counter() - t0
    if "filter" in dets:
        kl = cal.scores["kl"].reshape(len(cal.calib_idx), -1)
        thr = [threshold_at_frr(kl[:, i], frr) for i in range(kl.shape[1])]
        cal.fspec = FilterSpec(res.triggers, thr)
        res.thresholds["filter_kl"] = thr
    if "strip" in dets:
        sthr = threshold_at_frr(cal.scores["entropy"], frr)
        cal.sspec = StripSpec(blend, sthr)
        res.thresholds["strip_entropy"] = sthr
    for m in dets:
        cal.seconds[m] = setup / len(dets)
    return cal


def _unlearn(model: LoadedModel, cv, res: RepairResult, cal, epochs: int, learning_rate: float, holdout: float,
             seed: int, state) -> Iterator[Progress]:
    """Unlearning, trained on clean validation's training part only: B_unlearned in ``res``."""
    from engine.analysis.unlearn import UnlearnConfig, unlearn_events

    cfg = UnlearnConfig(epochs=epochs, learning_rate=learning_rate, holdout=holdout, seed=seed)
    ures = yield from unlearn_events(model, cv, res.triggers, cfg, state, split=(cal.train_idx, cal.hold_idx))
    res.unlearned = ures.model
    cal.seconds["unlearn"] = ures.seconds
    res.thresholds["unlearn_params"] = {"epochs": cfg.epochs, "learning_rate": cfg.learning_rate,
                                        "batch_size": cfg.batch_size, "stamped_share": cfg.stamped_share,
                                        "losses": ures.losses}


def _goodnets(model: LoadedModel, res: RepairResult, cal, run_methods) -> None:
    """Each method's G (B plus its detector): unlearning's disagreement, the filter, STRIP."""
    from engine.analysis.detectors import detector_goodnet

    if "unlearn" in run_methods:
        res.goodnets["unlearned"] = detector_goodnet(model.model, unlearned=res.unlearned,
                                                     input_scale=model.input_scale, name=GOODNET_NAME + "_unlearned")
    if cal.fspec:
        res.goodnets["filter"] = detector_goodnet(model.model, filter_spec=cal.fspec, input_scale=model.input_scale,
                                                  name=GOODNET_NAME + "_filter")
    if cal.sspec:
        res.goodnets["strip"] = detector_goodnet(model.model, strip_spec=cal.sspec, input_scale=model.input_scale,
                                                 name=GOODNET_NAME + "_strip")


def _eval_sets(cv, hold_idx, datasets: dict, res: RepairResult) -> dict:
    """role -> (dataset, indices or None): the held-out clean validation, the test and poisoned
    files — and, with no poisoned data, a stand-in stamped with the reversed trigger."""
    triggers = res.triggers
    eval_sets = {"clean_valid_heldout": (cv, hold_idx)}
    res.eval_sources["clean_valid_heldout"] = f"{cv.path} (held-out {len(hold_idx)} images)"
    for role in ("clean_test", "poisoned_valid", "poisoned_test"):
        if datasets.get(role) is not None:
            eval_sets[role] = (datasets[role], None)
            res.eval_sources[role] = str(datasets[role].path)
    if not any(r.startswith("poisoned") for r in eval_sets) and triggers:
        base = datasets.get("clean_test")
        si = _stand_in(base, triggers, res.n_classes) if base is not None else None
        if si is None:  # no clean test: stamp the held-out clean validation
            x = cv.take(hold_idx)
            keep = cv.labels[hold_idx] != triggers[0].label
            from engine.analysis.trigger import stamp

            si = ArrayDataset(np.clip(stamp(x[keep], triggers[0]), 0, 255), np.full(int(keep.sum()), triggers[0].label),
                              f"stand-in: held-out clean validation + reversed trigger for label {triggers[0].label}")
        eval_sets["standin_poisoned"] = (si, None)
        res.eval_sources["standin_poisoned"] = str(si.path) + " (stand-in poisoned data, not real)"
    return eval_sets


def _evaluate(model: LoadedModel, cv, datasets: dict, res: RepairResult, cal, state) -> Iterator[Progress]:
    """B's answers, the detectors' scores (and B_unlearned's answers) on every evaluated set — the
    only place any poisoned data is read. Returns role -> scores (with the set's ``labels``)."""
    from engine.models.runner import Runner
    from engine.analysis.detectors import score_model

    eval_sets = _eval_sets(cv, cal.hold_idx, datasets, res)
    fspec, sspec = cal.fspec, cal.sspec
    if fspec or sspec:
        sm_eval = DictRunner(score_model(model.model, triggers=fspec.triggers if fspec else None,
                                         strip_images=sspec.images if sspec else None, input_scale=model.input_scale))
    else:
        sm_eval = DictRunner(_probs_model(model.model))
    u_run = Runner(res.unlearned) if res.unlearned is not None else None
    scores: dict[str, dict] = {}
    for role, (ds, idx) in eval_sets.items():
        sink: dict = {}
        yield from _run_pass(_score_pass(sm_eval, ds, model, state, idx, u_run, label=role, phase="evaluating"), sink)
        sink["labels"] = ds.labels if idx is None else ds.labels[idx]
        scores[role] = sink
    return scores


def _probs_model(badnet):
    from engine.analysis.detectors import input_shape, probabilities
    from engine.core.tfsetup import keras

    k = keras()
    x = k.Input(shape=input_shape(badnet))
    b = k.models.clone_model(badnet)
    b.set_weights(badnet.get_weights())
    out = b(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return k.Model(x, {"probs": probabilities(out, badnet)})


def run_repair(model, datasets, **kw) -> RepairResult:
    from engine.core.state import drive

    return drive(repair_events(model, datasets, **kw))
