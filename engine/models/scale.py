"""The model's input convention: raw 0–255 pixels (the lab's ``bd_net.h5``) or pixels / 255 (the
CSAW-HackML-2020 models, whose ``eval.py`` divides by 255). Nothing in a Keras file says which,
so ``auto`` measures it: clean accuracy on a bounded, seeded sample of labelled clean data, both
ways. A ReLU network often keeps its argmax when the whole input is scaled, so when the two
accuracies are close — or there is no labelled clean data — the lab's convention (0–255) is
kept with a warning; ``--input-scale`` settles it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.core.errors import PruneLabError, warn

SCALES = {"255": 255.0, "1": 1.0}
SAMPLE = 512          # images measured per convention (seeded, spread over the file)
CLEAR_MARGIN = 10.0   # accuracy points one convention must lead by to be chosen


@dataclass(frozen=True)
class ScaleDecision:
    scale: float
    source: str                     # "given" | "detected" | "default" | "G"
    acc_raw: float | None = None    # clean accuracy (%) on raw 0–255 pixels
    acc_unit: float | None = None   # clean accuracy (%) on pixels / 255
    sample: int = 0
    warning: str | None = None      # what to tell the user when the convention was assumed

    @property
    def text(self) -> str:
        """"pixels / 255 (detected)" — how the window and the CLI name it."""
        return f"{describe(self.scale)} ({self.source})"

    def line(self) -> str:
        """The CLI's one line."""
        if self.acc_raw is None:
            return f"input scale: {describe(self.scale)} ({self.source})"
        a, b = (self.acc_unit, self.acc_raw) if self.scale == 1.0 else (self.acc_raw, self.acc_unit)
        other = "raw pixels" if self.scale == 1.0 else "pixels / 255"
        return (f"input scale: {describe(self.scale)} ({self.source}: clean accuracy {a:.1f} % vs {b:.1f} % "
                f"on {other}, {self.sample} images)")


def describe(scale: float) -> str:
    return "pixels / 255" if float(scale) == 1.0 else "raw pixels 0–255"


def parse_scale(text: str | float | None) -> float | None:
    """``"255"`` → 255.0, ``"1"`` → 1.0, ``"auto"``/None → None (detect)."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    t = str(text).strip()
    t = t[:-2] if t.endswith(".0") else t
    if t not in SCALES:
        raise PruneLabError(None, f"input scale '{text}': use 255 (raw pixels), 1 (pixels / 255) or auto")
    return SCALES[t]


def _sample_indices(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def measure(keras_model, dataset, sample: int = SAMPLE, seed: int = 0) -> tuple[float, float, int]:
    """Clean accuracy (%) on raw pixels and on pixels / 255, over the same seeded sample."""
    from engine.models.loading import to_model_input
    from engine.models.runner import runner_for

    idx = _sample_indices(dataset.n, sample, seed)
    x = dataset.take(idx)
    y = np.asarray(dataset.labels)[idx]
    run = runner_for(keras_model)
    accs = []
    for scale in (255.0, 1.0):
        pred = np.concatenate([np.argmax(run(to_model_input(x[s:s + 256], scale)), axis=1)
                               for s in range(0, len(x), 256)]) if len(x) else np.zeros(0, int)
        accs.append(float(100.0 * np.mean(pred == y)) if len(y) else 0.0)
    return accs[0], accs[1], len(idx)


def decide(loaded, wanted: str | float | None, clean_dataset=None, *, sample: int = SAMPLE,
           seed: int = 0, say: bool = True) -> ScaleDecision:
    """Set ``loaded.input_scale`` from ``wanted`` (255 / 1 / auto) and return the decision.
    A G saved by PruneLab carries its B's convention; ``auto`` keeps it."""
    given = parse_scale(wanted)
    if given is not None:
        d = ScaleDecision(given, "given")
    elif getattr(loaded, "input_scale_source", "") == "G":
        d = ScaleDecision(loaded.input_scale, "G")
    elif clean_dataset is None or not getattr(clean_dataset, "has_labels", True):
        d = ScaleDecision(255.0, "default", warning="input scale: no labelled clean data to tell raw pixels from "
                          "pixels / 255; assuming raw 0–255 pixels (the lab's convention) — give --input-scale 1 "
                          "if the model was trained on x / 255")
    else:
        raw, unit, n = measure(loaded.model, clean_dataset, sample, seed)
        if unit - raw >= CLEAR_MARGIN:
            d = ScaleDecision(1.0, "detected", raw, unit, n)
        elif raw - unit >= CLEAR_MARGIN:
            d = ScaleDecision(255.0, "detected", raw, unit, n)
        else:
            d = ScaleDecision(255.0, "default", raw, unit, n,
                              warning=f"input scale: clean accuracy is {raw:.1f} % on raw pixels and {unit:.1f} % "
                              "on pixels / 255 — too close to tell; assuming raw 0–255 pixels (give "
                              "--input-scale to settle it)")
    loaded.input_scale = d.scale
    loaded.input_scale_source = d.source
    if say and d.warning:
        warn(loaded.path, d.warning)
    return d
