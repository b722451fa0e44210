"""The lab's bar charts — accuracy and ASR of B' and of G at each checkpoint and at the
picked step — and a table of G's detection and false-flag rates (plus fine-pruned models)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.core.vocabulary import poisoned_roles, set_name
from engine.report.figures import SET_COLOURS
from guiapp.views.stepview import StepView

ACC = (46, 139, 60)
ASR = (209, 52, 31)
FLAG = (217, 139, 0)


class BarChart(pg.PlotWidget):
    def __init__(self, title: str, parent=None):
        super().__init__(parent=parent, background="w")
        self.setTitle(f"<span style='color:#222'>{title}</span>")
        self.setYRange(0, 128, padding=0)
        self.getAxis("left").setTicks([[(v, str(v)) for v in range(0, 101, 20)]])
        self.setLabel("left", "%")
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.showGrid(y=True, alpha=0.2)
        self.legend = self.addLegend(offset=(5, 2), labelTextColor="#222", colCount=3)
        self._items = []

    def show_groups(self, names: list[str], series: list[tuple[str, list[float], tuple]]) -> None:
        for it in self._items:
            self.removeItem(it)
        self._items = []
        self.legend.clear()
        k = len(series)
        w = 0.8 / max(1, k)
        x = np.arange(len(names), dtype=float)
        for i, (label, vals, color) in enumerate(series):
            vals = np.array([np.nan if v is None else v for v in vals], float)
            ok = np.isfinite(vals)
            bars = pg.BarGraphItem(x=x[ok] - 0.4 + w * (i + 0.5), height=vals[ok], width=w * 0.95,
                                   brush=pg.mkBrush(*color), pen=pg.mkPen(None))

            self.addItem(bars)
            self._items.append(bars)
            self.legend.addItem(bars, label)
            for xi, v in zip(x[ok], vals[ok]):
                t = pg.TextItem(f"{v:.1f}", anchor=(0.5, 1), color="#333")
                t.setPos(xi - 0.4 + w * (i + 0.5), v + 1)
                self.addItem(t)
                self._items.append(t)
        self.getAxis("bottom").setTicks([[(float(i), n) for i, n in enumerate(names)]])
        self.setXRange(-0.6, max(0.6, len(names) - 0.4), padding=0)


def _rgb(hex_colour: str, alpha: int = 255) -> tuple:
    h = hex_colour.lstrip("#")
    return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), alpha)


class ResultsView(StepView, QWidget):
    COLS = ["model", "step", "% removed", "clean acc", "ASR", "G clean acc", "G ASR",
            "G detects (poisoned flagged)", "G false flags (clean flagged)"]

    saveFineTuned = Signal(str)  # "bprime" | "goodnet"

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.note = QLabel("Run a sweep to compare the repaired models (B') and the detectors (G).")
        self.note.setWordWrap(True)
        top.addWidget(self.note, 1)
        self.save_ft_bp = QPushButton("Save fine-pruned B′…")
        self.save_ft_g = QPushButton("Save fine-pruned G…")
        for b in (self.save_ft_bp, self.save_ft_g):
            b.setEnabled(False)
            top.addWidget(b)
        self.save_ft_bp.clicked.connect(lambda: self.saveFineTuned.emit("bprime"))
        self.save_ft_g.clicked.connect(lambda: self.saveFineTuned.emit("goodnet"))
        lay.addLayout(top)
        charts = QHBoxLayout()
        self.bprime_chart = BarChart("Repaired models B'")
        self.goodnet_chart = BarChart("Detectors G")
        charts.addWidget(self.bprime_chart)
        charts.addWidget(self.goodnet_chart)
        lay.addLayout(charts, 3)
        self.table = QTableWidget(0, len(self.COLS))
        self.table.setObjectName("resultsTable")
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        lay.addWidget(self.table, 2)
        self.result = None
        self.step = 0
        self.fine = []  # list of (name, step, metrics dict role->{...})

    def set_fine_tuned(self, runs: list) -> None:
        """The fine-tuning runs (engine FineTuneResults) to list after the checkpoints."""
        self.fine = [(f"fine-pruned @{f.step} ({f.config.epochs} ep)", f.step, f.evaluation()) for f in runs]
        self.save_ft_bp.setEnabled(bool(runs))
        self.save_ft_g.setEnabled(bool(runs))
        self.refresh()

    def _rows(self):
        r = self.result
        rows = []
        for cp in r.checkpoints:
            if cp.step is not None:
                rows.append((f"{cp.threshold:g} % drop", cp.step, r.evaluate_step(cp.step)))
        rows.append(("picked step", self.step, r.evaluate_step(self.step)))
        for name, step, ev in self.fine:
            rows.append((name, step, ev))
        return rows

    def refresh(self) -> None:
        r = self.result
        if r is None or not r.records or self.step >= len(r.records):
            self.table.setRowCount(0)
            return
        test = "clean_test" in r.labels
        clean_role = "clean_test" if test else "clean_valid"
        # the poisoned sets measured (several triggers: each set's ASR and detection)
        bd_roles = (poisoned_roles(r.labels, "test") if test else []) or poisoned_roles(r.labels, "valid") \
            or ["poisoned_valid"]
        bd_role = bd_roles[0]
        rows = self._rows()
        names = [f"step {s}" if n == "picked step" else f"FP@{s}" if n.startswith("fine-pruned")
                 else n.replace(" drop", "") for n, s, _ in rows]

        def get(ev, role, key):
            return ev.get(role, {}).get(key)

        def per_set(key, title, colour, flag=False):
            if len(bd_roles) == 1:
                return [(title, [get(e, bd_role, key) for _, _, e in rows], colour)]
            return [(f"{'flagged' if flag else 'ASR'} · {set_name(role)}", [get(e, role, key) for _, _, e in rows],
                     _rgb(SET_COLOURS[i % len(SET_COLOURS)], 140 if flag else 255)) for i, role in enumerate(bd_roles)]

        self.bprime_chart.show_groups(names, [
            ("accuracy", [get(e, clean_role, "bprime_acc") for _, _, e in rows], ACC),
            *per_set("bprime_asr", "attack success rate", ASR)])
        self.goodnet_chart.show_groups(names, [
            ("accuracy", [get(e, clean_role, "goodnet_acc") for _, _, e in rows], ACC),
            *per_set("goodnet_asr", "attack success rate", ASR),
            *per_set("goodnet_flagged", "poisoned flagged", FLAG, flag=True)])

        def cell(ev, key):  # one value, or one per trigger
            if len(bd_roles) == 1:
                return get(ev, bd_role, key)
            return " · ".join(f"{set_name(role)} {get(ev, role, key):.2f} %" for role in bd_roles
                              if get(ev, role, key) is not None)
        self.note.setText(f"On the {'test' if test else 'validation'} data. B = the suspect BadNet "
                          f"(clean acc {get(rows[0][2], clean_role, 'badnet_acc') or 0:.2f} %, ASR "
                          f"{get(rows[0][2], bd_role, 'badnet_asr') or 0:.2f} %); G answers class "
                          f"{r.flag_class} (backdoor suspected) where B and B' disagree.")
        self.table.setRowCount(len(rows))
        for i, (name, step, ev) in enumerate(rows):
            rec = r.records[step] if step < len(r.records) else None
            vals = [name, str(step), f"{rec.fraction_pruned * 100:.1f}" if rec else "",
                    get(ev, clean_role, "bprime_acc"), cell(ev, "bprime_asr"),
                    get(ev, clean_role, "goodnet_acc"), cell(ev, "goodnet_asr"),
                    cell(ev, "goodnet_flagged"), get(ev, clean_role, "goodnet_false_flagged")]
            for c, v in enumerate(vals):
                text = v if isinstance(v, str) else ("" if v is None else f"{v:.2f} %")
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignCenter)
                self.table.setItem(i, c, item)
