"""Recent files and window geometry, kept in QSettings."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 10


class Recent:
    def __init__(self, settings: QSettings):
        self.settings = settings

    def files(self) -> list[str]:
        v = self.settings.value("recent", [])
        return [str(x) for x in (v if isinstance(v, list) else [v] if v else [])]

    def remember(self, path) -> None:
        p = str(Path(path).resolve())
        items = [p] + [x for x in self.files() if x != p]
        self.settings.setValue("recent", items[:MAX_RECENT])

    def last_dir(self) -> str:
        rec = self.files()
        return str(Path(rec[0]).parent) if rec else str(Path.home())
