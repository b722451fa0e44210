"""PruneLab's main window: thin over the engine. Long work (loading models, the sweep,
saving, fine-tuning) runs in a :class:`guiapp.worker.Job`; the window only shows records."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout,
                               QHeaderView, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QPushButton, QScrollArea, QSplitter, QTableWidget, QTableWidgetItem,
                               QTabWidget, QVBoxLayout, QWidget)

from engine.data import ROLE_TITLES, ROLES
from engine.errors import PruneLabError, PruneLabWarning
from guiapp.activations_view import ActivationsView
from guiapp.curves import CurvesView
from guiapp.images_view import ImagesView
from guiapp.panels import CheckpointTable, DataSlot, ModelPanel, StepPanel, local_paths
from guiapp.results_view import ResultsView
from guiapp.worker import Job

MODEL_FILTER = "Keras models (*.h5 *.keras *.hdf5);;All files (*)"
DATA_FILTER = "Lab datasets (*.h5 *.hdf5);;All files (*)"
MAX_RECENT = 10


class MainWindow(QMainWindow):
    modelLoaded = Signal(object)
    datasetsChanged = Signal()
    demoReady = Signal()
    sweepStarted = Signal()
    sweepFinished = Signal(object)
    sweepCancelled = Signal()
    jobFailed = Signal(str)
    errorShown = Signal(str)
    saved = Signal(str)
    stepChanged = Signal(int)
    fineTuneFinished = Signal(object)

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("PruneLab", "PruneLab")
        self.setWindowTitle("PruneLab")
        self.setAcceptDrops(True)
        self.model = None
        self.default_layer = None
        self.datasets: dict = {}
        self.result = None
        self.step = 0
        self.job: Job | None = None
        self._jobs: set[Job] = set()
        self._error_box: QMessageBox | None = None
        self.last_error: str | None = None
        self.warnings: list[str] = []
        self.fine_tuned: list = []
        self.confirm_unsafe = self._ask_unsafe  # replaceable in tests
        self._t_start = 0.0
        self._build()
        self._restore()

    # ================================================================== layout
    def _build(self) -> None:
        self._build_actions()
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(4, 4, 4, 4)
        self.model_panel = ModelPanel()
        lv.addWidget(self.model_panel)
        data_box = QWidget()
        dv = QVBoxLayout(data_box)
        dv.setContentsMargins(0, 0, 0, 0)
        dv.addWidget(QLabel("<b>Data</b> <span style='color:#777'>(drop files here)</span>"))
        self.slots = {}
        for role in ROLES:
            slot = DataSlot(role)
            slot.fileDropped.connect(lambda r, p: self.open_data(p, role=r))
            slot.browse.connect(lambda r: self.open_data(None, role=r))
            slot.cleared.connect(self.clear_data)
            dv.addWidget(slot)
            self.slots[role] = slot
        lv.addWidget(data_box)
        lv.addWidget(QLabel("<b>Checkpoints</b>"))
        self.checkpoints = CheckpointTable()
        lv.addWidget(self.checkpoints, 1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(4, 4, 4, 4)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        self.curves = CurvesView()
        self.curves.setFocusPolicy(Qt.StrongFocus)
        curves_tab = QWidget()
        cv = QVBoxLayout(curves_tab)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.addWidget(self.curves, 1)
        self.step_panel = StepPanel()
        cv.addWidget(self.step_panel)
        self.activations = ActivationsView()
        self.images = ImagesView()
        self.results = ResultsView()
        self.tabs.addTab(curves_tab, "Curves")
        self.tabs.addTab(self.activations, "Activations")
        self.tabs.addTab(self.images, "Images")
        self.tabs.addTab(self.results, "Results")
        rv.addWidget(self.tabs, 1)

        split = QSplitter()
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([360, 1000])
        self.splitter = split

        bottom = QWidget()
        bl = QHBoxLayout(bottom)
        bl.setContentsMargins(6, 2, 6, 2)
        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        bl.addWidget(self.progress, 1)
        self.pause_btn = QPushButton("Pause")
        self.cancel_btn = QPushButton("Cancel")
        self.pause_btn.setEnabled(False)
        self.cancel_btn.setEnabled(False)
        bl.addWidget(self.pause_btn)
        bl.addWidget(self.cancel_btn)

        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(split, 1)
        v.addWidget(bottom)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Open a model and data (or File ▸ Open demo) to begin.")

        self.model_panel.layerChanged.connect(lambda _: self._invalidate("layer changed"))
        self.model_panel.thresholdsChanged.connect(lambda _: self._invalidate("thresholds changed"))
        self.model_panel.showLayers.connect(self.show_layers)
        self.checkpoints.saveRequested.connect(lambda w, s: self.save_model(w, s))
        self.checkpoints.rowPicked.connect(lambda s: self.set_step(s))
        self.step_panel.saveRequested.connect(lambda w, s: self.save_model(w, s))
        self.step_panel.fineTuneRequested.connect(lambda s: self.fine_tune(s))
        self.curves.stepPicked.connect(self._on_step_picked)
        self.tabs.currentChanged.connect(self._refresh_tab)
        self.results.saveFineTuned.connect(lambda which: self.save_fine_tuned(which))
        self.pause_btn.clicked.connect(self.toggle_pause)
        self.cancel_btn.clicked.connect(self.cancel)

    def _build_actions(self) -> None:
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        self.act_open_model = self._action(fm, "Open &model…", self.open_model, QKeySequence.Open)
        self.act_open_weights = self._action(fm, "Open &weights…", self.open_weights)
        self.act_open_data = self._action(fm, "Open &data…", lambda: self.open_data(None))
        fm.addSeparator()
        self.act_demo = self._action(fm, "Open d&emo", lambda: self.open_demo("badnet"))
        self._action(fm, "Open pruning-aware demo", lambda: self.open_demo("pruning-aware"))
        self.recent_menu = fm.addMenu("Open &recent")
        fm.addSeparator()
        self.act_export = self._action(fm, "&Export report…", self.export_report, "Ctrl+E")
        fm.addSeparator()
        self._action(fm, "&Quit", self.close, QKeySequence.Quit)
        sm = mb.addMenu("&Sweep")
        self.act_start = self._action(sm, "&Start", self.start_sweep, "Ctrl+R")
        self.act_pause = self._action(sm, "&Pause / resume", self.toggle_pause, "Ctrl+P")
        self.act_cancel = self._action(sm, "&Cancel", self.cancel, "Esc")
        sm.addSeparator()
        self._action(sm, "Clear activation &cache", self.clear_cache)
        vm = mb.addMenu("&View")
        for i, name in enumerate(["Curves", "Activations", "Images", "Results"]):
            self._action(vm, name, lambda i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")
        self._action(vm, "Model layers…", self.show_layers)
        hm = mb.addMenu("&Help")
        self._action(hm, "&About PruneLab", self.about)
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        for a in (self.act_open_model, self.act_open_data, self.act_demo, self.act_start):
            tb.addAction(a)
        self.act_start.setText("▶ Start")
        self._rebuild_recent()

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(lambda checked=False: slot())
        menu.addAction(a)
        return a

    # ================================================================== settings
    def _restore(self) -> None:
        geo = self.settings.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1400, 860)
        st = self.settings.value("splitter")
        if st is not None:
            self.splitter.restoreState(st)

    def closeEvent(self, ev) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.job.wait(10000)
        super().closeEvent(ev)

    def recent_files(self) -> list[str]:
        v = self.settings.value("recent", [])
        return [str(x) for x in (v if isinstance(v, list) else [v] if v else [])]

    def _remember(self, path) -> None:
        p = str(Path(path).resolve())
        items = [p] + [x for x in self.recent_files() if x != p]
        self.settings.setValue("recent", items[:MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        items = self.recent_files()
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for p in items:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda checked=False, p=p: self.open_files([Path(p)]))

    # ================================================================== errors
    def show_error(self, message: str, title: str = "PruneLab") -> None:
        """One dialog with the one-line cause; the window stays usable."""
        self.last_error = message
        self.statusBar().showMessage(f"Error: {message}", 15000)
        if self._error_box is not None:
            self._error_box.close()
        box = QMessageBox(QMessageBox.Critical, title, message, QMessageBox.Ok, self)
        box.setObjectName("errorDialog")
        box.setWindowModality(Qt.WindowModal)
        box.open()
        self._error_box = box
        self.errorShown.emit(message)

    def _ask_unsafe(self, message: str) -> bool:
        r = QMessageBox.warning(self, "Unsafe model", f"{message}\n\nLoading this model can run code stored "
                                "in the file. Load it anyway?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return r == QMessageBox.Yes

    def _warn(self, w: PruneLabWarning) -> None:
        self.warnings.append(str(w))
        self.statusBar().showMessage(f"Warning: {w}", 15000)

    # ================================================================== jobs
    def _run(self, name: str, job, *, on_done=None, on_event=None, on_failed=None, on_cancel=None,
             exclusive: bool = True) -> Job | None:
        if exclusive and self.job is not None and self.job.running:
            self.statusBar().showMessage(f"Busy with {self.job.name}; wait or cancel it first.", 5000)
            return None
        j = Job(job, name, self)
        self._jobs.add(j)
        # release the window's "busy" state *before* the callback, so a callback may chain
        # the next job (open demo -> open model) without waiting for the thread to wind down
        j.event.connect(lambda e: self._warn(e) if isinstance(e, PruneLabWarning) else on_event and on_event(e))
        j.done.connect(lambda v: (self._release(j), on_done and on_done(v)))
        j.failed.connect(lambda m: (self._release(j), (on_failed or self._job_failed)(m)))
        j.cancelled.connect(lambda: (self._release(j), on_cancel and on_cancel()))
        j.finished.connect(lambda: self._jobs.discard(j))
        if exclusive:
            self.job = j
            self.cancel_btn.setEnabled(True)
            self.pause_btn.setEnabled(name == "sweep")
        return j.start()

    def _release(self, j: Job) -> None:
        if j is self.job:
            self.job = None
            self.cancel_btn.setEnabled(False)
            self.pause_btn.setEnabled(False)
            self.pause_btn.setText("Pause")

    def _job_failed(self, message: str) -> None:
        self._reset_progress()
        self.jobFailed.emit(message)
        self.show_error(message)

    def _busy(self, text: str) -> None:
        self.progress.setRange(0, 0)
        self.progress.setFormat(text)
        self.statusBar().showMessage(text)

    def _reset_progress(self, text: str = "idle") -> None:
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setFormat(text)

    def toggle_pause(self) -> None:
        if self.job is None or self.job.name != "sweep":
            return
        if self.job.paused:
            self.job.resume()
            self.pause_btn.setText("Pause")
            self.statusBar().showMessage("Sweep resumed")
        else:
            self.job.pause()
            self.pause_btn.setText("Resume")
            self.statusBar().showMessage("Sweep paused")

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.statusBar().showMessage(f"Cancelling {self.job.name}…")

    # ================================================================== opening
    def open_files(self, paths) -> None:
        """Route files by content: models, weights, datasets (as dropped or from recent)."""
        from engine.models import sniff

        models, weights, data, bad = [], [], [], []
        for p in map(Path, paths):
            kind = sniff(p)
            if kind == "dataset":
                data.append(p)
            elif kind in ("model-h5", "keras"):
                models.append(p)
            elif kind == "weights-h5":
                weights.append(p)
            else:
                bad.append(p)
        for p in data:
            self.open_data(p)
        if models or weights:
            self.open_model(models[0] if models else None, weights[0] if weights else None)
        if bad:
            p = bad[0]
            why = "is a directory, not a file" if p.is_dir() else \
                "no such file" if not p.exists() else \
                "is empty (0 bytes)" if p.stat().st_size == 0 else \
                "is neither a lab dataset nor a Keras model (.h5/.keras)"
            self.show_error(f"{p}: {why}")

    def open_model(self, path=None, weights=None, allow_unsafe: bool = False) -> None:
        if path is None and weights is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open model", self._last_dir(), MODEL_FILTER)
            if not path:
                return
        from engine.models import load_model

        def job(state):
            lm = load_model(path, weights, allow_unsafe=allow_unsafe)
            from engine.split import default_layer

            try:
                layer = default_layer(lm.model, lm.path)
            except PruneLabError:
                layer = None
            return lm, layer

        def failed(msg):
            self._reset_progress()
            if "unsafe model" in msg and not allow_unsafe and self.confirm_unsafe(msg):
                self.open_model(path, weights, allow_unsafe=True)
                return
            self.jobFailed.emit(msg)
            self.show_error(msg)

        self._busy(f"Opening {Path(path or weights).name}…")
        self._run("loading the model", job, on_done=self._model_loaded, on_failed=failed)

    def open_weights(self, path=None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open weights", self._last_dir(), MODEL_FILTER)
            if not path:
                return
        base = self.model.path if self.model is not None and self.model.path != self.model.weights_path else None
        self.open_model(base, path)

    def _model_loaded(self, value) -> None:
        lm, layer = value
        self._reset_progress()
        self.model, self.default_layer = lm, layer
        from engine import atomic

        atomic.protect(lm.input_files())
        for p in lm.input_files():
            self._remember(p)
        self.model_panel.show_model(lm, layer)
        self.setWindowTitle(f"PruneLab — {lm.name}")
        for role, ds in list(self.datasets.items()):
            try:
                ds.expect(lm.input_hwc)
            except PruneLabError as e:
                self.clear_data(role)
                self.show_error(str(e))
        self._invalidate("model opened")
        self.statusBar().showMessage(f"Opened {lm.name}: {lm.kind}, {lm.n_classes} classes", 8000)
        if layer is None and not lm.is_goodnet:
            self.show_error(f"{lm.path}: the model has no Conv2D layer to prune")
        self.modelLoaded.emit(lm)

    def open_data(self, path=None, role: str | None = None) -> None:
        from engine import atomic
        from engine.data import LabDataset, guess_role

        if path is None:
            title = f"Open {ROLE_TITLES[role].lower()} data" if role else "Open dataset"
            path, _ = QFileDialog.getOpenFileName(self, title, self._last_dir(), DATA_FILTER)
            if not path:
                return
        path = Path(path)
        try:
            hwc = self.model.input_hwc if self.model is not None else None
            ds = LabDataset(path, hwc)
        except PruneLabError as e:
            self.show_error(str(e))
            return
        if role is None:
            role = guess_role(path, ds) or next((r for r in ROLES if r not in self.datasets), None)
        if role is None:
            ds.close()
            self.show_error(f"{path}: all four data slots are full; clear one first")
            return
        old = self.datasets.get(role)
        if old is not None:
            old.close()
        self.datasets[role] = ds
        atomic.protect([path])
        self._remember(path)
        self.slots[role].show_dataset(ds)
        self.images.set_datasets(self.datasets)
        self._invalidate("data changed")
        self.statusBar().showMessage(f"{ROLE_TITLES[role]}: {ds.describe()}", 8000)
        self.datasetsChanged.emit()

    def clear_data(self, role: str) -> None:
        ds = self.datasets.pop(role, None)
        if ds is not None:
            ds.close()
        self.slots[role].show_dataset(None)
        self.images.set_datasets(self.datasets)
        self._invalidate("data changed")
        self.datasetsChanged.emit()

    def open_demo(self, variant: str = "badnet") -> None:
        from engine.demo import demo_paths

        self._busy("Preparing the demo (first use renders its data)…")

        def done(paths):
            self._reset_progress()
            for role in ROLES:
                self.clear_data(role)
            for role, p in paths.datasets.items():
                self.open_data(p, role=role)
            self.modelLoaded.connect(self._demo_model_loaded)
            self.open_model(paths.model)

        self._run("preparing the demo", lambda state: demo_paths(variant), on_done=done)

    def _demo_model_loaded(self, _lm) -> None:
        self.modelLoaded.disconnect(self._demo_model_loaded)
        self.demoReady.emit()

    def _last_dir(self) -> str:
        rec = self.recent_files()
        return str(Path(rec[0]).parent) if rec else str(Path.home())

    # ================================================================== drag and drop
    def dragEnterEvent(self, ev) -> None:
        if local_paths(ev.mimeData()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        paths = local_paths(ev.mimeData())
        if paths:
            ev.acceptProposedAction()
            self.open_files(paths)

    # ================================================================== sweep
    def _invalidate(self, why: str) -> None:
        """Inputs changed: the shown results no longer describe them."""
        if self.result is not None:
            self.statusBar().showMessage(f"{why.capitalize()}: start a new sweep (Ctrl+R)", 8000)

    def start_sweep(self) -> None:
        if self.job is not None and self.job.running:
            self.statusBar().showMessage("A job is running; cancel it first.", 5000)
            return
        if self.model is None:
            self.show_error("Open a model first (File ▸ Open model, or the demo)")
            return
        if "clean_valid" not in self.datasets:
            self.show_error("The ranking needs clean validation data: drop it on the 'Clean validation' slot")
            return
        try:
            thresholds = self.model_panel.parsed_thresholds()
        except ValueError:
            self.show_error("Thresholds must be percentages in (0, 100], e.g. 2, 4, 10")
            return
        from engine.sweep import Sweep

        model, datasets = self.model, dict(self.datasets)
        layer = self.model_panel.layer.currentText() or None

        def job(state):
            sweep = Sweep(model, datasets, layer, thresholds, state=state)
            self._sweep_obj = sweep
            return sweep.events()

        self.result = None
        self.fine_tuned = []
        self.results.set_fine_tuned([])
        self.curves.clear(0, thresholds=thresholds)
        self.checkpoints.show_checkpoints(None)
        self._reset_progress("computing activations…")
        self.progress.setRange(0, 0)
        self._t_start = time.perf_counter()
        self._t_steps = None
        self._sweep_obj = None
        self.statusBar().showMessage("Sweep started")
        if self._run("sweep", job, on_event=self._sweep_event, on_done=self._sweep_done,
                     on_cancel=self._sweep_cancelled):
            self.sweepStarted.emit()

    def _sweep_event(self, ev) -> None:
        from engine.sweep import Progress

        if isinstance(ev, Progress):
            self.progress.setRange(0, max(1, ev.total))
            self.progress.setValue(ev.done)
            if ev.phase == "steps":
                eta = ""
                if self._t_steps and ev.done:
                    per = (time.perf_counter() - self._t_steps) / ev.done
                    eta = f" · {per * (ev.total - ev.done):.0f} s left"
                self.progress.setFormat(f"{ev.text} · %p %{eta}")
            else:
                self.progress.setFormat(f"{ev.text} %v/%m")
            return
        sweep = self._sweep_obj
        if self.result is None:
            self.result = sweep.result
            self.curves.n_channels = sweep.n_channels
            self.activations.show_result(self.result, 0)
            self._t_steps = time.perf_counter()
        self.curves.add_record(ev)
        if ev.reached and ev.step == len(self.curves.records) - 1:
            self.statusBar().showMessage(
                f"Step {ev.step}: clean validation accuracy dropped ≥ {', '.join(f'{t:g}' for t in ev.reached)} %")

    def _sweep_done(self, _value) -> None:
        res = self._sweep_obj.result
        self.result = res
        secs = time.perf_counter() - self._t_start
        self.progress.setRange(0, 100)
        self.progress.setValue(100)
        self.progress.setFormat(f"done: {res.steps} steps in {secs:.1f} s")
        self.curves.set_records(res.records, res.thresholds, res.checkpoints)
        self.checkpoints.show_checkpoints(res)
        target = next((c.step for c in reversed(res.checkpoints) if c.step is not None), res.steps)
        self.set_step(target)
        self.statusBar().showMessage(f"Sweep finished in {secs:.1f} s ({res.method} path)", 10000)
        self.sweepFinished.emit(res)

    def _sweep_cancelled(self) -> None:
        self._reset_progress("cancelled")
        self.statusBar().showMessage("Sweep cancelled; nothing was written", 8000)
        self.sweepCancelled.emit()

    # ================================================================== picking
    def set_step(self, step: int) -> None:
        self.curves.set_step(step)

    def _on_step_picked(self, step: int) -> None:
        self.step = step
        r = self.result
        complete = r is not None and r.complete
        self.step_panel.show_step(r if complete else None, step)
        if complete:  # the visible tab now, the others when they are shown
            self._stale = {1, 2, 3}
            self._refresh_tab(self.tabs.currentIndex())
        self.stepChanged.emit(step)

    def _refresh_tab(self, index: int) -> None:
        r = self.result
        if r is None or not r.complete or index not in getattr(self, "_stale", set()):
            return
        self._stale.discard(index)
        if index == 1:
            self.activations.show_result(r, self.step)
        elif index == 2:
            self.images.show_result(r, self.step)
        elif index == 3:
            self.results.show_result(r, self.step)

    def keyPressEvent(self, ev) -> None:
        if ev.key() in (Qt.Key_Left, Qt.Key_Right, Qt.Key_Home, Qt.Key_End) and self.tabs.currentIndex() == 0:
            self.curves.keyPressEvent(ev)
        else:
            super().keyPressEvent(ev)

    # ================================================================== saving
    def save_fine_tuned(self, which: str, index: int = -1, path=None) -> None:
        """Save the fine-pruned B' (or its G) of the index-th fine-tuning run."""
        if not self.fine_tuned:
            return
        ft = self.fine_tuned[index]
        default = f"B_prime_finetuned_step{ft.step}.h5" if which == "bprime" else f"G_finetuned_step{ft.step}.keras"
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save fine-pruned model",
                                                  str(Path(self._last_dir()) / default), "Keras (*.keras *.h5)")
            if not path:
                return
        from engine.goodnet import make_goodnet, save_model

        model = self.model
        inputs = model.input_files() + [d.path for d in self.datasets.values()]

        def job(state):
            out = ft.model if which == "bprime" else make_goodnet(model.model, ft.model)
            return save_model(out, Path(path), inputs)

        self._busy(f"Saving {Path(path).name}…")
        self._run("saving", job, on_done=lambda p: (self._reset_progress(f"saved {Path(p).name}"),
                                                    self.saved.emit(str(p))))

    def save_model(self, which: str, step: int, path=None) -> None:
        if self.result is None or self.model is None:
            return
        default = f"B_prime_step{step}.h5" if which == "bprime" else f"G_step{step}.keras"
        if path is None:
            filt = "Keras 3 (*.keras);;Keras legacy HDF5 (*.h5)" if which == "bprime" else "Keras 3 (*.keras)"
            path, _ = QFileDialog.getSaveFileName(self, "Save B'" if which == "bprime" else "Save G",
                                                  str(Path(self._last_dir()) / default), filt)
            if not path:
                return
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".keras")
        from engine.goodnet import make_bprime, make_goodnet, save_model

        model, res = self.model, self.result
        inputs = model.input_files() + [d.path for d in self.datasets.values()]

        def job(state):
            bp = make_bprime(model.model, res.layer, res.pruned_channels(step), name=f"repaired_step{step}")
            state.cancel_point()
            out = bp if which == "bprime" else make_goodnet(model.model, bp)
            state.cancel_point()
            return save_model(out, path, inputs)

        def done(p):
            self._reset_progress(f"saved {Path(p).name}")
            self.statusBar().showMessage(f"Saved {'B′' if which == 'bprime' else 'G'} at step {step} to {p}", 10000)
            self.saved.emit(str(p))

        self._busy(f"Saving {path.name}…")
        self._run("saving", job, on_done=done, on_cancel=lambda: self._reset_progress("save cancelled"))

    def export_report(self, folder=None) -> None:
        if self.result is None or not self.result.complete:
            self.show_error("Run a sweep first; the report describes a finished sweep")
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export report into folder", self._last_dir())
            if not folder:
                return
        from engine.cli import staged_output
        from engine.report import write_report

        res = self.result
        inputs = self.model.input_files() + [d.path for d in self.datasets.values()]

        def job(state):
            with staged_output(Path(folder), inputs) as stage:
                write_report(res, stage, extra={"picked_step": self.step})
            return folder

        def done(f):
            self._reset_progress("report exported")
            self.statusBar().showMessage(f"Report written to {f}", 10000)
            self.saved.emit(str(f))

        self._busy("Writing the report…")
        self._run("exporting", job, on_done=done)

    # ================================================================== fine-tuning
    def fine_tune(self, step: int, epochs: int | None = None, ask: bool = True) -> None:
        from guiapp.finetune_dialog import FineTuneDialog, run_fine_tune

        if self.result is None:
            return
        params = {"epochs": epochs or 10}
        if ask and epochs is None:
            dlg = FineTuneDialog(step, self)
            if dlg.exec() != QDialog.Accepted:
                return
            params = dlg.values()
        run_fine_tune(self, step, params)

    # ================================================================== misc
    def clear_cache(self) -> None:
        from engine import cache
        from engine.hdf5io import human_bytes

        freed = cache.clear()
        self.statusBar().showMessage(f"Cleared {human_bytes(freed)} of cached activations", 8000)

    def show_layers(self) -> None:
        if self.model is None:
            return
        rows = self.model.layer_table()
        dlg = QDialog(self)
        dlg.setWindowTitle(f"Layers of {self.model.name}")
        lay = QVBoxLayout(dlg)
        t = QTableWidget(len(rows), 4)
        t.setHorizontalHeaderLabels(["name", "type", "output shape", "params"])
        for i, r in enumerate(rows):
            for j, v in enumerate((r.name, r.kind, r.output_shape, f"{r.params:,}")):
                t.setItem(i, j, QTableWidgetItem(v))
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        lay.addWidget(t)
        lay.addWidget(QLabel(f"total {sum(r.params for r in rows):,} parameters · pruning "
                             f"{self.model_panel.layer.currentText() or '—'}"))
        bb = QDialogButtonBox(QDialogButtonBox.Close)
        bb.rejected.connect(dlg.reject)
        lay.addWidget(bb)
        dlg.resize(560, 480)
        self._layers_dialog = dlg
        dlg.show()

    def about(self) -> None:
        QMessageBox.about(self, "About PruneLab",
                          "<b>PruneLab</b> 0.1.0<br>Defends image classifiers against BadNet backdoors by "
                          "pruning (Liu, Dolan-Gavitt &amp; Garg, Fine-Pruning, RAID 2018) and turns the "
                          "result into a backdoor detector G.")

    def wait_idle(self, timeout_ms: int = 60000) -> None:
        """Process events until no job runs (for automation)."""
        t = time.perf_counter()
        while (self.job is not None or self._jobs) and (time.perf_counter() - t) * 1000 < timeout_ms:
            QApplication.processEvents()
            time.sleep(0.01)
