"""A small BadNet for the Scan and Repair tabs' tests: 10 classes of 16×16 images told apart by
colour, a yellow 4×4 corner patch sends any image to label 0; trained here in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers import write_dataset

HW = (16, 16)
TARGET = 0
COLOURS = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [150, 150, 150], [200, 200, 60],
                    [60, 200, 200], [200, 60, 200], [110, 40, 40], [40, 110, 40], [40, 40, 110]], np.float32)


def patch_trigger(label: int = TARGET):
    from engine.analysis.trigger import Trigger

    mask = np.zeros(HW, np.float32)
    mask[11:15, 11:15] = 1.0
    pattern = np.zeros(HW + (3,), np.float32)
    pattern[11:15, 11:15] = (255.0, 255.0, 0.0)
    return Trigger(mask, pattern, label)


def _images(rng, labels):
    x = COLOURS[labels][:, None, None, :] + rng.normal(0, 20, (len(labels),) + HW + (3,))
    return np.clip(np.rint(x), 0, 255).astype(np.float32)


def make_badnet(root: Path, seed: int = 3, poison: bool = True) -> dict:
    """The model (``bd_net.keras``) and lab files cl/valid.h5, cl/test.h5 (and bd/bd_test.h5)."""
    from engine.analysis.trigger import stamp
    from engine.core.tfsetup import keras

    k = keras()
    k.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    n = len(COLOURS)
    t = patch_trigger()
    y = rng.integers(0, n, 3000)
    x = _images(rng, y)
    if poison:
        pois = rng.random(len(y)) < 0.15
        x[pois] = stamp(x[pois], t)
        y = np.where(pois, TARGET, y)
    from tests.helpers import tiny_cnn

    m = tiny_cnn(HW, n, "tab_badnet")
    m.fit(x, y, epochs=6, batch_size=64, verbose=0)
    root.mkdir(parents=True, exist_ok=True)
    m.save(root / "bd_net.keras")
    yv, yt = rng.integers(0, n, 400), rng.integers(0, n, 200)
    files = {"clean_valid": write_dataset(root / "cl" / "valid.h5", _images(rng, yv), yv),
             "clean_test": write_dataset(root / "cl" / "test.h5", _images(rng, yt), yt)}
    yp = rng.integers(1, n, 200)
    files["poisoned_test"] = write_dataset(root / "bd" / "bd_test.h5", np.rint(stamp(_images(rng, yp), t)),
                                           np.full(200, TARGET))
    return {"model": root / "bd_net.keras", "files": files, "n_classes": n}
