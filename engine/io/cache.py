"""On-disk activation cache, keyed by the *content* of the model and data files.

Re-running a sweep (another threshold, after a restart) skips the expensive prefix pass.
Entries are .npy files in the user cache directory, evicted least-recently-used beyond a
size cap. File digests are memoised by (path, size, mtime, inode), as git's index does, so
the second run does not re-hash gigabytes of data."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.io.atomic import atomic_path, atomic_write_text

CACHE_VERSION = "2"
DEFAULT_CAP_MB = 4096
_digest_lock = threading.Lock()
_digest_memo: dict[tuple, str] = {}


def cache_dir() -> Path:
    env = os.environ.get("PRUNELAB_CACHE_DIR")
    if env:
        d = Path(env)
    else:
        from platformdirs import user_cache_dir

        d = Path(user_cache_dir("prunelab", appauthor=False))
    d.mkdir(parents=True, exist_ok=True)
    return d


def cap_bytes() -> int:
    return int(float(os.environ.get("PRUNELAB_CACHE_MAX_MB", DEFAULT_CAP_MB)) * 1024 * 1024)


def _stat_key(p: Path) -> tuple:
    st = p.stat()
    return (os.path.realpath(p), st.st_size, st.st_mtime_ns, st.st_ino)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of the file's bytes (memoised on stat data, in memory and on disk); the keys
    built from digests and parameters are BLAKE2b of their parts."""
    p = Path(path)
    key = _stat_key(p)
    with _digest_lock:
        if key in _digest_memo:
            return _digest_memo[key]
        index = _load_index()
        skey = json.dumps(key)
        if skey in index:
            _digest_memo[key] = index[skey]
            return index[skey]
    h = hashlib.sha256()  # the fastest hashlib digest here (SHA extensions)
    with open(p, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    digest = h.hexdigest()
    with _digest_lock:
        _digest_memo[key] = digest
        index = _load_index()
        index[json.dumps(key)] = digest
        if len(index) > 2000:
            index = dict(list(index.items())[-1000:])
        try:
            atomic_write_text(cache_dir() / "digests.json", json.dumps(index))
        except OSError:
            pass
    return digest


def known_digest(path: str | os.PathLike) -> str | None:
    """The digest if this exact file (same path, size, mtime, inode) was hashed before."""
    try:
        key = _stat_key(Path(path))
    except OSError:
        return None
    with _digest_lock:
        if key in _digest_memo:
            return _digest_memo[key]
        return _load_index().get(json.dumps(key))


def _load_index() -> dict:
    try:
        return json.loads((cache_dir() / "digests.json").read_text())
    except (OSError, ValueError):
        return {}


def activation_key(model_files: list, layer: str, cut: str, data_file, batch_size: int,
                   input_scale: float = 255.0) -> str:
    from engine.core.tfsetup import versions

    v = versions()
    parts = [CACHE_VERSION, v["tensorflow"], v["keras"], layer, cut, str(batch_size)]
    if float(input_scale) != 255.0:  # raw pixels keep the keys they always had
        parts.append(f"input/{float(input_scale):g}")
    parts += [file_digest(p) for p in model_files if p]
    parts.append(file_digest(data_file))
    return hashlib.blake2b("|".join(parts).encode(), digest_size=20).hexdigest()


def derived_key(*parts) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=20).hexdigest()


def _entry(key: str) -> Path:
    d = cache_dir() / "activations"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{key}.npy"


def load(key: str) -> np.ndarray | None:
    """A cached array (memory-mapped copy-on-write), or None."""
    p = _entry(key)
    if not p.exists():
        return None
    try:
        arr = np.load(p, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError):
        try:
            p.unlink()
        except OSError:
            pass
        return None
    try:
        os.utime(p)  # LRU
    except OSError:
        pass
    return arr


def store(key: str, arr: np.ndarray) -> None:
    p = _entry(key)
    if arr.nbytes > cap_bytes():
        return
    evict(cap_bytes() - arr.nbytes)
    try:
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
    except OSError:
        pass


@dataclass
class CacheInfo:
    path: Path
    entries: int
    bytes: int
    cap: int


def info() -> CacheInfo:
    files = list((cache_dir() / "activations").glob("*.npy")) if (cache_dir() / "activations").exists() else []
    return CacheInfo(cache_dir(), len(files), sum(f.stat().st_size for f in files), cap_bytes())


def evict(keep_bytes: int) -> None:
    d = cache_dir() / "activations"
    if not d.exists():
        return
    files = sorted(d.glob("*.npy"), key=lambda f: f.stat().st_mtime)
    total = sum(f.stat().st_size for f in files)
    for f in files:
        if total <= max(0, keep_bytes):
            break
        try:
            size = f.stat().st_size
            f.unlink()
            total -= size
        except OSError:
            pass


def clear() -> int:
    """Delete every cached activation; returns the bytes freed."""
    freed = 0
    d = cache_dir() / "activations"
    for f in list(d.glob("*")) if d.exists() else []:
        try:
            freed += f.stat().st_size
            f.unlink()
        except OSError:
            pass
    with _digest_lock:
        _digest_memo.clear()
    try:
        (cache_dir() / "digests.json").unlink()
    except OSError:
        pass
    return freed
