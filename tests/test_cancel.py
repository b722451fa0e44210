"""Cancelling at any point leaves no partial file: sweeps, saves, and the CLI's output."""

import pytest

from engine.cli.main import main
from engine.core.errors import Cancelled


def lab_args(lab, out):
    f = lab.files
    return ["sweep", "--model", str(lab.model), "--clean-valid", str(f["clean_valid"]), "--poisoned-valid",
            str(f["poisoned_valid"]), "--clean-test", str(f["clean_test"]), "--poisoned-test",
            str(f["poisoned_test"]), "--out", str(out), "-q"]


@pytest.mark.parametrize("at_step", [0, 7, 30, 55])
def test_ctrl_c_during_the_sweep_writes_nothing(small_lab, tmp_path, monkeypatch, at_step):
    import engine.pruning.sweep as sweep_mod

    real = sweep_mod.Sweep._fast_steps

    def interrupted(self, *a, **k):
        for item in real(self, *a, **k):
            if isinstance(item, tuple) and item[1] == at_step and item[0] == "poisoned_valid":
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(sweep_mod.Sweep, "_fast_steps", interrupted)
    out = tmp_path / "out"
    assert main(lab_args(small_lab, out) + ["--no-cache"]) == 130
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("nth", [1, 3, 6])
def test_ctrl_c_while_saving_models_writes_nothing(small_lab, tmp_path, monkeypatch, nth):
    import engine.pruning.rules as pruning

    real = pruning.save_model
    calls = {"n": 0}

    def save(model, path, inputs=()):
        calls["n"] += 1
        if calls["n"] == nth:
            with open(path, "wb") as fh:  # a half-written file in the staging folder
                fh.write(b"partial")
            raise KeyboardInterrupt
        return real(model, path, inputs)

    monkeypatch.setattr(pruning, "save_model", save)
    out = tmp_path / "out"
    assert main(lab_args(small_lab, out)) == 130
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_drawing_figures_writes_nothing(small_lab, tmp_path, monkeypatch):
    import engine.report.figures as report

    def boom(fig, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "save_figure", boom)
    assert main(lab_args(small_lab, tmp_path / "out")) == 130
    assert list(tmp_path.iterdir()) == []


def test_existing_output_folder_keeps_its_files_when_cancelled(small_lab, tmp_path, monkeypatch):
    import engine.report.figures as report

    out = tmp_path / "out"
    out.mkdir()  # a previous run's folder: a new run would replace its files, a cancelled one does not
    (out / "summary.json").write_text("{}")
    (out / "old.png").write_text("old")
    monkeypatch.setattr(report, "save_figure", lambda fig, path: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(lab_args(small_lab, out)) == 130
    assert sorted(p.name for p in out.iterdir()) == ["old.png", "summary.json"]
    assert (out / "summary.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("when", ["before", "midway"])
def test_atomic_save_cancelled_leaves_no_temp_file(tmp_path, when):
    from engine.io.atomic import atomic_path

    target = tmp_path / "model.keras"
    with pytest.raises(Cancelled):
        with atomic_path(target) as tmp:
            if when == "midway":
                tmp.write_bytes(b"half a model")
            raise Cancelled()
    assert list(tmp_path.iterdir()) == []


def test_saving_over_an_existing_file_is_all_or_nothing(tmp_path):
    from engine.io.atomic import atomic_path

    target = tmp_path / "G.keras"
    target.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new but broken")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["G.keras"]
