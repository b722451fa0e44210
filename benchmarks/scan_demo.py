"""The blind scan on the bundled demo BadNet and the pruning-aware one (a measurement, not a test).

Prints, per model: the verdict and flagged labels, label 0's place and anomaly index, the share of
its reversed mask's mass inside the sunglasses region (engine.demo.faces.demo_trigger_mask), and the
attack success of the stamped stand-in (``prunelab stamp`` of the clean test images, images of
class 0 left out). Then, for the demo BadNet, the lab's sweep (activation ranking, conv_3, 60
steps) with the stand-in as poisoned data next to the real bd_valid.h5, and the Spearman
correlation of the two ASR curves.

    python benchmarks/scan_demo.py [--seed S] [--out DIR] [--no-sweep]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def spearman(a, b) -> float:
    def ranks(v):
        v = np.asarray(v, np.float64)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for x in np.unique(v):  # ties: mean rank
            idx = v == x
            r[idx] = r[idx].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the scan folders and stand-ins here")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--variants", default="badnet,pruning-aware")
    args = ap.parse_args()

    from engine.io.datasets import LabDataset, open_dataset
    from engine.demo.generate import demo_paths
    from engine.demo.faces import demo_trigger_mask
    from engine.models.loading import load_model
    from engine.models.runner import Runner
    from engine.analysis.scan import run_scan
    from engine.report.scan import write_scan_outputs, write_standin

    work = args.out or Path(tempfile.mkdtemp(prefix="scan-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    region = demo_trigger_mask()
    report = {}
    for variant in args.variants.split(","):
        paths = demo_paths(variant)
        model = load_model(paths.model)
        clean = open_dataset(paths.datasets["clean_valid"])
        t = time.perf_counter()
        res = run_scan(model, clean, seed=args.seed)
        secs = time.perf_counter() - t
        folder = work / f"scan-{variant}"
        write_scan_outputs(res, model, folder, clean_ds=clean)
        rows = res.scanned
        place = [r.label for r in rows].index(0) if 0 in [r.label for r in rows] else None
        row0 = res.label_scan(0)
        line = {"verdict": res.verdict, "flagged": res.flagged, "seconds": round(secs, 1),
                "steps_per_label": round(res.steps_per_label, 1), "label0_place": place,
                "label0_anomaly_index": None if row0.anomaly_index is None else round(row0.anomaly_index, 2),
                "label0_mask_l1": None if row0.mask_l1 is None else round(row0.mask_l1, 1),
                "second_anomaly_index": round(rows[1].anomaly_index, 2) if rows[0].label == 0 else
                round(rows[0].anomaly_index, 2)}
        if 0 in res.triggers:
            trig = res.triggers[0]
            line["mass_in_sunglasses"] = round(float(trig.mask[region].sum() / trig.mask.sum()), 3)
            line["sunglasses_area_share"] = round(float(region.mean()), 3)
            standin = work / f"standin-{variant}-test.h5"
            test = open_dataset(paths.datasets["clean_test"])
            write_standin(trig, test, standin)
            sds = LabDataset(standin)
            keep = test.labels != 0
            pred = np.concatenate([np.asarray(Runner(model.model)(model.model_input(x))).argmax(axis=1)
                                   for _, x in sds.batches(512)])
            line["standin_asr"] = round(100.0 * float((pred[keep] == 0).mean()), 2)
            line["real_asr_test"] = paths.info[variant]["metrics"]["asr_test"]
            sds.close()
        report[variant] = line
        print(f"{variant}: {json.dumps(line)}", flush=True)

    if not args.no_sweep and "badnet" in report and "standin_asr" in report["badnet"]:
        from engine.pruning.sweep import Sweep

        paths = demo_paths("badnet")
        model = load_model(paths.model)
        trig = __import__("engine.analysis.trigger", fromlist=["load_trigger"]).load_trigger(
            work / "scan-badnet" / "trigger_0.npz")
        cv = open_dataset(paths.datasets["clean_valid"])
        standin_v = work / "standin-badnet-valid.h5"
        write_standin(trig, cv, standin_v)
        datasets = {"clean_valid": cv, "poisoned_valid": open_dataset(paths.datasets["poisoned_valid"]),
                    "poisoned_test": LabDataset(standin_v)}  # the stand-in rides in the test slot
        sw = Sweep(model, datasets, None, (2.0, 4.0, 10.0), use_cache=False)
        res = sw.run()
        real = [r.asr_valid for r in res.records]
        stand = [r.asr_test for r in res.records]
        rho = spearman(real, stand)
        pearson = float(np.corrcoef(real, stand)[0, 1])
        gap = np.abs(np.array(real) - np.array(stand))
        print(f"sweep over {len(res.records) - 1} steps: Spearman(real ASR, stand-in ASR) = {rho:.3f}, "
              f"Pearson {pearson:.3f}, mean |difference| {gap.mean():.2f} points (most {gap.max():.2f}); "
              f"real ASR {real[0]:.1f} → {real[-1]:.1f} %, stand-in {stand[0]:.1f} → {stand[-1]:.1f} %")
        report["sweep"] = {"spearman": round(rho, 4), "pearson": round(pearson, 4),
                           "mean_abs_diff": round(float(gap.mean()), 3), "steps": len(res.records) - 1,
                           "real_asr": [round(v, 2) for v in real], "standin_asr": [round(v, 2) for v in stand]}
    (work / "scan_demo.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {work / 'scan_demo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
