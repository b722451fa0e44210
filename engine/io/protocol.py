"""What the engine reads from a dataset, whatever holds the images: the lab's HDF5 files
(:class:`engine.io.datasets.LabDataset`), image files or folders (:class:`engine.io.images.ImageSet`)
and the repair's in-memory stand-in poisoned set (``engine.analysis.repair.ArrayDataset``).

One protocol, so the analyses can ask every set the same questions (its size, its labels, its
images in batches or by index, whether its images fit a model) instead of probing with ``hasattr``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Dataset(Protocol):
    """Images with (usually) labels, read as float32 N×H×W×C in 0–255.

    ``labels`` raises :class:`engine.core.errors.PruneLabError` on a set with ``has_labels``
    False (an image folder that names no classes); so does an ``isinstance`` check of one, which
    reads every member."""

    path: Path | str  # the file or folder (a description for a set held in memory)
    n: int  # how many images
    has_labels: bool

    @property
    def image_shape(self) -> tuple[int, int, int]: ...  # H, W, C as read (after expect)

    @property
    def labels(self) -> np.ndarray: ...  # int64, one class per image

    def batches(self, batch_size: int = ..., prefetch: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, images)`` in order."""
        ...

    def take(self, indices) -> np.ndarray:
        """The images at ``indices``, in their order."""
        ...

    def expect(self, hwc: tuple[int, int, int]) -> None:
        """Check (and adopt) a model's input size (H, W, C); raises PruneLabError when the images
        do not fit it."""
        ...
