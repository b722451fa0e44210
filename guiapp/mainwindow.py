"""PruneLab's main window: menus, the left panel, the tabs, the job bar — and the wiring
between them and the :class:`Controller`. What a command does lives in the controller and the
tasks; what a view shows lives in the view."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QDialog, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from engine.data import ROLE_TITLES, ROLES
from guiapp.controller import Controller
from guiapp.recent import Recent
from guiapp.views import dialogs
from guiapp.views.activations import ActivationsView
from guiapp.views.curves import CurvesView
from guiapp.views.images import ImagesView
from guiapp.views.jobbar import JobBar
from guiapp.views.panels import CheckpointTable, DataSlot, ModelPanel, StepPanel, local_paths
from guiapp.views.results import ResultsView

MODEL_FILTER = "Keras models (*.h5 *.keras *.hdf5);;All files (*)"
DATA_FILTER = "Lab datasets (*.h5 *.hdf5);;All files (*)"
TABS = ("Curves", "Activations", "Images", "Results")


class MainWindow(QMainWindow):
    errorShown = Signal(str)
    stepChanged = Signal(int)

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("PruneLab", "PruneLab")
        self.recent = Recent(self.settings)
        self.ctl = Controller(self)
        self.session = self.ctl.session
        self.setWindowTitle("PruneLab")
        self.setAcceptDrops(True)
        self.confirm_unsafe = lambda msg: dialogs.confirm_unsafe(msg, self)  # replaceable in tests
        self._error_box: QMessageBox | None = None
        self.last_error: str | None = None
        self.warnings: list[str] = []
        self._stale: set[int] = set()
        self._build()
        self._menus()
        self._wire()
        self._restore()

    # ================================================================== layout
    def _build(self) -> None:
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(4, 4, 4, 4)
        self.model_panel = ModelPanel()
        lv.addWidget(self.model_panel)
        lv.addWidget(QLabel("<b>Data</b> <span style='color:#777'>(drop files here)</span>"))
        self.slots = {role: DataSlot(role) for role in ROLES}
        for slot in self.slots.values():
            lv.addWidget(slot)
        lv.addWidget(QLabel("<b>Checkpoints</b>"))
        self.checkpoints = CheckpointTable()
        lv.addWidget(self.checkpoints, 1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)
        self.curves = CurvesView()
        self.curves.setFocusPolicy(Qt.StrongFocus)
        self.step_panel = StepPanel()
        curves_tab = QWidget()
        cv = QVBoxLayout(curves_tab)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.addWidget(self.curves, 1)
        cv.addWidget(self.step_panel)
        self.activations, self.images, self.results = ActivationsView(), ImagesView(), ResultsView()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        for w, name in zip((curves_tab, self.activations, self.images, self.results), TABS):
            self.tabs.addTab(w, name)
        self.splitter = QSplitter()
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([360, 1000])
        self.jobbar = JobBar()
        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.splitter, 1)
        v.addWidget(self.jobbar)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Open a model and data (or File ▸ Open demo) to begin.")

    def _menus(self) -> None:
        def act(menu, text, slot, shortcut=None) -> QAction:
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(lambda checked=False: slot())
            menu.addAction(a)
            return a

        mb = self.menuBar()
        fm = mb.addMenu("&File")
        self.act_open_model = act(fm, "Open &model…", self.open_model, QKeySequence.Open)
        act(fm, "Open &weights…", self.open_weights)
        self.act_open_data = act(fm, "Open &data…", lambda: self.open_data(None))
        fm.addSeparator()
        self.act_demo = act(fm, "Open d&emo", lambda: self.ctl.open_demo("badnet"))
        act(fm, "Open pruning-aware demo", lambda: self.ctl.open_demo("pruning-aware"))
        self.recent_menu = fm.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        fm.addSeparator()
        act(fm, "&Export report, B′ and G…", self.export_report, "Ctrl+E")
        fm.addSeparator()
        act(fm, "&Quit", self.close, QKeySequence.Quit)
        sm = mb.addMenu("&Sweep")
        self.act_start = act(sm, "&Start", self.start_sweep, "Ctrl+R")
        act(sm, "&Pause / resume", self.ctl.toggle_pause, "Ctrl+P")
        act(sm, "&Cancel", self.ctl.cancel, "Esc")
        sm.addSeparator()
        act(sm, "Clear activation &cache", self.ctl.clear_cache)
        vm = mb.addMenu("&View")
        for i, name in enumerate(TABS):
            act(vm, name, lambda i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")
        act(vm, "Model layers…", self.show_layers)
        act(mb.addMenu("&Help"), "&About PruneLab", lambda: QMessageBox.about(self, "About PruneLab", dialogs.ABOUT))
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        for a in (self.act_open_model, self.act_open_data, self.act_demo, self.act_start):
            tb.addAction(a)
        self.act_start.setText("▶ Start")

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.recent.files() or ["(none)"]:
            a = self.recent_menu.addAction(p)
            a.setEnabled(p != "(none)")
            a.triggered.connect(lambda checked=False, p=p: self.ctl.open_files([Path(p)]))

    def _wire(self) -> None:
        c, status = self.ctl, self.statusBar()
        for slot in self.slots.values():
            slot.fileDropped.connect(lambda r, p: c.open_data(p, role=r))
            slot.browse.connect(lambda r: self.open_data(r))
            slot.cleared.connect(c.clear_data)
        self.model_panel.showLayers.connect(self.show_layers)
        for sig in (self.model_panel.layerChanged, self.model_panel.thresholdsChanged):
            sig.connect(lambda _: self._invalidate())
        self.checkpoints.saveRequested.connect(self.save_model)
        self.checkpoints.rowPicked.connect(self.set_step)
        self.step_panel.saveRequested.connect(self.save_model)
        self.step_panel.fineTuneRequested.connect(self.fine_tune)
        self.curves.stepPicked.connect(self._step_picked)
        self.tabs.currentChanged.connect(self._refresh_tab)
        self.results.saveFineTuned.connect(lambda which: self.save_fine_tuned(which))
        self.images.pageWanted.connect(c.read_page)
        self.jobbar.pause_btn.clicked.connect(c.toggle_pause)
        self.jobbar.cancel_btn.clicked.connect(c.cancel)
        c.progress.connect(self.jobbar.show_progress)
        c.busyChanged.connect(self.jobbar.set_busy)
        c.pausedChanged.connect(self.jobbar.set_paused)
        c.pausedChanged.connect(lambda p: status.showMessage("Sweep paused" if p else "Sweep resumed"))
        c.message.connect(lambda m: status.showMessage(m, 10000))
        c.warning.connect(lambda m: (self.warnings.append(m), status.showMessage(f"Warning: {m}", 15000)))
        c.error.connect(self.show_error)
        c.unsafeModel.connect(lambda p, w, m: self.confirm_unsafe(m) and c.open_model(p, w, allow_unsafe=True))
        c.fileOpened.connect(self.recent.remember)
        c.modelOpened.connect(self._model_opened)
        c.datasetChanged.connect(self._dataset_changed)
        c.sweepStarted.connect(self._sweep_started)
        c.stepRecord.connect(self.curves.add_record)
        c.sweepFinished.connect(self._sweep_finished)
        c.sweepCancelled.connect(lambda: status.showMessage("Sweep cancelled; nothing was written", 8000))
        c.pageRead.connect(self.images.show_page)
        c.fineTuneEpochs.connect(self.curves.set_fine_tune)
        c.fineTuneFinished.connect(lambda ft: self.results.set_fine_tuned(self.session.fine_tuned))

    # ================================================================== settings, errors
    def _restore(self) -> None:
        geo, st = self.settings.value("geometry"), self.settings.value("splitter")
        self.restoreGeometry(geo) if geo is not None else self.resize(1400, 860)
        if st is not None:
            self.splitter.restoreState(st)

    def closeEvent(self, ev) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.ctl.shutdown()
        super().closeEvent(ev)

    def show_error(self, message: str) -> None:
        """One dialog with the one-line cause; the window stays usable."""
        self.last_error = message
        self.statusBar().showMessage(f"Error: {message}", 15000)
        if self._error_box is not None:
            self._error_box.close()
        self._error_box = dialogs.error_box(message, self)
        self.errorShown.emit(message)

    # ================================================================== opening
    def open_model(self, path=None, weights=None) -> None:
        if path is None and weights is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open model", self.recent.last_dir(), MODEL_FILTER)
            if not path:
                return
        self.ctl.open_model(path, weights)

    def open_weights(self, path=None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open weights", self.recent.last_dir(), MODEL_FILTER)
            if not path:
                return
        m = self.session.model
        self.ctl.open_model(m.path if m is not None and m.path != m.weights_path else None, path)

    def open_data(self, role: str | None = None) -> None:
        title = f"Open {ROLE_TITLES[role].lower()} data" if role else "Open dataset"
        path, _ = QFileDialog.getOpenFileName(self, title, self.recent.last_dir(), DATA_FILTER)
        if path:
            self.ctl.open_data(Path(path), role=role)

    def _model_opened(self, opened) -> None:
        self.model_panel.show_model(opened.model, opened.default_layer)
        self.setWindowTitle(f"PruneLab — {opened.model.name}")
        self._invalidate()

    def _dataset_changed(self, role: str, ds) -> None:
        self.slots[role].show_dataset(ds)
        self.images.set_datasets(self.session)
        self._invalidate()

    def dragEnterEvent(self, ev) -> None:
        if local_paths(ev.mimeData()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        paths = local_paths(ev.mimeData())
        if paths:
            ev.acceptProposedAction()
            self.ctl.open_files(paths)

    # ================================================================== the sweep
    def _invalidate(self) -> None:
        if self.session.result is not None:
            self.statusBar().showMessage("Inputs changed: start a new sweep (Ctrl+R) to see their results", 8000)

    def start_sweep(self) -> None:
        try:
            thresholds = self.model_panel.parsed_thresholds()
        except ValueError as e:
            self.show_error(f"Thresholds: {e}")
            return
        if self.ctl.start_sweep(self.model_panel.layer.currentText() or None, thresholds):
            self._t_start = time.perf_counter()
            self.curves.clear(0, thresholds=thresholds)
            self.checkpoints.show_checkpoints(None)
            self.step_panel.show_step(None, 0)
            self.results.set_fine_tuned([])
            self.jobbar.show_progress("computing activations…", 0, 0)

    def _sweep_started(self, info) -> None:
        self.curves.start(info.n_channels, info.thresholds, has_test=any(r.endswith("test") for r in self.session.datasets))
        self.activations.show_means(info)

    def _sweep_finished(self, res) -> None:
        secs = time.perf_counter() - self._t_start
        self.jobbar.show_progress(f"done: {res.steps} steps in {secs:.1f} s", 1, 1)
        self.curves.set_records(res.records, res.thresholds, res.checkpoints)
        self.checkpoints.show_checkpoints(res)
        self.set_step(next((c.step for c in reversed(res.checkpoints) if c.step is not None), res.steps))
        self.statusBar().showMessage(f"Sweep finished in {secs:.1f} s ({res.method} path)", 10000)

    # ================================================================== the picked step
    def set_step(self, step: int) -> None:
        self.curves.set_step(step)

    @property
    def step(self) -> int:
        return self.session.step

    def _step_picked(self, step: int) -> None:
        self.session.step = step
        r = self.session.result
        self.step_panel.show_step(r, step)
        if r is not None:  # the visible tab now, the others when they are shown
            self._stale = {1, 2, 3}
            self._refresh_tab(self.tabs.currentIndex())
        self.stepChanged.emit(step)

    def _refresh_tab(self, index: int) -> None:
        r = self.session.result
        if r is None or index not in self._stale:
            return
        self._stale.discard(index)
        view = {1: self.activations, 2: self.images, 3: self.results}[index]
        view.show_result(r, self.session.step)

    def keyPressEvent(self, ev) -> None:
        if ev.key() in (Qt.Key_Left, Qt.Key_Right, Qt.Key_Home, Qt.Key_End) and self.tabs.currentIndex() == 0:
            self.curves.keyPressEvent(ev)
        else:
            super().keyPressEvent(ev)

    # ================================================================== saving
    def _ask_save(self, title: str, default: str, filt: str) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(self, title, str(Path(self.recent.last_dir()) / default), filt)
        return (Path(path) if Path(path).suffix else Path(path).with_suffix(".keras")) if path else None

    def save_model(self, which: str, step: int, path=None) -> None:
        default = f"B_prime_step{step}.h5" if which == "bprime" else f"G_step{step}.keras"
        filt = "Keras 3 (*.keras);;Keras legacy HDF5 (*.h5)" if which == "bprime" else "Keras 3 (*.keras)"
        path = Path(path) if path else self._ask_save("Save B'" if which == "bprime" else "Save G", default, filt)
        if path:
            self.ctl.save_model(which, step, path)

    def save_fine_tuned(self, which: str, index: int = -1, path=None) -> None:
        if not self.session.fine_tuned:
            return
        k = self.session.fine_tuned[index].step
        default = f"B_prime_finetuned_step{k}.h5" if which == "bprime" else f"G_finetuned_step{k}.keras"
        path = Path(path) if path else self._ask_save("Save fine-pruned model", default, "Keras (*.keras *.h5)")
        if path:
            self.ctl.save_fine_tuned(which, index, path)

    def export_report(self, folder=None) -> None:
        folder = folder or QFileDialog.getExistingDirectory(self, "Export into folder", self.recent.last_dir())
        if folder:
            self.ctl.export(Path(folder))

    def fine_tune(self, step: int, epochs: int | None = None, ask: bool = True) -> None:
        params = {"epochs": epochs or 10}
        if ask and epochs is None:
            dlg = dialogs.FineTuneDialog(step, self)
            if dlg.exec() != QDialog.Accepted:
                return
            params = dlg.values()
        self.ctl.fine_tune(step, params)

    def show_layers(self) -> None:
        if self.session.model is not None:
            self._layers_dialog = dialogs.layers_dialog(self.session.model, self.model_panel.layer.currentText(), self)
            self._layers_dialog.show()

    def wait_idle(self, timeout_ms: int = 60000) -> None:
        """Process events until no job runs (for automation and tests)."""
        t = time.perf_counter()
        while not self.ctl.idle and (time.perf_counter() - t) * 1000 < timeout_ms:
            QApplication.processEvents()
            time.sleep(0.01)
