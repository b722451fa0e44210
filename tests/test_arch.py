"""Any architecture, any prunable layer: the fast sweep across skip connections, on Dense
layers, and with a step size, answers exactly what the naive loop (zero the weights, run the
whole Keras model) answers, on every image, at every step."""

from __future__ import annotations

import numpy as np
import pytest

from engine.io.datasets import LabDataset
from engine.models.loading import LoadedModel, load_model
from engine.pruning.sweep import Sweep
from tests.helpers import naive_sweep_predictions, random_images, write_dataset

N_CLASSES = 10


def _spread_logits(model, x, out_layer: str = "out") -> None:
    """Random nets answer one class everywhere; scale and centre the last layer's logits on
    sample images so that answers spread over the classes and pruning can change them."""
    from engine.core.tfsetup import keras

    out = model.get_layer(out_layer)
    feats = keras().Model(model.inputs, out.input).predict(x, verbose=0)
    w, _ = out.get_weights()
    logits = feats @ w
    w = (w / (logits.std(axis=0) + 1e-6)).astype(np.float32)
    out.set_weights([w, (-(feats @ w).mean(axis=0)).astype(np.float32)])


def _randomise_batchnorm(model, rng) -> None:
    """Trained-looking batch norms: the pruned channel's value after them is not 0."""
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n).astype(np.float32),  # gamma
                               rng.normal(0, 0.3, n).astype(np.float32),  # beta
                               rng.normal(0, 0.5, n).astype(np.float32),  # moving mean
                               rng.uniform(0.5, 2.0, n).astype(np.float32)])  # moving variance


def residual_badnet(seed: int = 0, batchnorm: bool = True):
    """A small residual net: stem conv, a block of two convs with a skip connection around
    them, global average pooling, 32×32 inputs."""
    from engine.core.tfsetup import keras

    k = keras()
    L = k.layers
    init = k.initializers.GlorotUniform(seed=seed)

    def conv(h, name, relu=True):
        h = L.Conv2D(12, 3, padding="same", name=name, kernel_initializer=init,
                     bias_initializer=k.initializers.RandomNormal(0, 0.05, seed=seed + 1))(h)
        if batchnorm:
            h = L.BatchNormalization(name=f"bn_{name}")(h)
        return L.ReLU(name=f"relu_{name}")(h) if relu else h

    x = k.Input((32, 32, 3))
    stem = conv(x, "stem")
    y = conv(stem, "block_a")
    y = conv(y, "block_b", relu=False)
    h = L.ReLU(name="relu_sum")(L.Add(name="skip")([stem, y]))
    h = conv(h, "last")
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(N_CLASSES, activation="softmax", name="out", kernel_initializer=init)(h)
    model = k.Model(x, out)
    _randomise_batchnorm(model, np.random.default_rng(seed))
    return model


def dense_badnet(seed: int = 0):
    """Convs, then two hidden Dense layers (one with batch norm and dropout after it)."""
    from engine.core.tfsetup import keras

    k = keras()
    L = k.layers
    init = k.initializers.GlorotUniform(seed=seed)
    x = k.Input((16, 16, 3))
    h = L.Conv2D(8, 3, activation="relu", name="conv", kernel_initializer=init)(x)
    h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    h = L.Dense(24, name="fc_a", kernel_initializer=init,
                bias_initializer=k.initializers.RandomNormal(0, 0.1, seed=seed))(h)
    h = L.BatchNormalization(name="bn_fc_a")(h)
    h = L.ReLU(name="relu_fc_a")(h)
    h = L.Dropout(0.3, name="drop_fc_a")(h)
    h = L.Dense(16, activation="relu", name="fc_b", kernel_initializer=init)(h)
    out = L.Dense(N_CLASSES, activation="softmax", name="out", kernel_initializer=init)(h)
    model = k.Model(x, out)
    _randomise_batchnorm(model, np.random.default_rng(seed))
    return model


