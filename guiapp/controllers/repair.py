"""The Repair tab's commands: run unlearning, the trigger filter and STRIP on the open model (with
the Scan tab's reversed triggers when a scan of this model ran; else the engine scans first),
and save each G with its eval script. The task functions are in :mod:`guiapp.scantasks`."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.core.state import Progress
from guiapp import scantasks
from guiapp.kinds import TaskKind


class RepairController(QObject):
    repairStarted = Signal()
    repairFinished = Signal(object)  # engine.analysis.repair.RepairResult
    repairCancelled = Signal()
    points = Signal(list)  # engine.report.compare.NamedPoint per repaired model / G

    def __init__(self, ctl, scan=None, parent: QObject | None = None):
        super().__init__(parent or ctl)
        self.ctl = ctl
        self.scan = scan  # the ScanController whose triggers are used
        self.result = None  # the last RepairResult
        self.model_path: str | None = None  # the model it repaired
        self.last_points: list = []  # its points on the trade-off plot, shown again after a new sweep

    @property
    def session(self):
        return self.ctl.session

    def start(self, methods, frr: float = 1.0, epochs: int = 5, strip_n: int = 10, seed: int = 0) -> bool:
        s, c = self.session, self.ctl
        if s.model is None:
            c.error.emit("Open a model first (File ▸ Open model, or the demo)")
            return False
        if "clean_valid" not in s.datasets:
            c.error.emit("Repair needs clean validation data: drop it on the 'Clean validation' slot")
            return False
        if not methods:
            c.error.emit("Tick at least one repair method")
            return False
        model, datasets = s.model, dict(s.datasets)
        triggers = self.scan.triggers(model) if self.scan is not None else None

        def record(ev):
            if isinstance(ev, Progress):
                c.progress.emit(f"repair: {ev.phase}: {ev.text}", ev.done, ev.total)

        def finished(res):
            self.result, self.model_path = res, str(model.path)
            if s.model is model:
                s.repair = res  # its Gs' answers join B's in the image browser
            c.progress.emit(f"repair done in {res.seconds:.0f} s", 1, 1)
            c.message.emit("Repair finished: the comparison is in the Repair tab")
            self.repairFinished.emit(res)
            self.last_points = scantasks.repair_points(res)
            self.points.emit(self.last_points)

        w = c.run(TaskKind.REPAIR, lambda st: scantasks.run_repair(model, datasets, triggers, list(methods), frr, st,
                                                            epochs=epochs, strip_n=strip_n, seed=seed),
                  roles=tuple(datasets), on_yield=record, on_return=finished, on_abort=self.repairCancelled.emit,
                  busy="Repairing…" if triggers is not None else "Repairing (scanning for the trigger first)…")
        if w is not None:
            self.repairStarted.emit()
        return w is not None

    def forget_other(self, model_path: str) -> bool:
        """Forget the last repair when it repaired another model than ``model_path`` (just
        opened); True when one was forgotten (its tab and trade-off points then show none)."""
        if self.model_path in (None, model_path):
            return False
        self.result, self.model_path, self.last_points = None, None, []
        return True

    def points_for(self, model_path: str) -> list:
        """The last repair's trade-off points when it repaired ``model_path``, else none."""
        return list(self.last_points) if self.model_path == model_path else []

    def save(self, key: str, path: Path) -> bool:
        """Save G ``key`` (unlearned, filter, strip, combined) of the last repair, with its eval script."""
        s, c, res = self.session, self.ctl, self.result
        if res is None or key not in res.goodnets:
            c.error.emit("Run the repair first: it made no such G")
            return False
        inputs = s.inputs()
        return c.run(TaskKind.SAVING, lambda st: scantasks.save_repaired(res, key, Path(path), inputs, st),
                     on_return=lambda p: c._saved(p, f"Saved G ({key}) and its eval script"),
                     busy=f"Saving {Path(path).name}…") is not None
