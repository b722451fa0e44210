"""Opening models safely: Keras 2 legacy ``.h5`` full models, weights-only ``.h5`` (with a
model file or the built-in DeepID), and Keras 3 ``.keras`` archives."""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from engine.core.errors import PruneLabError, UnsafeModelError
from engine.io.hdf5 import check_regular_file, human_bytes, is_hdf5, open_hdf5, short_reason
from engine.models.safety import UnsafeModel, check_activation_strings, check_config

GOODNET_NAME = "prunelab_goodnet"
MAX_ARCHIVE_BYTES = 4 << 30
MAX_CONFIG_BYTES = 64 << 20


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: str
    params: int


@dataclass
class LoadedModel:
    """A Keras model opened by PruneLab, with where it came from."""

    model: object
    path: Path
    weights_path: Path | None
    kind: str
    input_hwc: tuple[int, int, int]
    n_classes: int
    is_goodnet: bool = False
    # the pixel range the model was trained on: 255.0 (raw 0–255, the lab's bd_net) or 1.0 (x / 255,
    # the CSAW-HackML-2020 models). Datasets stay 0–255; ``model_input`` applies it where images
    # enter the model.
    input_scale: float = 255.0
    input_scale_source: str = "default"   # "default" | "detected" | "given"

    def model_input(self, x: np.ndarray) -> np.ndarray:
        """Images as 0–255 pixels → what this model's first layer expects."""
        return to_model_input(x, self.input_scale)

    @property
    def name(self) -> str:
        return self.path.name if self.path else "DeepID"

    def layer_table(self) -> list[LayerRow]:
        rows = []
        for layer in self.model.layers:
            try:
                shape = str(tuple(layer.output.shape)).replace("None", "N")
            except Exception:
                shape = "?"
            rows.append(LayerRow(layer.name, type(layer).__name__, shape, int(layer.count_params())))
        return rows

    def input_files(self) -> list[Path]:
        return [p for p in (self.path, self.weights_path) if p]


def goodnet_name(input_scale: float = 255.0, base: str = GOODNET_NAME) -> str:
    """G's Keras name: it marks G as PruneLab's and carries B's input convention, so ``prunelab
    eval`` and the eval script feed G what its B was trained on (raw pixels keep the plain name)."""
    return base if float(input_scale) == 255.0 else f"{base}_input_over_255"


def goodnet_input_scale(name: str) -> float:
    return 1.0 if str(name).endswith("_input_over_255") else 255.0


def to_model_input(x: np.ndarray, input_scale: float) -> np.ndarray:
    """The one input-scale rule: 0–255 pixels times ``input_scale / 255`` (float32)."""
    x = np.asarray(x, np.float32)
    if float(input_scale) == 255.0:
        return x
    return x / np.float32(255.0 / float(input_scale))


# --------------------------------------------------------------------------- sniffing
def sniff(path: str | os.PathLike) -> str:
    """What a file is, without TensorFlow: 'dataset', 'model-h5', 'weights-h5', 'keras',
    or 'unknown'. Used to route dropped files."""
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size == 0:
            return "unknown"
        if zipfile.is_zipfile(p):
            return "keras"
        if not is_hdf5(p):
            return "unknown"
        with h5py.File(p, "r") as f:
            keys = set(f.keys())
            if "data" in keys or "label" in keys:
                return "dataset"
            if "model_config" in f.attrs:
                return "model-h5"
            if "layer_names" in f.attrs or "model_weights" in keys or "layers" in keys:
                return "weights-h5"
    except (OSError, RuntimeError):
        return "unknown"
    return "unknown"


