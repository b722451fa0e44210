"""What the Activations, Images and Results tabs share: they show one sweep result at one step."""

from __future__ import annotations


class StepView:
    result = None
    step = 0

    def show_result(self, result, step: int = 0) -> None:
        self.result = result
        self.step = step
        self.refresh()

    def refresh(self) -> None:  # pragma: no cover - every view defines it
        raise NotImplementedError
