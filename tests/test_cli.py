"""The headless CLI: the files a sweep writes, eval of G, and one-line errors."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.report.figures import CSV_HEADER

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "engine.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def lab_args(lab):
    f = lab.files
    return ["--model", lab.model, "--clean-valid", f["clean_valid"], "--poisoned-valid", f["poisoned_valid"],
            "--clean-test", f["clean_test"], "--poisoned-test", f["poisoned_test"]]


def test_sweep_writes_the_report_and_models(small_lab, tmp_path, capsys):
    import numpy as np

    from engine.models.loading import load_model

    out = tmp_path / "run"
    assert main(["sweep", *map(str, lab_args(small_lab)), "--thresholds", "2,4,10", "--out", str(out)]) == 0
    rows = list(csv.reader((out / "metrics.csv").open()))
    assert rows[0] == CSV_HEADER
    # the lab's columns first, then the channels pruned per row (step size 1: the step itself)
    assert ",".join(rows[0]) == "step,channel,fraction_pruned,clean_valid_acc,asr_valid,clean_test_acc,asr_test,pruned"
    assert [int(r[-1]) for r in rows[1:]] == [int(r[0]) for r in rows[1:]]
    assert len(rows) == 62 and rows[1][0] == "0" and rows[1][1] == "" and rows[1][2] == "0"
    assert float(rows[-1][2]) == 1.0
    summary = json.loads((out / "summary.json").read_text())
    order = summary["ranking"]["order"]
    assert sorted(order) == list(range(60))
    assert [int(r[1]) for r in rows[2:]] == order  # step s prunes the s-th channel of the ranking
    # the ranking is the lab's: mean clean-validation activation, lowest first
    means = summary["ranking"]["mean_activation"]["clean_valid"]
    assert [means[c] for c in order] == sorted(means)
    clean = [float(r[3]) for r in rows[1:]]
    assert summary["baseline"]["clean_valid_acc"] == pytest.approx(clean[0])
    assert [c["threshold"] for c in summary["checkpoints"]] == [2.0, 4.0, 10.0]
    original = load_model(small_lab.model).model.get_layer("conv_3").get_weights()
    for cp in summary["checkpoints"]:
        drops = [(clean[0] - a) / clean[0] * 100 for a in clean]
        first = next((i for i, d in enumerate(drops) if d >= cp["threshold"] - 1e-9), None)
        assert cp["step"] == first  # the first step reaching the drop, from the CSV itself
        if cp["step"] is None:
            continue
        assert cp["pruned_channels"] == order[:cp["step"]]
        assert cp["metrics"]["clean_valid_acc"] == pytest.approx(clean[cp["step"]])
        kernel, bias = load_model(out / cp["b_prime"]).model.get_layer("conv_3").get_weights()
        pruned = cp["pruned_channels"]
        kept = [c for c in range(60) if c not in pruned]
        assert np.all(kernel[..., pruned] == 0) and np.all(bias[pruned] == 0)
        assert np.array_equal(kernel[..., kept], original[0][..., kept])
        g = load_model(out / cp["goodnet"])
        assert g.is_goodnet and g.n_classes == summary["n_classes"] + 1
    for fig in ("curves_valid.png", "curves_test.png", "bprime_bars.png", "goodnet_bars.png"):
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    printed = capsys.readouterr().out
    assert "baseline: clean validation accuracy" in printed


def test_eval_on_a_saved_goodnet_reports_the_flagged_share(small_lab, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sweep", *map(str, lab_args(small_lab)), "--thresholds", "10", "--out", str(out), "-q"]) == 0
    cp = json.loads((out / "summary.json").read_text())["checkpoints"][0]
    capsys.readouterr()
    assert main(["eval", "--model", str(out / cp["goodnet"]), "--data", str(small_lab.files["poisoned_test"]),
                 "--data", str(small_lab.files["clean_test"])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "G with flag class 12" in lines[0]
    flagged = float(lines[1].split("flagged as backdoor ")[1].rstrip(" %"))
    assert flagged == pytest.approx(cp["evaluation"]["poisoned_test"]["goodnet_flagged"], abs=0.006)


def test_errors_are_one_line_exit_2_and_write_nothing(small_lab, tmp_path):
    out = tmp_path / "never"
    bad = tmp_path / "bd_test.h5"
    bad.write_text("this is not HDF5")
    r = run_cli("sweep", *lab_args(small_lab)[:-2], "--poisoned-test", bad, "--out", out)
    assert r.returncode == 2
    assert r.stderr.strip() == f"prunelab: error: {bad}: is not an HDF5 file (expected a dataset (.h5 with 'data' and 'label'))"
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bd_test.h5"]


def test_out_folder_may_not_replace_an_input(small_lab, tmp_path):
    r = run_cli("sweep", *lab_args(small_lab), "--out", small_lab.model)
    assert r.returncode == 2 and "exists and is not a folder" in r.stderr


@pytest.mark.parametrize("text, words", [("2,x", "'x' is not a number"), ("2,2", "given twice"),
                                         ("0,4", "outside")])
def test_thresholds_argument_is_checked(small_lab, tmp_path, text, words):
    r = run_cli("sweep", *lab_args(small_lab), "--thresholds", text, "--out", tmp_path / "o")
    assert r.returncode == 2 and words in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("prunelab: error: ")  # no usage block
    assert not (tmp_path / "o").exists()


def test_help_and_argparse_refusals_read_plainly(tmp_path):
    r = run_cli("sweep", "--help")
    assert r.returncode == 0 and "K|P%" in r.stdout and "%%" not in r.stdout
    for args in (["sweep", "--demo", "--out", tmp_path / "o", "--random-seeds", "x"], ["eval", "--data"],
                 ["sweep", "--demo"]):
        r = run_cli(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("prunelab: error: ") and "usage:" not in r.stderr


def test_no_display_is_one_line_and_exit_2(tmp_path):
    """Plain `prunelab` on a Linux machine without a display: Qt would abort the process
    (exit 134, its message hidden); PruneLab says what to do instead."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is Linux's")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "guiapp.launcher"], capture_output=True, text=True, env=env,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "no display" in line
    assert "prunelab sweep --demo --out demo-run" in line and "xvfb-run" in line and "xcb" in line
    from guiapp.launcher import display_problem

    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({}, "darwin") is None


