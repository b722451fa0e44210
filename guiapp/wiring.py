"""The window's signal wiring: which panel or view signal calls which command, and which
controller signal updates which view. Kept apart from :mod:`guiapp.mainwindow` so the window's
file says what it holds and asks, and each feature's connections read in one place.

Connections are made in a fixed order (Qt calls the slots of one signal in the order they were
connected): the inputs, the sweep and its views, the maps, then the Scan and Repair tabs."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from guiapp.wording import window_words


def wire(win) -> None:
    """Every connection of the main window ``win`` (built, menus not needed)."""
    _wire_inputs(win)
    _wire_jobs(win)
    _wire_sweep(win)
    _wire_images(win)
    wire_scan(win)
    wire_repair(win)
    c = win.ctl
    c.busyChanged.connect(lambda kind: kind is not None or (win.scan_view.set_running(False), win.repair_view.set_running(False)))
    c.fineTuneFinished.connect(lambda ft: (win.results.set_fine_tuned(win.session.fine_tuned),
                                           win.tradeoff.set_points("fine-pruned",
                                                                   fine_tuned_points(win.session.fine_tuned))))


def _wire_inputs(win) -> None:
    """The data slots, the model panel and the controller's answers to opening files."""
    c = win.ctl
    win.left.slotDropped.connect(lambda r, p: c.open_data(p, role=r))  # every slot's, named sets' too
    win.left.slotBrowse.connect(lambda r: win.open_data(r))
    win.left.slotBrowseFolder.connect(lambda r: win.open_data(r, folder=True))
    win.left.slotCleared.connect(c.clear_data)
    win.left.addSet.connect(lambda base: add_poisoned_set(win, base))
    win.model_panel.showLayers.connect(win.show_layers)
    win.model_panel.scaleChanged.connect(c.set_input_scale)
    c.inputScale.connect(win.model_panel.show_scale)
    for sig in (win.model_panel.layerChanged, win.model_panel.thresholdsChanged):
        sig.connect(lambda _: win._invalidate())


def _wire_jobs(win) -> None:
    """The checkpoints and step panel's commands, the job bar, status-bar messages and errors."""
    c, status = win.ctl, win.statusBar()
    win.checkpoints.saveRequested.connect(win.save_model)
    win.checkpoints.rowPicked.connect(win.set_step)
    win.step_panel.saveRequested.connect(win.save_model)
    win.step_panel.fineTuneRequested.connect(win.fine_tune)
    win.curves.stepPicked.connect(win._step_picked)
    win.tabs.currentChanged.connect(win._refresh_tab)
    win.results.saveFineTuned.connect(lambda which: win.save_fine_tuned(which))
    win.images.pageWanted.connect(c.read_page)
    win.jobbar.pause_btn.clicked.connect(c.toggle_pause)
    win.jobbar.cancel_btn.clicked.connect(c.cancel)
    c.progress.connect(win.jobbar.show_progress)
    c.busyChanged.connect(win.jobbar.set_busy)
    c.pausedChanged.connect(win.jobbar.set_paused)
    c.pausedChanged.connect(lambda p: status.showMessage("Sweep paused" if p else "Sweep resumed"))
    c.message.connect(lambda m: status.showMessage(m, 10000))
    c.warning.connect(lambda m: (win.warnings.append(window_words(m)),
                                 status.showMessage(f"Warning: {window_words(m)}", 15000)))
    c.error.connect(win.show_error)
    c.unsafeModel.connect(lambda p, w, m: c.open_model(p, w, allow_unsafe=True) if win.confirm_unsafe(m)
                          else win.show_error(m))
    c.fileOpened.connect(win.recent.remember)
    c.modelOpened.connect(win._model_opened)
    c.datasetChanged.connect(win._dataset_changed)


def _wire_sweep(win) -> None:
    """The sweep's records to the curves, several criteria's results to their views, a picked
    criterion (on the curves, the rankings table or the trade-off plot) back to the controller."""
    c, status = win.ctl, win.statusBar()
    c.sweepStarted.connect(win._sweep_started)
    c.stepRecord.connect(win.curves.add_record)
    c.rankingRecord.connect(win.curves.add_ranking_record)
    c.rankingsFinished.connect(lambda done: (win.rankings.show_table(done), win.activations.set_rankings(done),
                                             win.curves.mark_points(done.own_points()),
                                             win.tradeoff.set_sweeps(done.results)))
    win.tradeoff.pointPicked.connect(win.pick_point)
    for view in (win.curves, win.rankings):
        view.rankingPicked.connect(c.pick_ranking)
    c.rankingPicked.connect(lambda name, res, step: (win._show_result(res, step), win.rankings.select(name)))
    c.sweepFinished.connect(win._sweep_finished)
    c.sweepCancelled.connect(lambda: status.showMessage("Sweep cancelled; nothing was written", 8000))


