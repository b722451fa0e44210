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

import os
import threading
import traceback
import warnings
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from engine.core.errors import Cancelled, PruneLabWarning
from engine.core.state import JobState

_current = threading.local()  # the runner of the job running on this thread, if any
_hook_lock = threading.Lock()
_previous: list = []  # the showwarning that was in place when ours went in


def _show(message, category, filename, lineno, file=None, line=None):
    runner = getattr(_current, "runner", None)
    if runner is not None and isinstance(message, PruneLabWarning):
        runner.warned.emit(message)
    elif _previous:
        _previous[0](message, category, filename, lineno, file, line)


def _route_warnings() -> None:
    """Put in (again, if something replaced it) a ``showwarning`` that hands a PruneLabWarning
    raised on a worker thread to that worker; anything else goes where it went before.
    (``warnings.catch_warnings`` is process-wide: one thread's ``record=True`` would swallow
    another thread's warnings.)"""
    with _hook_lock:
        if warnings.showwarning is not _show:
            _previous[:] = [warnings.showwarning]
            warnings.showwarning = _show
        warnings.simplefilter("always", PruneLabWarning)  # every warning, not once per place


def _yield_cpu_to_window() -> None:
    """Lower this worker thread's scheduling priority (Linux: nice is per thread; the thread
    pools TensorFlow starts from it inherit it), so that on a busy machine the window's thread is
    served first and the curves keep moving. Elsewhere a no-op."""
    if os.environ.get("PRUNELAB_WORKER_NICE", "1") == "0":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError, ValueError):
        pass


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
        _current.runner = self
        _yield_cpu_to_window()
        try:
            out = self._task(self.state)
            if hasattr(out, "__next__"):
                try:
                    while True:
                        self.yielded.emit(next(out))
                        self.state.cancel_point()
                except StopIteration as stop:
                    out = stop.value
            self.returned.emit(out)
        except Cancelled:
            self.aborted.emit()
        except Exception as e:  # noqa: BLE001 - every error reaches the one GUI-side handler
            if not isinstance(e, (MemoryError,)) and type(e).__module__.split(".")[0] != "engine":
                traceback.print_exc()  # a bug of ours: keep the traceback on the terminal
            self.errored.emit(e)
        finally:
            _current.runner = None
            # destroyed in the window's thread, never in this one: here its destructor held Qt's
            # connection lock while it waited for the GIL, which the window's thread held while
            # it waited for that lock (a deadlock, caught with py-spy in a full test run)
            app = QCoreApplication.instance()
            if app is not None:
                self.moveToThread(app.thread())
            self.done.emit()


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
        # quit from the worker thread itself: a GUI thread blocked in wait() could not run a queued quit
        self._runner.done.connect(self._thread.quit, Qt.DirectConnection)
        self._runner.done.connect(self._runner.deleteLater)
        self._thread.finished.connect(self._on_thread_finished)

    def start(self) -> "Worker":
        _route_warnings()
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
