"""Every file of the hostile corpus: a one-line error (exit 2) or a warning, nothing executed,
nothing written — through the CLI, the engine, and (a representative subset) the GUI."""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from engine.core.errors import PruneLabError, PruneLabWarning
from tests.hostile_corpus import MARKER, build_corpus

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, small_lab):
    root = tmp_path_factory.mktemp("hostile")
    return root, {c.name: c for c in build_corpus(root, small_lab)}


NAMES = ["empty", "text", "truncated", "directory", "no_data", "no_label", "rank", "size", "channels", "nan",
         "inf", "label_range", "label_nan", "label_frac", "empty_ds", "strings", "mixed_poison", "external_link",
         "virtual", "external_raw", "soft_link", "shape_bomb", "absurd_shape", "memory", "data_as_model",
         "truncated_model", "lambda_h5", "keras_module", "keras_function", "keras_lambda", "custom_class",
         "huge_output", "huge_vs_stored", "no_conv", "bad_layer", "bad_layer_kind", "wrong_weights",
         "label_mismatch", "img_truncated_png", "img_corrupt_png", "img_truncated_jpeg", "img_damaged_jpeg",
         "img_text", "img_bomb", "img_16bit", "img_cmyk", "img_size", "img_empty_folder", "img_mixed_folder",
         "img_outside_link"]


def test_the_corpus_has_every_case(corpus):
    assert sorted(corpus[1]) == sorted(NAMES) and len(NAMES) >= 25


def cli_args(case, lab, out):
    files = dict(lab.files)
    args = ["sweep", "--model", str(lab.model)]
    if case.slot == "model":
        args[2] = str(case.file)
    elif case.slot == "weights":
        args += ["--weights", str(case.file)]
    elif case.slot in files:
        files[case.slot] = case.file
    for role, p in files.items():
        args += [f"--{role.replace('_', '-')}", str(p)]
    return args + case.extra_args + ["--out", str(out), "-q"]


def _run_cli(case, args, root, capfd, monkeypatch):
    """The cases whose loading would run code (Lambda layers, planted modules, serialised
    functions) go through a fresh process, as a user's command would, so that code run by
    mistake could not hide in this one; every other case runs the same ``main`` in this process
    (with its environment set here), without paying for a TensorFlow import per case."""
    if case.runs_code:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **case.env)
        r = subprocess.run([sys.executable, "-m", "engine.cli.main", *args], cwd=root,
                           capture_output=True, text=True, env=env, timeout=600)
        return r.returncode, r.stderr
    from engine.cli.main import main

    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(root)
    capfd.readouterr()
    code = main(args)
    return code, capfd.readouterr().err


def test_the_code_running_cases_are_the_marker_cases(corpus):
    """Every case that would create the marker file runs in its own process in test_cli."""
    planted = {n for n, c in corpus[1].items() if "marker" in c.what}
    assert planted and planted <= {n for n, c in corpus[1].items() if c.runs_code}


@pytest.mark.parametrize("name", NAMES)
def test_cli(name, corpus, small_lab, tmp_path, capfd, monkeypatch):
    root, cases = corpus
    case = cases[name]
    out = tmp_path / "out"
    returncode, stderr = _run_cli(case, cli_args(case, small_lab, out), root, capfd, monkeypatch)
    r = type("R", (), {"returncode": returncode, "stderr": stderr})
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert not (root / MARKER).exists(), "code from the file ran"
    if case.expect == "error":
        assert r.returncode == 2, r.stderr[-2000:]
        assert len(lines) == 1, r.stderr[-2000:]
        m = re.match(r"prunelab: error: (.*?): (.*)$", lines[0])
        assert m and Path(m.group(1)) == Path(case.file), lines[0]
        assert re.search(case.message, m.group(2)), lines[0]
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left either
    else:
        assert r.returncode == 0, r.stderr[-2000:]
        warn = [l for l in lines if l.startswith("prunelab: warning: ")]
        assert any(re.search(case.message, l) for l in warn), r.stderr[-2000:]
        assert (out / "metrics.csv").is_file()


def engine_open(case, lab, root):
    """Do with the engine what the CLI does, for one case."""
    from engine.io.datasets import open_dataset
    from engine.models.loading import load_model
    from engine.pruning.sweep import Sweep

    files = dict(lab.files)
    model, weights = lab.model, None
    if case.slot == "model":
        model = case.file
    elif case.slot == "weights":
        weights = case.file
    elif case.slot in files:
        files[case.slot] = case.file
    layer = case.extra_args[1] if case.extra_args[:1] == ["--layer"] else None
    datasets = {r: open_dataset(p) for r, p in files.items()}
    lm = load_model(model, weights)
    Sweep(lm, datasets, layer, use_cache=False).run()


@pytest.mark.parametrize("name", NAMES)
def test_engine(name, corpus, small_lab, monkeypatch):
    root, cases = corpus
    case = cases[name]
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(root))  # a planted module would be importable
    if case.expect == "error":
        with pytest.raises(PruneLabError) as info:
            engine_open(case, small_lab, root)
        assert Path(info.value.path) == Path(case.file)
        assert re.search(case.message, info.value.message), info.value.message
        assert "\n" not in str(info.value)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine_open(case, small_lab, root)
        msgs = [str(w.message) for w in caught if isinstance(w.message, PruneLabWarning)]
        assert any(re.search(case.message, m) for m in msgs), msgs
    assert not (root / MARKER).exists()
    assert "prunelab_payload" not in sys.modules


def test_gui_subset_shows_dialogs_and_stays_usable(qtbot, corpus, small_lab, tmp_path):
    from PySide6.QtCore import QSettings

    from guiapp.mainwindow import MainWindow

    root, cases = corpus
    w = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    w.confirm_unsafe = lambda msg: False
    qtbot.addWidget(w)
    w.show()
    subset = [c for c in cases.values() if c.gui]
    assert len(subset) >= 6
    with qtbot.waitSignal(w.ctl.modelOpened, timeout=120_000):  # data are checked against the model
        w.ctl.open_model(small_lab.model)
    for case in subset:
        if case.slot == "weights":
            with qtbot.waitSignal(w.errorShown, timeout=120_000) as b:
                w.open_weights(case.file)
        elif case.slot == "model":
            with qtbot.waitSignal(w.errorShown, timeout=120_000) as b:
                w.ctl.open_model(case.file)
        else:
            with qtbot.waitSignal(w.errorShown, timeout=120_000) as b:
                w.ctl.open_data(case.file, role=case.slot)
        assert str(case.file) in b.args[0] and re.search(case.message, b.args[0]), b.args[0]
        assert w._error_box.isVisible()
        w._error_box.close()
    assert not (root / MARKER).exists()
    # still usable: a real sweep runs to the end
    with qtbot.waitSignal(w.ctl.modelOpened, timeout=120_000):
        w.ctl.open_model(small_lab.model)
    for role, p in small_lab.files.items():
        with qtbot.waitSignal(w.ctl.datasetChanged, timeout=120_000):
            w.ctl.open_data(p, role=role)
    with qtbot.waitSignal(w.ctl.sweepFinished, timeout=240_000):
        w.start_sweep()
    w.ctl.wait_idle()


def test_corpus_table_in_tests_readme_is_current(corpus):
    from tests.hostile_corpus import table

    readme = (ROOT / "tests" / "README.md").read_text()
    assert table(list(corpus[1].values())) in readme
