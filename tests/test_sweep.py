"""Ranking, thresholds and the exactness of the fast sweep against the naive loop."""

import numpy as np
import pytest

from engine.io.datasets import LabDataset
from engine.core.errors import Cancelled, PruneLabError
from engine.models.loading import load_model
from engine.core.state import JobState
from engine.core.state import Progress
from engine.pruning.records import StepRecord
from engine.pruning.sweep import Sweep
from tests.helpers import naive_sweep_predictions


def open_all(lab, model):
    return {r: LabDataset(p, model.input_hwc) for r, p in lab.files.items()}


def test_ranking_is_mean_abs_activation_at_pool3_lowest_first(small_lab):
    from engine.core.tfsetup import keras

    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm)
    sweep = Sweep(lm, ds, use_cache=False, max_steps=1)
    res = sweep.run()
    assert (res.layer, res.measured_at) == ("conv_3", "pool_3")
    x = ds["clean_valid"].read(0, ds["clean_valid"].n)
    pool3 = keras().Model(lm.model.inputs, lm.model.get_layer("pool_3").output).predict(x, verbose=0)
    mean = np.mean(np.abs(pool3), axis=(0, 1, 2))
    assert np.allclose(res.mean_activation["clean_valid"], mean, rtol=1e-5, atol=1e-6)
    assert list(np.argsort(mean, kind="stable")) == res.order


def test_fast_sweep_equals_the_naive_loop_on_every_step(small_lab):
    """Every step's predictions (hence metrics) of the fast path are those of zeroing the
    weights and running the whole Keras model."""
    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm)
    fast = Sweep(lm, ds, use_cache=False).run()
    assert fast.method == "fast"
    # the skip logic matters here: some steps touch no image, others touch all of them
    recomputed = [r.recomputed for r in fast.records[1:]]
    total = sum(d.n for d in ds.values())
    assert min(recomputed) == 0 and max(recomputed) == total
    for role, d in ds.items():
        x = d.read(0, d.n)
        ref = naive_sweep_predictions(lm.model, "conv_3", fast.order, x, range(0, 61))
        for s, pred in ref.items():
            assert np.array_equal(fast.predictions[role][s], pred), (role, s)
            key = {"clean_valid": "clean_valid_acc", "poisoned_valid": "asr_valid",
                   "clean_test": "clean_test_acc", "poisoned_test": "asr_test"}[role]
            assert fast.records[s].metric(key) == 100.0 * np.count_nonzero(pred == d.labels) / d.n


def test_engine_naive_method_matches_fast(small_lab):
    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm)
    fast = Sweep(lm, ds, use_cache=False, max_steps=12).run()
    naive = Sweep(lm, ds, method="naive", max_steps=12).run()
    for role in ds:
        assert np.array_equal(fast.predictions[role], naive.predictions[role])


def test_activation_cache_gives_identical_results(small_lab):
    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm)
    cold = Sweep(lm, ds).run()
    warm_sweep = Sweep(lm, ds)
    events = list(warm_sweep.events())
    assert any(isinstance(e, Progress) and "cache" in e.text for e in events)
    for role in ds:
        assert np.array_equal(cold.predictions[role], warm_sweep.result.predictions[role])


def test_checkpoints_are_the_first_steps_reaching_each_drop(small_lab):
    lm = load_model(small_lab.model)
    res = Sweep(lm, open_all(small_lab, lm), thresholds=(2, 4, 10), use_cache=False).run()
    base = res.records[0].clean_valid_acc
    for cp in res.checkpoints:
        drops = [(base - r.clean_valid_acc) / base * 100 for r in res.records]
        first = next((i for i, d in enumerate(drops) if d >= cp.threshold - 1e-9), None)
        assert cp.step == first
        if cp.step is not None:
            assert cp.threshold in res.records[cp.step].reached


def test_goodnet_labels_follow_the_rule(small_lab):
    lm = load_model(small_lab.model)
    res = Sweep(lm, open_all(small_lab, lm), use_cache=False).run()
    k = 40
    b, bp = res.predictions["clean_test"][0], res.predictions["clean_test"][k]
    g = res.goodnet_labels("clean_test", k)
    assert np.array_equal(g[b == bp], b[b == bp])
    assert np.all(g[b != bp] == small_lab.n_classes)
    ev = res.evaluate_step(k)
    assert ev["poisoned_test"]["goodnet_flagged"] == pytest.approx(
        100 * np.mean(res.goodnet_labels("poisoned_test", k) == small_lab.n_classes))


def test_cancel_between_steps(small_lab):
    lm = load_model(small_lab.model)
    state = JobState()
    sweep = Sweep(lm, open_all(small_lab, lm), use_cache=False, state=state)
    seen = []
    with pytest.raises(Cancelled):
        for ev in sweep.events():
            if isinstance(ev, StepRecord):
                seen.append(ev.step)
                if ev.step == 5:
                    state.cancel()
    assert seen == [0, 1, 2, 3, 4, 5]
    assert not sweep.result.complete


