"""Names the window's parts agree on, as enums instead of strings or magic numbers: the tabs
(their order is the order they are added in) and the kinds of task that take the task slot."""

from __future__ import annotations

from enum import Enum, IntEnum


class Tab(IntEnum):
    CURVES = 0
    ACTIVATIONS = 1
    IMAGES = 2
    RESULTS = 3
    RANKINGS = 4
    TRADEOFF = 5
    SCAN = 6
    REPAIR = 7

    @property
    def title(self) -> str:
        return TAB_TITLES[self]


TAB_TITLES = {Tab.CURVES: "Curves", Tab.ACTIVATIONS: "Activations", Tab.IMAGES: "Images",
              Tab.RESULTS: "Results", Tab.RANKINGS: "Rankings", Tab.TRADEOFF: "Trade-off", Tab.SCAN: "Scan",
              Tab.REPAIR: "Repair"}


class TaskKind(str, Enum):
    """What occupies the task slot; the job bar shows the value."""

    SWEEP = "sweep"
    SAVING = "saving"
    EXPORT = "export"
    FINE_TUNING = "fine-tuning"
    MAPS = "maps"
    READING_FILES = "reading files"
    LOADING_MODEL = "loading the model"
    OPENING_DATA = "opening data"
    OPENING_IMAGES = "opening images"
    JUDGING_IMAGES = "judging images"
    PREPARING_DEMO = "preparing the demo"
    READING_IMAGES = "reading images"
    SCAN = "scan"
    STAMPING = "stamping"
    REPAIR = "repair"

    def __str__(self) -> str:
        return self.value
