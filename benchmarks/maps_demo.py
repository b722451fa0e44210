"""How well the maps find the demo's trigger (not a test; prints numbers, writes docs/maps_demo.png).

For the shipped demo BadNet and its validation and test data (768 + 768 images each, clean and
poisoned), the localisation ratio of each method: the share of each image's map inside the
sunglasses ÷ the sunglasses' share of the image (1 = no localisation; the mask covers 10.3 % of
the image, so the most a map can reach is 9.7), averaged over images. Occlusion costs one forward
pass per patch position (143 for 8×8 patches, stride 4), so it maps the first ``--occlusion``
images of each file.

    python benchmarks/maps_demo.py [--occlusion 256] [--figure docs/maps_demo.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--occlusion", type=int, default=256, help="images per file for the occlusion maps")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "maps_demo.png")
    ap.add_argument("--variant", default="badnet", choices=["badnet", "pruning-aware"])
    args = ap.parse_args()
    from engine.analysis import maps
    from engine.demo import faces
    from engine.report import maps as mapfigures
    from engine.io.datasets import LabDataset
    from engine.demo.generate import demo_paths
    from engine.models.loading import load_model
    from engine.core.tfsetup import silence_native_logs

    silence_native_logs()
    paths = demo_paths(args.variant, progress=print)
    lm = load_model(paths.model)
    ds = {r: LabDataset(p, lm.input_hwc) for r, p in paths.datasets.items()}
    mask = faces.demo_trigger_mask()
    top = maps.trigger_channels(lm, None, ds["clean_valid"], ds["poisoned_valid"]).channels
    print(f"{paths.model.name}: trigger mask {mask.sum()} pixels ({100 * mask.mean():.1f} % of the image); "
          f"top-5 trigger channels of conv_3 (validation): {top}")
    makers = [("gradcam", "conv_3", maps.MapMaker(lm, "conv_3", "gradcam")),
              ("channels (top 5)", "conv_3", maps.MapMaker(lm, "conv_3", "channels", top)),
              ("occlusion 8×8/4", "-", maps.MapMaker(lm, "conv_3", "occlusion")),
              ("gradcam", "conv_2", maps.MapMaker(lm, "conv_2", "gradcam"))]
    print(f"{'method':18s} {'layer':6s} " + " ".join(f"{r:>15s}" for r in ds))
    for name, layer, mk in makers:
        limit = args.occlusion if mk.method == "occlusion" else None
        vals = [maps.mean_map(mk, d, limit=limit, mask=mask).localisation for d in ds.values()]
        print(f"{name:18s} {layer:6s} " + " ".join(f"{v:15.2f}" for v in vals))
    out = mapfigures.write_backdoor_map(lm, "conv_3", ds["clean_valid"], ds["poisoned_valid"], args.figure,
                                  mask=mask)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
