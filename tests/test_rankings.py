"""Pruning criteria: every ranking's sweep equals the naive loop in its order, the data-free
scores equal an independent numpy computation, ANP reads clean validation only and is
reproducible, and the comparison table reports the defender's operating points."""

import numpy as np
import pytest

from engine.report.compare import comparison_table, rankings_csv
from engine.io.datasets import LabDataset
from engine.core.errors import Cancelled, PruneLabError
from engine.models.loading import load_model
from engine.pruning.criteria import (ANPConfig, anp_ranking, check_available, clp_ranking, l1_ranking,
                                     parse_rankings, random_rankings)
from engine.pruning.rankings import RankingStep, RankingSweeps
from engine.core.state import JobState
from engine.pruning.records import Checkpoint, StepRecord, SweepResult
from engine.pruning.sweep import Sweep
from tests.helpers import naive_sweep_predictions

FEW = ANPConfig(iterations=12, images=96, batch_size=32, seed=3)


def open_all(lab, model, roles=None):
    return {r: LabDataset(p, model.input_hwc) for r, p in lab.files.items() if roles is None or r in roles}


@pytest.fixture(scope="module")
def fewer_images(tmp_path_factory):
    """The small lab with fewer images: four naive 60-step loops stay within seconds."""
    from tests.helpers import make_small_lab

    return make_small_lab(tmp_path_factory.mktemp("small-lab-few"), n_valid=64, n_test=48)


def test_every_ranking_sweep_equals_the_naive_loop_at_every_step(fewer_images):
    """clp, l1, random and difference orders through the fast sweep (activations read back
    from the cache after the first sweep) give the naive loop's predictions at every step."""
    lm = load_model(fewer_images.model)
    ds = open_all(fewer_images, lm)
    rs = RankingSweeps(lm, ds, ["clp", "l1", "random", "difference"], random_seeds=1)
    streamed = [ev.name for ev in rs.events() if isinstance(ev, RankingStep)]
    assert list(dict.fromkeys(streamed)) == list(rs.results) == ["clp", "l1", "random", "difference"]
    orders = {tuple(rk.order) for rk in rs.rankings.values()}
    assert len(orders) == 4  # four different orders, not one order four times
    for name, res in rs.results.items():
        assert res.method == "fast" and res.order == list(rs.rankings[name].order)
        naive = Sweep(lm, ds, method="naive", order=res.order).run()  # zero the weights, run the model
        assert naive.steps == res.steps == 60
        for role in ds:
            for s in range(res.steps + 1):
                assert np.array_equal(res.predictions[role][s], naive.predictions[role][s]), (name, role, s)
    # and the engine's naive loop is the test helper's reference (model.predict) on a few steps
    d = ds["poisoned_valid"]
    ref = naive_sweep_predictions(lm.model, "conv_3", res.order, d.read(0, d.n), (0, 7, 31))
    for s, pred in ref.items():
        assert np.array_equal(res.predictions["poisoned_valid"][s], pred)


def test_clp_and_l1_scores_match_numpy(small_lab):
    lm = load_model(small_lab.model)
    w = lm.model.get_layer("conv_3").get_weights()[0].astype(np.float64)  # (kh, kw, C_in, C_out)
    l1 = np.array([np.sum(np.abs(w[:, :, :, k])) for k in range(w.shape[3])])
    sv = []
    for k in range(w.shape[3]):
        m = np.stack([w[:, :, c, k].ravel() for c in range(w.shape[2])])  # (C_in, kh·kw)
        sv.append(np.linalg.svd(m)[1][0])
    sv = np.array(sv)
    rk_l1, rk_clp = l1_ranking(lm.model, "conv_3"), clp_ranking(lm.model, "conv_3")
    assert np.allclose(rk_l1.scores, l1, rtol=1e-10)
    assert np.allclose(rk_clp.scores, sv, rtol=1e-10)
    assert list(rk_l1.order) == list(np.argsort(l1, kind="stable"))  # lowest first
    assert list(rk_clp.order) == list(np.argsort(-sv, kind="stable"))  # highest first
    assert rk_clp.threshold_step == int(np.sum(sv > sv.mean() + 3 * sv.std()))


