"""The views on their own, fed plain values (no TensorFlow, no files): curves, drops, the
activations headline, image captions."""

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from engine.pruning.records import Checkpoint, StepRecord


def records(n_steps=10, with_test=True):
    out = []
    for s in range(n_steps + 1):
        acc = 95.0 - s * s * 0.5
        out.append(StepRecord(s, None if s == 0 else s - 1, s / n_steps, clean_valid_acc=acc, asr_valid=100.0 - s,
                              clean_test_acc=acc - 1 if with_test else None,
                              asr_test=99.0 - s if with_test else None, total_steps=n_steps))
    return out


def test_curves_stream_replace_and_pick(qtbot):
    from guiapp.views.curves import CurvesView

    v = CurvesView()
    qtbot.addWidget(v)
    v.start(10, thresholds=(2.0, 10.0))
    recs = records()
    for r in recs[:4]:  # validation first: test metrics not known yet
        v.add_record(StepRecord(r.step, r.channel, r.fraction_pruned, clean_valid_acc=r.clean_valid_acc,
                                asr_valid=r.asr_valid, total_steps=10))
    v._refresh()
    assert len(v.plots["valid"].acc.getData()[0]) == 4
    assert v.plots["test"].acc.getData()[0] is None or len(v.plots["test"].acc.getData()[0]) == 0
    for r in recs[:4]:  # the same steps again, now with the test metrics (new records replace old)
        v.add_record(r)
    v._refresh()
    assert list(v.plots["test"].acc.getData()[1]) == [r.clean_test_acc for r in recs[:4]]
    # threshold names sit on the right axis, one tick per threshold, at base × (1 − t)
    ticks = v.plots["valid"].getAxis("right")._tickLevels[0]
    assert [t for _, t in ticks] == ["−2 % acc.", "−10 % acc."]
    assert [y for y, _ in ticks] == pytest.approx([95.0 * 0.98, 95.0 * 0.9])
    v.set_records(recs, (2.0, 10.0), [Checkpoint(2.0, 3), Checkpoint(10.0, 5)])
    assert len(v.plots["valid"].markers) == 2
    picked = []
    v.stepPicked.connect(picked.append)
    v.set_step(7)
    assert picked == [7] and v.plots["test"].cursor.value() == pytest.approx(70.0)
    qtbot.keyClick(v, Qt.Key_Right)
    qtbot.keyClick(v, Qt.Key_End)
    assert picked[-2:] == [8, 10]
    v.set_step(99)
    assert v.step == 10  # clamped to the sweep


def test_every_threshold_line_is_named_and_the_legend_is_outside_the_plots(qtbot):
    """2, 4 and 10 %: three names drawn on the right axis (the −10 % one used to be dropped for
    want of room), close ones nudged apart; no legend inside the plots, a key under them naming
    the measures and each criterion's colour, random and the diagnostic in different colours."""
    from PySide6.QtGui import QImage, QPainter

    from guiapp.views.curves import CurvesView, ranking_colour

    v = CurvesView()
    qtbot.addWidget(v)
    v.resize(1000, 600)
    v.show()
    v.start(10, thresholds=(2.0, 4.0, 10.0))
    recs = records()
    for r in recs:
        v.add_record(r)
        v.add_ranking_record("random-1", r)
        v.add_ranking_record("difference", r)
    v._refresh()
    qtbot.wait(20)
    axis = v.plots["valid"].getAxis("right")
    img = QImage(200, 600, QImage.Format_ARGB32)
    painter = QPainter(img)
    try:
        _, _, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    assert sorted(t for _, _, t in texts) == ["−10 % acc.", "−2 % acc.", "−4 % acc."]
    ys = sorted(y for y, _ in axis._tickLevels[0])
    assert min(b - a for a, b in zip(ys, ys[1:])) >= 3.0
    assert all(p.plotItem.legend is None for p in v.plots.values())
    key = v.key.text()
    assert v.key.isVisible() and "clean accuracy" in key and "attack success rate" in key and "dashed" in key
    assert ranking_colour("random") in key and ranking_colour("difference") in key
    assert ranking_colour("random") != ranking_colour("difference")
    # a criterion's own operating point: a marker on its curve, named in the key, not over the curves
    v.mark_points({"difference": (3, "CLP (Lipschitz): own threshold")})
    assert "CLP (Lipschitz): own threshold: step 3, 30.0 % removed" in v.key.text()
    import pyqtgraph as pg

    texts = [i for i in v.plots["valid"].items() if isinstance(i, pg.TextItem)]
    assert set(texts) <= {v.plots["valid"].readout, v.plots["valid"].empty}


