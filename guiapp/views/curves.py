"""Live pruning curves: clean accuracy and ASR against % channels removed, for validation
and for test, with threshold lines, a movable cursor that snaps to steps, and hover read-out.
Each curve is created once and then fed with ``setData`` as records stream in."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.core.vocabulary import SPLIT_KEYS, aggregate_metric
from engine.pruning.criteria import colour_of, family_of, is_seeded, seeded_members
from engine.report.figures import SET_COLOURS

# every measure has one line style everywhere: clean accuracy solid, ASR dashed
ACC_PEN = pg.mkPen("#1f5fd1", width=2)
ASR_PEN = pg.mkPen("#d1341f", width=2, style=Qt.DashLine)
FT_ACC_PEN = pg.mkPen("#1f5fd1", width=2, style=Qt.DotLine)
FT_ASR_PEN = pg.mkPen("#d1341f", width=2, style=Qt.DashDotLine)
THRESH_PEN = pg.mkPen("#444", width=1, style=Qt.DashLine)
CURSOR_PEN = pg.mkPen("#2a9d3a", width=2)

SPLITS = {"valid": ("Validation", *SPLIT_KEYS["valid"]), "test": ("Test", *SPLIT_KEYS["test"])}
LABEL_GAP = 3.2  # threshold names on the right axis: at least this far apart (% of the y range)


def ranking_colour(name: str) -> str:
    """A criterion's colour, from the criteria registry (``random-3`` is ``random``'s): the
    trade-off view and the exported figures use the same colours."""
    return colour_of(name)


def series(records, key: str) -> tuple[np.ndarray, np.ndarray]:
    """x (% removed) and y of the records whose ``key`` is known, from the start without a gap."""
    ys = [r.metric(key) for r in records]
    n = next((i for i, v in enumerate(ys) if v is None), len(ys))
    return (np.array([r.fraction_pruned * 100 for r in records[:n]], float), np.array(ys[:n], float))


class CurvePlot(pg.PlotWidget):
    """One of the two plots (validation or test)."""

    def __init__(self, split: str, parent=None):
        super().__init__(parent=parent, background="w")
        self.split = split
        title, self.acc_key, self.asr_key = SPLITS[split]
        self.setTitle(f"<span style='color:#222'>{title}</span>")
        self.setLabel("bottom", "channels removed", units="%")
        self.setLabel("left", "rate", units="%")
        self.setXRange(0, 100, padding=0.02)
        self.setYRange(0, 100, padding=0.04)
        self.showGrid(x=True, y=True, alpha=0.25)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.showAxis("right")  # the threshold lines are named on the right axis, clear of the curves
        self.getAxis("right").setTicks([[]])
        self.getAxis("right").setWidth(74)  # wide enough for "−10 % acc." (a narrower axis drops the label)
        self.getAxis("right").setStyle(tickLength=0)
        self.getAxis("right").setGrid(False)  # only for names: the grid is drawn once, by the left and bottom axes
        # the legend is the key under the plots (CurvesView.key): inside, it covered the curves' ends
        self.acc = self.plot([], [], pen=ACC_PEN, name="clean accuracy", symbol="o", symbolSize=4,
                             symbolBrush="#1f5fd1", symbolPen=None)
        self.asr = self.plot([], [], pen=ASR_PEN, name="attack success rate", symbol="o", symbolSize=4,
                             symbolBrush="#d1341f", symbolPen=None)
        self.ft_acc = self.plot([], [], pen=FT_ACC_PEN, symbol="t", symbolSize=7, symbolBrush="#1f5fd1")
        self.ft_asr = self.plot([], [], pen=FT_ASR_PEN, symbol="t", symbolSize=7, symbolBrush="#d1341f")
        for item in (self.ft_acc, self.ft_asr):
            item.setVisible(False)
        self.acc.setCurveClickable(True, width=8)
        self.asr.setCurveClickable(True, width=8)
        self.thresholds: list[pg.InfiniteLine] = []
        self.markers: list[pg.InfiniteLine] = []
        self.overlay: dict[str, tuple] = {}  # criterion -> (clean, ASR) curves
        self.set_curves: dict[str, pg.PlotDataItem] = {}  # asr_<split>_<name> -> one trigger's ASR curve
        self.bands: dict[str, tuple] = {}  # metric -> (low, high, fill, mean) of the random band
        self.points: list = []  # criteria's own operating points (dot and label)
        self.cursor = pg.InfiniteLine(pos=0, angle=90, movable=True, pen=CURSOR_PEN,
                                      hoverPen=pg.mkPen("#2a9d3a", width=4))
        self.cursor.setZValue(10)
        self.addItem(self.cursor)
        self.readout = pg.TextItem(anchor=(0, 0), color="#222", fill=pg.mkBrush(255, 255, 255, 220))
        self.readout.setZValue(20)
        self.readout.setVisible(False)
        self.addItem(self.readout, ignoreBounds=True)
        self.empty = pg.TextItem("", anchor=(0.5, 0.5), color="#777")
        self.empty.setPos(50, 50)
        self.addItem(self.empty, ignoreBounds=True)
        self.say_empty("")

    def say_empty(self, text: str) -> None:
        """A word in the middle of the plot when it has nothing to show, and why."""
        self.empty.setText(text)
        self.empty.setVisible(bool(text))


class CurvesView(QWidget):
    """The two plots side by side, sharing one cursor position (a step)."""

    stepPicked = Signal(int)
    rankingPicked = Signal(str)  # a criterion's curve was clicked

    def __init__(self, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        lay = QHBoxLayout()
        outer.addLayout(lay, 1)
        self.key = QLabel()
        self.key.setObjectName("rankingKey")
        self.key.setWordWrap(True)
        self.key.setVisible(False)
        outer.addWidget(self.key)
        self.plots = {s: CurvePlot(s) for s in SPLITS}
        for p in self.plots.values():
            lay.addWidget(p)
            p.cursor.sigDragged.connect(lambda line, p=p: self._dragging(p))
            p.cursor.sigPositionChangeFinished.connect(lambda line, p=p: self._drag_finished(p))
            p.acc.sigClicked.connect(lambda item, ev, p=p: self._clicked(p, ev))
            p.asr.sigClicked.connect(lambda item, ev, p=p: self._clicked(p, ev))
            p.scene().sigMouseMoved.connect(lambda pos, p=p: self._hover(p, pos))
        self.records: list = []  # the picked criterion's (or the only) sweep
        self.by_ranking: dict[str, list] = {}  # every criterion's records, when several are swept
        self.n_channels = 0
        self.step = 0
        self._fine: list = []
        self._thresholds: tuple = ()
        self._own: dict = {}  # criterion -> (step, label, x %, colour) of its own operating point
        self._set_colours: dict[str, str] = {}  # trigger (poisoned set) name -> its curves' colour
        # records can arrive faster than it is worth redrawing: coalesce to at most 20 redraws a second
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(50)
        self._redraw.timeout.connect(self._refresh)

    # ------------------------------------------------------------------ data
    def clear(self, n_channels: int = 0, thresholds=()) -> None:
        self.records = []
        self.n_channels = n_channels
        self._fine = []
        for p in self.plots.values():
            for item in (p.acc, p.asr, p.ft_acc, p.ft_asr):
                item.setData([], [])
            p.ft_acc.setVisible(False)
            p.ft_asr.setVisible(False)
            for line in p.thresholds + p.markers + list(p.set_curves.values()):
                p.removeItem(line)
            p.thresholds, p.markers, p.set_curves = [], [], {}
            p.getAxis("right").setTicks([[]])
            p.readout.setVisible(False)
        self._thresholds = tuple(thresholds)
        self._show_key()
        self.set_step(0, emit=False)

    def start(self, n_channels: int, thresholds=(), has_test: bool = True) -> None:
        """A sweep begins: empty curves over ``n_channels`` channels."""
        self.clear(n_channels, thresholds=thresholds)
        self.clear_rankings()
        self.plots["test"].say_empty("" if has_test else
                                     "No test data loaded.\nDrop clean or poisoned test files on the\n"
                                     "data slots to see B′ on data it was not ranked on.")

    def add_record(self, rec) -> None:
        """A step's record, new or filled in with another dataset's metrics; refresh."""
        if rec.step < len(self.records):
            self.records[rec.step] = rec
        else:
            self.records.append(rec)
            if rec.step == 0 and rec.clean_valid_acc is not None:
                self._draw_thresholds(rec.clean_valid_acc)
            for tval in rec.reached:
                self._mark(rec, tval)
        if not self._redraw.isActive():
            self._redraw.start()

    def set_records(self, records, thresholds=(), checkpoints=()) -> None:
        self._redraw.stop()
        self.clear(self.n_channels, thresholds=thresholds)
        for r in records:
            self.records.append(r)
        if records and records[0].clean_valid_acc is not None:
            self._draw_thresholds(records[0].clean_valid_acc)
        for cp in checkpoints:
            if cp.step is not None:
                self._mark(records[cp.step], cp.threshold)
        self._refresh()

    def _refresh(self) -> None:
        for p in self.plots.values():
            sets = self._set_curves(p)
            for item, key in ((p.acc, p.acc_key), (p.asr, p.asr_key)):
                # several triggers: one ASR curve per poisoned set instead of their highest
                item.setData(*(series(self.records, key) if not (sets and item is p.asr) else ([], [])))
            for key, item in sets.items():
                item.setData(*series(self.records, key))
        self._refresh_rankings()

    def _set_curves(self, p: "CurvePlot") -> dict:
        """The plot's per-set ASR curves (named poisoned sets), created once each."""
        keys = [k for k in (self.records[-1].sets if self.records else {}) if aggregate_metric(k) == p.asr_key]
        for k in keys:
            if k not in p.set_curves:
                name = k.split("_", 2)[2]  # a trigger has one colour in both plots and the key
                colour = self._set_colours.setdefault(name, SET_COLOURS[len(self._set_colours) % len(SET_COLOURS)])
                item = p.plot([], [], pen=pg.mkPen(colour, width=2, style=Qt.DashLine), symbol="o", symbolSize=4,
                              symbolBrush=colour, symbolPen=None)
                item.setCurveClickable(True, width=8)
                item.sigClicked.connect(lambda _item, ev, p=p: self._clicked(p, ev))
                p.set_curves[k] = item
                self._show_key()
        return p.set_curves

    # ------------------------------------------------------------------ several criteria
    def add_ranking_record(self, name: str, rec) -> None:
        """A step of one criterion's sweep (several criteria are swept one after another)."""
        recs = self.by_ranking.setdefault(name, [])
        if rec.step < len(recs):
            recs[rec.step] = rec
        else:
            recs.append(rec)
        if not self._redraw.isActive():
            self._redraw.start()

    def _overlay(self, p: "CurvePlot", name: str):
        """The pair of curves of criterion ``name`` on plot ``p``, made once."""
        if name not in p.overlay:
            base = family_of(name)
            colour = ranking_colour(base)
            width = 1 if is_seeded(base) else 2
            acc = p.plot([], [], pen=pg.mkPen(colour, width=width))
            asr = p.plot([], [], pen=pg.mkPen(colour, width=width, style=Qt.DashLine))
            for item in (acc, asr):
                item.setZValue(-1)  # the picked criterion's thick curves stay on top
                item.setCurveClickable(True, width=8)
                item.sigClicked.connect(lambda _i, ev, p=p, name=name: self._clicked_ranking(p, name, ev))
            if base != name:  # a seeded family's orders: their band and mean stand for them

                acc.setVisible(False)
                asr.setVisible(False)
            p.overlay[name] = (acc, asr)
        return p.overlay[name]

    def _refresh_rankings(self) -> None:
        if self.by_ranking and self.key.property("names") != len(self.by_ranking):
            self._show_key()
        families = seeded_members(self.by_ranking)
        for p in self.plots.values():
            for name, recs in self.by_ranking.items():
                acc, asr = self._overlay(p, name)
                acc.setData(*series(recs, p.acc_key))
                asr.setData(*series(recs, p.asr_key))
            for members in families.values():
                if len(members) > 1:
                    self._band(p, [self.by_ranking[n] for n in members])

    def _band(self, p: "CurvePlot", randoms: list) -> None:
        """The random orders' min–max band (shaded) and mean (grey), clean solid, ASR dashed."""
        n = min(len(r) for r in randoms)
        for key, style in ((p.acc_key, Qt.SolidLine), (p.asr_key, Qt.DashLine)):
            ys = [series(r[:n], key)[1] for r in randoms]
            m = min(len(y) for y in ys)
            if not m:
                continue
            x = series(randoms[0][:m], key)[0]
            stack = np.array([y[:m] for y in ys])
            if key not in p.bands:
                edge = pg.mkPen(150, 150, 150, 90, width=1)
                a, b = p.plot([], [], pen=edge), p.plot([], [], pen=edge)
                fill = pg.FillBetweenItem(a, b, brush=pg.mkBrush(150, 150, 150, 70))
                mean = p.plot([], [], pen=pg.mkPen("#888", width=2, style=style))
                for item in (a, b, fill, mean):
                    item.setZValue(-2)
                p.addItem(fill)
                p.bands[key] = (a, b, fill, mean)
            a, b, _, mean = p.bands[key]
            a.setData(x, stack.min(axis=0))
            b.setData(x, stack.max(axis=0))
            mean.setData(x, stack.mean(axis=0))

    def _clicked_ranking(self, p: "CurvePlot", name: str, ev) -> None:
        self.rankingPicked.emit(name)
        self._clicked(p, ev)

    def mark_points(self, points: dict) -> None:
        """Criteria's own operating points ({name: (record index, label)}), e.g. CLP's channels
        above mean + u·std: a labelled dot on that criterion's clean-accuracy curve."""
        for p in self.plots.values():
            for name, (step, text) in points.items():
                recs = self.by_ranking.get(name, [])
                if step is None or step >= len(recs) or recs[step].metric(p.acc_key) is None:
                    continue
                x, y = recs[step].fraction_pruned * 100, recs[step].metric(p.acc_key)
                colour = ranking_colour(name)
                dot = pg.ScatterPlotItem([x], [y], size=11, symbol="d", brush=pg.mkBrush(colour), pen=pg.mkPen("w"))
                dot.setToolTip(f"{text}: step {step}, {x:.1f} % removed")
                p.addItem(dot)  # named in the key under the plots, never over a curve
                p.points.append(dot)
                self._own[name] = (step, text, x, colour)
        self._show_key()

    def clear_rankings(self) -> None:
        for p in self.plots.values():
            for acc, asr in p.overlay.values():
                p.removeItem(acc)
                p.removeItem(asr)
            for items in p.bands.values():
                for item in items:
                    p.removeItem(item)
            for item in p.points:
                p.removeItem(item)
            p.overlay, p.bands, p.points = {}, {}, []
        self._own = {}
        self.by_ranking = {}
        self.key.setProperty("names", 0)
        self._show_key()

    def _show_key(self) -> None:
        """The legend, under the plots (inside them it covered the ends of the curves, where the
        comparison is decided): the measures (line styles), the marks, and each criterion's colour."""
        from engine.pruning.criteria import REGISTRY

        def swatch(colour, glyph):
            return f"<span style='color:{colour}; font-weight:bold'>{glyph}</span>"

        several = bool(self.by_ranking)
        pick = " of the picked criterion (thick)" if several else ""
        sets = dict.fromkeys(k.split("_", 2)[2] for p in self.plots.values() for k in p.set_curves)
        measures = [f"{swatch('#1f5fd1', '━━')} clean accuracy{pick}"] + ([] if sets else [
            f"{swatch('#d1341f', '╺╺╺')} attack success rate (ASR){pick}"])
        if self._fine:
            measures.append(f"{swatch('#1f5fd1', '▲┈┈')} / {swatch('#d1341f', '▲━╺')} fine-tuned, per epoch")
        if self._thresholds:
            measures.append(f"{swatch('#444', '╌╌')} thresholds (right: −t % clean acc.), "
                            f"{swatch('#999', '┊')} where each is reached")
        lines = [" &nbsp; ".join(measures)]
        if sets:
            lines.append("ASR per trigger (poisoned set), dashed: " + " &nbsp; ".join(
                f"{swatch(self._set_colours[name], '╺╺╺')} {name}" for name in sets))
        if several:
            bases = list(dict.fromkeys(family_of(n) for n in self.by_ranking))
            members = seeded_members(self.by_ranking)
            parts = [f"{swatch(ranking_colour(b), '■')} {REGISTRY[b].title if b in REGISTRY else b}"
                     + (f" (band and mean of {len(members[b])} orders)" if b in members else "")
                     for b in bases]
            lines.append("Criteria — each its colour, clean accuracy solid, ASR dashed (click a curve to pick it): "
                         + " &nbsp; ".join(parts))
        for step, text, x, colour in self._own.values():
            lines.append(f"{swatch(colour, '◆')} {text}: step {step}, {x:.1f} % removed")
        self.key.setText("<br>".join(lines))
        self.key.setProperty("names", len(self.by_ranking))
        self.key.setVisible(bool(self._thresholds or self.records or several))

    def _draw_thresholds(self, base: float) -> None:
        ys = [base * (1 - t / 100) for t in self._thresholds]
        ticks = []  # names nudged apart so that close thresholds (2 and 4 %) both stay readable
        for y, t in sorted(zip(ys, self._thresholds), reverse=True):
            at = y if not ticks else min(y, ticks[-1][0] - LABEL_GAP)
            ticks.append((at, f"−{t:g} % acc."))
        ticks.sort(key=lambda tk: -tk[0])
        for p in self.plots.values():
            for y in ys:
                line = pg.InfiniteLine(pos=y, angle=0, pen=THRESH_PEN)
                p.addItem(line)
                p.thresholds.append(line)
            p.getAxis("right").setTicks([ticks])

    def _mark(self, rec, t: float) -> None:
        for p in self.plots.values():
            i = len(p.markers)
            line = pg.InfiniteLine(pos=rec.fraction_pruned * 100, angle=90,
                                   pen=pg.mkPen("#999", width=1, style=Qt.DotLine),
                                   label=f"{t:g} %", labelOpts={"position": 0.08 + 0.06 * i, "color": "#666",
                                                                "anchors": [(1, 0.5), (1, 0.5)]})
            p.addItem(line)
            p.markers.append(line)

    def set_fine_tune(self, step: int, epochs: list) -> None:
        """A second set of curves (dashed): fine-tuning from ``step``, one point per epoch
        plotted at the same % removed, spread to the right by epoch for readability."""
        self._fine = list(epochs)
        if not self.n_channels or not self.records:
            return
        x0 = self.x_of(step)
        xs = np.array([x0 + 1.2 * i for i in range(len(epochs))], float)
        for p in self.plots.values():
            for item, key in ((p.ft_acc, p.acc_key), (p.ft_asr, p.asr_key)):
                ys = [e.metric(key) for e in epochs]
                ok = bool(ys) and ys[0] is not None
                item.setData(xs if ok else [], np.array(ys, float) if ok else [])
                item.setVisible(ok)
        self._show_key()

    # ------------------------------------------------------------------ cursor
    def x_of(self, step: int) -> float:
        """Where record ``step`` sits on the x axis: the % of channels it prunes (its
        ``pruned`` count, the one rule of engine.pruning.records.pruned_count — not the record index)."""
        from engine.pruning.records import pruned_count

        if not self.records or not self.n_channels:
            return 0.0
        step = int(max(0, min(step, len(self.records) - 1)))
        return pruned_count([r.pruned for r in self.records], step) / self.n_channels * 100

    def step_at(self, x_percent: float) -> int:
        """The record nearest to ``x_percent`` % of channels removed (the first of equals)."""
        if not self.records:
            return 0
        xs = np.array([self.x_of(i) for i in range(len(self.records))])
        return int(np.argmin(np.abs(xs - x_percent)))

    def set_step(self, step: int, emit: bool = True) -> None:
        last = len(self.records) - 1
        step = int(max(0, min(step, last))) if last >= 0 else 0
        self.step = step
        x = self.x_of(step)
        for p in self.plots.values():
            p.cursor.blockSignals(True)
            p.cursor.setValue(x)
            p.cursor.blockSignals(False)
        if emit:
            self.stepPicked.emit(step)

    def _dragging(self, p: CurvePlot) -> None:
        step = self.step_at(p.cursor.value())
        for q in self.plots.values():
            if q is not p:
                q.cursor.blockSignals(True)
                q.cursor.setValue(p.cursor.value())
                q.cursor.blockSignals(False)
        self._show_readout(p, step)

    def _drag_finished(self, p: CurvePlot) -> None:
        self.set_step(self.step_at(p.cursor.value()))  # snap

    def _clicked(self, p: CurvePlot, ev) -> None:
        pos = p.plotItem.vb.mapSceneToView(ev.scenePos())
        self.set_step(self.step_at(pos.x()))

    def _hover(self, p: CurvePlot, scene_pos) -> None:
        if not self.records or not p.sceneBoundingRect().contains(scene_pos):
            p.readout.setVisible(False)
            return
        pos = p.plotItem.vb.mapSceneToView(scene_pos)
        if not (0 <= pos.x() <= 100):
            p.readout.setVisible(False)
            return
        self._show_readout(p, self.step_at(pos.x()))

    def readout_text(self, p: CurvePlot, step: int) -> str:
        r = self.records[step]
        lines = [f"step {step} · {r.fraction_pruned * 100:.1f} % removed"]
        acc, asr = r.metric(p.acc_key), r.metric(p.asr_key)
        if acc is not None:
            lines.append(f"clean accuracy {acc:.2f} %")
        sets = [k for k in p.set_curves if r.metric(k) is not None]
        for k in sets:
            lines.append(f"ASR {k.split('_', 2)[2]} {r.metric(k):.2f} %")
        if asr is not None and not sets:
            lines.append(f"ASR {asr:.2f} %")
        return "\n".join(lines)

    def _show_readout(self, p: CurvePlot, step: int) -> None:
        if not self.records:
            return
        p.readout.setText(self.readout_text(p, step))
        r = self.records[step]
        x = r.fraction_pruned * 100
        p.readout.setAnchor((1, 0) if x > 60 else (0, 0))
        p.readout.setPos(x, 48)
        p.readout.setVisible(True)

    def keyPressEvent(self, ev) -> None:
        if ev.key() in (Qt.Key_Left, Qt.Key_Down):
            self.set_step(self.step - 1)
        elif ev.key() in (Qt.Key_Right, Qt.Key_Up):
            self.set_step(self.step + 1)
        elif ev.key() == Qt.Key_Home:
            self.set_step(0)
        elif ev.key() == Qt.Key_End:
            self.set_step(len(self.records) - 1)
        else:
            super().keyPressEvent(ev)


class CurvesTab(QWidget):
    """The Curves tab: the two plots above the picked step's panel."""

    def __init__(self, step_panel: QWidget, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.curves = CurvesView()
        self.curves.setFocusPolicy(Qt.StrongFocus)
        lay.addWidget(self.curves, 1)
        lay.addWidget(step_panel)
