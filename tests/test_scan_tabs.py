"""The Scan and Repair tabs in the real main window (offscreen), on a 10-class BadNet trained here
in seconds (tests/scantab_helpers.py): the scan flags its target and draws its trigger, the
trigger becomes stand-in poisoned data in the poisoned slots, the repair fills its table and the
trade-off plot, saves go through the engine, cancelling leaves nothing. The views alone are fed
plain values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

LONG = 240_000
BUDGET = 10 * 300  # every label of the 10-class model


@pytest.fixture(scope="module")
def tab_badnet(tmp_path_factory):
    from tests.scantab_helpers import make_badnet

    return make_badnet(tmp_path_factory.mktemp("tab-badnet"))


def open_badnet(qtbot, w, lab, roles=("clean_valid", "clean_test")):
    with qtbot.waitSignal(w.ctl.modelOpened, timeout=LONG):
        w.ctl.open_model(lab["model"])
    for role in roles:
        with qtbot.waitSignal(w.ctl.datasetChanged, timeout=LONG):
            w.ctl.open_data(lab["files"][role], role=role)


def scan(qtbot, w):
    w.tabs.setCurrentWidget(w.scan_view)
    w.scan_view.budget.setValue(BUDGET)
    with qtbot.waitSignal(w.scanner.scanFinished, timeout=LONG) as blocker:
        qtbot.mouseClick(w.scan_view.scan_btn, Qt.LeftButton)
    return blocker.args[0]


@pytest.mark.slow
def test_scan_tab_flags_the_target_draws_its_trigger_and_stands_it_in_for_poisoned_data(qtbot, win, tab_badnet,
                                                                                          tmp_path):
    from tests.scantab_helpers import TARGET

    open_badnet(qtbot, win, tab_badnet)
    done = scan(qtbot, win)
    v = win.scan_view
    assert done.result.flagged == [TARGET]
    # the verdict in words, naming the label
    text = v.verdict.text()
    assert "Backdoor suspected" in text and f"label <b>{TARGET}</b>" in text
    # the chart: one bar per scanned label, the flagged one (first: most suspicious) red, the flag line at 2
    opts = v.bars.opts
    assert len(opts["x"]) == len(done.result.scanned) == 10
    assert opts["brushes"][0].color().name() == "#c62828"
    assert all(b.color().name() != "#c62828" for b in opts["brushes"][1:])
    assert v.line.isVisible() and v.line.value() == pytest.approx(2.0)
    assert v.table.item(0, 0).text() == str(TARGET) and "flagged" in v.table.item(0, 4).text()
    # the trigger's pictures: mask, pattern, a stamped clean image the model answers with the target, Grad-CAM
    assert v.trigger.currentData() == TARGET and "flagged" in v.trigger.currentText()
    for key in ("mask", "pattern", "stamped", "gradcam"):
        pm = v.pics[key].pixmap()
        assert pm is not None and not pm.isNull(), key
    assert done.views[TARGET].answer == TARGET and f">{TARGET}</b>" in v.captions["stamped"].text()
    # the mask sits on the planted corner patch
    mask = done.views[TARGET].mask
    assert mask[10:16, 10:16].sum() / mask.sum() > 0.5
    # switching the chart to the masks' L1 norms redraws the same bars (created once)
    bars = v.bars
    v.measure.setCurrentIndex(1)
    assert v.bars is bars and v.bars.opts["height"][0] == pytest.approx(done.result.scanned[0].mask_l1)

    # "Use as poisoned data": stamped stand-ins of clean validation and clean test in the poisoned slots
    inputs = {p: Path(p).read_bytes() for p in tab_badnet["files"].values()}
    arrived = []
    win.ctl.datasetChanged.connect(lambda role, ds: arrived.append(role))
    qtbot.mouseClick(v.use_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: {"poisoned_valid", "poisoned_test"} <= set(arrived), timeout=LONG)
    want = f"reversed trigger, label {TARGET}"
    for role, src in (("poisoned_valid", "clean_valid"), ("poisoned_test", "clean_test")):
        ds, clean = win.session.datasets[role], win.session.datasets[src]
        assert ds.standin == want and ds.single_target and ds.target == TARGET and ds.n == clean.n
        assert Path(ds.path).parent != Path(clean.path).parent  # written apart from the inputs
        assert f"STAND-IN ({want})" in win.slots[role].info.text()
    assert {p: Path(p).read_bytes() for p in inputs} == inputs  # no input touched

    # "Save scan…" writes the folder `prunelab scan` writes
    out = tmp_path / "scan"
    with qtbot.waitSignal(win.ctl.saved, timeout=LONG):
        win.save_scan(out)
    info = json.loads((out / "scan.json").read_text())
    assert info["flagged"] == [TARGET] and (out / f"trigger_{TARGET}.npz").is_file() and (out / "scan.png").is_file()
    # the stand-ins' temporary files go when the window closes
    standins = [Path(win.session.datasets[r].path) for r in ("poisoned_valid", "poisoned_test")]
    win.close()
    assert not any(p.exists() for p in standins)


@pytest.mark.slow
def test_repair_tab_uses_the_scans_trigger_fills_its_table_the_tradeoff_and_saves_g(qtbot, win, tab_badnet,
                                                                                    tmp_path):
    from engine.models.loading import load_model
    from tests.scantab_helpers import TARGET

    open_badnet(qtbot, win, tab_badnet, roles=("clean_valid", "clean_test", "poisoned_test"))
    scan(qtbot, win)
    rv = win.repair_view
    win.tabs.setCurrentWidget(rv)
    rv.boxes["unlearn"].setChecked(False)  # the cheap ones: the trigger filter and STRIP
    rv.frr.setValue(2.0)
    with qtbot.waitSignal(win.repairer.repairFinished, timeout=LONG) as blocker:
        qtbot.mouseClick(rv.run_btn, Qt.LeftButton)
    res = blocker.args[0]
    assert res.scan is None and [t.label for t in res.triggers] == [TARGET]  # the scan's trigger, no second scan
    methods = [rv.table.item(i, 0).text() for i in range(rv.table.rowCount())]
    assert methods[0] == "none (B)" and "filter" in methods and "strip" in methods
    row = methods.index("filter")
    assert rv.table.item(row, 4).text() == f"{res.row('filter').detection:.2f}"
    assert "poisoned test" in rv.sources.text()
    # each G a named point on the trade-off plot
    names = [p.name for p in win.tradeoff.points()]
    assert "G trigger filter" in names and "G STRIP" in names
    assert not rv.save_btns["unlearned"].isEnabled() and rv.save_btns["strip"].isEnabled()
    # each G's answers beside B's in the image browser (flags in G's colour), for the file the repair evaluated
    win.tabs.setCurrentWidget(win.images)
    win.images.dataset.setCurrentIndex(win.images.dataset.findData("poisoned_test"))
    m = win.images.model
    labels = dict(m.data(m.index(0), m.LabelsRole))
    assert {"true", "B", "G_filter", "G_strip"} <= set(labels)
    i = m.image_index(0)
    assert labels["G_filter"] == res.answers["G_filter"]["poisoned_test"][i]
    assert m.flag == tab_badnet["n_classes"]
    # Save G: the model and its eval script; G has N+1 outputs
    path = tmp_path / "G_strip.keras"
    with qtbot.waitSignal(win.ctl.saved, timeout=LONG):
        win.save_repaired("strip", path)
    assert path.is_file() and (tmp_path / "G_strip_eval.py").is_file()
    g = load_model(path)
    assert g.is_goodnet and g.n_classes == tab_badnet["n_classes"] + 1


@pytest.mark.slow
def test_cancelled_scan_and_stamping_leave_nothing(qtbot, win, tab_badnet, tmp_path):
    from engine.core.errors import Cancelled
    from engine.core.state import JobState
    from guiapp import scantasks

    open_badnet(qtbot, win, tab_badnet)
    win.scan_view.budget.setValue(10 * 3000)  # long enough to cancel mid-way
    seen = []

    def on_progress(text, done, total):
        seen.append(text)
        if "optimising" in text and win.ctl.worker is not None:
            win.ctl.cancel()

    win.ctl.progress.connect(on_progress)
    with qtbot.waitSignal(win.scanner.scanCancelled, timeout=LONG):
        qtbot.mouseClick(win.scan_view.scan_btn, Qt.LeftButton)
    win.ctl.progress.disconnect(on_progress)
    win.ctl.wait_idle()
    assert win.scanner.done is None and "cancelled" in win.scan_view.verdict.text()
    assert not win.scan_view.use_btn.isEnabled() and win.scan_view.scan_btn.isEnabled()
    assert "poisoned_valid" not in win.session.datasets
    # stamping cancelled: no stand-in file, not even a half-written one
    from tests.scantab_helpers import patch_trigger

    state = JobState()
    state.cancel()
    with pytest.raises(Cancelled):
        scantasks.write_standins(patch_trigger(), dict(win.session.datasets), [], state, folder=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name != "settings.ini"] == []


# ---------------------------------------------------------------------------- the views alone
def _done(flagged, anomaly):
    from engine.analysis.scan import LabelScan, ScanResult
    from guiapp.scantasks import ScanDone, TriggerView

    rows = [LabelScan(t, 10.0 + 20 * i, 0.9, a, False, role="candidate") for i, (t, a) in enumerate(anomaly)]
    res = ScanResult("backdoor" if flagged else "clean", list(flagged), rows, {}, 3.0, 255.0, 100.0, n_classes=12,
                     clean_images=300, held_out_images=60, median_l1=40.0, mad_l1=5.0)
    views = {t: TriggerView(t, np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), None, None, None,
                            t in flagged) for t, _ in anomaly[:2]}
    return ScanDone(res, views, "m.h5", "valid.h5")


def test_a_scan_without_evidence_says_so_plainly(qtbot):
    from guiapp.views.scan import ScanView

    v = ScanView()
    qtbot.addWidget(v)
    assert not v.use_btn.isEnabled() and not v.save_btn.isEnabled()  # nothing to use or save yet
    v.set_running(True)
    assert "Scanning" in v.verdict.text() and not v.scan_btn.isEnabled()
    v.set_running(False)  # the scan failed (its error has its dialog): the tab is as before
    assert "Is there a backdoor?" in v.verdict.text() and v.scan_btn.isEnabled()
    v.show_scan(_done([], [(4, 1.3), (7, 0.2), (1, -0.9)]))
    text = v.verdict.text()
    assert "No evidence of a backdoor" in text and "label, 4," in text and "1.30" in text
    assert not v.use_btn.isEnabled() and v.save_btn.isEnabled()
    assert all(b.color().name() != "#c62828" for b in v.bars.opts["brushes"])
    v.show_scan(_done([4], [(4, 3.1), (7, 0.2), (1, -0.9)]))
    assert "Backdoor suspected" in v.verdict.text() and v.use_btn.isEnabled()
    assert v.bars.opts["brushes"][0].color().name() == "#c62828"
    used = []
    v.useAsPoisoned.connect(used.append)
    v.use_btn.click()
    assert used == [4]


@pytest.mark.slow
def test_repair_without_a_scan_scans_first_and_evaluates_a_labelled_stand_in(qtbot, win, tab_badnet):
    from tests.scantab_helpers import TARGET

    open_badnet(qtbot, win, tab_badnet)  # clean data only: no scan ran, no poisoned data
    rv = win.repair_view
    for key in ("unlearn", "strip"):
        rv.boxes[key].setChecked(False)
    with qtbot.waitSignal(win.repairer.repairFinished, timeout=LONG) as blocker:
        qtbot.mouseClick(rv.run_btn, Qt.LeftButton)
    res = blocker.args[0]
    assert res.scan is not None and res.scan["flagged"][0] == TARGET  # the engine scanned first
    assert res.triggers[0].label == TARGET
    assert "the repair ran the scan first" in rv.sources.text()
    assert "standin poisoned" in rv.sources.text() and "not real" in rv.sources.text()
