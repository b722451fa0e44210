"""The window's saves: B′ or G at a step, a fine-pruned model, the report folder; each refuses
to overwrite an opened file. Mixed into :class:`guiapp.controller.Controller`, whose task runner,
session and signals they use (the Scan and Repair controllers report through ``_saved`` too)."""

from __future__ import annotations

from pathlib import Path

from guiapp import tasks
from guiapp.kinds import TaskKind


class SavingMixin:
    def save_model(self, which: str, step: int, path: Path) -> None:
        s = self.session
        if s.result is None or s.model is None:
            return
        model, res, inputs = s.model, s.result, s.inputs()
        self.run(TaskKind.SAVING, lambda st: tasks.run_save(model, res, which, step, path, inputs, st),
                 on_return=lambda p: self._saved(p, f"Saved {'B′' if which == 'bprime' else 'G'} at step {step}"),
                 busy=f"Saving {path.name}…")

    def save_fine_tuned(self, which: str, index: int, path: Path) -> None:
        s = self.session
        if not s.fine_tuned:
            return
        ft, model, inputs = s.fine_tuned[index], s.model, s.inputs()
        self.run(TaskKind.SAVING, lambda st: tasks.run_save_fine_tuned(model, ft, which, path, inputs, st),
                 on_return=lambda p: self._saved(p, "Saved the fine-pruned model"), busy=f"Saving {path.name}…")

    def export(self, folder: Path) -> None:
        s = self.session
        if s.result is None:
            self.error.emit("Run a sweep first; the report describes a finished sweep")
            return
        model, res, inputs, step = s.model, s.result, s.inputs(), s.step
        datasets = {r: d for r, d in s.datasets.items() if s.result_covers(r)}
        self.run(TaskKind.EXPORT, lambda st: tasks.run_export(model, res, datasets, folder, inputs, step, st),
                 roles=tuple(datasets), on_return=lambda p: self._saved(p, "Report, B′ and G written"),
                 busy="Writing the report, B′ and G…")

    def _saved(self, path, what: str) -> None:
        self.progress.emit(f"saved {Path(path).name}", 1, 1)
        self.message.emit(f"{what} to {path}")
        self.saved.emit(str(path))
