"""Images as data: PNG/JPEG files, or a folder of them, behaving like ``engine.io.datasets.LabDataset``.

Why: the lab's users hold photos, and the CSAW-HackML challenge judged every G on PNG files
(``sun_3_label=0.png``). An :class:`ImageSet` answers everything the sweep, eval, fine-tune and
the image browser ask of a dataset (``n``, ``labels``, ``expect``, ``batches``, ``take`` …).

Opening checks every file's *header* (Pillow's ``Image.open`` reads no pixels; a PNG's chunk
checksums are verified too, ~40 µs a file), so a broken, 16-bit, CMYK or oversized file is
refused before any work. Pixels are decoded per batch in a small thread pool (Pillow releases
the GIL while decoding): only the file list, the sizes and the labels stay in memory.

Labels, in this order: class subfolders (integer names, or names mapped by ``classes.txt``),
``label=N`` in the file names, none. An unlabeled set has ``has_labels = False`` and every
label fact (``labels``, ``label_max``, ``target`` …) raises a one-line :class:`PruneLabError`
instead of answering: accuracy over no labels must fail loudly, never come out as 0 %.

Pixels: RGB uint8 as float32 0–255, like the lab's data; grayscale, palette and alpha images
are converted (alpha dropped, said once). Sizes must equal the model's input unless the set is
opened with ``resize=True`` (Pillow's bilinear filter; one warning says how many)."""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from engine.core.errors import PruneLabError, warn
from engine.core.state import ProgressCallback
from engine.io.imagefiles import (CLASSES_FILE, GRAY_MODES, ALPHA_MODES, MAX_LABEL, is_image_path, label_in_name, _natural_key, _short, inspect_header, decode)

# ----------------------------------------------------------------------------- finding files
class _Listing:
    """What a folder holds: the images (with labels or not) and what was skipped."""

    def __init__(self):
        self.files: list[Path] = []
        self.labels: list[int] | None = None
        self.skipped: list[str] = []  # names of other entries (not images)
        self.links: list[str] = []  # symbolic links not followed


def _inside(root_real: str, p: Path) -> bool:
    try:
        real = os.path.realpath(p)
    except OSError:
        return False
    return os.path.commonpath([root_real, real]) == root_real


def _images_in(folder: Path, root_real: str, out: _Listing, recursive: bool) -> list[Path]:
    """Image files under ``folder`` (natural order); links to outside ``root`` and links to
    folders are never followed; hidden entries (.DS_Store, ._x.png) are ignored."""
    found: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: _natural_key(e.name))
    except OSError as e:
        raise PruneLabError(folder, f"cannot be listed ({e.strerror or _short(e)})") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        p = Path(e.path)
        if e.is_symlink():
            if e.is_dir() or not _inside(root_real, p):
                out.links.append(e.name)
                continue
        if e.is_dir(follow_symlinks=False):
            if recursive:
                found += _images_in(p, root_real, out, True)
            else:
                out.skipped.append(e.name + "/")
        elif e.is_file() and is_image_path(e.name):
            found.append(p)
        else:
            out.skipped.append(e.name)
    return found


