"""What the window works on, without Qt: the open model, the datasets by role, the last
sweep's result, the picked step, fine-tuning runs — and one task slot.

The rules that keep threads apart live here, so they can be tested without a window:
a running task owns the datasets it reads (their slots cannot be cleared or replaced until it
ends), and a dataset is closed only when nobody reads it any more (the image browser's page
reads hold a dataset the same way)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.vocabulary import (ROLES, base_role, is_poisoned, named_role, role_title, set_name,
                                    valid_set_name)
from engine.pruning.criteria import DEFAULT


class SlotBusy(Exception):
    """A slot's dataset is being read by the running task."""


@dataclass
class Task:
    name: str
    roles: frozenset = frozenset()  # the slots whose datasets the task reads
    datasets: tuple = ()
    ended: bool = False


@dataclass
class Session:
    model: object = None  # engine.models.loading.LoadedModel
    default_layer: str | None = None
    datasets: dict = field(default_factory=dict)  # role -> dataset
    result: object = None  # engine.pruning.records.SweepResult of the last finished sweep
    step: int = 0
    fine_tuned: list = field(default_factory=list)
    rankings: object = None  # tasks.RankingsDone when several criteria were swept
    ranking: str = DEFAULT  # the criterion whose sweep ``result`` is
    photos: object = None  # image files or folders dropped on the window (not a lab slot)
    photo_verdicts: object = None  # tasks.PhotoVerdicts for ``photos``
    resize: bool = False  # resize images of another size to the model's input
    repair: object = None  # engine.analysis.repair.RepairResult of the open model (its Gs' answers)
    task: Task | None = None
    # traced map makers, reused page after page; they belong to the model and go with it
    map_makers: dict = field(default_factory=dict)
    channel_maps: tuple | None = None  # (result, tasks.ChannelMaps): every channel's mean maps, per result
    _readers: Counter = field(default_factory=Counter)  # id(dataset) -> open reads
    _retired: dict = field(default_factory=dict)  # id -> dataset waiting to be closed
    _set_names: dict = field(default_factory=dict)  # id(dataset) -> its set name while it is the plain one

    # ---------------------------------------------------------------- the task slot
    @property
    def busy(self) -> bool:
        return self.task is not None

    def begin(self, name: str, roles=()) -> Task:
        """Take the task slot; the datasets of ``roles`` are held until :meth:`end`."""
        if self.task is not None:
            raise SlotBusy(f"Busy with {self.task.name}; wait for it or cancel it first.")
        roles = frozenset(r for r in roles if r in self.datasets)
        task = Task(name, roles, tuple(self.datasets[r] for r in roles))
        for ds in task.datasets:
            self.hold(ds)
        self.task = task
        return task

    def end(self, task: Task) -> None:
        """Give the slot back (once; later calls for the same task do nothing)."""
        if task.ended:
            return
        task.ended = True
        if self.task is task:
            self.task = None
        for ds in task.datasets:
            self.release(ds)

    # ---------------------------------------------------------------- dataset lifetime
    def hold(self, ds) -> None:
        self._readers[id(ds)] += 1

    def release(self, ds) -> None:
        self._readers[id(ds)] -= 1
        if self._readers[id(ds)] <= 0:
            del self._readers[id(ds)]
            retired = self._retired.pop(id(ds), None)
            if retired is not None:
                retired.close()

    def _retire(self, ds) -> None:
        if ds is None:
            return
        if self._readers.get(id(ds)):
            self._retired[id(ds)] = ds  # closed when its last reader releases it
        else:
            ds.close()

    # ---------------------------------------------------------------- datasets
    def check_slot_free(self, role: str) -> None:
        if self.task is not None and role in self.task.roles:
            raise SlotBusy(f"The {self.task.name} is reading the {role_title(role).lower()} data; "
                           "wait for it or cancel it before changing that slot.")

    def role_for(self, guessed: str | None, path=None) -> str | None:
        """The slot a newly opened file goes to: its guessed role (a poisoned file joins the
        list when that split already holds several named sets), else the first empty slot."""
        if guessed is not None:
            if is_poisoned(guessed) and any(set_name(r) and base_role(r) == guessed for r in self.datasets):
                return self.new_set_role(guessed, path)
            return guessed
        return next((r for r in ROLES if r not in self.datasets), None)

    def new_set_role(self, base: str, path=None, name: str | None = None) -> str:
        """A role for one more named poisoned set of ``base``: ``name`` or the file's stem, made
        unique (``-2``, ``-3``...)."""
        stem = name or "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_"
                               for ch in (Path(path).stem if path else "set"))
        stem = stem.lstrip("_-")[:36] or "set"
        taken = {set_name(r) for r in self.datasets if base_role(r) == base}
        cand, k = stem, 2
        while cand in taken:
            cand, k = f"{stem}-{k}", k + 1
        if not valid_set_name(cand):
            raise SlotBusy(f"'{cand}' cannot name a poisoned set: use letters, digits, '_' and '-'")
        return named_role(base, cand)

    def settle_sets(self) -> list[tuple[str, str]]:
        """Keep each split's poisoned sets in one form: one set → the plain role (today's
        names and outputs), several → named roles. Returns the renames ``(old, new)``; a set the
        running task reads keeps its role."""
        renames = []
        held = self.task.roles if self.task is not None else frozenset()
        for base in ("poisoned_valid", "poisoned_test"):
            named = [r for r in self.datasets if set_name(r) and base_role(r) == base]
            rename = None
            if base in self.datasets and named and base not in held:
                ds = self.datasets[base]  # back to the name it was opened with, if it had one
                rename = (base, self.new_set_role(base, ds.path, self._set_names.get(id(ds))))
            elif base not in self.datasets and len(named) == 1 and named[0] not in held:
                rename = (named[0], base)
                self._set_names[id(self.datasets[named[0]])] = set_name(named[0])
            if rename:  # renamed in place: the sets keep their order (the curves' and columns')
                items = [(rename[1] if r == rename[0] else r, d) for r, d in self.datasets.items()]
                self.datasets.clear()
                self.datasets.update(items)
                renames.append(rename)
        return renames

    def put_dataset(self, role: str, ds) -> None:
        """Put ``ds`` in ``role``'s slot; the dataset it replaces is closed once unused."""
        self.check_slot_free(role)
        old = self.datasets.get(role)
        self.datasets[role] = ds
        if old is not None and old is not ds:
            self._retire(old)

    def clear_dataset(self, role: str) -> None:
        self.check_slot_free(role)
        self._retire(self.datasets.pop(role, None))

    def set_photos(self, ds) -> None:
        """The extra "Images" set; the one it replaces is closed once unused."""
        old, self.photos, self.photo_verdicts = self.photos, ds, None
        if old is not None and old is not ds:
            self._retire(old)

    def result_covers(self, role: str) -> bool:
        """Whether the last result describes the dataset now in ``role``'s slot (a replaced or
        cleared slot no longer matches the predictions the result holds)."""
        r, ds = self.result, self.datasets.get(role)
        return (r is not None and ds is not None and role in r.predictions
                and r.dataset_paths.get(role) == str(ds.path) and len(r.labels[role]) == ds.n)

    # ---------------------------------------------------------------- model
    def set_model(self, model, default_layer: str | None) -> list[tuple[str, str]]:
        """Adopt a model; datasets whose images don't fit it are dropped: ``[(role, why)]``."""
        from engine.core.errors import PruneLabError

        if self.result is not None and self.result.model_path != str(model.path):
            self.set_result(None)  # it describes another model
        if self.repair is not None and self.repair.model_path != str(model.path):
            self.repair = None
        if model is not self.model:
            self.map_makers, self.channel_maps = {}, None  # made for the old model
        self.model, self.default_layer = model, default_layer
        dropped = []
        for role, ds in list(self.datasets.items()):
            try:
                ds.expect(model.input_hwc)
            except PruneLabError as e:
                if self.task is not None and role in self.task.roles:
                    continue
                self.clear_dataset(role)
                dropped.append((role, str(e)))
        if self.photos is not None:
            try:
                self.photos.expect(model.input_hwc)
            except PruneLabError as e:
                self.set_photos(None)
                dropped.append(("photos", str(e)))
        return dropped

    def inputs(self) -> list[Path]:
        """Every opened file: saves refuse to overwrite them."""
        files = list(self.model.input_files()) if self.model is not None else []
        return files + [Path(d.path) for d in self.datasets.values()]

    def set_result(self, result) -> None:
        self.result = result
        self.fine_tuned = []
        self.step = 0

    def close(self) -> None:
        """Close every dataset nobody reads; one still being read closes when it is released."""
        for ds in list(self.datasets.values()) + [self.photos]:
            if ds is not None:
                self._retire(ds)
        self.datasets.clear()
        self.photos = None
