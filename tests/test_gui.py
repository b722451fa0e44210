"""The real main window, driven offscreen with pytest-qt: a few end-to-end stories. The rules
underneath have their own fast tests (test_session, test_worker, test_views)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.models.loading import load_model

pytestmark = pytest.mark.slow
LONG = 240_000


def open_lab(qtbot, w, lab):
    with qtbot.waitSignal(w.ctl.modelOpened, timeout=LONG):
        w.ctl.open_model(lab.model)
    for role, p in lab.files.items():
        with qtbot.waitSignal(w.ctl.datasetChanged, timeout=LONG):
            w.ctl.open_data(p, role=role)


def drop(target, *paths):
    mime = QMimeData()  # kept alive while the event is handled: the event holds a pointer to it
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    ev = QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    target.dropEvent(ev)
    return mime


def test_demo_sweep_pick_save_and_export(qtbot, win, tmp_path):
    with qtbot.waitSignal(win.ctl.inputsReady, timeout=LONG):
        win.ctl.open_demo()
    assert set(win.session.datasets) == {"clean_valid", "poisoned_valid", "clean_test", "poisoned_test"}
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG) as blocker:
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
    with qtbot.waitSignal(win.ctl.saved, timeout=LONG):
        win.save_model("bprime", k, bp_path)
    with qtbot.waitSignal(win.ctl.saved, timeout=LONG):
        win.save_model("goodnet", k, g_path)
    kernel, bias = load_model(bp_path).model.get_layer("conv_3").get_weights()
    pruned = res.pruned_channels(k)
    assert np.all(kernel[..., pruned] == 0) and np.all(bias[pruned] == 0)
    g = load_model(g_path)
    assert g.is_goodnet and g.n_classes == res.n_classes + 1
    x = win.session.datasets["poisoned_test"].read(0, 200)
    got = np.argmax(g.model.predict(x, verbose=0), axis=1)
    assert np.array_equal(got, res.goodnet_labels("poisoned_test", k)[:200])
    # the export writes the CLI's file set, with the same metrics
    out = tmp_path / "export"
    with qtbot.waitSignal(win.ctl.saved, timeout=LONG):
        win.export_report(out)
    assert {p.name for p in out.iterdir()} == {
        "metrics.csv", "summary.json", "curves_valid.png", "curves_test.png", "bprime_bars.png",
        "goodnet_bars.png", "B_prime_2.h5", "B_prime_4.h5", "B_prime_10.h5", "G_2.keras", "G_4.keras", "G_10.keras",
        "G_2_eval.py", "G_4_eval.py", "G_10_eval.py", "backdoor_map.png"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["picked_step"] == k and [c["step"] for c in summary["checkpoints"]] == \
        [c.step for c in res.checkpoints]
    # the other tabs show the picked step when they are opened
    win.tabs.setCurrentIndex(3)
    assert win.results.table.rowCount() == 4
    win.tabs.setCurrentIndex(2)
    model = win.images.model
    assert model.rowCount() > 0
    labels = dict(model.data(model.index(0), model.LabelsRole))
    assert set(labels) == {"true", "B", f"B'@{k}", f"G@{k}"}
    role = win.images.dataset.currentData()
    first = int(model.image_index(0))
    assert labels[f"G@{k}"] == res.goodnet_labels(role, k)[first]
    qtbot.waitUntil(lambda: model.data(model.index(0), Qt.DecorationRole) is not None, timeout=10000)
    assert np.array_equal(model.pixels[first], win.session.datasets[role].image_uint8(first))


def test_a_slot_cannot_change_under_a_running_sweep(qtbot, win, small_lab, tmp_path):
    """Clearing or replacing a slot mid-sweep: refused with a message, the sweep's numbers are
    those of the data it started with, and the slot can change once it has ended."""
    from engine.io import cache
    from engine.io.datasets import LabDataset
    from engine.pruning.sweep import Sweep

    open_lab(qtbot, win, small_lab)
    cache.clear()  # cold: long enough to act during it
    messages = []
    win.errorShown.connect(messages.append)
    tried = []

    def meddle(rec):
        if rec.step == 2 and not tried:
            tried.append(rec.step)
            win.ctl.clear_data("clean_valid")
            win.ctl.open_data(small_lab.files["clean_test"], role="poisoned_test")

    win.ctl.stepRecord.connect(meddle)
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    assert tried and any("sweep is reading the clean validation data" in m for m in messages), messages
    assert any("poisoned test" in m for m in messages), messages
    res = blocker.args[0]
    assert win.session.datasets["clean_valid"].path == small_lab.files["clean_valid"]
    lm = load_model(small_lab.model)
    ref = Sweep(lm, {r: LabDataset(p) for r, p in small_lab.files.items()}, use_cache=False).run()
    assert [r.csv_row() for r in res.records] == [r.csv_row() for r in ref.records]
    with qtbot.waitSignal(win.ctl.datasetChanged, timeout=LONG):
        win.ctl.clear_data("clean_valid")
    assert "clean_valid" not in win.session.datasets


def test_pause_cancel_then_a_new_sweep_works(qtbot, win, small_lab):
    open_lab(qtbot, win, small_lab)
    from engine.io import cache

    cache.clear()  # a cold sweep, long enough to pause and cancel
    steps = []

    def at_step(rec):
        steps.append(rec.step)
        if rec.step == 2 and len(steps) == 3:
            win.ctl.toggle_pause()

    win.ctl.stepRecord.connect(at_step)
    with qtbot.waitSignal(win.ctl.sweepCancelled, timeout=LONG):
        win.start_sweep()
        qtbot.waitSignal(win.ctl.pausedChanged, timeout=LONG).wait()
        assert win.jobbar.pause_btn.text() == "Resume" and "paused" in win.jobbar.progress.format()
        n = len(steps)
        qtbot.wait(300)
        assert len(steps) == n  # nothing moves while paused
        win.ctl.cancel()
    win.ctl.stepRecord.disconnect(at_step)
    assert "cancelled" in win.jobbar.progress.format()
    assert not win.step_panel.save_bp.isEnabled()
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    assert blocker.args[0].complete and len(blocker.args[0].records) == 61


def test_errors_give_a_dialog_and_the_window_stays_usable(qtbot, win, small_lab, tmp_path, monkeypatch):
    bad = tmp_path / "bd_valid.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # truncated HDF5
    with qtbot.waitSignal(win.errorShown, timeout=10000) as blocker:
        win.ctl.open_files([bad])
    assert str(bad) in blocker.args[0]
    assert win._error_box.isVisible() and str(bad) in win._error_box.text()
    win._error_box.close()
    open_lab(qtbot, win, small_lab)
    import engine.pruning.sweep as sweep_mod

    real = sweep_mod.Sweep._fast_steps

    def boom(self, *a, **k):
        raise RuntimeError("simulated failure in the worker")

    monkeypatch.setattr(sweep_mod.Sweep, "_fast_steps", boom)
    from engine.io import cache

    cache.clear()
    with qtbot.waitSignal(win.errorShown, timeout=LONG) as blocker:
        win.start_sweep()
    assert "internal error (RuntimeError: simulated failure in the worker)" in blocker.args[0]
    monkeypatch.setattr(sweep_mod.Sweep, "_fast_steps", real)
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG):
        win.start_sweep()


def test_drops_route_files_by_content_and_are_remembered(qtbot, tmp_path, small_lab):
    from guiapp.mainwindow import MainWindow

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    w.resize(640, 470)
    height = w.size().height()
    with qtbot.waitSignals([w.ctl.datasetChanged] * 2, timeout=LONG):
        drop(w, small_lab.files["poisoned_test"], small_lab.files["clean_valid"])
    assert w.session.datasets["poisoned_test"].path == small_lab.files["poisoned_test"]
    assert w.session.datasets["clean_valid"].path == small_lab.files["clean_valid"]
    assert "all labelled 3" in w.slots["poisoned_test"].info.text()
    with qtbot.waitSignal(w.ctl.modelOpened, timeout=LONG):
        drop(w, small_lab.model)
    assert w.session.model.path == small_lab.model
    # a drop on one slot puts the file there, whatever its name says
    with qtbot.waitSignal(w.ctl.datasetChanged, timeout=LONG):
        drop(w.slots["clean_valid"], small_lab.files["clean_test"])
    assert w.session.datasets["clean_valid"].path == small_lab.files["clean_test"]
    w.ctl.wait_idle()
    w.close()
    w2 = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(w2)
    assert w2.size().height() == height  # (offscreen screens clamp the width)
    assert str(Path(small_lab.files["clean_test"]).resolve()) in w2.recent.files()


def test_fine_tune_from_the_picked_step_streams_dashed_curves(qtbot, win, small_lab, tmp_path):
    """On the small lab: the window's fine-tuning story does not depend on the model (the demo's
    window story is test_demo_sweep_pick_save_and_export; fine-pruning lowering a real BadNet's
    ASR is test_finetune's)."""
    open_lab(qtbot, win, small_lab)
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    k = blocker.args[0].checkpoint_step(10.0)
    win.set_step(k)
    assert win.step_panel.finetune.isEnabled()
    with qtbot.waitSignal(win.ctl.fineTuneFinished, timeout=LONG) as ft:
        win.fine_tune(k, epochs=2, ask=False)
    res = ft.args[0]
    x, y = win.curves.plots["valid"].ft_acc.getData()
    assert len(x) == 3 and win.curves.plots["valid"].ft_acc.isVisible()  # epoch 0 (pruned) + 2 epochs
    win.tabs.setCurrentIndex(3)
    assert win.results.table.rowCount() == 5 and win.results.table.item(4, 0).text().startswith("fine-pruned")
    with qtbot.waitSignal(win.ctl.saved, timeout=LONG):
        win.save_fine_tuned("bprime", path=tmp_path / "ft.h5")
    k3, b3 = load_model(tmp_path / "ft.h5").model.get_layer("conv_3").get_weights()
    assert np.all(k3[..., res.pruned] == 0) and np.all(b3[res.pruned] == 0)


