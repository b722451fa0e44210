"""Mean activation of each channel of the pruned layer, clean vs poisoned validation side
by side (where backdoor neurons show), channels pruned at the picked step greyed."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from guiapp.views.stepview import StepView

CLEAN = (31, 95, 209)
POISON = (209, 52, 31)
GREY = (190, 190, 190)


class ActivationsView(StepView, QWidget):
    channelMapsWanted = Signal()  # a channel was clicked: its mean activation maps are needed

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.info = QLabel("Mean activation per channel appears after the activations are computed.")
        self.info.setWordWrap(True)  # a long headline wraps instead of widening the window
        top.addWidget(self.info, 1)
        top.addWidget(QLabel("Order"))
        self.order = QComboBox()
        self.order.addItems(["by channel", "by rank (pruning order)"])
        top.addWidget(self.order)
        lay.addLayout(top)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("left", "mean |activation|")
        self.plot.setLabel("bottom", "channel")
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.setMouseEnabled(x=True, y=False)
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextColor="#222")
        lay.addWidget(self.plot, 1)
        maps = QHBoxLayout()  # a clicked channel's mean activation map, clean vs poisoned
        self.map_title = QLabel("Click a channel's bars to see where it fires on clean and on poisoned images.")
        self.map_title.setWordWrap(True)
        maps.addWidget(self.map_title, 1)
        self.map_pics = {r: QLabel() for r in ("clean_valid", "poisoned_valid")}
        for pic in self.map_pics.values():
            maps.addWidget(pic)
        lay.addLayout(maps)
        self.picked: int | None = None
        self._channel_maps = None
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.clean_bars = pg.BarGraphItem(x=[], height=[], width=0.4)
        self.poison_bars = pg.BarGraphItem(x=[], height=[], width=0.4)
        self.plot.addItem(self.clean_bars)
        self.plot.addItem(self.poison_bars)
        self.legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=CLEAN), "clean validation")
        self.legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=POISON), "poisoned validation")
        self.legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=GREY), "pruned at this step")
        self.result = None
        self.step = 0
        self._means: dict = {}
        self._order: list[int] = []
        self._rankings: list = []  # engine.pruning.criteria.Ranking of the last comparison
        self._shown = np.zeros(0, int)
        self._where = ""
        self.order.currentIndexChanged.connect(lambda _: self.refresh())

    def set_rankings(self, done) -> None:
        """Offer "by <criterion> score" orders (bars coloured by that score) after a comparison."""
        self._rankings = list(done.rankings.values())
        self.order.blockSignals(True)
        while self.order.count() > 2:
            self.order.removeItem(2)
        for rk in self._rankings:
            self.order.addItem(f"by {rk.title} score")
        self.order.blockSignals(False)
        self._draw()

    def show_means(self, info) -> None:
        """While a sweep runs: the means and order announced before its first step."""
        self.result, self.step = None, 0
        self._means, self._order = dict(info.mean_activation), list(info.order)
        self._where = f"{info.layer}, measured at {info.measured_at}"
        self._draw()

    def pruned_count(self) -> int:
        """Channels pruned at the shown record (the sweep's rule, not the record index)."""
        r = self.result
        if r is None or not r.records:
            return 0
        return r.pruned_at(min(self.step, len(r.records) - 1))

    def refresh(self) -> None:
        r = self.result
        if r is not None:
            self._means, self._order = dict(r.mean_activation), list(r.order)
            self._where = f"{r.layer}, measured at {r.measured_at}"
        self._draw()

    def _draw(self) -> None:
        if "clean_valid" not in self._means:
            self.clean_bars.setOpts(x=[], height=[])
            self.poison_bars.setOpts(x=[], height=[])
            return
        clean = np.asarray(self._means["clean_valid"])
        poison = self._means.get("poisoned_valid")
        n = len(clean)
        pick = self.order.currentIndex()
        ranking = self._rankings[pick - 2] if pick >= 2 and pick - 2 < len(self._rankings) else None
        by_rank = pick == 1 and len(self._order) == n
        channels = np.array(ranking.order if ranking is not None else self._order if by_rank else range(n))
        pos = np.arange(n)
        pruned = np.zeros(n, bool)
        n_pruned = self.pruned_count()
        if n_pruned:  # the channels the result's rule prunes at the shown record
            pruned[self.result.pruned_channels(min(self.step, len(self.result.records) - 1))] = True
        mask = pruned[channels]
        if ranking is not None:  # clean bars coloured by the criterion's score (dark = high)
            sc = np.asarray(ranking.scores, float)[channels]
            span = float(np.nanmax(sc) - np.nanmin(sc)) or 1.0
            cmap = pg.colormap.get("viridis")
            colours = [cmap.map(0.9 - 0.8 * (v - np.nanmin(sc)) / span, mode="qcolor") for v in sc]
            brushes_c = [pg.mkBrush(GREY if m else c) for m, c in zip(mask, colours)]
        else:
            brushes_c = [pg.mkBrush(GREY if m else CLEAN) for m in mask]
        w = 0.4 if poison is not None else 0.8
        self.clean_bars.setOpts(x=pos - (0.2 if poison is not None else 0), height=clean[channels],
                                width=w, brushes=brushes_c, pens=[pg.mkPen(None)] * n)
        if poison is not None:
            brushes_p = [pg.mkBrush(GREY if m else POISON) for m in mask]
            self.poison_bars.setOpts(x=pos + 0.2, height=np.asarray(poison)[channels], width=w,
                                     brushes=brushes_p, pens=[pg.mkPen(None)] * n)
        else:
            self.poison_bars.setOpts(x=[], height=[])
        self._shown = channels  # bar position -> channel, for clicks
        ticks = [(i, str(c)) for i, c in enumerate(channels)]
        step_ticks = max(1, n // 30)
        self.plot.getAxis("bottom").setTicks([ticks[::step_ticks], ticks])
        self.plot.setLabel("bottom", f"channel (in {ranking.title} order)" if ranking is not None else
                           "channel (in pruning order)" if by_rank else "channel")
        self.plot.setXRange(-1, n, padding=0)
        top = max(clean.max(), np.max(poison) if poison is not None else 0)
        self.plot.setYRange(0, float(top) * 1.05 + 1e-9, padding=0)
        self.info.setText(f"{self._where} · {n_pruned} of {n} channels pruned" + headline(clean, poison))


    # ------------------------------------------------------------------ a channel's maps
    def _clicked(self, ev) -> None:
        if not self._means or "clean_valid" not in self._means:
            return
        x = self.plot.plotItem.vb.mapSceneToView(ev.scenePos()).x()
        n = len(self._means["clean_valid"])
        pos = int(round(x))
        if 0 <= pos < n:
            self.picked = int(self._shown[pos]) if len(self._shown) == n else pos
            self.channelMapsWanted.emit()

    def show_channel_maps(self, got) -> None:
        """Upsampled (smoothly, as for display) mean activation maps of the picked channel,
        each on its own scale, with the peak value said."""
        from guiapp.views.colour import heat, pixmap

        self._channel_maps = got
        c = self.picked
        if c is None:
            return
        peaks = []
        for role, pic in self.map_pics.items():
            m = got.by_role.get(role)
            if m is None:
                pic.clear()
                continue
            ch = np.asarray(m[..., c], float)
            top = float(ch.max())
            peaks.append(f"{'clean' if role == 'clean_valid' else 'poisoned'} max {top:.3g}")
            pic.setPixmap(pixmap(heat(ch / top if top > 0 else ch), 120))
        self.map_title.setText(f"Channel {c} of {got.layer}: mean activation map (left clean, right poisoned "
                               f"validation; {', '.join(peaks)})")


def headline(clean: np.ndarray, poison: np.ndarray | None, k: int = 3) -> str:
    """The channels whose mean activation rises most from clean to poisoned validation data, in
    the difference criterion's order (poisoned − clean, highest first: a ratio of two near-zero
    means would name silent channels). Empty without a poisoned set."""
    if poison is None:
        return ""
    from engine.pruning.criteria.difference import difference_scores, top_difference

    diff = difference_scores({"clean_valid": clean, "poisoned_valid": poison})
    top = [c for c in top_difference(diff, k) if diff[c] != 0]
    if not top:
        return " · clean and poisoned means are equal"
    parts = ", ".join(f"{c} ({diff[c]:+.3g})" for c in top)
    return f" · most raised on poisoned images (poisoned − clean mean): channel{'s' if len(top) > 1 else ''} {parts}"
