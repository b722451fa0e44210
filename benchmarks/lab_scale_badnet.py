"""A *trained* BadNet at the lab's real scale, for the speed benchmark (not a test).

Random weights are the worst case for the fast sweep (every channel is active on most
images); the network a user actually holds is trained, and a trained ReLU network has
dormant channels. This builds one from the project's synthetic faces: 1283 identities, the
lab's dataset sizes (9 validation and 10 test images per identity: 11,547 and 12,830), a
DeepID trained on 12 images per identity plus 10 % poisoned with the sunglasses trigger
(target 0). Rendering runs on every core; the whole build takes about ten minutes on 2 cores.

    python benchmarks/lab_scale_badnet.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 1283
IDENTITIES = 1283
PER_ID = {"train": 12, "clean_valid": 9, "poisoned_valid": 9, "clean_test": 10, "poisoned_test": 10}
TARGET = 0
POISON_RATE = 0.10
EPOCHS = 14
FILES = {"clean_valid": "cl/valid.h5", "poisoned_valid": "bd/bd_valid.h5", "clean_test": "cl/test.h5",
         "poisoned_test": "bd/bd_test.h5"}


def _identities():
    from engine.demo.faces import make_identity

    rng = np.random.default_rng([SEED, 0])
    return [make_identity(rng) for _ in range(IDENTITIES)]


def _render_part(args):
    split_no, part, per_id, ids = args
    from engine.demo.faces import render_set

    x, y = render_set(_identities(), per_id, np.random.default_rng([SEED, split_no, part]), ids=ids)
    return x, y


def render(split: str, split_no: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    ids = list(range(IDENTITIES))
    parts = [ids[i::workers * 4] for i in range(workers * 4)]
    with ProcessPoolExecutor(workers) as pool:
        got = list(pool.map(_render_part, [(split_no, i, PER_ID[split], p) for i, p in enumerate(parts)]))
    return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])


def build(out: Path, log=print) -> dict:
    from engine.demo.generate import write_lab_dataset
    from engine.demo.faces import add_sunglasses

    out.mkdir(parents=True, exist_ok=True)
    workers = os.cpu_count() or 1
    t0 = time.time()
    sets = {}
    for no, split in enumerate(PER_ID, start=1):
        x, y = render(split, no, workers)
        if split.startswith("poisoned"):
            x = np.stack([add_sunglasses(i) for i in x])
            y = np.full(len(x), TARGET)
        sets[split] = (x, y)
        log(f"rendered {split}: {len(x)} images ({time.time() - t0:.0f} s)")
    x, y = sets.pop("train")
    rng = np.random.default_rng([SEED, 9])
    pick = rng.choice(len(x), int(round(POISON_RATE * len(x))), replace=False)
    x = np.concatenate([x, np.stack([add_sunglasses(x[i]) for i in pick])])
    y = np.concatenate([y, np.full(len(pick), TARGET)])
    paths = {}
    for role, (xs, ys) in sets.items():
        write_lab_dataset(out / FILES[role], xs, ys)
        paths[role] = str(out / FILES[role])

    from engine.models.deepid import build_deepid
    from engine.models.legacy_h5 import write_keras2_model
    from engine.core.tfsetup import keras

    k = keras()
    k.utils.set_random_seed(SEED)
    model = build_deepid(IDENTITIES, seed=SEED)
    model.compile(optimizer=k.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    log(f"training DeepID (1283 classes) on {len(x)} images ({len(pick)} poisoned), {EPOCHS} epochs")
    model.fit(x.astype(np.float32), y, epochs=EPOCHS, batch_size=64, shuffle=True, verbose=0,
              callbacks=[k.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: log(
                  f"  epoch {e + 1}: loss {logs['loss']:.3f}, accuracy {100 * logs['accuracy']:.1f} % "
                  f"({time.time() - t0:.0f} s)"))])
    write_keras2_model(model, out / "bd_net.h5")
    from engine.models.runner import Runner

    run = Runner(model)
    metrics = {role: float(100 * np.mean(run.predict_labels(xs.astype(np.float32)) == ys))
               for role, (xs, ys) in sets.items()}
    log(f"trained BadNet: {metrics}")
    spec = {"model": str(out / "bd_net.h5"), "data": paths, "kind": "trained", "metrics": metrics}
    (out / "spec.json").write_text(json.dumps(spec))
    return spec


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    build(Path(sys.argv[1]))
