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

import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np

from engine.core.errors import PruneLabError
from engine.io.protocol import Dataset
from engine.pruning.rules import check_labels_in_range
from engine.pruning.finetune import split_clean_valid
from engine.models.loading import GOODNET_NAME, LoadedModel
from engine.pruning.rules import pct
from engine.core.state import JobState
from engine.pruning.sweep import Progress

METHODS = ("unlearn", "filter", "strip")
NEEDS_TRIGGER = ("unlearn", "filter")
DETECTORS = ("unlearn", "filter", "strip")  # what can flag (unlearning: B vs B_unlearned disagreement)
EVAL_BATCH = 128


@dataclass
class MethodRow:
    """One line of the comparison. Metrics are in % on the evaluation data (test files when
    given). For a repaired model (pruning, fine-pruning, unlearning) ``clean_acc``/``asr`` are the
    repaired model's and ``detection``/``false_flags`` its G's; for a detector they are G's."""

    method: str
    kind: str                      # "repaired model" | "detector" | "combination"
    clean_acc: float | None = None
    asr: float | None = None
    detection: float | None = None    # poisoned images answered N
    detection_working: float | None = None  # … among those whose attack works on B
    false_flags: float | None = None  # clean images answered N
    seconds: float | None = None
    source: str = "this run"
    files: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    note: str = ""
    metrics: dict = field(default_factory=dict)   # role -> measures, every evaluated set

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RepairResult:
    model_path: str
    n_classes: int
    input_scale: float
    methods: list[str]
    frr: float
    rows: list[MethodRow] = field(default_factory=list)
    triggers: list = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    eval_sources: dict = field(default_factory=dict)   # role -> what it is (file, or "stand-in ...")
    combined: list[str] = field(default_factory=list)  # detectors in G_combined
    unlearned: object = None                            # B_unlearned (keras.Model)
    goodnets: dict = field(default_factory=dict)        # "unlearned"|"filter"|"strip"|"combined" -> G
    answers: dict = field(default_factory=dict)         # G name -> role -> labels (for the image browser)
    skipped: dict = field(default_factory=dict)         # method -> why it did not run
    scan: dict | None = None
    seconds: float = 0.0

    def row(self, method: str) -> MethodRow | None:
        return next((r for r in self.rows if r.method == method), None)


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


def _measures(answer_g, model_answer, labels, n_classes, poisoned, b_answer=None):
    """Per set: the model's accuracy / ASR and G's answer shares. On poisoned data also the
    flagged share among the images whose attack works on B (B answers the target): a poisoned
    image B is not fooled by is harmless, and no detector that looks at B's answers sees it."""
    g_flag = answer_g == n_classes
    if poisoned:
        out = {"asr": pct(model_answer == labels), "goodnet_asr": pct(answer_g == labels),
               "flagged": pct(g_flag)}
        if b_answer is not None:
            works = b_answer == labels
            out["flagged_of_working"] = pct(g_flag[works]) if works.any() else None
        return out
    return {"acc": pct(model_answer == labels), "goodnet_acc": pct(answer_g == labels),
            "false_flagged": pct(g_flag)}