def test_dropped_photos_get_verdicts_and_a_single_photo_opens_large(qtbot, win, tmp_path):
    """Images dropped on the window: an extra "Images" set with B's, B′'s and G's answers at the
    picked step (as the engine computes them); one image opens large with G's verdict."""
    from engine.io.datasets import LabDataset
    from engine.pruning.rules import verdicts
    from tests.helpers import write_images

    with qtbot.waitSignal(win.ctl.inputsReady, timeout=LONG):
        win.ctl.open_demo()
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    res = blocker.args[0]
    k = res.checkpoint_step(10.0)
    win.set_step(k)
    poisoned = win.session.datasets["poisoned_test"]
    x = poisoned.read(0, 12)
    names = [f"sun_{i}_label=0.png" for i in range(12)]
    folder = tmp_path / "photos"
    write_images(folder, x.astype("uint8"), names)
    with qtbot.waitSignal(win.ctl.photoVerdicts, timeout=LONG) as got:
        drop(win, folder)
    v = got.args[0]
    assert win.tabs.currentWidget() is win.images and win.images.dataset.currentData() == "photos"
    assert set(v.labels) == {"B", f"B'@{k}", f"G@{k}"} and v.flag == res.n_classes
    ds = win.session.photos
    want = verdicts(win.session.model.model, res.layer, res.pruned_channels(k), ds, res.n_classes)
    assert np.array_equal(v.labels[f"G@{k}"], want["G"]) and np.array_equal(v.labels["B"], want["B"])
    # the same images as HDF5 rows: the sweep's own answers for them
    assert np.array_equal(v.labels[f"B'@{k}"], res.predictions["poisoned_test"][k][:12])
    tile = dict(win.images.model.data(win.images.model.index(0), win.images.model.LabelsRole))
    assert tile["true"] == 0 and tile[f"G@{k}"] == int(want["G"][0])
    # one photo: the large view opens by itself, with G's verdict
    single = tmp_path / "one" / names[3]
    write_images(single.parent, x[3:4].astype("uint8"), [names[3]])
    with qtbot.waitSignal(win.ctl.photoVerdicts, timeout=LONG):
        drop(win, single)
    qtbot.waitUntil(lambda: win.images._dialog is not None and win.images._dialog.isVisible(), timeout=20000)
    verdict = win.images._dialog.findChild(type(win.images.page_label), "verdict").text()
    g3 = int(want["G"][3])
    assert (f"G: {g3} — backdoor suspected" if g3 == res.n_classes else f"G: class {g3}") in verdict
    assert win.images._dialog.windowTitle() == names[3]
    assert isinstance(poisoned, LabDataset)