# --------------------------------------------------------------------------- checks
def _check_h5_tree(f: h5py.File, path: Path) -> None:
    """No external links, soft links out of the file, virtual or externally stored data."""
    problems: list[str] = []

    def walk(group: h5py.Group, prefix: str, depth: int):
        if depth > 32:
            problems.append("nests groups absurdly deep")
            return
        for key in group.keys():
            link = group.get(key, getlink=True)
            full = f"{prefix}/{key}"
            if isinstance(link, h5py.ExternalLink):
                problems.append(f"'{full.lstrip('/')}' is an external link to {link.filename!r}")
                return
            if isinstance(link, h5py.SoftLink):
                continue
            obj = group.get(key)
            if isinstance(obj, h5py.Group):
                walk(obj, full, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    problems.append(f"'{full.lstrip('/')}' is a virtual dataset mapping other files")
                    return
                if obj.external:
                    problems.append(f"'{full.lstrip('/')}' keeps its data in external raw files")
                    return
                if obj.size > 2_000_000_000:
                    problems.append(f"'{full.lstrip('/')}' declares {obj.size:,} values")
                    return

    walk(f, "", 0)
    if problems:
        raise PruneLabError(path, problems[0] + "; PruneLab reads nothing from outside the model file")


def _attr_text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_text(v.item())
    return str(v)


def _safety(config, path: Path, allow_unsafe: bool):
    try:
        facts = check_config(config, allow_unsafe=allow_unsafe)
        check_activation_strings(config, allow_unsafe=allow_unsafe)
    except UnsafeModel as e:
        hint = "" if allow_unsafe else " (refused; pass --allow-unsafe-model only if you trust this file)"
        raise UnsafeModelError(path, f"unsafe model: {e}{hint}") from None
    return facts


def _compare_declared_with_stored(facts, weights_group: h5py.Group, path: Path) -> None:
    """A config that declares a layer far larger than the weights it stores is refused before
    Keras allocates it (a 'huge output' memory attack)."""
    for lname, size in facts.declared_sizes.items():
        if lname not in weights_group:
            continue
        g = weights_group[lname]
        shapes = []
        g.visititems(lambda n, o: shapes.append(o.shape) if isinstance(o, h5py.Dataset) else None)
        kernel = [s for s in shapes if len(s) >= 2]
        if kernel and kernel[0][-1] != size:
            raise PruneLabError(path, f"layer '{lname}' declares {size:,} outputs but its stored weights "
                                f"have shape {tuple(kernel[0])}")


# --------------------------------------------------------------------------- loading
def load_model(path: str | os.PathLike | None, weights: str | os.PathLike | None = None, *,
               allow_unsafe: bool = False, n_classes: int | None = None) -> LoadedModel:
    """Open a model the way the lab does (``load_model`` then optional ``load_weights``).

    ``path`` may be None together with ``weights``: the built-in DeepID is built and the
    weights file supplies the weights (and the number of classes)."""
    if path is None and weights is None:
        raise PruneLabError(None, "give a model file, a weights file, or both")
    wpath = Path(weights) if weights is not None else None
    if path is None:
        return _deepid_from_weights(wpath, n_classes)
    p = check_regular_file(path, "model file")
    if zipfile.is_zipfile(p):
        lm = _load_keras_archive(p, allow_unsafe)
    elif is_hdf5(p):
        kind = sniff(p)
        if kind == "dataset":
            raise PruneLabError(p, "is a dataset (it has 'data'/'label'), not a model")
        if kind == "weights-h5":
            if wpath is not None:
                raise PruneLabError(p, "is a weights-only file; give the model file with --model")
            return _deepid_from_weights(p, n_classes)
        lm = _load_legacy_h5(p, allow_unsafe)
    else:
        raise PruneLabError(p, "is neither a Keras .h5 (HDF5) nor a .keras archive")
    if wpath is not None:
        load_weights_into(lm.model, wpath)
        lm.weights_path = wpath
    return lm


def _finish(model, path: Path, kind: str, weights_path=None) -> LoadedModel:
    ins = model.inputs
    outs = model.outputs
    if len(ins) != 1 or len(outs) != 1:
        raise PruneLabError(path, f"has {len(ins)} inputs and {len(outs)} outputs; PruneLab needs one "
                            "image input and one class output")
    ishape = tuple(ins[0].shape)
    oshape = tuple(outs[0].shape)
    if len(ishape) != 4 or any(d is None for d in ishape[1:]):
        raise PruneLabError(path, f"takes input of shape {ishape}; expected images (N, H, W, C)")
    if len(oshape) != 2 or oshape[1] is None or oshape[1] < 2:
        raise PruneLabError(path, f"produces output of shape {oshape}; expected class scores (N, classes)")
    hwc = tuple(int(d) for d in ishape[1:])
    is_g = str(model.name).startswith(GOODNET_NAME)
    lm = LoadedModel(model, path, weights_path, kind, hwc, int(oshape[1]), is_goodnet=is_g)
    if is_g:  # a G saved by PruneLab knows its B's input convention
        lm.input_scale, lm.input_scale_source = goodnet_input_scale(model.name), "G"
    return lm


def _load_legacy_h5(p: Path, allow_unsafe: bool) -> LoadedModel:
    from engine.core.tfsetup import keras

    with open_hdf5(p, "model file") as f:
        _check_h5_tree(f, p)
        raw = f.attrs.get("model_config")
        if raw is None:
            raise PruneLabError(p, "has no model_config (a weights-only file?)")
        text = _attr_text(raw)
        if len(text) > MAX_CONFIG_BYTES:
            raise PruneLabError(p, "model_config is absurdly large")
        try:
            config = json.loads(text)
        except ValueError:
            raise PruneLabError(p, "model_config is not valid JSON") from None
        version = _attr_text(f.attrs.get("keras_version", "?"))
        facts = _safety(config, p, allow_unsafe)
        if "model_weights" not in f:
            raise PruneLabError(p, "stores no weights ('model_weights' is missing)")
        _compare_declared_with_stored(facts, f["model_weights"], p)
    k = keras()
    try:
        model = k.models.load_model(p, compile=False, safe_mode=not allow_unsafe)
    except PruneLabError:
        raise
    except Exception as e:  # Keras raises many types for bad files
        raise PruneLabError(p, f"Keras could not build the model: {short_reason(e)}") from None
    major = version.split(".")[0]
    kind = f"Keras {major} legacy .h5 (saved by Keras {version})"
    return _finish(model, p, kind)


def _load_keras_archive(p: Path, allow_unsafe: bool) -> LoadedModel:
    from engine.core.tfsetup import keras

    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if total > MAX_ARCHIVE_BYTES:
                raise PruneLabError(p, f"archive unpacks to {human_bytes(total)} (zip bomb?)")
            names = {i.filename for i in infos}
            if "config.json" not in names:
                raise PruneLabError(p, "is a zip archive without config.json (not a .keras model)")
            info = z.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise PruneLabError(p, "config.json is absurdly large")
            config = json.loads(z.read("config.json"))
            if "model.weights.h5" in names:
                wbytes = z.read("model.weights.h5")
                with h5py.File(io.BytesIO(wbytes), "r") as wf:
                    _check_h5_tree(wf, p)
    except PruneLabError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, KeyError) as e:
        raise PruneLabError(p, f"is a damaged .keras archive ({short_reason(e)})") from None
    _safety(config, p, allow_unsafe)
    k = keras()
    try:
        model = k.saving.load_model(p, compile=False, safe_mode=not allow_unsafe)
    except Exception as e:
        raise PruneLabError(p, f"Keras could not build the model: {short_reason(e)}") from None
    return _finish(model, p, "Keras 3 .keras archive")


