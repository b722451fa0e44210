"""Writing Keras 2 style legacy HDF5 files (the lab's ``bd_net.h5`` / ``bd_weights.h5``).

PruneLab reads what students saved with Keras 2.3–2.11; the demo and the tests write the
very same layout (Keras-2 config names, ``:0`` weight names, byte-string attributes) so that
they exercise the exact code path of real files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from engine.io.atomic import atomic_path


def _k2_object(obj):
    """Keras 3 serialized object -> Keras 2 style {"class_name", "config"}."""
    if isinstance(obj, dict):
        if "class_name" in obj and "module" in obj:
            if obj["class_name"] == "DTypePolicy":
                return obj["config"]["name"]
            cfg = obj.get("config")
            if obj["class_name"] == "function":
                return cfg
            return {"class_name": obj["class_name"], "config": _k2_object(cfg)}
        return {k: _k2_object(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_k2_object(v) for v in obj]
    return obj


def keras2_layer_config(layer) -> dict:
    from engine.core.tfsetup import keras

    k = keras()
    cfg = k.saving.serialize_keras_object(layer)["config"]
    cfg = _k2_object(cfg)
    if type(layer).__name__ == "InputLayer":
        shape = cfg.pop("batch_shape", None)
        cfg = {"batch_input_shape": list(shape), "dtype": "float32", "sparse": False,
               "ragged": False, "name": layer.name}
    else:
        cfg.setdefault("trainable", True)
    for init_key in ("kernel_initializer", "bias_initializer"):
        ini = cfg.get(init_key)
        if isinstance(ini, dict) and isinstance(ini.get("config"), dict):
            ini["config"] = {k: v for k, v in ini["config"].items() if k == "seed" or
                             ini["class_name"] not in ("GlorotUniform", "Zeros")}
    return cfg


def keras2_model_config(model, class_name: str = "Functional", extra_layers=None) -> dict:
    """The ``model_config`` JSON of a Keras 2 functional model."""
    layers = []
    for layer in model.layers:
        inbound = []
        if type(layer).__name__ != "InputLayer":
            node = layer._inbound_nodes[0]
            refs = []
            for t in node.input_tensors:
                op, node_index, tensor_index = t._keras_history
                refs.append([op.name, int(node_index), int(tensor_index), {}])
            inbound = [refs]
        layers.append({"class_name": type(layer).__name__, "config": keras2_layer_config(layer),
                       "name": layer.name, "inbound_nodes": inbound})
    if extra_layers:
        layers.extend(extra_layers)

    def ref(t):
        op, node_index, tensor_index = t._keras_history
        return [op.name, int(node_index), int(tensor_index)]

    return {"class_name": class_name,
            "config": {"name": model.name, "layers": layers,
                       "input_layers": [ref(t) for t in model.inputs],
                       "output_layers": [ref(t) for t in model.outputs]}}


def _write_weights(group: h5py.Group, model, keras_version: str) -> None:
    group.attrs["backend"] = np.bytes_(b"tensorflow")
    group.attrs["keras_version"] = np.bytes_(keras_version.encode())
    group.attrs["layer_names"] = np.array([l.name.encode() for l in model.layers])
    for layer in model.layers:
        g = group.create_group(layer.name)
        names = []
        for var, value in zip(layer.weights, layer.get_weights()):
            short = var.path.split("/")[-1] if hasattr(var, "path") else var.name
            wname = f"{layer.name}/{short}:0"
            names.append(wname.encode())
            g.create_dataset(wname, data=np.asarray(value, dtype=np.float32))
        g.attrs["weight_names"] = np.array(names, dtype="S") if names else np.array([], dtype="S1")


def write_keras2_model(model, path, keras_version: str = "2.7.0", class_name: str = "Functional",
                       config: dict | None = None, compiled: bool = True) -> Path:
    """A full model file as Keras 2 wrote it (root attrs + ``model_weights`` group)."""
    path = Path(path)
    cfg = config if config is not None else keras2_model_config(model, class_name)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["backend"] = np.bytes_(b"tensorflow")
            f.attrs["keras_version"] = np.bytes_(keras_version.encode())
            f.attrs["model_config"] = np.bytes_(json.dumps(cfg).encode())
            if compiled:
                f.attrs["training_config"] = np.bytes_(json.dumps({
                    "loss": "categorical_crossentropy", "metrics": ["accuracy"],
                    "weighted_metrics": None, "loss_weights": None, "sample_weight_mode": None,
                    "optimizer_config": {"class_name": "Adadelta", "config": {
                        "name": "Adadelta", "learning_rate": 1.0, "decay": 0.0, "rho": 0.95,
                        "epsilon": 1e-07}}}).encode())
            _write_weights(f.create_group("model_weights"), model, keras_version)
    return path


def write_keras2_weights(model, path, keras_version: str = "2.3.1") -> Path:
    """A weights-only file as Keras 2's ``save_weights('x.h5')`` wrote it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_weights(f, model, keras_version)
    return path