def test_several_criteria_overlaid_compared_and_picked(qtbot, win, small_lab, tmp_path):
    """Criteria ticked in the panel: one exact sweep each, overlaid curves, the comparison table,
    and Save B′ acts on the criterion picked (here CLP, by its table row)."""
    open_lab(qtbot, win, small_lab)
    for name, box in win.ranking_panel.boxes.items():
        box.setChecked(name in ("activation", "l1", "clp", "random"))
    win.ranking_panel.seeds.setValue(2)
    assert win.ranking_panel.boxes["difference"].isEnabled() == ("poisoned_valid" in win.session.datasets)
    with qtbot.waitSignal(win.ctl.rankingsFinished, timeout=LONG) as got:
        win.start_sweep()
    done = got.args[0]
    assert list(done.results) == ["activation", "l1", "clp", "random-1", "random-2"]
    qtbot.waitUntil(lambda: win.ctl.idle, timeout=LONG)
    win.curves._refresh()
    plot = win.curves.plots["valid"]
    for name, res in done.results.items():  # one overlaid pair per criterion, one point per step
        x, y = plot.overlay[name][0].getData()
        assert len(x) == res.steps + 1 and y[0] == pytest.approx(res.records[0].clean_valid_acc)
    assert {"clean_valid_acc", "asr_valid"} <= set(plot.bands)  # the random band
    table = win.rankings.table
    titles = [table.item(i, 0).text() for i in range(table.rowCount())]
    assert titles[:3] == [done.rankings[n].title for n in ("activation", "l1", "clp")]
    assert "random (mean of 2 seeds)" in titles
    assert win.session.result is done.results["activation"]
    # pick CLP by its row: the cursor, the checkpoints and Save B′ now act on CLP's sweep
    with qtbot.waitSignal(win.ctl.rankingPicked, timeout=5000):
        win.rankings._clicked(titles.index(done.rankings["clp"].title), 0)
    clp = done.results["clp"]
    assert win.session.result is clp and win.curves.records == clp.records
    k = 7
    win.set_step(k)
    with qtbot.waitSignal(win.ctl.saved, timeout=LONG):
        win.save_model("bprime", k, tmp_path / "clp7.h5")
    kernel, _ = load_model(tmp_path / "clp7.h5").model.get_layer("conv_3").get_weights()
    zero = [c for c in range(kernel.shape[-1]) if not kernel[..., c].any()]
    assert zero == sorted(done.rankings["clp"].order[:k])
    # the trade-off tab: a curve per criterion; picking L1's step 5 there picks it everywhere
    assert set(win.tradeoff.curves) == set(done.results)
    x, y = win.tradeoff.curves["l1"].getData()
    assert x[0] == pytest.approx(done.results["l1"].records[0].clean_valid_acc)
    win.tabs.setCurrentWidget(win.tradeoff)
    with qtbot.waitSignal(win.stepChanged, timeout=5000):
        win.tradeoff.pick("l1", 5)
    assert win.session.result is done.results["l1"] and win.session.ranking == "l1" and win.step == 5
    assert win.curves.records == done.results["l1"].records and win.curves.step == 5
    assert "step 5" in win.step_panel.label.text().lower() and "l1" in win.tradeoff.readout.text()


