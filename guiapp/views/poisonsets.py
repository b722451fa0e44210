"""The "+ another trigger" dialog: a poisoned file (or folder of images) and the name its ASR
curve, its column (``asr_valid_<name>``) and its slot carry."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QWidget)

from engine.core.vocabulary import SET_NAME_CHARS, base_role, role_title, set_name, valid_set_name

FILTER = "Lab datasets (*.h5 *.hdf5);;Images (*.png *.jpg *.jpeg);;All files (*)"


def default_name(path: str) -> str:
    """A set's name from its file: the stem in the characters a column name allows."""
    stem = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in Path(path).stem)
    return stem.lstrip("_-")[:40]


class PoisonedSetDialog(QDialog):
    """Pick the file and name the trigger; OK only with a file and a free, valid name."""

    def __init__(self, base: str, start_dir: str, taken=(), parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Another trigger: {role_title(base).lower()}")
        self.start_dir, self.taken = start_dir, set(taken)
        form = QFormLayout(self)
        form.addRow(QLabel("Each trigger's poisoned data (every image labelled with its target) becomes a named set "
                           "with its own ASR curve."))
        self.path = QLineEdit()
        self.path.setObjectName("setPath")
        self.path.setPlaceholderText("a lab .h5 file or a folder of images")
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(self.path, 1)
        for text, folder in (("File…", False), ("Folder…", True)):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, f=folder: self._browse(f))
            h.addWidget(b)
        form.addRow("Data:", row)
        self.name = QLineEdit()
        self.name.setObjectName("setName")
        self.name.setPlaceholderText("e.g. eyebrows, lipstick, sunglasses")
        form.addRow("Trigger's name:", self.name)
        self.problem = QLabel("")
        self.problem.setStyleSheet("color:#8a5300")
        form.addRow(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.path.textChanged.connect(self._path_changed)
        self.name.textChanged.connect(self._check)
        self._check()

    def _browse(self, folder: bool) -> None:
        path = (QFileDialog.getExistingDirectory(self, "A folder of poisoned images", self.start_dir) if folder else
                QFileDialog.getOpenFileName(self, "A poisoned data file", self.start_dir, FILTER)[0])
        if path:
            self.path.setText(path)

    def _path_changed(self, text: str) -> None:
        if text and not self.name.isModified():
            self.name.setText(default_name(text))
        self._check()

    def problem_text(self) -> str:
        name = self.name.text().strip()
        if not self.path.text().strip():
            return "choose the poisoned file or folder"
        if not Path(self.path.text().strip()).exists():
            return "that file or folder does not exist"
        if not valid_set_name(name):
            return f"a name is {SET_NAME_CHARS} (up to 40)"
        if name in self.taken:
            return f"another set is already named '{name}'"
        return ""

    def _check(self) -> None:
        why = self.problem_text()
        self.problem.setText(why)
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(not why)

    def choice(self) -> tuple[Path, str]:
        return Path(self.path.text().strip()), self.name.text().strip()


def ask_poisoned_set(parent, base: str, start_dir: str, session) -> tuple[Path, str] | None:
    taken = {set_name(r) for r in session.datasets if base_role(r) == base and set_name(r)}
    dlg = PoisonedSetDialog(base, start_dir, taken, parent)
    return dlg.choice() if dlg.exec() == QDialog.Accepted else None
