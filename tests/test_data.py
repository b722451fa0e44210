"""The lab's dataset files in every layout users hold."""

import numpy as np
import pytest

from engine.io.datasets import LabDataset, guess_role
from engine.core.errors import PruneLabError
from tests.helpers import random_images, write_dataset


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8"])
@pytest.mark.parametrize("label_dtype", ["float32", "int64"])
def test_layouts_and_dtypes_give_the_same_images(tmp_path, layout, dtype, label_dtype):
    rng = np.random.default_rng(0)
    x = random_images(rng, 37)
    y = rng.integers(0, 1283, 37)
    p = write_dataset(tmp_path / "valid.h5", x, y, layout, dtype, label_dtype)
    with LabDataset(p, expected_hwc=(55, 47, 3)) as ds:
        assert ds.n == 37
        assert ds.layout == layout
        assert ds.image_shape == (55, 47, 3)
        assert ds.labels.dtype == np.int64 and np.array_equal(ds.labels, y)
        assert (ds.label_min, ds.label_max) == (y.min(), y.max())
        # chunked reading returns model-ready float32 NHWC images, in order
        got = np.concatenate([b for _, b in ds.batches(batch_size=10)])
        assert got.dtype == np.float32 and got.shape == (37, 55, 47, 3)
        assert np.array_equal(got, x.astype(np.float32))
        assert np.array_equal(ds.image_uint8(5), x[5])
        assert np.array_equal(ds.take([30, 2, 2]), x[[30, 2, 2]].astype(np.float32))


def test_layout_guess_without_a_model(tmp_path):
    rng = np.random.default_rng(1)
    p = write_dataset(tmp_path / "a.h5", random_images(rng, 4, (32, 32, 3)), [0, 1, 2, 3], "NHWC")
    with LabDataset(p) as ds:
        assert ds.layout == "NHWC" and ds.image_shape == (32, 32, 3)


def test_model_mismatch_is_named(tmp_path):
    rng = np.random.default_rng(2)
    p = write_dataset(tmp_path / "gray.h5", random_images(rng, 3, (55, 47, 1)), [0, 1, 2])
    with pytest.raises(PruneLabError, match=r"gray\.h5: images have 1 channel.*expects 3"):
        LabDataset(p, expected_hwc=(55, 47, 3))
    p2 = write_dataset(tmp_path / "small.h5", random_images(rng, 3, (32, 32, 3)), [0, 1, 2])
    with pytest.raises(PruneLabError, match=r"images are 32×32×3, the model expects 55×47×3"):
        LabDataset(p2, expected_hwc=(55, 47, 3))


def test_poisoned_file_knows_its_target(tmp_path):
    rng = np.random.default_rng(3)
    p = write_dataset(tmp_path / "bd_valid.h5", random_images(rng, 6), np.zeros(6))
    with LabDataset(p) as ds:
        assert ds.single_target and ds.target == 0


@pytest.mark.parametrize("name,role", [
    ("cl/valid.h5", "clean_valid"), ("cl/test.h5", "clean_test"), ("bd/bd_valid.h5", "poisoned_valid"),
    ("bd/bd_test.h5", "poisoned_test"), ("poisoned_val.h5", "poisoned_valid"),
    ("sunglasses_test.h5", "poisoned_test"), ("clean_validation.h5", "clean_valid"),
    ("mystery.h5", None)])
def test_role_guess_from_names(tmp_path, name, role):
    assert guess_role(tmp_path / name) == role


def test_role_guess_from_content(tmp_path):
    rng = np.random.default_rng(4)
    p = write_dataset(tmp_path / "x_test.h5", random_images(rng, 5), np.full(5, 7))
    with LabDataset(p) as ds:
        assert guess_role(p, ds) == "poisoned_test"