def test_maps_on_thumbnails_large_view_mean_and_channel(qtbot, win):
    """Grad-CAM over the page's thumbnails equals the engine's maps for those images; the large
    view shows B's and B′'s maps; the mean maps and a clicked channel's maps arrive."""
    from engine.analysis.maps import MapMaker

    with qtbot.waitSignal(win.ctl.inputsReady, timeout=LONG):
        win.ctl.open_demo()
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    res = blocker.args[0]
    win.set_step(res.checkpoint_step(10.0))
    win.tabs.setCurrentWidget(win.images)
    win.images.dataset.setCurrentIndex(win.images.dataset.findData("poisoned_test"))
    model = win.images.model
    qtbot.waitUntil(lambda: len(model.pixels) >= 10, timeout=20000)
    with qtbot.waitSignal(win.ctl.mapsRead, timeout=LONG) as got:
        win.images.map.setCurrentIndex(win.images.map.findData("gradcam"))
    page = got.args[0]
    idx = list(page.indices[:4])
    x = np.stack([model.pixels[i] for i in idx]).astype("float32")
    want, _ = MapMaker(win.session.model.model, res.layer, "gradcam").explain(x)
    assert np.allclose(page.maps[:4], want, atol=1e-5)
    assert model.maps[idx[0]].shape == x.shape[1:3] and model.maps[idx[0]].max() == pytest.approx(1.0)
    with qtbot.waitSignal(win.ctl.imageMaps, timeout=LONG) as got:
        win.images._open(model.index(0))
    assert list(got.args[0].maps)[0] == "B" and len(got.args[0].maps) == 2
    assert len(win.images._dialog.findChildren(type(win.images), "mapPanel")) == 0  # panels are plain widgets
    with qtbot.waitSignal(win.ctl.meanMaps, timeout=LONG) as got:
        win.images.mean_btn.click()
    mm = got.args[0]
    assert mm.clean.n == win.session.datasets["clean_valid"].n and mm.poisoned.n == win.session.datasets["poisoned_valid"].n
    win.activations.picked = 48
    with qtbot.waitSignal(win.ctl.channelMaps, timeout=LONG) as got:
        win.activations.channelMapsWanted.emit()
    assert set(got.args[0].by_role) == {"clean_valid", "poisoned_valid"}
    assert "Channel 48 of conv_3" in win.activations.map_title.text()


