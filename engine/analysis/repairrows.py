"""The repair's comparison rows, assembled from the evaluation's scores: B's baseline, one row
per method (its repaired model's or its G's answers), every union of two or more detectors, and
G_combined (the detectors re-thresholded at equal shares of the false-rejection budget, decided on
clean validation data only). Part of :func:`engine.analysis.repair.repair_events`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from engine.analysis.repairresult import MethodRow, RepairResult
from engine.models.loading import GOODNET_NAME
from engine.pruning.rules import pct

DETECTORS = ("unlearn", "filter", "strip")  # what can flag (unlearning: B vs B_unlearned disagreement)


@dataclass
class Calibration:
    """The clean validation split and what the detectors were calibrated with on its training part
    (``scores``: their scores on the calibration images; ``fspec``/``sspec``: the trigger filter's
    and STRIP's specs at ``--frr``; ``seconds``: each method's time so far)."""

    train_idx: np.ndarray
    hold_idx: np.ndarray
    blend_idx: np.ndarray
    calib_idx: np.ndarray
    scores: dict = field(default_factory=dict)
    fspec: object = None  # engine.analysis.detectors.FilterSpec
    sspec: object = None  # engine.analysis.detectors.StripSpec
    seconds: dict = field(default_factory=dict)


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


@dataclass
class RowMaker:
    """The evaluated sets' scores (role -> B's answers ``b``, ``labels``, detector scores) and
    each detector's flags on them; a G's answers are B's unless one of its detectors flags (N)."""

    scores: dict
    n_classes: int
    flags: dict = field(default_factory=dict)  # role -> detector -> flagged (bool per image)

    def g_answers(self, dets_used) -> dict:
        N = self.n_classes
        return {role: np.where(np.any([self.flags[role][d] for d in dets_used], axis=0), N, sc["b"]).astype(np.int32)
                for role, sc in self.scores.items()}

    def row(self, name, kind, dets_used, repaired_answers=None, **kw) -> tuple[MethodRow, dict]:
        ans = self.g_answers(dets_used)
        row = MethodRow(name, kind, **kw)
        for role, sc in self.scores.items():
            model_ans = repaired_answers[role] if repaired_answers is not None else ans[role]
            row.metrics[role] = _measures(ans[role], model_ans, sc["labels"], self.n_classes, "poisoned" in role,
                                          sc["b"])
        _headline(row, self.scores, repaired_answers is not None)
        return row, ans

    def baseline(self) -> MethodRow:
        row = MethodRow("none (B)", "baseline")
        for role, sc in self.scores.items():
            row.metrics[role] = _measures(sc["b"], sc["b"], sc["labels"], self.n_classes, "poisoned" in role)
        _headline(row, self.scores, True)
        row.detection = row.false_flags = None
        return row


