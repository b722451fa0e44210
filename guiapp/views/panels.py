"""The left-hand panels: model, the four dataset slots, thresholds, checkpoints."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QSpinBox, QFrame, QGridLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMenu, QPushButton, QScrollArea,
                               QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from engine.core.vocabulary import (METRIC_TITLES, ROLES, SPLIT_KEYS, base_role, is_poisoned, ordered_roles,
                                    poisoned_roles, role_metric, role_title, set_name)


def local_paths(mime) -> list[Path]:
    """Dropped files, napari style: only URLs that are local files."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


class DataSlot(QFrame):
    """One labelled slot (clean valid, poisoned valid, ...) that accepts a dropped file."""

    fileDropped = Signal(str, object)  # role, Path
    browse = Signal(str)  # a file
    browseFolder = Signal(str)  # a folder of images
    cleared = Signal(str)
    TINY = 50  # fewer clean validation images than this: the checkpoints are coarse

    def __init__(self, role: str, parent=None):
        super().__init__(parent)
        self.role = role
        self.setObjectName(f"slot_{role}")
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.StyledPanel)
        lay = QGridLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setVerticalSpacing(1)
        self.title = QLabel(f"<b>{role_title(role)}</b>")
        self.info = QLabel("drop a file or folder here")
        self.info.setStyleSheet("color:#777")
        self.info.setWordWrap(True)
        self.btn = QToolButton(text="…")
        self.btn.setObjectName(f"browse_{role}")
        self.btn.setToolTip(f"Open the {role_title(role).lower()} data: a lab .h5 file, or a folder of images")
        menu = QMenu(self.btn)
        self.act_file = menu.addAction("File (.h5, images)…", lambda: self.browse.emit(self.role))
        self.act_folder = menu.addAction("Folder of images…", lambda: self.browseFolder.emit(self.role))
        self.btn.setMenu(menu)
        self.btn.setPopupMode(QToolButton.InstantPopup)
        self.clear_btn = QToolButton(text="×")
        self.clear_btn.setToolTip("Remove this dataset")
        self.clear_btn.setEnabled(False)
        lay.addWidget(self.title, 0, 0)
        lay.addWidget(self.btn, 0, 1)
        lay.addWidget(self.clear_btn, 0, 2)
        lay.addWidget(self.info, 1, 0, 1, 3)
        self.warn = QLabel("")  # stays while the dataset does: what looks wrong about it
        self.warn.setObjectName(f"slotWarning_{role}")
        self.warn.setWordWrap(True)
        self.warn.setStyleSheet("color:#8a5300; background:#fff1d6; border:1px solid #e0a030; padding:2px")
        self.warn.setVisible(False)
        lay.addWidget(self.warn, 2, 0, 1, 3)
        self.clear_btn.clicked.connect(lambda: self.cleared.emit(self.role))
        self.path: Path | None = None

    def show_dataset(self, ds) -> None:
        if ds is None:
            self.path = None
            self.info.setText("drop a file or folder here")
            self.info.setStyleSheet("color:#777")
            self.info.setToolTip("")
            self.clear_btn.setEnabled(False)
            self.warn.setVisible(False)
            return
        self.path = ds.path
        h, w, c = ds.image_shape
        one_class = ds.has_labels and ds.single_target and ds.n > 1
        labels = ("no labels" if not ds.has_labels else f"all labelled {ds.target} (the target)" if one_class
                  else f"labels {ds.label_min}–{ds.label_max}")
        warnings = self.warnings(ds, one_class)
        standin = getattr(ds, "standin", None)
        if standin:  # a scan's stamped stand-in, not the attacker's data: said in the slot itself
            labels += f" · STAND-IN ({standin})"
        self.info.setText(f"{'⚠' if warnings else '✓'} {ds.path.name} · {ds.n:,} images {h}×{w}×{c} · {labels}")
        self.info.setStyleSheet("color:#8a5300" if warnings else "color:#1b6e1b")
        self.info.setToolTip(f"{ds.path}\n{ds.describe()}")
        self.warn.setText("\n".join(f"⚠ {w}" for w in warnings))
        self.warn.setVisible(bool(warnings))
        self.clear_btn.setEnabled(True)

    def warnings(self, ds, one_class: bool) -> list[str]:
        """What looks wrong about ``ds`` in this slot (shown until the slot changes)."""
        out = []
        if self.role.startswith("clean") and one_class:
            out.append(f"every image is labelled {ds.target}: this looks like a poisoned set (all labelled "
                       "with the attacker's target), not clean data — drop it on a poisoned slot")
        if self.role == "clean_valid" and 0 < ds.n < self.TINY:
            out.append(f"only {ds.n} validation images: accuracy moves in steps of {100 / ds.n:.0f} %, so the "
                       "checkpoints are coarse (several may fall on the same step)")
        return out

    def dragEnterEvent(self, ev):
        if len(local_paths(ev.mimeData())) == 1:
            ev.acceptProposedAction()
            self.setStyleSheet("DataSlot { border: 2px dashed #2a9d3a; }")

    def dragLeaveEvent(self, ev):
        self.setStyleSheet("")

    def dropEvent(self, ev):
        self.setStyleSheet("")
        paths = local_paths(ev.mimeData())
        if len(paths) == 1:
            ev.acceptProposedAction()
            self.fileDropped.emit(self.role, paths[0])