def test_prunelab_command_dispatches_from_one_place(tmp_path):
    """`prunelab COMMAND` runs the engine's command; `prunelab --help` lists them; an unknown
    word is one line and exit 2; nothing of this imports Qt."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import sys; from guiapp.launcher import main; rc = main(sys.argv[1:]); "
            "assert 'PySide6' not in sys.modules, 'Qt imported'; sys.exit(rc)")

    def launch(*args):
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=120)

    r = launch("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("sweep", "eval", "demo", "cache", "finetune"))
    r = launch("cache", "info")
    assert r.returncode == 0 and "entries" in r.stdout
    r = launch("sweeep")
    assert r.returncode == 2 and r.stderr.strip().startswith("prunelab: error: unknown command 'sweeep'")


def test_weights_alone_build_the_labs_deepid(small_lab, tmp_path):
    out = tmp_path / "w"
    f = small_lab.files
    assert main(["sweep", "--weights", str(small_lab.weights), "--clean-valid", str(f["clean_valid"]),
                 "--out", str(out), "--no-models", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layer"] == "conv_3" and summary["n_classes"] == small_lab.n_classes
    r = run_cli("sweep", "--clean-valid", f["clean_valid"], "--out", tmp_path / "none")
    assert r.returncode == 2 and "--weights W" in r.stderr


def test_model_and_weights_are_accepted_alike_by_every_command(small_lab, tmp_path, capsys):
    """--weights alone (the lab's DeepID) works for sweep, finetune (also from a sweep made that
    way), eval and maps, and --model is accepted by finetune."""
    f = small_lab.files
    sweep = tmp_path / "w"
    assert main(["sweep", "--weights", str(small_lab.weights), "--clean-valid", str(f["clean_valid"]),
                 "--out", str(sweep), "--no-models", "-q"]) == 0
    ft = tmp_path / "ft"
    assert main(["finetune", "--from-sweep", str(sweep), "--step", "3", "--epochs", "1", "--out", str(ft), "-q"]) == 0
    assert len(json.loads((ft / "summary.json").read_text())["pruned_channels"]) == 3
    ft2 = tmp_path / "ft2"
    assert main(["finetune", "--from-sweep", str(sweep), "--model", str(small_lab.model), "--step", "3",
                 "--epochs", "1", "--out", str(ft2), "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", "--weights", str(small_lab.weights), "--data", str(f["clean_test"])]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["maps", "--weights", str(small_lab.weights), "--data", str(f["clean_test"]), "--limit", "4",
                 "--out", str(tmp_path / "maps"), "-q"]) == 0
    assert (tmp_path / "maps" / "maps.npz").is_file()


def test_rerun_into_an_output_folder_leaves_only_that_runs_files(small_lab, tmp_path):
    f = small_lab.files
    out = tmp_path / "run"
    assert main(["sweep", *map(str, lab_args(small_lab)), "--out", str(out), "-q"]) == 0
    assert (out / "backdoor_map.png").is_file() and (out / "B_prime_2.h5").is_file()
    # again, without poisoned data and without models: nothing of the first run is left
    assert main(["sweep", "--model", str(small_lab.model), "--clean-valid", str(f["clean_valid"]),
                 "--out", str(out), "--no-models", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bprime_bars.png", "curves_valid.png", "goodnet_bars.png",
                                                     "metrics.csv", "summary.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old files left
    # another command's output folder is not replaced: the sweep stays as it was
    before = sorted(p.name for p in out.iterdir())
    assert main(["maps", "--model", str(small_lab.model), "--data", str(f["clean_valid"]), "--out", str(out)]) == 2
    r = run_cli("finetune", "--from-sweep", out, "--step", "1", "--out", out)
    assert r.returncode == 2 and "holds a 'prunelab sweep' output" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    # a folder holding the user's own files is refused up front, and left alone
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    r = run_cli("sweep", "--model", small_lab.model, "--clean-valid", f["clean_valid"], "--out", mine, "-q")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "did not write" in r.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_replacing_a_previous_output_never_deletes_an_input(tmp_path):
    from engine.report.outputs import staged_output

    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    (out / "old.png").write_bytes(b"old")
    (out / "data").mkdir()
    (out / "data" / "valid.h5").write_bytes(b"input")
    with staged_output(out, inputs=[out / "data" / "valid.h5"]) as stage:
        (stage / "summary.json").write_text('{"new": 1}')
    assert sorted(p.name for p in out.iterdir()) == ["data", "summary.json"]
    assert (out / "data" / "valid.h5").read_bytes() == b"input" and "new" in (out / "summary.json").read_text()
