"""One worker class for every long job (superqt's ``GeneratorWorker`` idea, kept small).

A task is a plain function ``task(state)`` (see :mod:`guiapp.tasks`) that returns a value or
a generator. Each value the generator yields is emitted as ``yielded`` — values, never objects
the job changes later. The generator's return value (or the plain return value) is emitted as
``returned``. ``paused`` / ``resumed`` are emitted when the job really stopped at a cancel point
and when it goes on; ``aborted`` when a cancel took effect; ``errored`` carries the exception
*object* (the window decides by its type, never by its text); ``warned`` carries each
:class:`PruneLabWarning`. ``finished`` comes last, always. The QThread / moveToThread /
deleteLater wiring is written here once: thread, runner and worker delete themselves."""

from __future__ import annotations

import traceback
import warnings
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.errors import Cancelled, PruneLabWarning
from engine.state import JobState


class _InThread(QObject):
    """Lives in the worker thread; runs the task and emits what happens."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    warned = Signal(object)
    aborted = Signal()
    paused = Signal()
    resumed = Signal()
    done = Signal()

    def __init__(self, task: Callable[[JobState], Any], state: JobState):
        super().__init__()
        self._task = task
        self.state = state
        state.on_pause = self.paused.emit
        state.on_resume = self.resumed.emit

    @Slot()
    def run(self) -> None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PruneLabWarning)
                out = self._task(self.state)
                if hasattr(out, "__next__"):
                    try:
                        while True:
                            item = next(out)
                            self._flush(caught)
                            self.yielded.emit(item)
                            self.state.cancel_point()
                    except StopIteration as stop:
                        out = stop.value
                self._flush(caught)
            self.returned.emit(out)
        except Cancelled:
            self.aborted.emit()
        except Exception as e:  # noqa: BLE001 - every error reaches the one GUI-side handler
            if not isinstance(e, (MemoryError,)) and type(e).__module__.split(".")[0] != "engine":
                traceback.print_exc()  # a bug of ours: keep the traceback on the terminal
            self.errored.emit(e)
        finally:
            self.done.emit()

    def _flush(self, caught: list) -> None:
        while caught:
            w = caught.pop(0)
            if isinstance(w.message, PruneLabWarning):
                self.warned.emit(w.message)


class Worker(QObject):
    """Handle of one job in its own thread: ``start()``, ``pause()``, ``resume()``, ``cancel()``."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    warned = Signal(object)
    aborted = Signal()
    paused = Signal()
    resumed = Signal()
    finished = Signal()

    def __init__(self, task: Callable[[JobState], Any], name: str = "job", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.state = JobState()
        self.running = False
        self.is_paused = False
        self._thread = QThread()
        self._thread.setObjectName(f"prunelab-{name}")
        self._runner = _InThread(task, self.state)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        for sig in ("yielded", "returned", "errored", "warned", "aborted"):
            getattr(self._runner, sig).connect(getattr(self, sig))
        self._runner.paused.connect(self._on_paused)
        self._runner.resumed.connect(self._on_resumed)
        self._runner.done.connect(self._thread.quit)
        self._runner.done.connect(self._runner.deleteLater)
        self._thread.finished.connect(self._on_thread_finished)

    def start(self) -> "Worker":
        self.running = True
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.state.cancel()

    def pause(self) -> None:
        """Ask the job to stop at its next cancel point; ``paused`` says when it has."""
        self.state.pause()

    def resume(self) -> None:
        self.state.resume()

    @property
    def pause_requested(self) -> bool:
        return self.state.paused

    def wait(self, ms: int = 30000) -> bool:
        return self._thread.wait(ms)

    def _on_paused(self) -> None:
        self.is_paused = True
        self.paused.emit()

    def _on_resumed(self) -> None:
        self.is_paused = False
        self.resumed.emit()

    def _on_thread_finished(self) -> None:
        self.running = False
        self.finished.emit()
        self._thread.deleteLater()
        self.deleteLater()
