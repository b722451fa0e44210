"""The headless CLI: the files a sweep writes, eval of G, and one-line errors."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.report import CSV_HEADER

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def lab_args(lab):
    f = lab.files
    return ["--model", lab.model, "--clean-valid", f["clean_valid"], "--poisoned-valid", f["poisoned_valid"],
            "--clean-test", f["clean_test"], "--poisoned-test", f["poisoned_test"]]


def test_sweep_writes_the_report_and_models(small_lab, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sweep", *map(str, lab_args(small_lab)), "--thresholds", "2,4,10", "--out", str(out)]) == 0
    rows = list(csv.reader((out / "metrics.csv").open()))
    assert rows[0] == CSV_HEADER
    assert ",".join(rows[0]) == "step,channel,fraction_pruned,clean_valid_acc,asr_valid,clean_test_acc,asr_test"
    assert len(rows) == 62 and rows[1][0] == "0" and rows[1][1] == "" and rows[1][2] == "0"
    assert float(rows[-1][2]) == 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"baseline", "ranking", "checkpoints"}
    assert len(summary["ranking"]["order"]) == 60
    assert [c["threshold"] for c in summary["checkpoints"]] == [2.0, 4.0, 10.0]
    for cp in summary["checkpoints"]:
        if cp["step"] is not None:
            assert (out / cp["b_prime"]).is_file() and (out / cp["goodnet"]).is_file()
    for fig in ("curves_valid.png", "curves_test.png", "bprime_bars.png", "goodnet_bars.png"):
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    printed = capsys.readouterr().out
    assert "baseline: clean validation accuracy" in printed


def test_eval_on_a_saved_goodnet_reports_the_flagged_share(small_lab, tmp_path):
    out = tmp_path / "run"
    assert main(["sweep", *map(str, lab_args(small_lab)), "--thresholds", "10", "--out", str(out), "-q"]) == 0
    cp = json.loads((out / "summary.json").read_text())["checkpoints"][0]
    r = run_cli("eval", "--model", out / cp["goodnet"], "--data", small_lab.files["poisoned_test"],
                "--data", small_lab.files["clean_test"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
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


def test_thresholds_argument_is_checked(small_lab, tmp_path):
    r = run_cli("sweep", *lab_args(small_lab), "--thresholds", "2,x", "--out", tmp_path / "o")
    assert r.returncode == 2 and "comma-separated" in r.stderr
