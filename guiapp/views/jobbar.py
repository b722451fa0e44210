"""The bar at the bottom: what runs, how far it is, time left, Pause / Resume and Cancel."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

from guiapp.kinds import TaskKind


class JobBar(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        self.pause_btn = QPushButton("Pause")
        self.cancel_btn = QPushButton("Cancel")
        lay.addWidget(self.progress, 1)
        lay.addWidget(self.pause_btn)
        lay.addWidget(self.cancel_btn)
        self.set_busy(None)
        self._t0: float | None = None
        self._phase = ""

    def set_busy(self, kind: TaskKind | None) -> None:
        """``kind`` of the task that holds the slot, None when none does."""
        self.cancel_btn.setEnabled(kind is not None)
        self.pause_btn.setEnabled(kind is TaskKind.SWEEP)  # only a sweep pauses
        self.pause_btn.setText("Pause")
        self._t0 = None

    def set_paused(self, paused: bool) -> None:
        """Called when the pause really took effect (or the job went on)."""
        self.pause_btn.setText("Resume" if paused else "Pause")
        if paused:
            self.progress.setFormat("paused · " + self.progress.format())
        self._t0 = None  # time left restarts from the next step

    def show_progress(self, text: str, done: int, total: int) -> None:
        if total <= 0:  # busy, no count
            self.progress.setRange(0, 0)
            self.progress.setFormat(text)
            return
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        phase = text.split(":")[0]
        if phase != self._phase or self._t0 is None:
            self._phase, self._t0, self._d0 = phase, time.perf_counter(), done
        left = ""
        if done > self._d0 and done < total:
            per = (time.perf_counter() - self._t0) / (done - self._d0)
            left = f" · {per * (total - done):.0f} s left"
        self.progress.setFormat(f"{text} · %p %{left}" if done < total else text)
