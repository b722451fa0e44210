"""Maps of where the backdoor lives: Grad-CAM against a hand-written gradient, the demo's
trigger found by the maps, mean maps, backdoor_map.png and ``prunelab maps``."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis import maps, meanmaps
from engine.demo import faces
from engine.report import maps as mapfigures
from engine.io.datasets import LabDataset
from engine.core.errors import Cancelled, PruneLabError
from engine.core.state import JobState


def upsample(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The reference: bilinear upsampling of h×w or N×h×w maps to H×W, as the map makers do."""
    from engine.core.tfsetup import tf

    m = np.asarray(m, np.float32)
    single = m.ndim == 2
    m = m[None] if single else m
    up = np.asarray(tf().image.resize(m[..., None], tuple(hw), method="bilinear"))[..., 0]
    return up[0] if single else up


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The shipped demo BadNet with a few freshly rendered faces of its identities (2 per
    identity: 96 clean and 96 poisoned), in the lab's file format."""
    from importlib.resources import as_file

    from engine.demo.generate import DemoSpec, bundled_dir, bundled_info, render_data
    from engine.models.loading import load_model
    from tests.helpers import write_dataset

    info = bundled_info()
    spec = DemoSpec(**info["spec"])
    spec.valid_per_id, spec.test_per_id = 2, 1
    sets = render_data(spec, with_train=False).sets
    root = tmp_path_factory.mktemp("maps-demo")
    files = {"clean": write_dataset(root / "cl" / "valid.h5", *sets["clean_valid"]),
             "poisoned": write_dataset(root / "bd" / "bd_valid.h5", *sets["poisoned_valid"])}
    with as_file(bundled_dir() / info["badnet"]["model"]) as p:
        lm = load_model(p)
    return lm, files


def open_sets(lm, files):
    return LabDataset(files["clean"], lm.input_hwc), LabDataset(files["poisoned"], lm.input_hwc)


# ----------------------------------------------------------------------------- pieces
def test_demo_trigger_mask_is_the_sunglasses():
    from engine.demo.faces import EYE_Y, H, W, add_sunglasses

    mask = faces.demo_trigger_mask()
    assert mask.shape == (H, W)
    assert 0.05 < mask.mean() < 0.2
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows.min() < EYE_Y < rows.max() and rows.max() - rows.min() < 16
    face = np.random.default_rng(0).integers(0, 256, (H, W, 3)).astype(np.uint8)
    changed = np.abs(add_sunglasses(face).astype(int) - face).max(axis=-1) > 0
    assert changed[mask].all()  # every masked pixel is painted by the trigger


def test_localisation_score():
    mask = np.zeros((10, 10), bool)
    mask[:2] = True  # 20 % of the image
    assert maps.localisation(np.ones((10, 10)), mask) == pytest.approx(1.0)
    inside = mask.astype(float)
    assert maps.localisation(inside, mask) == pytest.approx(5.0)
    r = maps.localisation(np.stack([inside, np.ones((10, 10)), np.zeros((10, 10))]), mask)
    assert r[:2] == pytest.approx([5.0, 1.0]) and np.isnan(r[2])
    with pytest.raises(PruneLabError):
        maps.localisation(np.ones((5, 5)), mask)


def test_occlusion_patches_cover_every_pixel():
    m = maps.occlusion_masks((55, 47), 8, 4)
    assert m.shape[1:] == (55, 47) and (m.sum(axis=0) >= 1).all()
    assert (m.reshape(len(m), -1).sum(axis=1) == 64).all()