def assemble_rows(res: RepairResult, scores: dict, cal: Calibration, run_methods: list[str], frr: float,
                  badnet, input_scale: float, sweep_rows=None) -> None:
    """Fill ``res.rows`` and ``res.answers`` (and G_combined in ``res.goodnets``) from ``scores``."""
    from engine.analysis.detectors import flags_from_scores

    fspec, sspec, seconds = cal.fspec, cal.sspec, cal.seconds
    rows = RowMaker(scores, res.n_classes, {r: {} for r in scores})
    for role, sc in scores.items():
        rows.flags[role].update(flags_from_scores(sc, fspec.thresholds if fspec else None,
                                                  sspec.threshold if sspec else None))
        if "unlearned" in sc:
            rows.flags[role]["unlearn"] = sc["unlearned"] != sc["b"]
    res.rows.append(rows.baseline())
    for role in scores:
        res.answers.setdefault("B", {})[role] = scores[role]["b"]
    if sweep_rows:
        res.rows.extend(sweep_rows)
    if "unlearn" in run_methods:
        row, ans = rows.row("unlearn", "repaired model", ["unlearn"],
                            {r: sc["unlearned"] for r, sc in scores.items()}, seconds=seconds["unlearn"],
                            files=["B_unlearned.keras", "G_unlearned.keras", "G_unlearned_eval.py"],
                            params=dict(res.thresholds["unlearn_params"]))
        res.rows.append(row)
        res.answers["G_unlearned"] = ans
        res.answers["B_unlearned"] = {r: sc["unlearned"] for r, sc in scores.items()}
    if fspec:
        row, ans = rows.row("filter", "detector", ["filter"], seconds=seconds["filter"],
                            files=["G_filter.keras", "G_filter_eval.py"],
                            params={"kl_thresholds": fspec.thresholds, "frr": frr,
                                    "trigger_labels": [t.label for t in res.triggers]})
        res.rows.append(row)
        res.answers["G_filter"] = ans
    if sspec:
        row, ans = rows.row("strip", "detector", ["strip"], seconds=seconds["strip"],
                            files=["G_strip.keras", "G_strip_eval.py"],
                            params={"entropy_threshold": sspec.threshold, "frr": frr, "n": int(len(cal.blend_idx))})
        res.rows.append(row)
        res.answers["G_strip"] = ans
    ran = [d for d in DETECTORS if d in run_methods]
    # every union of two or more detectors, for the table (evaluation only)
    for k in range(2, len(ran) + 1):
        for combo in itertools.combinations(ran, k):
            row, _ = rows.row(" + ".join(combo), "combination", list(combo),
                              seconds=sum(seconds[d] for d in combo), note="union: flags when any flags")
            res.rows.append(row)
    _combined(res, rows, cal, run_methods, ran, frr, badnet, input_scale)


def _combined(res: RepairResult, rows: RowMaker, cal: Calibration, run_methods, ran, frr: float, badnet,
              input_scale: float) -> None:
    """G_combined: the union of the threshold detectors (filter, STRIP), each re-thresholded at an
    equal share of --frr on the calibration images, so that together they reject at most --frr of
    them; unlearning's disagreement joins when its held-out clean rate is within its share. Decided
    on clean validation only."""
    from engine.analysis.detectors import (FilterSpec, StripSpec, detector_goodnet, flags_from_scores,
                                           threshold_at_frr)

    flags, calib, triggers = rows.flags, cal.scores, res.triggers
    tdets = [d for d in ("filter", "strip") if d in run_methods]
    share = frr / (len(tdets) + 1)
    with_unlearn = "unlearn" in run_methods and pct(flags["clean_valid_heldout"]["unlearn"]) <= share
    members = tdets + (["unlearn"] if with_unlearn else [])
    if len(members) >= 2:
        share = frr / len(members)
        cf = FilterSpec(triggers, [threshold_at_frr(calib["kl"].reshape(len(cal.calib_idx), -1)[:, i], share)
                                   for i in range(len(triggers))]) if "filter" in members else None
        cs = StripSpec(cal.sspec.images, threshold_at_frr(calib["entropy"], share)) if "strip" in members else None
        for role, sc in rows.scores.items():
            f = flags_from_scores(sc, cf.thresholds if cf else None, cs.threshold if cs else None)
            flags[role].update({f"{d}@combined": v for d, v in f.items()})
        used = [f"{d}@combined" if d != "unlearn" else d for d in members]
        res.combined = members
        res.thresholds["combined"] = {"frr_share": share, "filter_kl": cf.thresholds if cf else None,
                                      "strip_entropy": cs.threshold if cs else None}
        res.goodnets["combined"] = detector_goodnet(
            badnet, filter_spec=cf, strip_spec=cs, unlearned=res.unlearned if with_unlearn else None,
            input_scale=input_scale, name=GOODNET_NAME + "_combined")
        row, ans = rows.row("combined", "combination", used, seconds=sum(cal.seconds[d] for d in members),
                            files=["G_combined.keras", "G_combined_eval.py"],
                            params={"detectors": members, **res.thresholds["combined"]},
                            note=f"G_combined = {' + '.join(members)}, each at {share:g} % of clean validation "
                            f"(--frr {frr:g} % shared)")
        res.rows.append(row)
        res.answers["G_combined"] = ans
    elif len(ran) >= 2:
        res.skipped["combined"] = (f"unlearning's held-out disagreement ({pct(flags['clean_valid_heldout']['unlearn']):.2f} %) "
                                   f"exceeds its share of --frr; one detector is no combination")
