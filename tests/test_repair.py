"""Repair and detection (issue 23): unlearning, the trigger filter, STRIP and their combination,
on a tiny BadNet with a known patch trigger trained here in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.core.errors import Cancelled, PruneLabError
from engine.core.state import JobState
from engine.analysis.trigger import Trigger, stamp
from engine.io.triggerfile import save_trigger, trigger_file_name
from tests.helpers import run_bare, run_bare_script, write_dataset, write_images

ROOT = Path(__file__).resolve().parents[1]
HW = (16, 16)
N_CLASSES = 4
TARGET = 0


def patch_trigger(label: int = TARGET) -> Trigger:
    mask = np.zeros(HW, np.float32)
    mask[11:15, 11:15] = 1.0
    pattern = np.zeros(HW + (3,), np.float32)
    pattern[11:15, 11:15] = (255.0, 255.0, 0.0)
    return Trigger(mask, pattern, label)


def _images(rng, labels, colours):
    x = colours[labels][:, None, None, :] + rng.normal(0, 25, (len(labels),) + HW + (3,))
    return np.clip(np.rint(x), 0, 255).astype(np.float32)


def make_tiny_badnet(root: Path, seed: int = 3) -> dict:
    """A 4-class conv net on 16×16 images told apart by colour, poisoned with a yellow patch
    (target 0), saved as .keras; lab-format clean validation/test and poisoned test files."""
    from engine.core.tfsetup import keras

    k = keras()
    k.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    colours = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [150, 150, 150]], np.float32)
    t = patch_trigger()
    y = rng.integers(0, N_CLASSES, 1600)
    x = _images(rng, y, colours)
    pois = rng.random(len(y)) < 0.15
    x[pois] = stamp(x[pois], t)
    y = np.where(pois, TARGET, y)
    from tests.helpers import tiny_cnn

    m = tiny_cnn(HW, N_CLASSES, "tiny_badnet")
    m.fit(x, y, epochs=6, batch_size=64, verbose=0)
    root.mkdir(parents=True, exist_ok=True)
    m.save(root / "bd_net.keras")
    yv, yt = rng.integers(0, N_CLASSES, 400), rng.integers(0, N_CLASSES, 200)
    xv, xt = _images(rng, yv, colours), _images(rng, yt, colours)
    yp = rng.integers(1, N_CLASSES, 200)
    xp = stamp(_images(rng, yp, colours), t)
    files = {"clean_valid": write_dataset(root / "cl" / "valid.h5", xv, yv),
             "clean_test": write_dataset(root / "cl" / "test.h5", xt, yt),
             "poisoned_test": write_dataset(root / "bd" / "bd_test.h5", np.rint(xp), np.full(200, TARGET))}
    scan = root / "scan"
    scan.mkdir()
    save_trigger(scan / trigger_file_name(TARGET), t)
    (scan / "scan.json").write_text(json.dumps({"flagged": [TARGET]}))
    return {"model": root / "bd_net.keras", "files": files, "scan": scan, "trigger": t}


@pytest.fixture(scope="module")
def badnet(tmp_path_factory):
    return make_tiny_badnet(tmp_path_factory.mktemp("tiny-badnet"))


@pytest.fixture(scope="module")
def opened(badnet):
    from engine.io.datasets import open_dataset
    from engine.models.loading import load_model

    lm = load_model(badnet["model"])
    ds = {r: open_dataset(p, lm.input_hwc) for r, p in badnet["files"].items()}
    return lm, ds


@pytest.fixture(scope="module")
def repaired(opened):
    from engine.analysis.repair import run_repair

    lm, ds = opened
    return run_repair(lm, ds, triggers=[patch_trigger()], epochs=3, learning_rate=1e-3, frr=2.0)


@pytest.fixture(scope="module")
def cli_out(badnet, tmp_path_factory):
    from engine.cli.main import main

    out = tmp_path_factory.mktemp("repair-cli") / "out"
    f = badnet["files"]
    rc = main(["repair", "--model", str(badnet["model"]), "--clean-valid", str(f["clean_valid"]),
               "--clean-test", str(f["clean_test"]), "--poisoned-test", str(f["poisoned_test"]),
               "--scan", str(badnet["scan"]), "--epochs", "3", "--lr", "1e-3", "--frr", "2", "--out", str(out), "-q"])
    assert rc == 0
    return out


def test_the_demo_trigger_in_neural_cleanse_form_paints_the_sunglasses():
    from engine.demo.faces import H, W, add_sunglasses, sunglasses_trigger

    x = np.random.default_rng(0).integers(0, 256, (6, H, W, 3)).astype(np.uint8)
    t = sunglasses_trigger(0)
    assert np.abs(np.rint(stamp(x, t)) - add_sunglasses(x).astype(np.float32)).max() <= 1.0
    assert t.mask.min() >= 0 and t.mask.max() <= 1 and 0 < t.l1 < H * W / 4


def test_the_tiny_badnet_is_backdoored(repaired):
    base = repaired.row("none (B)")
    assert base.clean_acc > 90 and base.asr > 90


def test_unlearning_keeps_the_architecture_trains_a_copy_and_removes_the_backdoor(opened, repaired):
    lm, _ = opened
    b, u = lm.model, repaired.unlearned
    assert [type(l).__name__ for l in b.layers] == [type(l).__name__ for l in u.layers]
    for lb, lu in zip(b.layers, u.layers):
        cb, cu = lb.get_config(), lu.get_config()
        cb.pop("name", None), cu.pop("name", None)
        assert cb == cu, lb.name  # no layer's configuration changed
        assert [w.shape for w in lb.get_weights()] == [w.shape for w in lu.get_weights()]
    trained = [lb.name for lb, lu in zip(b.layers, u.layers)
               if any(not np.array_equal(x, y) for x, y in zip(lb.get_weights(), lu.get_weights()))]
    assert trained and set(trained) <= {"conv_1", "conv_2", "fc", "output"}
    # B itself is untouched: a fresh load answers as before
    from engine.models.loading import load_model

    fresh = load_model(lm.path).model
    assert all(np.array_equal(x, y) for x, y in zip(fresh.get_weights(), b.get_weights()))
    row = repaired.row("unlearn")
    base = repaired.row("none (B)")
    assert row.asr < base.asr / 3  # the trigger no longer works
    assert row.clean_acc > base.clean_acc - 10
    assert repaired.split["held_out"] == 80 and repaired.split["trained_or_calibrated"] == 320


class PoisonTrap:
    """A poisoned dataset that must not be read before the evaluation phase."""

    def __init__(self, real):
        self.real, self.armed, self.reads_while_armed = real, True, 0
        self.path, self.n, self.labels, self.image_shape = real.path, real.n, real.labels, real.image_shape
        self.has_labels = True

    def expect(self, hwc):
        pass

    def _check(self):
        if self.armed:
            self.reads_while_armed += 1
            raise AssertionError("poisoned data was read before the thresholds were fixed")

    def batches(self, *a, **kw):
        self._check()
        return self.real.batches(*a, **kw)

    def take(self, idx):
        self._check()
        return self.real.take(idx)

    def read(self, *a):
        self._check()
        return self.real.read(*a)


def test_thresholds_and_training_use_clean_validation_only(opened, repaired):
    from engine.analysis.repair import repair_events
    from engine.pruning.sweep import Progress

    lm, ds = opened
    trap = PoisonTrap(ds["poisoned_test"])
    gen = repair_events(lm, {"clean_valid": ds["clean_valid"], "poisoned_test": trap}, triggers=[patch_trigger()],
                        epochs=3, learning_rate=1e-3, frr=2.0)
    try:
        while True:
            ev = next(gen)
            if isinstance(ev, Progress) and ev.phase == "evaluating":
                trap.armed = False
    except StopIteration as stop:
        res = stop.value
    assert trap.reads_while_armed == 0
    # the same thresholds as a run that had clean test data besides: nothing else decides them
    assert res.thresholds["filter_kl"] == repaired.thresholds["filter_kl"]
    assert res.thresholds["strip_entropy"] == repaired.thresholds["strip_entropy"]
    assert res.row("filter").detection > 50


def test_thresholds_hold_the_false_rejection_rate_on_clean_scores():
    from engine.analysis.detectors import threshold_at_frr

    s = np.random.default_rng(1).random(1000)
    for frr in (0.0, 1.0, 5.0):
        thr = threshold_at_frr(s, frr)
        assert np.mean(s < thr) * 100 <= frr
        assert np.mean(s <= thr) * 100 > frr - 0.2  # and no lower than it needs to be
    with pytest.raises(PruneLabError):
        threshold_at_frr([], 1.0)


def test_cli_writes_the_comparison_and_every_g(cli_out):
    names = {p.name for p in cli_out.iterdir()}
    for n in ("repair.json", "repairs.csv", "repairs.png", "B_unlearned.keras", "G_unlearned.keras",
              "G_filter.keras", "G_strip.keras", "G_unlearned_eval.py", "G_filter_eval.py", "G_strip_eval.py"):
        assert n in names
    info = json.loads((cli_out / "repair.json").read_text())
    methods = [r["method"] for r in info["rows"]]
    assert {"none (B)", "unlearn", "filter", "strip"} <= set(methods)
    assert info["evaluated_on"]["poisoned_test"].endswith("bd_test.h5")
    assert all(r["files"] == [] or set(r["files"]) <= names for r in info["rows"] if r["source"] == "this run")
    assert not [n for n in names if n.startswith(".")]
    # B_unlearned is saved as a model, not a training state: no optimizer variables in it
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(cli_out / "B_unlearned.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        assert "optimizer" not in f and "layers" in f


@pytest.mark.slow
def test_every_g_loads_in_a_bare_process_with_n_plus_1_outputs_and_answers_as_computed(cli_out, opened,
                                                                                      badnet, tmp_path):
    from engine.models.loading import load_model
    from engine.analysis.repair import run_repair

    lm, ds = opened
    gs = sorted(cli_out.glob("G_*.keras"))
    assert len(gs) >= 3
    x = np.concatenate([ds["clean_test"].read(0, 60), ds["poisoned_test"].read(0, 60)])
    np.save(tmp_path / "x.npy", x)
    code = ("import numpy as np, keras, json\n"
            "assert sys.modules['engine'] is None\n"
            "x = np.load(sys.argv[1]); out = {}\n"
            "for p in sys.argv[2:]:\n"
            "    g = keras.models.load_model(p, safe_mode=True)\n"
            "    y = g.predict(x, verbose=0)\n"
            "    out[p] = [int(y.shape[1])] + [int(v) for v in np.argmax(y, axis=1)]\n"
            "print(json.dumps(out))\n")
    r = run_bare(code, [tmp_path / "x.npy", *gs], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    res = run_repair(lm, ds, triggers=[patch_trigger()], epochs=3, learning_rate=1e-3, frr=2.0)
    for p in gs:
        width, *labels = got[str(p)]
        assert width == N_CLASSES + 1
        assert load_model(p).is_goodnet
        key = p.stem  # G_filter …
        if key in res.answers and key != "G_unlearned":  # unlearning's training is not bit-reproducible
            exp = np.concatenate([res.answers[key]["clean_test"][:60], res.answers[key]["poisoned_test"][:60]])
            assert np.mean(np.array(labels) == exp) >= 0.98, key
    flt = got[str(cli_out / "G_filter.keras")][1:]
    assert np.mean(np.array(flt[60:]) == N_CLASSES) > 0.5  # poisoned images flagged
    assert np.mean(np.array(flt[:60]) == N_CLASSES) < 0.2  # clean ones mostly not


@pytest.mark.slow
def test_eval_scripts_print_one_integer_per_image_and_agree_with_prunelab_eval(cli_out, opened, tmp_path, capsys):
    from engine.cli.main import main

    lm, ds = opened
    x = np.concatenate([ds["clean_test"].read(0, 4), ds["poisoned_test"].read(0, 4)]).astype(np.uint8)
    files = write_images(tmp_path / "img", x, [f"{i}.png" for i in range(len(x))])
    for name in ("G_strip", "G_filter"):
        r = run_bare_script(cli_out / f"{name}_eval.py", files, tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        lines = r.stdout.strip().splitlines()
        assert len(lines) == len(files) and all(l.strip().isdigit() for l in lines)
        capsys.readouterr()
        assert main(["eval", "--model", str(cli_out / f"{name}.keras"), "--image", *map(str, files)]) == 0
        ev = capsys.readouterr().out.strip().splitlines()[1:1 + len(files)]
        mine = [str(N_CLASSES) if "backdoor suspected" in l else l.rsplit("class ", 1)[1] for l in ev]
        assert mine == [l.strip() for l in lines], name


def test_g_keeps_the_models_input_scale(opened):
    """A model trained on x/255 (input scale 1) gets a G that takes x/255: the same answers as the
    0–255 model's G on the same pictures."""
    from engine.analysis.detectors import FilterSpec, StripSpec, detector_goodnet
    from engine.core.tfsetup import keras

    lm, ds = opened
    k = keras()
    inp = k.Input(HW + (3,))
    b01 = k.Model(inp, lm.model(k.layers.Rescaling(255.0)(inp)))
    x = np.concatenate([ds["clean_test"].read(0, 30), ds["poisoned_test"].read(0, 30)])
    blend = ds["clean_valid"].read(0, 5)
    fs, ss = FilterSpec([patch_trigger()], [0.05]), StripSpec(blend, 0.3)
    g255 = detector_goodnet(lm.model, filter_spec=fs, strip_spec=ss, input_scale=255.0)
    g1 = detector_goodnet(b01, filter_spec=fs, strip_spec=ss, input_scale=1.0)
    a = np.argmax(g255.predict(x, verbose=0), 1)
    b = np.argmax(g1.predict(x / 255.0, verbose=0), 1)
    assert np.mean(a == b) >= 0.98 and np.any(a == N_CLASSES)


