"""What the window's jobs do, as plain functions (Orange3's ``concurrent.py`` idea): each takes
its inputs as values plus the engine's :class:`JobState` (cancel / pause), never the window, and
reports through what it yields and returns. :class:`guiapp.worker.Worker` runs them in a thread;
tests call them directly. No Qt here, and no pruning math: they call the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.core.state import JobState


@dataclass(frozen=True)
class OpenedModel:
    model: object  # engine.models.loading.LoadedModel
    default_layer: str | None
    layers: tuple[str, ...]


@dataclass(frozen=True)
class SweepStarted:
    """Yielded once, before the first step record: what the curves need to lay themselves out."""

    n_channels: int
    layer: str
    thresholds: tuple[float, ...]
    mean_activation: dict  # role -> per-channel mean |activation| (copies)
    method: str
    order: tuple[int, ...] = ()
    measured_at: str = ""
    fallback_reason: str | None = None  # why the naive loop runs, when it does
    roles: tuple[str, ...] = ()  # the datasets the sweep reads


@dataclass(frozen=True)
class ImagePage:
    """Thumbnails' pixels for one page of the image browser, read off the GUI thread."""

    dataset_path: str
    indices: tuple[int, ...]
    images: np.ndarray  # (n, h, w, 3) uint8


def open_model(path, weights, allow_unsafe: bool, state: JobState) -> OpenedModel:
    from engine.core.errors import PruneLabError
    from engine.models.loading import load_model
    from engine.models.runner import warm_up
    from engine.pruning.graph import default_layer, prunable_layer_names

    lm = load_model(path, weights, allow_unsafe=allow_unsafe)
    warm_up(lm)  # TensorFlow's first-trace cost now, not when the window draws a sweep
    try:
        layer = default_layer(lm.model, lm.path)
    except PruneLabError:
        layer = None
    return OpenedModel(lm, layer, tuple(prunable_layer_names(lm.model)))


def open_dataset(path, expected_hwc, resize: bool, state: JobState):
    """Open a dataset — an HDF5 file, image files or a folder of images (reads headers and
    labels, so files are never read on the GUI thread)."""
    from engine.io.datasets import guess_role, open_dataset

    ds = open_dataset(path, expected_hwc, resize=resize, state=state)
    return ds, guess_role(path, ds)


def prepare_demo(variant: str, state: JobState):
    from engine.demo.generate import demo_paths

    return demo_paths(variant)


def settle_input_scale(model, choice: str, datasets: dict):
    """The model's input convention for this run (``auto`` measures it on clean validation data):
    an ``engine.models.scale.ScaleDecision`` the window shows in the model panel."""
    from engine.models.scale import decide

    return decide(model, choice, datasets.get("clean_valid"))


def run_sweep(model, datasets: dict, layer: str | None, thresholds, state: JobState,
              step_size: int | str = 1, input_scale: str = "auto") -> Iterator:
    """Yield the input-scale decision and a :class:`SweepStarted`, then the sweep's Progress and
    StepRecord values; return the finished SweepResult."""
    from engine.core.state import Progress
    from engine.pruning.sweep import Sweep

    yield settle_input_scale(model, input_scale, datasets)
    sweep = Sweep(model, datasets, layer, thresholds, state=state, step_size=step_size)
    announced = False
    for ev in sweep.events():
        if not announced and not isinstance(ev, Progress):
            r = sweep.result
            yield SweepStarted(sweep.n_channels, r.layer, r.thresholds,
                               {k: v.copy() for k, v in r.mean_activation.items()}, r.method,
                               tuple(r.order), r.measured_at, sweep.fallback_reason, tuple(datasets))
            announced = True
        yield ev
    return sweep.result


@dataclass(frozen=True)
class RankingsDone:
    """Every ranking's scores and its sweep's result, in the order they were asked for."""

    rankings: dict  # name -> engine.pruning.criteria.Ranking
    results: dict  # name -> engine.pruning.records.SweepResult
    table: tuple  # engine.report.compare.ComparisonRow, one per ranking (and the random band's mean)

    def own_points(self) -> dict:
        """{name: (record index, label)} of criteria with an operating point of their own (CLP)."""
        return {row.name: (row.threshold_point.step, f"{row.title}: own threshold")
                for row in self.table if row.threshold_point is not None}


