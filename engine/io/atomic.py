"""Atomic saves: write a temporary file in the same folder, then rename over the target.
A cancelled or failed save leaves nothing behind; an opened input is never overwritten: every
save takes the files the job read as ``inputs`` (no hidden, process-wide list)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from engine.core.errors import PruneLabError

def _key(p) -> str:
    return os.path.realpath(os.fspath(p))


def check_not_input(path: str | os.PathLike, inputs: Iterable = ()) -> None:
    """Refuse to write over one of ``inputs`` (the files the job read)."""
    if _key(path) in {_key(e) for e in inputs if e}:
        raise PruneLabError(path, "is one of the opened input files; refusing to overwrite it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, inputs: Iterable = ()) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``."""
    path = Path(path)
    check_not_input(path, inputs)
    if path.is_dir():
        raise PruneLabError(path, "is a directory; cannot save a file there")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PruneLabError(path, "its folder does not exist")
    suffix = "".join(path.suffixes[-1:])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{suffix}", dir=parent)
    os.close(fd)
    os.unlink(tmp)  # writers create the file themselves (Keras refuses existing ones sometimes)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_dir():
            raise PruneLabError(path, "the writer produced a folder, not a file")
        if not tmp_path.exists():
            raise PruneLabError(path, "nothing was written")
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp_path.is_dir():
                shutil.rmtree(tmp_path)
            else:
                tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, inputs: Iterable = ()) -> Path:
    with atomic_path(path, inputs) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, inputs: Iterable = ()) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), inputs)
