"""Every chosen pruning criterion (:mod:`engine.pruning.criteria`), each with its own exact sweep, in the order asked for. The first sweep
computes (or loads from the cache) the activations; later sweeps read them from the cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from engine.pruning.criteria.anp import ANPConfig
from engine.pruning.criteria.base import REGISTRY, Inputs, Ranking, check_available, criterion


@dataclass(frozen=True)
class RankingStep:
    """A step record of one ranking's sweep (the window routes it to that ranking's curve)."""

    name: str
    record: object  # engine.pruning.records.StepRecord


def expand_names(names: Sequence[str], random_seeds: int = 1) -> list[str]:
    """Ranking names with each seeded family (``random``) expanded into its seeds' names."""
    out: list[str] = []
    for n in names:
        out += REGISTRY[n].expand(random_seeds) if n in REGISTRY else [n]
    return out


class RankingSweeps:
    """Compute each ranking and sweep in its order, in the order given; the first ranking's
    sweep computes (or loads from the cache) the activations and the later sweeps read them
    from the cache. ``events()`` yields Progress (text prefixed with the ranking's name) and
    :class:`RankingStep`; afterwards ``rankings`` and ``results`` map name → Ranking/SweepResult."""

    def __init__(self, model, datasets: dict, names: Sequence[str], layer: str | None = None,
                 thresholds=None, *, random_seeds: int = 1, seed: int = 0, method: str = "auto",
                 use_cache: bool = True, state=None, anp: ANPConfig | None = None,
                 max_steps: int | None = None, step_size: int | str = 1):
        from engine.core.state import JobState
        from engine.pruning.thresholds import DEFAULT_THRESHOLDS

        self.model = model
        self.datasets = {r: d for r, d in datasets.items() if d is not None}
        self.names = list(names)
        for n in self.names:
            criterion(n)  # a one-line error for an unknown name
        check_available(self.names, self.datasets)
        self.expanded = expand_names(self.names, random_seeds)
        self.layer = layer
        self.thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
        self.random_seeds, self.seed = random_seeds, seed
        self.method, self.use_cache, self.max_steps, self.step_size = method, use_cache, max_steps, step_size
        self.state = state or JobState()
        self.anp = anp or ANPConfig(seed=seed)
        self.rankings: dict[str, Ranking] = {}
        self.results: dict = {}
        self.means: dict[str, np.ndarray] = {}
        # every one-line input error (layer, thresholds, labels, memory) now, not mid-way
        check = self._sweep(max_steps=0)
        self.layer, self.n_channels = check.split.layer, check.n_channels

    def _sweep(self, order=None, max_steps=None):
        from engine.pruning.sweep import Sweep

        return Sweep(self.model, self.datasets, self.layer, self.thresholds, method=self.method,
                     use_cache=self.use_cache, state=self.state, order=order, step_size=self.step_size,
                     max_steps=self.max_steps if max_steps is None else max_steps)

    def _tagged(self, name: str, events) -> Iterator:
        from dataclasses import replace

        from engine.core.state import Progress

        for ev in events:
            yield replace(ev, text=f"{name}: {ev.text}") if isinstance(ev, Progress) else RankingStep(name, ev)

    def _compute(self, method: str) -> Iterator:
        """Yield progress; return the criterion's ranking(s) (several for ``random``)."""
        from engine.core.state import Progress

        crit = criterion(method)
        cost = 0.0  # the activations are already known (from an earlier sweep) unless measured here
        if crit.needs_activations and any(r not in self.means for r in crit.needs):
            t = time.perf_counter()
            sw = self._sweep(max_steps=0)  # activations only (cached for the sweeps after it)
            for ev in self._tagged(method, sw.events()):
                if isinstance(ev, Progress):
                    yield ev
            self.means.update(sw.result.mean_activation)
            cost = time.perf_counter() - t
        inp = Inputs(self.model, self.layer, self.n_channels, self.datasets, self.means, cost, self.seed,
                     self.random_seeds, self.use_cache, self.state, self.anp)
        return (yield from crit.rankings(inp))

    def events(self) -> Iterator:
        for method in self.names:
            crit = criterion(method)
            if crit.measured_by_sweep and not self.means:
                # its scores are what the sweep itself measures: one sweep gives both
                t = time.perf_counter()
                sw = self._sweep()
                yield from self._tagged(method, sw.events())
                res = sw.result
                self.means.update(res.mean_activation)
                inp = Inputs(self.model, self.layer, self.n_channels, self.datasets, self.means)
                rk = crit.ranking(crit.scores(inp), res.timings.get("activations", time.perf_counter() - t))
                self.rankings[rk.name], self.results[rk.name] = rk, res
                continue
            for rk in (yield from self._compute(method)):
                self.rankings[rk.name] = rk
                sw = self._sweep(order=rk.order)
                yield from self._tagged(rk.name, sw.events())
                self.results[rk.name] = sw.result
                for r, m in sw.result.mean_activation.items():
                    self.means.setdefault(r, m)

    def run(self) -> "RankingSweeps":
        for _ in self.events():
            pass
        return self
