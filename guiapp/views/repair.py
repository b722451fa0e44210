"""The Repair tab: remove the backdoor (unlearning) or catch it (the trigger filter, STRIP) next to
pruning, and compare them on one table: clean accuracy, attack success, poisoned images detected
(answered N), clean images falsely flagged, seconds. Each G can be saved with its eval script.
Fed the engine's ``RepairResult``; nothing is computed here."""

from __future__ import annotations

from pathlib import PurePath, PureWindowsPath

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QDoubleSpinBox, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

METHODS = (("unlearn", "Unlearning", "fine-tune a copy of B on clean validation images, a share stamped with the "
            "reversed trigger but keeping their true label (needs a trigger: the scan's)"),
           ("filter", "Trigger filter", "a G that stamps the reversed trigger on each input and flags it when B's "
            "answer does not move (needs a trigger: the scan's)"),
           ("strip", "STRIP", "a G that blends each input with clean images and flags it when B stays confident "
            "(needs no trigger)"))
COLUMNS = [("method", "method"), ("kind", "kind"), ("clean_acc", "clean acc. %"), ("asr", "ASR %"),
           ("detection", "detected %"), ("false_flags", "false flags %"), ("seconds", "seconds"), ("note", "note")]
# the chart's bars per method: the engine's report figure's measures and colours (engine.report.repair)
BARS = (("clean_acc", "clean accuracy", "#2ca02c"), ("asr", "attack success", "#d62728"),
        ("detection", "poisoned detected (N)", "#ff7f0e"), ("false_flags", "clean falsely flagged", "#1f77b4"))
G_TITLES = {"unlearned": "G (unlearning)", "filter": "G (trigger filter)", "strip": "G (STRIP)",
            "combined": "G (combined)"}
INTRO = ("Pick the methods and press <b>Run</b>. Unlearning and the trigger filter use the reversed trigger of the "
         "Scan tab (or the repair scans first); STRIP needs none. Thresholds and training use clean validation "
         "data only; poisoned data — real, or the scan's stand-in — is only evaluated.")


def short(text: str) -> str:
    """``text`` with each path in it cut to its file name."""
    return " ".join(PureWindowsPath(w).name if "\\" in w else PurePath(w).name if "/" in w else w
                    for w in str(text).split(" "))


