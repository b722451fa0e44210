"""What every pruning criterion shares: the :class:`Ranking` it produces, the
:class:`Criterion` interface (name, title, the data it needs, the order its scores are read in,
``rankings(...)``) and the registry the CLI, the window's criteria box and the curves' colours
read. Adding a criterion is one module in this package with one registered class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Sequence

import numpy as np

from engine.core.errors import PruneLabError
from engine.core.vocabulary import ROLE_TITLES, base_role

# the CLI flag that gives each role's data: the one-line error of a ranking missing data names it
OPTIONS = {"clean_valid": "--clean-valid", "poisoned_valid": "--poisoned-valid"}

REGISTRY: dict[str, "Criterion"] = {}
DEFAULT = "activation"  # the criterion a sweep ranks by when none is chosen (the lab's mean activation)


def register(cls):
    """Class decorator: one instance of the criterion, under its name, in registration order."""
    inst = cls()
    if inst.name in REGISTRY:
        raise ValueError(f"criterion '{inst.name}' is registered twice")
    REGISTRY[inst.name] = inst
    return cls


def order_of(scores: np.ndarray, direction: str) -> tuple[int, ...]:
    """Channels in pruning order: ``"lowest"`` or ``"highest"`` score first (ties by channel)."""
    s = np.asarray(scores, np.float64)
    if direction not in ("lowest", "highest"):
        raise ValueError(direction)
    return tuple(int(i) for i in np.argsort(s if direction == "lowest" else -s, kind="stable"))


@dataclass
class Inputs:
    """What a criterion may read. ``means``: per-role mean |activation| per channel at the cut
    (filled by a sweep before a criterion that ``needs_activations`` runs)."""

    model: object  # engine.models.loading.LoadedModel
    layer: str
    n_channels: int
    datasets: dict
    means: dict = field(default_factory=dict)
    activation_cost_s: float = 0.0
    seed: int = 0
    random_seeds: int = 1
    use_cache: bool = True
    state: object = None
    anp: object = None  # engine.pruning.criteria.anp.ANPConfig


class Criterion:
    """One pruning criterion. ``rankings`` is a generator (it may yield Progress) returning a list
    of :class:`Ranking` — one, or several for seeded families such as ``random``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    short: ClassVar[str] = ""          # the window's check box
    needs: ClassVar[tuple[str, ...]] = ()
    direction: ClassVar[str] = "lowest"
    diagnostic: ClassVar[bool] = False  # uses the trigger: shows where the backdoor lives, never a defense
    needs_activations: ClassVar[bool] = False
    colour: ClassVar[str] = "#444444"
    seeded: ClassVar[bool] = False  # a family of seeded orders (``name-k``), drawn as a band and its mean
    # its scores are the mean activations a plain sweep measures anyway (the lab's order, swept
    # with method "activation"): ranked from that sweep instead of a sweep of its own
    measured_by_sweep: ClassVar[bool] = False

    def expand(self, seeds: int) -> list[str]:
        """The names of this criterion's rankings for ``seeds`` seeds: its name, or a seeded
        family's ``name-1`` … ``name-N``."""
        return [self.name]

    def point_label(self, rk: "Ranking") -> str:
        """How figures name this criterion's own operating point (``Ranking.threshold_step``):
        the criterion knows what its threshold means, the figures only print it."""
        return "own threshold"

    def scores(self, inp: Inputs) -> np.ndarray:
        """One number per channel; pruned in ``direction`` order."""
        raise NotImplementedError

    def rankings(self, inp: Inputs) -> Iterator:
        """Yield Progress while working; return the criterion's rankings."""
        import time

        t = time.perf_counter()
        s = self.scores(inp)
        cost = time.perf_counter() - t + (inp.activation_cost_s if self.needs_activations else 0.0)
        return [self.ranking(s, cost)]
        yield  # a generator, like the criteria that report progress

    def ranking(self, scores, cost_s: float, **kw) -> "Ranking":
        s = np.asarray(scores, np.float64)
        return Ranking(kw.pop("name", self.name), self.name, self.needs, s, order_of(s, self.direction), cost_s,
                       diagnostic=self.diagnostic, **kw)


