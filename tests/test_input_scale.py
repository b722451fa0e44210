"""The model's input convention (issue: the CSAW-HackML-2020 models take pixels / 255): detected
from clean accuracy, honoured by the sweep, eval, G and its eval script. The same network saved in
both conventions (first layer's kernel × 255 for the /255 one) must give the same answers."""

import csv
import json
import warnings

import numpy as np
import pytest

from engine.core.errors import PruneLabError, PruneLabWarning
from tests.helpers import run_bare_script, unit_scale_twin, write_images


@pytest.fixture(scope="module")
def both(small_lab, tmp_path_factory):
    """The small lab's network, and the same network for pixels / 255 (a .keras file)."""
    root = tmp_path_factory.mktemp("scale")
    return small_lab, unit_scale_twin(small_lab.model, root / "unit_net.keras")


def test_auto_detects_each_convention_and_says_so(both):
    from engine.io.datasets import open_dataset
    from engine.models.loading import load_model
    from engine.models.scale import decide

    lab, unit = both
    ds = open_dataset(lab.files["clean_valid"])
    raw_model, unit_model = load_model(lab.model), load_model(unit)
    d_raw, d_unit = decide(raw_model, "auto", ds), decide(unit_model, "auto", ds)
    assert (d_raw.scale, d_raw.source) == (255.0, "detected")
    assert (d_unit.scale, d_unit.source) == (1.0, "detected")
    assert unit_model.input_scale == 1.0
    assert d_unit.acc_unit > 80 and d_unit.acc_raw < d_unit.acc_unit - 10
    assert d_unit.line().startswith("input scale: pixels / 255 (detected: clean accuracy")
    # the flag settles it, whatever the data say
    assert decide(unit_model, "255", ds).scale == 255.0 and unit_model.input_scale == 255.0
    with pytest.raises(PruneLabError, match="use 255"):
        decide(unit_model, "100", ds)


def test_without_labelled_data_raw_pixels_are_kept_with_a_warning(both):
    from engine.models.loading import load_model
    from engine.models.scale import decide

    _, unit = both
    m = load_model(unit)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        d = decide(m, "auto", None)
    assert d.scale == 255.0 and d.source == "default"
    assert any(isinstance(w.message, PruneLabWarning) and "--input-scale 1" in str(w.message) for w in got)


def _metrics(folder):
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if k not in ("channel",) and v != ""}
                for row in csv.DictReader(f)]


@pytest.mark.slow
def test_same_network_in_both_conventions_gives_the_same_sweep_and_g(both, tmp_path, capfd):
    from engine.cli.main import main

    lab, unit = both
    files = lab.files
    common = ["--clean-valid", files["clean_valid"], "--poisoned-valid", files["poisoned_valid"],
              "--clean-test", files["clean_test"], "--no-cache"]
    assert main(["sweep", "--model", str(lab.model), *map(str, common), "--out", str(tmp_path / "raw")]) == 0
    assert main(["sweep", "--model", str(unit), *map(str, common), "--out", str(tmp_path / "unit")]) == 0
    err = capfd.readouterr().err
    assert "input scale: pixels / 255 (detected" in err
    raw_s = json.loads((tmp_path / "raw" / "summary.json").read_text())
    unit_s = json.loads((tmp_path / "unit" / "summary.json").read_text())
    assert raw_s["input_scale"] == 255.0 and unit_s["input_scale"] == 1.0
    assert raw_s["ranking"]["order"] == unit_s["ranking"]["order"]
    a, b = _metrics(tmp_path / "raw"), _metrics(tmp_path / "unit")
    assert len(a) == len(b)
    n = 300  # images per file: one image is 0.33 points; the first layer's rounding may move one
    for ra, rb in zip(a, b):
        for k in ra:
            assert abs(ra[k] - rb[k]) <= 100.0 / n + 1e-9, (k, ra, rb)
    # G keeps B's convention: the same answers on PNG files, from prunelab eval and the eval script
    from engine.io.datasets import open_dataset

    ds = open_dataset(files["clean_test"])
    pngs = write_images(tmp_path / "png", ds.take(np.arange(12)).astype(np.uint8),
                        [f"img_{i}.png" for i in range(12)])
    answers = {}
    for name in ("raw", "unit"):
        assert main(["eval", "--model", str(tmp_path / name / "G_10.keras"), "--image", *map(str, pngs)]) == 0
        out = capfd.readouterr().out.splitlines()[1:]
        answers[name] = [line.split(": ", 1)[1] for line in out[:12]]
        script = run_bare_script(tmp_path / name / "G_10_eval.py", pngs, tmp_path)
        assert script.returncode == 0, script.stderr
        printed = [int(v) for v in script.stdout.split()]
        assert [f"class {v}" if v != lab.n_classes else f"{v} (backdoor suspected)" for v in printed] == answers[name]
    assert answers["raw"] == answers["unit"]