def test_clp_uses_the_batchnorm_that_follows_the_layer():
    from engine.core.tfsetup import keras

    k = keras()
    rng = np.random.default_rng(0)
    x = k.Input((9, 9, 3))
    h = k.layers.Conv2D(8, 3, name="conv", use_bias=False)(x)
    h = k.layers.BatchNormalization(name="bn", epsilon=1e-3)(h)
    h = k.layers.ReLU()(h)
    h = k.layers.MaxPooling2D(2)(h)
    out = k.layers.Dense(4, activation="softmax")(k.layers.Flatten()(h))
    model = k.Model(x, out)
    bn = model.get_layer("bn")
    gamma = rng.uniform(-3, 3, 8)
    var = rng.uniform(0.1, 5, 8)
    bn.set_weights([gamma.astype(np.float32), rng.normal(size=8).astype(np.float32),
                    rng.normal(size=8).astype(np.float32), var.astype(np.float32)])
    w = model.get_layer("conv").get_weights()[0].astype(np.float64)
    plain = np.array([np.linalg.svd(w[..., c].transpose(2, 0, 1).reshape(3, 9))[1][0] for c in range(8)])
    expect = plain * np.abs(gamma.astype(np.float32).astype(np.float64) /
                            np.sqrt(var.astype(np.float32).astype(np.float64) + 1e-3))
    rk = clp_ranking(model, "conv")
    assert np.allclose(rk.scores, expect, rtol=1e-6)
    assert list(rk.order) == list(np.argsort(-expect, kind="stable"))
    assert list(rk.order) != list(np.argsort(-plain, kind="stable"))  # the BN gain changed the order


def test_anp_reads_clean_validation_only_stays_in_bounds_and_is_reproducible(small_lab, monkeypatch):
    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm)
    touched = []
    real_read, real_take = LabDataset.read, LabDataset.take
    monkeypatch.setattr(LabDataset, "read", lambda self, a, b: touched.append(self.path) or real_read(self, a, b))
    monkeypatch.setattr(LabDataset, "take", lambda self, i: touched.append(self.path) or real_take(self, i))
    progress = []
    a = anp_ranking(lm, ds["clean_valid"], "conv_3", FEW, use_cache=False,
                    progress=lambda d, n: progress.append((d, n)))
    b = anp_ranking(lm, ds["clean_valid"], "conv_3", FEW, use_cache=False)
    assert touched and set(touched) == {small_lab.files["clean_valid"]}
    assert np.all((a.scores >= 0) & (a.scores <= 1))
    assert 0 < np.count_nonzero(a.scores < 1)  # the masks did move
    assert a.order == b.order and np.array_equal(a.scores, b.scores)
    assert a.order == tuple(np.argsort(a.scores, kind="stable"))
    assert progress[-1] == (FEW.iterations, FEW.iterations)
    # through RankingSweeps, with the other files loaded: still only clean validation is read by ANP
    touched.clear()
    rs = RankingSweeps(lm, ds, ["anp"], anp=FEW, use_cache=False, max_steps=0)
    gen = rs.events()
    for ev in gen:
        if not (ev.phase == "ranking"):
            break
    assert set(touched) == {small_lab.files["clean_valid"]}
    gen.close()


def test_anp_is_cached_by_content_and_cancellable(small_lab):
    lm = load_model(small_lab.model)
    cv = LabDataset(small_lab.files["clean_valid"], lm.input_hwc)
    cfg = ANPConfig(iterations=6, images=64, batch_size=32, seed=11)
    first = anp_ranking(lm, cv, "conv_3", cfg)
    again = anp_ranking(lm, cv, "conv_3", cfg)
    assert not first.cached and again.cached and again.order == first.order
    assert np.array_equal(again.scores, first.scores)
    state = JobState()

    def stop(done, total):
        state.cancel()

    with pytest.raises(Cancelled):
        anp_ranking(lm, cv, "conv_3", ANPConfig(iterations=400, images=64, batch_size=32), use_cache=False,
                    state=state, progress=stop)


def test_random_orders_are_seeded_and_distinct():
    a = random_rankings(60, 3, base_seed=7)
    b = random_rankings(60, 3, base_seed=7)
    assert [r.name for r in a] == ["random-1", "random-2", "random-3"]
    assert [r.order for r in a] == [r.order for r in b]
    assert len({r.order for r in a}) == 3
    assert all(sorted(r.order) == list(range(60)) for r in a)


