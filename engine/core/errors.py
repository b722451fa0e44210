"""Errors and warnings that name the file and the problem in one line."""

from __future__ import annotations

import os
import warnings


class PruneLabError(Exception):
    """A user-facing problem with an input: ``<file>: <cause>`` in one line."""

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = str(path) if path is not None else None
        self.message = " ".join(str(message).split())  # always one line
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UnsafeModelError(PruneLabError):
    """The model file holds code (Lambda layers, foreign modules, custom classes): refused
    unless the user says they trust the file."""


class Cancelled(Exception):
    """The user cancelled a long job; nothing was written."""


class PruneLabWarning(UserWarning):
    """Something odd that does not stop the job (shown, then work goes on)."""

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = str(path) if path is not None else None
        self.message = " ".join(str(message).split())
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def warn(path: str | os.PathLike | None, message: str) -> None:
    warnings.warn(PruneLabWarning(path, message), stacklevel=2)