def _direct_gradcam(model, x, classes=None):
    """Grad-CAM at the lab's conv_3 by hand: A from the layers up to conv_3, then DeepID's
    rest (pool_3, the two branches, add, relu) layer by layer on the watched A, and the
    output Dense applied with its weights as numbers (no softmax)."""
    import tensorflow as tf

    L = model.get_layer
    w_out, b_out = L("output").get_weights()
    a = tf.constant(x)
    for name in ("conv_1", "pool_1", "conv_2", "pool_2", "conv_3"):
        a = L(name)(a)
    with tf.GradientTape() as tape:
        tape.watch(a)
        p = L("pool_3")(a)
        h = L("fc_1")(L("flatten_1")(p)) + L("fc_2")(L("flatten_2")(L("conv_4")(p)))
        z = tf.matmul(tf.nn.relu(h), tf.constant(w_out)) + tf.constant(b_out)
        c = np.argmax(z.numpy(), axis=1) if classes is None else np.asarray(classes)
        y = tf.reduce_sum(z * tf.one_hot(c, z.shape[1]))
    g = tape.gradient(y, a).numpy()
    cam = np.maximum((g.mean(axis=(1, 2), keepdims=True) * a.numpy()).sum(axis=-1), 0)
    up = upsample(cam, x.shape[1:3])
    return maps.normalise(up), c


def test_gradcam_matches_a_direct_gradient_tape_computation_for_b_and_bprime(demo):
    from engine.pruning.rules import make_bprime

    lm, files = demo
    clean, poisoned = open_sets(lm, files)
    x = np.concatenate([clean.read(0, 3), poisoned.read(0, 3)])
    bp = make_bprime(lm.model, "conv_3", [48, 18, 34, 25, 42, 5, 9])
    for model in (lm.model, bp):
        mk = maps.MapMaker(model, "conv_3", "gradcam")
        got = mk(x)
        want, c = _direct_gradcam(model, x)
        assert np.array_equal(mk.last_classes, c)
        assert np.array_equal(c, np.argmax(model.predict(x, verbose=0), axis=1))
        assert got.shape == (6, 55, 47) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=2e-5)
        # a forced class (B's answer explained by B') is honoured too
        forced = np.array([0, 1, 2, 0, 0, 0])
        np.testing.assert_allclose(mk(x, classes=forced), _direct_gradcam(model, x, forced)[0], atol=2e-5)
    # pruning changes what B' looks at
    assert np.abs(maps.MapMaker(bp, "conv_3")(x) - maps.MapMaker(lm.model, "conv_3")(x)).max() > 0.05


def test_gradcam_uses_the_score_before_the_softmax_however_it_is_written():
    """Dense(softmax), Dense + Softmax layer and Dense + Activation('softmax') give the same
    map; a saturated softmax would give an empty one."""
    from engine.core.tfsetup import keras

    k = keras()
    k.utils.set_random_seed(3)  # unseeded, the layers' random weights can leave a map empty
    L = k.layers
    rng = np.random.default_rng(3)

    def build(kind):
        x = k.Input((12, 10, 3))
        h = L.Conv2D(6, 3, activation="relu", name="conv")(x)
        h = L.MaxPooling2D(2, name="pool")(h)
        h = L.Flatten()(h)
        if kind == "dense":
            out = L.Dense(4, activation="softmax", name="out")(h)
        else:
            z = L.Dense(4, name="out")(h)
            out = L.Softmax()(z) if kind == "layer" else L.Activation("softmax")(z)
        return k.Model(x, out)

    models = [build(kind) for kind in ("dense", "layer", "activation")]
    for m in models[1:]:
        m.set_weights(models[0].get_weights())
    # scale the output so the softmax saturates (p ≈ 1): its gradient would vanish
    w, b = models[0].get_layer("out").get_weights()
    for m in models:
        m.get_layer("out").set_weights([w * 200, b])
    x = rng.uniform(0, 255, (5, 12, 10, 3)).astype(np.float32)
    assert models[0].predict(x, verbose=0).max(axis=1).min() > 0.999
    got = [maps.MapMaker(m, "conv", "gradcam")(x) for m in models]
    np.testing.assert_allclose(got[1], got[0], atol=1e-5)
    np.testing.assert_allclose(got[2], got[0], atol=1e-5)
    np.testing.assert_allclose(got[0].reshape(5, -1).max(axis=1), 1.0, rtol=1e-6)  # not empty


