"""L1 norm of each output channel's kernel, lowest first (Li et al., ICLR 2017): needs no data."""

from __future__ import annotations

import time

import numpy as np

from engine.pruning.criteria.base import Criterion, Inputs, register


def kernel_4d(model, layer: str) -> np.ndarray:
    """The layer's kernel as (kh, kw, C_in, C_out); a Dense layer's (in, units) as (1, 1, in, units)."""
    k = np.asarray(model.get_layer(layer).get_weights()[0], np.float64)
    return k.reshape((1, 1) + k.shape) if k.ndim == 2 else k


def l1_scores(kernel: np.ndarray) -> np.ndarray:
    """Sum of |w| over each output channel's kernel."""
    return np.abs(np.asarray(kernel, np.float64)).sum(axis=(0, 1, 2))


@register
class L1(Criterion):
    name = "l1"
    title = "L1 norm of kernel"
    short = "L1 norm"
    colour = "#8e44ad"

    def scores(self, inp: Inputs) -> np.ndarray:
        return l1_scores(kernel_4d(inp.model.model, inp.layer))


def l1_ranking(model, layer: str):
    t = time.perf_counter()
    s = l1_scores(kernel_4d(model, layer))
    return L1().ranking(s, time.perf_counter() - t)
