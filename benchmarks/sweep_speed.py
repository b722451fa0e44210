"""Sweep speed and memory at the lab's real scale (not a test; prints numbers).

Two models of the lab's shape (DeepID, 1283 classes) on four HDF5 files of the lab's sizes
(11,547 + 11,547 + 12,830 + 12,830 images, N×3×55×47 float32):

* ``--model random``: random (Glorot) weights and random pixels — the worst case for the
  fast path, since every channel is active on most images;
* ``--model trained``: a BadNet trained on the project's synthetic faces
  (``benchmarks/lab_scale_badnet.py``, ~6 minutes to build) — what a user holds.

Measures in one run: the naive loop's time per step (a few steps), one plain forward pass
over all four sets, the engine's cold sweep (activations computed from the files, in a fresh
process) and warm sweep (activation cache hit, in another fresh process), the ratios, each
sweep process's peak RSS, and the floor of any exact method that re-runs the rest of the
network for the images a step can affect (one forward pass + those images × the head's cost).

    python benchmarks/sweep_speed.py [--model random|trained] [--naive-steps 2] [--keep DIR]
                                     [--rankings activation,clp,l1,anp,random,difference] [--quick]
                                     [--whole-process report|models|skip] [--only-whole-process]

Whole sweep processes (what a user waits for: TensorFlow's start, the sweep, the report,
backdoor_map.png, and with ``--whole-process models`` B′/G) are timed cold and warm, with and without poisoned validation
data, as multiples of one forward pass (issue 20's goal: warm ≤ 0.3 x, cold the exact path's
own cost).

Then, with the activations cached by the cold sweep, the other pruning criteria in a fresh
process: for each ranking beyond the first, the time to compute its scores and run its exact
sweep, as a fraction of one forward pass (issue 13's target: ≤ 0.5), and anp's mask training
separately. ``--quick`` is a small size for a loaded machine (10 % of the data, one naive step,
200 ANP iterations instead of the paper's 2000).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = {"clean_valid": 11547, "poisoned_valid": 11547, "clean_test": 12830, "poisoned_test": 12830}
FILES = {"clean_valid": "cl/valid.h5", "poisoned_valid": "bd/bd_valid.h5", "clean_test": "cl/test.h5",
         "poisoned_test": "bd/bd_test.h5"}


def make_inputs(root: Path, scale: float, seed: int = 0) -> dict:
    import h5py

    from engine.models.deepid import build_deepid
    from engine.models.legacy_h5 import write_keras2_model

    rng = np.random.default_rng(seed)
    model = build_deepid(1283, seed=seed)
    write_keras2_model(model, root / "bd_net.h5")
    paths = {}
    for role, n in SIZES.items():
        n = max(64, int(n * scale))
        p = root / FILES[role]
        p.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(p, "w") as f:
            d = f.create_dataset("data", (n, 3, 55, 47), np.float32)
            for s in range(0, n, 2048):
                m = min(n, s + 2048) - s
                d[s:s + m] = rng.integers(0, 256, (m, 3, 55, 47)).astype(np.float32)
            lab = np.full(n, 0) if role.startswith("poisoned") else rng.integers(0, 1283, n)
            f.create_dataset("label", data=lab.astype(np.float32))
        paths[role] = str(p)
    return {"model": str(root / "bd_net.h5"), "data": paths}


CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
spec = json.loads(sys.argv[2])
from engine.io.datasets import LabDataset
from engine.models.loading import load_model
from engine.pruning.sweep import Sweep
lm = load_model(spec["model"])
ds = {r: LabDataset(p, lm.input_hwc) for r, p in spec["data"].items()}
t1 = time.perf_counter()
res = Sweep(lm, ds, method=spec.get("method", "auto")).run()
t2 = time.perf_counter()
outputs_s = 0.0
if spec.get("outputs"):  # what `prunelab sweep` writes after the sweep (report, figures, map, B'/G)
    import shutil, tempfile
    from engine.report.outputs import write_sweep_outputs
    out = tempfile.mkdtemp(prefix="prunelab-bench-out-")
    write_sweep_outputs(res, lm, out, datasets=ds, with_models=spec["outputs"] == "models")
    outputs_s = time.perf_counter() - t2
    shutil.rmtree(out, ignore_errors=True)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]  # peak RSS of *this* process
print(json.dumps({"sweep_s": t2 - t1, "process_s": t2 - t0 + outputs_s, "load_s": t1 - t0, "outputs_s": outputs_s,
                  "rss_mb": int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "timings": res.timings, "recomputed": [r.recomputed for r in res.records],
                  "images": sum(d.n for d in ds.values())}))
"""


