"""The repair's records: one :class:`MethodRow` per line of the comparison, and the
:class:`RepairResult` that :func:`engine.analysis.repair.repair_events` returns. Apart from the job
so that the row assembly (:mod:`engine.analysis.repairrows`) and the reports can use them without
importing the job."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class MethodRow:
    """One line of the comparison. Metrics are in % on the evaluation data (test files when
    given). For a repaired model (pruning, fine-pruning, unlearning) ``clean_acc``/``asr`` are the
    repaired model's and ``detection``/``false_flags`` its G's; for a detector they are G's."""

    method: str
    kind: str                      # "repaired model" | "detector" | "combination"
    clean_acc: float | None = None
    asr: float | None = None
    detection: float | None = None    # poisoned images answered N
    detection_working: float | None = None  # … among those whose attack works on B
    false_flags: float | None = None  # clean images answered N
    seconds: float | None = None
    source: str = "this run"
    files: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    note: str = ""
    metrics: dict = field(default_factory=dict)   # role -> measures, every evaluated set

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RepairResult:
    model_path: str
    n_classes: int
    input_scale: float
    methods: list[str]
    frr: float
    rows: list[MethodRow] = field(default_factory=list)
    triggers: list = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    eval_sources: dict = field(default_factory=dict)   # role -> what it is (file, or "stand-in ...")
    combined: list[str] = field(default_factory=list)  # detectors in G_combined
    unlearned: object = None                            # B_unlearned (keras.Model)
    goodnets: dict = field(default_factory=dict)        # "unlearned"|"filter"|"strip"|"combined" -> G
    answers: dict = field(default_factory=dict)         # G name -> role -> labels (for the image browser)
    skipped: dict = field(default_factory=dict)         # method -> why it did not run
    scan: dict | None = None
    seconds: float = 0.0

    def row(self, method: str) -> MethodRow | None:
        return next((r for r in self.rows if r.method == method), None)
