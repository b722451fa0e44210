"""The lab's criterion: mean |activation| at the cut on clean validation data, lowest first."""

from __future__ import annotations

import numpy as np

from engine.pruning.criteria.base import Criterion, Inputs, order_of, register


def lab_order(mean_clean: np.ndarray) -> list[int]:
    """The lab's pruning order from clean validation's mean activation per channel."""
    return list(order_of(mean_clean, Activation.direction))


@register
class Activation(Criterion):
    name = "activation"
    title = "mean clean activation (lab)"
    short = "activation (lab)"
    needs = ("clean_valid",)
    needs_activations = True
    measured_by_sweep = True
    colour = "#1f5fd1"

    def scores(self, inp: Inputs) -> np.ndarray:
        return np.asarray(inp.means["clean_valid"], np.float64)


def activation_ranking(mean_activation: dict, cost_s: float = 0.0):
    return Activation().ranking(np.asarray(mean_activation["clean_valid"], np.float64), cost_s)