RANKINGS_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
spec = json.loads(sys.argv[2])
from engine.io.datasets import LabDataset
from engine.models.loading import load_model
from engine.pruning.criteria import ANPConfig
from engine.pruning.rankings import RankingStep, RankingSweeps
lm = load_model(spec["model"])
ds = {r: LabDataset(p, lm.input_hwc) for r, p in spec["data"].items()}
rs = RankingSweeps(lm, ds, spec["rankings"], anp=ANPConfig(iterations=spec["anp_iterations"]))
last, t = {}, time.perf_counter()
for ev in rs.events():  # a ranking's wall time runs from the previous ranking's last event to its own
    name = ev.name if isinstance(ev, RankingStep) else ev.text.split(":")[0]
    last[name] = time.perf_counter()
out, prev = {}, t
for name in rs.results:
    rk, res = rs.rankings[name], rs.results[name]
    out[name] = {"wall_s": last[name] - prev, "scores_s": rk.cost_s, "sweep_s": res.timings["total"],
                 "train_s": rk.extra.get("train_s"), "cached": rk.cached, "recomputed": sum(r.recomputed for r in res.records)}
    prev = last[name]
print(json.dumps(out))
"""


def run_child(spec: dict, cache: str, code: str = CHILD) -> dict:
    env = dict(os.environ, PRUNELAB_CACHE_DIR=cache, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT), json.dumps(spec)], capture_output=True,
                       text=True, env=env)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def print_whole_process(spec: dict, forward: float, models: bool) -> None:
    """Whole sweep processes — from the fresh process's first line (TensorFlow's import
    included) to its last output file: the sweep, metrics.csv, summary.json, the figures,
    backdoor_map.png when there is poisoned validation data, and B′/G when ``models`` — cold
    (empty cache) and warm (repeated), with and without poisoned validation, as multiples of
    one forward pass over the four sets."""
    print(f"whole sweep process (TensorFlow import, load, sweep, report, figures, map"
          f"{', B′/G files' if models else ''}; cold = empty cache, warm = repeated):")
    for poisoned in (False, True):
        cache = tempfile.mkdtemp(prefix="prunelab-bench-cache-")
        data = {r: p for r, p in spec["data"].items() if poisoned or r != "poisoned_valid"}
        child = dict(spec, data=data, outputs="models" if models else "report")
        cold, warm = run_child(child, cache), run_child(child, cache)
        what = "with poisoned validation (map)" if poisoned else "without poisoned validation   "
        print(f"  {what}  cold {cold['process_s']:6.2f} s = {cold['process_s'] / forward:5.2f} x, "
              f"warm {warm['process_s']:6.2f} s = {warm['process_s'] / forward:5.2f} x forward pass   "
              f"(warm: start+load {warm['load_s']:.2f} s, sweep {warm['sweep_s']:.2f} s, "
              f"outputs {warm['outputs_s']:.2f} s)")
        for name, r in (("cold", cold), ("warm", warm)):
            after = r["sweep_s"] + r["outputs_s"]
            print(f"      {name}, after TensorFlow's start and loading: sweep + outputs {after:6.2f} s = "
                  f"{after / forward:5.2f} x forward pass")


def describe(spec: dict) -> str:
    if spec.get("kind") == "trained":
        m = spec.get("metrics", {})
        return (f"trained BadNet on synthetic faces (clean {m.get('clean_valid', 0):.1f} %, "
                f"ASR {m.get('poisoned_valid', 0):.1f} %)")
    return "random weights"


def head_cost(lm, ds, n: int = 8192) -> float:
    """Microseconds per image of one fast-path step (gather, mask, head, argmax), best of 3."""
    from engine.pruning.runtime import MaskedHeadRunner
    from engine.models.runner import Runner
    from engine.pruning.graph import make_split

    split = make_split(lm.model, None)
    pre = Runner(split.prefix)
    acts = []
    for _, x in ds.batches(256):
        acts.append(pre(x))
        if sum(len(a) for a in acts) >= n:
            break
    acts = np.concatenate(acts)[:n]
    run = MaskedHeadRunner(split.head, split.fill)
    t_acts = run.tensor(acts)
    keep = np.ones(split.n_channels, bool)
    idx = np.arange(len(acts))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for s in range(0, len(idx), 2048):
            run(t_acts, idx[s:s + 2048], keep)
        best = min(best, time.perf_counter() - t)
    return best / len(idx) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("random", "trained"), default="random")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the lab's dataset sizes (random)")
    ap.add_argument("--naive-steps", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="reuse/keep the synthetic files in this folder")
    ap.add_argument("--rankings", default="activation,clp,l1,anp,random,difference",
                    help="pruning criteria to time after the sweep (the first is the baseline)")
    ap.add_argument("--anp-iterations", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="10 %% of the data, 1 naive step, 200 ANP iterations")
    ap.add_argument("--whole-process", choices=("report", "models", "skip"), default="report",
                    help="also time whole sweep processes with their outputs, cold and warm, with and without "
                    "poisoned validation data (report: metrics, figures, map; models: also B'/G)")
    ap.add_argument("--only-whole-process", action="store_true",
                    help="measure the forward pass and the whole-process sweeps only")
    args = ap.parse_args()
    if args.quick:
        args.scale, args.naive_steps, args.anp_iterations = 0.1, 1, 200
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from engine.core.tfsetup import silence_native_logs

    silence_native_logs()
    work = args.keep or Path(tempfile.mkdtemp(prefix="prunelab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec_file = work / "spec.json"
    if spec_file.exists():
        spec = json.loads(spec_file.read_text())
    else:
        print(f"writing synthetic lab-size files into {work} ...", flush=True)
        if args.model == "trained":
            from benchmarks.lab_scale_badnet import build

            spec = build(work)
        else:
            spec = make_inputs(work, args.scale)
            spec_file.write_text(json.dumps(spec))
    cache = tempfile.mkdtemp(prefix="prunelab-bench-cache-")

    from engine.io.datasets import LabDataset
    from engine.models.loading import load_model
    from engine.models.runner import predict_dataset_labels
    from engine.pruning.sweep import Sweep
    from engine.core.tfsetup import versions

    lm = load_model(spec["model"])
    ds = {r: LabDataset(p, lm.input_hwc) for r, p in spec["data"].items()}
    n_images = sum(d.n for d in ds.values())
    # warm TensorFlow up (graph tracing) so it is not billed to the first measurement
    predict_dataset_labels(lm.model, LabDataset(spec["data"]["clean_valid"], lm.input_hwc), batch_size=256)

    # the best plain forward pass we know (chunks of 256 images beat 1024 on 2 cores)
    t = time.perf_counter()
    for d in ds.values():
        predict_dataset_labels(lm.model, d, batch_size=256)
    forward = time.perf_counter() - t

    if args.only_whole_process:
        print(f"data: {n_images:,} images in 4 HDF5 files, {describe(spec)}")
        print(f"one plain forward pass, 4 sets        {forward:8.2f} s")
        print_whole_process(spec, forward, args.whole_process == "models")
        return
    os.environ["PRUNELAB_CACHE_DIR"] = cache
    naive = Sweep(lm, ds, method="naive", use_cache=False, max_steps=args.naive_steps)
    stamps = []
    for ev in naive.events():
        if hasattr(ev, "step"):
            stamps.append(time.perf_counter())
    per_step = (stamps[-1] - stamps[0]) / args.naive_steps
    steps = naive.n_channels

    cold = run_child(spec, cache)
    warm = run_child(spec, cache)

    head_us = head_cost(lm, ds["clean_valid"])
    naive_total = per_step * steps
    rec = cold["recomputed"][1:]
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, TF {versions()['tensorflow']}, Keras {versions()['keras']}")
    print(f"data: {n_images:,} images in 4 HDF5 files (N×3×55×47 float32), DeepID with 1283 classes, "
          f"{describe(spec)}, {steps} channels of conv_3")
    print(f"naive loop, per step (mean of {args.naive_steps})   {per_step:8.2f} s   -> {steps} steps ≈ {naive_total:7.1f} s")
    print(f"one plain forward pass, 4 sets        {forward:8.2f} s")
    print(f"cold sweep (fresh process, no cache)  {cold['sweep_s']:8.2f} s   peak RSS {cold['rss_mb']:.0f} MB "
          f"(whole process, TensorFlow included)")
    print(f"warm sweep (fresh process, cached)    {warm['sweep_s']:8.2f} s   peak RSS {warm['rss_mb']:.0f} MB")
    print(f"images re-evaluated per step: mean {np.mean(rec):.0f} of {n_images} "
          f"({100 * np.mean(rec) / n_images:.1f} %)")
    floor = forward + head_us * 1e-6 * sum(rec)
    print(f"head (conv_4 … output) per image       {head_us:8.2f} µs   (a forward pass: "
          f"{forward / n_images * 1e6:.1f} µs per image)")
    print(f"floor: forward pass + {sum(rec):,} head runs  {floor:6.2f} s   = {floor / forward:.2f} x forward pass")
    print(f"ratio naive 60 steps / cold sweep     {naive_total / cold['sweep_s']:8.1f} x")
    print(f"ratio cold sweep / forward pass       {cold['sweep_s'] / forward:8.2f}")
    print(f"ratio warm sweep / forward pass       {warm['sweep_s'] / forward:8.2f}")
    if args.whole_process != "skip":
        print_whole_process(spec, forward, args.whole_process == "models")
    if args.rankings:
        print_rankings(run_child(dict(spec, rankings=args.rankings.split(","), anp_iterations=args.anp_iterations),
                                 cache, RANKINGS_CHILD), forward, n_images, args.anp_iterations)


def print_rankings(out: dict, forward: float, n_images: int, anp_iterations: int) -> None:
    """Per ranking beyond the first: wall time (scores + exact sweep from the cached activations,
    ANP's training excluded) over one forward pass; ANP's training on its own line."""
    names = list(out)
    print(f"rankings (fresh process, activations cached; first = {names[0]}, "
          f"{out[names[0]]['wall_s']:.2f} s):")
    for name in names[1:]:
        o = out[name]
        training = o["train_s"] if name == "anp" and not o["cached"] else 0.0
        wall = o["wall_s"] - training
        print(f"  {name:<11} scores {o['scores_s'] if name != 'anp' else 0.0:7.3f} s, sweep {o['sweep_s']:6.2f} s, "
              f"wall {wall:6.2f} s = {wall / forward:5.2f} x forward pass   "
              f"(head runs {o['recomputed']:,}, {o['recomputed'] / n_images:.1f} per image)")
    if "anp" in out:
        o = out["anp"]
        print(f"  anp mask training ({anp_iterations} iterations, batch 128, 500 images)  {o['train_s']:7.2f} s "
              f"= {o['train_s'] / forward:.2f} x forward pass" + (" (from the cache)" if o["cached"] else ""))


if __name__ == "__main__":
    main()
