"""Seeded random orders: the control band every criterion must beat."""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from engine.core.errors import PruneLabError
from engine.pruning.criteria.base import Criterion, Inputs, register


def random_names(seeds: int) -> list[str]:
    """Names of the random orders: ``random``, or ``random-1`` … ``random-N`` for N > 1."""
    if seeds < 1 or seeds > 1000:
        raise PruneLabError(None, f"--random-seeds must be between 1 and 1000 (got {seeds})")
    return ["random"] if seeds == 1 else [f"random-{k}" for k in range(1, seeds + 1)]


def random_rankings(n_channels: int, seeds: int = 1, base_seed: int = 0) -> list:
    """N seeded random orders (seed base_seed + k): the control band."""
    out = []
    for k, name in enumerate(random_names(seeds)):
        t = time.perf_counter()
        s = np.random.default_rng(base_seed + k).random(n_channels)
        out.append(Random().ranking(s, time.perf_counter() - t, name=name, seed=base_seed + k))
    return out


@register
class Random(Criterion):
    name = "random"
    title = "random"
    short = "random"
    colour = "#9a9a9a"
    seeded = True

    def expand(self, seeds: int) -> list[str]:
        return random_names(seeds)

    def rankings(self, inp: Inputs) -> Iterator:
        return random_rankings(inp.n_channels, inp.random_seeds, inp.seed)
        yield