@dataclass(frozen=True, eq=False)
class Ranking:
    """One criterion's verdict on the layer's channels.

    ``order`` is the pruning order (channel indices); ``scores`` the per-channel numbers it
    was sorted by; ``cost_s`` the seconds this process spent computing the scores (a cache
    hit is cheap: ``cached`` says so); ``threshold_step`` is clp's own operating point (the
    number of channels above mean + u·std, pruned first)."""

    name: str
    method: str  # a registered criterion's name; several ``random-k`` rankings share "random"
    needs: tuple[str, ...]
    scores: np.ndarray
    order: tuple[int, ...]
    cost_s: float = 0.0
    diagnostic: bool = False
    threshold_step: int | None = None
    seed: int | None = None
    cached: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        c = REGISTRY.get(self.method)
        t = c.title if c else self.name
        if c is not None and c.seeded and self.seed is not None:
            return f"{t} (seed {self.seed})"
        return t if self.name == self.method else f"{t} ({self.name})"

    @property
    def point_label(self) -> str:
        """Its criterion's name for its own operating point (clp: ``mean + 3·std``)."""
        c = REGISTRY.get(self.method)
        return c.point_label(self) if c is not None else "own threshold"

    def summary(self) -> dict:
        """JSON-ready description (order, scores and where they came from)."""
        out = {"method": self.method, "needs": list(self.needs), "order": [int(c) for c in self.order],
               "scores": [float(s) for s in self.scores], "cost_s": round(float(self.cost_s), 4),
               "diagnostic": self.diagnostic, "cached": self.cached}
        if self.threshold_step is not None:
            out["threshold_step"] = self.threshold_step
        if self.seed is not None:
            out["seed"] = self.seed
        out.update(self.extra)
        return out




def family_of(name: str) -> str:
    """The criterion a ranking belongs to: ``random-3`` → ``random`` (a seeded family's member);
    any other name is its own."""
    head, _, tail = name.rpartition("-")
    return head if head and tail.isdigit() and is_seeded(head) else name


def seeded_members(names_) -> dict[str, list[str]]:
    """The members of each seeded family among ``names_`` (``random-1``…): drawn as one band
    and its mean instead of a curve each, when a family has more than one."""
    out: dict[str, list[str]] = {}
    for n in names_:
        if family_of(n) != n:
            out.setdefault(family_of(n), []).append(n)
    return out


def banded_families(names_) -> dict[str, list[str]]:
    """The seeded families among ``names_`` with more than one order: each is drawn and tabled
    as one band (its mean and min–max) named by its family; a lone order is a curve like any other."""
    return {fam: members for fam, members in seeded_members(names_).items() if len(members) > 1}


def colour_of(name: str) -> str:
    """The colour of criterion ``name`` (a seeded family's ``random-3`` is ``random``'s); the
    window's curves and trade-off view and the figures all draw with it."""
    crit = REGISTRY.get(family_of(name))
    return crit.colour if crit else "#444444"


def is_seeded(method: str) -> bool:
    """Whether rankings of ``method`` are a seeded family (drawn as a band, not a curve each)."""
    crit = REGISTRY.get(method)
    return bool(crit is not None and crit.seeded)


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def criterion(name: str) -> Criterion:
    try:
        return REGISTRY[name]
    except KeyError:
        raise PruneLabError(None, f"unknown ranking '{name}' (choose from {', '.join(REGISTRY)})") from None


def parse_rankings(text: str) -> list[str]:
    """``"activation,clp"`` → names, checked; one-line error on an unknown or repeated name."""
    got = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not got:
        raise PruneLabError(None, "--rankings needs at least one name (" + ", ".join(REGISTRY) + ")")
    for n in got:
        criterion(n)
    if len(set(got)) != len(got):
        raise PruneLabError(None, f"a ranking is named twice in '{text}'")
    return got


def check_available(names_: Sequence[str], roles) -> None:
    """Raise a one-line error naming the data a ranking needs but was not given."""
    roles = {base_role(r) for r in roles}  # a named poisoned set counts as poisoned data
    for n in names_:
        missing = [r for r in criterion(n).needs if r not in roles]
        if missing:
            what = " and ".join(f"{ROLE_TITLES.get(r, r).lower()} data ({OPTIONS.get(r, r)})" for r in missing)
            raise PruneLabError(None, f"the '{n}' ranking needs {what}")
