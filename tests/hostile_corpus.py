"""A corpus of hostile and broken inputs, each with what the user should see.

``build_corpus(root, lab)`` writes every case under ``root`` and returns the list of
:class:`Case`. Each case names the CLI slot it is passed in, and either the one-line error
(exit code 2) or the warning (the sweep goes on). Cases that would run code create
``root/MARKER`` if PruneLab ever executed them."""

from __future__ import annotations

import base64
import json
import marshal
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

MARKER = "MARKER_CODE_RAN"


@dataclass
class Case:
    name: str
    file: Path
    slot: str  # "model", "weights", a dataset role, or "layer"
    expect: str  # "error" or "warn"
    message: str  # regex the error/warning must match (after "<file>: ")
    what: str  # the table's description
    extra_args: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    gui: bool = False  # part of the GUI's representative subset
    runs_code: bool = False  # loading it would run code (Lambda layers, planted modules, serialised functions)


def _lab_images(n, shape=(3, 55, 47), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape).astype(np.float32)


def _dataset(path: Path, data=None, label=None, **kw) -> Path:
    with h5py.File(path, "w") as f:
        if data is not None:
            f.create_dataset("data", data=data, **kw)
        if label is not None:
            f.create_dataset("label", data=label)
    return path


def _png_bytes(w: int, h: int, bit_depth: int = 8, color_type: int = 0, raw: bytes = b"") -> bytes:
    """A PNG written by hand, so its header may declare anything (a bomb: huge, no pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _save_image(path: Path, pixels, fmt: str = "PNG", mode: str | None = None) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(pixels))
    (im.convert(mode) if mode else im).save(path, fmt)
    return path


def _marshal_lambda(marker: Path) -> str:
    src = f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]"
    code = compile(src, "<payload>", "eval").co_consts[0]
    return base64.b64encode(marshal.dumps(code)).decode()


def build_corpus(root: Path, lab) -> list[Case]:
    from engine.models.deepid import build_deepid
    from engine.models.legacy_h5 import keras2_model_config, write_keras2_model, write_keras2_weights
    from engine.core.tfsetup import keras

    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    good_valid = lab.files["clean_valid"]
    cases: list[Case] = []

    def add(*a, **k):
        cases.append(Case(*a, **k))

    # ------------------------------------------------------------ files that are not data
    p = root / "empty.h5"
    p.write_bytes(b"")
    add("empty", p, "clean_valid", "error", r"is empty \(0 bytes\)", "zero-byte file", gui=True)
    p = root / "notes_valid.h5"
    p.write_text("these are my notes, not HDF5\n")
    add("text", p, "clean_valid", "error", r"is not an HDF5 file", "text file named .h5", gui=True)
    p = root / "truncated_valid.h5"
    raw = Path(good_valid).read_bytes()
    p.write_bytes(raw[: len(raw) // 3])
    add("truncated", p, "clean_valid", "error", r"cannot be read as HDF5 \(truncated or corrupt|holds no|cannot be read",
        "truncated HDF5 (first third of a real file)", gui=True)
    p = root / "a_folder.h5"
    p.mkdir()
    add("directory", p, "clean_valid", "error", r"is a directory", "directory instead of a file")
    # ------------------------------------------------------------ malformed datasets
    n = 20
    x, y = _lab_images(n), np.arange(n, dtype=np.float32) % lab.n_classes
    add("no_data", _dataset(root / "no_data.h5", label=y), "clean_valid", "error", r"has no 'data' dataset",
        "missing `data`")
    add("no_label", _dataset(root / "no_label.h5", data=x), "clean_valid", "error", r"has no 'label' dataset",
        "missing `label`")
    add("rank", _dataset(root / "rank3.h5", data=x[:, 0], label=y), "clean_valid", "error",
        r"expected 4 dimensions", "`data` of rank 3")
    add("size", _dataset(root / "size.h5", data=_lab_images(n, (3, 32, 32)), label=y), "clean_valid", "error",
        r"images are 32×32×3, the model expects 55×47×3", "images of the wrong size for the model", gui=True)
    add("channels", _dataset(root / "gray.h5", data=_lab_images(n, (1, 55, 47)), label=y), "clean_valid", "error",
        r"images have 1 channel\(s\).*the model expects 3", "channel count mismatch")
    xn = x.copy()
    xn[7, 1, 20, 20] = np.nan
    add("nan", _dataset(root / "nan_test.h5", data=xn, label=y), "clean_test", "error",
        r"image 7 holds NaN or infinite pixel values", "NaN pixels")
    xi = x.copy()
    xi[3, 0, 0, 0] = np.inf
    add("inf", _dataset(root / "inf_test.h5", data=xi, label=y), "clean_test", "error",
        r"image 3 holds NaN or infinite pixel values", "infinite pixels")
    add("label_range", _dataset(root / "labels_big.h5", data=x, label=np.full(n, 5000.0)), "clean_test", "error",
        rf"labels go up to 5000 but the model has only {lab.n_classes} classes", "labels outside the model's classes")
    add("label_nan", _dataset(root / "labels_nan.h5", data=x, label=np.where(np.arange(n) == 2, np.nan, y)),
        "clean_test", "error", r"'label' holds NaN", "NaN labels")
    add("label_frac", _dataset(root / "labels_frac.h5", data=x, label=y + 0.5), "clean_test", "error",
        r"non-integer values", "fractional labels")
    add("empty_ds", _dataset(root / "empty_set.h5", data=np.zeros((0, 3, 55, 47), np.float32),
                             label=np.zeros(0, np.float32)), "clean_valid", "error", r"holds no images",
        "empty dataset (0 images)")
    add("strings", _dataset(root / "strings.h5", data=np.array([b"a", b"b"]).reshape(2, 1, 1, 1), label=np.zeros(2)),
        "clean_valid", "error", r"'data' holds .* values, expected numbers", "`data` of strings")
    add("mixed_poison", _dataset(root / "bd_mixed_test.h5", data=x, label=y), "poisoned_test", "warn",
        r"should carry the attacker's target as every label, but it holds \d+ different labels",
        "poisoned file whose labels are not one target (warning; the sweep goes on)")
    # ------------------------------------------------------------ HDF5 tricks
    outside = root / "outside.h5"
    _dataset(outside, data=x, label=y)
    p = root / "external_link.h5"
    with h5py.File(p, "w") as f:
        f["data"] = h5py.ExternalLink(str(outside), "data")
        f["label"] = y
    add("external_link", p, "clean_valid", "error", r"'data' is an external link to .*outside\.h5",
        "HDF5 external link to another file", gui=True)
    p = root / "virtual.h5"
    layout = h5py.VirtualLayout(shape=x.shape, dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(outside), "data", shape=x.shape)
    with h5py.File(p, "w") as f:
        f.create_virtual_dataset("data", layout)
        f["label"] = y
    add("virtual", p, "clean_valid", "error", r"'data' is a virtual dataset", "virtual dataset mapping another file")
    rawfile = root / "pixels.raw"
    x.tofile(rawfile)
    p = root / "external_raw.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", shape=x.shape, dtype=np.float32, external=[(str(rawfile), 0, x.nbytes)])
        f["label"] = y
    add("external_raw", p, "clean_valid", "error", r"keeps its data in external raw files",
        "dataset stored in an external raw file")
    p = root / "softlink.h5"
    with h5py.File(p, "w") as f:
        f["real"] = x
        f["data"] = h5py.SoftLink("/real")
        f["label"] = y
    add("soft_link", p, "clean_valid", "error", r"'data' is a soft link", "`data` as a soft link")
    p = root / "shape_bomb.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", shape=(2_000_000, 3, 55, 47), dtype=np.float32, chunks=(1, 3, 55, 47))
        f.create_dataset("label", shape=(2_000_000,), dtype=np.float32, chunks=(1024,))
    add("shape_bomb", p, "clean_valid", "error", r"declares shape \(2000000, 3, 55, 47\).*shape bomb",
        "shape bomb: 2 million images declared, none stored", gui=True)
    p = root / "absurd_shape.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", shape=(10**12, 3, 55, 47), dtype=np.float32, chunks=(1, 3, 55, 47))
        f.create_dataset("label", shape=(10**12,), dtype=np.float32, chunks=(1024,))
    add("absurd_shape", p, "clean_valid", "error", r"declares an absurd shape", "a trillion images declared")
    add("memory", good_valid, "clean_valid", "error", r"would need .* of memory, more than",
        "data whose activations would not fit in memory (limit set to 1 MB)", env={"PRUNELAB_MEMORY_LIMIT_MB": "1"})
    # ------------------------------------------------------------ images (PNG/JPEG files and folders)
    img = _lab_images(4, (55, 47, 3), seed=3).astype(np.uint8)
    good_png = _save_image(root / "photos_src" / "good.png", img[0]).read_bytes()
    good_jpg = _save_image(root / "photos_src" / "good.jpg", img[0], "JPEG").read_bytes()
    p = root / "cut_label=0.png"
    p.write_bytes(good_png[: len(good_png) // 2])
    add("img_truncated_png", p, "clean_valid", "error", r"is truncated or corrupt", "PNG cut in half")
    p = root / "garbled_label=0.png"
    raw = bytearray(good_png)
    raw[len(raw) // 2: len(raw) // 2 + 40] = b"\x55" * 40
    p.write_bytes(bytes(raw))
    add("img_corrupt_png", p, "clean_valid", "error", r"is truncated or corrupt \(broken PNG file",
        "PNG with garbled pixel data (chunk checksum)")
    p = root / "cut_label=0.jpg"
    p.write_bytes(good_jpg[: len(good_jpg) // 2])
    add("img_truncated_jpeg", p, "clean_valid", "error", r"is truncated: the JPEG end marker is missing",
        "JPEG cut in half")
    p = root / "damaged_label=0.jpg"
    p.write_bytes(good_jpg[:2] + b"\x13" * 118 + good_jpg[120:])
    add("img_damaged_jpeg", p, "clean_valid", "error", r"is a damaged PNG/JPEG: its header cannot be read",
        "JPEG with a garbled header")
    p = root / "notes_label=0.png"
    p.write_text("these are my notes, not a picture\n")
    add("img_text", p, "clean_valid", "error", r"is not a PNG or JPEG image", "text file named .png")
    p = root / "bomb_label=0.png"
    p.write_bytes(_png_bytes(10_000, 10_000))
    add("img_bomb", p, "clean_valid", "error", r"more than Pillow's decompression-bomb limit",
        "decompression bomb: a 65-byte PNG declaring 10,000×10,000 pixels")
    p = _save_image(root / "deep_label=0.png", (img[0, ..., 0].astype(np.uint16) * 257))
    add("img_16bit", p, "clean_valid", "error", r"is a 16-bit image \(Pillow mode I;16", "16-bit grayscale PNG")
    p = _save_image(root / "print_label=0.jpg", img[0], "JPEG", mode="CMYK")
    add("img_cmyk", p, "clean_valid", "error", r"is a CMYK JPEG", "CMYK JPEG")
    p = _save_image(root / "small_label=0.png", img[0, :32, :32])
    add("img_size", p, "clean_valid", "error", r"is 32×32 pixels \(H×W\), the model expects 55×47",
        "image of another size than the model's input (no --resize)")
    p = root / "empty_photos"
    p.mkdir()
    add("img_empty_folder", p, "clean_valid", "error", r"holds no PNG or JPEG images", "empty folder")
    yt = np.arange(n) % lab.n_classes
    xt = _lab_images(n, (55, 47, 3), seed=4).astype(np.uint8)
    mixed = root / "mixed_photos"
    for i in range(n):
        _save_image(mixed / f"m_{i}_label={yt[i]}.png", xt[i])
    (mixed / "README.txt").write_text("photos of the team\n")
    shutil.copy(good_valid, mixed / "valid.h5")
    add("img_mixed_folder", mixed, "clean_test", "warn", r"skipped 2 entries that are not PNG/JPEG images",
        "folder mixing images and other files (warning; the others are skipped)")
    linked = root / "linked_photos"
    for i in range(n):
        _save_image(linked / f"l_{i}_label={yt[i]}.png", xt[i])
    _save_image(root / "private" / "secret.png", img[1])
    (linked / "secret_label=0.png").symlink_to(root / "private" / "secret.png")
    add("img_outside_link", linked, "clean_test", "warn",
        r"did not follow 1 symbolic link pointing outside the folder",
        "folder with a symbolic link to an image outside it (warning; not followed)")
    # ------------------------------------------------------------ models
    k = keras()
    deepid = build_deepid(lab.n_classes, seed=1)
    p = root / "dataset_as_model.h5"
    shutil.copy(good_valid, p)
    add("data_as_model", p, "model", "error", r"is a dataset .* not a model", "a dataset given as the model")
    base = write_keras2_model(deepid, root / "base.h5")
    raw = base.read_bytes()
    p = root / "truncated_model.h5"
    p.write_bytes(raw[: len(raw) // 2])
    add("truncated_model", p, "model", "error", r"cannot be read as HDF5|Keras could not", "truncated model .h5")
    # Lambda with marshalled code that writes the marker
    cfg = keras2_model_config(deepid)
    layers = cfg["config"]["layers"]
    layers.insert(len(layers) - 1, {
        "class_name": "Lambda", "name": "lambda_1", "inbound_nodes": [[["activation_1", 0, 0, {}]]],
        "config": {"name": "lambda_1", "trainable": True, "dtype": "float32",
                   "function": [_marshal_lambda(marker), None, None], "function_type": "lambda",
                   "module": "__main__", "output_shape": None, "output_shape_type": "raw",
                   "output_shape_module": None, "arguments": {}}})
    layers[-1]["inbound_nodes"] = [[["lambda_1", 0, 0, {}]]]
    p = write_keras2_model(deepid, root / "lambda_bd_net.h5", config=cfg)
    add("lambda_h5", p, "model", "error", r"unsafe model: layer 'lambda_1' is a Lambda layer",
        "model .h5 whose config holds a Lambda with marshalled code (would create the marker)", gui=True,
        runs_code=True)
    # .keras archive: a Keras 3 __lambda__ and a layer class from a module planted next to it
    kpath = root / "clean.keras"
    deepid.save(kpath)
    (root / "prunelab_payload.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Evil:\n    pass\n")

    def patch_keras(src: Path, dst: Path, edit) -> Path:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item)
                if item.filename == "config.json":
                    c = json.loads(data)
                    edit(c)
                    data = json.dumps(c).encode()
                zout.writestr(item, data)
        return dst

    def plant_module(c):
        c["config"]["layers"][5]["module"] = "prunelab_payload"
        c["config"]["layers"][5]["class_name"] = "Evil"
        c["config"]["layers"][5]["registered_name"] = "Evil"

    add("keras_module", patch_keras(kpath, root / "module_ref.keras", plant_module), "model", "error",
        r"unsafe model: .*module 'prunelab_payload' outside Keras",
        ".keras whose config names a module outside Keras (importing it would create the marker)", runs_code=True)

    def plant_function(c):
        c["config"]["layers"][-1]["config"]["activation"] = {
            "module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}

    add("keras_function", patch_keras(kpath, root / "function_ref.keras", plant_function), "model", "error",
        r"unsafe model: .*module 'builtins' outside Keras", ".keras whose activation is an arbitrary function (exec)",
        runs_code=True)

    def plant_lambda(c):
        ls = c["config"]["layers"]
        ls[-1]["config"]["activation"] = {"class_name": "__lambda__",
                                          "config": {"code": _marshal_lambda(marker), "defaults": None,
                                                     "closure": None}}

    add("keras_lambda", patch_keras(kpath, root / "lambda3.keras", plant_lambda), "model", "error",
        r"unsafe model: .*serialised Python lambda", ".keras with a Keras 3 serialised lambda (would create the marker)",
        runs_code=True)
    cfg = keras2_model_config(deepid)
    cfg["config"]["layers"][5]["class_name"] = "BackdoorConv2D"
    add("custom_class", write_keras2_model(deepid, root / "custom_class.h5", config=cfg), "model", "error",
        r"unknown or custom class 'BackdoorConv2D'", "model config with an unknown custom class")
    cfg = keras2_model_config(deepid)
    cfg["config"]["layers"][-1]["config"]["units"] = 100_000_000
    add("huge_output", write_keras2_model(deepid, root / "huge_output.h5", config=cfg), "model", "error",
        r"declares units=100,000,000", "Dense output declaring 100 million classes (memory)")
    cfg = keras2_model_config(deepid)
    cfg["config"]["layers"][-1]["config"]["units"] = 900_000
    add("huge_vs_stored", write_keras2_model(deepid, root / "inflated_output.h5", config=cfg), "model", "error",
        r"declares 900,000 outputs but its stored weights have shape \(160, %d\)" % lab.n_classes,
        "output declaring 900,000 classes while storing 1283 (memory)")
    x_in = k.Input((55, 47, 3))
    h = k.layers.Flatten()(k.layers.MaxPooling2D(4)(x_in))
    dense_only = k.Model(x_in, k.layers.Dense(lab.n_classes, activation="softmax")(h))
    p = root / "no_conv.keras"
    dense_only.save(p)
    add("no_conv", p, "model", "error", r"has no layer to prune: no Conv2D layer and no hidden Dense layer", "model with no Conv2D layer")
    add("bad_layer", lab.model, "layer", "error", r"no layer named 'conv_9' \(Conv2D layers: conv_1, conv_2, conv_3, conv_4; Dense layers: fc_1, fc_2\)",
        "layer name that does not exist (--layer conv_9)", extra_args=["--layer", "conv_9"])
    add("bad_layer_kind", lab.model, "layer", "error", r"layer 'pool_3' is a MaxPooling2D, not a Conv2D",
        "a layer that is not a Conv2D (--layer pool_3)", extra_args=["--layer", "pool_3"])
    p = write_keras2_weights(build_deepid(7, seed=2), root / "weights_7_classes.h5")
    add("wrong_weights", p, "weights", "error", r"layer 'output' has weights of shape .* \(weights of another architecture\?\)",
        "weights file for another architecture", gui=True)
    big = build_deepid(1283, seed=3)
    p = write_keras2_model(big, root / "bd_net_1283.h5")
    add("label_mismatch", p, "model", "warn", r"labels cover only classes 0–\d+ of the model's 1283",
        "valid 1283-class model with data labelled for a few classes (warning; goes on)")
    return cases


def table(cases: list[Case]) -> str:
    rows = ["| case | file | given as | PruneLab says |", "|---|---|---|---|"]
    for c in cases:
        verdict = "warning, goes on" if c.expect == "warn" else "error, exit 2"
        rows.append(f"| {c.what} | `{c.file.name}` | {c.slot} | {verdict}: `{c.message}` |")
    return "\n".join(rows)
