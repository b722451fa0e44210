"""A softmax in any form (Dense(activation='softmax'), a Softmax layer, Activation('softmax'))
or none (a logits model): one rule (engine.models.logits) for G, ANP and the maps."""

import numpy as np
import pytest

from engine.io.datasets import LabDataset
from engine.models.loading import LoadedModel
from tests.helpers import random_images, write_dataset

HWC = (14, 12, 3)
N_CLASSES = 5
FORMS = ("dense_softmax", "softmax_layer", "activation_softmax", "logits")


def build(form: str, seed: int = 3, scale: float = 1.0):
    """The same small network (same weights for every form), ending in ``form``."""
    from engine.core.tfsetup import keras

    k = keras()
    L = k.layers
    k.utils.set_random_seed(seed)
    x = k.Input(HWC, name="image")
    h = L.Conv2D(6, 3, activation="relu", name="conv")(x)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Flatten(name="flat")(h)
    h = L.Dense(10, activation="relu", name="hidden")(h)
    if form == "dense_softmax":
        out = L.Dense(N_CLASSES, activation="softmax", name="out")(h)
    else:
        out = L.Dense(N_CLASSES, name="out")(h)
        if form == "softmax_layer":
            out = L.Softmax(name="probs")(out)
        elif form == "activation_softmax":
            out = L.Activation("softmax", name="probs")(out)
    m = k.Model(x, out, name=f"net_{form}")
    rng = np.random.default_rng(seed)  # identical weights whatever the form
    m.set_weights([(rng.standard_normal(w.shape) * (0.05 if w.ndim > 1 else 0.1)).astype(np.float32) * scale
                   if i == len(m.get_weights()) - 2 else
                   (rng.standard_normal(w.shape) * (0.05 if w.ndim > 1 else 0.1)).astype(np.float32)
                   for i, w in enumerate(m.get_weights())])
    return m


def logits_by_hand(m, x):
    """The last Dense layer's pre-activation, from its input (numpy)."""
    from engine.core.tfsetup import keras

    feat = keras().Model(m.inputs[0], m.get_layer("hidden").output)(x).numpy()
    w, b = m.get_layer("out").get_weights()
    return feat @ w + b


@pytest.fixture(scope="module")
def images():
    return random_images(np.random.default_rng(0), 40, HWC).astype(np.float32)


@pytest.mark.parametrize("form", FORMS)
def test_the_rule_finds_the_logits_and_whether_the_output_is_probabilities(form, images):
    from engine.models.logits import answers_probabilities, logits_function, logits_of

    m = build(form)
    assert answers_probabilities(m) == (form != "logits")
    assert logits_of(m).kind == {"dense_softmax": "dense", "logits": "output"}.get(form, "input")
    z = np.asarray(logits_function(m)(images))
    assert z == pytest.approx(logits_by_hand(m, images), abs=1e-4)


@pytest.mark.parametrize("form", FORMS)
def test_goodnet_scores_are_bs_probabilities_whatever_the_softmax_form(form, images):
    """G's scores where B and B′ agree are B's probabilities (softmax applied exactly once);
    its labels are the rule on labels."""
    from engine.pruning.rules import goodnet_labels, make_bprime, make_goodnet

    m = build(form)
    bp = make_bprime(m, "hidden", [0, 1, 2, 3, 4])
    g = np.asarray(make_goodnet(m, bp)(images))
    z = logits_by_hand(m, images)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    b_lab, bp_lab = np.argmax(m.predict(images, verbose=0), 1), np.argmax(bp.predict(images, verbose=0), 1)
    want = goodnet_labels(b_lab, bp_lab, N_CLASSES)
    assert np.array_equal(np.argmax(g, axis=1), want)
    agree = b_lab == bp_lab
    assert agree.any()
    assert g[agree, :N_CLASSES] == pytest.approx(p[agree], abs=1e-5)


def test_anp_trains_on_the_logits_whatever_the_softmax_form(tmp_path, images):
    """ANP's loss is the cross-entropy of the pre-softmax values: the same network ends in any
    softmax form (or none) and gets the same masks."""
    from engine.pruning.criteria import ANPConfig, anp_ranking

    labels = np.argmax(logits_by_hand(build("logits"), images), axis=1)
    path = write_dataset(tmp_path / "valid.h5", images, labels)
    cfg = ANPConfig(iterations=15, batch_size=16, images=40)
    scores = {}
    for form in FORMS:
        m = build(form)
        lm = LoadedModel(m, tmp_path / f"{form}.keras", None, "test", HWC, N_CLASSES)
        scores[form] = anp_ranking(lm, LabDataset(path, HWC), "hidden", cfg, use_cache=False).scores
    assert np.count_nonzero(scores["logits"] < 1)  # the masks moved
    for form in FORMS[:-1]:
        assert scores[form] == pytest.approx(scores["logits"], abs=1e-4), form


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_maps_explain_the_logits_whatever_the_softmax_form(method, images):
    from engine.analysis.maps import MapMaker

    got = {f: MapMaker(build(f), "conv", method).explain(images[:6]) for f in FORMS}
    for f in FORMS[:-1]:
        assert np.array_equal(got[f][1], got["logits"][1])
        assert got[f][0] == pytest.approx(got["logits"][0], abs=1e-4)


@pytest.mark.parametrize("form", ["logits", "dense_softmax"])
def test_fine_tuning_trains_on_the_cross_entropy_of_the_logits(form, tmp_path, images):
    """Fine-pruning's loss is the cross-entropy of the class scores: a logits model's output goes
    through the softmax once (from_logits), a softmax model's output is not softmaxed again."""
    from engine.pruning.finetune import FineTune, FineTuneConfig
    from engine.pruning.rules import make_bprime

    m = build(form)
    labels = np.arange(len(images)) % N_CLASSES
    ds = {"clean_valid": LabDataset(write_dataset(tmp_path / "valid.h5", images, labels), HWC)}
    lm = LoadedModel(m, tmp_path / f"{form}.keras", None, "test", HWC, N_CLASSES)
    pruned = [0, 1, 2]
    ft = FineTune(lm, ds, "hidden", pruned, 3, FineTuneConfig(epochs=1, batch_size=64))  # one batch
    for _ in ft.events():
        pass
    x = lm.model_input(ds["clean_valid"].take(ft.train_idx))
    out = np.asarray(make_bprime(m, "hidden", pruned)(x), np.float64)
    if form == "logits":
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    want = -np.mean(np.log(out[np.arange(len(x)), labels[ft.train_idx]]))
    assert ft.result.records[1].loss == pytest.approx(want, rel=1e-4)
