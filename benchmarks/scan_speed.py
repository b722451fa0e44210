"""How long the blind scan takes (a benchmark, not a test).

Prints the scan's time, the optimisation steps per optimised label, the ratio to one forward pass
over the clean validation set, whether the target was found, and the process's peak RSS. On a
shared machine the wall time depends on the load; the scan's CPU time ÷ cores is what it would
take on idle cores (TensorFlow keeps every core busy in the batched steps).

    python benchmarks/scan_speed.py                 # the bundled demo (256 classes)
    python benchmarks/scan_speed.py --lab DIR       # benchmarks/lab_scale_badnet.py's output (1283 classes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab", type=Path, help="folder written by benchmarks/lab_scale_badnet.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=None)
    args = ap.parse_args()

    from engine.io.datasets import open_dataset
    from engine.models.loading import load_model
    from engine.pruning.runtime import Runner
    from engine.analysis.scan import run_scan

    if args.lab:
        model_path = next(p for p in (args.lab / "bd_net.h5", args.lab / "bd_weights.h5") if p.exists())
        clean_path, target, name = args.lab / "cl" / "valid.h5", 0, "lab scale"
    else:
        from engine.demo.generate import demo_paths

        p = demo_paths("badnet")
        model_path, clean_path, target, name = p.model, p.datasets["clean_valid"], 0, "demo"
    model = load_model(model_path)
    clean = open_dataset(clean_path)
    run = Runner(model.model)
    run(model.model_input(clean.read(0, min(64, clean.n))))  # warm up
    t = time.perf_counter()
    for _, x in clean.batches(1024):
        run(model.model_input(x))
    fwd = time.perf_counter() - t
    t, c = time.perf_counter(), os.times()
    res = run_scan(model, clean, seed=args.seed, budget=args.budget)
    secs = time.perf_counter() - t
    c2 = os.times()
    cpu = (c2.user - c.user) + (c2.system - c.system)  # what the scan itself used, whatever else runs
    out = {"model": name, "classes": model.n_classes, "clean_images": clean.n, "scan_s": round(secs, 1),
           "labels_optimised": len(res.scanned), "steps_per_label": round(res.steps_per_label, 1),
           "forward_pass_s": round(fwd, 2), "ratio_to_forward": round(secs / fwd, 1),
           "cpu_s": round(cpu, 1), "cpu_s_per_core": round(cpu / (os.cpu_count() or 1), 1),
           "verdict": res.verdict, "flagged": res.flagged, "target_found": res.flagged[:1] == [target],
           "peak_rss_mb": round(peak_rss_mb()), "load_avg_1min": round(os.getloadavg()[0], 1),
           # the most suspicious labels: (label, anomaly index, role) — how far the target stands out
           "top": [(r.label, round(r.anomaly_index, 2), r.role) for r in res.scanned[:8]],
           "n_above_2": sum(1 for r in res.scanned if r.anomaly_index > 2)}
    print(json.dumps(out))
    print(f"{name}: {model.n_classes} classes, scan {secs:.0f} s ({len(res.scanned)} labels optimised, "
          f"{res.steps_per_label:.0f} steps each) = {secs / fwd:.0f}× one forward pass of the {clean.n} clean "
          f"validation images ({fwd:.2f} s); flagged {res.flagged}; peak RSS {peak_rss_mb():.0f} MB "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); CPU time {cpu:.0f} s = "
          f"{cpu / (os.cpu_count() or 1):.0f} s on {os.cpu_count()} idle cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
