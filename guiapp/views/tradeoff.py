"""The Trade-off tab: the defender's question in one picture — clean validation accuracy (x)
against attack success rate (y). One curve per criterion (each step a point, in the colours of
the Curves tab), the random orders as faint lines around their mean, repaired models (fine-pruned
now; unlearned, filtered, STRIP later) as single named points, and the region a defender wants
(ASR ≤ 10 %, clean accuracy drop ≤ 4 %) shaded. Clicking a step's point picks that criterion and
step everywhere, as clicking a curve does. The numbers come from engine.report.compare; nothing is
computed here."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.pruning.criteria import banded_families, colour_of, family_of
from engine.report.compare import ASR_MAX, DROP_MAX, POINT_COLOURS, defender_region, tradeoff_xy

REGION = (42, 157, 58)


class TradeoffView(QWidget):
    """``set_sweeps({name: SweepResult})``, ``set_points(group, [NamedPoint])``, ``set_current(name, step)``."""

    pointPicked = Signal(str, int)  # criterion, record index (the step)

    def __init__(self, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        self.note = QLabel("Run a sweep (tick several criteria on the left to compare them): each criterion's "
                           "steps become a curve here, from the unpruned model (top right) leftwards.")
        self.note.setWordWrap(True)
        outer.addWidget(self.note)
        row = QHBoxLayout()
        outer.addLayout(row, 1)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setObjectName("tradeoffPlot")
        self.plot.setLabel("bottom", "clean validation accuracy (%)  → better")
        self.plot.setLabel("left", "attack success rate (%)  ↓ better")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setYRange(0, 100, padding=0.03)
        self.plot.setXRange(0, 100, padding=0.02)
        self.plot.setMouseEnabled(x=True, y=True)  # the wheel zooms into the crowded top-right corner
        self.plot.setToolTip("Click a point to pick that step; scroll to zoom, drag to pan, right-click ▸ View All")
        row.addWidget(self.plot, 1)
        self.key = QLabel()  # the legend, beside the plot (never over a point)
        self.key.setObjectName("tradeoffKey")
        self.key.setWordWrap(True)
        self.key.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.key.setMinimumWidth(230)
        self.key.setMaximumWidth(290)
        row.addWidget(self.key)
        self.readout = QLabel("")
        self.readout.setObjectName("tradeoffReadout")
        outer.addWidget(self.readout)
        self.curves: dict = {}  # name -> PlotDataItem of its steps
        self.index: dict = {}  # name -> record index of each plotted point
        self.results: dict = {}
        self.groups: dict = {}  # group ("fine-pruned", "repair") -> [NamedPoint]
        self._items: list = []
        self._point_items: list = []
        self.current = pg.ScatterPlotItem(size=18, symbol="o", pen=pg.mkPen("#2a9d3a", width=3), brush=None)
        self.current.setZValue(30)
        self.plot.addItem(self.current)
        self._draw_key()

    # ------------------------------------------------------------------ data
    def clear(self) -> None:
        for item in self._items + self._point_items:
            self.plot.removeItem(item)
        self._items, self._point_items = [], []
        self.curves, self.index, self.results, self.groups = {}, {}, {}, {}
        self.current.setData([], [])
        self.readout.setText("")
        self._draw_key()

    def set_sweeps(self, results: dict) -> None:
        """Every criterion's finished sweep ({name: SweepResult}, in the order swept)."""
        for item in self._items:
            self.plot.removeItem(item)
        self._items, self.curves, self.index, self.results = [], {}, {}, dict(results)
        if not results:
            self._draw_key()
            return
        first = next(iter(results.values()))
        base = first.records[0].clean_valid_acc if first.records else None
        if base is not None:
            x0, y1 = defender_region(base)
            region = pg.PlotDataItem([x0, 100], [y1, y1], pen=pg.mkPen(REGION, width=1), fillLevel=0,
                                     fillBrush=pg.mkBrush(*REGION, 45))
            edge = pg.PlotDataItem([x0, x0], [0, y1], pen=pg.mkPen(REGION, width=1))
            for item in (region, edge):
                item.setZValue(-5)
                self._add(item)
        families = banded_families(results)
        lo = 100.0
        for name, res in results.items():
            x, y, idx = tradeoff_xy(res.records)
            if not len(x):
                continue
            lo = min(lo, float(x.min()))
            faint = family_of(name) in families  # one order of a band: its mean stands for it
            colour = colour_of(name)
            item = pg.PlotDataItem(x, y, pen=pg.mkPen(colour, width=1 if faint else 2),
                                   symbol="o", symbolSize=4 if faint else 6, symbolPen=None,
                                   symbolBrush=pg.mkBrush(colour))
            if faint:
                item.setOpacity(0.45)
                item.setZValue(-2)
            item.sigPointsClicked.connect(lambda _item, points, ev=None, name=name: self._clicked(name, points))
            self._add(item)
            self.curves[name], self.index[name] = item, idx
        for members in families.values():
            self._family_mean(members)
        x, y, _ = tradeoff_xy(first.records[:1])
        if len(x):
            start = pg.ScatterPlotItem(x, y, size=16, symbol="o", pen=pg.mkPen("#222", width=1.5), brush=None)
            self._add(start)
        self.plot.setXRange(max(0.0, lo - 5), 100, padding=0.02)
        self.note.setText("Each point is one step of a criterion's sweep (more channels removed towards the left). "
                          "Click a point to pick that criterion and step for the cursor, Save B′/G and Fine-tune.")
        self._draw_key()

    def _family_mean(self, members) -> None:
        from engine.report.compare import band_of, curve_of

        first = self.results[members[0]]
        band = band_of(family_of(members[0]), [curve_of(n, self.results[n]) for n in members], first.thresholds)
        mean = pg.PlotDataItem(band.values["clean_valid_acc"], band.values["asr_valid"],
                               pen=pg.mkPen(colour_of(members[0]), width=3), connect="finite")
        mean.setZValue(-1)
        self._add(mean)

    def set_points(self, group: str, points) -> None:
        """Single repaired models (engine.report.compare.NamedPoint) of one ``group`` ("fine-pruned",
        later "repair"); each group replaces its own points only."""
        self.groups[group] = list(points)
        for item in self._point_items:
            self.plot.removeItem(item)
        self._point_items = []
        for pts in self.groups.values():
            for p in pts:
                colour = POINT_COLOURS.get(p.kind, "#c2185b")
                star = pg.ScatterPlotItem([p.clean], [p.asr], size=18, symbol="star", brush=pg.mkBrush(colour),
                                          pen=pg.mkPen("#222", width=0.8))
                # named to the left near the right edge (the unpruned model's corner), else to the right
                label = pg.TextItem(p.name, color=colour, anchor=(1.08, 1) if p.clean > 70 else (-0.08, 1))
                label.setPos(p.clean, p.asr)
                for item in (star, label):
                    item.setZValue(20)
                    self.plot.addItem(item)
                    self._point_items.append(item)
        self._draw_key()

    def points(self) -> list:
        return [p for pts in self.groups.values() for p in pts]

    def _add(self, item) -> None:
        self.plot.addItem(item)
        self._items.append(item)

    # ------------------------------------------------------------------ picking
    def _clicked(self, name: str, points) -> None:
        if points is None or not len(points):
            return
        i = int(points[0].index())
        if 0 <= i < len(self.index.get(name, ())):
            self.pick(name, int(self.index[name][i]))

    def pick(self, name: str, step: int) -> None:
        """Pick criterion ``name`` at record ``step`` (what a click on its point does)."""
        self.pointPicked.emit(name, step)

    def set_current(self, name: str, step: int) -> None:
        """Ring the point of the picked criterion and step; a read-out of its numbers below."""
        idx = self.index.get(name)
        if idx is None or not len(idx):
            self.current.setData([], [])
            return
        hit = np.flatnonzero(idx == step)
        if not len(hit):
            self.current.setData([], [])
            return
        x, y = self.curves[name].getData()
        self.current.setData([x[hit[0]]], [y[hit[0]]])
        rec = self.results[name].records[step]
        self.readout.setText(f"<b>{name}</b>, step {step} ({rec.fraction_pruned * 100:.1f} % removed): clean "
                             f"accuracy {x[hit[0]]:.2f} %, ASR {y[hit[0]]:.2f} %")

    # ------------------------------------------------------------------ legend
    def _draw_key(self) -> None:
        from engine.pruning.criteria import REGISTRY

        def sw(colour, glyph="■"):
            return f"<span style='color:{colour}; font-weight:bold'>{glyph}</span>"

        rows = [f"{sw('rgb(%d,%d,%d)' % REGION)} defender's region: ASR ≤ {ASR_MAX:g} %, clean accuracy drop ≤ "
                f"{DROP_MAX:g} %", f"{sw('#222', '○')} the unpruned model (step 0)",
                f"{sw('#2a9d3a', '◎')} the picked criterion and step"]
        families = banded_families(self.results)
        for name in self.results:
            if family_of(name) in families:
                continue
            base = REGISTRY.get(family_of(name))
            title = base.title if base else name
            rows.append(f"{sw(colour_of(name), '━●')} {title}")
        for fam, members in families.items():
            rows.append(f"{sw(colour_of(fam), '━━')} {fam}: mean of {len(members)} orders (faint: each; "
                        "its points pick that order)")
        for p in self.points():
            rows.append(f"{sw(POINT_COLOURS.get(p.kind, '#c2185b'), '★')} {p.name}")
        self.key.setText("<b>Legend</b><br>" + "<br>".join(rows))