class RepairView(QWidget):
    runRequested = Signal(list, float, int)  # methods, FRR (%), epochs
    saveRequested = Signal(str)  # G key: unlearned, filter, strip, combined

    def __init__(self, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.boxes = {}
        for key, title, tip in METHODS:
            box = QCheckBox(title)
            box.setObjectName(f"repair_{key}")
            box.setToolTip(tip)
            box.setChecked(True)
            self.boxes[key] = box
            bar.addWidget(box)
        bar.addSpacing(12)
        bar.addWidget(QLabel("FRR %"))
        self.frr = QDoubleSpinBox()
        self.frr.setObjectName("repairFrr")
        self.frr.setRange(0.0, 49.9)
        self.frr.setDecimals(1)
        self.frr.setSingleStep(0.5)
        self.frr.setValue(1.0)
        self.frr.setToolTip("The detectors' false-rejection rate on clean validation data: the share of clean "
                            "images they may flag")
        bar.addWidget(self.frr)
        bar.addWidget(QLabel("Epochs"))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10_000)
        self.epochs.setValue(5)
        self.epochs.setToolTip("Unlearning's epochs")
        bar.addWidget(self.epochs)
        self.run_btn = QPushButton("Run")
        self.run_btn.setObjectName("repairRun")
        bar.addWidget(self.run_btn)
        bar.addStretch(1)
        outer.addLayout(bar)
        self.note = QLabel(INTRO)
        self.note.setObjectName("repairNote")
        self.note.setWordWrap(True)
        outer.addWidget(self.note)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("repairTable")
        self.table.setHorizontalHeaderLabels([t for _, t in COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setWordWrap(True)
        hh = self.table.horizontalHeader()
        for i in range(len(COLUMNS) - 1):
            hh.setSectionResizeMode(i, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.Stretch)
        self.split = split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        chart = QWidget()
        cv = QVBoxLayout(chart)
        cv.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setObjectName("repairPlot")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setLabel("left", "%")
        self.plot.setYRange(0, 100, padding=0.02)
        self.plot.showGrid(y=True, alpha=0.25)
        self.bars = {}
        for i, (key, title, colour) in enumerate(BARS):
            item = pg.BarGraphItem(x=[], height=[], width=0.2, brush=colour, pen=pg.mkPen(None))
            self.plot.addItem(item)
            self.bars[key] = item
        cv.addWidget(self.plot, 1)
        self.key = QLabel(" &nbsp; ".join(f"<span style='color:{c}'>■</span> {t}" for _, t, c in BARS)
                          + " &nbsp; (clean test and poisoned test when given, else held-out validation)")
        self.key.setObjectName("repairKey")
        cv.addWidget(self.key)
        split.addWidget(chart)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        outer.addWidget(split, 1)
        self.sources = QLabel("")
        self.sources.setObjectName("repairSources")
        self.sources.setWordWrap(True)
        self.sources.setStyleSheet("color:#555")
        outer.addWidget(self.sources)
        saves = QHBoxLayout()
        saves.addWidget(QLabel("Save"))
        self.save_btns = {}
        for key, title in G_TITLES.items():
            b = QPushButton(f"{title}…")
            b.setObjectName(f"saveG_{key}")
            b.setEnabled(False)
            b.setToolTip("G with N+1 outputs (class N = backdoor suspected) and its *_eval.py, atomically, never "
                         "over an input")
            b.clicked.connect(lambda _=False, k=key: self.saveRequested.emit(k))
            self.save_btns[key] = b
            saves.addWidget(b)
        saves.addStretch(1)
        outer.addLayout(saves)
        self.result = None
        self.run_btn.clicked.connect(self._run)

    def methods(self) -> list[str]:
        return [k for k, b in self.boxes.items() if b.isChecked()]

    def _run(self) -> None:
        self.runRequested.emit(self.methods(), float(self.frr.value()), int(self.epochs.value()))

    def set_running(self, running: bool, scanned: bool = True) -> None:
        was, self._running = getattr(self, "_running", False), running
        self.run_btn.setEnabled(not running)
        if was and not running:  # ended without a result (failed): the words from before
            self.note.setText(INTRO)
        if running:
            self.note.setText("Repairing… (progress and Cancel in the bar below)" if scanned else
                              "Scanning for the trigger, then repairing… (progress and Cancel in the bar below)")

    def cancelled(self) -> None:
        self.set_running(False)
        self.note.setText("Repair cancelled; nothing was written." if self.result is None else INTRO)

    def show_result(self, res) -> None:
        """The engine's RepairResult: one row per method (the baseline B first, skipped ones last)."""
        self.result = res
        self.set_running(False)
        if res is None:  # none (another model was opened)
            self.table.setRowCount(0)
            for item in self.bars.values():
                item.setOpts(x=[], height=[])
            self.sources.setText("")
            self.note.setText(INTRO)
            for b in self.save_btns.values():
                b.setEnabled(False)
            return
        rows = res.rows
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, (key, _) in enumerate(COLUMNS):
                v = getattr(r, key)
                text = "–" if v is None or v == "" else (f"{v:.2f}" if isinstance(v, float) else str(v))
                if key == "seconds" and isinstance(v, float):
                    text = f"{v:.1f}"
                item = QTableWidgetItem(text)
                left = j in (0, 1, len(COLUMNS) - 1)
                item.setTextAlignment((Qt.AlignLeft if left else Qt.AlignRight) | Qt.AlignVCenter)
                if r.kind == "skipped":
                    item.setForeground(Qt.gray)
                self.table.setItem(i, j, item)
        self.table.resizeRowsToContents()
        # the whole table above the chart (the chart takes what is left, at least 180 px)
        need = (self.table.horizontalHeader().height() + sum(self.table.rowHeight(i) for i in range(len(rows)))
                + 2 * self.table.frameWidth() + 10)
        total = sum(self.split.sizes()) or self.split.height()
        self.split.setSizes([min(need, max(120, total - 180)), max(180, total - need)])
        self._draw(res)
        # file names only (the full paths in the tooltip)
        pois = [f"{role.replace('_', ' ')}: {short(src)}" for role, src in res.eval_sources.items()]
        self.sources.setToolTip("\n".join(f"{role}: {src}" for role, src in res.eval_sources.items()))
        trig = ", ".join(f"label {t.label}" for t in res.triggers) or "none"
        scan = " (the repair ran the scan first)" if res.scan is not None else ""
        self.sources.setText(f"Evaluated on — {'; '.join(pois)}. Reversed trigger: {trig}{scan}. "
                             f"FRR {res.frr:g} %. {res.seconds:.0f} s in all.")
        self.note.setText("Clean acc. and ASR are the repaired model's (unlearning) or G's answers (detectors); "
                          "detected = poisoned images answered N; false flags = clean images answered N.")
        for key, b in self.save_btns.items():
            b.setEnabled(key in res.goodnets)

    def _draw(self, res) -> None:
        """Grouped bars: each method's four measures (the items were created once)."""
        rows = [r for r in res.rows if r.kind != "skipped" and r.clean_acc is not None]
        x = np.arange(len(rows), dtype=float)
        w = 0.8 / len(BARS)
        for i, (key, _, _) in enumerate(BARS):
            h = np.array([np.nan if getattr(r, key) is None else float(getattr(r, key)) for r in rows])
            keep = np.isfinite(h)
            self.bars[key].setOpts(x=x[keep] + (i - 1.5) * w, height=h[keep], width=w)
        self.plot.getAxis("bottom").setTicks([[(i, r.method.replace(" + ", "+")) for i, r in enumerate(rows)]])
        self.plot.setXRange(-0.6, max(0.6, len(rows) - 0.4), padding=0)
