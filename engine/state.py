"""The small state object a long job polls between steps (Orange3 style): cancel and pause
flags, so the same generator runs under the CLI, in a QThread, or in a plain test."""

from __future__ import annotations

import threading

from engine.errors import Cancelled


class JobState:
    def __init__(self):
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()

    # called from the controlling side (GUI thread, signal handler, test)
    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # called from the worker between steps (a cancel point; "checkpoint" means a threshold step)
    def cancel_point(self) -> None:
        """Block while paused; raise Cancelled if the user cancelled."""
        while not self._running.wait(0.1):
            pass
        if self._cancel.is_set():
            raise Cancelled()