def _lab(tmp_path, model, n: int = 160, seed: int = 0):
    """The model as a LoadedModel and a clean validation set labelled by the model itself
    (10 % flipped), plus a poisoned set; pixels 0–255 as the lab's."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    _spread_logits(model, random_images(rng, 256, shape).astype(np.float32))
    xv = random_images(rng, n, shape).astype(np.float32)
    y = np.argmax(model.predict(xv, verbose=0), axis=1)
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, N_CLASSES, int(flip.sum()))
    files = {"clean_valid": write_dataset(tmp_path / "valid.h5", xv, y),
             "poisoned_valid": write_dataset(tmp_path / "bd_valid.h5",
                                             random_images(rng, n // 2, shape).astype(np.float32),
                                             np.zeros(n // 2))}
    lm = LoadedModel(model, tmp_path / "m.keras", None, "test", shape, N_CLASSES)
    ds = {r: LabDataset(p, shape) for r, p in files.items()}
    return lm, ds


def _assert_fast_equals_naive(model, res, ds, rows=None):
    """Every record's predictions are the naive loop's at that record's channel count."""
    rows = range(len(res.records)) if rows is None else rows
    for role, d in ds.items():
        counts = [res.records[r].pruned for r in rows]
        ref = naive_sweep_predictions(model, res.layer, res.order, d.read(0, d.n), sorted(set(counts)))
        for r, c in zip(rows, counts):
            assert np.array_equal(res.predictions[role][r], ref[c]), (role, r, c)


# ---------------------------------------------------------------- (a) skip connections
@pytest.mark.parametrize("layer", ["block_a", "block_b"])
def test_conv_inside_a_residual_block_takes_the_fast_path_and_is_exact(tmp_path, layer):
    from engine.pruning.graph import make_split

    model = residual_badnet(seed=3)
    lm, ds = _lab(tmp_path, model)
    split = make_split(model, layer)
    # the skip connection's tensor (the stem's output) is cached beside the cut
    assert split.head is not None and [t._keras_history[0].name for t in split.frontier] == ["relu_stem"]
    assert np.any(split.fill != 0)  # batch norm after the pruned conv: a nonzero constant
    res = Sweep(lm, ds, layer=layer, use_cache=False).run()
    assert res.method == "fast" and res.fallback_reason is None
    assert res.steps == 12
    _assert_fast_equals_naive(model, res, ds)
    # pruning changes answers here: the test compares something
    assert not np.array_equal(res.predictions["clean_valid"][0], res.predictions["clean_valid"][-1])


def test_last_conv_is_measured_after_global_pooling_and_is_exact(tmp_path):
    """conv → batch norm → ReLU → global average pooling: the cut is the pooled vector."""
    model = residual_badnet(seed=8)
    lm, ds = _lab(tmp_path, model)
    res = Sweep(lm, ds, layer="last", use_cache=False).run()
    assert res.method == "fast" and res.measured_at == "gap"
    from engine.pruning.graph import make_split

    split = make_split(model, "last")
    assert split.fill.shape == (12,) and np.any(split.fill > 0) and split.frontier == []
    _assert_fast_equals_naive(model, res, ds)


def test_conv_feeding_the_skip_sum_directly_is_exact(tmp_path):
    """No batch norm: the pruned conv's output goes straight into the sum with the skip."""
    model = residual_badnet(seed=4, batchnorm=False)
    lm, ds = _lab(tmp_path, model)
    res = Sweep(lm, ds, layer="block_b", use_cache=False).run()
    assert res.method == "fast" and res.measured_at == "block_b"
    _assert_fast_equals_naive(model, res, ds)


def test_frontier_is_cached_and_a_warm_sweep_gives_the_same_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_CACHE_DIR", str(tmp_path / "cache"))
    model = residual_badnet(seed=5)
    lm, ds = _lab(tmp_path, model)
    model.save(tmp_path / "m.keras")
    lm = load_model(tmp_path / "m.keras")
    cold = Sweep(lm, ds, layer="block_a", max_steps=5).run()
    warm = Sweep(lm, ds, layer="block_a", max_steps=5)
    # drop the finished answers so the warm sweep runs its steps from the cached tensors
    from engine.io import cache

    for p in (cache.cache_dir() / "activations").glob("*.npy"):
        arr = np.load(p)
        if arr.dtype == np.int32 and arr.ndim == 2:
            p.unlink()
    texts = [e.text for e in warm.events() if hasattr(e, "text")]
    assert any("activations from cache" in t for t in texts)
    for role in ds:
        assert np.array_equal(cold.predictions[role], warm.result.predictions[role])