def test_model_panel_shows_and_changes_the_input_scale(qtbot, win, small_lab, tmp_path):
    """The /255 twin of the small lab's network: 'auto' detects it when the sweep starts; the
    user's pick applies to the model at once."""
    from tests.helpers import unit_scale_twin

    unit = unit_scale_twin(small_lab.model, tmp_path / "unit_net.keras")
    with qtbot.waitSignal(win.ctl.modelOpened, timeout=LONG):
        win.ctl.open_model(unit)
    with qtbot.waitSignal(win.ctl.datasetChanged, timeout=LONG):
        win.ctl.open_data(small_lab.files["clean_valid"], role="clean_valid")
    panel = win.model_panel
    assert panel.scale_choice() == "auto" and "auto" in panel.scale_state.text()
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG):
        win.start_sweep()
    assert panel.scale_state.text() == "input: pixels / 255 (detected)"
    assert win.session.model.input_scale == 1.0
    assert win.session.result.records[0].clean_valid_acc > 80
    panel.scale.setCurrentIndex(panel.scale.findData("255"))
    assert panel.scale_state.text() == "input: raw pixels 0–255 (given)"
    assert win.session.model.input_scale == 255.0


def labelled_folder(folder, labels, rng, size=(55, 47, 3)):
    from tests.helpers import random_images, write_images

    return write_images(folder, random_images(rng, len(labels), size).astype("uint8"),
                        [f"img{i}_label={y}.png" for i, y in enumerate(labels)])


