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
    lay = panel.layout()  # a seventh criterion's box is not hidden under the seeds spin box

    def row(w):
        return lay.getItemPosition(lay.indexOf(w))[0]

    assert row(panel.seeds) > max(row(b) for b in panel.boxes.values())


def test_a_registered_seeded_family_is_drawn_as_a_band(qtbot):
    """A seeded family other than ``random`` gets the band, the colour and the key by its
    registry facts, not by its name."""
    from engine.pruning.criteria import family_of, seeded_members
    from engine.pruning.criteria.random import Random
    from engine.pruning.records import StepRecord
    from guiapp.views.curves import CurvesView, ranking_colour

    class Shuffled(Random):
        name = "shuffled"
        title = "shuffled channels"
        short = "shuffled"
        colour = "#00aaff"

        def expand(self, seeds: int) -> list[str]:
            return [f"shuffled-{k}" for k in range(1, seeds + 1)]

    register(Shuffled)
    try:
        assert family_of("shuffled-2") == "shuffled" and family_of("l1") == "l1"
        assert seeded_members(["activation", "shuffled-1", "shuffled-2"]) == {"shuffled": ["shuffled-1", "shuffled-2"]}
        v = CurvesView()
        qtbot.addWidget(v)
        v.start(4, thresholds=(2,))
        for name, drop in (("activation", 5.0), ("shuffled-1", 10.0), ("shuffled-2", 20.0)):
            for s in range(4):
                v.add_ranking_record(name, StepRecord(s, None, s / 4, clean_valid_acc=90 - drop * s, asr_valid=100.0))
        v._refresh()
        p = v.plots["valid"]
        assert p.bands, "the family's orders are drawn as a band"
        assert not p.overlay["shuffled-1"][0].isVisible() and p.overlay["activation"][0].isVisible()
        assert ranking_colour("shuffled-2") == "#00aaff"
        assert "band and mean of 2 orders" in v.key.text()
    finally:
        del REGISTRY["shuffled"]


def test_two_seeded_families_are_two_bands_each_named_by_its_family(qtbot):
    """Each seeded family is its own band (a table row, a figure entry, a trade-off mean), never
    merged with another family's orders."""
    from engine.pruning.criteria import Ranking
    from engine.pruning.criteria.random import Random
    from engine.report.compare import comparison_table, rankings_figure, tradeoff_figure
    from guiapp.views.tradeoff import TradeoffView
    from tests.test_rankings import fake_result

    class Shuffled(Random):
        name = "shuffled"
        title = "shuffled channels"
        short = "shuffled"
        colour = "#00aaff"

    register(Shuffled)
    try:
        results = {"random-1": fake_result([100, 96, 90, 80, 70], [100, 20, 10, 0, 0]),
                   "random-2": fake_result([100, 98, 94, 70, 60], [100, 40, 30, 10, 0]),
                   "shuffled-1": fake_result([100, 50, 40, 30, 20], [100, 90, 80, 70, 60]),
                   "shuffled-2": fake_result([100, 60, 50, 40, 30], [100, 80, 70, 60, 50])}
        for res in results.values():
            res.labels["clean_valid"] = np.zeros(4, np.int64)  # the figure draws the splits it has data of
        ranks = [Ranking(n, n.split("-")[0], (), np.zeros(4), (0, 1, 2, 3), seed=int(n[-1])) for n in results]
        rows = comparison_table(ranks, results)
        assert [r.name for r in rows] == ["random-1", "random-2", "random", "shuffled-1", "shuffled-2", "shuffled"]
        band = {r.name: r for r in rows}
        assert band["random"].title == "random (mean of 2 seeds)" and band["random"].members == 2
        assert band["shuffled"].title == "shuffled (mean of 2 seeds)"
        assert band["shuffled"].checkpoints[10.0].clean == pytest.approx(55)  # its own orders' mean, not random's
        fig = rankings_figure(ranks, results, splits=("valid",))
        labels = fig.axes[0].get_legend_handles_labels()[1]
        assert "random (mean, band of 2 seeds): clean" in labels and "shuffled (mean, band of 2 seeds): clean" in labels
        fig = tradeoff_figure(ranks, results)
        labels = fig.axes[0].get_legend_handles_labels()[1]
        assert {"random: mean of 2 orders (faint: each)", "shuffled: mean of 2 orders (faint: each)"} <= set(labels)
        v = TradeoffView()
        qtbot.addWidget(v)
        v.set_sweeps(results)
        assert "shuffled: mean of 2 orders" in v.key.text() and "random: mean of 2 orders" in v.key.text()
    finally:
        del REGISTRY["shuffled"]


def test_a_criterion_names_its_own_operating_point():
    from engine.pruning.criteria import Ranking

    clp = Ranking("clp", "clp", (), np.zeros(4), (0, 1, 2, 3), threshold_step=2, extra={"u": 2.5})
    assert clp.point_label == "mean + 2.5·std"
    assert Ranking("l1", "l1", (), np.zeros(4), (0, 1, 2, 3), threshold_step=1).point_label == "own threshold"