def _read_classes(path: Path) -> dict[str, int]:
    """``classes.txt``: one class per line, either ``name index`` (or ``name,index`` /
    ``name: index``) or bare names numbered from 0 in line order."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise PruneLabError(path, f"cannot be read as text ({_short(e)})") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise PruneLabError(path, "lists no classes")
    pairs = [re.match(r"^(.*?)[\s,:;=]+(\d+)$", ln) for ln in lines]
    if all(m and m.group(1) for m in pairs):
        mapping = [(m.group(1).strip(), int(m.group(2))) for m in pairs]
    else:
        mapping = [(ln, i) for i, ln in enumerate(lines)]
    out: dict[str, int] = {}
    for name, idx in mapping:
        if name in out:
            raise PruneLabError(path, f"names the class '{name}' twice")
        if idx > MAX_LABEL:
            raise PruneLabError(path, f"maps '{name}' to an absurd class number ({idx})")
        out[name] = idx
    if len(set(out.values())) != len(out):
        raise PruneLabError(path, "maps two names to the same class number")
    return out


def list_folder(root: Path) -> _Listing:
    """The images of a folder and their labels (class subfolders first, then names)."""
    out = _Listing()
    root_real = os.path.realpath(root)
    classes_path = root / CLASSES_FILE
    names = _read_classes(classes_path) if classes_path.is_file() else {}
    try:
        subdirs = [e for e in os.scandir(root) if not e.name.startswith(".")
                   and e.is_dir(follow_symlinks=False)]
    except OSError as e:
        raise PruneLabError(root, f"cannot be listed ({e.strerror or _short(e)})") from None
    class_of = {}
    for e in subdirs:
        if e.name in names:
            class_of[e.name] = names[e.name]
        elif e.name.isdigit():
            class_of[e.name] = int(e.name)
    if names and not class_of:
        raise PruneLabError(root, f"has a {CLASSES_FILE} but none of its subfolders is named in it")
    if class_of:  # class folders: everything else at the top is skipped
        files, labels = [], []
        for name in sorted(class_of, key=lambda n: (class_of[n], _natural_key(n))):
            if class_of[name] > MAX_LABEL:
                raise PruneLabError(root / name, f"is an absurd class number ({class_of[name]})")
            got = _images_in(root / name, root_real, out, recursive=True)
            files += got
            labels += [class_of[name]] * len(got)
        top = _Listing()
        loose = _images_in(root, root_real, top, recursive=False)
        out.skipped += [s for s in top.skipped if s.rstrip("/") not in class_of and s != CLASSES_FILE]
        out.skipped += [p.name for p in loose]
        out.links += top.links
        out.files, out.labels = files, labels
        return out
    out.files = _images_in(root, root_real, out, recursive=False)
    out.labels = _labels_from_names(out.files)
    if not out.files and subdirs:
        raise PruneLabError(root, "holds no PNG or JPEG images; its subfolders ("
                            + ", ".join(sorted(e.name for e in subdirs)[:4])
                            + ") are not class numbers: name them 0, 1, … or add a classes.txt")
    return out


def _labels_from_names(files: Sequence[Path]) -> list[int] | None:
    """``label=N`` from every name, or None when no name carries one; a set where only some
    names do is refused (accuracy over part of a set would mislead)."""
    got = [label_in_name(p) for p in files]
    have = [g is not None for g in got]
    if not any(have):
        return None
    if not all(have):
        first = files[have.index(False)]
        raise PruneLabError(first, f"has no 'label=N' in its name while {sum(have)} other images of the "
                            "set do; name every image so, or none")
    for p, g in zip(files, got):
        if g > MAX_LABEL:
            raise PruneLabError(p, f"names an absurd class number ({g})")
    return got


# ----------------------------------------------------------------------------- the set
class ImageSet:
    """PNG/JPEG images (one file, several, or a folder) as a dataset.

    ``path`` is the folder, the single file, or the folder holding several given files.
    ``files[i]`` is image i. ``layout`` is "NHWC" and ``dtype`` uint8, as decoded."""

    layout = "NHWC"
    dtype = np.dtype("uint8")

    def __init__(self, path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
                 expected_hwc: tuple[int, int, int] | None = None, *, resize: bool = False,
                 progress: ProgressCallback | None = None, state=None):
        self.resize = bool(resize)
        self._lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self._announced: tuple | None = None
        paths = [Path(path_or_paths)] if isinstance(path_or_paths, (str, os.PathLike)) \
            else [Path(p) for p in path_or_paths]
        if not paths:
            raise PruneLabError(None, "no image files given")
        if len(paths) == 1 and paths[0].is_dir():
            self.path = paths[0]
            self.kind = "folder"
            listing = list_folder(self.path)
            self.files, labels = listing.files, listing.labels
            self._say_skipped(listing)
        else:
            dirs = [p for p in paths if p.is_dir()]
            if dirs:
                raise PruneLabError(dirs[0], "is a folder; give one folder, or image files")
            self.files = paths
            self.path = paths[0] if len(paths) == 1 else Path(os.path.commonpath([os.path.abspath(p) for p in paths]))
            self.kind = "file" if len(paths) == 1 else "files"
            labels = _labels_from_names(paths)
        if not self.files:
            raise PruneLabError(self.path, "holds no PNG or JPEG images (empty folder)")
        self.n = len(self.files)
        self._sizes = np.empty((self.n, 2), np.int32)  # H, W of every file, from its header
        gray = alpha = 0
        for i, f in enumerate(self.files):
            if i % 256 == 0:
                if state is not None:
                    state.cancel_point()
                if progress is not None:
                    progress(i, self.n)
            h, w, mode = inspect_header(f)
            self._sizes[i] = (h, w)
            gray += mode in GRAY_MODES
            alpha += mode in ALPHA_MODES
        if progress is not None:
            progress(self.n, self.n)
        self.has_labels = labels is not None
        self._labels = np.asarray(labels, np.int64) if labels is not None else None
        if self._labels is not None:
            counts = np.bincount(self._labels)
            self._target = int(np.argmax(counts))
            self._single = bool(counts[self._target] == self.n)
            self._n_labels = int(np.count_nonzero(counts))
        if gray or alpha:
            parts = ([f"{gray} grayscale"] if gray else []) + ([f"{alpha} with transparency"] if alpha else [])
            warn(self.path, f"{' and '.join(parts)} of {self.n} images converted to RGB"
                 + (" (transparency dropped)" if alpha else ""))
        self._channels = 3
        if expected_hwc is not None:
            self.expect(expected_hwc)
        else:
            first = tuple(int(v) for v in self._sizes[0])
            if not self.resize:
                bad = np.flatnonzero(np.any(self._sizes != first, axis=1))
                if len(bad):
                    i = int(bad[0])
                    raise PruneLabError(self.files[i], f"is {self._sizes[i, 0]}×{self._sizes[i, 1]} pixels (H×W) "
                                        f"while {self.files[0].name} is {first[0]}×{first[1]}; one set's images "
                                        "must share a size (or turn on resizing, --resize)")
            self._hw = first

    def _say_skipped(self, listing: _Listing) -> None:
        if listing.skipped:
            k = len(listing.skipped)
            what = "entry that is not a PNG/JPEG image" if k == 1 else "entries that are not PNG/JPEG images"
            warn(self.path, f"skipped {k} {what} (e.g. {listing.skipped[0]})")
        if listing.links:
            k = len(listing.links)
            warn(self.path, f"did not follow {k} symbolic link{'s' if k > 1 else ''} pointing outside the "
                 f"folder or to a folder (e.g. {listing.links[0]})")

    # ---------------------------------------------------------------- the model's size
    def expect(self, hwc: tuple[int, int, int]) -> None:
        """Check every image's size against a model's input (H, W, C): refuse the first that
        differs, or (``resize``) say once how many will be resized."""
        h, w, c = (int(v) for v in hwc)
        if c not in (1, 3):
            raise PruneLabError(self.path, f"the model expects {c} channels ({h}×{w}×{c}); images are read "
                                "as RGB (3) or grayscale (1)")
        bad = np.flatnonzero((self._sizes[:, 0] != h) | (self._sizes[:, 1] != w))
        if len(bad) and not self.resize:
            i = int(bad[0])
            raise PruneLabError(self.files[i], f"is {self._sizes[i, 0]}×{self._sizes[i, 1]} pixels (H×W), "
                                f"the model expects {h}×{w}; turn on resizing (--resize) to scale images "
                                "bilinearly")
        with self._lock:
            self._hw, self._channels = (h, w), c
            if len(bad) and self._announced != (h, w):
                self._announced = (h, w)
                warn(self.path, f"resized {len(bad)} of {self.n} images to {h}×{w} (bilinear)")

    # ---------------------------------------------------------------- facts
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self._hw[0], self._hw[1], self._channels)

    def _need_labels(self) -> np.ndarray:
        if self._labels is None:
            raise PruneLabError(self.path, "has no labels (no class subfolders, classes.txt or 'label=N' in "
                                "the file names): predictions only, no accuracy")
        return self._labels

    @property
    def labels(self) -> np.ndarray:
        return self._need_labels()

    @property
    def label_min(self) -> int:
        return int(self._need_labels().min())

    @property
    def label_max(self) -> int:
        return int(self._need_labels().max())

    @property
    def target(self) -> int:
        self._need_labels()
        return self._target

    @property
    def single_target(self) -> bool:
        self._need_labels()
        return self._single

    @property
    def n_labels(self) -> int:
        self._need_labels()
        return self._n_labels

    def describe(self) -> str:
        h, w, c = self.image_shape
        what = {"folder": "PNG/JPEG folder", "file": "image file", "files": "image files"}[self.kind]
        lab = f"labels {self.label_min}–{self.label_max}" if self.has_labels else "no labels"
        return f"{self.n:,} images {h}×{w}×{c} ({what}), {lab}"

    # ---------------------------------------------------------------- reading
    def _decode_many(self, idx: Sequence[int]) -> np.ndarray:
        h, w = self._hw
        c = self._channels
        out = np.empty((len(idx), h, w, c), np.float32)

        def one(j):
            out[j] = decode(self.files[idx[j]], (h, w), c, self.resize)

        if len(idx) <= 2:
            for j in range(len(idx)):
                one(j)
            return out
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                                thread_name_prefix="prunelab-decode")
            pool = self._pool
        for f in [pool.submit(one, j) for j in range(len(idx))]:
            f.result()  # the first failure, in file order, is raised here
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images [start, stop) as float32 N×H×W×C, 0–255."""
        start, stop = max(0, int(start)), min(self.n, int(stop))
        return self._decode_many(list(range(start, stop)))

    def batches(self, batch_size: int = 1024, prefetch: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, images)`` in set order; ``prefetch`` decodes the next batch meanwhile."""
        gen = ((s, self.read(s, s + batch_size)) for s in range(0, self.n, batch_size))
        if prefetch:
            from engine.io.prefetch import prefetched

            return prefetched(gen, depth=2)
        return gen

    def take(self, indices) -> np.ndarray:
        """Images at arbitrary indices, float32 N×H×W×C."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        if idx and (min(idx) < 0 or max(idx) >= self.n):
            raise IndexError(f"image index out of range 0–{self.n - 1}")
        return self._decode_many(idx)

    def image_uint8(self, i: int) -> np.ndarray:
        """One image for display, H×W×C uint8, as the model sees it."""
        return decode(self.files[int(i)], self._hw, self._channels, self.resize)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"ImageSet({str(self.path)!r}, n={self.n}, {self.kind})"
