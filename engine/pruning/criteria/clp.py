"""Channel Lipschitzness (Zheng et al., ECCV 2022): the largest singular value of each channel's
kernel as a (C_in, kh·kw) matrix, times |γ/sqrt(var+ε)| of a BatchNormalization that follows;
highest first. The paper prunes the channels above mean + u·std: that count is CLP's own
operating point (``threshold_step``)."""

from __future__ import annotations

import time

import numpy as np

from engine.pruning.criteria.base import Criterion, Inputs, register
from engine.pruning.criteria.l1 import kernel_4d

CLP_U = 3.0


def clp_scores(kernel: np.ndarray, bn_scale: np.ndarray | None = None) -> np.ndarray:
    """Largest singular value of each channel's kernel as a (C_in, kh·kw) matrix, times
    |γ/sqrt(var+ε)| of a following BatchNormalization (its per-channel gain)."""
    k = np.asarray(kernel, np.float64)
    kh, kw, cin, cout = k.shape
    mats = k.transpose(3, 2, 0, 1).reshape(cout, cin, kh * kw)
    sigma = np.linalg.svd(mats, compute_uv=False)[:, 0]
    if bn_scale is not None:
        sigma = sigma * np.abs(np.asarray(bn_scale, np.float64))
    return sigma


def following_batchnorm_scale(model, layer: str) -> np.ndarray | None:
    """γ/sqrt(var+ε) of the first BatchNormalization in the channel-wise chain after
    ``layer`` (channels last), or None when none follows."""
    from engine.pruning.graph import Graph, layer_channels

    target = model.get_layer(layer)
    graph = Graph(model)
    nodes = graph.nodes_of(target)
    for node in graph.chain(nodes[0].output_tensors[0]) if len(nodes) == 1 else []:
        l = node.operation
        if type(l).__name__ != "BatchNormalization":
            continue
        axis = l.axis if isinstance(l.axis, int) else l.axis[0]
        if axis not in (-1, 3):
            return None
        n = layer_channels(target)
        gamma = np.asarray(l.gamma.numpy(), np.float64) if getattr(l, "gamma", None) is not None else np.ones(n)
        var = np.asarray(l.moving_variance.numpy(), np.float64)
        return gamma / np.sqrt(var + float(l.epsilon))
    return None


@register
class CLP(Criterion):
    name = "clp"
    title = "CLP (Lipschitz)"
    short = "CLP"
    direction = "highest"
    colour = "#16a085"

    def scores(self, inp: Inputs) -> np.ndarray:
        return clp_scores(kernel_4d(inp.model.model, inp.layer), following_batchnorm_scale(inp.model.model, inp.layer))

    def point_label(self, rk) -> str:
        return f"mean + {rk.extra.get('u', CLP_U):g}·std"

    def ranking(self, scores, cost_s: float, u: float = CLP_U, **kw):
        s = np.asarray(scores, np.float64)
        above = int(np.count_nonzero(s > s.mean() + u * s.std()))
        return super().ranking(s, cost_s, threshold_step=above, extra={"u": u}, **kw)


def clp_ranking(model, layer: str, u: float = CLP_U):
    t = time.perf_counter()
    s = clp_scores(kernel_4d(model, layer), following_batchnorm_scale(model, layer))
    return CLP().ranking(s, time.perf_counter() - t, u=u)
