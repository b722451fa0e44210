"""Map speed and memory at the lab's real scale (not a test; prints numbers).

One HDF5 file of the lab's test size (12,830 images, N×3×55×47 float32, random pixels) and the
lab's DeepID with 1283 classes and random weights. Each method runs in its own fresh process
that times, interleaved and best of ``--repeats``, one plain forward pass over the file
(``predict_dataset_labels``, batches of 256, after a warm-up) and the maps of every image
streamed in chunks (``iter_maps``, as ``prunelab maps`` writes maps.npz); then it keeps all
maps in one array once (``dataset_maps``: 12,830 × 55 × 47 float32 = 127 MiB). Peak RSS is
the process's own VmHWM, TensorFlow included.

    python benchmarks/maps_speed.py [--keep DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
N_IMAGES = 12830


def make_inputs(root: Path, seed: int = 0) -> dict:
    import h5py

    from engine.models.deepid import build_deepid
    from engine.models.legacy_h5 import write_keras2_model

    rng = np.random.default_rng(seed)
    write_keras2_model(build_deepid(1283, seed=seed), root / "bd_net.h5")
    p = root / "test.h5"
    with h5py.File(p, "w") as f:
        d = f.create_dataset("data", (N_IMAGES, 3, 55, 47), np.float32)
        for s in range(0, N_IMAGES, 2048):
            m = min(N_IMAGES, s + 2048) - s
            d[s:s + m] = rng.integers(0, 256, (m, 3, 55, 47)).astype(np.float32)
        f.create_dataset("label", data=rng.integers(0, 1283, N_IMAGES).astype(np.float32))
    return {"model": str(root / "bd_net.h5"), "data": str(p)}


CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
spec = json.loads(sys.argv[2])
method, repeats = spec["method"], spec["repeats"]
from engine.io.datasets import LabDataset
from engine.models.loading import load_model
from engine.models.runner import predict_dataset_labels, runner_for
from engine.analysis import maps
lm = load_model(spec["model"])
ds = LabDataset(spec["data"], lm.input_hwc)
mk = maps.MapMaker(lm, None, method, [0, 1, 2, 3, 4] if method == "channels" else None)
x = ds.read(0, 256)
mk(x); mk(x[:7]); runner_for(lm.model)(x); runner_for(lm.model)(x[:7])  # trace both before timing
def hwm():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) / 1024
ready = hwm()
fwd, mp = [], []
for _ in range(repeats):  # interleaved, best of each: the machine is shared and noisy
    t = time.perf_counter(); predict_dataset_labels(lm.model, ds, batch_size=256); fwd.append(time.perf_counter() - t)
    t = time.perf_counter()
    for ch in maps.iter_maps(mk, ds):  # streamed, as prunelab maps writes maps.npz
        assert 0 <= ch.maps.min() and ch.maps.max() <= 1
    mp.append(time.perf_counter() - t)
streamed = hwm()
t = time.perf_counter(); m = maps.dataset_maps(mk, ds); kept_s = time.perf_counter() - t
assert m.shape == (ds.n, 55, 47)
print(json.dumps({"forward_s": min(fwd), "maps_s": min(mp), "kept_s": kept_s, "rss_mb": hwm(), "ready_mb": ready,
                  "streamed_mb": streamed, "layer": mk.layer, "layer_hw": mk.layer_hw}))
"""


def run_child(spec: dict) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), json.dumps(spec)], capture_output=True,
                       text=True, env=env)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, help="reuse/keep the synthetic files in this folder")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = args.keep or Path(tempfile.mkdtemp(prefix="prunelab-maps-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec_file = work / "maps_spec.json"
    if spec_file.exists():
        spec = json.loads(spec_file.read_text())
    else:
        print(f"writing a synthetic lab-size file into {work} ...", flush=True)
        spec = make_inputs(work)
        spec_file.write_text(json.dumps(spec))
    from engine.core.tfsetup import versions

    v = versions()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, TF {v['tensorflow']}, Keras {v['keras']}")
    print(f"data: {N_IMAGES:,} images (N×3×55×47 float32), DeepID with 1283 classes, random weights")
    for method in ("channels", "gradcam"):
        r = run_child(dict(spec, method=method, repeats=args.repeats))
        print(f"{method:9s} at {r['layer']} ({r['layer_hw'][0]}×{r['layer_hw'][1]}): maps {r['maps_s']:6.2f} s, "
              f"forward pass {r['forward_s']:6.2f} s, ratio {r['maps_s'] / r['forward_s']:.2f} forward passes; "
              f"peak RSS {r['streamed_mb']:.0f} MB streamed, {r['rss_mb']:.0f} MB with all "
              f"{N_IMAGES * 55 * 47 * 4 / 2**20:.0f} MB of maps in one array ({r['ready_mb']:.0f} MB once "
              f"TensorFlow, the model and both graphs are loaded)")


if __name__ == "__main__":
    main()
