"""Pruning criteria: which channel of the pruned layer goes first (each criterion's own sweep is run
by :mod:`engine.pruning.rankings`). Each criterion is one class in
its own module, registered in :mod:`.base` (name, title, the data it needs, score direction,
colour); the CLI, the window's criteria box and the curves read the registry. Every criterion's
order is swept by the same exact sweep, so curves are comparable step by step.

To add one: a module here with a ``@register``-ed :class:`~.base.Criterion` subclass (``scores``
or ``rankings``), imported below, and its test."""

from engine.pruning.criteria.base import (DEFAULT, REGISTRY, Criterion, banded_families, Inputs, Ranking,  # noqa: F401
                                          check_available, colour_of, criterion, family_of, is_seeded, names,
                                          order_of, parse_rankings, register, seeded_members)
from engine.pruning.criteria import activation, l1, clp, anp, random, difference  # noqa: F401,E402  (registration order)
from engine.pruning.criteria.activation import activation_ranking, lab_order  # noqa: F401,E402
from engine.pruning.criteria.anp import ANPConfig, anp_events, anp_ranking  # noqa: F401,E402
from engine.pruning.criteria.clp import clp_ranking, clp_scores, following_batchnorm_scale  # noqa: F401,E402
from engine.pruning.criteria.difference import difference_ranking, difference_scores  # noqa: F401,E402
from engine.pruning.criteria.l1 import l1_ranking, l1_scores  # noqa: F401,E402
from engine.pruning.criteria.random import random_names, random_rankings  # noqa: F401,E402
