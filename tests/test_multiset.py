"""Several poisoned sets (several triggers, as the challenge's multi_trigger_multi_target BadNet):
``--poisoned-valid NAME=F`` repeated, one ASR per set (``asr_valid_<name>``, ``asr_valid`` their
highest), the target of each set read from its labels, G's detection per set; one set keeps
today's names; the window's poisoned slots as a list with one ASR curve per set."""

import csv
import json

import numpy as np
import pytest

from engine.core.vocabulary import ordered_roles, role_metric, set_metric_keys
from tests.helpers import random_images, write_dataset


@pytest.fixture(scope="module")
def second_trigger(small_lab, tmp_path_factory):
    """A second "trigger" for the small lab: images the model sends to one class, all labelled
    with it (its ASR starts at 100 %), for validation and test."""
    from engine.models.loading import load_model

    m = load_model(small_lab.model)
    rng = np.random.default_rng(11)
    x = random_images(rng, 700)
    y = np.argmax(m.model.predict(x.astype(np.float32), verbose=0), axis=1)
    k = int(np.bincount(y).argmax())
    xs = x[y == k][:120]
    root = tmp_path_factory.mktemp("second-trigger")
    return k, {"valid": write_dataset(root / "always_valid.h5", xs, np.full(len(xs), k)),
               "test": write_dataset(root / "always_test.h5", xs[::-1], np.full(len(xs), k))}


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def sweep(argv):
    from engine.cli.main import main

    return main(["sweep", "--no-models", "-q", *map(str, argv)])


def test_vocabulary_of_named_sets():
    roles = ["poisoned_test:b", "clean_valid", "poisoned_valid:x", "poisoned_valid:a"]
    assert ordered_roles(roles) == ["clean_valid", "poisoned_valid:x", "poisoned_valid:a", "poisoned_test:b"]
    assert role_metric("poisoned_valid:x") == "asr_valid_x" and role_metric("poisoned_valid") == "asr_valid"
    assert set_metric_keys(roles) == ["asr_valid_x", "asr_valid_a", "asr_test_b"]


def test_several_named_sets_one_asr_each_and_their_highest(small_lab, second_trigger, tmp_path):
    k, extra = second_trigger
    f = small_lab.files
    common = ["--model", small_lab.model, "--clean-valid", f["clean_valid"], "--clean-test", f["clean_test"]]
    assert sweep(common + ["--poisoned-valid", f"three={f['poisoned_valid']}", "--poisoned-valid",
                           f"always={extra['valid']}", "--poisoned-test", f"three={f['poisoned_test']}",
                           "--poisoned-test", f"always={extra['test']}", "--out", tmp_path / "multi"]) == 0
    multi = rows(tmp_path / "multi" / "metrics.csv")
    assert list(multi[0])[-4:] == ["asr_valid_three", "asr_valid_always", "asr_test_three", "asr_test_always"]
    # each set's ASR is what a sweep with that set alone measures
    for name, files in (("three", (f["poisoned_valid"], f["poisoned_test"])), ("always", (extra["valid"], extra["test"]))):
        assert sweep(common + ["--poisoned-valid", files[0], "--poisoned-test", files[1], "--out", tmp_path / name]) == 0
        alone = rows(tmp_path / name / "metrics.csv")
        assert [r[f"asr_valid_{name}"] for r in multi] == [r["asr_valid"] for r in alone]
        assert [r[f"asr_test_{name}"] for r in multi] == [r["asr_test"] for r in alone]
        assert [r["clean_valid_acc"] for r in multi] == [r["clean_valid_acc"] for r in alone]
    # the defender's number: a defense holds only when every trigger fails
    for r in multi:
        assert float(r["asr_valid"]) == max(float(r["asr_valid_three"]), float(r["asr_valid_always"]))
    assert float(multi[0]["asr_valid_always"]) == 100.0 and float(multi[0]["asr_valid_three"]) < 50
    s = json.loads((tmp_path / "multi" / "summary.json").read_text())
    targets = {role: v["target"] for role, v in s["poisoned_sets"].items()}
    assert targets == {"poisoned_valid:three": 3, "poisoned_valid:always": k, "poisoned_test:three": 3,
                       "poisoned_test:always": k}
    reached = [cp for cp in s["checkpoints"] if cp["step"] is not None]
    assert reached and all({"poisoned_test:three", "poisoned_test:always"} <= set(cp["evaluation"])
                           and "goodnet_flagged" in cp["evaluation"]["poisoned_test:always"] for cp in reached)
    assert "asr_valid_always" in s["baseline"]