def test_fast_path_that_does_not_fit_falls_back_to_naive_and_says_why(tmp_path, monkeypatch):
    model = residual_badnet(seed=6)
    lm, ds = _lab(tmp_path, model)
    probe = Sweep(lm, ds, layer="block_a", use_cache=False, max_steps=3)
    fast_need, naive_need = probe._memory_need(fast=True), probe._memory_need(fast=False)
    assert fast_need > naive_need
    monkeypatch.setenv("PRUNELAB_MEMORY_LIMIT_MB", str((fast_need + naive_need) / 2 / 2**20))
    sweep = Sweep(lm, ds, layer="block_a", use_cache=False, max_steps=3)
    assert sweep.method == "naive"
    assert "fast path reads" in sweep.fallback_reason and "more than" in sweep.fallback_reason
    res = sweep.run()
    assert res.fallback_reason == sweep.fallback_reason
    _assert_fast_equals_naive(model, res, ds)
    from engine.core.errors import PruneLabError

    with pytest.raises(PruneLabError, match="the fast path is impossible here: .*more than"):
        Sweep(lm, ds, layer="block_a", use_cache=False, method="fast")


def test_channel_mixing_activation_falls_back_with_the_reason(tmp_path):
    from engine.core.tfsetup import keras

    k = keras()
    x = k.Input((8, 8, 3))
    h = k.layers.Conv2D(6, 3, activation="softmax", name="mix")(x)
    out = k.layers.Dense(N_CLASSES, activation="softmax", name="out")(k.layers.Flatten()(h))
    model = k.Model(x, out)
    lm, ds = _lab(tmp_path, model, n=40)
    sweep = Sweep(lm, ds, layer="mix", use_cache=False, max_steps=2)
    assert sweep.method == "naive" and "softmax" in sweep.fallback_reason
    _assert_fast_equals_naive(model, sweep.run(), ds)


# ---------------------------------------------------------------- (b) Dense layers
def test_layer_chooser_lists_conv_and_hidden_dense_layers(small_lab):
    from engine.pruning.graph import default_layer, prunable_layer_names

    lm = load_model(small_lab.model)
    assert prunable_layer_names(lm.model) == ["conv_1", "conv_2", "conv_3", "conv_4", "fc_1", "fc_2"]
    assert default_layer(lm.model) == "conv_3"
    assert prunable_layer_names(dense_badnet()) == ["conv", "fc_a", "fc_b"]


def test_output_layer_is_refused(small_lab):
    from engine.core.errors import PruneLabError

    lm = load_model(small_lab.model)
    with pytest.raises(PruneLabError, match="'output' computes the model's output"):
        Sweep(lm, {"clean_valid": LabDataset(small_lab.files["clean_valid"])}, layer="output")


@pytest.mark.parametrize("layer", ["fc_a", "fc_b"])
def test_dense_layer_sweep_is_exact_and_bprime_zeroes_the_neurons(tmp_path, layer):
    from engine.pruning.rules import make_bprime
    from engine.models.runner import Runner

    model = dense_badnet(seed=7)
    lm, ds = _lab(tmp_path, model)
    res = Sweep(lm, ds, layer=layer, use_cache=False).run()
    assert res.method == "fast" and res.n_channels == model.get_layer(layer).units
    # fc_a is measured after its batch norm, ReLU and dropout: the pruned value is a constant
    assert res.measured_at == ("drop_fc_a" if layer == "fc_a" else "fc_b")
    _assert_fast_equals_naive(model, res, ds)
    k = res.steps // 2
    bp = make_bprime(model, layer, res.pruned_channels(k))
    kernel = bp.get_layer(layer).get_weights()[0]
    assert np.all(kernel[:, res.order[:k]] == 0) and np.any(kernel[:, res.order[k:]] != 0)
    x = ds["clean_valid"].read(0, ds["clean_valid"].n)
    assert np.array_equal(np.argmax(Runner(bp)(x), axis=1), res.predictions["clean_valid"][k])


@pytest.mark.parametrize("layer", ["conv_4", "fc_1", "fc_2"])
def test_deepid_layers_beside_a_branch_take_the_fast_path(small_lab, layer):
    """conv_4 and fc_2 sit beside fc_1 (and fc_1 beside them): the other branch is cached."""
    lm = load_model(small_lab.model)
    ds = {"clean_valid": LabDataset(small_lab.files["clean_valid"], lm.input_hwc)}
    res = Sweep(lm, ds, layer=layer, use_cache=False, max_steps=24).run()
    assert res.method == "fast"
    _assert_fast_equals_naive(lm.model, res, ds, rows=[0, 1, 2, 3, 8, 16, 24])


# ---------------------------------------------------------------- (c) step size
def test_step_size_parsing():
    from engine.core.errors import PruneLabError
    from engine.pruning.schedule import parse_step_size

    assert parse_step_size(4, 60) == 4
    assert parse_step_size("10%", 60) == 6
    assert parse_step_size("10%", 61) == 7  # rounded up
    assert parse_step_size("0.1%", 60) == 1  # at least one channel
    assert parse_step_size(" 3 ", 60) == 3
    for bad in ("0", "-2", "abc", "0%", "150%", "2.5"):
        with pytest.raises(PruneLabError, match="step size"):
            parse_step_size(bad, 60)


