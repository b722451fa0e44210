"""The Scan tab: look for a backdoor with clean validation data alone (Neural Cleanse, the
engine's blind scan). The verdict in words, the anomaly chart (anomaly index or mask L1 norm per
scanned label, flagged labels red, the flag threshold drawn), the most suspicious labels in a
table, and each reversed trigger as pictures: its mask, its pattern, a clean image of another
class stamped with it (and the model's answer), and Grad-CAM of that answer. Fed
``guiapp.scantasks.ScanDone`` values; nothing is computed here."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QPushButton, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from guiapp.views.colour import heat, overlay, pixmap

FLAGGED = "#c62828"
CANDIDATE = "#1f77b4"
REFERENCE = "#9e9e9e"
PIC = 150
TABLE_ROWS = 12
INTRO = ("<b>Is there a backdoor?</b> The scan looks for one with the open model and the clean validation "
         "data alone (no poisoned data): for each candidate target label it reverse-engineers the smallest "
         "trigger that sends clean images of other classes to it. A backdoored label needs a far smaller "
         "trigger than the others. Press <b>Scan</b>.")


class ScanView(QWidget):
    scanRequested = Signal(int, int)  # seed, budget (optimisation steps in all)
    useAsPoisoned = Signal(int)  # the label whose reversed trigger stamps the stand-in
    saveRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        from engine.analysis.scan import ANOMALY_THRESHOLD, DEFAULT_LABELS, STEPS

        self.threshold = ANOMALY_THRESHOLD
        outer = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.scan_btn = QPushButton("Scan")
        self.scan_btn.setObjectName("scanButton")
        self.scan_btn.setToolTip("Run the blind scan on the open model and the clean validation data")
        self.budget = QSpinBox()
        self.budget.setObjectName("scanBudget")
        self.budget.setRange(60, 10_000_000)
        self.budget.setSingleStep(1000)
        self.budget.setValue(DEFAULT_LABELS * STEPS)
        self.budget.setToolTip("Optimisation steps over all labels: more labels scanned, longer runs")
        self.seed = QSpinBox()
        self.seed.setRange(0, 1_000_000)
        self.seed.setToolTip("The same seed gives the same triggers")
        self.use_btn = QPushButton("Use as poisoned data")
        self.use_btn.setObjectName("useAsPoisoned")
        self.use_btn.setToolTip("Stamp the reversed trigger on the clean validation (and clean test) images and "
                                "put these stand-ins in the poisoned slots, labelled as such")
        self.save_btn = QPushButton("Save scan…")
        self.save_btn.setObjectName("saveScan")
        self.save_btn.setToolTip("Write the scan folder (scan.json, trigger_<t>.npz/.png, scan.png) as "
                                 "`prunelab scan` does")
        for w in (self.scan_btn, QLabel("Budget"), self.budget, QLabel("Seed"), self.seed):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.use_btn)
        bar.addWidget(self.save_btn)
        outer.addLayout(bar)
        self.verdict = QLabel(INTRO)
        self.verdict.setObjectName("scanVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextFormat(Qt.RichText)
        outer.addWidget(self.verdict)

        split = QSplitter(Qt.Horizontal)
        outer.addWidget(split, 1)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Chart"))
        self.measure = QComboBox()
        self.measure.setObjectName("scanMeasure")
        self.measure.addItem("anomaly index (flag above the line)", "anomaly_index")
        self.measure.addItem("mask L1 norm (trigger size)", "mask_l1")
        row.addWidget(self.measure)
        row.addStretch(1)
        lv.addLayout(row)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setObjectName("scanPlot")
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.setLabel("bottom", "scanned label (most suspicious first)")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush=CANDIDATE, pen=pg.mkPen(None))
        self.plot.addItem(self.bars)
        self.line = pg.InfiniteLine(angle=0, pos=self.threshold, movable=False,
                                    pen=pg.mkPen(FLAGGED, width=1.5, style=Qt.DashLine),
                                    label="", labelOpts={"position": 0.92, "color": FLAGGED,
                                                         "anchors": [(1, 1), (1, 1)]})
        self.plot.addItem(self.line)
        self.zero = pg.InfiniteLine(angle=0, pos=0, movable=False, pen=pg.mkPen("#444", width=0.8))
        self.plot.addItem(self.zero)
        lv.addWidget(self.plot, 3)
        self.key = QLabel(f"<span style='color:{FLAGGED}'>■ flagged</span> &nbsp; "
                          f"<span style='color:{CANDIDATE}'>■ pre-screened candidate</span> &nbsp; "
                          f"<span style='color:{REFERENCE}'>■ random reference label</span>")
        self.key.setObjectName("scanKey")
        lv.addWidget(self.key)
        self.table = QTableWidget(0, 5)
        self.table.setObjectName("scanTable")
        self.table.setHorizontalHeaderLabels(["label", "mask L1", "anomaly index", "attack success", "scanned as"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        lv.addWidget(self.table, 2)
        split.addWidget(left)

        right = QGroupBox("Reversed trigger")
        rv = QVBoxLayout(right)
        row = QHBoxLayout()
        row.addWidget(QLabel("Label"))
        self.trigger = QComboBox()
        self.trigger.setObjectName("scanTrigger")
        row.addWidget(self.trigger, 1)
        rv.addLayout(row)
        grid = QGridLayout()
        self.pics, self.captions = {}, {}
        pictures = (("mask", "mask"), ("pattern", "pattern"), ("stamped", "a clean image, stamped"),
                    ("gradcam", "Grad-CAM of its answer"))
        for i, (key, title) in enumerate(pictures):
            cap = QLabel(title)
            cap.setObjectName(f"scanCaption_{key}")
            cap.setWordWrap(True)
            pic = QLabel()
            pic.setObjectName(f"scanPic_{key}")
            pic.setMinimumSize(PIC, PIC)
            pic.setAlignment(Qt.AlignCenter)
            pic.setStyleSheet("background:#f4f4f4")
            grid.addWidget(cap, (i // 2) * 2, i % 2)
            grid.addWidget(pic, (i // 2) * 2 + 1, i % 2)
            self.pics[key], self.captions[key] = pic, cap
        rv.addLayout(grid)
        self.trigger_note = QLabel("")
        self.trigger_note.setObjectName("scanTriggerNote")
        self.trigger_note.setWordWrap(True)
        rv.addWidget(self.trigger_note)
        rv.addStretch(1)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        self.done = None
        self.scan_btn.clicked.connect(lambda: self.scanRequested.emit(self.seed.value(), self.budget.value()))
        self.use_btn.clicked.connect(self._use)
        self.save_btn.clicked.connect(self.saveRequested)
        self.measure.currentIndexChanged.connect(lambda _: self._draw())
        self.trigger.currentIndexChanged.connect(lambda _: self._show_trigger())
        self.show_scan(None)

    # ------------------------------------------------------------------ data
    def set_running(self, running: bool) -> None:
        was, self._running = getattr(self, "_running", False), running
        self.scan_btn.setEnabled(not running)
        if running:
            self.verdict.setText("Scanning… (progress and Cancel in the bar below)")
        elif was:  # ended without a result (failed): what was there before
            self.verdict.setText(self._verdict_text() if self.done is not None else INTRO)

    def cancelled(self) -> None:
        self.set_running(False)
        self.verdict.setText("Scan cancelled; nothing was written." if self.done is None else self._verdict_text())

    def show_scan(self, done) -> None:
        """A finished scan (``scantasks.ScanDone``), or None for none yet."""
        self.done = done
        self.set_running(False)
        has = done is not None
        flagged = has and bool(done.result.flagged)
        self.use_btn.setEnabled(flagged)
        self.save_btn.setEnabled(has)
        self.verdict.setText(self._verdict_text() if has else INTRO)
        self.trigger.blockSignals(True)
        self.trigger.clear()
        if has:
            for t, v in done.views.items():
                r = done.result.label_scan(t)
                ai = f", anomaly index {r.anomaly_index:.2f}" if r is not None and r.anomaly_index is not None else ""
                self.trigger.addItem(f"{t}{' — flagged' if v.flagged else ''}{ai}", t)
        self.trigger.blockSignals(False)
        self._fill_table()
        self._draw()
        self._show_trigger()

    def _verdict_text(self) -> str:
        r = self.done.result
        n, scanned = r.n_classes, len(r.scanned)
        how = (f"{scanned} of {n} labels optimised ({n - scanned} screened out), {r.steps_per_label:.0f} steps per "
               f"label, {r.seconds:.0f} s, on {r.clean_images + r.held_out_images:,} clean images")
        if r.flagged:
            rows = [r.label_scan(t) for t in r.flagged]
            what = "; ".join(f"label <b>{x.label}</b>: anomaly index {x.anomaly_index:.2f}, mask L1 {x.mask_l1:.1f}, "
                             f"its trigger sends {100 * x.attack_success:.0f} % of held-out clean images there"
                             for x in rows)
            return (f"<span style='font-size:13pt; color:{FLAGGED}'><b>Backdoor suspected</b></span> — {what}. "
                    f"<br><span style='color:#555'>{how}. Use its trigger as poisoned data to measure the "
                    "attack without the attacker's files.</span>")
        top = r.scanned[0] if r.scanned else None
        most = (f" The most suspicious label, {top.label}, has anomaly index {top.anomaly_index:.2f} "
                f"(flag above {self.threshold:g})." if top is not None and top.anomaly_index is not None else "")
        return (f"<span style='font-size:13pt; color:#1b6e1b'><b>No evidence of a backdoor</b></span> — no label "
                f"needs a markedly smaller trigger than the others.{most}<br><span style='color:#555'>{how}. "
                "A backdoor with a large or image-specific trigger can escape this scan.</span>")

    def _rows(self):
        return self.done.result.scanned if self.done is not None else []

    def _fill_table(self) -> None:
        rows = self._rows()[:TABLE_ROWS]
        flagged = set(self.done.result.flagged) if self.done is not None else set()
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = [str(r.label), f"{r.mask_l1:.1f}", f"{r.anomaly_index:.2f}", f"{100 * r.attack_success:.1f} %",
                     ("flagged " if r.label in flagged else "") + r.role]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignCenter)
                if r.label in flagged:
                    item.setForeground(pg.mkColor(FLAGGED))
                self.table.setItem(i, j, item)

    def _draw(self) -> None:
        rows = self._rows()
        key = self.measure.currentData()
        flagged = set(self.done.result.flagged) if self.done is not None else set()
        x = np.arange(len(rows), dtype=float)
        h = np.array([getattr(r, key) or 0.0 for r in rows], float)
        brushes = [pg.mkBrush(FLAGGED if r.label in flagged else REFERENCE if r.role == "reference" else CANDIDATE)
                   for r in rows]
        # (pyqtgraph's BarGraphItem fails on empty per-bar lists: none when there are no bars)
        self.bars.setOpts(x=x, height=h, width=0.8, brushes=brushes or None, pen=pg.mkPen(None))
        if key == "anomaly_index":
            self.line.setValue(self.threshold)
            self.line.label.setFormat(f"flag above {self.threshold:g}")
            self.plot.setLabel("left", "anomaly index (robust SDs below the median)")
        else:
            med = self.done.result.median_l1 if self.done is not None else None
            self.line.setValue(med or 0.0)
            self.line.label.setFormat(f"median {med:.1f}" if med is not None else "")
            self.plot.setLabel("left", "mask L1 norm (pixels)")
        self.line.setVisible(bool(rows))
        step = max(1, -(-len(rows) // 16))  # at most 16 names under the bars: they never overlap
        self.plot.getAxis("bottom").setTicks([[(i, str(r.label)) for i, r in enumerate(rows)][::step]])
        if rows:
            lo = min(0.0, float(h.min()))
            hi = max(float(h.max()), self.line.value())
            self.plot.setXRange(-0.8, len(rows) - 0.2, padding=0)
            self.plot.setYRange(lo - 0.05 * (hi - lo + 1e-9), hi + 0.12 * (hi - lo + 1e-9), padding=0)

    def _show_trigger(self) -> None:
        t = self.trigger.currentData()
        v = self.done.views.get(t) if self.done is not None and t is not None else None
        if v is None:
            for p in self.pics.values():
                p.clear()
            self.trigger_note.setText("The reversed triggers of the flagged and most suspicious labels appear "
                                      "here after a scan.")
            return
        self.pics["mask"].setPixmap(pixmap(heat(v.mask), PIC))
        self.captions["mask"].setText(f"mask (L1 {float(v.mask.sum()):.1f} pixels)")
        self.pics["pattern"].setPixmap(pixmap(v.pattern[..., :3], PIC))
        if v.stamped is not None:
            self.pics["stamped"].setPixmap(pixmap(v.stamped[..., :3], PIC))
            sent = v.answer == v.label
            colour = FLAGGED if sent else "#222"
            self.captions["stamped"].setText(f"a clean image, stamped: the model answers "
                                             f"<b style='color:{colour}'>{v.answer}</b>")
        else:
            self.pics["stamped"].clear()
        if v.gradcam is not None and v.stamped is not None:
            self.pics["gradcam"].setPixmap(pixmap(overlay(v.stamped, v.gradcam), PIC))
            self.captions["gradcam"].setText(f"Grad-CAM of the answer {v.answer}")
        else:
            self.pics["gradcam"].clear()
            self.captions["gradcam"].setText("Grad-CAM (no Conv2D layer to map)")
        self.trigger_note.setText(
            f"Label {v.label}: {'flagged — ' if v.flagged else ''}stamping this mask and pattern on clean images "
            f"sends them to {v.label}." + (" Where Grad-CAM lights up on the stamped image is where the model looks "
                                          "when it answers." if v.gradcam is not None else ""))

    def _use(self) -> None:
        t = self.trigger.currentData()
        if self.done is not None and self.done.result.flagged:
            self.useAsPoisoned.emit(int(t) if t in self.done.result.flagged else int(self.done.result.flagged[0]))