def test_one_set_keeps_todays_names_even_when_named(small_lab, tmp_path):
    f = small_lab.files
    base = ["--model", small_lab.model, "--clean-valid", f["clean_valid"]]
    assert sweep(base + ["--poisoned-valid", f"sunglasses={f['poisoned_valid']}", "--out", tmp_path / "named"]) == 0
    assert sweep(base + ["--poisoned-valid", f["poisoned_valid"], "--out", tmp_path / "plain"]) == 0
    assert (tmp_path / "named" / "metrics.csv").read_text() == (tmp_path / "plain" / "metrics.csv").read_text()
    assert "poisoned_sets" not in json.loads((tmp_path / "named" / "summary.json").read_text())


@pytest.mark.parametrize("values, says", [
    (["bad name!={p}", "b={p}"], "a set's name is letters, digits"),
    (["a={p}", "a={q}"], "two poisoned sets are named 'a'"),
])
def test_bad_set_names_are_one_line_errors(small_lab, tmp_path, capsys, values, says):
    f = small_lab.files
    argv = ["--model", small_lab.model, "--clean-valid", f["clean_valid"], "--out", tmp_path / "o"]
    for v in values:
        argv += ["--poisoned-valid", v.format(p=f["poisoned_valid"], q=f["poisoned_test"])]
    assert sweep(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "o").exists()


def test_session_keeps_one_set_plain_and_several_named(tmp_path):
    from guiapp.session import Session

    class DS:
        def __init__(self, name):
            self.path = tmp_path / name

        def close(self):
            pass

    s = Session()
    s.put_dataset("poisoned_valid", DS("bd_valid.h5"))
    assert s.settle_sets() == []
    role = s.new_set_role("poisoned_valid", tmp_path / "lipstick.h5")
    s.put_dataset(role, DS("lipstick.h5"))
    assert s.settle_sets() == [("poisoned_valid", "poisoned_valid:bd_valid")]
    assert sorted(s.datasets) == ["poisoned_valid:bd_valid", "poisoned_valid:lipstick"]
    # a third poisoned file routed by its name joins the list instead of replacing a set
    assert s.role_for("poisoned_valid", tmp_path / "lipstick.h5") == "poisoned_valid:lipstick-2"
    s.clear_dataset("poisoned_valid:bd_valid")
    assert s.settle_sets() == [("poisoned_valid:lipstick", "poisoned_valid")]
    assert list(s.datasets) == ["poisoned_valid"]


def _record(step, **metrics):
    from engine.pruning.records import StepRecord

    return StepRecord(step, None, step / 10).with_metrics(metrics)


def test_curves_draw_one_asr_curve_per_set(qtbot):
    from guiapp.views.curves import CurvesView

    v = CurvesView()
    qtbot.addWidget(v)
    v.start(10, thresholds=(2, 4, 10))
    for s in range(4):
        v.add_record(_record(s, clean_valid_acc=90.0 - s, asr_valid_eyebrows=100.0 - 30 * s,
                             asr_valid_lipstick=80.0, asr_test_eyebrows=99.0))
    v._refresh()
    val, test = v.plots["valid"], v.plots["test"]
    assert list(val.set_curves) == ["asr_valid_eyebrows", "asr_valid_lipstick"]
    assert list(test.set_curves) == ["asr_test_eyebrows"]
    assert list(val.set_curves["asr_valid_eyebrows"].getData()[1]) == [100, 70, 40, 10]
    assert val.asr.getData()[0] is None or len(val.asr.getData()[0]) == 0  # no "highest" curve on top of them
    # the same trigger has the same colour in both plots, and the key names each
    pen = val.set_curves["asr_valid_eyebrows"].opts["pen"].color().name()
    assert test.set_curves["asr_test_eyebrows"].opts["pen"].color().name() == pen
    assert pen != val.set_curves["asr_valid_lipstick"].opts["pen"].color().name()
    assert "eyebrows" in v.key.text() and "lipstick" in v.key.text()
    assert "ASR eyebrows 40.00 %" in v.readout_text(val, 2) and "ASR lipstick 80.00 %" in v.readout_text(val, 2)
    assert v.records[2].asr_valid == 80.0  # the highest of the two at step 2