@pytest.mark.parametrize("method", ["fast", "naive"])
def test_step_size_finds_the_checkpoints_of_step_size_one(small_lab, method):
    lm = load_model(small_lab.model)
    ds = {r: LabDataset(p, lm.input_hwc) for r, p in small_lab.files.items()
          if r in ("clean_valid", "poisoned_valid")}
    thresholds = (1, 2, 3, 4, 6, 10)
    one = Sweep(lm, ds, thresholds=thresholds, use_cache=False).run()
    for size in (4, "10%"):
        res = Sweep(lm, ds, thresholds=thresholds, use_cache=False, step_size=size, method=method).run()
        k = 4 if size == 4 else 6
        assert res.step_size == k and res.method == method
        counts = [r.pruned for r in res.records]
        assert counts == sorted(set(counts)) and counts[-1] == 60
        assert set(range(0, 61, k)) <= set(counts)
        assert len(counts) < 61 and any(c % k for c in counts)  # fewer steps; some refined
        # the same checkpoints (as channel counts) and the same answers there
        assert [cp.pruned for cp in res.checkpoints] == [cp.step for cp in one.checkpoints]
        for cp in res.checkpoints:
            if cp.step is not None:
                assert res.records[cp.step].pruned == cp.pruned
                assert res.pruned_channels(cp.step) == one.pruned_channels(cp.pruned)
                assert cp.threshold in res.records[cp.step].reached
        for row, rec in enumerate(res.records):
            assert rec.step == row and rec.fraction_pruned == rec.pruned / 60
            assert rec.channels == tuple(res.order[counts[row - 1]:rec.pruned]) if row else rec.channels == ()
            assert rec.channel == (res.order[rec.pruned - 1] if row else None)
            for role in ds:
                assert np.array_equal(res.predictions[role][row], one.predictions[role][rec.pruned])
            assert rec.clean_valid_acc == one.records[rec.pruned].clean_valid_acc
        assert res.predictions["clean_valid"].shape[0] == len(res.records)
    # and the step-size-1 sweep is the naive loop's, checked at the refined counts
    _assert_fast_equals_naive(lm.model, res, {"clean_valid": ds["clean_valid"]})


def test_step_size_answers_come_back_from_the_cache(small_lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_CACHE_DIR", str(tmp_path / "cache"))
    lm = load_model(small_lab.model)
    ds = {r: LabDataset(p, lm.input_hwc) for r, p in small_lab.files.items()}
    cold = Sweep(lm, ds, thresholds=(2, 4, 10), step_size=5).run()
    warm = Sweep(lm, ds, thresholds=(2, 4, 10), step_size=5)
    texts = [e.text for e in warm.events() if hasattr(e, "text")]
    assert sum("results from cache" in t for t in texts) == 4
    assert [r.pruned for r in warm.result.records] == [r.pruned for r in cold.records]
    assert [c.step for c in warm.result.checkpoints] == [c.step for c in cold.checkpoints]
    for role in ds:
        assert np.array_equal(cold.predictions[role], warm.result.predictions[role])
    # other thresholds refine other steps: not the same cached answers
    other = Sweep(lm, ds, thresholds=(3,), step_size=5)
    texts = [e.text for e in other.events() if hasattr(e, "text")]
    assert not any("results from cache" in t for t in texts)


def test_cli_step_size(small_lab, tmp_path):
    import json

    from engine.cli.main import main

    f = small_lab.files
    args = ["sweep", "--model", str(small_lab.model), "--clean-valid", str(f["clean_valid"]),
            "--thresholds", "2,4,10", "--no-models", "--no-cache"]
    assert main(args + ["--step-size", "10%", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    one = Sweep(load_model(small_lab.model), {"clean_valid": LabDataset(f["clean_valid"])},
                thresholds=(2, 4, 10), use_cache=False).run()
    for cp, ref in zip(summary["checkpoints"], one.checkpoints):
        assert cp["pruned_channels"] == one.pruned_channels(ref.step)
    from tests.test_cli import run_cli

    r = run_cli(*args[:1], "--step-size", "0", *args[1:], "--out", tmp_path / "never")
    assert r.returncode == 2 and r.stderr.strip().startswith("prunelab: error: step size '0'")
    assert "\n" not in r.stderr.strip() and not (tmp_path / "never").exists()