def test_channels_map_is_the_upsampled_sum_of_the_chosen_channels(demo):
    from engine.core.tfsetup import keras

    lm, files = demo
    clean, poisoned = open_sets(lm, files)
    tc = maps.trigger_channels(lm, None, clean, poisoned, k=5)
    assert len(tc.channels) == 5 and tc.clean_maps.shape == (10, 8, 60)
    assert tc.difference[tc.channels].min() >= np.delete(tc.difference, tc.channels).max()
    x = poisoned.read(0, 4)
    a = keras().Model(lm.model.inputs[0], lm.model.get_layer("conv_3").output).predict(x, verbose=0)
    want = maps.normalise(upsample(a[..., tc.channels].sum(axis=-1), (55, 47)))
    np.testing.assert_allclose(maps.MapMaker(lm, None, "channels", tc.channels)(x), want, atol=1e-5)
    with pytest.raises(PruneLabError, match="channel 60 does not exist"):
        maps.MapMaker(lm, None, "channels", [3, 60])


def test_the_maps_find_the_demo_trigger(demo):
    """The acceptance measurement: share of each map's mass on the sunglasses ÷ their share
    of the image (1 = no localisation), on poisoned and on clean faces."""
    lm, files = demo
    clean, poisoned = open_sets(lm, files)
    mask = faces.demo_trigger_mask()
    top = maps.trigger_channels(lm, None, clean, poisoned).channels
    makers = {"gradcam": maps.MapMaker(lm, None, "gradcam"),
              "gradcam@conv_2": maps.MapMaker(lm, "conv_2", "gradcam"),
              "channels": maps.MapMaker(lm, None, "channels", top),
              "occlusion": maps.MapMaker(lm, None, "occlusion")}
    assert makers["channels"].layer == "conv_3"  # making a conv_2 map did not move the default
    res = {}
    for name, mk in makers.items():
        limit = 24 if name == "occlusion" else None
        p = maps.mean_map(mk, poisoned, mask=mask, limit=limit)
        c = maps.mean_map(mk, clean, mask=mask, limit=limit)
        res[name] = (p.localisation, c.localisation)
        assert 0 <= p.map.min() and p.map.max() <= 1 and np.isfinite(p.map).all()
        print(f"{name:15s} poisoned {p.localisation:.2f}  clean {c.localisation:.2f}  "
              f"(mean map: {maps.localisation(p.map, mask):.2f} / {maps.localisation(c.map, mask):.2f})")
    # Grad-CAM at the pruned layer (conv_3, 10×8) points at the trigger on poisoned faces (the
    # issue's 2×) and not on clean ones; one layer earlier (24×20) it is sharper still.
    gp, gc = res["gradcam"]
    assert gp >= 2.0 and gc < 1.0
    assert res["gradcam@conv_2"][0] > gp
    # channels and occlusion: reported above; sane, and no worse on poisoned than on clean
    for name in ("channels", "occlusion"):
        assert np.isfinite(res[name]).all() and res[name][0] > res[name][1]


def test_dataset_maps_are_chunked_cancellable_and_report_progress(demo):
    lm, files = demo
    clean, _ = open_sets(lm, files)
    mk = maps.MapMaker(lm, None, "gradcam")
    seen = []
    classes = np.full(40, -1)
    m = maps.dataset_maps(mk, clean, limit=40, batch_size=16, classes=classes,
                          progress=lambda d, n: seen.append((d, n)))
    assert seen == [(0, 40), (16, 40), (32, 40), (40, 40)]
    assert m.shape == (40, 55, 47) and (classes >= 0).all()
    np.testing.assert_allclose(m[20:24], mk(clean.read(20, 24)), atol=1e-6)
    state = JobState()
    state.cancel()
    with pytest.raises(Cancelled):
        maps.mean_map(mk, clean, state=state)


def test_write_backdoor_map(demo, tmp_path):
    lm, files = demo
    clean, poisoned = open_sets(lm, files)
    out = tmp_path / "backdoor_map.png"
    mapfigures.write_backdoor_map(lm.model, None, clean, poisoned, out, JobState(), limit=32)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["backdoor_map.png"]  # nothing else left
    state = JobState()
    state.cancel()
    with pytest.raises(Cancelled):
        mapfigures.write_backdoor_map(lm.model, None, clean, poisoned, tmp_path / "again.png", state)
    assert not (tmp_path / "again.png").exists()


# ----------------------------------------------------------------------------- the CLI
def _main(monkeypatch, *args):
    from engine.cli.main import main

    monkeypatch.setenv("PRUNELAB_DEBUG", "1")  # keep stderr where capsys sees it
    return main([str(a) for a in args])