def run_rankings(model, datasets: dict, names, layer, thresholds, random_seeds: int, step_size,
                 state: JobState, input_scale: str = "auto") -> Iterator:
    """Several criteria, one exact sweep each: yield the input-scale decision, a
    :class:`SweepStarted`, then Progress and ``RankingStep(name, record)`` values; return
    :class:`RankingsDone`."""
    yield settle_input_scale(model, input_scale, datasets)
    from engine.report.compare import comparison_table
    from engine.pruning.rankings import RankingSweeps

    rs = RankingSweeps(model, datasets, names, layer, thresholds, random_seeds=random_seeds, state=state,
                       step_size=step_size)
    yield SweepStarted(rs.n_channels, rs.layer, tuple(rs.thresholds), {}, "", (), "", None, tuple(datasets))
    yield from rs.events()
    ranks = list(rs.rankings.values())
    return RankingsDone(dict(rs.rankings), dict(rs.results), tuple(comparison_table(ranks, rs.results)))


def run_save(model, result, which: str, step: int, path: Path, inputs, state: JobState) -> Path:
    """Save B′ (``which="bprime"``) or G (with its eval script) at ``step`` of ``result``."""
    from engine.pruning.rules import make_bprime, make_goodnet, save_model
    from engine.report.evalscript import save_goodnet

    bp = make_bprime(model.model, result.layer, result.pruned_channels(step), name=f"repaired_step{step}")
    state.cancel_point()
    if which == "bprime":
        return save_model(bp, path, inputs)
    g = make_goodnet(model.model, bp, input_scale=model.input_scale)
    state.cancel_point()
    return save_goodnet(g, path, inputs)


def run_save_fine_tuned(model, fine_tuned, which: str, path: Path, inputs, state: JobState) -> Path:
    from engine.pruning.rules import make_goodnet, save_model
    from engine.report.evalscript import save_goodnet

    if which == "bprime":
        return save_model(fine_tuned.model, path, inputs)
    g = make_goodnet(model.model, fine_tuned.model, input_scale=model.input_scale)
    state.cancel_point()
    return save_goodnet(g, path, inputs)


def run_export(model, result, datasets: dict, folder: Path, inputs, picked_step: int, state: JobState) -> Path:
    """The same folder ``prunelab sweep`` writes, through the same function."""
    from engine.report.outputs import write_sweep_outputs

    write_sweep_outputs(result, model, folder, inputs=inputs, extra={"picked_step": picked_step},
                        datasets=datasets, state=state)
    return Path(folder)


def run_fine_tune(model, datasets: dict, result, step: int, params: dict, state: JobState) -> Iterator:
    """Yield Progress and EpochRecord values; return the FineTuneResult."""
    from engine.pruning.finetune import FineTune, FineTuneConfig

    cfg = FineTuneConfig(**{k: v for k, v in params.items() if v is not None})
    ft = FineTune(model, datasets, result.layer, result.pruned_channels(step), step, cfg, state)
    yield from ft.events()
    return ft.result


def read_page(ds, indices, state: JobState) -> ImagePage:
    """The page's images as uint8 (h, w, 3), in the order asked for."""
    idx = np.asarray(indices, np.int64)
    imgs = [ds.image_uint8(int(i)) for i in idx]
    arr = np.stack(imgs) if imgs else np.zeros((0,) + tuple(ds.image_shape[:2]) + (3,), np.uint8)
    return ImagePage(str(ds.path), tuple(int(i) for i in idx), arr)


@dataclass(frozen=True)
class FileRoute:
    """Where opened or dropped files go, decided by their content (not their names)."""

    models: tuple = ()
    weights: tuple = ()
    data: tuple = ()
    photos: tuple = ()  # image files and folders: the browser's extra "Images" set
    bad: tuple = ()  # (path, one-line reason)
    folders: tuple = ()  # (folder, the slot its name says or None): folders of images as data sets


@dataclass(frozen=True)
class PhotoVerdicts:
    """B's, B′'s and G's answers for the photos at one step of the sweep."""

    dataset_path: str
    step: int | None
    labels: dict  # name ("B", "B'@k", "G@k") -> label array
    flag: int | None


def route_files(paths, state: JobState) -> FileRoute:
    """Files by content; folders by name (``engine.io.datasets.guess_role``), as data sets when their
    name says a slot (``cl/valid``, ``bd_test``) or when several are given. One folder whose name
    says nothing stays the browser's "Images" set, as before."""
    from engine.io.datasets import guess_role
    from engine.io.imagefiles import sniff_image
    from engine.models.loading import sniff

    models, weights, data, photos, bad, folders = [], [], [], [], [], []
    paths = list(map(Path, paths))
    dirs = [p for p in paths if p.is_dir()]
    for p in paths:
        if p.is_dir():
            role = guess_role(p)
            if role is not None or len(dirs) > 1:
                folders.append((p, role))
                continue
        kind = "photos" if p.is_dir() or (p.is_file() and sniff_image(p)) else sniff(p)
        if kind == "photos":
            photos.append(p)
        elif kind == "dataset":
            data.append(p)
        elif kind in ("model-h5", "keras"):
            models.append(p)
        elif kind == "weights-h5":
            weights.append(p)
        else:
            why = ("no such file" if not p.exists() else
                   "is empty (0 bytes)" if p.stat().st_size == 0 else
                   "is neither a lab dataset nor a Keras model (.h5/.keras)")
            bad.append((p, why))
    return FileRoute(tuple(models), tuple(weights), tuple(data), tuple(photos), tuple(bad), tuple(folders))


