"""What the repair methods cost (issue 23's cost lines), printed as numbers and ratios; not a test.

* STRIP's G: milliseconds per image with n blending images (goal ≤ 10 ms at n ≤ 10), next to
  one plain forward pass of B (STRIP runs B n + 1 times per image) and the trigger filter's G
  (B twice per image).
* Unlearning: seconds for the default run (5 epochs over 80 % of clean validation, 20 % of
  those images stamped) — on the demo, and at the lab's scale (goal ≤ 3 min) when a lab-scale
  BadNet folder is given (``benchmarks/lab_scale_badnet.py OUT`` builds one in ~6–10 min).

The demo's trigger is the known sunglasses trigger in Neural Cleanse's form
(``engine.demo.faces.sunglasses_trigger``): the costs do not depend on how the trigger was found.

    python benchmarks/repair_costs.py [--lab-scale DIR] [--n 10] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_image_ms(fn, x, batch: int = 256, repeats: int = 2) -> float:
    fn(x[:batch])  # trace
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, len(x), batch):
            fn(x[s:s + batch])
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / len(x)


def costs(model_path: Path, clean_valid: Path, clean_test: Path, label: str, n: int, epochs: int,
          images: int = 1024) -> dict:
    from engine.io.datasets import open_dataset
    from engine.analysis.detectors import FilterSpec, StripSpec, detector_goodnet
    from engine.demo.faces import sunglasses_trigger
    from engine.pruning.finetune import split_clean_valid
    from engine.models.loading import load_model
    from engine.models.runner import Runner
    from engine.analysis.unlearn import UnlearnConfig, unlearn_events

    lm = load_model(model_path)
    cv = open_dataset(clean_valid, lm.input_hwc)
    ct = open_dataset(clean_test, lm.input_hwc)
    x = lm.model_input(ct.read(0, min(images, ct.n)))
    t = sunglasses_trigger(0)
    blend = cv.take(np.arange(n))
    b_ms = per_image_ms(Runner(lm.model), x)
    strip_ms = per_image_ms(Runner(detector_goodnet(lm.model, strip_spec=StripSpec(blend, 0.5),
                                                    input_scale=lm.input_scale)), x)
    filt_ms = per_image_ms(Runner(detector_goodnet(lm.model, filter_spec=FilterSpec([t], [1e-3]),
                                                   input_scale=lm.input_scale)), x)
    cfg = UnlearnConfig(epochs=epochs)
    split = split_clean_valid(cv.n, cfg.holdout, cfg.seed)
    gen = unlearn_events(lm, cv, [t], cfg, split=split)
    t0 = time.perf_counter()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        res = stop.value
    secs = time.perf_counter() - t0
    out = {"label": label, "classes": lm.n_classes, "clean_valid": cv.n, "trained_images": int(len(split[0])),
           "b_ms": b_ms, "strip_ms": strip_ms, "filter_ms": filt_ms, "n": n, "unlearn_s": secs, "epochs": epochs,
           "losses": res.losses}
    print(f"{label}: DeepID with {lm.n_classes} classes, clean validation {cv.n} images "
          f"({len(split[0])} trained on), {min(images, ct.n)} clean test images timed, batches of 256")
    print(f"  B, one forward pass            {b_ms:8.3f} ms per image")
    print(f"  G_filter (B twice)             {filt_ms:8.3f} ms per image   = {filt_ms / b_ms:5.1f} x B")
    print(f"  G_strip  (n = {n}: B {n + 1} times)  {strip_ms:8.3f} ms per image   = {strip_ms / b_ms:5.1f} x B   "
          f"goal ≤ 10 ms: {'met' if strip_ms <= 10 else 'NOT met'}")
    print(f"  unlearning, {epochs} epochs            {secs:8.1f} s", flush=True)
    return out


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lab-scale", type=Path, metavar="DIR", help="a benchmarks/lab_scale_badnet.py folder")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args(argv)
    from engine.demo.generate import demo_paths
    from engine.core.tfsetup import silence_native_logs

    silence_native_logs()
    import platform

    import tensorflow as tf

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}")
    p = demo_paths()
    demo = costs(p.model, p.datasets["clean_valid"], p.datasets["clean_test"], "demo BadNet", args.n, args.epochs)
    if args.lab_scale:
        spec = json.loads((args.lab_scale / "spec.json").read_text())
        lab = costs(Path(spec["model"]), Path(spec["data"]["clean_valid"]), Path(spec["data"]["clean_test"]),
                    "lab scale", args.n, args.epochs)
        print(f"unlearning at the lab's scale: {lab['unlearn_s']:.1f} s (goal ≤ 180 s: "
              f"{'met' if lab['unlearn_s'] <= 180 else 'NOT met'}); "
              f"{lab['unlearn_s'] / demo['unlearn_s']:.1f} x the demo's for "
              f"{lab['trained_images'] / demo['trained_images']:.1f} x the images")
        print(f"STRIP per image at the lab's scale / demo: {lab['strip_ms'] / demo['strip_ms']:.2f}")
    else:
        rate = demo["unlearn_s"] / demo["trained_images"]
        est = rate * 0.8 * 11547
        print(f"lab scale not measured (no --lab-scale): extrapolated from the demo's per-image rate, "
              f"unlearning on 0.8 x 11,547 images ≈ {est:.0f} s (the 1283-class output layer is larger: "
              "an estimate, not a measurement)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
