"""What the window's commands do: start the right task for each, keep the :class:`Session` in
step with what finished, and tell the views through signals. No widgets here (the window asks
the user and shows the answers); no pruning math (the tasks call the engine).

This module holds the one task runner (:meth:`Controller.run`), the signals and opening files;
each other feature's commands are a mixin in :mod:`guiapp.controllers` (the sweep, the image
browser's photos and pages, the maps, fine-tuning, saving).

One task slot: a second long task is refused while one runs. Opening a dataset and reading a
page of thumbnails are short reads that run beside it, each in its own worker."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.core.vocabulary import ROLES, base_role, is_poisoned, role_title
from engine.core.errors import PruneLabError, UnsafeModelError
from guiapp import tasks
from guiapp.controllers.finetune import FineTuneMixin
from guiapp.controllers.maps import MapsMixin
from guiapp.controllers.photos import PhotosMixin
from guiapp.controllers.saving import SavingMixin
from guiapp.controllers.sweep import SweepMixin
from guiapp.kinds import TaskKind
from guiapp.session import Session, SlotBusy
from guiapp.worker import Worker


def describe_error(e: BaseException) -> str:
    """The one line a dialog shows for an exception raised in a task."""
    if isinstance(e, PruneLabError):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory"
    return f"internal error ({type(e).__name__}: {' '.join(str(e).split())[:300]})"


class Controller(SweepMixin, PhotosMixin, MapsMixin, FineTuneMixin, SavingMixin, QObject):
    modelOpened = Signal(object)  # tasks.OpenedModel
    datasetChanged = Signal(str, object)  # role, dataset or None
    fileOpened = Signal(object)  # Path, for the recent-files menu
    inputsReady = Signal()  # everything a demo or a drop asked to open has arrived (or failed)
    sweepStarted = Signal(object)  # tasks.SweepStarted
    inputScale = Signal(str)  # "pixels / 255 (detected)": the model's input convention for this run
    rankingRecord = Signal(str, object)  # ranking name, StepRecord (several criteria at once)
    rankingsFinished = Signal(object)  # tasks.RankingsDone
    rankingPicked = Signal(str, object, int)  # name, its SweepResult, the step to show
    stepRecord = Signal(object)  # engine.pruning.records.StepRecord
    sweepFinished = Signal(object)  # engine.pruning.records.SweepResult
    sweepCancelled = Signal()
    fineTuneEpochs = Signal(int, list)  # step, EpochRecords so far
    fineTuneFinished = Signal(object)
    pageRead = Signal(object)  # tasks.ImagePage
    photosOpened = Signal(object)  # the photo set
    mapsRead = Signal(object)  # tasks.MapPage
    imageMaps = Signal(object)  # tasks.ImageMaps
    meanMaps = Signal(object)  # tasks.MeanMaps
    channelMaps = Signal(object)  # tasks.ChannelMaps
    photoVerdicts = Signal(object)  # tasks.PhotoVerdicts
    progress = Signal(str, int, int)  # text, done, total (total 0: busy, no count)
    busyChanged = Signal(object)  # the TaskKind holding the slot, None when idle
    pausedChanged = Signal(bool)  # emitted when the pause really took effect
    saved = Signal(str)
    error = Signal(str)
    unsafeModel = Signal(object, object, str)  # path, weights, message: the window asks the user
    message = Signal(str)  # for the status bar
    warning = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.session = Session()
        self.worker: Worker | None = None  # the task in the one slot
        self._workers: set[Worker] = set()  # every thread still running, the slot's included
        self._pending = 0  # opens still to arrive of the last demo or drop
        self._judging = None  # (photos path, step) being judged now
        self._renamed: dict[str, str] = {}  # poisoned slots renamed by the last open or clear
        self._dropped_poisoned: set[str] = set()  # poisoned slots filled by the drop now arriving
        # the window's question for a folder whose name says no slot: a role, "photos", or None (skip it)
        self.ask_role = lambda path: None

    # ------------------------------------------------------------------ running tasks
    def run(self, name: TaskKind, task, *, roles=(), on_yield=None, on_return=None, on_abort=None,
            on_error=None, light: bool = False, busy: str | None = None) -> Worker | None:
        """Start ``task(state)`` in a worker. Long tasks take the one slot (and hold the datasets
        of ``roles`` until they end); light ones run beside it."""
        if not light:
            try:
                slot = self.session.begin(name, roles)
            except SlotBusy as e:
                self.message.emit(str(e))
                return None
        w = Worker(task, name)
        self._workers.add(w)
        w.finished.connect(lambda: self._workers.discard(w))
        if not light:  # the slot is free as soon as the outcome is known, so a callback may chain a task
            for sig in (w.returned, w.aborted, w.errored, w.finished):
                sig.connect(lambda *_: self._slot_free(w, slot))
            w.paused.connect(lambda: self.pausedChanged.emit(True))
            w.resumed.connect(lambda: self.pausedChanged.emit(False))
            self.worker = w
            self.busyChanged.emit(name)
        if on_yield:
            w.yielded.connect(on_yield)
        if on_return:
            w.returned.connect(on_return)
        w.aborted.connect(lambda: (self.progress.emit(f"{name} cancelled", 0, 1), on_abort and on_abort()))
        w.errored.connect(lambda e: None if (on_error and on_error(e)) else self._failed(e, light))
        w.warned.connect(lambda msg: self.warning.emit(str(msg)))
        if busy:  # said only once the task really starts (a refused one leaves the bar alone)
            self.progress.emit(busy, 0, 0)
        return w.start()

    def _slot_free(self, w: Worker, slot) -> None:
        self.session.end(slot)  # idempotent: the task gives back the datasets it held
        if self.worker is w:
            self.worker = None
            self.busyChanged.emit(None)

    def _failed(self, e: BaseException, light: bool = False) -> None:
        if not light:
            self.progress.emit("failed", 0, 1)
        self.error.emit(describe_error(e))

    def toggle_pause(self) -> None:
        w = self.worker
        if w is None or w.name != TaskKind.SWEEP:
            return
        if w.pause_requested:
            w.resume()
        else:
            w.pause()
            self.message.emit("Pausing at the next step…")

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.message.emit(f"Cancelling the {self.worker.name}…")

    def shutdown(self, ms: int = 10000) -> None:
        for w in list(self._workers):
            if w.running:
                w.cancel()
                w.wait(ms)
        self.session.close()

    @property
    def idle(self) -> bool:
        return not self._workers

    # ------------------------------------------------------------------ opening
    def open_files(self, paths) -> None:
        """Route files by their content: models, weights, datasets (dropped, or from recent)."""
        self.run(TaskKind.READING_FILES, lambda st: tasks.route_files(list(paths), st), on_return=self._route, light=True)

    def _route(self, route: tasks.FileRoute) -> None:
        named = [p for p, role in route.folders if role is not None]  # their name says a slot
        asked = {p: self.ask_role(p) for p, role in route.folders if role is None}  # the user says
        photos = list(route.photos) + [p for p, r in asked.items() if r == "photos"]
        asked = {p: r for p, r in asked.items() if r in ROLES}
        self._pending += (len(route.data) + len(named) + len(asked) + bool(route.models or route.weights)
                          + bool(photos))
        if photos:
            self.open_photos(photos)
        for p in list(route.data) + named:  # by name, refined by the labels (one target = poisoned)
            self.open_data(p)
        for p, role in asked.items():
            self.open_data(p, role=role)
        if route.models or route.weights:
            self.open_model(route.models[0] if route.models else None, route.weights[0] if route.weights else None)
        if route.bad:
            p, why = route.bad[0]
            self.error.emit(f"{p}: {why}")
        if not self._pending:
            self.inputsReady.emit()

    def open_model(self, path, weights=None, allow_unsafe: bool = False) -> None:
        def refused(e):
            self._arrived()
            if isinstance(e, UnsafeModelError) and not allow_unsafe:
                self.progress.emit("idle", 0, 1)
                self.unsafeModel.emit(path, weights, str(e))
                return True
            return False

        if self.run(TaskKind.LOADING_MODEL, lambda st: tasks.open_model(path, weights, allow_unsafe, st),
                    on_return=self._model_opened, on_error=refused,
                    busy=f"Opening {Path(path or weights).name}…") is None:
            self._arrived()

    def _model_opened(self, opened: tasks.OpenedModel) -> None:
        lm = opened.model
        for role, why in self.session.set_model(lm, opened.default_layer):
            self.datasetChanged.emit(role, None)
            self.error.emit(why)
        for p in lm.input_files():
            self.fileOpened.emit(p)
        self.progress.emit("idle", 0, 1)
        self.message.emit(f"Opened {lm.name}: {lm.kind}, {lm.n_classes} classes")
        if opened.default_layer is None and not lm.is_goodnet:
            self.error.emit(f"{lm.path}: the model has no layer to prune (no Conv2D layer and no hidden Dense layer); "
                            "it can still be evaluated")
        self.modelOpened.emit(opened)
        self.photo_verdicts(self.session.step)
        self._arrived()

    def open_data(self, path, role: str | None = None) -> None:
        try:
            if role is not None:
                self.session.check_slot_free(role)
        except SlotBusy as e:
            self.error.emit(str(e))
            return
        m, resize = self.session.model, self.session.resize
        hwc = m.input_hwc if m is not None else None
        self.run(TaskKind.OPENING_DATA, lambda st: tasks.open_dataset(path, hwc, resize, st), light=True,
                 on_return=lambda v: self._data_opened(Path(path), role, *v),
                 on_error=lambda e: self._arrived())

    def _data_opened(self, path: Path, role: str | None, ds, guessed: str | None) -> None:
        try:
            if role is None and guessed is not None and guessed in self._dropped_poisoned:
                role = self.session.new_set_role(guessed, path)  # several triggers dropped at once
            role = role or self.session.role_for(guessed, path)
            if guessed is not None and is_poisoned(guessed) and self._pending:
                self._dropped_poisoned.add(guessed)
            if role is None:
                raise SlotBusy(f"{path}: all four data slots are full; clear one first")
            self.session.put_dataset(role, ds)
        except SlotBusy as e:
            ds.close()
            self.error.emit(str(e))
            self._arrived()
            return
        self.fileOpened.emit(path)
        self.message.emit(f"{role_title(role)}: {ds.describe()}")
        self._settle_sets()
        self.datasetChanged.emit(self._renamed.get(role, role), ds)
        self._arrived()

    def add_poisoned_set(self, path, base: str, name: str | None = None) -> None:
        """One more poisoned set (another trigger) for ``base`` ("poisoned_valid"/"poisoned_test"):
        a named slot of its own; the set already there takes its file's name."""
        try:
            taken = any(base_role(r) == base for r in self.session.datasets)  # plain or named
            role = self.session.new_set_role(base, path, name) if taken else base
        except SlotBusy as e:
            self.error.emit(str(e))
            return
        self.open_data(path, role=role)

    def _settle_sets(self) -> None:
        """One poisoned set per split keeps the plain slot, several are named: rename slots."""
        self._renamed = dict(self.session.settle_sets())
        for old, new in self._renamed.items():
            self.datasetChanged.emit(old, None)
            self.datasetChanged.emit(new, self.session.datasets[new])

    def clear_data(self, role: str) -> None:
        try:
            self.session.clear_dataset(role)
        except SlotBusy as e:
            self.error.emit(str(e))
            return
        self.datasetChanged.emit(role, None)
        self._settle_sets()

    def open_demo(self, variant: str = "badnet") -> None:

        def prepared(paths):
            for role in list(self.session.datasets):
                self.clear_data(role)
            self.open_set(paths.model, None, paths.datasets)

        self.run(TaskKind.PREPARING_DEMO, lambda st: tasks.prepare_demo(variant, st), on_return=prepared,
                 busy="Preparing the demo (its first use renders the data)…")

    def open_set(self, model, weights, datasets: dict) -> None:
        """A model and datasets by role; ``inputsReady`` once all of them have arrived."""
        self._pending += len(datasets) + 1
        for role, p in datasets.items():
            self.open_data(p, role=role)
        self.open_model(model, weights)

    def _arrived(self) -> None:
        if self._pending:
            self._pending -= 1
            if not self._pending:
                self._dropped_poisoned = set()
                self.inputsReady.emit()

    # ------------------------------------------------------------------ automation, the cache
    def wait_idle(self, timeout_ms: int = 60000) -> None:
        """Process events until no job runs (for automation and tests)."""
        import time

        from PySide6.QtWidgets import QApplication

        t = time.perf_counter()
        while not self.idle and (time.perf_counter() - t) * 1000 < timeout_ms:
            QApplication.processEvents()
            time.sleep(0.01)

    def clear_cache(self) -> None:
        from engine.io import cache
        from engine.io.hdf5 import human_bytes

        self.message.emit(f"Cleared {human_bytes(cache.clear())} of cached activations")