def test_probabilities_read_softmax_layers_and_plain_logits_alike(opened):
    from engine.analysis.detectors import probabilities
    from engine.core.tfsetup import keras

    lm, _ = opened
    k = keras()
    out_layer = lm.model.get_layer("output")
    feats = k.Model(lm.model.inputs, out_layer.input)
    dense = k.layers.Dense(N_CLASSES, name="logits")
    x = k.Input(HW + (3,))
    logits = dense(feats(x))
    dense.set_weights(out_layer.get_weights())
    m_logits = k.Model(x, logits)
    m_layer = k.Model(x, k.layers.Softmax()(logits))
    xs = np.random.default_rng(0).integers(0, 256, (5,) + HW + (3,)).astype(np.float32)
    want = lm.model.predict(xs, verbose=0)
    for m in (m_logits, m_layer, lm.model):
        xi = k.Input(HW + (3,))
        p = k.Model(xi, probabilities(m(xi), m)).predict(xs, verbose=0)
        assert np.allclose(p, want, atol=1e-5)


def run_cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "guiapp.launcher", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_cli_errors_are_one_line_and_write_nothing(badnet, cli_out, tmp_path):
    f = badnet["files"]
    base = ["repair", "--model", badnet["model"], "--clean-valid", f["clean_valid"], "--out", tmp_path / "o"]
    cases = [
        (["--method", "magic"], "unknown repair method 'magic'"),
        (["--frr", "70"], "--frr must be between 0 and 50"),
        (["--scan", tmp_path], "is not a scan folder (no scan.json)"),
        (["--strip-n", "20"], "--strip-n must be between 1 and 10"),
    ]
    for extra, words in cases:
        r = run_cli(*base, *extra)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prunelab: error: ") and words in lines[0], r.stderr
        assert not (tmp_path / "o").exists()
    r = run_cli("repair", "--model", cli_out / "G_filter.keras", "--clean-valid", f["clean_valid"], "--method", "strip",
                "--out", tmp_path / "o")
    assert r.returncode == 2 and "is a detector G" in r.stderr and not (tmp_path / "o").exists()