def test_clean_validation_is_required(small_lab):
    lm = load_model(small_lab.model)
    ds = {"clean_test": LabDataset(small_lab.files["clean_test"])}
    with pytest.raises(PruneLabError, match="clean validation"):
        Sweep(lm, ds)


def test_unknown_layer_is_named(small_lab):
    lm = load_model(small_lab.model)
    with pytest.raises(PruneLabError, match=r"no layer named 'conv_9' \(Conv2D layers: conv_1, conv_2, conv_3, conv_4; Dense layers: fc_1, fc_2\)"):
        Sweep(lm, open_all(small_lab, lm), layer="conv_9")


def test_other_layer_without_pool_is_exact_too(small_lab):
    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm)
    res = Sweep(lm, ds, layer="conv_4", use_cache=False, max_steps=20).run()
    assert res.measured_at == "conv_4" and res.n_channels == 80
    d = ds["clean_valid"]
    ref = naive_sweep_predictions(lm.model, "conv_4", res.order, d.read(0, d.n), [0, 5, 20])
    for s, pred in ref.items():
        assert np.array_equal(res.predictions["clean_valid"][s], pred)


def test_skip_connection_over_the_cut_takes_the_fast_path(tmp_path):
    """The sum also reads c1's output (from before the cut): it is cached with the cut."""
    from engine.models.loading import LoadedModel
    from engine.core.tfsetup import keras
    from tests.helpers import random_images, write_dataset

    k = keras()
    x = k.Input((16, 16, 3))
    a = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(a)
    s = k.layers.Add()([a, b])  # bypasses c2
    out = k.layers.Dense(5, activation="softmax")(k.layers.Flatten()(s))
    m = k.Model(x, out)
    rng = np.random.default_rng(0)
    p = write_dataset(tmp_path / "valid.h5", random_images(rng, 40, (16, 16, 3)), rng.integers(0, 5, 40))
    lm = LoadedModel(m, tmp_path / "m.keras", None, "test", (16, 16, 3), 5)
    sw = Sweep(lm, {"clean_valid": LabDataset(p)}, layer="c2", use_cache=False)
    assert sw.method == "fast" and sw.fallback_reason is None
    res = sw.run()
    ref = naive_sweep_predictions(m, "c2", res.order, LabDataset(p).read(0, 40), [0, 2, 4])
    for st, pred in ref.items():
        assert np.array_equal(res.predictions["clean_valid"][st], pred)


@pytest.mark.slow
def test_fast_sweep_equals_the_naive_loop_on_the_shipped_demo():
    """The trained demo BadNet: dormant channels, big skips — still the naive loop's answers.
    Every step is compared on the small lab above; here clean validation (what the ranking and
    the checkpoints read) at every step, the other sets at the checkpoints, the first and the last.
    The every-step reference runs the model from conv_3's input on (the layers before it do not
    depend on its weights); at those marks it is checked against the whole model too."""
    from engine.demo.generate import demo_paths
    from tests.helpers import tail_sweep_predictions

    paths = demo_paths("badnet")
    lm = load_model(paths.model)
    ds = {r: LabDataset(p, lm.input_hwc) for r, p in paths.datasets.items()}
    fast = Sweep(lm, ds, use_cache=False).run()
    assert min(r.recomputed for r in fast.records[1:]) == 0  # the skip logic is exercised
    marks = sorted({0, fast.steps} | {c.step for c in fast.checkpoints if c.step is not None})
    assert len(marks) >= 4
    for role, d in ds.items():
        x = d.read(0, d.n)
        ref = naive_sweep_predictions(lm.model, fast.layer, fast.order, x, marks)
        if role == "clean_valid":
            tail = tail_sweep_predictions(lm.model, fast.layer, fast.order, x, range(0, fast.steps + 1))
            for s in marks:
                assert np.array_equal(tail[s], ref[s]), s
            ref = tail
        for s, pred in ref.items():
            assert np.array_equal(fast.predictions[role][s], pred), (role, s)


def test_the_naive_loop_never_touches_the_users_model(small_lab):
    """The window may draw maps with the model while a naive sweep runs: the sweep zeroes
    channels in a copy, so the user's weights are the same at every step, not only at the end."""
    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm)
    before = [w.copy() for w in lm.model.get_weights()]
    sweep = Sweep(lm, ds, method="naive", use_cache=False, max_steps=4)
    seen = 0
    for ev in sweep.events():
        if isinstance(ev, StepRecord) and ev.step > 0:
            seen += 1
            assert all(np.array_equal(a, b) for a, b in zip(before, lm.model.get_weights())), ev.step
    assert seen >= 4
