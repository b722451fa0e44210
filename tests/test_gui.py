"""The real main window, driven offscreen with pytest-qt."""

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.models import load_model

pytestmark = pytest.mark.slow
LONG = 240_000


@pytest.fixture
def win(qtbot, tmp_path):
    from guiapp.mainwindow import MainWindow

    w = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    w.confirm_unsafe = lambda msg: False
    qtbot.addWidget(w)
    w.show()
    yield w
    w.wait_idle()


def open_lab(qtbot, w, lab):
    with qtbot.waitSignal(w.modelLoaded, timeout=LONG):
        w.open_model(lab.model)
    for role, p in lab.files.items():
        w.open_data(p, role=role)


def test_demo_sweep_pick_and_save(qtbot, win, tmp_path):
    with qtbot.waitSignal(win.demoReady, timeout=LONG):
        win.open_demo()
    assert set(win.datasets) == {"clean_valid", "poisoned_valid", "clean_test", "poisoned_test"}
    with qtbot.waitSignal(win.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    res = blocker.args[0]
    n = res.steps + 1
    for plot in win.curves.plots.values():  # one point per step on every curve
        for item in (plot.acc, plot.asr):
            x, y = item.getData()
            assert len(x) == n and len(y) == n
    x, y = win.curves.plots["valid"].acc.getData()
    assert y[0] == pytest.approx(res.records[0].clean_valid_acc)
    assert win.checkpoints.rowCount() == 3
    # pick a step with the cursor and the keyboard
    k = res.checkpoint_step(4.0)
    win.set_step(k)
    assert win.step == k and f"Step {k}" in win.step_panel.label.text()
    win.tabs.setCurrentIndex(0)
    qtbot.keyClick(win.curves, Qt.Key_Right)
    assert win.step == k + 1
    qtbot.keyClick(win.curves, Qt.Key_Left)
    assert win.step == k
    # save B' and G at that step, then reload them with the engine
    bp_path, g_path = tmp_path / "bprime.h5", tmp_path / "goodnet.keras"
    with qtbot.waitSignal(win.saved, timeout=LONG):
        win.save_model("bprime", k, bp_path)
    with qtbot.waitSignal(win.saved, timeout=LONG):
        win.save_model("goodnet", k, g_path)
    bp = load_model(bp_path)
    kernel, bias = bp.model.get_layer("conv_3").get_weights()
    pruned = res.pruned_channels(k)
    assert np.all(kernel[..., pruned] == 0) and np.all(bias[pruned] == 0)
    g = load_model(g_path)
    assert g.is_goodnet and g.n_classes == res.n_classes + 1
    ds = win.datasets["poisoned_test"]
    x = ds.read(0, 200)
    got = np.argmax(g.model.predict(x, verbose=0), axis=1)
    assert np.array_equal(got, res.goodnet_labels("poisoned_test", k)[:200])
    # the other tabs show the picked step when they are opened
    win.tabs.setCurrentIndex(3)
    assert win.results.table.rowCount() == 4
    win.tabs.setCurrentIndex(2)
    assert win.images.model.rowCount() > 0
    labels = dict(win.images.model.data(win.images.model.index(0), win.images.model.LabelsRole))
    assert set(labels) == {"true", "B", f"B'@{k}", f"G@{k}"}


def test_drop_a_dataset_and_a_model_on_the_window(qtbot, win, small_lab):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(small_lab.files["poisoned_test"])),
                  QUrl.fromLocalFile(str(small_lab.files["clean_valid"]))])
    ev = QDropEvent(QPointF(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    win.dropEvent(ev)
    assert win.datasets["poisoned_test"].path == small_lab.files["poisoned_test"]
    assert win.datasets["clean_valid"].path == small_lab.files["clean_valid"]
    assert "all labelled 3" in win.slots["poisoned_test"].info.text()
    mime2 = QMimeData()
    mime2.setUrls([QUrl.fromLocalFile(str(small_lab.model))])
    with qtbot.waitSignal(win.modelLoaded, timeout=LONG):
        win.dropEvent(QDropEvent(QPointF(5, 5), Qt.CopyAction, mime2, Qt.LeftButton, Qt.NoModifier))
    assert win.model.path == small_lab.model
    # a drop on one slot puts the file there, whatever its name says
    mime3 = QMimeData()
    mime3.setUrls([QUrl.fromLocalFile(str(small_lab.files["clean_test"]))])
    win.slots["clean_valid"].dropEvent(QDropEvent(QPointF(5, 5), Qt.CopyAction, mime3, Qt.LeftButton, Qt.NoModifier))
    assert win.datasets["clean_valid"].path == small_lab.files["clean_test"]


def test_cancel_mid_sweep_then_a_new_sweep_works(qtbot, win, small_lab, tmp_path):
    open_lab(qtbot, win, small_lab)
    from engine import cache

    cache.clear()  # a cold sweep, long enough to cancel

    def cancel_at_step(rec):
        if getattr(rec, "step", None) == 3:
            win.cancel()

    win.sweepStarted.connect(lambda: win.job.event.connect(cancel_at_step))
    with qtbot.waitSignal(win.sweepCancelled, timeout=LONG):
        win.start_sweep()
    assert "cancel" in win.progress.format()
    assert not win.step_panel.save_bp.isEnabled()
    win.sweepStarted.disconnect()
    with qtbot.waitSignal(win.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    assert blocker.args[0].complete and len(blocker.args[0].records) == 61


def test_a_broken_file_gives_a_dialog_and_the_window_stays_usable(qtbot, win, small_lab, tmp_path):
    bad = tmp_path / "bd_valid.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # truncated HDF5
    with qtbot.waitSignal(win.errorShown, timeout=5000) as blocker:
        win.open_files([bad])
    assert str(bad) in blocker.args[0]
    assert win._error_box.isVisible() and str(bad) in win._error_box.text()
    win._error_box.close()
    open_lab(qtbot, win, small_lab)
    with qtbot.waitSignal(win.sweepFinished, timeout=LONG):
        win.start_sweep()


def test_worker_exception_reaches_a_dialog_and_next_sweep_works(qtbot, win, small_lab, monkeypatch):
    open_lab(qtbot, win, small_lab)
    import engine.sweep as sweep_mod

    real = sweep_mod.Sweep._fast_steps

    def boom(self, *a, **k):
        raise RuntimeError("simulated failure in the worker")

    monkeypatch.setattr(sweep_mod.Sweep, "_fast_steps", boom)
    from engine import cache

    cache.clear()
    with qtbot.waitSignal(win.errorShown, timeout=LONG) as blocker:
        win.start_sweep()
    assert "simulated failure" in blocker.args[0]
    monkeypatch.setattr(sweep_mod.Sweep, "_fast_steps", real)
    with qtbot.waitSignal(win.sweepFinished, timeout=LONG):
        win.start_sweep()


def test_recent_files_and_geometry_are_remembered(qtbot, tmp_path, small_lab):
    from guiapp.mainwindow import MainWindow

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    w.resize(640, 470)
    size = (w.size().width(), w.size().height())
    assert size[1] == 470
    w.open_data(small_lab.files["clean_test"])
    w.close()
    w2 = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(w2)
    assert w2.size().height() == size[1]  # (offscreen screens clamp the width)
    assert str(Path(small_lab.files["clean_test"]).resolve()) in w2.recent_files()


def test_fine_tune_from_the_picked_step_streams_dashed_curves(qtbot, win, tmp_path):
    with qtbot.waitSignal(win.demoReady, timeout=LONG):
        win.open_demo()
    with qtbot.waitSignal(win.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    k = blocker.args[0].checkpoint_step(10.0)
    win.set_step(k)
    assert win.step_panel.finetune.isEnabled()
    with qtbot.waitSignal(win.fineTuneFinished, timeout=LONG) as ft:
        win.fine_tune(k, epochs=2, ask=False)
    res = ft.args[0]
    x, y = win.curves.plots["valid"].ft_acc.getData()
    assert len(x) == 3 and win.curves.plots["valid"].ft_acc.isVisible()  # epoch 0 (pruned) + 2 epochs
    win.tabs.setCurrentIndex(3)
    assert win.results.table.rowCount() == 5 and win.results.table.item(4, 0).text().startswith("fine-pruned")
    with qtbot.waitSignal(win.saved, timeout=LONG):
        win.save_fine_tuned("bprime", path=tmp_path / "ft.h5")
    k3, b3 = load_model(tmp_path / "ft.h5").model.get_layer("conv_3").get_weights()
    assert np.all(k3[..., res.pruned] == 0) and np.all(b3[res.pruned] == 0)
