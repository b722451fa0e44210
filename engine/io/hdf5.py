"""Opening HDF5 files that may be hostile: no external links, no virtual datasets,
no external raw storage, no shape bombs. Every refusal is a one-line PruneLabError."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from engine.core.errors import PruneLabError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: a dataset whose declared size is this many times larger than the bytes it stores is a
#: shape bomb (real image data, even gzip-compressed, stays far below this ratio)
MAX_DECLARED_TO_STORED = 1000
MAX_ELEMENTS = 20_000_000_000  # 80 GB of float32: nobody's lab data


def check_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    p = Path(path)
    if not p.exists():
        raise PruneLabError(p, f"no such {what}")
    if p.is_dir():
        raise PruneLabError(p, f"is a directory, not a {what}")
    if not p.is_file():
        raise PruneLabError(p, f"is not a regular {what}")
    if p.stat().st_size == 0:
        raise PruneLabError(p, "is empty (0 bytes)")
    return p


def is_hdf5(path: Path) -> bool:
    """HDF5 signature at offset 0 or at a user-block offset (512, 1024, ...)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        off = 0
        while off + 8 <= size:
            fh.seek(off)
            if fh.read(8) == HDF5_SIGNATURE:
                return True
            off = 512 if off == 0 else off * 2
            if off > 1 << 20:
                break
    return False


def open_hdf5(path: str | os.PathLike, what: str = "HDF5 file") -> h5py.File:
    p = check_regular_file(path, what)
    if not is_hdf5(p):
        raise PruneLabError(p, f"is not an HDF5 file (expected a {what})")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise PruneLabError(p, f"cannot be read as HDF5 (truncated or corrupt: {short_reason(e)})") from None
    return f


def short_reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if "(" in text and text.startswith("Unable"):
        text = text.split("(", 1)[0].strip()
    return text[:160] or type(e).__name__


def get_local_dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset | None:
    """Return ``f[name]`` only if it is a plain dataset stored in this file."""
    try:
        link = f.get(name, getlink=True)
    except (KeyError, OSError, RuntimeError):
        return None
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise PruneLabError(path, f"'{name}' is an external link to {link.filename!r}; "
                            "PruneLab reads no data from outside the file")
    if isinstance(link, h5py.SoftLink):
        raise PruneLabError(path, f"'{name}' is a soft link to {link.path!r}; expected a dataset")
    try:
        obj = f[name]
    except (KeyError, OSError) as e:
        raise PruneLabError(path, f"'{name}' cannot be read ({short_reason(e)})") from None
    if not isinstance(obj, h5py.Dataset):
        raise PruneLabError(path, f"'{name}' is a group, not a dataset")
    check_dataset_storage(obj, path)
    return obj


def check_dataset_storage(d: h5py.Dataset, path: Path) -> None:
    name = d.name.lstrip("/")
    if d.is_virtual:
        raise PruneLabError(path, f"'{name}' is a virtual dataset that maps other files; "
                            "PruneLab reads no data from outside the file")
    if d.external:
        raise PruneLabError(path, f"'{name}' keeps its data in external raw files; "
                            "PruneLab reads no data from outside the file")
    if d.shape is None:
        raise PruneLabError(path, f"'{name}' has no shape (null dataspace)")
    n_el = int(np.prod(d.shape, dtype=np.float64)) if d.shape else 1
    if n_el > MAX_ELEMENTS:
        raise PruneLabError(path, f"'{name}' declares an absurd shape {tuple(d.shape)}")
    itemsize = d.dtype.itemsize if d.dtype.kind in "fiub" else 1
    declared = n_el * itemsize
    stored = d.id.get_storage_size()
    if declared > 64 * 1024 * 1024 and stored * MAX_DECLARED_TO_STORED < declared:
        raise PruneLabError(
            path, f"'{name}' declares shape {tuple(d.shape)} ({human_bytes(declared)}) but stores "
            f"only {human_bytes(stored)}: a shape bomb or a truncated file")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