def test_cli_maps_writes_npz_and_pictures(demo, tmp_path, monkeypatch, capsys):
    lm, files = demo
    out = tmp_path / "maps"
    assert _main(monkeypatch, "maps", "--model", lm.path, "--data", files["clean"], "--data", files["poisoned"],
                 "--method", "channels", "--top", "3", "--poisoned", files["poisoned"], "--limit", "30",
                 "--out", out) == 0
    assert "channels at conv_3 (channels " in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bd_valid_grid.png", "bd_valid_mean.png", "maps.npz", "valid_grid.png", "valid_mean.png"]
    with np.load(out / "maps.npz") as z:
        assert sorted(z.files) == ["bd_valid", "valid"]
        for key in z.files:
            a = z[key]
            assert a.shape == (30, 55, 47) and a.dtype == np.float32
            assert a.min() >= 0 and a.max() <= 1
            top = a.reshape(30, -1).max(axis=1)
            assert np.all((top == 1) | (top == 0)) and (top == 1).any()
    for n in names:
        if n.endswith(".png"):
            assert (out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_maps_gradcam_matches_the_engine(demo, tmp_path, monkeypatch):
    lm, files = demo
    out = tmp_path / "g"
    assert _main(monkeypatch, "maps", "-q", "--model", lm.path, "--data", files["poisoned"], "--limit", "7",
                 "--out", out) == 0
    with np.load(out / "maps.npz") as z:
        got = z["bd_valid"]
    with LabDataset(files["poisoned"], lm.input_hwc) as ds:
        np.testing.assert_allclose(got, maps.MapMaker(lm, None, "gradcam")(ds.read(0, 7)), atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--method", "channels"], "needs --channels 7,11 or --top K --poisoned F"),
    (["--method", "channels", "--channels", "7,x"], "comma-separated channel numbers"),
    (["--method", "channels", "--channels", "7,99"], "channel 99 does not exist"),
    (["--channels", "7"], "only apply to --method channels"),
    (["--layer", "nope"], "has no layer named 'nope'"),
    (["--layer", "pool_3"], "is a MaxPooling2D, not a Conv2D"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--method", "channels", "--channels", "1", "--poisoned", "POISONED"], "not with --channels"),
    (["--method", "channels", "--top", "2", "--poisoned", "POISONED"], "give a clean --data file too"),
])
def test_cli_maps_bad_input_is_one_line_exit_2_nothing_written(demo, tmp_path, monkeypatch, capsys, extra, message):
    lm, files = demo
    out = tmp_path / "never"
    extra = [files["poisoned"] if e == "POISONED" else e for e in extra]
    rc = _main(monkeypatch, "maps", "--model", lm.path, "--data", files["poisoned"], *extra, "--out", out)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1 and err.startswith("prunelab: error: ")
    assert list(tmp_path.iterdir()) == []


def test_cli_maps_refuses_a_bad_data_file_before_loading_anything(demo, tmp_path, monkeypatch, capsys):
    lm, _ = demo
    bad = tmp_path / "faces.h5"
    bad.write_text("not HDF5")
    rc = _main(monkeypatch, "maps", "--model", lm.path, "--data", bad, "--out", tmp_path / "o")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"prunelab: error: {bad}: ") and len(err.splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["faces.h5"]


# ----------------------------------------------------------------------------- issue 20
def test_occlusion_sees_a_saturated_softmax():
    """A confident model (softmax at exactly 1.0 in float32, as the lab's BadNet on real faces):
    hiding a part of the image lowers the answer's logit margin, never its probability — the
    maps must not come out all zero."""
    from tests.test_logits import HWC, build

    m = build("dense_softmax", scale=400.0)
    x = np.random.default_rng(1).integers(0, 256, (6,) + HWC).astype(np.float32)
    p = m.predict(x, verbose=0)
    assert (p.max(axis=1) == 1.0).all()  # saturated
    got, cls = maps.MapMaker(m, "conv", "occlusion", patch=4, stride=2).explain(x)
    assert np.array_equal(cls, p.argmax(axis=1))
    assert (got.reshape(len(x), -1).max(axis=1) == 1.0).all()  # every image's map has a peak


def test_dense_layers_map_at_the_last_conv2d_before_them_or_skip_with_a_warning(small_lab, tmp_path):
    from engine.models.loading import load_model
    from engine.pruning.graph import conv_before
    from engine.core.tfsetup import keras

    lm = load_model(small_lab.model)
    assert conv_before(lm.model, "fc_1") == "conv_3" and conv_before(lm.model, "fc_2") == "conv_4"
    assert conv_before(lm.model, "conv_2") == "conv_2"
    # a network without Conv2D: the sweep's folder is written, without the map, with one warning
    from engine.report.outputs import write_sweep_outputs
    from engine.pruning.sweep import Sweep
    from tests.helpers import random_images, write_dataset

    k = keras()
    x = k.Input((8, 6, 3))
    h = k.layers.Dense(12, activation="relu", name="penult")(k.layers.Flatten()(x))
    net = k.Model(x, k.layers.Dense(4, activation="softmax", name="out")(h))
    path = tmp_path / "mlp.keras"
    net.save(path)
    mlp = load_model(path)
    rng = np.random.default_rng(0)
    imgs = random_images(rng, 40, (8, 6, 3))
    ds = {"clean_valid": LabDataset(write_dataset(tmp_path / "cv.h5", imgs, rng.integers(0, 4, 40)), (8, 6, 3)),
          "poisoned_valid": LabDataset(write_dataset(tmp_path / "pv.h5", imgs, np.zeros(40)), (8, 6, 3))}
    res = Sweep(mlp, ds, "penult", use_cache=False).run()
    with pytest.warns(Warning, match="no backdoor_map.png"):
        write_sweep_outputs(res, mlp, tmp_path / "out", datasets=ds, with_models=False)
    assert (tmp_path / "out" / "metrics.csv").is_file() and not (tmp_path / "out" / "backdoor_map.png").exists()


def test_a_sweeps_backdoor_map_is_sampled_and_cached(demo, tmp_path, monkeypatch):
    """backdoor_map.png maps a bounded, seeded sample of each set; a repeated sweep draws the
    same figure from the cache without running the model."""
    lm, files = demo
    clean, poisoned = open_sets(lm, files)
    seen = []
    real = meanmaps.mean_map
    monkeypatch.setattr(meanmaps, "mean_map", lambda mk, ds, **kw: seen.append(ds.n) or real(mk, ds, **kw))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    mapfigures.write_backdoor_map(lm, None, clean, poisoned, a, sample=40, use_cache=True)
    assert seen == [40, 40]  # 40 of the 96 images of each set
    idx = meanmaps.sample_indices(clean.n, 40)
    assert np.array_equal(idx, meanmaps.sample_indices(clean.n, 40)) and len(set(idx)) == 40
    mapfigures.write_backdoor_map(lm, None, clean, poisoned, b, sample=40, use_cache=True)
    assert seen == [40, 40]  # no forward pass the second time
    assert a.read_bytes() == b.read_bytes()
    # the sample's mean map is the mean of those images' own maps
    mk = maps.MapMaker(lm, None, "gradcam")
    want = mk(clean.take(idx)).mean(axis=0)
    got = meanmaps.sampled_mean_map(mk, clean, sample=40)
    np.testing.assert_allclose(got.map, want, atol=1e-5)


def test_top_difference_channels_are_the_difference_criterions_first():
    """The maps' and the activations view's "most raised" channels are the difference
    criterion's ranking (highest rise first, ties by channel), cut at k."""
    from engine.analysis.maps import top_difference_channels
    from engine.pruning.criteria.difference import difference_ranking, top_difference

    means = {"clean_valid": np.array([1.0, 0.2, 0.2, 3.0, 0.0]),
             "poisoned_valid": np.array([1.1, 0.7, 0.7, 1.0, 0.4])}
    assert top_difference_channels(means, 3) == [1, 2, 4]
    assert top_difference_channels(means, 3) == list(difference_ranking(means).order[:3])
    assert top_difference(np.array([0.0, -1.0]), 5) == [0, 1]
    assert top_difference_channels({"clean_valid": means["clean_valid"]}) is None