def _headline(row: MethodRow, eval_roles: dict, repaired: bool):
    """Fill the row's headline columns from the test sets (else the held-out / valid ones)."""
    def first(keys):
        for r in keys:
            if r in row.metrics:
                return row.metrics[r]
        return None

    clean = first(("clean_test", "clean_valid_heldout"))
    pois = first(("poisoned_test", "standin_poisoned", "poisoned_valid"))
    if clean:
        row.clean_acc = clean["acc"] if repaired else clean["goodnet_acc"]
        row.false_flags = clean["false_flagged"]
    if pois:
        row.asr = pois["asr"] if repaired else pois["goodnet_asr"]
        row.detection = pois["flagged"]
        row.detection_working = pois.get("flagged_of_working")


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
    from engine.analysis.detectors import (FilterSpec, StripSpec, detector_goodnet, flags_from_scores, score_model,
                                  threshold_at_frr)
    from engine.models.runner import Runner
    from engine.analysis.unlearn import UnlearnConfig, unlearn_events

    t_start = time.perf_counter()
    state = state or JobState()
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
    N = model.n_classes
    res = RepairResult(str(model.path), N, float(model.input_scale), methods, float(frr))
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

    # ---- calibration: clean validation only
    train_idx, hold_idx = split_clean_valid(cv.n, holdout, seed)
    rng = np.random.default_rng(seed + 11)
    blend_idx = np.sort(rng.choice(train_idx, size=min(strip_n, len(train_idx)), replace=False)) \
        if "strip" in run_methods else np.zeros(0, np.int64)
    calib_idx = np.setdiff1d(train_idx, blend_idx)
    res.split = {"trained_or_calibrated": int(len(train_idx)), "held_out": int(len(hold_idx)),
                 "strip_blend_indices": [int(i) for i in blend_idx], "calibration_images": int(len(calib_idx)),
                 "holdout_share": holdout, "seed": seed}
    seconds: dict[str, float] = {}
    fspec = sspec = None
    calib: dict = {}
    dets = [m for m in ("filter", "strip") if m in run_methods]
    if dets:
        t0 = time.perf_counter()
        blend = cv.take(blend_idx) if "strip" in dets else None
        trig = triggers if "filter" in dets else None
        sm = score_model(model.model, triggers=trig, strip_images=blend, input_scale=model.input_scale)
        yield from _run_pass(_score_pass(DictRunner(sm), cv, model, state, calib_idx, label="clean validation",
                                         phase="thresholds"), calib)
        setup = time.perf_counter() - t0
        if "filter" in dets:
            kl = calib["kl"].reshape(len(calib_idx), -1)
            thr = [threshold_at_frr(kl[:, i], frr) for i in range(kl.shape[1])]
            fspec = FilterSpec(triggers, thr)
            res.thresholds["filter_kl"] = thr
        if "strip" in dets:
            sthr = threshold_at_frr(calib["entropy"], frr)
            sspec = StripSpec(blend, sthr)
            res.thresholds["strip_entropy"] = sthr
        for m in dets:
            seconds[m] = setup / len(dets)

    # ---- unlearning: clean validation's training part only
    if "unlearn" in run_methods:
        cfg = UnlearnConfig(epochs=epochs, learning_rate=learning_rate, holdout=holdout, seed=seed)
        ures = yield from unlearn_events(model, cv, triggers, cfg, state, split=(train_idx, hold_idx))
        res.unlearned = ures.model
        seconds["unlearn"] = ures.seconds
        res.thresholds["unlearn_params"] = {"epochs": cfg.epochs, "learning_rate": cfg.learning_rate,
                                            "batch_size": cfg.batch_size, "stamped_share": cfg.stamped_share,
                                            "losses": ures.losses}

    # ---- G models
    state.cancel_point()
    if "unlearn" in run_methods:
        res.goodnets["unlearned"] = detector_goodnet(model.model, unlearned=res.unlearned,
                                                     input_scale=model.input_scale, name=GOODNET_NAME + "_unlearned")
    if fspec:
        res.goodnets["filter"] = detector_goodnet(model.model, filter_spec=fspec, input_scale=model.input_scale,
                                                  name=GOODNET_NAME + "_filter")
    if sspec:
        res.goodnets["strip"] = detector_goodnet(model.model, strip_spec=sspec, input_scale=model.input_scale,
                                                 name=GOODNET_NAME + "_strip")

    # ---- evaluation (the only place any poisoned data is read)
    eval_sets = {"clean_valid_heldout": (cv, hold_idx)}
    res.eval_sources["clean_valid_heldout"] = f"{cv.path} (held-out {len(hold_idx)} images)"
    for role in ("clean_test", "poisoned_valid", "poisoned_test"):
        if datasets.get(role) is not None:
            eval_sets[role] = (datasets[role], None)
            res.eval_sources[role] = str(datasets[role].path)
    if not any(r.startswith("poisoned") for r in eval_sets) and triggers:
        base = datasets.get("clean_test")
        si = _stand_in(base, triggers, N) if base is not None else None
        if si is None:  # no clean test: stamp the held-out clean validation
            x = cv.take(hold_idx)
            keep = cv.labels[hold_idx] != triggers[0].label
            from engine.analysis.trigger import stamp

            si = ArrayDataset(np.clip(stamp(x[keep], triggers[0]), 0, 255), np.full(int(keep.sum()), triggers[0].label),
                              f"stand-in: held-out clean validation + reversed trigger for label {triggers[0].label}")
        eval_sets["standin_poisoned"] = (si, None)
        res.eval_sources["standin_poisoned"] = str(si.path) + " (stand-in poisoned data, not real)"
    sm_eval = None
    if dets:
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

    # ---- rows
    flags: dict[str, dict[str, np.ndarray]] = {r: {} for r in scores}
    for role, sc in scores.items():
        f = flags_from_scores(sc, fspec.thresholds if fspec else None, sspec.threshold if sspec else None)
        flags[role].update(f)
        if "unlearned" in sc:
            flags[role]["unlearn"] = sc["unlearned"] != sc["b"]

    def g_answers(dets_used):
        return {role: np.where(np.any([flags[role][d] for d in dets_used], axis=0), N, sc["b"]).astype(np.int32)
                for role, sc in scores.items()}

    def row_for(name, kind, dets_used, repaired_answers=None, **kw):
        ans = g_answers(dets_used)
        row = MethodRow(name, kind, **kw)
        for role, sc in scores.items():
            model_ans = repaired_answers[role] if repaired_answers is not None else ans[role]
            row.metrics[role] = _measures(ans[role], model_ans, sc["labels"], N, "poisoned" in role, sc["b"])
        _headline(row, scores, repaired_answers is not None)
        return row, ans

    base_row = MethodRow("none (B)", "baseline")
    for role, sc in scores.items():
        pois = "poisoned" in role
        base_row.metrics[role] = _measures(sc["b"], sc["b"], sc["labels"], N, pois)
    _headline(base_row, scores, True)
    base_row.detection = base_row.false_flags = None
    res.rows.append(base_row)
    for role in scores:
        res.answers.setdefault("B", {})[role] = scores[role]["b"]
    if sweep_rows:
        res.rows.extend(sweep_rows)
    if "unlearn" in run_methods:
        row, ans = row_for("unlearn", "repaired model", ["unlearn"],
                           {r: sc["unlearned"] for r, sc in scores.items()}, seconds=seconds["unlearn"],
                           files=["B_unlearned.keras", "G_unlearned.keras", "G_unlearned_eval.py"],
                           params=dict(res.thresholds["unlearn_params"]))
        res.rows.append(row)
        res.answers["G_unlearned"] = ans
        res.answers["B_unlearned"] = {r: sc["unlearned"] for r, sc in scores.items()}
    if fspec:
        row, ans = row_for("filter", "detector", ["filter"], seconds=seconds["filter"],
                           files=["G_filter.keras", "G_filter_eval.py"],
                           params={"kl_thresholds": fspec.thresholds, "frr": frr,
                                   "trigger_labels": [t.label for t in triggers]})
        res.rows.append(row)
        res.answers["G_filter"] = ans
    if sspec:
        row, ans = row_for("strip", "detector", ["strip"], seconds=seconds["strip"],
                           files=["G_strip.keras", "G_strip_eval.py"],
                           params={"entropy_threshold": sspec.threshold, "frr": frr, "n": int(len(blend_idx))})
        res.rows.append(row)
        res.answers["G_strip"] = ans
    ran = [d for d in DETECTORS if d in run_methods]
    # every union of two or more detectors, for the table (evaluation only)
    for k in range(2, len(ran) + 1):
        for combo in itertools.combinations(ran, k):
            row, _ = row_for(" + ".join(combo), "combination", list(combo),
                             seconds=sum(seconds[d] for d in combo), note="union: flags when any flags")
            res.rows.append(row)
    # G_combined: the union of the threshold detectors (filter, STRIP), each re-thresholded at an
    # equal share of --frr on the calibration images, so that together they reject at most --frr of
    # them; unlearning's disagreement joins when its held-out clean rate is within its share. Decided
    # on clean validation only.
    tdets = [d for d in ("filter", "strip") if d in run_methods]
    share = frr / (len(tdets) + 1)
    with_unlearn = "unlearn" in run_methods and pct(flags["clean_valid_heldout"]["unlearn"]) <= share
    members = tdets + (["unlearn"] if with_unlearn else [])
    if len(members) >= 2:
        share = frr / len(members)
        cf = FilterSpec(triggers, [threshold_at_frr(calib["kl"].reshape(len(calib_idx), -1)[:, i], share)
                                   for i in range(len(triggers))]) if "filter" in members else None
        cs = StripSpec(sspec.images, threshold_at_frr(calib["entropy"], share)) if "strip" in members else None
        for role, sc in scores.items():
            f = flags_from_scores(sc, cf.thresholds if cf else None, cs.threshold if cs else None)
            flags[role].update({f"{d}@combined": v for d, v in f.items()})
        used = [f"{d}@combined" if d != "unlearn" else d for d in members]
        res.combined = members
        res.thresholds["combined"] = {"frr_share": share, "filter_kl": cf.thresholds if cf else None,
                                      "strip_entropy": cs.threshold if cs else None}
        res.goodnets["combined"] = detector_goodnet(
            model.model, filter_spec=cf, strip_spec=cs, unlearned=res.unlearned if with_unlearn else None,
            input_scale=model.input_scale, name=GOODNET_NAME + "_combined")
        row, ans = row_for("combined", "combination", used, seconds=sum(seconds[d] for d in members),
                           files=["G_combined.keras", "G_combined_eval.py"],
                           params={"detectors": members, **res.thresholds["combined"]},
                           note=f"G_combined = {' + '.join(members)}, each at {share:g} % of clean validation "
                           f"(--frr {frr:g} % shared)")
        res.rows.append(row)
        res.answers["G_combined"] = ans
    elif len(ran) >= 2:
        res.skipped["combined"] = (f"unlearning's held-out disagreement ({pct(flags['clean_valid_heldout']['unlearn']):.2f} %) "
                                   f"exceeds its share of --frr; one detector is no combination")
    for m, why in res.skipped.items():
        res.rows.append(MethodRow(m, "skipped", note=why))
    res.seconds = time.perf_counter() - t_start
    yield Progress("done", 1, 1, "repair finished")
    return res


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
