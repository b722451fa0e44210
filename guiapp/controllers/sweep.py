"""The sweep's commands of the window: start it (one criterion, or several side by side), apply
a picked input scale, and make one criterion's sweep the result the cursor acts on. Mixed into
:class:`guiapp.controller.Controller`, whose task runner, session and signals they use."""

from __future__ import annotations

from engine.core.state import Progress
from engine.models.scale import ScaleDecision
from engine.pruning.criteria import DEFAULT
from engine.pruning.rankings import RankingStep
from guiapp import tasks
from guiapp.kinds import TaskKind


class SweepMixin:
    def start_sweep(self, layer: str | None, thresholds, step_size: int | str = 1,
                    rankings=(DEFAULT,), random_seeds: int = 1, input_scale: str = "auto") -> bool:
        s = self.session
        if s.model is None:
            self.error.emit("Open a model first (File ▸ Open model, or the demo)")
            return False
        if "clean_valid" not in s.datasets:
            self.error.emit("The ranking needs clean validation data: drop it on the 'Clean validation' slot")
            return False
        model, datasets = s.model, dict(s.datasets)

        def record(ev):
            if isinstance(ev, ScaleDecision):
                self.inputScale.emit(ev.text)
                if ev.source == "detected":
                    self.message.emit(ev.line())
            elif isinstance(ev, tasks.SweepStarted):
                if ev.fallback_reason:
                    self.warning.emit(f"naive loop (no fast path): {ev.fallback_reason}")
                self.sweepStarted.emit(ev)
            elif isinstance(ev, Progress):
                self.progress.emit(ev.text, ev.done, ev.total)
            elif isinstance(ev, RankingStep):  # one criterion's step, when several are swept
                self.rankingRecord.emit(ev.name, ev.record)
            else:
                if ev.reached:
                    self.message.emit(f"Step {ev.step}: clean validation accuracy dropped ≥ "
                                      f"{', '.join(f'{t:g}' for t in ev.reached)} %")
                self.stepRecord.emit(ev)

        def finished(result):
            if isinstance(result, tasks.RankingsDone):
                s.rankings = result
                self.rankingsFinished.emit(result)
                s.ranking, result = next(iter(result.results.items()))  # the first criterion is picked first
            s.set_result(result)
            self.sweepFinished.emit(result)

        names = list(rankings)
        if names == [DEFAULT] and random_seeds == 1:
            task = lambda st: tasks.run_sweep(model, datasets, layer, thresholds, st, step_size,  # noqa: E731
                                              input_scale)
        else:
            task = lambda st: tasks.run_rankings(model, datasets, names, layer, thresholds,  # noqa: E731
                                                 random_seeds, step_size, st, input_scale)

        started = self.run(TaskKind.SWEEP, task, roles=tuple(datasets), on_yield=record, on_return=finished,
                           on_abort=self.sweepCancelled.emit, busy="computing activations…") is not None
        if started:
            s.set_result(None)  # the previous sweep no longer describes what is on screen
            s.rankings = None
            s.ranking = names[0]
        return started

    def set_input_scale(self, choice: str) -> None:
        """A convention the user picked applies at once (maps, photos); ``auto`` is measured at the
        next sweep, when clean validation data is there."""
        from engine.models.scale import decide

        m = self.session.model
        if m is None:
            return
        if choice == "auto":
            self.inputScale.emit("auto (measured when the sweep starts)")
            return
        self.inputScale.emit(decide(m, choice, None, say=False).text)
        if self.session.result is not None:
            self.message.emit("Input scale changed: start a new sweep (Ctrl+R) to see its results")

    def pick_ranking(self, name: str) -> None:
        """Make one criterion's sweep the result that the cursor, saves and fine-tuning act on."""
        r = self.session.rankings
        if r is not None and name in r.results and r.results[name] is not self.session.result:
            step = self.session.step
            self.session.set_result(r.results[name])
            self.session.ranking = name
            self.rankingPicked.emit(name, r.results[name], step)
