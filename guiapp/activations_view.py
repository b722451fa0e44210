"""Mean activation of each channel of the pruned layer, clean vs poisoned validation side
by side (where backdoor neurons show), channels pruned at the picked step greyed."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from guiapp.stepview import StepView

CLEAN = (31, 95, 209)
POISON = (209, 52, 31)
GREY = (190, 190, 190)


class ActivationsView(StepView, QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.info = QLabel("Mean activation per channel appears after the activations are computed.")
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
        self.clean_bars = pg.BarGraphItem(x=[], height=[], width=0.4)
        self.poison_bars = pg.BarGraphItem(x=[], height=[], width=0.4)
        self.plot.addItem(self.clean_bars)
        self.plot.addItem(self.poison_bars)
        self.legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=CLEAN), "clean validation")
        self.legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=POISON), "poisoned validation")
        self.legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=GREY), "pruned at this step")
        self.result = None
        self.step = 0
        self.order.currentIndexChanged.connect(lambda _: self.refresh())

    def refresh(self) -> None:
        r = self.result
        if r is None or "clean_valid" not in r.mean_activation:
            self.clean_bars.setOpts(x=[], height=[])
            self.poison_bars.setOpts(x=[], height=[])
            return
        clean = np.asarray(r.mean_activation["clean_valid"])
        poison = r.mean_activation.get("poisoned_valid")
        n = len(clean)
        by_rank = self.order.currentIndex() == 1
        channels = np.array(r.order) if by_rank else np.arange(n)
        pos = np.arange(n)
        pruned = np.zeros(n, bool)
        pruned[r.order[:self.step]] = True
        mask = pruned[channels]
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
        ticks = [(i, str(c)) for i, c in enumerate(channels)]
        step_ticks = max(1, n // 30)
        self.plot.getAxis("bottom").setTicks([ticks[::step_ticks], ticks])
        self.plot.setLabel("bottom", "channel (in pruning order)" if by_rank else "channel")
        self.plot.setXRange(-1, n, padding=0)
        top = max(clean.max(), np.max(poison) if poison is not None else 0)
        self.plot.setYRange(0, float(top) * 1.05 + 1e-9, padding=0)
        gap = ""
        if poison is not None:
            ratio = (np.asarray(poison) + 1e-6) / (clean + 1e-6)
            sus = int(np.argmax(ratio))
            gap = f" · channel {sus} fires {ratio[sus]:.1f}× more on poisoned images"
        self.info.setText(f"{r.layer}, measured at {r.measured_at} · {self.step} of {n} channels pruned{gap}")
