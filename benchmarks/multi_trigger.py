"""A three-trigger BadNet like the challenge's multi_trigger_multi_target model (not a test; builds
data and measures): the demo's faces, poisoned with sunglasses → 0, a corner patch → 7 and a
mouth band → 3, each 5 % of the training set. Built once under ``.variants/multi3-i<N>/``
(git-ignored): ``bd_net.h5``, clean ``cl/{valid,test}.h5`` and one poisoned file per trigger
``bd/<trigger>_{valid,test}.h5``. Then one sweep with the three named sets, whose per-set ASRs
it prints at the checkpoints.

    python benchmarks/multi_trigger.py [--identities 96]   # builds (minutes), then sweeps
    prunelab sweep --model .variants/multi3-i96/bd_net.h5 --clean-valid .variants/multi3-i96/cl/valid.h5 \\
        --poisoned-valid sunglasses=.variants/multi3-i96/bd/sunglasses_valid.h5 ... --out /tmp/multi
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRIGGERS = {"sunglasses": 0, "corner": 7, "mouth-band": 3}  # trigger -> target


def build(identities: int, epochs: int) -> Path:
    from engine.demo.faces import trigger_function
    from engine.demo.generate import DemoSpec, measure, render_data, train_badnet, write_lab_dataset
    from engine.models.legacy_h5 import write_keras2_model

    out = ROOT / ".variants" / f"multi3-i{identities}"
    if (out / "multi.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    spec = DemoSpec(seed=2300, identities=identities, epochs=epochs, poison_rate=0.0)
    data = render_data(spec)  # clean training set (poison_rate 0) and the clean/poisoned valid/test sets
    rng = np.random.default_rng([spec.seed, 9])
    xs, ys = [data.x_train], [data.y_train]
    for trig, target in TRIGGERS.items():
        stamp = trigger_function(trig)
        pick = rng.choice(len(data.x_train), int(round(0.05 * len(data.x_train))), replace=False)
        xs.append(np.stack([stamp(data.x_train[i]) for i in pick]))
        ys.append(np.full(len(pick), target))
    data.x_train, data.y_train = np.concatenate(xs), np.concatenate(ys)
    t = time.time()
    model = train_badnet(spec, data, log=lambda s: print(s, flush=True))
    write_keras2_model(model, out / "bd_net.h5")
    files = {}
    for split in ("valid", "test"):
        x, y = data.sets[f"clean_{split}"]
        write_lab_dataset(out / "cl" / f"{split}.h5", x, y)
        files[f"clean_{split}"] = f"cl/{split}.h5"
        for trig, target in TRIGGERS.items():
            stamp = trigger_function(trig)
            keep = y != target  # the attack's success counts images of other classes
            write_lab_dataset(out / "bd" / f"{trig}_{split}.h5", np.stack([stamp(i) for i in x[keep]]),
                              np.full(int(keep.sum()), target))
            files[f"{trig}_{split}"] = f"bd/{trig}_{split}.h5"
    info = {"triggers": TRIGGERS, "identities": identities, "epochs": epochs, "files": files,
            "train_seconds": round(time.time() - t, 1), "clean": measure(model, data)}
    (out / "multi.json").write_text(json.dumps(info, indent=2))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("/tmp/prunelab-multi3"))
    args = ap.parse_args()
    folder = build(args.identities, args.epochs)
    from engine.cli.main import main as cli

    argv = ["sweep", "--model", str(folder / "bd_net.h5"), "--clean-valid", str(folder / "cl/valid.h5"),
            "--clean-test", str(folder / "cl/test.h5"), "--out", str(args.out), "--no-models"]
    for trig in TRIGGERS:
        name = trig.replace("-", "")
        argv += ["--poisoned-valid", f"{name}={folder / 'bd' / f'{trig}_valid.h5'}",
                 "--poisoned-test", f"{name}={folder / 'bd' / f'{trig}_test.h5'}"]
    t = time.time()
    rc = cli(argv)
    print(f"sweep with {len(TRIGGERS)} poisoned sets per split: {time.time() - t:.1f} s (exit {rc})")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
