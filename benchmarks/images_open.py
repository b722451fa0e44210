"""Opening a folder of PNGs vs sweeping the same images from HDF5 (not a test; prints numbers).

Issue 16's target: a folder of 12,000 PNGs must not take longer to open than the same images
in HDF5 take to sweep. Writes N images of the lab's size (55×47×3, random pixels: the worst
case for PNG, which cannot compress them) as ``sun_<i>_label=<k>.png`` into one folder and as
one HDF5 file (N×3×55×47 float32), then measures in this process:

* opening the folder (listing + every header checked, PNG checksums included);
* opening + decoding every image (``batches(256, prefetch=True)``, as the sweep reads);
* the sweep (DeepID, 1283 classes, random weights, 60 steps, no cache) over the HDF5 file;
* the same sweep over the PNG folder (decoding overlaps the model's work).

    python benchmarks/images_open.py [--n 12000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_inputs(root: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path]:
    import h5py
    from PIL import Image

    from engine.models.deepid import build_deepid
    from engine.models.legacy_h5 import write_keras2_model

    rng = np.random.default_rng(seed)
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    h5 = root / "valid.h5"
    labels = rng.integers(0, 1283, n)
    with h5py.File(h5, "w") as f:
        d = f.create_dataset("data", (n, 3, 55, 47), np.float32)
        for s in range(0, n, 1024):
            x = rng.integers(0, 256, (min(n, s + 1024) - s, 55, 47, 3)).astype(np.uint8)
            d[s:s + len(x)] = x.transpose(0, 3, 1, 2)
            for j, img in enumerate(x):
                Image.fromarray(img).save(folder / f"sun_{s + j}_label={labels[s + j]}.png")
        f.create_dataset("label", data=labels.astype(np.float32))
    model = write_keras2_model(build_deepid(1283, seed=seed), root / "bd_net.h5")
    return folder, h5, model


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12_000)
    ap.add_argument("--keep", type=Path, help="write (or reuse) the inputs here")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = args.keep or Path(tempfile.mkdtemp(prefix="prunelab-images-bench-"))
    if not (root / "bd_net.h5").exists() or len(list((root / "photos").glob("*.png"))) != args.n:
        print(f"writing {args.n:,} PNGs and one HDF5 file into {root} …", flush=True)
        folder, h5, model_path = make_inputs(root, args.n)
    else:
        folder, h5, model_path = root / "photos", root / "valid.h5", root / "bd_net.h5"
    png_bytes = sum(p.stat().st_size for p in folder.glob("*.png"))

    from engine.io.datasets import LabDataset, open_dataset
    from engine.models.loading import load_model
    from engine.pruning.sweep import Sweep

    lm = load_model(model_path)
    t_open, ds = timed(lambda: open_dataset(folder, lm.input_hwc))
    t_all, _ = timed(lambda: [None for _ in open_dataset(folder, lm.input_hwc).batches(256, prefetch=True)])
    Sweep(lm, {"clean_valid": LabDataset(h5, lm.input_hwc)}, use_cache=False, max_steps=1).run()  # trace once
    t_h5, _ = timed(lambda: Sweep(lm, {"clean_valid": LabDataset(h5, lm.input_hwc)}, use_cache=False).run())
    t_png, _ = timed(lambda: Sweep(lm, {"clean_valid": open_dataset(folder, lm.input_hwc)}, use_cache=False).run())

    import PIL
    import tensorflow as tf

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"Pillow {PIL.__version__}, TensorFlow {tf.__version__}")
    print(f"data: {ds.n:,} PNGs 55×47×3 (random pixels, {png_bytes / 1e6:.0f} MB), the same in one HDF5 file")
    print(f"open the PNG folder (headers + checksums)   {t_open:7.2f} s   ({t_open / ds.n * 1e6:.0f} µs per image)")
    print(f"open + decode every PNG (prefetched)        {t_all:7.2f} s   ({t_all / ds.n * 1e6:.0f} µs per image)")
    print(f"sweep from HDF5 (60 steps, no cache)        {t_h5:7.2f} s")
    print(f"sweep from the PNG folder (open included)   {t_png:7.2f} s")
    print(f"ratio open / HDF5 sweep                     {t_open / t_h5:7.3f}   (target ≤ 1)")
    print(f"ratio open + decode / HDF5 sweep            {t_all / t_h5:7.3f}")
    print(f"ratio PNG sweep (open included) / HDF5 sweep {t_png / t_h5:6.3f}")


if __name__ == "__main__":
    main()
