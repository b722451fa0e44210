"""PruneLab's main window: menus, the left panel, the tabs, the job bar — and the wiring
between them and the :class:`Controller`. What a command does lives in the controller and the
tasks; what a view shows lives in the view."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (QDialog, QFileDialog, QMainWindow, QMessageBox, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from engine.core.vocabulary import role_title
from engine.pruning.criteria import DEFAULT
from guiapp.controller import Controller
from guiapp.controllers.repair import RepairController
from guiapp.controllers.scan import ScanController
from guiapp.kinds import Tab
from guiapp.menus import TABS, build_menus
from guiapp.recent import Recent
from guiapp.views import dialogs
from guiapp.views.activations import ActivationsView
from guiapp.views.curves import CurvesTab
from guiapp.views.images import ImagesView
from guiapp.views.jobbar import JobBar
from guiapp.views.panels import LeftPanel, StepPanel, local_paths
from guiapp.views.rankings import RankingsView
from guiapp.views.repair import RepairView
from guiapp.views.results import ResultsView
from guiapp.views.scan import ScanView
from guiapp.views.tradeoff import TradeoffView
from guiapp import wiring
from guiapp.wording import window_words

MODEL_FILTER = "Keras models (*.h5 *.keras *.hdf5);;All files (*)"
DATA_FILTER = "Lab datasets (*.h5 *.hdf5);;Images (*.png *.jpg *.jpeg);;All files (*)"


class MainWindow(QMainWindow):
    errorShown = Signal(str)
    stepChanged = Signal(int)

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("PruneLab", "PruneLab")
        self.recent = Recent(self.settings)
        self.ctl = Controller(self)
        self.ctl.ask_role = lambda path: self.ask_role(path)
        self.scanner = ScanController(self.ctl)
        self.repairer = RepairController(self.ctl, self.scanner)
        self.session = self.ctl.session
        self.setWindowTitle("PruneLab")
        self.setAcceptDrops(True)
        self.confirm_unsafe = lambda msg: dialogs.confirm_unsafe(window_words(msg), self)  # replaceable in tests
        # a folder whose name says no slot: which one (a role, "photos", None to skip); replaceable in tests
        self.ask_role = lambda path: dialogs.ask_role(path, self)
        self.confirm = lambda title, msg: dialogs.confirm(title, msg, self)  # a yes/no question; replaceable
        self._error_box: QMessageBox | None = None
        self.last_error: str | None = None
        self.warnings: list[str] = []
        self._stale: set[int] = set()
        self._build()
        build_menus(self)
        wiring.wire(self)
        self._restore()

    # ================================================================== layout
    def _build(self) -> None:
        self.left = left = LeftPanel()
        self.model_panel, self.slots, self.checkpoints = left.model_panel, left.slots, left.checkpoints
        self.ranking_panel = left.rankings
        left.resize_box.toggled.connect(lambda on: setattr(self.session, "resize", on))
        self.step_panel = StepPanel()
        curves_tab = CurvesTab(self.step_panel)
        self.curves = curves_tab.curves
        self.activations, self.images, self.results = ActivationsView(), ImagesView(), ResultsView()
        self.rankings = RankingsView()
        self.tradeoff = TradeoffView()
        self.scan_view, self.repair_view = ScanView(), RepairView()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        for w, name in zip((curves_tab, self.activations, self.images, self.results, self.rankings, self.tradeoff,
                            self.scan_view, self.repair_view), TABS):
            self.tabs.addTab(w, name)
        self.splitter = QSplitter()
        self.splitter.addWidget(left)
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

    # the Scan and Repair tabs' saves ask their path with their wiring (called from tests with one)
    save_scan, save_repaired = wiring.save_scan, wiring.save_repaired

    # ================================================================== settings, errors
    def _restore(self) -> None:
        geo, st = self.settings.value("geometry"), self.settings.value("splitter")
        self.restoreGeometry(geo) if geo is not None else self.resize(1400, 860)
        st is not None and self.splitter.restoreState(st)

    def closeEvent(self, ev) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.ctl.shutdown()
        self.scanner.cleanup()  # the stand-in files written in temporary folders
        super().closeEvent(ev)

    def show_error(self, message: str) -> None:
        """One dialog with the one-line cause, in the window's words; the window stays usable."""
        message = window_words(message)
        self.last_error = message
        self.statusBar().showMessage(f"Error: {message}", 15000)
        if self._error_box is not None:
            self._error_box.close()
        self._error_box = dialogs.error_box(message, self)
        self.errorShown.emit(message)

    # ================================================================== opening
    def _pick(self, title: str, filt: str) -> str:
        return QFileDialog.getOpenFileName(self, title, self.recent.last_dir(), filt)[0]

    def open_model(self, path=None, weights=None) -> None:
        path = path if (path or weights) else self._pick("Open model", MODEL_FILTER)
        if path or weights:
            self.ctl.open_model(path or None, weights)

    def open_weights(self, path=None) -> None:
        m, path = self.session.model, path or self._pick("Open weights", MODEL_FILTER)
        if path:
            self.ctl.open_model(m.path if m is not None and m.path != m.weights_path else None, path)

    def open_data(self, role: str | None = None, folder: bool = False) -> None:
        """A file, or with ``folder`` a folder of images, for ``role``'s slot (None: the slot its
        name and labels say, asking if they cannot tell)."""
        what = f"{role_title(role).lower()} data" if role else "data"
        if folder:
            path = QFileDialog.getExistingDirectory(self, f"Open a folder of images as {what}", self.recent.last_dir())
        else:
            path = self._pick(f"Open {what}", DATA_FILTER)
        if not path:
            return
        if role is None and folder:
            self.ctl.open_files([Path(path)])  # routed by its name, as a dropped folder
        else:
            self.ctl.open_data(Path(path), role=role)

    def _model_opened(self, opened) -> None:
        self.model_panel.show_model(opened.model, opened.default_layer, opened.layers)
        self.ctl.set_input_scale(self.model_panel.scale_choice())
        self.setWindowTitle(f"PruneLab — {opened.model.name}")
        self._invalidate()

    def _dataset_changed(self, role: str, ds) -> None:
        self.left.show_dataset(role, ds)
        self.images.set_datasets(self.session)
        self.ranking_panel.set_roles(self.session.datasets)
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
        step_size = self.model_panel.step_size.text().strip() or "1"
        step_size = int(step_size) if step_size.isdigit() else step_size
        rp = self.ranking_panel
        if self.ctl.start_sweep(self.model_panel.layer.currentText() or None, thresholds, step_size,
                                rp.names() or [DEFAULT], rp.random_seeds(),
                                self.model_panel.scale_choice()):
            self._t_start = time.perf_counter()
            self.curves.clear(0, thresholds=thresholds)
            self.tradeoff.clear()
            repaired = self.repairer.points_for(str(self.session.model.path))
            if repaired:
                self.tradeoff.set_points("repair", repaired)
            self.checkpoints.show_checkpoints(None)
            self.step_panel.show_step(None, 0)
            self.results.set_fine_tuned([])
            self.jobbar.show_progress("computing activations…", 0, 0)

    def _sweep_started(self, info) -> None:
        self.curves.start(info.n_channels, info.thresholds, has_test=any(r.endswith("test") for r in info.roles))
        self.activations.show_means(info)

    def _sweep_finished(self, res) -> None:
        secs = time.perf_counter() - self._t_start
        self.jobbar.show_progress(f"done: {res.steps} steps in {secs:.1f} s", 1, 1)
        if self.session.rankings is None:  # one criterion: its curve alone on the trade-off plot
            self.tradeoff.set_sweeps({self.session.ranking: res})
        self._show_result(res, next((c.step for c in reversed(res.checkpoints) if c.step is not None), res.steps))
        self.statusBar().showMessage(f"Sweep finished in {secs:.1f} s ({res.method} path)", 10000)

    def _show_result(self, res, step: int) -> None:
        """``res`` (the sweep, or the picked criterion's) drives the cursor, checkpoints and saves."""
        self.curves.set_records(res.records, res.thresholds, res.checkpoints)
        self.checkpoints.show_checkpoints(res)
        self.set_step(step)

    # ================================================================== the picked step
    def set_step(self, step: int) -> None:
        self.curves.set_step(step)

    @property
    def step(self) -> int:
        return self.session.step

    def pick_point(self, name: str, step: int) -> None:
        """A criterion's step picked on the trade-off plot: the same path as a click on its curve
        (the controller makes that criterion's sweep the result), then the cursor to that step."""
        if self.session.rankings is not None:
            self.ctl.pick_ranking(name)
        if self.session.ranking == name or self.session.rankings is None:
            self.set_step(step)

    def _step_picked(self, step: int) -> None:
        self.session.step = step
        r = self.session.result
        self.step_panel.show_step(r, step)
        self.tradeoff.set_current(self.session.ranking, step)
        if r is not None:  # the visible tab now, the others when they are shown
            self._stale = {Tab.ACTIVATIONS, Tab.IMAGES, Tab.RESULTS}
            self._refresh_tab(self.tabs.currentIndex())
        self.stepChanged.emit(step)

    def _refresh_tab(self, index: int) -> None:
        r = self.session.result
        if r is None or index not in self._stale:
            return
        self._stale.discard(index)
        view = {Tab.ACTIVATIONS: self.activations, Tab.IMAGES: self.images, Tab.RESULTS: self.results}.get(index)
        if view is None:
            return
        view.show_result(r, self.session.step)

    def keyPressEvent(self, ev) -> None:
        if ev.key() in (Qt.Key_Left, Qt.Key_Right, Qt.Key_Home, Qt.Key_End) and self.tabs.currentIndex() == Tab.CURVES:
            self.curves.keyPressEvent(ev)
        else:
            super().keyPressEvent(ev)

    # ================================================================== saving
    def save_model(self, which: str, step: int, path=None) -> None:
        path = Path(path) if path else dialogs.ask_save_model(self, which, f"step{step}", self.recent.last_dir())
        if path:
            self.ctl.save_model(which, step, path)

    def save_fine_tuned(self, which: str, index: int = -1, path=None) -> None:
        if self.session.fine_tuned:
            tag = f"finetuned_step{self.session.fine_tuned[index].step}"
            path = Path(path) if path else dialogs.ask_save_model(self, which, tag, self.recent.last_dir())
            path and self.ctl.save_fine_tuned(which, index, path)

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
        clean = self.session.datasets.get("clean_valid")
        question = dialogs.few_images_question(clean.n, params) if clean is not None else None
        if question is not None and not self.confirm(*question):
            self.statusBar().showMessage("Fine-tuning not started: too few clean validation images", 8000)
            return
        self.ctl.fine_tune(step, params)

    def show_layers(self) -> None:
        if self.session.model is not None:
            self._layers_dialog = dialogs.layers_dialog(self.session.model, self.model_panel.layer.currentText(), self)
            self._layers_dialog.show()
