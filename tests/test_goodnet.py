"""B' and G as files: the zeroed channels survive saving, and G loads in a bare process."""

import numpy as np
import pytest

from engine.io.datasets import LabDataset
from engine.core.errors import PruneLabError
from engine.pruning.rules import make_bprime, make_goodnet, save_model
from engine.models.loading import load_model
from engine.pruning.sweep import Sweep
from tests.helpers import run_bare


@pytest.fixture(scope="module")
def swept(small_lab):
    lm = load_model(small_lab.model)
    ds = {r: LabDataset(p, lm.input_hwc) for r, p in small_lab.files.items()}
    return lm, ds, Sweep(lm, ds, use_cache=False).run()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_bprime_round_trip_keeps_zeroed_channels(swept, tmp_path, suffix):
    lm, ds, res = swept
    k = 45
    bp = make_bprime(lm.model, "conv_3", res.pruned_channels(k))
    path = save_model(bp, tmp_path / f"B_prime{suffix}")
    back = load_model(path)
    kernel, bias = back.model.get_layer("conv_3").get_weights()
    pruned = res.pruned_channels(k)
    assert np.all(kernel[..., pruned] == 0) and np.all(bias[pruned] == 0)
    kept = sorted(set(range(60)) - set(pruned))
    assert np.any(kernel[..., kept] != 0)
    x = ds["clean_test"].read(0, ds["clean_test"].n)
    assert np.array_equal(np.argmax(back.model.predict(x, verbose=0), 1), res.predictions["clean_test"][k])
    # the original model was not touched
    assert np.any(lm.model.get_layer("conv_3").get_weights()[0][..., pruned] != 0)


def test_goodnet_loads_in_a_bare_process_and_gives_the_same_labels(swept, tmp_path):
    lm, ds, res = swept
    k = 40
    g = make_goodnet(lm.model, make_bprime(lm.model, "conv_3", res.pruned_channels(k)))
    path = save_model(g, tmp_path / "G.keras")
    x = np.concatenate([ds["clean_test"].read(0, 120), ds["poisoned_test"].read(0, 120)])
    np.save(tmp_path / "x.npy", x)
    expected = np.concatenate([res.goodnet_labels("clean_test", k)[:120], res.goodnet_labels("poisoned_test", k)[:120]])
    code = ("import numpy as np, keras\n"
            "g = keras.models.load_model(sys.argv[1])\n"
            "assert sys.modules['engine'] is None and sys.modules['guiapp'] is None\n"
            "y = np.argmax(g.predict(np.load(sys.argv[2]), verbose=0), axis=1)\n"
            "np.save(sys.argv[3], y)\n")
    r = run_bare(code, [path, tmp_path / "x.npy", tmp_path / "y.npy"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(tmp_path / "y.npy")
    assert np.array_equal(got, expected)
    assert np.any(got == 12) and np.any(got != 12)  # some flagged, some answered
    # and PruneLab itself recognises it as a G
    assert load_model(path).is_goodnet


def test_goodnet_refuses_h5_and_saves_never_overwrite_inputs(swept, tmp_path, small_lab):
    lm, ds, res = swept
    g = make_goodnet(lm.model, make_bprime(lm.model, "conv_3", [0]))
    with pytest.raises(PruneLabError, match=r"save G as \.keras"):
        save_model(g, tmp_path / "G.h5")
    before = small_lab.model.read_bytes()
    with pytest.raises(PruneLabError, match="opened input"):
        save_model(lm.model, small_lab.model, inputs=[small_lab.model])
    assert small_lab.model.read_bytes() == before
    assert list(tmp_path.iterdir()) == []