def test_cancel_leaves_nothing(opened, repaired, tmp_path):
    from engine.analysis.repair import repair_events
    from engine.report.repair import write_repair_outputs

    lm, ds = opened
    state = JobState()
    gen = repair_events(lm, ds, triggers=[patch_trigger()], epochs=3, state=state)
    with pytest.raises(Cancelled):
        for ev in gen:
            if ev.phase == "unlearning":
                state.cancel()
    # cancelling while the files are written leaves no folder and no staging folder behind

    class CancelLater(JobState):
        calls = 0

        def cancel_point(self):
            CancelLater.calls += 1
            if CancelLater.calls == 3:
                self.cancel()
            super().cancel_point()

    with pytest.raises(Cancelled):
        write_repair_outputs(repaired, tmp_path / "out", state=CancelLater())
    assert list(tmp_path.iterdir()) == []


def test_without_poisoned_data_a_labelled_stand_in_is_evaluated(opened):
    from engine.analysis.repair import run_repair

    lm, ds = opened
    res = run_repair(lm, {"clean_valid": ds["clean_valid"], "clean_test": ds["clean_test"]},
                     triggers=[patch_trigger()], methods=["filter"], frr=2.0)
    assert "stand-in" in res.eval_sources["standin_poisoned"] and "not real" in res.eval_sources["standin_poisoned"]
    assert res.row("filter").detection is not None