SCALE_CHOICES = (("auto", "auto (measure on clean validation)"), ("255", "raw pixels 0–255 (the lab)"),
                 ("1", "pixels / 255 (CSAW-HackML-2020)"))


class ModelPanel(QGroupBox):
    layerChanged = Signal(str)
    scaleChanged = Signal(str)  # "auto" | "255" | "1"
    thresholdsChanged = Signal(tuple)
    showLayers = Signal()

    def __init__(self, parent=None):
        super().__init__("Model", parent)
        lay = QVBoxLayout(self)
        self.name = QLabel("<i>no model — File ▸ Open model, or drop a .h5/.keras here</i>")
        self.name.setWordWrap(True)
        self.kind = QLabel("")
        self.kind.setStyleSheet("color:#555")
        self.kind.setWordWrap(True)
        lay.addWidget(self.name)
        lay.addWidget(self.kind)
        row = QHBoxLayout()
        row.addWidget(QLabel("Prune layer"))
        self.layer = QComboBox()
        self.layer.setObjectName("layerCombo")
        self.layer.setEnabled(False)
        row.addWidget(self.layer, 1)
        self.layers_btn = QToolButton(text="Layers…")
        self.layers_btn.setEnabled(False)
        row.addWidget(self.layers_btn)
        lay.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Thresholds (%)"))
        self.thresholds = QLineEdit("2, 4, 10")
        self.thresholds.setObjectName("thresholdsEdit")
        self.thresholds.setToolTip("Relative drops of clean validation accuracy at which B'/G are kept")
        row2.addWidget(self.thresholds, 1)
        row2.addWidget(QLabel("Step"))
        self.step_size = QLineEdit("1")
        self.step_size.setObjectName("stepSizeEdit")
        self.step_size.setMaximumWidth(52)
        self.step_size.setToolTip("Channels pruned per step (K), or a share of the layer (P%), for wide layers;\n"
                                  "checkpoints are still found channel by channel")
        row2.addWidget(self.step_size)
        lay.addLayout(row2)
        row3 = QHBoxLayout()
        row3.addWidget(QLabel("Input"))
        self.scale = QComboBox()
        self.scale.setObjectName("inputScaleCombo")
        for key, text in SCALE_CHOICES:
            self.scale.addItem(text, key)
        self.scale.setToolTip("What the model was trained on. The lab's bd_net takes raw pixels; the CSAW-HackML-2020\n"
                              "models take pixels / 255. 'auto' compares clean accuracy both ways when the sweep starts.")
        row3.addWidget(self.scale, 1)
        lay.addLayout(row3)
        self.scale_state = QLabel("")
        self.scale_state.setObjectName("inputScaleState")
        self.scale_state.setStyleSheet("color:#555")
        lay.addWidget(self.scale_state)
        self.scale.currentIndexChanged.connect(lambda i: self.scaleChanged.emit(self.scale.itemData(i)))
        self.layer.currentTextChanged.connect(lambda t: t and self.layerChanged.emit(t))
        self.layers_btn.clicked.connect(self.showLayers)
        self.thresholds.editingFinished.connect(self._thresholds_edited)

    def scale_choice(self) -> str:
        return self.scale.currentData() or "auto"

    def show_scale(self, text: str) -> None:
        """``text``: "pixels / 255 (detected)" — what the model is fed."""
        self.scale_state.setText(f"input: {text}" if text else "")

    def show_model(self, lm, default_layer: str | None, layers=()) -> None:
        """``layers``: the prunable layers (Conv2D and hidden Dense) to choose from."""
        if lm is None:
            self.name.setText("<i>no model</i>")
            self.kind.setText("")
            self.layer.clear()
            self.layer.setEnabled(False)
            self.layers_btn.setEnabled(False)
            return
        n = lm.n_classes - (1 if lm.is_goodnet else 0)
        self.name.setText(f"<b>{lm.name}</b> · {n:,} classes · input {'×'.join(map(str, lm.input_hwc))}")
        extra = f"\nweights: {lm.weights_path.name}" if lm.weights_path and lm.weights_path != lm.path else ""
        self.kind.setText(lm.kind + extra)
        self.name.setToolTip(str(lm.path))
        self.layer.blockSignals(True)
        self.layer.clear()
        self.layer.addItems(list(layers))
        if default_layer:
            self.layer.setCurrentText(default_layer)
        self.layer.blockSignals(False)
        self.layer.setEnabled(self.layer.count() > 0)
        self.layers_btn.setEnabled(True)

    def parsed_thresholds(self) -> tuple[float, ...]:
        """The thresholds typed, by the engine's one rule (ValueError says what is wrong)."""
        from engine.pruning.thresholds import parse_thresholds

        return parse_thresholds(self.thresholds.text())

    def _thresholds_edited(self) -> None:
        try:
            vals = self.parsed_thresholds()
        except ValueError as e:
            self.thresholds.setStyleSheet("background:#fde2e2")
            self.thresholds.setToolTip(str(e))
            return
        self.thresholds.setStyleSheet("")
        self.thresholds.setToolTip("Relative drops of clean validation accuracy at which B'/G are kept")
        self.thresholds.setText(", ".join(f"{v:g}" for v in vals))
        self.thresholdsChanged.emit(vals)


