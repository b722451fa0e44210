"""'Fine-tune from here…': parameters, then a job whose epochs stream as dashed curves."""

from __future__ import annotations

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QLabel,
                               QSpinBox)


class FineTuneDialog(QDialog):
    def __init__(self, step: int, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Fine-tune B' from step {step}")
        form = QFormLayout(self)
        form.addRow(QLabel("Fine-pruning (Liu et al., 2018): train the pruned network briefly on clean\n"
                           "validation data; pruned channels stay at zero. A held-out part is never trained on."))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.batch.setValue(64)
        self.holdout = QSpinBox()
        self.holdout.setRange(5, 90)
        self.holdout.setValue(20)
        self.holdout.setSuffix(" %")
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate (Adam)", self.lr)
        form.addRow("Batch size", self.batch)
        form.addRow("Held out of clean validation", self.holdout)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        form.addRow(bb)

    def values(self) -> dict:
        return {"epochs": self.epochs.value(), "learning_rate": self.lr.value(),
                "batch_size": self.batch.value(), "holdout": self.holdout.value() / 100}


def run_fine_tune(win, step: int, params: dict) -> None:
    """Start the fine-tuning job on ``win`` (a MainWindow) from ``step`` of its sweep."""
    from engine.finetune import EpochRecord, FineTune, FineTuneConfig
    from engine.sweep import Progress

    res = win.result
    cfg = FineTuneConfig(**{k: v for k, v in params.items() if v is not None})
    model, datasets = win.model, dict(win.datasets)
    epochs: list = []
    holder = {}

    def job(state):
        ft = FineTune(model, datasets, res.layer, res.pruned_channels(step), step, cfg, state)
        holder["ft"] = ft
        return ft.events()

    def on_event(ev):
        if isinstance(ev, Progress):
            win.progress.setRange(0, ev.total)
            win.progress.setValue(ev.done)
            win.progress.setFormat(f"fine-tuning from step {step}: {ev.text}")
        elif isinstance(ev, EpochRecord):
            epochs.append(ev)
            win.curves.set_fine_tune(step, epochs)
            if ev.epoch:
                win.statusBar().showMessage(
                    f"Fine-tuning epoch {ev.epoch}/{cfg.epochs}: clean (held-out) {ev.clean_valid_acc:.2f} %"
                    + (f", ASR {ev.asr_valid:.2f} %" if ev.asr_valid is not None else ""))

    def done(_):
        ft = holder["ft"].result
        win.fine_tuned.append(ft)
        entries = [(f"fine-pruned @{f.step} ({f.config.epochs} ep)", f.step, f.evaluation()) for f in win.fine_tuned]
        win.results.set_fine_tuned(entries)
        win._reset_progress(f"fine-tuned {cfg.epochs} epochs")
        a, b = ft.records[0], ft.records[-1]
        win.statusBar().showMessage(
            f"Fine-pruned from step {step}: clean (held-out) {a.clean_valid_acc:.1f} → {b.clean_valid_acc:.1f} %"
            + (f", ASR {a.asr_valid:.1f} → {b.asr_valid:.1f} %" if a.asr_valid is not None else ""), 15000)
        win.fineTuneFinished.emit(ft)

    win.curves.set_fine_tune(step, [])
    win._busy(f"Fine-tuning from step {step}…")
    win._run("fine-tuning", job, on_event=on_event, on_done=done,
             on_cancel=lambda: win._reset_progress("fine-tuning cancelled"))
