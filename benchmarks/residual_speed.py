"""The fast sweep on a residual network (not a test; prints numbers).

A small residual BadNet of the kind users bring (32×32 inputs, batch norm after every
convolution, a skip connection around two convolutions, global average pooling), random
weights with trained-looking batch-norm statistics, random pixels. For each layer it measures
in one process: one plain forward pass over the images, the naive loop's time per step
(the best of a few steps), the engine's sweep (no cache, best of two), and the head's cost
per image (the step graph: gather the cached tensors, mask, run the rest of the network,
argmax). From those:

* head share = head time / forward-pass time, and the bound 1 / head share: with batch norm
  after the pruned layer the pruned channel's value is a nonzero constant, nearly every
  image changes at every step, and re-running only the head can gain at most that much over
  the naive loop;
* the best an exact head-re-running method could do with this many steps (one forward pass
  plus the measured head runs), and the ratio naive loop / sweep.

    python benchmarks/residual_speed.py [--images 2000] [--naive-steps 3] [--repeats 2]
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
LAYERS = {"block_a": "first conv inside the residual block",
          "block_b": "second conv inside the block (its output meets the skip)",
          "last": "last conv (then batch norm, ReLU, global average pooling, Dense)"}


def build(seed: int = 0):
    """stem (2 convs, 32×32) → pool → residual block (2 convs, 16×16, skip) → conv 64 → pool
    → last conv (8×8) → global average pooling → Dense(10)."""
    from engine.core.tfsetup import keras

    k = keras()
    L = k.layers
    init = k.initializers.GlorotUniform(seed=seed)

    def conv(h, filters, name, relu=True):
        h = L.Conv2D(filters, 3, padding="same", name=name, kernel_initializer=init)(h)
        h = L.BatchNormalization(name=f"bn_{name}")(h)
        return L.ReLU(name=f"relu_{name}")(h) if relu else h

    x = k.Input((32, 32, 3))
    h = conv(x, 32, "stem_1")
    h = conv(h, 32, "stem_2")
    h = L.MaxPooling2D(2, name="pool_1")(h)
    y = conv(h, 32, "block_a")
    y = conv(y, 32, "block_b", relu=False)
    h = L.ReLU(name="relu_sum")(L.Add(name="skip")([h, y]))
    h = conv(h, 64, "conv_3")
    h = L.MaxPooling2D(2, name="pool_2")(h)
    h = conv(h, 64, "last")
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(10, activation="softmax", name="out", kernel_initializer=init)(h)
    model = k.Model(x, out, name="residual_badnet")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.5, 2.0, n)])
    return model


def write_data(root: Path, model, n: int, seed: int = 0) -> Path:
    import h5py

    from engine.models.runner import Runner

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.float32) / 255
    y = np.argmax(Runner(model)(x), axis=1)
    p = root / "valid.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=(x * 255).transpose(0, 3, 1, 2))
        f.create_dataset("label", data=y.astype(np.float32))
    return p


def now() -> np.ndarray:
    """(wall, CPU) seconds. The machine is shared: with other jobs running, the process's CPU
    time (all its threads) tracks the work done far better than the wall clock does."""
    return np.array([time.perf_counter(), time.process_time()])


def best_of(fn, n: int = 2) -> np.ndarray:
    """Least (wall, CPU) seconds of ``n`` runs."""
    best = np.array([np.inf, np.inf])
    for _ in range(n):
        t = now()
        fn()
        best = np.minimum(best, now() - t)
    return best


def head_seconds(split, ds) -> np.ndarray:
    """One step's graph over every image (nothing pruned), best of 3."""
    from engine.pruning.runtime import MaskedHeadRunner
    from engine.models.runner import Runner

    run = Runner(split.tensors_model(with_outputs=False))
    parts = [run(x) for _, x in ds.batches(256)]
    parts = [p if isinstance(p, list) else [p] for p in parts]
    tensors = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    head = MaskedHeadRunner(split.head, split.fill, split.cached_shapes()[1:])
    acts = head.tensor(tensors)
    keep = np.ones(split.n_channels, bool)
    idx = np.arange(ds.n)

    def once():
        for s in range(0, ds.n, 2048):
            head(acts, idx[s:s + 2048], keep)

    once()
    return best_of(once, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--naive-steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="sweeps per layer (the best counts)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["PRUNELAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="prunelab-bench-cache-")
    from engine.core.tfsetup import silence_native_logs, versions

    silence_native_logs()
    from engine.io.datasets import LabDataset
    from engine.models.loading import LoadedModel
    from engine.models.runner import predict_dataset_labels
    from engine.pruning.graph import make_split
    from engine.pruning.sweep import Sweep

    work = Path(tempfile.mkdtemp(prefix="prunelab-bench-"))
    model = build()
    p = write_data(work, model, args.images)
    lm = LoadedModel(model, work / "m.keras", None, "benchmark", (32, 32, 3), 10)
    ds = LabDataset(p, (32, 32, 3))
    predict_dataset_labels(model, ds)  # trace once, not billed
    forward = best_of(lambda: predict_dataset_labels(model, ds), 3)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, TF {versions()['tensorflow']}, Keras {versions()['keras']}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    print(f"data: {ds.n:,} random 32×32×3 images; residual BadNet (batch norm, skip around two convs, "
          f"global average pooling), random weights. Times: wall / CPU seconds")
    print(f"one plain forward pass                {fmt(forward)}  ({forward[1] / ds.n * 1e6:.0f} µs CPU per image)")
    for layer, what in LAYERS.items():
        split = make_split(model, layer)
        frontier = ", ".join(t._keras_history[0].name for t in split.frontier) or "none"
        naive = Sweep(lm, {"clean_valid": ds}, layer=layer, method="naive", use_cache=False,
                      max_steps=args.naive_steps)
        stamps = [now() for ev in naive.events() if hasattr(ev, "step")]
        per_step = np.min(np.diff(stamps, axis=0), axis=0)  # the least disturbed step
        steps = split.n_channels
        naive_total = per_step * (steps + 1)  # steps 0 … S: S + 1 forward passes
        fast, res = np.array([np.inf, np.inf]), None
        for _ in range(args.repeats):
            t = now()
            res = Sweep(lm, {"clean_valid": ds}, layer=layer, use_cache=False).run()
            fast = np.minimum(fast, now() - t)
        head = head_seconds(split, ds)
        share = head / forward
        runs = sum(r.recomputed for r in res.records[1:])
        best = forward + head * runs / ds.n
        gain = naive_total / fast
        print()
        print(f"{layer}: {what}; {steps} channels, cut at {split.measured_at}, also cached: {frontier}")
        print(f"  method {res.method}; images re-run per step: {100 * runs / steps / ds.n:.1f} %")
        print(f"  naive loop per step (best of {args.naive_steps})  {fmt(per_step)}  -> {steps + 1} evaluations "
              f"≈ {fmt(naive_total)}")
        print(f"  sweep (no cache, best of {args.repeats})         {fmt(fast)}")
        print(f"  head per image                    {fmt(head / ds.n * 1e6, 'µs')}   head share {fmt(share, '')}")
        print(f"  bound 1 / head share              {fmt(1 / share, 'x')}")
        print(f"  best for {steps} steps (forward + head runs) {fmt(naive_total / best, 'x')}")
        print(f"  ratio naive loop / sweep          {fmt(gain, 'x')}   = {fmt(gain * share, '')} of the bound")


def fmt(v: np.ndarray, unit: str = "s") -> str:
    return f"{v[0]:7.2f} / {v[1]:7.2f} {unit}".rstrip()


if __name__ == "__main__":
    main()
