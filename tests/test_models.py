"""The three model forms users hold, and safe loading of untrusted files."""

import base64
import json
import marshal
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from engine.models.deepid import build_deepid
from engine.core.errors import PruneLabError
from engine.models.legacy_h5 import keras2_model_config, write_keras2_model, write_keras2_weights
from engine.models.loading import load_model, sniff

X = np.random.default_rng(0).uniform(0, 255, (16, 55, 47, 3)).astype("float32")


@pytest.fixture(scope="module")
def deepid10():
    return build_deepid(10, seed=11)


@pytest.mark.parametrize("class_name,version", [("Functional", "2.7.0"), ("Model", "2.3.1")])
def test_keras2_legacy_full_model(tmp_path, deepid10, class_name, version):
    p = write_keras2_model(deepid10, tmp_path / "bd_net.h5", keras_version=version, class_name=class_name)
    with h5py.File(p) as f:  # the fixture really is Keras 2's layout
        cfg = json.loads(f.attrs["model_config"])
        assert cfg["class_name"] == class_name
        assert cfg["config"]["layers"][0]["config"]["batch_input_shape"] == [None, 55, 47, 3]
        assert cfg["config"]["layers"][1]["inbound_nodes"] == [[["input", 0, 0, {}]]]
        assert f["model_weights/conv_3"].attrs["weight_names"][0] == b"conv_3/kernel:0"
        assert f["model_weights/conv_3/conv_3/kernel:0"].shape == (3, 3, 40, 60)
    lm = load_model(p)
    assert lm.n_classes == 10 and lm.input_hwc == (55, 47, 3)
    assert f"Keras {version}" in lm.kind
    assert np.array_equal(lm.model.predict(X, verbose=0), deepid10.predict(X, verbose=0))
    assert [r.name for r in lm.layer_table()][:3] == ["input", "conv_1", "pool_1"]


def test_weights_only_file_with_builtin_deepid_and_with_a_model(tmp_path, deepid10):
    w = write_keras2_weights(deepid10, tmp_path / "bd_weights.h5")
    assert sniff(w) == "weights-h5"
    alone = load_model(None, w)
    assert alone.n_classes == 10  # read from the output kernel
    assert np.array_equal(alone.model.predict(X, verbose=0), deepid10.predict(X, verbose=0))
    # the lab's way: load_model(bd_net.h5) then load_weights(bd_weights.h5)
    other = build_deepid(10, seed=99)
    m = write_keras2_model(other, tmp_path / "bd_net.h5")
    both = load_model(m, w)
    assert np.array_equal(both.model.predict(X, verbose=0), deepid10.predict(X, verbose=0))


def test_keras3_archive(tmp_path, deepid10):
    p = tmp_path / "m.keras"
    deepid10.save(p)
    lm = load_model(p)
    assert lm.kind.startswith("Keras 3")
    assert np.array_equal(lm.model.predict(X, verbose=0), deepid10.predict(X, verbose=0))


def test_weights_of_another_architecture_are_refused(tmp_path, deepid10):
    w = write_keras2_weights(build_deepid(7, seed=1), tmp_path / "w7.h5")
    m = write_keras2_model(deepid10, tmp_path / "m10.h5")
    with pytest.raises(PruneLabError, match=r"w7\.h5: layer 'output' has weights of shape"):
        load_model(m, w)


# ----------------------------------------------------------------------------- safety
def lambda_model_file(tmp_path, marker):
    """A Keras 2 .h5 whose config holds a Lambda layer with marshalled code that would create
    ``marker`` when deserialised."""
    base = build_deepid(10, seed=3)
    cfg = keras2_model_config(base)

    src = f"lambda x: (open({str(marker)!r}, 'w').write('pwned'), x)[1]"
    code = compile(src, "<evil>", "eval").co_consts[0]
    blob = base64.b64encode(marshal.dumps(code)).decode()
    layers = cfg["config"]["layers"]
    out = next(l for l in layers if l["name"] == "output")
    layers.insert(len(layers) - 1, {
        "class_name": "Lambda", "name": "evil",
        "config": {"name": "evil", "trainable": True, "dtype": "float32", "function": [blob, None, None],
                   "function_type": "lambda", "module": "__main__", "output_shape": None,
                   "output_shape_type": "raw", "output_shape_module": None, "arguments": {}},
        "inbound_nodes": [[["activation_1", 0, 0, {}]]]})
    out["inbound_nodes"] = [[["evil", 0, 0, {}]]]
    return write_keras2_model(base, tmp_path / "evil_lambda.h5", config=cfg)


def test_lambda_model_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker.txt"
    p = lambda_model_file(tmp_path, marker)
    with pytest.raises(PruneLabError, match=r"evil_lambda\.h5: unsafe model: layer 'evil' is a Lambda"):
        load_model(p)
    assert not marker.exists()


def test_lambda_fixture_is_live_when_the_user_allows_it(tmp_path):
    """Proves the refusal above is what protects: with --allow-unsafe-model the code runs."""
    marker = tmp_path / "marker.txt"
    p = lambda_model_file(tmp_path, marker)
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from engine.models.loading import load_model; "
            "import numpy as np; m = load_model(sys.argv[1], allow_unsafe=True).model; "
            "m.predict(np.zeros((1, 55, 47, 3), 'float32'), verbose=0)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code, str(p), root], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert marker.read_text() == "pwned"


def test_keras_archive_naming_a_foreign_module_is_refused(tmp_path, deepid10):
    p = tmp_path / "m.keras"
    deepid10.save(p)
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(p) as zin, zipfile.ZipFile(evil, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                cfg = json.loads(data)
                layer = cfg["config"]["layers"][-1]
                layer["config"]["activation"] = {"module": "os", "class_name": "function",
                                                 "config": "system", "registered_name": "function"}
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    with pytest.raises(PruneLabError, match=r"evil\.keras: unsafe model: .*module 'os' outside Keras"):
        load_model(evil)


def test_unknown_custom_class_is_refused(tmp_path, deepid10):
    cfg = keras2_model_config(deepid10)
    cfg["config"]["layers"][5]["class_name"] = "MyBackdoorConv"
    p = write_keras2_model(deepid10, tmp_path / "custom.h5", config=cfg)
    with pytest.raises(PruneLabError, match=r"unknown or custom class 'MyBackdoorConv'"):
        load_model(p)