def _wire_images(win) -> None:
    """The image browser's pages, maps and verdicts; the activations view's channel maps."""
    c, images = win.ctl, win.images
    c.pageRead.connect(images.show_page)
    images.verdictsWanted.connect(c.photo_verdicts)
    for want, slot in ((images.mapsWanted, c.page_maps), (images.imageMapsWanted, c.image_maps),
                       (images.meanMapsWanted, c.mean_maps), (win.activations.channelMapsWanted, c.channel_maps),
                       (c.mapsRead, images.show_maps), (c.imageMaps, images.show_image_maps),
                       (c.meanMaps, images.show_mean_maps), (c.channelMaps, win.activations.show_channel_maps)):
        want.connect(slot)
    c.photoVerdicts.connect(images.verdicts_arrived)
    c.photosOpened.connect(lambda _: (win.tabs.setCurrentWidget(images), images.show_photos(win.session)))
    c.fineTuneEpochs.connect(win.curves.set_fine_tune)


def wire_scan(win) -> None:
    """The Scan tab: start, use the reversed trigger as poisoned data, save; a scan of another
    model is forgotten when a model opens."""
    sc, sv, status = win.scanner, win.scan_view, win.statusBar()
    sv.scanRequested.connect(lambda seed, budget: sc.start(seed, budget))
    sv.useAsPoisoned.connect(sc.use_as_poisoned)
    sv.saveRequested.connect(lambda: win.save_scan())
    sc.scanStarted.connect(lambda: sv.set_running(True))
    sc.scanFinished.connect(sv.show_scan)
    sc.scanCancelled.connect(lambda: (sv.cancelled(), status.showMessage("Scan cancelled; nothing was written",
                                                                         8000)))
    win.ctl.modelOpened.connect(lambda opened: sc.forget_other(str(opened.model.path)) and sv.show_scan(None))


def wire_repair(win) -> None:
    """The Repair tab: run, save a G; its repaired points on the trade-off plot; a repair of
    another model is forgotten when a model opens."""
    sc, rp, rv, status = win.scanner, win.repairer, win.repair_view, win.statusBar()
    rv.runRequested.connect(lambda methods, frr, epochs: rp.start(methods, frr, epochs))
    rv.saveRequested.connect(lambda key: win.save_repaired(key))
    rp.repairStarted.connect(lambda: rv.set_running(True, sc.triggers() is not None))
    rp.repairFinished.connect(lambda res: (rv.show_result(res), win.images.refresh()))
    rp.repairCancelled.connect(lambda: (rv.cancelled(), status.showMessage("Repair cancelled; nothing was "
                                                                           "written", 8000)))
    rp.points.connect(lambda pts: win.tradeoff.set_points("repair", list(pts)))

    def model_opened(opened) -> None:
        if rp.forget_other(str(opened.model.path)):
            rv.show_result(None)
            win.tradeoff.set_points("repair", [])

    win.ctl.modelOpened.connect(model_opened)


def add_poisoned_set(win, base: str) -> None:
    """Another trigger's poisoned file (or folder) for ``base``, named by the user."""
    from guiapp.views.poisonsets import ask_poisoned_set

    picked = ask_poisoned_set(win, base, win.recent.last_dir(), win.session)
    if picked is not None:
        win.ctl.add_poisoned_set(picked[0], base, picked[1])


def save_scan(win, folder=None) -> None:
    """Save the last scan into ``folder`` (asked when not given)."""
    folder = folder or QFileDialog.getSaveFileName(win, "Save the scan folder",
                                                   str(Path(win.recent.last_dir()) / "scan"))[0]
    if folder:
        win.scanner.save(Path(folder))


def save_repaired(win, key: str, path=None) -> None:
    """Save the last repair's G ``key`` to ``path`` (asked when not given)."""
    path = path or QFileDialog.getSaveFileName(win, "Save G", str(Path(win.recent.last_dir()) / f"G_{key}.keras"),
                                               "Keras models (*.keras)")[0]
    if path:
        win.repairer.save(key, Path(path))


def fine_tuned_points(fine_tuned) -> list:
    """Each fine-pruned model's last epoch as a named point of the trade-off plot
    (engine.report.compare.NamedPoint): clean validation accuracy against ASR on validation."""
    from engine.report.compare import NamedPoint

    pts = []
    for ft in fine_tuned:
        last = ft.records[-1] if ft.records else None
        clean, asr = (last.metric("clean_valid_acc"), last.metric("asr_valid")) if last else (None, None)
        if clean is not None and asr is not None:
            pts.append(NamedPoint(f"fine-pruned from step {ft.step}", clean, asr, "fine-pruned"))
    return pts
