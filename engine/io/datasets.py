"""The lab's HDF5 datasets: ``data`` (N×C×H×W or N×H×W×C, 0–255, float or uint8) and
``label`` (N, float or int). Read in chunks; the whole file is never required in memory."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.core.errors import PruneLabError, warn
from engine.io.hdf5 import get_local_dataset, open_hdf5
from engine.io.memory import check_fits

CHANNEL_COUNTS = (1, 3, 4)
DEFAULT_BATCH = 1024
TAKE_CHUNK = 64  # rows per read when images are taken at arbitrary indices


class LabDataset:
    """One HDF5 dataset file. Cheap to open: only the header and the labels are read."""

    has_labels = True  # an image folder may have none (engine.io.images)

    def __init__(self, path: str | os.PathLike, expected_hwc: tuple[int, int, int] | None = None):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._f = open_hdf5(self.path, "dataset (.h5 with 'data' and 'label')")
        try:
            self._open(expected_hwc)
        except BaseException:
            self._f.close()
            raise

    # ---------------------------------------------------------------- validation
    def _open(self, expected_hwc):
        p, f = self.path, self._f
        data = get_local_dataset(f, "data", p)
        label = get_local_dataset(f, "label", p)
        if data is None and label is None:
            raise PruneLabError(p, "has neither a 'data' nor a 'label' dataset (not a lab dataset file)")
        if data is None:
            raise PruneLabError(p, "has no 'data' dataset")
        if label is None:
            raise PruneLabError(p, "has no 'label' dataset")
        if data.dtype.kind not in "fiu":
            raise PruneLabError(p, f"'data' holds {data.dtype} values, expected numbers 0–255")
        if label.dtype.kind not in "fiu":
            raise PruneLabError(p, f"'label' holds {label.dtype} values, expected class numbers")
        if data.ndim != 4:
            raise PruneLabError(p, f"'data' has shape {tuple(data.shape)}; expected 4 dimensions "
                                "(N×C×H×W or N×H×W×C)")
        lshape = tuple(label.shape)
        if not (len(lshape) == 1 or (len(lshape) == 2 and lshape[1] == 1)):
            raise PruneLabError(p, f"'label' has shape {lshape}; expected (N,)")
        n = int(data.shape[0])
        if n == 0:
            raise PruneLabError(p, "holds no images (empty dataset)")
        if lshape[0] != n:
            raise PruneLabError(p, f"'data' has {n} images but 'label' has {lshape[0]} labels")
        self._data, self._label = data, label
        self.n = n
        self.dtype = data.dtype
        self._stored = tuple(int(x) for x in data.shape[1:])  # kept: no HDF5 call to describe the file
        self.layout = self._detect_layout(tuple(int(s) for s in data.shape[1:]), expected_hwc)
        check_fits(n * 8, p, "its labels")
        raw = np.asarray(label[...]).reshape(-1)
        if raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)):
                raise PruneLabError(p, "'label' holds NaN or infinite values")
            if not np.all(raw == np.round(raw)):
                raise PruneLabError(p, "'label' holds non-integer values; expected class numbers")
        labels = raw.astype(np.int64)
        if labels.min() < 0:
            raise PruneLabError(p, f"'label' holds a negative class number ({labels.min()})")
        self.labels = labels
        counts = np.bincount(labels) if labels.max() < 10_000_000 else None
        if counts is None:
            raise PruneLabError(p, f"'label' holds an absurd class number ({labels.max()})")
        self.target = int(np.argmax(counts))
        self.single_target = bool(counts[self.target] == n)
        self.n_labels = int(np.count_nonzero(counts))

    def _detect_layout(self, s: tuple[int, int, int], expected) -> str:
        p = self.path
        if expected is not None:
            h, w, c = expected
            if s == (c, h, w):
                return "NCHW"
            if s == (h, w, c):
                return "NHWC"
            lay = self._guess_layout(s)
            hwc = (s[1], s[2], s[0]) if lay == "NCHW" else s
            if hwc[2] != c:
                raise PruneLabError(p, f"images have {hwc[2]} channel(s) ({'×'.join(map(str, hwc))}), "
                                    f"the model expects {c} ({h}×{w}×{c})")
            raise PruneLabError(p, f"images are {hwc[0]}×{hwc[1]}×{hwc[2]}, the model expects {h}×{w}×{c}")
        return self._guess_layout(s)

    def _guess_layout(self, s):
        first, last = s[0] in CHANNEL_COUNTS, s[2] in CHANNEL_COUNTS
        if first and not last:
            return "NCHW"
        if last and not first:
            return "NHWC"
        if first and last:
            return "NCHW"  # the lab's files are channels-first
        raise PruneLabError(self.path, f"'data' has shape {(self.n,) + s}: neither N×C×H×W nor N×H×W×C "
                            "with 1, 3 or 4 channels")

    def expect(self, hwc: tuple[int, int, int]) -> None:
        """Re-check the layout against a model's input (H, W, C); raises on mismatch."""
        with self._lock:
            self.layout = self._detect_layout(self._stored, tuple(hwc))

    # ---------------------------------------------------------------- facts
    @property
    def image_shape(self) -> tuple[int, int, int]:
        s = self._stored
        return (s[1], s[2], s[0]) if self.layout == "NCHW" else s

    @property
    def standin(self) -> str | None:
        """``"reversed trigger, label T"`` when this file is a stand-in poisoned set written by
        ``prunelab stamp`` (its HDF5 attribute ``prunelab_standin``); None for real data."""
        with self._lock:
            v = self._f.attrs.get("prunelab_standin")
        if v is None:
            return None
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        text = " ".join(str(v).split())[:120]
        return text or None

    @property
    def label_min(self) -> int:
        return int(self.labels.min())

    @property
    def label_max(self) -> int:
        return int(self.labels.max())

    def describe(self) -> str:
        h, w, c = self.image_shape
        return (f"{self.n:,} images {h}×{w}×{c} ({self.layout}, {self.dtype}), "
                f"labels {self.label_min}–{self.label_max}")

    # ---------------------------------------------------------------- reading
    def read(self, start: int, stop: int) -> np.ndarray:
        """Images [start, stop) as float32 N×H×W×C, checked for NaN/inf."""
        with self._lock:
            raw = np.asarray(self._data[start:stop])
        return self._convert(raw, start)

    def _convert(self, raw: np.ndarray, start: int) -> np.ndarray:
        if self.layout == "NCHW":
            raw = raw.transpose(0, 2, 3, 1)
        x = np.ascontiguousarray(raw, dtype=np.float32)
        if raw.dtype.kind == "f":
            bad = ~np.isfinite(x)
            if bad.any():
                i = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0])
                raise PruneLabError(self.path, f"image {start + i} holds NaN or infinite pixel values")
        return x

    def batches(self, batch_size: int = DEFAULT_BATCH, prefetch: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, images)`` in file order; ``prefetch`` reads the next batch in a background
        thread while the caller works on this one."""
        if prefetch:
            from engine.io.prefetch import prefetched

            return prefetched(self._batches(batch_size), depth=2)
        return self._batches(batch_size)

    def _batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n, batch_size):
            stop = min(self.n, start + batch_size)
            x = self.read(start, stop)
            if start == 0:
                self._check_range(x)
            yield start, x

    def _check_range(self, x: np.ndarray) -> None:
        hi = float(x.max()) if x.size else 0.0
        if hi <= 1.0 and self.dtype.kind == "f":
            warn(self.path, "pixel values lie in 0–1; the lab's models expect 0–255")

    def take(self, indices) -> np.ndarray:
        """Images at arbitrary indices (sorted reads), float32 N×H×W×C."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return np.zeros((0,) + self.image_shape, np.float32)
        order = np.argsort(idx)
        sidx = idx[order]
        uniq, inv = np.unique(sidx, return_inverse=True)
        parts = []
        # short reads: h5py holds the GIL while it reads, and one read of hundreds of scattered
        # rows froze the window's thread for a quarter of a second; close rows come as one slab
        for s in range(0, len(uniq), TAKE_CHUNK):
            part = uniq[s:s + TAKE_CHUNK]
            lo, hi = int(part[0]), int(part[-1]) + 1
            with self._lock:
                parts.append(np.asarray(self._data[lo:hi])[part - lo] if hi - lo <= 4 * len(part)
                             else np.asarray(self._data[part.tolist()]))
        raw = np.concatenate(parts)
        x = self._convert(raw, int(uniq[0]))[inv]
        out = np.empty_like(x)
        out[order] = x
        return out

    def image_uint8(self, i: int) -> np.ndarray:
        """One image for display, H×W×C uint8 (RGB)."""
        with self._lock:
            raw = np.asarray(self._data[int(i)])
        if self.layout == "NCHW":
            raw = raw.transpose(1, 2, 0)
        raw = np.nan_to_num(raw.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if self.dtype.kind == "f" and raw.size and raw.max() <= 1.0:
            raw = raw * 255.0
        return np.clip(raw, 0, 255).astype(np.uint8)

    def close(self) -> None:
        with self._lock:
            try:
                self._f.close()
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"LabDataset({str(self.path)!r}, n={self.n}, layout={self.layout})"


def guess_role(path: str | os.PathLike, ds: LabDataset | None = None) -> str | None:
    """Guess which of the four slots a file belongs in, from its name (and folder: the lab's
    ``cl/`` and ``bd/``) and, when the name is silent, from its labels (one target = poisoned)."""
    p = Path(path)
    stem = p.name.lower().rsplit(".", 1)[0]
    words = [w for w in re.split(r"[^a-z0-9]+", stem) if w]
    parent = p.parent.name.lower()
    poison_words = {"bd", "poison", "poisoned", "backdoor", "backdoored", "trigger", "triggered",
                    "attack", "sunglasses", "badnet", "adv"}
    poisoned = any(w in poison_words for w in words) or parent in poison_words or \
        bool(re.search(r"poison|backdoor|trigger", stem))
    clean = any(w in ("cl", "clean") for w in words) or parent in ("cl", "clean")
    if ds is not None and ds.has_labels and not poisoned and not clean:
        poisoned = ds.single_target and ds.n > 1
    valid = any(w.startswith("val") or w == "dev" for w in words)
    test = any(w.startswith("test") for w in words)
    if valid == test:
        return None  # neither or both: the user picks the slot
    return f"{'poisoned' if poisoned else 'clean'}_{'valid' if valid else 'test'}"


def open_dataset(path_or_paths, expected_hwc: tuple[int, int, int] | None = None, *, resize: bool = False,
                 progress=None, state=None):
    """Open whatever the user gave as data: a lab HDF5 file (:class:`LabDataset`) or PNG/JPEG
    images — one file, several, or a folder (:class:`engine.io.images.ImageSet`). ``resize``,
    ``progress(done, total)`` and ``state`` concern images only (HDF5 opens at once)."""
    from engine.io.imagefiles import is_image_path, sniff_image
    from engine.io.images import ImageSet

    hdf5_suffixes = (".h5", ".hdf5", ".hdf", ".he5")
    if not isinstance(path_or_paths, (str, os.PathLike)):
        paths = [Path(p) for p in path_or_paths]
        if len(paths) != 1:
            h5 = [p for p in paths if p.suffix.lower() in hdf5_suffixes]
            if h5:
                raise PruneLabError(h5[0], "is an HDF5 file; give HDF5 data one file at a time")
            return ImageSet(paths, expected_hwc, resize=resize, progress=progress, state=state)
        path_or_paths = paths[0]
    p = Path(path_or_paths)
    # a name decides first: "a_folder.h5" is an HDF5 path (the error says it is a directory)
    if p.suffix.lower() in hdf5_suffixes:
        return LabDataset(p, expected_hwc)
    if p.is_dir() or is_image_path(p) or (p.is_file() and sniff_image(p)):
        return ImageSet(p, expected_hwc, resize=resize, progress=progress, state=state)
    return LabDataset(p, expected_hwc)