@pytest.mark.slow
def test_window_poisoned_slots_are_a_list(qtbot, win, small_lab, second_trigger):
    from tests.test_gui import LONG, open_lab

    k, extra = second_trigger
    open_lab(qtbot, win, small_lab)
    slots = win.left.slots
    win.ctl.add_poisoned_set(extra["valid"], "poisoned_valid", "always")
    qtbot.waitUntil(lambda: "poisoned_valid:always" in slots, timeout=LONG)
    # the set already there took its file's name; the plain slot stands aside
    assert "poisoned_valid:bd_valid" in slots and not slots["poisoned_valid"].isVisibleTo(win)
    assert slots["poisoned_valid:always"].title.text() == "<b>Poisoned validation · always</b>"
    assert f"all labelled {k}" in slots["poisoned_valid:always"].info.text()
    with qtbot.waitSignal(win.ctl.sweepFinished, timeout=LONG) as blocker:
        win.start_sweep()
    res = blocker.args[0]
    assert {"poisoned_valid:bd_valid", "poisoned_valid:always"} <= set(res.labels)
    assert list(win.curves.plots["valid"].set_curves) == ["asr_valid_bd_valid", "asr_valid_always"]
    assert win.curves.plots["valid"].set_curves["asr_valid_always"].getData()[1][0] == 100.0
    assert "always" in win.step_panel.label.text()
    # clearing one set leaves one: back to the plain slot and today's single ASR
    with qtbot.waitSignal(win.ctl.datasetChanged, timeout=LONG):
        win.ctl.clear_data("poisoned_valid:always")
    assert "poisoned_valid:always" not in slots and slots["poisoned_valid"].isVisibleTo(win)
    assert "poisoned_valid" in win.session.datasets and slots["poisoned_valid"].path is not None


@pytest.mark.slow
def test_two_poisoned_files_dropped_at_once_become_two_sets(qtbot, win, small_lab, second_trigger):
    from tests.test_gui import LONG, drop

    k, extra = second_trigger
    with qtbot.waitSignal(win.ctl.inputsReady, timeout=LONG):
        drop(win, small_lab.files["poisoned_valid"], extra["valid"])
    assert sorted(win.session.datasets) == ["poisoned_valid:always_valid", "poisoned_valid:bd_valid"]
    assert {win.session.datasets[r].target for r in win.session.datasets} == {3, k}
    assert win.left.slots["poisoned_valid:always_valid"].isVisibleTo(win)


def test_fine_tuning_measures_each_set(small_lab, second_trigger):
    from engine.io.datasets import LabDataset
    from engine.models.loading import load_model
    from engine.pruning.finetune import FineTune, FineTuneConfig

    k, extra = second_trigger
    ds = {"clean_valid": LabDataset(small_lab.files["clean_valid"]),
          "poisoned_valid:three": LabDataset(small_lab.files["poisoned_valid"]),
          "poisoned_valid:always": LabDataset(extra["valid"])}
    res = FineTune(load_model(small_lab.model), ds, "conv_3", [0, 1], 2,
                   FineTuneConfig(epochs=1, batch_size=32)).run()
    for r in res.records:
        assert set(r.sets) == {"asr_valid_three", "asr_valid_always"}
        assert r.asr_valid == max(r.sets.values())
    assert res.records[0].metric("asr_valid_always") > 50 > res.records[0].metric("asr_valid_three")


def test_the_add_trigger_dialog_names_the_set_and_refuses_a_taken_name(qtbot, small_lab):
    from PySide6.QtWidgets import QDialogButtonBox

    from guiapp.views.poisonsets import PoisonedSetDialog

    d = PoisonedSetDialog("poisoned_valid", str(small_lab.root), taken={"bd_valid"})
    qtbot.addWidget(d)
    ok = d.buttons.button(QDialogButtonBox.Ok)
    assert not ok.isEnabled() and "choose" in d.problem.text()
    d.path.setText(str(small_lab.files["clean_test"]))
    assert d.name.text() == "test" and ok.isEnabled()  # named after the file until the user types a name
    d.name.setText("bd_valid")
    assert not ok.isEnabled() and "already named" in d.problem.text()
    d.name.setText("lip stick")
    assert not ok.isEnabled() and "letters, digits" in d.problem.text()
    d.name.setText("lipstick")
    assert ok.isEnabled() and d.choice() == (small_lab.files["clean_test"], "lipstick")
