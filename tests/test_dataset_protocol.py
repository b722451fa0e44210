"""One Dataset protocol: the lab's HDF5 files, image folders and the repair's in-memory stand-in
answer the same questions the same way, so the analyses need not probe them."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import PruneLabError
from engine.io.protocol import Dataset
from tests.helpers import random_images, write_dataset, write_images

HWC = (12, 10, 3)


def _three(tmp_path):
    from engine.analysis.repair import ArrayDataset
    from engine.io.datasets import LabDataset
    from engine.io.images import ImageSet

    rng = np.random.default_rng(0)
    x, y = random_images(rng, 6, HWC), np.array([0, 1, 2, 0, 1, 2])
    lab = LabDataset(write_dataset(tmp_path / "d.h5", x, y))
    folder = ImageSet(write_images(tmp_path / "imgs", x, [f"{i}/img_{k}.png" for k, i in enumerate(y)])[0]
                      .parents[1])
    return x, y, [lab, folder, ArrayDataset(x, y, "stand-in")]


def test_every_dataset_kind_is_a_dataset_and_reads_the_same(tmp_path):
    x, y, sets = _three(tmp_path)
    for ds in sets:
        assert isinstance(ds, Dataset), type(ds).__name__
        ds.expect(HWC)
        assert ds.n == 6 and tuple(ds.image_shape) == HWC and ds.has_labels
        # an image folder lists its files by class folder: compare through its labels' order
        order = np.argsort(np.asarray(ds.labels), kind="stable")
        got = np.concatenate([b for _, b in ds.batches(4)])
        assert got.dtype == np.float32 and got.shape == (6,) + HWC
        want = x[np.argsort(y, kind="stable")]
        np.testing.assert_array_equal(got[order], want)
        np.testing.assert_array_equal(ds.take([5, 0]), got[[5, 0]])
    for ds in sets[:2]:
        ds.close()


def test_a_set_without_a_size_check_is_not_a_dataset():
    class NoExpect:
        path, n, has_labels, image_shape, labels = "x", 0, True, HWC, np.zeros(0, np.int64)

        def batches(self, batch_size=1, prefetch=False):
            return iter(())

        def take(self, indices):
            return np.zeros((0,) + HWC, np.float32)

    assert not isinstance(NoExpect(), Dataset)


def test_the_stand_in_refuses_a_model_of_another_size():
    from engine.analysis.repair import ArrayDataset

    ds = ArrayDataset(np.zeros((2,) + HWC, np.float32), np.zeros(2), "stand-in")
    with pytest.raises(PruneLabError, match="stand-in: images are"):
        ds.expect((55, 47, 3))
