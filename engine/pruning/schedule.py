"""The step schedule of a sweep: which channel counts get a record."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from engine.core.errors import PruneLabError
from engine.pruning.thresholds import reached


def walk(evaluate, labels, step_size: int, total: int, thresholds) -> Iterator[tuple[int, dict, int]]:
    """Yield ``(pruned, predictions by role, images evaluated)`` in increasing order of
    pruned channels: every ``step_size`` channels, and, inside a step that reaches a
    threshold no earlier record reached, channel by channel until each such threshold's
    first channel count is found — the checkpoints of step size 1. ``evaluate(prev,
    prev_pruned, pruned)`` gives a count's answers from those at ``prev_pruned`` (``prev``).
    A drop that is reached inside a step and gone again at its end is not seen."""
    y = labels["clean_valid"]
    K = step_size

    def correct(res):
        return int(np.count_nonzero(res["clean_valid"] == y))

    res_p, n = evaluate(None, 0, 0)
    base = correct(res_p)
    pending = set(thresholds)
    yield 0, res_p, n
    p = 0
    while p < total:
        q = min(total, p + K)
        res_q, n_q = evaluate(res_p, p, q)
        left = set(reached(base, correct(res_q), pending)) if q - p > 1 else set()
        j, res_j = p, res_p
        while left and j + 1 < q:
            j += 1
            res_j, n_j = evaluate(res_j, j - 1, j)
            hit = set(reached(base, correct(res_j), pending))
            pending -= hit
            left -= hit
            yield j, res_j, n_j
        pending -= set(reached(base, correct(res_q), pending))
        # answers at q from those at p: exact, and the images to re-run are counted at q
        yield q, res_q, n_q
        p, res_p = q, res_q


def parse_step_size(value, n_channels: int) -> int:
    """Channels per step: a whole number K ≥ 1, or ``"P%"`` of the layer's channels (rounded
    up, at least 1)."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct_ = float(text[:-1])
            if not 0 < pct_ <= 100:
                raise ValueError
            return max(1, math.ceil(round(pct_ * n_channels / 100, 9)))
        k = int(text)
        if k < 1:
            raise ValueError
        return k
    except ValueError:
        raise PruneLabError(None, f"step size '{value}': give a whole number of channels (1 or more) or a "
                            "percentage of the layer such as 10%") from None
