"""Shared fixtures: a private cache dir, Qt offscreen, small lab-format files built here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("prunelab-cache")
    old = os.environ.get("PRUNELAB_CACHE_DIR")
    os.environ["PRUNELAB_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("PRUNELAB_CACHE_DIR", None)
    else:
        os.environ["PRUNELAB_CACHE_DIR"] = old



@pytest.fixture(scope="session")
def small_lab(tmp_path_factory):
    """A random-weight DeepID (12 classes) saved as a Keras 2 .h5, and four lab datasets."""
    from tests.helpers import make_small_lab

    return make_small_lab(tmp_path_factory.mktemp("small-lab"))


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A tiny demo regenerated from scratch (8 identities, 2 epochs)."""
    from engine.demo.generate import DemoSpec, generate_demo

    out = tmp_path_factory.mktemp("tiny-demo")
    spec = DemoSpec.tiny()
    spec.pruning_aware = True
    info = generate_demo(spec, out, log=lambda t: None)
    return out, info


@pytest.fixture
def win(qtbot, tmp_path):
    """The real main window, offscreen, with its own settings file; unsafe models refused."""
    from PySide6.QtCore import QSettings

    from guiapp.mainwindow import MainWindow

    w = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    w.confirm_unsafe = lambda msg: False
    qtbot.addWidget(w)
    w.show()
    yield w
    w.ctl.wait_idle()
