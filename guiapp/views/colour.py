"""Maps drawn over images: one colour scale (inferno: dark = nothing, yellow = strongest) for
every map in the window, and a small picture of that scale."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPixmap

_LUT = pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=False).astype(np.uint8)  # 256×3


def heat(m: np.ndarray) -> np.ndarray:
    """H×W map in [0, 1] → H×W×3 uint8 colours."""
    return _LUT[np.clip(np.nan_to_num(np.asarray(m, float)) * 255, 0, 255).astype(np.uint8)]


def overlay(img: np.ndarray, m: np.ndarray | None, alpha: float = 0.6) -> np.ndarray:
    """The image with the map blended over it where the map is strong (uint8 H×W×3)."""
    rgb = np.asarray(img[..., :3] if img.shape[-1] >= 3 else np.repeat(img, 3, axis=-1), np.float32)
    if m is None:
        return rgb.astype(np.uint8)
    w = alpha * np.clip(np.asarray(m, np.float32), 0, 1)[..., None]
    return (rgb * (1 - w) + heat(m).astype(np.float32) * w).astype(np.uint8)


def pixmap(rgb: np.ndarray, size: int) -> QPixmap:
    """uint8 H×W×3 → a pixmap scaled (smoothly, keeping the aspect) to fit ``size``."""
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    q = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    return QPixmap.fromImage(q).scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation)


def scale_bar(width: int = 120, height: int = 10) -> QPixmap:
    """The colour scale, low (left) to high (right)."""
    row = heat(np.linspace(0, 1, width))[None].repeat(height, axis=0)
    return pixmap(row, width)


# the one palette of verdicts: correct (or the attack resisted), wrong (or the attack works), flagged by G
OK = QColor("#1b7f2a")
BAD = QColor("#c62828")
FLAG = QColor("#d98b00")


def to_pixmap(img: np.ndarray, size: int, m: np.ndarray | None = None) -> QPixmap:
    """The image (with its map blended over it, if given) scaled to fit ``size``."""
    return pixmap(overlay(img, m), size)
