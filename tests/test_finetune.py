"""Fine-pruning: pruned channels stay zero, held-out images never train, cancel, and on the
tiny demo it lowers the attack success rate that pruning alone leaves."""

import csv
import json

import numpy as np
import pytest

from engine.io.datasets import LabDataset
from engine.core.errors import Cancelled
from engine.pruning.finetune import EpochRecord, FineTune, FineTuneConfig, split_clean_valid
from engine.models.loading import load_model
from engine.core.state import JobState
from engine.pruning.sweep import Sweep


def demo_inputs(tiny_demo):
    out, _ = tiny_demo
    lm = load_model(out / "bd_net.h5")
    files = {"clean_valid": "cl/valid.h5", "poisoned_valid": "bd/bd_valid.h5", "clean_test": "cl/test.h5",
             "poisoned_test": "bd/bd_test.h5"}
    return lm, {r: LabDataset(out / f, lm.input_hwc) for r, f in files.items()}


def test_split_is_disjoint_and_seeded():
    a, b = split_clean_valid(100, 0.2, seed=3)
    assert len(b) == 20 and len(a) == 80 and not set(a) & set(b)
    assert np.array_equal(split_clean_valid(100, 0.2, seed=3)[1], b)


def test_pruned_channels_stay_zero_and_holdout_never_trains(tiny_demo, monkeypatch):
    lm, ds = demo_inputs(tiny_demo)
    requested = []
    real_take = LabDataset.take

    def spy(self, idx):
        requested.append((self.path.name, np.asarray(idx).copy()))
        return real_take(self, idx)

    monkeypatch.setattr(LabDataset, "take", spy)
    pruned = [3, 7, 11, 19, 42]
    ft = FineTune(lm, ds, "conv_3", pruned, 5, FineTuneConfig(epochs=2, learning_rate=1e-2, batch_size=16))
    res = ft.run()
    kernel, bias = res.model.get_layer("conv_3").get_weights()
    assert np.all(kernel[..., pruned] == 0) and np.all(bias[pruned] == 0)
    kept = [c for c in range(60) if c not in pruned]
    before = lm.model.get_layer("conv_3").get_weights()[0]
    assert not np.allclose(kernel[..., kept], before[..., kept])  # it did train
    trained = np.concatenate([i for name, i in requested if name == "valid.h5"])
    assert set(trained) == set(res.train_indices)
    assert not set(trained) & set(res.holdout_indices)
    assert [r.epoch for r in res.records] == [0, 1, 2]


def test_cancel_between_batches(tiny_demo):
    lm, ds = demo_inputs(tiny_demo)
    state = JobState()
    ft = FineTune(lm, ds, "conv_3", [1, 2], 2, FineTuneConfig(epochs=5, batch_size=8), state)
    with pytest.raises(Cancelled):
        for ev in ft.events():
            if isinstance(ev, EpochRecord) and ev.epoch == 1:
                state.cancel()
    assert [r.epoch for r in ft.result.records] == [0, 1]


def test_fine_pruning_lowers_asr_on_the_tiny_demo(tiny_demo):
    lm, ds = demo_inputs(tiny_demo)
    sweep = Sweep(lm, ds, use_cache=False).run()
    k = sweep.checkpoint_step(10.0) or sweep.steps // 2
    res = FineTune(lm, ds, sweep.layer, sweep.pruned_channels(k), k,
                   FineTuneConfig(epochs=8, learning_rate=1e-3, batch_size=16, seed=0)).run()
    pruning_only, fine = res.records[0], res.records[-1]
    assert pruning_only.asr_test == pytest.approx(sweep.records[k].asr_test)
    assert fine.asr_test < pruning_only.asr_test
    assert fine.asr_valid < pruning_only.asr_valid


def test_cli_finetune_writes_models_and_comparison(small_lab, tmp_path):
    from engine.cli.main import main

    sweep_dir, ft_dir = tmp_path / "sweep", tmp_path / "ft"
    f = small_lab.files
    assert main(["sweep", "--model", str(small_lab.model), "--clean-valid", str(f["clean_valid"]),
                 "--poisoned-test", str(f["poisoned_test"]), "--out", str(sweep_dir), "-q"]) == 0
    assert main(["finetune", "--from-sweep", str(sweep_dir), "--step", "20", "--epochs", "1",
                 "--out", str(ft_dir), "-q"]) == 0
    s = json.loads((ft_dir / "summary.json").read_text())
    assert s["step"] == 20 and len(s["pruned_channels"]) == 20
    assert set(s["pruning_only"]) == set(s["fine_pruned"])
    for name in ("B_prime_finetuned_step20.h5", "G_finetuned_step20.keras", "finetune.csv", "finetune.png"):
        assert (ft_dir / name).is_file()
    g = load_model(ft_dir / "G_finetuned_step20.keras")
    assert g.is_goodnet


