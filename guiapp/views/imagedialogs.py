"""The image browser's dialogs: one image large with every model's verdict (and its maps), and
the mean maps of clean vs poisoned validation on one colour scale."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from guiapp.views.colour import FLAG, scale_bar, to_pixmap


class LargeView(QDialog):
    def __init__(self, ds, i: int, pixels: np.ndarray, labels: dict, flag, parent=None):
        super().__init__(parent)
        files = getattr(ds, "files", None)
        self.setWindowTitle(f"{files[i].name}" if files else f"{ds.path.name} — image {i}")
        lay = QVBoxLayout(self)
        pic = QLabel()
        pic.setPixmap(to_pixmap(pixels, 330))
        lay.addWidget(pic)
        g = next((v for k, v in labels.items() if k.startswith("G@")), None)
        if g is not None:  # G's verdict first: what a user dropping a photo wants to know
            verdict = QLabel(f"<b>G: {g} — backdoor suspected</b>" if g == flag else f"<b>G: class {g}</b>")
            verdict.setObjectName("verdict")
            verdict.setStyleSheet(f"font-size: 15pt; color: {FLAG.name() if g == flag else '#222'}")
            lay.addWidget(verdict)
        words = [f"<b>true</b> {labels['true']}"] if "true" in labels else ["no true label"]
        for k, v in labels.items():
            if k != "true":
                mark = " (backdoor suspected)" if flag is not None and v == flag else ""
                words.append(f"<b>{k}</b> {v}{mark}")
        lab = QLabel(" · ".join(words))
        lab.setObjectName("largeLabels")
        lay.addWidget(lab)
        self.pixels, self.path, self.index = pixels, str(ds.path), i
        self.maps_row = QHBoxLayout()
        lay.addLayout(self.maps_row)

    def show_maps(self, got) -> None:
        """The image under each model's map (B, and B′ at the picked step for B's class)."""
        if got.dataset_path != self.path or got.index != self.index:
            return
        while self.maps_row.count():
            w = self.maps_row.takeAt(0).widget()
            w and w.deleteLater()
        for title, m in got.maps.items():
            box = QVBoxLayout()
            pic = QLabel()
            pic.setPixmap(to_pixmap(self.pixels, 200, m))
            box.addWidget(QLabel(f"<b>{title}</b> · {got.method}"))
            box.addWidget(pic)
            holder = QWidget()
            holder.setLayout(box)
            holder.setObjectName("mapPanel")
            self.maps_row.addWidget(holder)
        scale = QLabel()
        scale.setPixmap(scale_bar(90))
        scale.setToolTip("map scale: low (dark) to high (yellow); each map is scaled to its own maximum")
        self.maps_row.addWidget(scale, 0, Qt.AlignBottom)


class MeanMapsDialog(QDialog):
    """The average map over clean and over poisoned validation images, side by side: the
    trigger's region stands out on the poisoned side."""

    def __init__(self, got, parent=None):
        super().__init__(parent)
        self.setObjectName("meanMaps")
        self.setWindowTitle(f"Mean {got.method} maps")
        lay = QHBoxLayout(self)
        sides = [(t, mm) for t, mm in (("clean validation", got.clean), ("poisoned validation", got.poisoned))
                 if mm is not None]
        # a mean of maps that each peak at 1 peaks lower: both sides share one scale, up to the
        # brighter side's peak, so the hot region shows and the two stay comparable
        self.vmax = max([float(np.max(mm.map)) for _, mm in sides] + [1e-6])
        for title, mm in sides:
            box = QVBoxLayout()
            box.addWidget(QLabel(f"<b>{title}</b> · mean of {mm.n:,} images"))
            pic = QLabel()
            pic.setPixmap(to_pixmap(np.clip(mm.image, 0, 255).astype(np.uint8), 260, mm.map / self.vmax))
            box.addWidget(pic)
            lay.addLayout(box)
        col = QVBoxLayout()
        col.addStretch(1)
        scale = QLabel()
        scale.setPixmap(scale_bar(90))
        col.addWidget(scale)
        col.addWidget(QLabel(f"0 – {self.vmax:.2f}"))
        lay.addLayout(col)
