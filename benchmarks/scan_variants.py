"""Test BadNets for the blind scan (not a test; a measurement): other triggers, other targets,
and a clean model trained the same way without poison. Each is a small demo (engine.demo.generate with
``DemoSpec(trigger=…, target=…)``), built once under ``.variants/`` (git-ignored), then scanned
with the default settings; the script prints the verdict, the flagged labels and the anomaly
indices.

    python benchmarks/scan_variants.py [--only NAME,…] [--build-only] [--identities N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    # name: (trigger, target, poison rate)
    "corner7": ("corner", 7, 0.05),
    "mouth3": ("mouth-band", 3, 0.05),
    "glasses11": ("sunglasses", 11, 0.05),
    "clean": ("sunglasses", 0, 0.0),
}


def spec_for(name: str, identities: int):
    from engine.demo.generate import DemoSpec

    trigger, target, rate = VARIANTS[name]
    return DemoSpec(seed=2200 + list(VARIANTS).index(name), identities=identities, train_per_id=16,
                    valid_per_id=9, test_per_id=9, poison_rate=rate, target=target, trigger=trigger,
                    epochs=24)


def build(name: str, identities: int) -> Path:
    from engine.demo.generate import generate_demo

    out = ROOT / ".variants" / f"{name}-i{identities}"
    if (out / "demo.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    info = generate_demo(spec_for(name, identities), out, log=lambda s: print(f"  [{name}] {s}", flush=True))
    print(f"built {name} in {time.time() - t:.0f} s: {info['badnet']['metrics']}", flush=True)
    return out


def scan(name: str, folder: Path, seed: int) -> dict:
    from engine.io.datasets import open_dataset
    from engine.models.loading import load_model
    from engine.analysis.scan import run_scan

    model = load_model(folder / "bd_net.h5")
    ds = open_dataset(folder / "cl" / "valid.h5")
    res = run_scan(model, ds, seed=seed)
    trigger, target, rate = VARIANTS[name]
    expect = "clean" if rate == 0 else "backdoor"
    rows = res.scanned
    top = rows[0]
    ok = (res.verdict == expect) and (expect == "clean" or res.flagged[:1] == [target])
    # the reversed trigger's attack success vs the real trigger's (the model's ASR on bd_valid)
    real = json.loads((folder / "demo.json").read_text())["badnet"]["metrics"]
    print(f"{name:>10}: trigger {trigger}, target {target if rate else '-'}, real ASR {real['asr_valid']:.1f} %, "
          f"clean acc {real['clean_valid_acc']:.1f} % | verdict {res.verdict}, flagged {res.flagged} "
          f"({'as expected' if ok else 'NOT as expected'}); top: label {top.label} A={top.anomaly_index:.2f} "
          f"L1={top.mask_l1:.1f} success {100 * top.attack_success:.1f} %; 2nd A={rows[1].anomaly_index:.2f}; "
          f"{res.seconds:.0f} s, {res.steps_per_label:.0f} steps/label", flush=True)
    tgt = res.label_scan(target)
    return {"name": name, "trigger": trigger, "target": target if rate else None, "verdict": res.verdict,
            "flagged": res.flagged, "as_expected": ok,
            "top": [(r.label, round(r.anomaly_index, 2), round(r.mask_l1, 1)) for r in rows[:5]],
            "target_anomaly_index": None if tgt is None or tgt.anomaly_index is None else round(tgt.anomaly_index, 2),
            "seconds": round(res.seconds, 1), "real": real}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--identities", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    folders = {n: build(n, args.identities) for n in names}
    if args.build_only:
        return 0
    results = [scan(n, folders[n], args.seed) for n in names]
    out = ROOT / ".variants" / f"scan_results_seed{args.seed}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
