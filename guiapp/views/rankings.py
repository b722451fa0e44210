"""The Rankings tab: the pruning criteria side by side, one row each — the data it needs, its
cost, the 2/4/10 % checkpoints, the first step where ASR ≤ 10 % and the best clean accuracy
among such steps (the operating point a defender wants). Empty cells where it never gets there."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from engine.pruning.criteria import seeded_members

SHORT = {"clean_valid": "clean val", "poisoned_valid": "poisoned val"}


def _pt(p) -> str:
    """'step 12' over '91.2 / 99.8' (clean accuracy / ASR on validation), or '' if never reached:
    two short lines, so that the table fits its tab without scrolling sideways."""
    if p is None:
        return ""
    clean = "—" if p.clean is None else f"{p.clean:.1f}"
    asr = "—" if p.asr is None else f"{p.asr:.1f}"
    return f"step {p.step}\n{clean} / {asr}"


class RankingsView(QWidget):
    rankingPicked = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.note = QLabel("Tick several pruning criteria on the left and press Start to compare them on "
                           "this model: every criterion gets its own exact sweep, overlaid on the Curves tab.")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        self.table = QTableWidget(0, 0)
        self.table.setObjectName("rankingsTable")
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(True)
        self.table.cellClicked.connect(self._clicked)
        lay.addWidget(self.table, 1)
        self._names: list[str] = []

    def show_table(self, done) -> None:
        """``done``: tasks.RankingsDone; cells are step · clean / ASR on validation data (%)."""
        from engine.report.compare import ASR_MAX

        thresholds = next(iter(done.results.values())).thresholds
        cols = (["criterion", "needs", "cost (s)"] + [f"{t:g} % drop" for t in thresholds]
                + [f"first\nASR ≤ {ASR_MAX:g} %", f"best clean\nwith ASR ≤ {ASR_MAX:g} %"])
        t = self.table
        t.clear()
        t.setColumnCount(len(cols))
        t.setHorizontalHeaderLabels(cols)
        t.setRowCount(len(done.table))
        self._names = []
        for i, row in enumerate(done.table):
            self._names.append(row.name)
            needs = " +\n".join(SHORT[r] for r in row.needs) or "weights only"
            real = row.real_cost_s
            cost = "" if real is None else f"{real:.2f}" + (" (cached)" if row.cached else "")
            cells = [row.title, needs, cost] + [_pt(row.checkpoints.get(th)) for th in thresholds] + \
                [_pt(row.first_defended), _pt(row.best_defended)]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if row.diagnostic:  # uses the trigger: where the backdoor lives, never a defense
                    item.setForeground(QColor("#777"))
                    f = QFont()
                    f.setItalic(True)
                    item.setFont(f)
                    item.setToolTip("diagnostic: it uses the poisoned data, which a defender does not have")
                t.setItem(i, j, item)
        head = t.horizontalHeader()  # the criterion's name whole, the other columns share what is left
        head.setSectionResizeMode(QHeaderView.Stretch)
        head.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        head.setMinimumSectionSize(40)
        t.resizeRowsToContents()
        self.note.setText("Each cell: the step, then clean accuracy / ASR on validation data (%). Click a row (or a "
                          "curve) to make that criterion's sweep the one the cursor, Save B′/G and Fine-tune "
                          "act on. Grey italics: a diagnostic that uses the trigger.")

    def _clicked(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._names) and self._names[row] in self._known():
            self.rankingPicked.emit(self._names[row])

    def _known(self) -> set[str]:
        families = seeded_members(self._names)  # a family's band row stands for its orders
        return {n for n in self._names if n not in families}

    def select(self, name: str) -> None:
        if name in self._names:
            self.table.selectRow(self._names.index(name))
            self.table.setFocusPolicy(Qt.StrongFocus)