def test_an_empty_test_plot_says_why(qtbot):
    from guiapp.views.curves import CurvesView

    v = CurvesView()
    qtbot.addWidget(v)
    v.start(10, has_test=False)
    assert "No test data loaded" in v.plots["test"].empty.textItem.toPlainText()
    assert v.plots["test"].empty.isVisible() and not v.plots["valid"].empty.isVisible()
    v.start(10, has_test=True)
    assert not v.plots["test"].empty.isVisible()


def mime_of(*paths, remote=False):
    m = QMimeData()
    m.setUrls([QUrl("https://example.org/x.h5") if remote else QUrl.fromLocalFile(str(p)) for p in paths])
    return m


def test_drop_rules_napari_style(qtbot, tmp_path):
    from guiapp.views.panels import DataSlot, local_paths

    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert local_paths(mime_of(a, b)) == [a, b]
    assert local_paths(mime_of(a, remote=True)) == []
    text = QMimeData()
    text.setText("/etc/passwd")
    assert local_paths(text) == []  # only URLs, never text
    slot = DataSlot("clean_valid")
    qtbot.addWidget(slot)
    got = []
    slot.fileDropped.connect(lambda role, p: got.append((role, p)))
    both, one = mime_of(a, b), mime_of(a)  # kept alive: events hold a pointer to their mime data
    two = QDragEnterEvent(slot.rect().center(), Qt.CopyAction, both, Qt.LeftButton, Qt.NoModifier)
    two.ignore()
    slot.dragEnterEvent(two)
    assert not two.isAccepted()  # a slot takes one file
    slot.dropEvent(QDropEvent(QPointF(1, 1), Qt.CopyAction, both, Qt.LeftButton, Qt.NoModifier))
    slot.dropEvent(QDropEvent(QPointF(1, 1), Qt.CopyAction, one, Qt.LeftButton, Qt.NoModifier))
    assert got == [("clean_valid", a)]


def test_activations_headline_follows_the_difference_criterions_order():
    from guiapp.views.activations import headline

    clean = np.array([0.0, 5.0, 40.0, 1e-7, 10.0])
    poison = np.array([0.0, 5.5, 95.0, 1e-3, 2.0])  # channel 3: tiny means, a huge ratio
    text = headline(clean, poison, k=2)
    # poisoned − clean, highest first (as the difference criterion prunes): a drop is no trigger channel
    assert "channels 2 (+55), 1 (+0.5)" in text and " 3 " not in text and "(-8)" not in text
    assert headline(clean, None) == ""  # no poisoned set: no claim at all


def test_image_captions_fit_their_tile(qtbot):
    """The lab's widest labels (4-digit classes, the step, the flag) fit a tile's caption line
    whole; a longer name is shortened, never drawn over its value."""
    from guiapp.views.images import THUMB, TileDelegate

    d = TileDelegate(None)
    width = THUMB + 8 - 8  # the caption line inside the tile, as paint() draws it
    for name, value in (("B'@1283", "1268"), ("G@49", "⚑ 1283"), ("true", "1282"), ("B", "0")):
        assert d.caption(name, value, width) == (name, value)
    left, right = d.caption("a very long label name", "1268", width)
    assert right == "1268" and left.endswith("…") and len(left) < len("a very long label name")


def test_criteria_panel_greys_out_what_the_data_cannot_run(qtbot):
    from guiapp.views.panels import RankingPanel

    p = RankingPanel()
    qtbot.addWidget(p)
    assert p.boxes["activation"].isChecked()  # the lab's criterion is ticked from the start
    assert p.names() == []  # … but nothing runs without clean validation data
    p.boxes["difference"].setChecked(True)
    p.boxes["random"].setChecked(True)
    p.set_roles({"clean_valid"})
    assert p.names() == ["activation", "random"] and p.random_seeds() == 5
    assert not p.boxes["difference"].isEnabled()
    p.set_roles({"clean_valid", "poisoned_valid"})
    assert p.names() == ["activation", "random", "difference"]


