"""The small state object a long job polls between steps (Orange3 style): cancel and pause
flags, so the same generator runs under the CLI, in a QThread, or in a plain test."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from engine.core.errors import Cancelled

# A plain ``progress(done, total)`` function a caller hands in (maps, ANP, image folders), as
# opposed to :class:`Progress`, the record a job's generator yields.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Progress:
    """What every long job yields between units of work: the phase ("activations", "steps",
    "ranking", "fine-tuning", "scan" …), units done of total, and a line for people."""

    phase: str
    done: int
    total: int
    text: str = ""


class JobState:
    """``on_pause`` / ``on_resume`` are called from the job's own thread when the pause really
    takes effect (the job reached a cancel point and stopped) and when it goes on again — so a
    window can say "paused" only once nothing runs any more."""

    def __init__(self, on_pause: Callable[[], None] | None = None,
                 on_resume: Callable[[], None] | None = None):
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.on_pause = on_pause
        self.on_resume = on_resume

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
        if not self._running.is_set():
            if self.on_pause:
                self.on_pause()
            while not self._running.wait(0.1):
                pass
            if self.on_resume and not self._cancel.is_set():
                self.on_resume()
        if self._cancel.is_set():
            raise Cancelled()


def drive(events, on_event=None):
    """Run a job generator to its end and return what it returns (``StopIteration.value``);
    ``on_event`` sees each value it yields (Progress, records …). The CLI and the plain
    ``run_*`` helpers use it; the window's worker iterates the generator itself."""
    while True:
        try:
            ev = next(events)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(ev)
