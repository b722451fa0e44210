"""Criteria behind one interface: a criterion registered in one place reaches the CLI's parser,
the sweeps and the window's criteria box, with its own title, data needs and colour."""

import numpy as np
import pytest

from engine.core.errors import PruneLabError
from engine.io.datasets import LabDataset
from engine.models.loading import load_model
from engine.pruning import criteria
from engine.pruning.criteria import REGISTRY, Criterion, Inputs, order_of, register


@pytest.fixture
def loudest_first():
    """A criterion made the way a contributor would: one class, registered."""

    class Loudest(Criterion):
        name = "loudest"
        title = "loudest clean activation first"
        short = "loudest"
        needs = ("clean_valid",)
        direction = "highest"
        needs_activations = True
        colour = "#ff00aa"

        def scores(self, inp: Inputs) -> np.ndarray:
            return np.asarray(inp.means["clean_valid"], np.float64)

    register(Loudest)
    yield Loudest
    del REGISTRY["loudest"]


def test_registry_lists_the_shipped_criteria_with_their_facts():
    assert criteria.names()[:6] == ("activation", "l1", "clp", "anp", "random", "difference")
    for name, crit in REGISTRY.items():
        assert crit.name == name and crit.title and crit.direction in ("lowest", "highest")
        assert crit.colour.startswith("#")
    assert REGISTRY["difference"].diagnostic and not REGISTRY["activation"].diagnostic
    assert REGISTRY["anp"].needs == ("clean_valid",) and REGISTRY["l1"].needs == ()
    assert len({c.colour for c in REGISTRY.values()}) == len(REGISTRY)  # no two criteria share a colour


def test_order_direction():
    s = np.array([3.0, 1.0, 2.0, 1.0])
    assert order_of(s, "lowest") == (1, 3, 2, 0) and order_of(s, "highest") == (0, 2, 1, 3)


def test_a_new_criterion_reaches_the_parser_and_the_sweeps(loudest_first, small_lab):
    from engine.pruning.criteria import parse_rankings
    from engine.pruning.rankings import RankingSweeps

    assert parse_rankings("activation,loudest") == ["activation", "loudest"]
    with pytest.raises(PruneLabError, match="unknown ranking 'quietest'"):
        parse_rankings("quietest")
    lm = load_model(small_lab.model)
    ds = {"clean_valid": LabDataset(small_lab.files["clean_valid"], lm.input_hwc)}
    rs = RankingSweeps(lm, ds, ["activation", "loudest"], use_cache=False, max_steps=3).run()
    lab, loud = rs.rankings["activation"], rs.rankings["loudest"]
    assert loud.order == order_of(lab.scores, "highest") != lab.order
    assert loud.title == "loudest clean activation first"
    assert rs.results["loudest"].order == list(loud.order)
    with pytest.raises(PruneLabError, match="the 'loudest' ranking needs clean validation"):
        RankingSweeps(lm, {}, ["loudest"])


def test_the_window_offers_a_registered_criterion_in_its_colour(loudest_first, qtbot):
    from guiapp.views.curves import ranking_colour
    from guiapp.views.panels import RankingPanel

    panel = RankingPanel()
    qtbot.addWidget(panel)
    assert "loudest" in panel.boxes and panel.boxes["loudest"].text() == "loudest"
    panel.set_roles(())
    assert not panel.boxes["loudest"].isEnabled()
    panel.set_roles(("clean_valid",))
    assert panel.boxes["loudest"].isEnabled()
    assert ranking_colour("loudest") == "#ff00aa" and ranking_colour("random-3") == REGISTRY["random"].colour