def test_mean_maps_share_one_scale_up_to_the_brighter_peak(qtbot):
    """A mean of per-image maps peaks well below 1; the dialog stretches both sides by the same
    factor so the poisoned side's hot region is drawn at full heat and clean stays comparable."""
    from PySide6.QtWidgets import QLabel

    from engine.analysis.maps import MeanMap
    from guiapp.tasks import MeanMaps
    from guiapp.views.colour import overlay
    from guiapp.views.imagedialogs import MeanMapsDialog

    grey = np.full((55, 47, 3), 128.0)
    got = MeanMaps("gradcam", MeanMap(np.full((55, 47), 0.25), grey, 10, "gradcam"),
                   MeanMap(np.full((55, 47), 0.5), grey, 10, "gradcam"))
    dlg = MeanMapsDialog(got)
    qtbot.addWidget(dlg)
    assert dlg.vmax == pytest.approx(0.5)
    pics = [lab.pixmap().toImage() for lab in dlg.findChildren(QLabel) if not lab.pixmap().isNull()
            and lab.pixmap().height() > 100]
    clean, poisoned = (img.pixelColor(img.width() // 2, img.height() // 2) for img in pics)
    want_p = overlay(grey.astype(np.uint8), np.ones((55, 47)))[0, 0]
    want_c = overlay(grey.astype(np.uint8), np.full((55, 47), 0.5))[0, 0]
    assert np.allclose([poisoned.red(), poisoned.green(), poisoned.blue()], want_p, atol=2)
    assert np.allclose([clean.red(), clean.green(), clean.blue()], want_c, atol=2)
    assert any(lab.text() == "0 – 0.50" for lab in dlg.findChildren(QLabel))


def stepped_records(pruned=(0, 10, 20, 21, 22, 30, 40), n=40):
    """A sweep with a step size of 10 over 40 channels, refined channel by channel after 20:
    record k prunes ``pruned[k]`` channels, not k."""
    return [StepRecord(k, None if k == 0 else p - 1, p / n, clean_valid_acc=90.0 - p, asr_valid=100.0 - 2 * p,
                       total_steps=4, pruned=p) for k, p in enumerate(pruned)]


def test_cursor_and_clicks_follow_channels_pruned_with_a_step_size_above_one(qtbot):
    from guiapp.views.curves import CurvesView

    v = CurvesView()
    qtbot.addWidget(v)
    v.start(40, thresholds=(2.0,))
    v.set_records(stepped_records(), (2.0,), [])
    v.set_step(2)  # record 2 prunes 20 of 40 channels: the cursor sits at 50 %, on the curve's point
    assert v.plots["valid"].cursor.value() == pytest.approx(50.0)
    assert v.plots["valid"].acc.getData()[0][2] == pytest.approx(50.0)
    # a click or a drag snaps to the record nearest to where it lands (by % removed)
    assert v.step_at(50.0) == 2 and v.step_at(52.4) == 3 and v.step_at(74.0) == 5 and v.step_at(99.0) == 6
    assert v.step_at(11.0) == 0 and v.step_at(14.0) == 1  # record 1 sits at 25 %
    qtbot.keyClick(v, Qt.Key_Right)
    assert v.step == 3 and v.plots["test"].cursor.value() == pytest.approx(52.5)
    # fine-tuning from record 5 is drawn where record 5 is (30 of 40 channels: 75 %)
    from engine.pruning.finetune import EpochRecord

    v.set_fine_tune(5, [EpochRecord(0, None, clean_valid_acc=60.0, asr_valid=10.0)])
    assert v.plots["valid"].ft_acc.getData()[0][0] == pytest.approx(75.0)


def test_activations_grey_the_channels_the_record_prunes(qtbot):
    from engine.pruning.records import SweepResult
    from guiapp.views.activations import ActivationsView

    recs = stepped_records()
    order = list(range(39, -1, -1))  # channel 39 first
    res = SweepResult("m.h5", "conv_3", "pool_3", 40, 5, order,
                      {"clean_valid": np.linspace(1, 2, 40), "poisoned_valid": np.linspace(2, 1, 40)}, recs, {}, {},
                      (2.0,), [Checkpoint(2.0, None)], "fast", step_size=10)
    v = ActivationsView()
    qtbot.addWidget(v)
    v.show_result(res, 2)
    assert "20 of 40 channels pruned" in v.info.text()
    grey = [i for i, b in enumerate(v.clean_bars.opts["brushes"]) if b.color().getRgb()[:3] == (190, 190, 190)]
    assert grey == list(range(20, 40))  # by channel: the first 20 of the order (39 … 20) are grey


class FakeSweep:
    """What the trade-off view reads of a SweepResult: records and thresholds."""

    def __init__(self, recs, thresholds=(2.0, 4.0, 10.0)):
        self.records, self.thresholds = recs, thresholds


def criterion(steep: float, n_steps=10):
    return [StepRecord(s, None if s == 0 else s - 1, s / n_steps, clean_valid_acc=95.0 - s * steep,
                       asr_valid=max(0.0, 100.0 - s * s * steep), total_steps=n_steps) for s in range(n_steps + 1)]


def test_tradeoff_points_pick_their_criterion_and_step_with_a_click(qtbot):
    """Clean accuracy on x, ASR on y, one point per step; a mouse click on a point emits that
    criterion and its step; fine-pruned models appear as named points in the legend."""
    from engine.report.compare import NamedPoint, defender_region
    from guiapp.views.tradeoff import TradeoffView

    v = TradeoffView()
    qtbot.addWidget(v)
    v.resize(900, 600)
    v.show()
    sweeps = {"activation": FakeSweep(criterion(1.0)), "l1": FakeSweep(criterion(3.0)),
              "clp": FakeSweep(criterion(0.5)), "anp": FakeSweep(criterion(2.0))}
    v.set_sweeps(sweeps)
    x, y = v.curves["l1"].getData()
    assert list(x) == [r.clean_valid_acc for r in sweeps["l1"].records]
    assert list(y) == [r.asr_valid for r in sweeps["l1"].records]
    picked = []
    v.pointPicked.connect(lambda name, step: picked.append((name, step)))
    qtbot.wait(50)
    vb = v.plot.getPlotItem().vb
    pos = v.plot.mapFromScene(vb.mapViewToScene(pg_point(x[4], y[4])))
    qtbot.mouseClick(v.plot.viewport(), Qt.LeftButton, pos=pos)
    assert picked == [("l1", 4)]
    v.set_current("l1", 4)
    assert list(v.current.getData()[0]) == [x[4]] and "step 4" in v.readout.text()
    v.set_points("fine-pruned", [NamedPoint("fine-pruned from step 6", 93.0, 1.5)])
    assert "fine-pruned from step 6" in v.key.text() and "ASR ≤ 10 %" in v.key.text()
    assert defender_region(95.0) == pytest.approx((91.2, 10.0))  # the shaded region: 4 % below 95, ASR 10


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(float(x), float(y))


def test_images_on_poisoned_data_are_coloured_from_the_defenders_side(qtbot):
    """On a poisoned set (labelled with the attacker's target) B answering the label is the attack
    working: red; a model answering anything else resisted: green; the legend says so. On clean
    data right is green, wrong red. The sets are listed in the slots' order."""
    from pathlib import Path
    from types import SimpleNamespace

    from guiapp.views.images import BAD, OK, ImagesView, TileDelegate

    def ds(name, labels):
        return SimpleNamespace(n=len(labels), labels=np.array(labels), has_labels=True, path=Path(name),
                               image_shape=(4, 4, 3))

    sets = {"poisoned_test": ds("bd_test.h5", [0, 0, 0]), "clean_valid": ds("valid.h5", [5, 6, 7]),
            "poisoned_valid": ds("bd_valid.h5", [0, 0, 0])}
    b = {"poisoned_test": np.array([0, 3, 0]), "clean_valid": np.array([5, 1, 7]), "poisoned_valid": np.array([0, 0, 2])}
    result = SimpleNamespace(records=[0, 1], predictions={r: [b[r], b[r]] for r in sets}, flag_class=99,
                             goodnet_labels=lambda role, k: b[role])
    session = SimpleNamespace(datasets=sets, photos=None, result=result, step=1, result_covers=lambda r: True)
    v = ImagesView()
    qtbot.addWidget(v)
    v.result, v.step = result, 1
    v.set_datasets(session)
    assert [v.dataset.itemData(i) for i in range(v.dataset.count())] == ["clean_valid", "poisoned_valid",
                                                                          "poisoned_test"]
    d = TileDelegate(None)

    def colours():
        m = v.model
        out = []
        for row in range(m.rowCount()):
            items = dict(tuple(x) for x in m.data(m.index(row), m.LabelsRole))
            out.append(d.colour("B", items["B"], items["true"], m.flag, m.poisoned))
        return out

    v.dataset.setCurrentIndex(v.dataset.findData("poisoned_test"))
    assert colours() == [BAD, OK, BAD]  # answers the target 0: the attack works
    assert "red = attack works" in v.legend.text() and "poisoned set" in v.legend.text()
    v.dataset.setCurrentIndex(v.dataset.findData("clean_valid"))
    assert colours() == [OK, BAD, OK]
    assert "attack works" not in v.legend.text() and "correct" in v.legend.text()


def test_rankings_table_fits_its_tab_without_scrolling_sideways(qtbot):
    """Six criteria and the random mean in a tab as wide as a 1400 px window leaves it; ANP's
    cost is its training time even when its masks came from the cache."""
    from types import SimpleNamespace

    from engine.report.compare import ComparisonRow, Point
    from guiapp.views.rankings import RankingsView

    pt = Point(37, 0.617, 91.23, 99.87)
    names = [("activation", "mean clean activation (lab)"), ("l1", "L1 norm of kernel"), ("clp", "CLP (Lipschitz)"),
             ("anp", "ANP (adversarial masks)"), ("random-1", "random (seed 1)"), ("random", "random (mean of 5 seeds)"),
             ("difference", "poisoned − clean (diagnostic)")]
    rows = [ComparisonRow(n, t, ("clean_valid", "poisoned_valid"), n == "difference", 0.0012, 1.5,
                          {2.0: pt, 4.0: pt, 10.0: pt}, pt, pt, cached=n == "anp", train_s=41.7 if n == "anp" else None)
            for n, t in names]
    done = SimpleNamespace(results={"activation": SimpleNamespace(thresholds=(2.0, 4.0, 10.0))}, table=rows)
    v = RankingsView()
    qtbot.addWidget(v)
    v.resize(1400 - 360 - 20, 700)  # the window's width less the left panel
    v.show()
    v.show_table(done)
    qtbot.wait(50)
    assert v.table.horizontalScrollBar().maximum() == 0
    anp = [v.table.item(i, 2).text() for i in range(v.table.rowCount()) if v.table.item(i, 0).text().startswith("ANP")]
    assert anp == ["41.70 (cached)"]


def test_engine_messages_are_told_in_the_windows_words():
    """The command line's options become what to click: the checkbox, the menu entry."""
    from guiapp.wording import window_words

    resize = window_words("a.png: is 64×64 pixels (H×W), the model expects 55×47; turn on resizing (--resize) "
                          "to scale images bilinearly")
    assert "tick “Resize images to the model's input”" in resize and "--" not in resize
    model = window_words("w.h5: has no 'output' layer; it is not a DeepID weights file — give the model file "
                         "too (--model)")
    assert "open the model file too (File ▸ Open model)" in model and "--" not in model
    assert "--" not in window_words("w.h5: is a weights-only file; give the model file with --model")
    assert window_words("x.h5: is empty (0 bytes)") == "x.h5: is empty (0 bytes)"


def test_a_map_chosen_before_the_verdicts_is_asked_for_again_when_they_arrive(qtbot):
    """Opening images while a map is chosen: the page's maps are asked for as its pixels arrive —
    refused while B judges the images (one task at a time) — and asked for again with the verdicts."""
    from pathlib import Path
    from types import SimpleNamespace

    from guiapp.tasks import ImagePage
    from guiapp.views.images import ImagesView

    ds = SimpleNamespace(n=3, labels=np.array([1, 2, 3]), has_labels=True, path=Path("photos"), image_shape=(4, 4, 3))
    session = SimpleNamespace(datasets={"clean_test": ds}, photos=None, result=None, step=0,
                              result_covers=lambda r: False)
    v = ImagesView()
    qtbot.addWidget(v)
    v.set_datasets(session)
    asked = []
    v.mapsWanted.connect(lambda method, page: asked.append((method, page.indices)))
    v.map.setCurrentIndex(v.map.findData("gradcam"))
    v.show_page(ImagePage("photos", (0, 1, 2), np.zeros((3, 4, 4, 3), np.uint8)))
    assert asked == [("gradcam", (0, 1, 2))]  # (the controller refuses it while a task runs)
    v.verdicts_arrived(None)
    assert asked[-1] == ("gradcam", (0, 1, 2)) and len(asked) == 2


def test_the_job_bar_pauses_only_a_sweep_and_cancels_any_task(qtbot):
    from guiapp.kinds import TaskKind
    from guiapp.views.jobbar import JobBar

    bar = JobBar()
    qtbot.addWidget(bar)
    assert not bar.cancel_btn.isEnabled() and not bar.pause_btn.isEnabled()  # idle
    bar.set_busy(TaskKind.SWEEP)
    assert bar.cancel_btn.isEnabled() and bar.pause_btn.isEnabled()
    bar.set_busy(TaskKind.SCAN)
    assert bar.cancel_btn.isEnabled() and not bar.pause_btn.isEnabled()
    bar.set_busy(None)
    assert not bar.cancel_btn.isEnabled() and not bar.pause_btn.isEnabled()