def _n_classes_from_weights(wp: Path) -> int:
    with open_hdf5(wp, "weights file") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "output" not in root:
            raise PruneLabError(wp, "has no 'output' layer; it is not a DeepID weights file — give "
                                "the model file too (--model)")
        shapes = []
        root["output"].visititems(lambda n, o: shapes.append(o.shape) if isinstance(o, h5py.Dataset) else None)
        kernels = [s for s in shapes if len(s) == 2]
        if not kernels:
            raise PruneLabError(wp, "its 'output' layer stores no kernel")
        return int(kernels[0][1])


def _deepid_from_weights(wp: Path, n_classes: int | None) -> LoadedModel:
    from engine.models.deepid import build_deepid

    check_regular_file(wp, "weights file")
    n = n_classes or _n_classes_from_weights(wp)
    model = build_deepid(n)
    load_weights_into(model, wp)
    lm = _finish(model, wp, "built-in DeepID + Keras weights file", weights_path=wp)
    return lm


def load_weights_into(model, wpath: str | os.PathLike) -> None:
    """Read a Keras 2 weights file (or the weights of a full .h5 model) into ``model``,
    matching layers by name and checking every shape first."""
    wp = check_regular_file(wpath, "weights file")
    if zipfile.is_zipfile(wp):
        raise PruneLabError(wp, "is a .keras archive; open it as the model instead of as weights")
    with open_hdf5(wp, "weights file") as f:
        _check_h5_tree(f, wp)
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            if "data" in f or "label" in f:
                raise PruneLabError(wp, "is a dataset, not a weights file")
            raise PruneLabError(wp, "has no 'layer_names' attribute (not a Keras 2 weights file)")
        names = [_attr_text(n) for n in root.attrs["layer_names"]]
        stored: dict[str, list[np.ndarray]] = {}
        for name in names:
            if name not in root:
                raise PruneLabError(wp, f"lists layer '{name}' but has no group for it")
            g = root[name]
            wnames = [_attr_text(w) for w in g.attrs.get("weight_names", [])]
            arrays = []
            for wn in wnames:
                if wn not in g:
                    raise PruneLabError(wp, f"layer '{name}' lists weight '{wn}' that is missing")
                d = g[wn]
                if d.size > 500_000_000:
                    raise PruneLabError(wp, f"weight '{wn}' declares {d.size:,} values")
                arrays.append(np.asarray(d[...]))
            if arrays:
                stored[name] = arrays
    by_name = {l.name: l for l in model.layers}
    for name, arrays in stored.items():
        layer = by_name.get(name)
        if layer is None:
            raise PruneLabError(wp, f"holds weights for layer '{name}', which the model does not have "
                                "(weights of another architecture?)")
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            raise PruneLabError(wp, f"layer '{name}' has weights of shape {got}, the model expects {want} "
                                "(weights of another architecture?)")
    missing = [l.name for l in model.layers if l.weights and l.name not in stored]
    if missing:
        raise PruneLabError(wp, f"has no weights for layer(s) {', '.join(missing)} "
                            "(weights of another architecture?)")
    for name, arrays in stored.items():
        by_name[name].set_weights(arrays)
