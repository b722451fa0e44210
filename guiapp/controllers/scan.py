"""The Scan tab's commands: run the blind scan on the open model and clean validation data, use
its reversed trigger as poisoned data (stamped stand-ins in the poisoned slots), save the scan
folder. The task functions are in :mod:`guiapp.scantasks`."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.core.state import Progress
from guiapp import scantasks
from guiapp.kinds import TaskKind
from guiapp.session import SlotBusy


class ScanController(QObject):
    scanStarted = Signal()
    scanFinished = Signal(object)  # scantasks.ScanDone
    scanCancelled = Signal()
    standinsReady = Signal(object)  # {poisoned role: Path}

    def __init__(self, ctl, parent: QObject | None = None):
        super().__init__(parent or ctl)
        self.ctl = ctl
        self.done: scantasks.ScanDone | None = None  # the last finished scan
        self.folders: list[Path] = []  # the stand-ins' temporary folders, removed by cleanup()

    @property
    def session(self):
        return self.ctl.session

    def triggers(self, model=None) -> list | None:
        """The last scan's triggers for its flagged labels (most suspicious first), when it scanned
        the model now open; None when no scan of it ran."""
        d, m = self.done, model or self.session.model
        if d is None or m is None or d.model_path != str(m.path):
            return None
        r = d.result
        return [r.triggers[t] for t in r.flagged if t in r.triggers]

    def start(self, seed: int = 0, budget: int | None = None, labels=None) -> bool:
        s, c = self.session, self.ctl
        if s.model is None:
            c.error.emit("Open a model first (File ▸ Open model, or the demo)")
            return False
        if "clean_valid" not in s.datasets:
            c.error.emit("The scan needs clean validation data: drop it on the 'Clean validation' slot")
            return False
        model, clean, layer = s.model, s.datasets["clean_valid"], s.default_layer

        def record(ev):
            if isinstance(ev, Progress):
                c.progress.emit(f"scan: {ev.phase}: {ev.text}", ev.done, ev.total)

        def finished(done):
            self.done = done
            r = done.result
            c.progress.emit(f"scan done in {r.seconds:.0f} s", 1, 1)
            c.message.emit(f"Scan: backdoor, label(s) {', '.join(map(str, r.flagged))} flagged" if r.flagged
                           else "Scan: no evidence of a backdoor")
            self.scanFinished.emit(done)

        def task(st):
            return scantasks.run_scan(model, clean, st, seed=seed, budget=budget, labels=labels, layer=layer)

        w = c.run(TaskKind.SCAN, task, roles=("clean_valid",), on_yield=record, on_return=finished,
                  on_abort=self.scanCancelled.emit, busy="Scanning: reading the clean images…")
        if w is not None:
            self.scanStarted.emit()
        return w is not None

    def forget_other(self, model_path: str) -> bool:
        """Forget the last scan when it described another model than ``model_path`` (just opened);
        True when one was forgotten (its tab then shows none)."""
        if self.done is None or self.done.model_path == model_path:
            return False
        self.done = None
        return True

    def use_as_poisoned(self, label: int | None = None) -> bool:
        """Stamp clean validation (and clean test) with the reversed trigger of ``label`` (the
        most suspicious flagged one by default) and put the stand-ins in the poisoned slots."""
        s, c, d = self.session, self.ctl, self.done
        if d is None:
            return False
        r = d.result
        label = label if label is not None else (r.flagged[0] if r.flagged else None)
        if label is None or label not in r.triggers:
            c.error.emit("The scan reversed no trigger to use: it found no evidence of a backdoor")
            return False
        roles = [p for p, src in scantasks.STANDIN_FOR.items() if src in s.datasets]
        for role in roles:
            try:
                s.check_slot_free(role)
            except SlotBusy as e:  # a running task reads that slot
                c.error.emit(str(e))
                return False
        trig, inputs = r.triggers[label], s.inputs()
        sources = {src: s.datasets[src] for src in scantasks.STANDIN_FOR.values() if src in s.datasets}

        def written(paths):
            self.folders.extend({Path(p).parent for p in paths.values()})
            c.progress.emit(f"stand-in poisoned data: reversed trigger, label {label}", 1, 1)
            for role, p in paths.items():
                c.open_data(Path(p), role=role)
            self.standinsReady.emit(paths)

        return c.run(TaskKind.STAMPING, lambda st: scantasks.write_standins(trig, sources, inputs, st),
                     roles=tuple(sources), on_return=written,
                     busy=f"Stamping the reversed trigger of label {label} on the clean images…") is not None

    def save(self, folder: Path) -> bool:
        s, c, d = self.session, self.ctl, self.done
        if d is None or s.model is None:
            c.error.emit("Run a scan first")
            return False
        model, clean, inputs = s.model, s.datasets.get("clean_valid"), s.inputs()
        return c.run(TaskKind.SAVING, lambda st: scantasks.save_scan(d, model, clean, Path(folder), inputs, st),
                     roles=("clean_valid",), on_return=lambda p: c._saved(p, "Scan written"),
                     busy=f"Writing the scan folder {Path(folder).name}…") is not None

    def cleanup(self) -> None:
        """Remove the stand-ins' temporary folders (when the window closes, its datasets closed)."""
        import shutil

        for d in self.folders:
            shutil.rmtree(d, ignore_errors=True)
        self.folders = []
