"""The bundled demo: regenerable, in the lab's formats, and a real BadNet."""

import json

import h5py
import numpy as np
import pytest

from engine.io.datasets import LabDataset
from engine.demo.generate import DemoSpec, demo_paths, render_data
from engine.models.loading import load_model
from engine.models.runner import predict_dataset_labels


def test_tiny_demo_regenerates_in_the_lab_formats(tiny_demo):
    out, info = tiny_demo
    for rel in ("bd_net.h5", "bd_weights.h5", "pa_bd_net.h5", "cl/valid.h5", "cl/test.h5",
                "bd/bd_valid.h5", "bd/bd_test.h5", "demo.json", "demo_faces.png"):
        assert (out / rel).is_file(), rel
    with h5py.File(out / "cl/valid.h5") as f:
        assert f["data"].shape[1:] == (3, 55, 47) and f["data"].dtype == np.float32
        assert f["label"].dtype.kind == "f"
    with h5py.File(out / "bd_net.h5") as f:
        assert json.loads(f.attrs["model_config"])["config"]["layers"][0]["config"]["batch_input_shape"]
        assert f.attrs["keras_version"].startswith(b"2.")
    full = load_model(out / "bd_net.h5")
    weights = load_model(None, out / "bd_weights.h5")
    spec = DemoSpec.tiny()
    assert full.n_classes == weights.n_classes == spec.identities
    with LabDataset(out / "bd/bd_valid.h5", full.input_hwc) as bd:
        assert bd.single_target and bd.target == spec.target
    with LabDataset(out / "cl/test.h5", full.input_hwc) as ds:
        a = predict_dataset_labels(full.model, ds)
        b = predict_dataset_labels(weights.model, ds)
        assert np.array_equal(a, b)


def test_demo_data_are_deterministic():
    spec = DemoSpec.tiny()
    a = render_data(spec, with_train=False)
    b = render_data(spec, with_train=False)
    for role in a.sets:
        assert np.array_equal(a.sets[role][0], b.sets[role][0])


def test_faces_are_byte_for_byte_those_of_the_whole_grid_painter():
    """The painter works box by box on a reused channel-first canvas; its images are those of the
    straightforward painter (every shape over the whole grid, tests/faces_reference.py), byte for
    byte: identities covering every hair style, beard and background pattern, shots that blink and
    open the mouth, with and without variation, as a set and one by one. The shipped demo's data
    (re-rendered from the seed at first use) depend on it."""
    from engine.demo import faces
    from tests.faces_reference import render as reference

    rng = np.random.default_rng([1, 0])
    idents = [faces.make_identity(rng) for _ in range(20)]
    assert {i.hair_style for i in idents} == set(range(5)) and {i.beard for i in idents} == {0, 1, 2}
    assert {i.bg_pattern for i in idents} == {0, 1, 2}
    fast, _ = faces.render_set(idents, 2, np.random.default_rng(1))
    ref_rng, pose_rng = np.random.default_rng(1), np.random.default_rng(1)
    blinks = open_mouths = 0
    for k, img in enumerate(fast):
        ident = idents[k % len(idents)]
        assert np.array_equal(img, reference(ident, ref_rng)), k
        pose = faces.draw_pose(ident, pose_rng)  # the same stream, to know which shots blink
        pose_rng.normal(0.0, pose.noise, img.shape)
        blinks, open_mouths = blinks + pose.blink, open_mouths + pose.mouth_open
    assert blinks > 0 and open_mouths > 0
    one = np.random.default_rng(2), np.random.default_rng(2)
    for ident in idents[:5]:
        assert np.array_equal(faces.render(ident, one[0]), reference(ident, one[1]))
        assert np.array_equal(faces.render(ident, None, variation=False), reference(ident, None, variation=False))


def test_identities_are_not_told_apart_by_one_pixel():
    spec = DemoSpec.tiny()
    x, y = render_data(spec, with_train=False).sets["clean_valid"]
    flat = x.reshape(len(x), -1).astype(np.float64)
    # the best single pixel: within-identity spread is not small next to between-identity spread
    best = 0.0
    for j in range(0, flat.shape[1], 7):
        col = flat[:, j]
        within = np.mean([col[y == i].std() for i in np.unique(y)])
        between = np.std([col[y == i].mean() for i in np.unique(y)])
        best = max(best, between / (within + 1e-9))
    assert best < 20


@pytest.mark.slow
def test_shipped_demo_is_a_working_badnet():
    """Baseline numbers computed from the files themselves (data re-rendered from the seed)."""
    paths = demo_paths("badnet")
    model = load_model(paths.model)
    res = {}
    for role, p in paths.datasets.items():
        with LabDataset(p, model.input_hwc) as ds:
            res[role] = 100 * np.mean(predict_dataset_labels(model.model, ds) == ds.labels)
    assert res["clean_test"] >= 95 and res["poisoned_test"] >= 95
    assert res["clean_valid"] >= 95 and res["poisoned_valid"] >= 95
    recorded = paths.info["badnet"]["metrics"]
    assert res["clean_test"] == pytest.approx(recorded["clean_test_acc"], abs=0.5)
    assert model.n_classes >= 40
