"""The fast path's building blocks answer exactly what the plain ones do: the in-graph step
(gather, mask, head, argmax) and the read-ahead of HDF5 batches."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest


def _dense_head(kernel: np.ndarray, bias: np.ndarray):
    from engine.core.tfsetup import keras

    k = keras()
    x = k.Input((2, 2, 3))
    out = k.layers.Dense(len(bias))(k.layers.Flatten()(x))
    model = k.Model(x, out)
    model.layers[-1].set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def test_masked_head_matches_masking_a_copy_and_numpy_argmax():
    from engine.pruning.runtime import MaskedHeadRunner
    from engine.models.runner import Runner

    rng = np.random.default_rng(1)
    head = _dense_head(rng.normal(size=(12, 40)), rng.normal(size=40))
    acts = np.maximum(rng.normal(size=(300, 2, 2, 3)), 0).astype(np.float32)
    fill = np.full((2, 2, 3), 0.25, np.float32)
    run = MaskedHeadRunner(head, fill)
    acts_t = run.tensor(acts)
    keep = np.array([True, False, True])
    idx = np.array([5, 0, 299, 17, 17, 120])
    want = np.argmax(Runner(head)(np.where(keep, acts[idx], fill)), axis=1)
    assert np.array_equal(run(acts_t, idx, keep), want)
    assert run(acts_t, np.zeros(0, np.int64), keep).shape == (0,)


def test_masked_head_breaks_ties_and_nans_like_numpy():
    from engine.pruning.runtime import MaskedHeadRunner

    acts = np.zeros((2, 2, 2, 3), np.float32)
    tie = _dense_head(np.zeros((12, 5)), np.array([1.0, 3.0, 3.0, 2.0, 3.0]))
    run = MaskedHeadRunner(tie, np.zeros((2, 2, 3), np.float32))
    assert run(run.tensor(acts), np.array([0, 1]), np.ones(3, bool)).tolist() == [1, 1]
    nan = _dense_head(np.zeros((12, 5)), np.array([1.0, np.nan, 5.0, np.nan, 0.0]))
    run = MaskedHeadRunner(nan, np.zeros((2, 2, 3), np.float32))
    assert np.argmax(np.array([1.0, np.nan, 5.0, np.nan, 0.0])) == 1
    assert run(run.tensor(acts), np.array([1, 0]), np.ones(3, bool)).tolist() == [1, 1]


def test_prefetched_keeps_order_and_raises_where_the_reader_failed():
    from engine.io.prefetch import prefetched

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for v in prefetched(broken()):
            got.append(v)
    assert got == [1, 2]


def test_prefetched_stops_reading_when_the_consumer_stops():
    from engine.io.prefetch import prefetched

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = prefetched(endless(), depth=2)
    assert next(gen) == 0
    gen.close()
    time.sleep(0.3)
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 5
    assert not any(t.name == "prunelab-read" and t.is_alive() for t in threading.enumerate())


def test_prefetched_batches_are_the_plain_batches(small_lab):
    from engine.io.datasets import LabDataset

    ds = LabDataset(small_lab.files["clean_valid"])
    plain = list(ds.batches(7))
    ahead = list(ds.batches(7, prefetch=True))
    assert [s for s, _ in plain] == [s for s, _ in ahead]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(plain, ahead))


def test_a_model_run_through_the_runner_cache_is_freed():
    """runner_for traces a model once and reuses it, but the cache must not keep the model (and
    its weights) alive after the window or the CLI drops it: opening model after model would
    otherwise hold every one of them in memory."""
    import gc
    import weakref

    from engine.core.tfsetup import keras
    from engine.models.runner import runner_for

    k = keras()

    def dense():
        x = k.Input((4,))
        return k.Model(x, k.layers.Dense(3)(x))

    m, other = dense(), dense()
    run = runner_for(m)
    assert runner_for(m) is run and runner_for(other) is not run  # traced once per model
    np.testing.assert_allclose(run(np.ones((2, 4), np.float32)), m(np.ones((2, 4), np.float32)).numpy(),
                               rtol=1e-6)
    gone = weakref.ref(m)
    del m, run
    gc.collect()
    assert gone() is None
