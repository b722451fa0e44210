"""The window's dialogs: fine-tuning parameters, the model's layers, an error, a question."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QHeaderView,
                               QLabel, QMessageBox, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout)

def about_text() -> str:
    from engine.core.version import version

    return (f"<b>PruneLab</b> {version()}<br>Finds, removes and detects BadNet backdoors in image classifiers: "
            "pruning (Liu, Dolan-Gavitt &amp; Garg, Fine-Pruning, RAID 2018) and the backdoor detector G.")


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


SMALL_FINE_TUNE = 200  # fewer training images than this: fine-tuning likely overfits them


def few_images_question(n_clean: int, params: dict) -> tuple[str, str] | None:
    """The (title, question) to confirm before fine-tuning on the clean validation set's ``n_clean``
    images (``params``: the dialog's values), when it leaves too few to train on; else None."""
    n_train = int(n_clean * (1 - params.get("holdout", 0.2)))
    if n_train >= SMALL_FINE_TUNE:
        return None
    return ("Fine-tune on a handful of images?",
            f"Fine-tuning would train on only {n_train} clean validation image{'s' * (n_train != 1)}: "
            f"{params['epochs']} epochs on so few usually overfit them and destroy the accuracy on "
            "everything else. Fine-tune anyway?")


def layers_dialog(model, pruned_layer: str, parent=None) -> QDialog:
    """A table of the model's layers (name, type, output shape, parameters)."""
    rows = model.layer_table()
    dlg = QDialog(parent)
    dlg.setWindowTitle(f"Layers of {model.name}")
    lay = QVBoxLayout(dlg)
    t = QTableWidget(len(rows), 4)
    t.setHorizontalHeaderLabels(["name", "type", "output shape", "params"])
    for i, r in enumerate(rows):
        for j, v in enumerate((r.name, r.kind, r.output_shape, f"{r.params:,}")):
            t.setItem(i, j, QTableWidgetItem(v))
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    lay.addWidget(t)
    lay.addWidget(QLabel(f"total {sum(r.params for r in rows):,} parameters · pruning {pruned_layer or '—'}"))
    bb = QDialogButtonBox(QDialogButtonBox.Close)
    bb.rejected.connect(dlg.reject)
    lay.addWidget(bb)
    dlg.resize(560, 480)
    return dlg


def error_box(message: str, parent=None) -> QMessageBox:
    """A window-modal error with the one-line cause; shown with ``open()`` so nothing blocks."""
    box = QMessageBox(QMessageBox.Critical, "PruneLab", message, QMessageBox.Ok, parent)
    box.setObjectName("errorDialog")
    box.setWindowModality(Qt.WindowModal)
    box.open()
    return box


def confirm_unsafe(message: str, parent=None) -> bool:
    r = QMessageBox.warning(parent, "Unsafe model", f"{message}\n\nLoading this model can run code stored "
                            "in the file. Load it anyway?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return r == QMessageBox.Yes


def ask_save_model(parent, which: str, tag: str, folder: str):
    """Ask where to save B′ (``which="bprime"``) or G; ``tag`` names the file ("step12",
    "finetuned_step12"). A name without a suffix becomes ``.keras``; None if cancelled."""
    from pathlib import Path

    from PySide6.QtWidgets import QFileDialog

    default = f"B_prime_{tag}.h5" if which == "bprime" else f"G_{tag}.keras"
    filt = "Keras 3 (*.keras);;Keras legacy HDF5 (*.h5)" if which == "bprime" else "Keras 3 (*.keras)"
    title = "Save B′ (the repaired model)" if which == "bprime" else "Save G (the detector)"
    path = QFileDialog.getSaveFileName(parent, title, str(Path(folder) / default), filt)[0]
    return (Path(path) if Path(path).suffix else Path(path).with_suffix(".keras")) if path else None


def confirm(title: str, message: str, parent=None) -> bool:
    r = QMessageBox.warning(parent, title, message, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return r == QMessageBox.Yes


def ask_role(path, parent=None):
    """Which slot a folder goes to when its name does not say (several folders dropped at once):
    a role, "photos" (browse only), or None (skip it)."""
    from PySide6.QtWidgets import QInputDialog

    from engine.core.vocabulary import ROLE_TITLES, ROLES

    choices = [ROLE_TITLES[r] for r in ROLES] + ["Images to browse (no slot)", "Skip this folder"]
    text, ok = QInputDialog.getItem(parent, "Which data is this folder?",
                                    f"{path}\n\nIts name does not say whether it is clean or poisoned, validation or "
                                    "test data. Put it in:", choices, 0, False)
    if not ok or text == choices[-1]:
        return None
    if text == choices[-2]:
        return "photos"
    return ROLES[choices.index(text)]