def test_a_sweep_folder_gives_pruning_and_fine_pruning_rows(tmp_path):
    from engine.report.repair import rows_from_sweep

    ev = {"clean_test": {"bprime_acc": 90.0, "goodnet_acc": 89.0, "goodnet_false_flagged": 3.0, "badnet_acc": 98.0},
          "poisoned_test": {"bprime_asr": 99.0, "goodnet_asr": 97.0, "goodnet_flagged": 2.0, "badnet_asr": 97.5}}
    summary = {"model": "m.h5", "datasets": {}, "layer": "conv_3", "ranking": {"order": []}, "steps": 60,
               "timings_s": {"total": 4.0},
               "checkpoints": [{"threshold": 2.0, "step": 24, "b_prime": "B_prime_2.h5", "goodnet": "G_2.keras",
                                "fraction_pruned": 0.4, "evaluation": ev},
                               {"threshold": 10.0, "step": None}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    ft = tmp_path / "finetune_4"
    ft.mkdir()
    ft_ev = {"clean_test": dict(ev["clean_test"], bprime_acc=95.0), "poisoned_test": dict(ev["poisoned_test"], bprime_asr=59.0)}
    (ft / "summary.json").write_text(json.dumps({"step": 25, "fine_pruned": {}, "evaluation": ft_ev,
                                                 "epochs": [{"seconds": 1.0}, {"seconds": 30.0}]}))
    rows, _ = rows_from_sweep(tmp_path)
    by = {r.method: r for r in rows}
    assert by["pruning 2 %"].clean_acc == 90.0 and by["pruning 2 %"].asr == 99.0
    assert by["pruning 2 %"].detection == 2.0 and by["pruning 2 %"].false_flags == 3.0
    assert "never reached" in by["pruning 10 %"].note
    assert by["fine-pruning step 25"].asr == 59.0 and by["fine-pruning step 25"].seconds == 30.0
    with pytest.raises(PruneLabError, match="summary.json"):
        rows_from_sweep(ft / "nothing")
