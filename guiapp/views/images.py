"""The image browser: a paged thumbnail grid (Qt model/view) with the true label and the labels
of B, B' and G at the picked step, colour-coded; filters; click for a large view.

Pixels are never read here: a page asks for its images (``pageWanted``), a worker reads them
off the GUI thread, and ``show_page`` puts them in; tiles show a grey square meanwhile."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListView, QPushButton,
                               QStyle, QStyledItemDelegate, QVBoxLayout, QWidget)

from engine.core.vocabulary import is_poisoned, ordered_roles, role_title
from guiapp.views.colour import BAD, FLAG, OK, scale_bar, to_pixmap
from guiapp.views.imagedialogs import LargeView, MeanMapsDialog
from guiapp.views.stepview import StepView


THUMB = 94
PAGE = 240
LINE = 12  # one caption line per label, the full width of the tile
FILTERS = ["all", "changed by pruning", "misclassified by B'", "flagged by G"]
LEGEND = ("<span style='color:#1b7f2a'>■ correct</span> <span style='color:#c62828'>■ wrong</span> "
          "<span style='color:#d98b00'>■ ⚑ flagged by G</span>")
# on poisoned data the label is the attacker's target: answering it is the attack working
POISONED_LEGEND = ("poisoned set: <span style='color:#c62828'>■ red = attack works</span> (answers the target) "
                   "<span style='color:#1b7f2a'>■ green = resisted</span> "
                   "<span style='color:#d98b00'>■ ⚑ flagged by G</span>")
MAPS = [("no map", None), ("Grad-CAM", "gradcam"), ("trigger channels", "channels"),
        ("occlusion (large view)", "occlusion")]


class ImageModel(QAbstractListModel):
    LabelsRole = Qt.UserRole + 1
    pageWanted = Signal(object)  # the dataset indices of the page now shown
    mapsWanted = Signal(str, object)  # method, tasks.ImagePage of pixels without maps

    def __init__(self, parent=None):
        super().__init__(parent)
        self.ds = None
        self.indices = np.zeros(0, np.int64)
        self.page = 0
        self.labels = {}  # name -> array over the whole dataset
        self.flag = None
        self.poisoned = False  # a poisoned set: its labels are the attacker's target
        self._pixmaps: dict[int, QPixmap] = {}
        self.pixels: dict[int, np.ndarray] = {}  # dataset index -> uint8 image of the page shown
        self.maps: dict[int, np.ndarray] = {}  # dataset index -> map of the method shown
        self.method: str | None = None

    def set_data(self, ds, indices, labels: dict, flag: int | None, poisoned: bool = False) -> None:
        self.beginResetModel()
        self.poisoned = poisoned
        same = ds is self.ds
        self.ds = ds
        self.indices = np.asarray(indices, np.int64)
        self.labels = labels
        self.flag = flag
        self.page = min(self.page, max(0, self.pages() - 1))
        if not same:
            self._pixmaps.clear()
            self.pixels.clear()
            self.maps.clear()
        self.endResetModel()
        self._want()

    def set_method(self, method: str | None) -> None:
        """Which maps the thumbnails carry (None: plain images); maps are asked for per page."""
        if method != self.method:
            self.method = method
            self.maps.clear()
            self._pixmaps.clear()
            self._changed()
            self._want_maps()

    def _want_maps(self) -> None:
        from guiapp.tasks import ImagePage

        if self.method in (None, "occlusion") or self.ds is None:
            return
        idx = [int(i) for i in self.page_indices() if int(i) in self.pixels and int(i) not in self.maps]
        if idx:
            self.mapsWanted.emit(self.method, ImagePage(str(self.ds.path), tuple(idx),
                                                        np.stack([self.pixels[i] for i in idx])))

    def add_maps(self, page) -> None:
        if self.ds is None or page.dataset_path != str(self.ds.path) or page.method != self.method:
            return
        for i, m in zip(page.indices, page.maps):
            self.maps[i] = m
            self._pixmaps.pop(i, None)
        self._changed()

    def _changed(self) -> None:
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1), [Qt.DecorationRole])

    def pages(self) -> int:
        return max(1, -(-len(self.indices) // PAGE))

    def set_page(self, page: int) -> None:
        self.beginResetModel()
        self.page = max(0, min(page, self.pages() - 1))
        self.endResetModel()
        self._want()
        self._want_maps()

    def page_indices(self) -> np.ndarray:
        return self.indices[self.page * PAGE:(self.page + 1) * PAGE]

    def _want(self) -> None:
        missing = [int(i) for i in self.page_indices() if int(i) not in self._pixmaps]
        if self.ds is not None and missing:
            self.pageWanted.emit(missing)

    def add_pixels(self, page) -> None:
        """Images read by a worker; ignored if the dataset changed meanwhile."""
        if self.ds is None or page.dataset_path != str(self.ds.path):
            return
        if len(self.pixels) > 4 * PAGE:
            self._pixmaps.clear()
            self.pixels.clear()
            self.maps.clear()
        for i, img in zip(page.indices, page.images):
            self.pixels[i] = img
            self._pixmaps.pop(i, None)
        self._changed()
        self._want_maps()

    def image_index(self, row: int) -> int:
        return int(self.indices[self.page * PAGE + row])

    def rowCount(self, parent=QModelIndex()) -> int:
        if parent.isValid() or self.ds is None:
            return 0
        return max(0, min(PAGE, len(self.indices) - self.page * PAGE))

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        i = self.image_index(index.row())
        if role == Qt.DecorationRole:
            if i not in self._pixmaps and i in self.pixels:  # drawn when first shown
                self._pixmaps[i] = to_pixmap(self.pixels[i], THUMB, self.maps.get(i))
            return self._pixmaps.get(i)
        if role == self.LabelsRole:  # a list keeps the order (a dict would become a sorted QVariantMap)
            return [(k, int(v[i])) for k, v in self.labels.items()]
        if role == Qt.ToolTipRole:
            lab = {k: int(v[i]) for k, v in self.labels.items()}
            return f"image {i}\n" + "\n".join(f"{k}: {v}" for k, v in lab.items())
        if role == Qt.DisplayRole:
            return str(i)
        return None


class TileDelegate(QStyledItemDelegate):
    """Thumbnail with four small labels: true · B · B'@k · G@k."""

    def __init__(self, view):
        super().__init__(view)
        self.font = QFont()
        self.font.setPointSize(7)

    def sizeHint(self, option, index):
        lines = max(4, len(getattr(index.model(), "labels", ()) or ()))  # a repair's Gs add lines
        return QSize(THUMB + 8, THUMB + 8 + lines * LINE)

    def caption(self, name: str, value: str, width: int) -> tuple[str, str]:
        """One caption line: the value whole on the right, the name on the left, shortened
        with "…" only if both would not fit (they never overlap)."""
        fm = QFontMetrics(self.font)
        room = width - fm.horizontalAdvance(value) - fm.horizontalAdvance(" ")
        return fm.elidedText(name, Qt.ElideRight, max(0, room)), value

    @staticmethod
    def colour(name: str, val, true, flag, poisoned: bool) -> QColor:
        """A caption's colour from the defender's side: on a poisoned set (labelled with the
        attacker's target) answering the label is the attack working (red), anything else the
        model resisting (green); elsewhere right is green, wrong red. G's flag is amber."""
        if name != "true" and flag is not None and val == flag:
            return FLAG
        if name == "true" or true is None:  # no true label: nothing to call right or wrong
            return QColor("#222")
        if poisoned:
            return BAD if val == true else OK
        return OK if val == true else BAD

    def paint(self, p: QPainter, option, index):
        p.save()
        r = option.rect
        if option.state & QStyle.State_Selected:
            p.fillRect(r, QColor("#cfe3ff"))
        pm = index.data(Qt.DecorationRole)
        if pm is not None:
            p.drawPixmap(r.x() + (r.width() - pm.width()) // 2, r.y() + 2, pm)
        else:  # still being read
            p.fillRect(QRect(r.x() + 4, r.y() + 2, THUMB, THUMB * 47 // 55), QColor("#e4e4e4"))
        items = [tuple(x) for x in (index.data(ImageModel.LabelsRole) or [])]
        model = index.model()
        flag = model.flag
        true = dict(items).get("true")
        p.setFont(self.font)
        y = r.y() + THUMB + 4
        for n, (name, val) in enumerate(items):
            p.setPen(QPen(self.colour(name, val, true, flag, model.poisoned)))
            rect = QRect(r.x() + 4, y + n * LINE, r.width() - 8, LINE)
            left, right = self.caption(name, f"⚑ {val}" if flag is not None and val == flag else str(val),
                                       rect.width())
            p.drawText(rect, Qt.AlignLeft | Qt.AlignVCenter, left)
            p.drawText(rect, Qt.AlignRight | Qt.AlignVCenter, right)
        p.restore()


class ImagesView(StepView, QWidget):
    imageOpened = Signal(int)
    pageWanted = Signal(str, object)  # role, dataset indices
    verdictsWanted = Signal(int)  # the photos' verdicts at this step are needed
    mapsWanted = Signal(str, object)  # method, tasks.ImagePage: the page's thumbnails' maps
    imageMapsWanted = Signal(str, str, int, object)  # method, dataset path, index, pixels
    meanMapsWanted = Signal(str)  # method

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.dataset = QComboBox()
        self.dataset.setObjectName("imagesDataset")
        self.dataset.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.filter = QComboBox()
        self.filter.setObjectName("imagesFilter")
        self.filter.addItems(FILTERS)
        self.prev = QPushButton("◀")
        self.next = QPushButton("▶")
        self.page_label = QLabel("")
        self.legend = QLabel(LEGEND)
        self.legend.setObjectName("imagesLegend")
        self.map = QComboBox()
        self.map.setObjectName("imagesMap")
        for text, method in MAPS:
            self.map.addItem(text, method)
        self.map.setToolTip("Where the model looks, over each image (computed a page at a time)")
        self.mean_btn = QPushButton("Mean maps…")
        self.mean_btn.setToolTip("The average map over clean and over poisoned validation images, side by side")
        self.scale = QLabel()
        self.scale.setPixmap(scale_bar(70))
        self.scale.setToolTip("map scale: low (dark) to high (yellow)")
        self.scale.setVisible(False)
        for w in (QLabel("Dataset"), self.dataset, QLabel("Show"), self.filter, self.prev, self.page_label,
                  self.next):
            bar.addWidget(w)
        bar.addStretch(1)
        lay.addLayout(bar)
        bar2 = QHBoxLayout()  # a second row: the maps, and what the colours mean
        for w in (QLabel("Map"), self.map, self.scale, self.mean_btn):
            bar2.addWidget(w)
        bar2.addStretch(1)
        bar2.addWidget(self.legend)
        lay.addLayout(bar2)
        self.view = QListView()
        self.view.setObjectName("imagesGrid")
        self.view.setViewMode(QListView.IconMode)
        self.view.setResizeMode(QListView.Adjust)
        self.view.setUniformItemSizes(True)
        self.view.setMovement(QListView.Static)
        self.view.setSpacing(2)
        self.view.setLayoutMode(QListView.Batched)
        self.view.setBatchSize(60)
        self.model = ImageModel(self)
        self.view.setModel(self.model)
        self.view.setItemDelegate(TileDelegate(self.view))
        lay.addWidget(self.view, 1)
        self.datasets: dict = {}
        self.session = None
        self.model.pageWanted.connect(lambda idx: self.pageWanted.emit(self.dataset.currentData(), idx))
        self.model.mapsWanted.connect(self.mapsWanted)
        self.map.currentIndexChanged.connect(self._map_chosen)
        self.mean_btn.clicked.connect(lambda: self.meanMapsWanted.emit(self.map.currentData() or "gradcam"))
        self.result = None
        self.step = 0
        self.dataset.currentIndexChanged.connect(lambda _: self.refresh())
        self.filter.currentIndexChanged.connect(lambda _: self.refresh())
        self.prev.clicked.connect(lambda: self._page(-1))
        self.next.clicked.connect(lambda: self._page(+1))
        self.view.clicked.connect(self._open)
        self._dialog = None
        self._mean_dialog = None

    def set_datasets(self, session, show: str | None = None) -> None:
        """The session's datasets and its photos ("Images"); predictions are shown only where
        the result covers them. ``show`` selects one ("photos", a role)."""
        self.session = session
        # in the slots' order (clean/poisoned validation, then test), whatever order they were opened in
        self.datasets = {r: session.datasets[r] for r in ordered_roles(session.datasets)}
        self.datasets.update({r: d for r, d in session.datasets.items() if r not in self.datasets})
        if session.photos is not None:
            self.datasets["photos"] = session.photos
        cur = show or self.dataset.currentData()
        self.dataset.blockSignals(True)
        self.dataset.clear()
        for role, ds in self.datasets.items():
            self.dataset.addItem(f"{role_title(role) if role != 'photos' else 'Images'} ({ds.n:,})", role)
        if cur in self.datasets:
            self.dataset.setCurrentIndex(list(self.datasets).index(cur))
        self.dataset.blockSignals(False)
        self.refresh()

    def current_labels(self, role: str) -> tuple[dict, int | None]:
        ds = self.datasets[role]
        labels = {"true": ds.labels} if ds.has_labels else {}
        if role == "photos":  # judged apart from the sweep: B always, B′ and G at the picked step
            v = self.session.photo_verdicts
            if v is None or v.dataset_path != str(ds.path):
                return labels, None
            return {**labels, **v.labels}, v.flag
        r = self.result
        covered = self.session is not None and self.session.result_covers(role)
        flag = None
        if r is not None and covered and len(r.records) > self.step:
            k = self.step
            labels["B"] = r.predictions[role][0]
            labels[f"B'@{k}"] = r.predictions[role][k]
            labels[f"G@{k}"] = r.goodnet_labels(role, k)
            flag = r.flag_class
        return self._repair_labels(role, labels, flag)

    def _repair_labels(self, role: str, labels: dict, flag):
        """The repair's Gs' answers beside B's, where the repair evaluated this very file."""
        rep, ds = getattr(self.session, "repair", None), self.datasets[role]
        if rep is None or rep.eval_sources.get(role) != str(ds.path):
            return labels, flag
        for name, by_role in rep.answers.items():
            got = by_role.get(role)
            if got is None or len(got) != ds.n or not (name.startswith("G_") or (name == "B" and "B" not in labels)):
                continue
            labels[name] = got
        return labels, rep.n_classes if flag is None else flag

    def refresh(self) -> None:
        role = self.dataset.currentData()
        if role is None or role not in self.datasets:
            self.model.set_data(None, [], {}, None)
            self.page_label.setText("no dataset")
            return
        ds = self.datasets[role]
        labels, flag = self.current_labels(role)
        f = self.filter.currentIndex()
        idx = np.arange(ds.n)
        if role == "photos":  # judged at the session's step, by the session's result
            s = self.session
            v, want = s.photo_verdicts, (s.step if s.result is not None else None)
            if s.model is not None and (v is None or v.step != want):
                self.verdictsWanted.emit(s.step)
        k = self.session.step if role == "photos" else self.step
        if flag is not None and f and f"G@{k}" in labels:
            b, bp, g = labels["B"], labels[f"B'@{k}"], labels[f"G@{k}"]
            if f == 1:
                idx = np.flatnonzero(b != bp)
            elif f == 2 and ds.has_labels:
                idx = np.flatnonzero(bp != ds.labels)
            elif f == 3:
                idx = np.flatnonzero(g == flag)
        poisoned = is_poisoned(role)
        self.model.set_data(ds, idx, labels, flag, poisoned)
        self.legend.setText(POISONED_LEGEND if poisoned else LEGEND)
        self._update_page_label()

    def _update_page_label(self) -> None:
        n = len(self.model.indices)
        self.page_label.setText(f"page {self.model.page + 1}/{self.model.pages()} · {n:,} images")
        self.prev.setEnabled(self.model.page > 0)
        self.next.setEnabled(self.model.page < self.model.pages() - 1)

    def _page(self, d: int) -> None:
        self.model.set_page(self.model.page + d)
        self._update_page_label()

    def _open(self, index) -> None:
        i = self.model.image_index(index.row())
        if i not in self.model.pixels:  # not read yet: the tile is still grey
            return
        role = self.dataset.currentData()
        labels, flag = self.current_labels(role)
        self._dialog = LargeView(self.datasets[role], i, self.model.pixels[i],
                                 {k: int(v[i]) for k, v in labels.items()}, flag, self)
        self._dialog.setObjectName("largeView")
        if self.map.currentData() is not None:
            self.imageMapsWanted.emit(self.map.currentData(), str(self.datasets[role].path), i, self.model.pixels[i])
        self._dialog.show()
        self.imageOpened.emit(i)

    def show_page(self, page) -> None:
        self.model.add_pixels(page)
        self._open_pending()

    def _map_chosen(self) -> None:
        method = self.map.currentData()
        self.scale.setVisible(method is not None)
        self.model.set_method(method)

    def show_maps(self, page) -> None:
        self.model.add_maps(page)

    def show_image_maps(self, got) -> None:
        if self._dialog is not None:
            self._dialog.show_maps(got)

    def show_mean_maps(self, got) -> None:
        self._mean_dialog = MeanMapsDialog(got, self)
        self._mean_dialog.show()

    def verdicts_arrived(self, verdicts) -> None:
        self.refresh()
        self._open_pending()
        # the maps asked for while the verdicts were being computed were refused (one task at a
        # time): ask again now, so a map chosen before the folder was opened is drawn on it
        self.model._want_maps()

    def show_photos(self, session) -> None:
        """Dropped images: show their set; a single image opens large with its verdicts as soon
        as its pixels and the verdicts are here."""
        self.set_datasets(session, show="photos")
        if session.photos is not None and session.photos.n == 1:
            self._pending = 0
            self._open_pending()

    def _open_pending(self) -> None:
        if getattr(self, "_pending", None) is None or self.dataset.currentData() != "photos":
            return
        labels, _ = self.current_labels("photos")
        if self._pending in self.model.pixels and "B" in labels:
            self._open(self.model.index(self._pending))
            self._pending = None