def test_finetune_step_with_a_step_size_above_one_prunes_the_records_channels(small_lab, tmp_path):
    """With --step-size 10, record k prunes more than k channels: finetune --step (a record or
    a checkpoint) prunes exactly the channels the sweep's record (and its B′) prunes."""
    from engine.cli.main import main

    sweep_dir = tmp_path / "sweep"
    f = small_lab.files
    assert main(["sweep", "--model", str(small_lab.model), "--clean-valid", str(f["clean_valid"]),
                 "--step-size", "10", "--thresholds", "4", "--out", str(sweep_dir), "-q"]) == 0
    s = json.loads((sweep_dir / "summary.json").read_text())
    rows = list(csv.DictReader((sweep_dir / "metrics.csv").open()))
    pruned = [int(r["pruned"]) for r in rows]  # metrics.csv and summary.json carry the same counts
    assert pruned == s["pruned"] and pruned[:3] == [0, 10, 20] and s["step_size"] == 10
    order = s["ranking"]["order"]
    ft = tmp_path / "ft"
    assert main(["finetune", "--from-sweep", str(sweep_dir), "--step", "2", "--epochs", "1",
                 "--out", str(ft), "-q"]) == 0
    assert json.loads((ft / "summary.json").read_text())["pruned_channels"] == order[:20]
    cp = s["checkpoints"][0]
    if cp["step"] is not None:  # the checkpoint's B′ and finetune --step 4% prune the same channels
        assert cp["pruned"] == len(cp["pruned_channels"]) == pruned[cp["step"]]
        ft4 = tmp_path / "ft4"
        assert main(["finetune", "--from-sweep", str(sweep_dir), "--step", "4%", "--epochs", "1",
                     "--out", str(ft4), "-q"]) == 0
        assert json.loads((ft4 / "summary.json").read_text())["pruned_channels"] == cp["pruned_channels"]


def test_a_dense_layer_sweeps_and_fine_tunes_end_to_end(small_lab, tmp_path):
    """A hidden Dense layer with poisoned validation data: the sweep finishes with its backdoor
    map (drawn at the last Conv2D before the layer), and finetune keeps the neurons pruned."""
    from engine.cli.main import main

    sweep_dir, ft = tmp_path / "sweep", tmp_path / "ft"
    f = small_lab.files
    assert main(["sweep", "--model", str(small_lab.model), "--layer", "fc_2", "--clean-valid",
                 str(f["clean_valid"]), "--poisoned-valid", str(f["poisoned_valid"]), "--step-size", "20",
                 "--no-models", "--out", str(sweep_dir), "-q"]) == 0
    assert (sweep_dir / "backdoor_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((sweep_dir / "summary.json").read_text())
    assert s["layer"] == "fc_2" and s["pruned"][-1] == 160
    assert main(["finetune", "--from-sweep", str(sweep_dir), "--step", "3", "--epochs", "1",
                 "--out", str(ft), "-q"]) == 0
    got = json.loads((ft / "summary.json").read_text())["pruned_channels"]
    assert got == s["ranking"]["order"][:s["pruned"][3]] and len(got) == s["pruned"][3]
    bp = load_model(ft / "B_prime_finetuned_step3.h5").model.get_layer("fc_2").get_weights()
    assert not np.any(bp[0][:, got]) and not np.any(bp[1][got])  # still exactly zero after training


def test_the_record_to_channels_rule_reads_old_summaries_safely():
    from engine.core.errors import PruneLabError
    from engine.pruning.records import pruned_count, summary_pruned_per_record

    assert pruned_count([0, 10, 20, 21], 3) == 21 and pruned_count(None, 7) == 7
    with pytest.raises(PruneLabError):
        pruned_count([0, 10], 2)
    assert summary_pruned_per_record({"pruned": [0, 4, 8], "checkpoints": []}) == [0, 4, 8]
    # a summary written before the counts were recorded: fine with step size 1 ...
    assert summary_pruned_per_record({"checkpoints": [{"step": 3, "pruned_channels": [5, 1, 2]}]}) is None
    # ... refused (not guessed) when its checkpoints show records pruning more than their index
    with pytest.raises(PruneLabError, match="run the sweep again"):
        summary_pruned_per_record({"checkpoints": [{"step": 2, "pruned_channels": [5, 1, 2, 7]}]})
