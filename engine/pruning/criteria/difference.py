"""A diagnostic, not a defense: mean activation on poisoned minus clean validation, highest first.
It uses the trigger, so it shows where the backdoor lives (an upper bound for a blind criterion)."""

from __future__ import annotations

import numpy as np

from engine.pruning.criteria.base import Criterion, Inputs, check_available, order_of, register


def difference_scores(mean_activation: dict) -> np.ndarray:
    """Poisoned − clean mean activation per channel (or per map position): the one rule."""
    return (np.asarray(mean_activation["poisoned_valid"], np.float64)
            - np.asarray(mean_activation["clean_valid"], np.float64))


@register
class Difference(Criterion):
    name = "difference"
    title = "poisoned − clean (diagnostic)"
    short = "difference ⚠"
    needs = ("clean_valid", "poisoned_valid")
    direction = "highest"
    diagnostic = True
    needs_activations = True
    colour = "#c0392b"

    def scores(self, inp: Inputs) -> np.ndarray:
        check_available([self.name], inp.means)
        return difference_scores(inp.means)


def top_difference(diff: np.ndarray, k: int) -> list[int]:
    """The ``k`` channels first in the difference criterion's own order (its direction), from
    :func:`difference_scores`: the maps, their CLI and the activations view name the same ones."""
    return [int(c) for c in order_of(diff, Difference.direction)[:k]]


def difference_ranking(mean_activation: dict, cost_s: float = 0.0):
    check_available(["difference"], mean_activation)
    return Difference().ranking(difference_scores(mean_activation), cost_s)
