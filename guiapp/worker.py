"""Running engine jobs off the GUI thread.

A job is a plain function ``job(state) -> iterator | value`` taking the engine's JobState
(cancel/pause flags). If it returns an iterator, every item it yields is emitted as
``event``; the iterator's final value (or the plain return value) is emitted as ``done``.
Errors are caught in the worker and emitted as ``failed`` with a one-line message; the GUI
handles them in one place. The QThread/moveToThread/deleteLater wiring lives here, once."""

from __future__ import annotations

import traceback
from typing import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.errors import Cancelled, PruneLabError
from engine.state import JobState


class _Runner(QObject):
    event = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, job: Callable, state: JobState):
        super().__init__()
        self._job = job
        self._state = state

    @Slot()
    def run(self) -> None:
        import warnings

        from engine.errors import PruneLabWarning

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PruneLabWarning)
                out = self._job(self._state)
                if hasattr(out, "__next__"):
                    try:
                        while True:
                            item = next(out)
                            self._flush_warnings(caught)
                            self.event.emit(item)
                            self._state.cancel_point()
                    except StopIteration as stop:
                        out = stop.value
                self._flush_warnings(caught)
            self.done.emit(out)
        except Cancelled:
            self.cancelled.emit()
        except PruneLabError as e:
            self.failed.emit(str(e))
        except MemoryError:
            self.failed.emit("out of memory")
        except Exception as e:  # a bug: still a dialog, never a dead window
            traceback.print_exc()
            self.failed.emit(f"internal error ({type(e).__name__}: {' '.join(str(e).split())[:300]})")
        finally:
            self.finished.emit()

    def _flush_warnings(self, caught: list) -> None:
        from engine.errors import PruneLabWarning

        while caught:
            w = caught.pop(0)
            if isinstance(w.message, PruneLabWarning):
                self.event.emit(w.message)


class Job(QObject):
    """Handle of a running job: ``cancel()``, ``pause()``, ``resume()``, and the signals."""

    event = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, job: Callable, name: str = "job", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.state = JobState()
        self._thread = QThread()
        self._thread.setObjectName(f"prunelab-{name}")
        self._runner = _Runner(job, self.state)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.event.connect(self.event)
        self._runner.done.connect(self.done)
        self._runner.failed.connect(self.failed)
        self._runner.cancelled.connect(self.cancelled)
        self._runner.finished.connect(self._thread.quit)
        self._thread.finished.connect(self._on_thread_finished)
        self.running = False

    def start(self) -> "Job":
        self.running = True
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.state.cancel()

    def pause(self) -> None:
        self.state.pause()

    def resume(self) -> None:
        self.state.resume()

    @property
    def paused(self) -> bool:
        return self.state.paused

    @property
    def busy(self) -> bool:
        return self.running

    def wait(self, ms: int = 30000) -> bool:
        return self._thread.wait(ms)

    def _on_thread_finished(self) -> None:
        self.running = False
        self._runner.deleteLater()
        self.finished.emit()