def test_a_ranking_that_cannot_run_says_what_is_missing(small_lab):
    with pytest.raises(PruneLabError, match="difference.*poisoned validation.*--poisoned-valid"):
        check_available(["clp", "difference"], ["clean_valid", "clean_test"])
    with pytest.raises(PruneLabError, match="unknown ranking 'fp'"):
        parse_rankings("activation,fp")
    assert parse_rankings(" activation, CLP ") == ["activation", "clp"]
    lm = load_model(small_lab.model)
    ds = open_all(small_lab, lm, roles=("clean_valid",))
    with pytest.raises(PruneLabError, match="--poisoned-valid"):
        RankingSweeps(lm, ds, ["activation", "difference"])


# ------------------------------------------------------------------------------ comparison
def fake_result(clean, asr, thresholds=(2.0, 4.0, 10.0), test=None):
    n = len(clean) - 1
    recs = [StepRecord(s, None if s == 0 else s - 1, s / n, clean[s], asr[s],
                       None if test is None else test[0][s], None if test is None else test[1][s])
            for s in range(n + 1)]
    cps = []
    for t in thresholds:
        hit = [s for s in range(n + 1) if (clean[0] - clean[s]) / clean[0] * 100 >= t - 1e-9]
        cps.append(Checkpoint(t, hit[0] if hit else None))
    return SweepResult("m.h5", "conv", "pool", n, 5, list(range(n)), {}, recs, {}, {}, tuple(thresholds), cps,
                       "fast", timings={"total": 1.5})


def test_comparison_table_on_a_constructed_case():
    from engine.pruning.criteria import Ranking

    def rk(name, method="x", diag=False):
        return Ranking(name, method, ("clean_valid",), np.zeros(4), (0, 1, 2, 3), 0.25, diagnostic=diag)

    results = {
        # ASR falls to 5 % at step 2 with 99 % clean; best defended point is step 3 (99.5 %)
        "good": fake_result([100, 99, 99, 99.5, 50], [100, 50, 5, 8, 0], test=([98] * 5, [90, 40, 6, 7, 1])),
        # never defends: ASR stays high, and never drops 10 % in clean accuracy
        "bad": fake_result([100, 99.5, 99, 97, 95], [100, 100, 100, 90, 80]),
        "random-1": fake_result([100, 96, 90, 80, 70], [100, 20, 10, 0, 0]),
        "random-2": fake_result([100, 98, 94, 70, 60], [100, 40, 30, 10, 0]),
    }
    ranks = [rk("good"), rk("bad", diag=True), rk("random-1", "random"), rk("random-2", "random")]
    rows = {r.name: r for r in comparison_table(ranks, results)}
    g = rows["good"]
    assert [(t, p.step if p else None) for t, p in g.checkpoints.items()] == [(2.0, 4), (4.0, 4), (10.0, 4)]
    assert (g.first_defended.step, g.first_defended.clean) == (2, 99)
    assert (g.best_defended.step, g.best_defended.clean, g.best_defended.asr_test) == (3, 99.5, 7)
    b = rows["bad"]
    assert b.first_defended is None and b.best_defended is None and b.diagnostic
    assert [p.step if p else None for p in b.checkpoints.values()] == [3, 4, None]
    m = rows["random"]  # the band's mean curve: clean 100, 97, 92, 75, 65; ASR 100, 30, 20, 5, 0
    assert m.members == 2 and m.first_defended.step == 3 and m.first_defended.clean == pytest.approx(75)
    assert [p.step for p in m.checkpoints.values()] == [1, 2, 3]
    assert list(rows) == ["good", "bad", "random-1", "random-2", "random"]
    text = rankings_csv(list(rows.values())).splitlines()
    head = text[0].split(",")
    bad = dict(zip(head, text[2].split(",")))
    assert bad["first_step_asr_le_10"] == "" and bad["step_at_10"] == "" and bad["step_at_2"] == "3"
    good = dict(zip(head, text[1].split(",")))
    assert good["best_clean_valid_asr_le_10"] == "99.5" and good["step_of_best_asr_le_10"] == "3"