def test_several_folders_dropped_at_once_go_to_their_slots(qtbot, win, tmp_path):
    """Folders route by name like files (``bd_test`` → poisoned test), a name that says only
    "valid" is told apart by its labels (one target → poisoned), and the window asks only about
    the folder whose name says nothing. The clean slot warns that 20 images make coarse
    checkpoints."""
    rng = np.random.default_rng(3)
    root = tmp_path / "challenge"
    labelled_folder(root / "clean_valid", [i % 7 for i in range(20)], rng)
    labelled_folder(root / "valid", [0] * 12, rng)
    labelled_folder(root / "bd_test", [0] * 10, rng)
    labelled_folder(root / "holiday", [i % 5 for i in range(8)], rng)
    asked = []
    win.ask_role = lambda p: (asked.append(p.name), "clean_test")[1]
    with qtbot.waitSignal(win.ctl.inputsReady, timeout=LONG):
        drop(win, *(root / n for n in ("clean_valid", "valid", "bd_test", "holiday")))
    assert asked == ["holiday"]
    got = {role: ds.path.name for role, ds in win.session.datasets.items()}
    assert got == {"clean_valid": "clean_valid", "poisoned_valid": "valid", "poisoned_test": "bd_test",
                   "clean_test": "holiday"}
    assert "all labelled 0" in win.slots["poisoned_valid"].info.text()
    warn = win.slots["clean_valid"].warn
    assert warn.isVisible() and "only 20 validation images" in warn.text() and "coarse" in warn.text()
    assert not win.slots["clean_test"].warn.isVisible()


def test_a_poisoned_set_on_a_clean_slot_warns_in_the_slot_and_errors_speak_the_windows_words(
        qtbot, win, small_lab, tmp_path):
    with qtbot.waitSignal(win.ctl.datasetChanged, timeout=LONG):
        drop(win.slots["clean_valid"], small_lab.files["poisoned_valid"])
    slot = win.slots["clean_valid"]
    assert slot.warn.isVisible() and "looks like a poisoned set" in slot.warn.text()
    assert slot.info.text().startswith("⚠")
    qtbot.wait(200)
    win.statusBar().showMessage("something else")  # the status bar moves on; the slot keeps saying it
    assert slot.warn.isVisible()
    with qtbot.waitSignal(win.ctl.datasetChanged, timeout=LONG):
        drop(slot, small_lab.files["clean_valid"])
    assert not slot.warn.isVisible() and slot.info.text().startswith("✓")
    # images of another size than the model's input: the dialog names the checkbox, not --resize
    with qtbot.waitSignal(win.ctl.modelOpened, timeout=LONG):
        win.ctl.open_model(small_lab.model)
    labelled_folder(tmp_path / "clean_test", [1, 2, 3], np.random.default_rng(1), size=(64, 64, 3))
    with qtbot.waitSignal(win.errorShown, timeout=LONG) as blocker:
        win.ctl.open_data(tmp_path / "clean_test", role="clean_test")
    msg = blocker.args[0]
    assert "Resize images to the model's input" in msg and "--resize" not in msg
    assert win._error_box.text() == msg


def test_fine_tuning_on_a_handful_of_images_asks_first(qtbot, win, small_lab, tmp_path):
    rng = np.random.default_rng(4)
    with qtbot.waitSignal(win.ctl.modelOpened, timeout=LONG):
        win.ctl.open_model(small_lab.model)
    labelled_folder(tmp_path / "clean_valid", [i % 12 for i in range(30)], rng)
    with qtbot.waitSignal(win.ctl.datasetChanged, timeout=LONG):
        win.ctl.open_data(tmp_path / "clean_valid", role="clean_valid")
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG):
        win.start_sweep()
    asked = []
    win.confirm = lambda title, msg: (asked.append(msg), False)[1]
    started = []
    win.ctl.fineTuneEpochs.connect(lambda *a: started.append(a))
    win.fine_tune(3, epochs=2, ask=False)
    qtbot.wait(100)
    assert len(asked) == 1 and "only 24 clean validation images" in asked[0] and not started
