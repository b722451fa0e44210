"""What the blind scan finds, and the statistics it decides with: per label the reversed
trigger's size and attack success, the anomaly index (Neural Cleanse's median absolute
deviation rule, with weights for a sampled population) and the pre-screen's scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from engine.analysis.trigger import Trigger

ANOMALY_THRESHOLD = 2.0
MIN_ATTACK_SUCCESS = 0.5
MAD_CONSISTENCY = 1.4826


@dataclass
class LabelScan:
    label: int
    mask_l1: float | None
    attack_success: float | None   # share (0–1) of held-out clean images of other classes sent to label
    anomaly_index: float | None    # signed: > 0 when the mask is smaller than the median
    screened_out: bool
    screen_score: float = 0.0      # share of clean images with the label in their top-k
    steps: int = 0
    role: str = "candidate"        # "candidate" | "reference" | "given" | "screened"

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("mask_l1", "attack_success", "anomaly_index", "screen_score"):
            if d[k] is not None:
                d[k] = round(float(d[k]), 6)
        return d


@dataclass
class ScanResult:
    verdict: str                        # "backdoor" | "clean"
    flagged: list[int]
    labels: list[LabelScan]             # most suspicious first; screened-out labels last
    triggers: dict[int, Trigger]
    seconds: float
    input_scale: float
    steps_per_label: float              # mean optimisation steps spent per optimised label
    n_classes: int = 0
    clean_images: int = 0
    held_out_images: int = 0
    seed: int = 0
    budget: int = 0
    median_l1: float | None = None
    mad_l1: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def scanned(self) -> list[LabelScan]:
        return [r for r in self.labels if not r.screened_out]

    def label_scan(self, label: int) -> LabelScan | None:
        for r in self.labels:
            if r.label == int(label):
                return r
        return None

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "flagged": [int(t) for t in self.flagged],
            "labels": [r.to_json() for r in self.labels],
            "seconds": round(float(self.seconds), 3),
            "input_scale": float(self.input_scale),
            "steps_per_label": round(float(self.steps_per_label), 1),
            "n_classes": int(self.n_classes),
            "scanned": len(self.scanned),
            "screened_out": len(self.labels) - len(self.scanned),
            "clean_images": int(self.clean_images),
            "held_out_images": int(self.held_out_images),
            "seed": int(self.seed),
            "budget": int(self.budget),
            "median_l1": None if self.median_l1 is None else round(float(self.median_l1), 6),
            "mad_l1": None if self.mad_l1 is None else round(float(self.mad_l1), 6),
            "rule": f"flag t when mask_l1 < median, anomaly_index > {ANOMALY_THRESHOLD:g} "
                    f"(|L1 - median| / (1.4826 * MAD)) and attack_success >= {MIN_ATTACK_SUCCESS:g}",
            "triggers": {str(t): f"trigger_{t}.npz" for t in sorted(self.triggers)},
            **self.extra,
        }


# ----------------------------------------------------------------------------- statistics
def weighted_median(values, weights=None) -> float:
    """The median of ``values`` where value i counts ``weights[i]`` times (all 1: the plain
    median)."""
    v = np.asarray(values, np.float64)
    if weights is None:
        return float(np.median(v))
    w = np.asarray(weights, np.float64)
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    half = cum[-1] / 2.0
    i = int(np.searchsorted(cum, half))
    if np.isclose(cum[i], half) and i + 1 < len(v):
        return float((v[i] + v[i + 1]) / 2.0)
    return float(v[i])


def anomaly_indices(l1: np.ndarray, weights=None) -> tuple[np.ndarray, float, float]:
    """Signed anomaly index per value ((median − L1) / (1.4826·MAD)), the median and the MAD.

    ``weights``: how many labels each value stands for. The scan optimises the pre-screened
    candidates (each stands for itself) and a random sample of the other labels (each stands for
    ``others / sample`` labels), so the median and MAD estimate those of all the model's labels —
    what Neural Cleanse computes when it optimises every label."""
    v = np.asarray(l1, np.float64)
    med = weighted_median(v, weights)
    mad = float(MAD_CONSISTENCY * weighted_median(np.abs(v - med), weights))
    if mad <= 1e-12:
        mad = 1e-12
    return (med - v) / mad, med, mad


def prescreen_scores(probs: np.ndarray, k: int | None = None) -> np.ndarray:
    """K-Arm's pre-screen: per label, the share of images whose top-k classes hold it."""
    n, c = probs.shape
    k = max(1, c // 4) if k is None else max(1, min(int(k), c))
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k] if k < c else np.tile(np.arange(c), (n, 1))
    return np.bincount(top.ravel(), minlength=c).astype(np.float64) / max(1, n)