def open_photos(paths, expected_hwc, resize: bool, state: JobState):
    """Image files or folders as one set (labels from folders or names where present)."""
    from engine.io.datasets import open_dataset

    return open_dataset(list(paths) if len(paths) > 1 else paths[0], expected_hwc, resize=resize, state=state)


def photo_verdicts(model, result, step: int | None, ds, state: JobState) -> PhotoVerdicts:
    """B's answers, and B′'s and G's at ``step`` of ``result`` when there is one."""
    from engine.pruning.rules import verdicts

    layer = result.layer if result is not None and step is not None else None
    pruned = result.pruned_channels(step) if layer else []
    got = verdicts(model.model, layer, pruned, ds, model.n_classes, state, model.input_scale)
    labels = {"B": got["B"]}
    if layer:
        labels[f"B'@{step}"], labels[f"G@{step}"] = got["B'"], got["G"]
    return PhotoVerdicts(str(ds.path), step if layer else None, labels, model.n_classes if layer else None)


# ---------------------------------------------------------------------------- maps
@dataclass(frozen=True)
class MapPage:
    """Maps of one page of thumbnails (N×H×W in [0, 1]), for one method."""

    dataset_path: str
    indices: tuple[int, ...]
    method: str
    maps: np.ndarray


@dataclass(frozen=True)
class ImageMaps:
    """One image's maps side by side: B's, and B′'s at the picked step (for B's class)."""

    dataset_path: str
    index: int
    method: str
    maps: dict  # title -> H×W map


@dataclass(frozen=True)
class MeanMaps:
    """The mean map over clean and over poisoned validation images (engine.analysis.maps.MeanMap)."""

    method: str
    clean: object
    poisoned: object


@dataclass(frozen=True)
class ChannelMaps:
    """Mean activation maps (h×w×C) at the pruned layer, per validation set."""

    layer: str
    by_role: dict


def _map_layer(model, layer):
    """Where the maps of a sweep of ``layer`` are drawn: the layer, or for a hidden Dense layer
    the last Conv2D before it (the engine's rule, as for backdoor_map.png)."""
    from engine.pruning.graph import conv_before

    return (conv_before(model, layer) or layer) if layer else None


def _maker(makers: dict, model, layer, method: str, channels):
    """One traced map maker per (model, layer, method, channels), kept across pages."""
    from engine.analysis.maps import MapMaker

    layer = _map_layer(model.model, layer)
    key = (id(model.model), model.input_scale, layer, method, tuple(channels or ()))
    if key not in makers:
        makers[key] = MapMaker(model.model, layer, method, list(channels) if channels else None,
                               input_scale=model.input_scale)
    return makers[key]


def page_maps(makers: dict, model, layer, method: str, channels, page: ImagePage, state: JobState) -> MapPage:
    maker = _maker(makers, model, layer, method, channels)
    maps, _ = maker.explain(page.images.astype(np.float32))
    return MapPage(page.dataset_path, page.indices, method, maps)


def image_maps(makers: dict, model, result, step: int, method: str, channels, path: str, index: int,
               pixels: np.ndarray, state: JobState) -> ImageMaps:
    from engine.analysis.maps import MapMaker
    from engine.pruning.rules import make_bprime

    x = pixels[None].astype(np.float32)
    layer = result.layer if result is not None else None
    b_maps, cls = _maker(makers, model, layer, method, channels).explain(x)
    out = {"B": b_maps[0]}
    if result is not None:
        state.cancel_point()
        bp = make_bprime(model.model, layer, result.pruned_channels(step))
        out[f"B′@{step} (for B's class)"] = MapMaker(bp, _map_layer(model.model, layer), method, channels,
                                                     input_scale=model.input_scale).explain(x, classes=cls)[0][0]
    return ImageMaps(path, index, method, out)


def mean_maps(makers: dict, model, layer, method: str, channels, clean, poisoned, state: JobState) -> MeanMaps:
    from engine.analysis.maps import mean_map

    maker = _maker(makers, model, layer, method, channels)
    c = mean_map(maker, clean, state=state)
    p = mean_map(maker, poisoned, state=state) if poisoned is not None else None
    return MeanMaps(method, c, p)


def channel_maps(model, layer, datasets: dict, state: JobState) -> ChannelMaps:
    from engine.analysis.maps import mean_activation_maps

    return ChannelMaps(layer, {r: mean_activation_maps(model, layer, ds, state=state)
                               for r, ds in datasets.items()})
