"""Builders for test inputs in the lab's exact formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


def write_dataset(path: Path, x_nhwc, labels, layout: str = "NCHW", dtype="float32",
                  label_dtype="float32") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x_nhwc)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=x.astype(dtype))
        f.create_dataset("label", data=np.asarray(labels).astype(label_dtype))
    return path


def random_images(rng, n, shape=(55, 47, 3)):
    return rng.integers(0, 256, (n,) + tuple(shape)).astype(np.uint8)


@dataclass
class SmallLab:
    root: Path
    model: Path
    weights: Path
    n_classes: int
    files: dict  # role -> path


def make_small_lab(root: Path, n_classes: int = 12, seed: int = 5, n_valid: int = 300,
                   n_test: int = 240) -> SmallLab:
    from engine.models.deepid import build_deepid
    from engine.models.legacy_h5 import write_keras2_model, write_keras2_weights

    rng = np.random.default_rng(seed)
    model = build_deepid(n_classes, seed=seed)
    # make conv_3 look trained: some channels dormant, some sparse, some always on
    conv = model.get_layer("conv_3")
    k, b = conv.get_weights()
    b = np.linspace(-40, 5, b.shape[0]).astype(np.float32)[rng.permutation(b.shape[0])]
    conv.set_weights([k, b])
    # random positive images all look alike to a random net (one class wins everywhere);
    # centre and scale the logits on sample images so that predictions spread over classes
    from engine.core.tfsetup import keras

    feats = keras().Model(model.inputs, model.get_layer("activation_1").output)
    h = feats.predict(random_images(rng, 256).astype(np.float32), verbose=0)
    out = model.get_layer("output")
    w, _ = out.get_weights()
    logits = h @ w
    w = (w / (logits.std(axis=0) + 1e-6)).astype(np.float32)
    out.set_weights([w, (-(h @ w).mean(axis=0)).astype(np.float32)])
    write_keras2_model(model, root / "bd_net.h5")
    write_keras2_weights(model, root / "bd_weights.h5")
    def labels_of(x):
        # the model's own answers, 10 % flipped: a baseline near 90 % that pruning can lower
        y = np.argmax(model.predict(x.astype(np.float32), verbose=0), axis=1)
        flip = rng.random(len(y)) < 0.1
        y[flip] = rng.integers(0, n_classes, int(flip.sum()))
        return y

    xv, xt = random_images(rng, n_valid), random_images(rng, n_test)
    files = {
        "clean_valid": write_dataset(root / "cl" / "valid.h5", xv, labels_of(xv)),
        "poisoned_valid": write_dataset(root / "bd" / "bd_valid.h5", random_images(rng, n_valid),
                                        np.full(n_valid, 3)),
        "clean_test": write_dataset(root / "cl" / "test.h5", xt, labels_of(xt)),
        "poisoned_test": write_dataset(root / "bd" / "bd_test.h5", random_images(rng, n_test),
                                       np.full(n_test, 3)),
    }
    return SmallLab(root, root / "bd_net.h5", root / "bd_weights.h5", n_classes, files)


def predict_function(model, batch_size: int = 256):
    """``model.predict(x, batch_size=256)`` without its per-call cost (an iterator and callbacks
    each call, about 0.1 s: most of the reference's time on small sets): the model called in one
    traced function on the same batches, which gives the same bits. The function reads the
    model's weights when called, so it follows ``set_weights``."""
    from engine.core.tfsetup import tf

    call = tf().function(lambda b: model(b, training=False), reduce_retracing=True)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(call(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])

    return predict


def naive_sweep_predictions(model, layer: str, order, x: np.ndarray, steps) -> dict[int, np.ndarray]:
    """The reference: zero the channel's weights and bias, run the whole Keras model."""
    conv = model.get_layer(layer)
    kernel, bias = [w.copy() for w in conv.get_weights()]
    predict = predict_function(model)
    out = {}
    try:
        for s in steps:
            k, b = kernel.copy(), bias.copy()
            for c in order[:s]:
                k[..., c] = 0
                b[c] = 0
            conv.set_weights([k, b])
            out[s] = np.argmax(predict(x), axis=1)
    finally:
        conv.set_weights([kernel, bias])
    return out


def tail_sweep_predictions(model, layer: str, order, x: np.ndarray, steps) -> dict[int, np.ndarray]:
    """:func:`naive_sweep_predictions` from the layer's input on: what comes before the layer does
    not depend on its weights, so that part runs once (a Keras sub-model) and the rest of the
    model (a sub-model from the layer's input to the output, sharing its layers) at every step.
    The same answers at a fraction of the cost; only for a model with no path around the layer."""
    from engine.core.tfsetup import keras

    k = keras()
    cut = model.get_layer(layer).input
    before = predict_function(k.Model(model.inputs, cut))(x)
    return naive_sweep_predictions(k.Model(cut, model.output), layer, order, before, steps)


# PruneLab may be installed in the environment: a bare process must not be able to import it
BARE_PRELUDE = ("import sys\n"
                "for name in ('engine', 'guiapp', 'resources', 'tests'):\n"
                "    sys.modules[name] = None\n")


def run_bare(code: str, args, cwd: Path, timeout: int = 300):
    """Run ``code`` in a Python that cannot import PruneLab: isolated mode (``-I``: no
    PYTHONPATH, no user site, no script folder on sys.path), a minimal environment, and the
    project's packages blocked in ``sys.modules``."""
    import os
    import subprocess
    import sys

    env = {"PATH": os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-I", "-c", BARE_PRELUDE + code, *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def run_bare_script(script: Path, args, cwd: Path, timeout: int = 300):
    """``python3 script args…`` in a bare process (see :func:`run_bare`)."""
    code = ("import runpy\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    return run_bare(code, [script, *args], cwd, timeout)


def write_images(folder: Path, x_nhwc, names, fmt: str | None = None) -> list[Path]:
    """Save uint8 images under ``folder`` (names may hold subfolders); the format follows
    each name's extension unless ``fmt`` says otherwise. JPEG at quality 95."""
    from PIL import Image

    out = []
    for img, name in zip(np.asarray(x_nhwc, np.uint8), names):
        p = Path(folder) / name
        p.parent.mkdir(parents=True, exist_ok=True)
        kind = fmt or ("JPEG" if p.suffix.lower() in (".jpg", ".jpeg") else "PNG")
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(
            p, kind, **({"quality": 95} if kind == "JPEG" else {}))
        out.append(p)
    return out


def unit_scale_twin(model_path, out: Path) -> Path:
    """The same network for pixels / 255: the first layer's kernel × 255, saved as ``.keras``
    (what the CSAW-HackML-2020 models are to the lab's raw-pixel ones)."""
    from engine.models.loading import load_model

    lm = load_model(model_path)
    conv = lm.model.get_layer("conv_1")
    k, b = conv.get_weights()
    conv.set_weights([k * np.float32(255.0), b])
    lm.model.save(str(out))
    return Path(out)


def tiny_cnn(hw, n_classes: int, name: str):
    """The small CNN the scan/repair tests train in seconds (input 0–255, rescaled inside),
    compiled for integer labels."""
    from engine.core.tfsetup import keras

    k = keras()
    inp = k.Input(tuple(hw) + (3,))
    h = k.layers.Rescaling(1 / 255.0)(inp)
    h = k.layers.Conv2D(8, 3, activation="relu", name="conv_1")(h)
    h = k.layers.MaxPooling2D(name="pool_1")(h)
    h = k.layers.Conv2D(16, 3, activation="relu", name="conv_2")(h)
    h = k.layers.MaxPooling2D(name="pool_2")(h)
    h = k.layers.Flatten()(h)
    h = k.layers.Dense(32, activation="relu", name="fc")(h)
    out = k.layers.Dense(n_classes, activation="softmax", name="output")(h)
    m = k.Model(inp, out, name=name)
    m.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    return m