# ------------------------------------------------------------------------------ CLI
def test_cli_sweep_with_rankings_and_finetune_from_one(small_lab, tmp_path):
    import csv
    import json

    from engine.cli.main import main
    from engine.report.figures import CSV_HEADER

    f = small_lab.files
    data = ["--model", str(small_lab.model), "--clean-valid", str(f["clean_valid"]),
            "--poisoned-valid", str(f["poisoned_valid"]), "--clean-test", str(f["clean_test"])]
    plain, out = tmp_path / "plain", tmp_path / "multi"
    assert main(["sweep", *data, "--out", str(plain), "-q"]) == 0
    assert not (plain / "rankings").exists() and not (plain / "rankings.csv").exists()
    assert main(["sweep", *data, "--rankings", "activation,clp,random", "--random-seeds", "2",
                 "--out", str(out)]) == 0
    # the top-level files are the plain sweep's (the first ranking's)
    assert (out / "metrics.csv").read_text() == (plain / "metrics.csv").read_text()
    top = json.loads((out / "summary.json").read_text())
    assert list(top["rankings"]) == ["activation", "clp", "random-1", "random-2"]
    assert top["ranking"]["order"] == top["rankings"]["activation"]["order"]
    for name, entry in top["rankings"].items():
        sub = out / entry["dir"]
        rows = list(csv.reader((sub / "metrics.csv").open()))
        assert rows[0] == CSV_HEADER and len(rows) == 62
        s = json.loads((sub / "summary.json").read_text())
        assert s["order"] == entry["order"] == s["ranking"]["order"] and len(s["scores"]) == 60
        assert [int(r[1]) for r in rows[2:]] == s["order"]  # the channel pruned at each step
        for cp in s["checkpoints"]:
            if cp["step"] is not None:
                assert (sub / cp["b_prime"]).is_file() and (sub / cp["goodnet"]).is_file()
    table = list(csv.DictReader((out / "rankings.csv").open()))
    assert [r["ranking"] for r in table] == ["activation", "clp", "random-1", "random-2", "random"]
    assert (out / "rankings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # accuracy against ASR
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    # fine-pruning from the clp ranking prunes clp's first channels
    ft = tmp_path / "ft"
    assert main(["finetune", "--from-sweep", str(out), "--ranking", "clp", "--step", "3", "--epochs", "1",
                 "--out", str(ft), "-q"]) == 0
    assert json.loads((ft / "summary.json").read_text())["pruned_channels"] == top["rankings"]["clp"]["order"][:3]
    # one-line errors (a subprocess: the CLI prints them on the real stderr), nothing written
    from tests.test_cli import run_cli

    r = run_cli("finetune", "--from-sweep", out, "--ranking", "anp", "--step", "3", "--out", tmp_path / "ft2")
    assert r.returncode == 2 and r.stderr.strip() == (f"prunelab: error: {out / 'summary.json'}: has no ranking "
                                                      "'anp' (rankings: activation, clp, random-1, random-2)")
    bad = tmp_path / "bad"
    r = run_cli("sweep", "--model", small_lab.model, "--clean-valid", f["clean_valid"], "--rankings", "clp,difference",
                "--out", bad)
    assert r.returncode == 2 and not bad.exists()
    assert r.stderr.strip() == ("prunelab: error: the 'difference' ranking needs poisoned validation data "
                                "(--poisoned-valid)")
    r = run_cli("sweep", "--model", small_lab.model, "--clean-valid", f["clean_valid"], "--rankings", "fp",
                "--out", bad)
    assert r.returncode == 2 and "unknown ranking 'fp'" in r.stderr and not bad.exists()


def test_random_band_aligns_orders_refined_at_different_steps():
    """With a step size > 1 each order refines the steps where its own drop is reached; the
    band is the mean at the channel counts every order measured."""
    from dataclasses import replace

    from engine.report.compare import band_of, curve_of

    a = fake_result([100, 90, 80, 70, 60], [100, 50, 40, 30, 0])  # records prune 0, 4, 5, 6, 8 channels
    a.records[:] = [replace(r, pruned=p) for r, p in zip(a.records, [0, 4, 5, 6, 8])]
    b = fake_result([100, 80, 40], [100, 20, 0])  # records prune 0, 4, 8 channels
    b.records[:] = [replace(r, pruned=p) for r, p in zip(b.records, [0, 4, 8])]
    band = band_of("random", [curve_of("a", a), curve_of("b", b)], (2.0, 50.0))
    assert list(band.pruned) == [0, 4, 8]
    assert list(band.values["clean_valid_acc"]) == [100, 85, 50]
    assert list(band.lo["asr_valid"]) == [100, 20, 0] and list(band.hi["asr_valid"]) == [100, 50, 0]
    assert band.point(band.checkpoints[50.0]).pruned == 8 and band.point(band.checkpoints[2.0]).pruned == 4


@pytest.mark.parametrize("builder,layer", [("residual_badnet", "block_a"), ("dense_badnet", "fc_a")])
def test_rankings_on_a_residual_block_and_a_dense_layer(tmp_path, builder, layer):
    """Inside a residual block (the head also reads a tensor from before the cut) and on a
    hidden Dense layer with batch norm: the orders sweep exactly, clp takes the BN gain, and
    ANP trains through the skip connection."""
    import tests.test_arch as arch

    model = getattr(arch, builder)(seed=2)
    lm, ds = arch._lab(tmp_path, model, n=64)
    rs = RankingSweeps(lm, ds, ["clp", "l1", "anp"], layer, use_cache=False,
                       anp=ANPConfig(iterations=8, images=48, batch_size=16)).run()
    w = model.get_layer(layer).get_weights()[0].astype(np.float64)
    w = w.reshape((1, 1) + w.shape) if w.ndim == 2 else w
    bn = model.get_layer(f"bn_{layer}")
    gamma, _, _, var = (x.astype(np.float64) for x in bn.get_weights())
    sv = np.array([np.linalg.svd(w[..., c].transpose(2, 0, 1).reshape(w.shape[2], -1))[1][0]
                   for c in range(w.shape[3])])
    assert np.allclose(rs.rankings["clp"].scores, sv * np.abs(gamma / np.sqrt(var + bn.epsilon)), rtol=1e-6)
    assert np.all((rs.rankings["anp"].scores >= 0) & (rs.rankings["anp"].scores <= 1))
    for name in ("clp", "anp"):
        res = rs.results[name]
        assert res.method == "fast"
        naive = Sweep(lm, ds, layer, method="naive", order=res.order, use_cache=False).run()
        for role in ds:
            assert np.array_equal(res.predictions[role], naive.predictions[role]), (name, role)


def test_tradeoff_points_and_figure():
    """The trade-off plot's data: (clean accuracy, ASR, record) per step where both are known, in
    step order; the defender's region is 4 % (relative) below the start and ASR 10 %; repaired
    models are named points of the figure, its legend outside the axes."""
    from types import SimpleNamespace

    from engine.report.compare import NamedPoint, defender_region, tradeoff_figure, tradeoff_xy
    from engine.report.figures import _plt
    from engine.pruning.records import StepRecord

    recs = [StepRecord(s, None if s == 0 else s - 1, s / 4, clean_valid_acc=90.0 - s, asr_valid=None if s == 2
                       else 100.0 - 20 * s, total_steps=4) for s in range(5)]
    x, y, idx = tradeoff_xy(recs)
    assert list(idx) == [0, 1, 3, 4] and list(x) == [90, 89, 87, 86] and list(y) == [100, 80, 40, 20]
    assert defender_region(90.0) == pytest.approx((86.4, 10.0))
    rk = SimpleNamespace(name="l1", method="l1", title="L1 norm of kernel", diagnostic=False)
    res = SimpleNamespace(records=recs, thresholds=(2.0, 4.0, 10.0), layer="conv_3")
    fig = tradeoff_figure([rk], {"l1": res}, [NamedPoint("fine-pruned from step 3", 88.0, 2.0)])
    ax = fig.axes[0]
    labels = ax.get_legend().get_texts()
    assert {"L1 norm of kernel", "fine-pruned from step 3"} <= {t.get_text() for t in labels}
    assert ax.get_legend().get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1  # outside, to the right
    _plt().close(fig)
