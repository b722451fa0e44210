"""Fine-tuning the pruned model B′ from a step: its epochs to the curves as they finish, the
fine-pruned model kept in the session. Mixed into :class:`guiapp.controller.Controller`, whose
task runner, session and signals it uses."""

from __future__ import annotations

from engine.core.state import Progress
from guiapp import tasks
from guiapp.kinds import TaskKind


class FineTuneMixin:
    def fine_tune(self, step: int, params: dict) -> None:
        s = self.session
        if s.result is None:
            return
        model, datasets, res = s.model, dict(s.datasets), s.result
        epochs: list = []

        def record(ev):
            if isinstance(ev, Progress):
                self.progress.emit(f"fine-tuning from step {step}: {ev.text}", ev.done, ev.total)
            else:
                epochs.append(ev)
                self.fineTuneEpochs.emit(step, list(epochs))

        def finished(ft):
            s.fine_tuned.append(ft)
            self.progress.emit(f"fine-tuned {ft.config.epochs} epochs", 1, 1)
            self.fineTuneFinished.emit(ft)

        if self.run(TaskKind.FINE_TUNING, lambda st: tasks.run_fine_tune(model, datasets, res, step, params, st),
                    roles=tuple(datasets), on_yield=record, on_return=finished,
                    busy=f"Fine-tuning from step {step}…") is not None:
            self.fineTuneEpochs.emit(step, [])
