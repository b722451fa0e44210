"""Domain rules written once (engine.pruning.rules): zeroing a channel or a neuron, and labels
within the model's classes."""

import numpy as np
import pytest

from engine.core.errors import PruneLabError
from engine.pruning.rules import channel_mask, check_labels_in_range, zeroed_weights


def test_zeroing_a_conv_channel_and_a_dense_neuron_takes_kernel_slice_and_bias():
    rng = np.random.default_rng(0)
    conv = [rng.normal(size=(3, 3, 4, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)]
    dense = [rng.normal(size=(10, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)]
    for w, chans in ((conv, [1, 4]), (dense, [0, 3])):
        z = zeroed_weights(w, chans)
        assert np.all(z[0][..., chans] == 0) and np.all(z[1][chans] == 0)
        keep = [c for c in range(w[1].size) if c not in chans]
        assert np.array_equal(z[0][..., keep], w[0][..., keep]) and np.array_equal(z[1][keep], w[1][keep])
        assert np.all(w[0][..., chans] != 0)  # the originals are untouched copies
        assert list(channel_mask(w[1].size, chans)) == [0.0 if c in chans else 1.0 for c in range(w[1].size)]


@pytest.mark.parametrize("use_bias", [True, False])
def test_holding_channels_at_zero_zeroes_a_layers_variables_in_place(use_bias):
    """Training's "keep these channels zero": the layer's own kernel (and bias, if it has one)
    are zeroed at those channels and left alone elsewhere."""
    from engine.core.tfsetup import keras
    from engine.pruning.rules import hold_zero

    k = keras()
    layer = k.layers.Dense(5, use_bias=use_bias, bias_initializer="ones")
    layer.build((None, 4))
    before = [w.copy() for w in layer.get_weights()]
    hold_zero(layer, [1, 3])
    after = layer.get_weights()
    assert len(after) == (2 if use_bias else 1)
    for b, a in zip(before, after):
        assert np.all(a[..., [1, 3]] == 0)
        assert np.array_equal(a[..., [0, 2, 4]], b[..., [0, 2, 4]])


class Labelled:
    def __init__(self, labels, path="faces/valid.h5"):
        self.labels, self.path = np.asarray(labels), path


def test_labels_must_be_classes_of_the_model():
    check_labels_in_range(Labelled([0, 3, 11]), 12)
    with pytest.raises(PruneLabError, match=r"faces/valid.h5: labels go up to 12 but the model has only 12 classes \(0–11\)"):
        check_labels_in_range(Labelled([0, 12]), 12)
    check_labels_in_range(Labelled([]), 3)  # nothing to check