class CheckpointTable(QTableWidget):
    """The automatic checkpoints (first step reaching each drop) with their metrics."""

    saveRequested = Signal(str, int)  # "bprime" | "goodnet", step
    rowPicked = Signal(int)

    COLS = ["drop", "step", "clean val", "ASR val", "", ""]

    def __init__(self, parent=None):
        super().__init__(0, len(self.COLS), parent)
        self.setObjectName("checkpointTable")
        self.setHorizontalHeaderLabels(self.COLS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        for c in (4, 5):
            self.horizontalHeader().setSectionResizeMode(c, QHeaderView.Stretch)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.cellClicked.connect(self._clicked)
        self._steps: list[int | None] = []

    def show_checkpoints(self, result) -> None:
        self.setRowCount(0)
        self._steps = []
        if result is None:
            return
        for cp in result.checkpoints:
            r = self.rowCount()
            self.insertRow(r)
            self._steps.append(cp.step)
            vals = [cp.label]
            tip = f"first step whose clean validation accuracy is {cp.label} below the original"
            if cp.step is None:
                vals += ["—", "not reached", ""]
            else:
                rec = result.records[cp.step]
                vals += [str(cp.step)] + ["" if v is None else f"{v:.2f}" for v in (rec.clean_valid_acc, rec.asr_valid)]
                tip += f"\n{rec.fraction_pruned * 100:.1f} % of channels removed" + "".join(
                    f"\n{METRIC_TITLES[k]} {rec.metric(k):.2f} %" for k in SPLIT_KEYS["test"]
                    if rec.metric(k) is not None)
            for c, v in enumerate(vals):
                item = QTableWidgetItem(v)
                item.setTextAlignment(Qt.AlignCenter)
                item.setToolTip(tip)
                self.setItem(r, c, item)
            if cp.step is not None:
                for col, (which, text) in enumerate((("bprime", "B′…"), ("goodnet", "G…")), start=4):
                    b = QPushButton(text)
                    b.setToolTip(f"Save {'the repaired model B′' if which == 'bprime' else 'the detector G'} "
                                 f"at step {cp.step}")
                    b.setObjectName(f"save_{which}_{cp.label.replace(' %', '')}")
                    b.clicked.connect(lambda _=False, w=which, s=cp.step: self.saveRequested.emit(w, s))
                    self.setCellWidget(r, col, b)

    def _clicked(self, row: int, col: int) -> None:
        if 0 <= row < len(self._steps) and self._steps[row] is not None:
            self.rowPicked.emit(self._steps[row])


class StepPanel(QWidget):
    """The picked step: its metrics, and the Save B'/G and fine-tune actions."""

    saveRequested = Signal(str, int)
    fineTuneRequested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        self.label = QLabel("Run a sweep, then pick a step on the curves (click, drag the cursor, or ←/→).")
        self.label.setObjectName("stepLabel")
        self.label.setWordWrap(True)  # a long read-out wraps instead of widening the window
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        self.save_bp = QPushButton("Save B' …")
        self.save_g = QPushButton("Save G …")
        self.finetune = QPushButton("Fine-tune from here…")
        for b in (self.save_bp, self.save_g, self.finetune):
            b.setEnabled(False)
            lay.addWidget(b)
        self.step = 0
        self.save_bp.clicked.connect(lambda: self.saveRequested.emit("bprime", self.step))
        self.save_g.clicked.connect(lambda: self.saveRequested.emit("goodnet", self.step))
        self.finetune.clicked.connect(lambda: self.fineTuneRequested.emit(self.step))

    def show_step(self, result, step: int) -> None:
        self.step = step
        if result is None or step >= len(result.records):
            for b in (self.save_bp, self.save_g, self.finetune):
                b.setEnabled(False)
            return
        r = result.records[step]
        parts = [f"<b>Step {step}</b>: {r.pruned} channels, {r.fraction_pruned * 100:.1f} % pruned"]
        for split, short in (("valid", "val"), ("test", "test")):
            v = r.metric(SPLIT_KEYS[split][0])
            if v is not None:
                parts.append(f"clean {short} {v:.2f}")
            for role in poisoned_roles(result.labels, split):  # several triggers: each set's ASR
                v = r.metric(role_metric(role))
                if v is not None:
                    parts.append(f"ASR {short}{' ' + set_name(role) if set_name(role) else ''} {v:.2f}")
        ev = result.evaluate_step(step)
        pois = poisoned_roles(ev, "test") or poisoned_roles(ev, "valid")
        if pois:
            parts.append("G flags " + ", ".join(f"{ev[role]['goodnet_flagged']:.1f} %" + (
                f" of {set_name(role)}" if set_name(role) else " of poisoned") for role in pois))
        self.label.setText(" · ".join(parts))
        complete = bool(getattr(result, "complete", True))
        self.save_bp.setEnabled(complete)
        self.save_g.setEnabled(complete)
        self.finetune.setEnabled(complete and "clean_valid" in result.labels)


class LeftPanel(QScrollArea):
    """The model, the data slots and the checkpoints, top to bottom. The poisoned slots are a
    list: "+ another trigger" adds a named set (one ASR curve each); its slot comes and goes
    with its dataset. Every slot's signals arrive through the panel's."""

    slotDropped = Signal(str, object)  # role, Path
    slotBrowse = Signal(str)
    slotBrowseFolder = Signal(str)
    slotCleared = Signal(str)
    addSet = Signal(str)  # "poisoned_valid" / "poisoned_test": the user wants one more poisoned set

    def __init__(self, parent=None):
        super().__init__(parent)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(4, 4, 4, 4)
        self.model_panel = ModelPanel()
        lay.addWidget(self.model_panel)
        self.rankings = RankingPanel()
        lay.addWidget(self.rankings)
        lay.addWidget(QLabel("<b>Data</b> <span style='color:#777'>(drop files here)</span>"))
        self.slots: dict[str, DataSlot] = {}
        self._data_lay = QVBoxLayout()
        self._data_lay.setSpacing(4)
        lay.addLayout(self._data_lay)
        self.add_buttons: dict[str, QPushButton] = {}
        for role in ROLES:
            self._data_lay.addWidget(self._new_slot(role))
            if is_poisoned(role):
                btn = QPushButton("+ another trigger (poisoned set)…")
                btn.setObjectName(f"addSet_{role}")
                btn.setFlat(True)
                btn.setStyleSheet("text-align:left; color:#1f5fd1; padding:0 6px")
                btn.setToolTip("A model may carry several triggers: open each trigger's poisoned file as a "
                               "named set of its own; every set gets its own ASR curve and column")
                btn.clicked.connect(lambda _=False, r=role: self.addSet.emit(r))
                self.add_buttons[role] = btn
                self._data_lay.addWidget(btn)
        self.resize_box = QCheckBox("Resize images to the model's input")
        self.resize_box.setObjectName("resizeImages")
        self.resize_box.setToolTip("For PNG/JPEG files and folders: bilinear resizing instead of refusing them")
        lay.addWidget(self.resize_box)
        lay.addWidget(QLabel("<b>Checkpoints</b>"))
        self.checkpoints = CheckpointTable()
        lay.addWidget(self.checkpoints, 1)
        self.setWidget(inner)
        self.setWidgetResizable(True)
        self.setMinimumWidth(330)


    def _new_slot(self, role: str) -> DataSlot:
        slot = DataSlot(role)
        slot.fileDropped.connect(self.slotDropped)
        slot.browse.connect(self.slotBrowse)
        slot.browseFolder.connect(self.slotBrowseFolder)
        slot.cleared.connect(self.slotCleared)
        self.slots[role] = slot
        return slot

    def show_dataset(self, role: str, ds) -> None:
        """``role``'s slot shows ``ds``; a named poisoned set's slot is made for it, and removed
        with it (the plain slot of its split hides while named sets stand in for it)."""
        if set_name(role) and role not in self.slots and ds is not None:
            slot = self._new_slot(role)
            after = [r for r in ordered_roles(list(self.slots)) if base_role(r) == base_role(role)]
            self._data_lay.insertWidget(self._data_lay.indexOf(self.slots[after[-2]]) + 1 if len(after) > 1
                                        else self._data_lay.indexOf(self.add_buttons[base_role(role)]), slot)
            slot.setVisible(True)  # now, not at the next turn of the event loop
        slot = self.slots.get(role)
        if slot is None:
            return
        if set_name(role) and ds is None:
            del self.slots[role]
            slot.setParent(None)
            slot.deleteLater()
        else:
            slot.show_dataset(ds)
        for base in self.add_buttons:  # the plain slot stands aside while named sets fill the list
            self.slots[base].setVisible(not any(set_name(r) and base_role(r) == base for r in self.slots))


class RankingPanel(QGroupBox):
    """Which pruning criteria to sweep (one exact sweep each, curves overlaid)."""

    def __init__(self, parent=None):
        from engine.pruning.criteria import DEFAULT, REGISTRY

        super().__init__("Pruning criteria", parent)
        lay = QGridLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setVerticalSpacing(1)
        self.boxes: dict[str, QCheckBox] = {}
        for i, (name, crit) in enumerate(REGISTRY.items()):
            box = QCheckBox(crit.short or name)
            box.setObjectName(f"ranking_{name}")
            needs = ", ".join(role_title(r).lower() for r in crit.needs) or "no data (weights only)"
            box.setToolTip(f"{crit.title} — needs {needs}" + ("\nuses the trigger: a diagnostic, never a defense"
                                                              if crit.diagnostic else ""))
            box.setChecked(name == DEFAULT)
            lay.addWidget(box, i // 2, i % 2)
            self.boxes[name] = box
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 50)
        self.seeds.setValue(5)
        self.seeds.setPrefix("random: ")
        self.seeds.setSuffix(" seeds")
        self.seeds.setToolTip("How many random orders draw the band every criterion must beat")
        lay.addWidget(self.seeds, (len(REGISTRY) + 1) // 2, 0, 1, 2)  # the row after the last criterion
        self.set_roles(())

    def set_roles(self, roles) -> None:
        """Criteria whose data is missing are greyed out (they keep their tick for later)."""
        from engine.pruning.criteria import criterion

        for name, box in self.boxes.items():
            have = {base_role(r) for r in roles}  # a named poisoned set is poisoned data too
            box.setEnabled(all(r in have for r in criterion(name).needs))

    def names(self) -> list[str]:
        """The ticked criteria that can run on the data now open."""
        return [n for n, b in self.boxes.items() if b.isChecked() and b.isEnabled()]

    def random_seeds(self) -> int:
        from engine.pruning.criteria import is_seeded

        return self.seeds.value() if any(is_seeded(n) for n in self.names()) else 1
