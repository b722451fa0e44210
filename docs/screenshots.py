"""Re-make every window screenshot in docs/ from the bundled demo (so a new demo, a new widget or
a new style is one command away from up-to-date pictures in the README).

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/screenshots.py [--only NAME,...] [--out docs]

It drives the real window through its controller's signals, the way the GUI tests do, and saves
``win.grab()`` with any open dialog painted in place. Without a display it falls back to Qt's
offscreen platform (fonts may then differ from a desktop's)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZE = (1400, 860)
WAIT_MS = 300_000


class Driver:
    def __init__(self, app, out: Path):
        self.app, self.out = app, out

    def window(self):
        from PySide6.QtCore import QSettings

        from guiapp.mainwindow import MainWindow

        ini = Path(tempfile.mkdtemp()) / "settings.ini"  # no recent files, default layout
        win = MainWindow(QSettings(str(ini), QSettings.IniFormat))
        win.confirm_unsafe = lambda msg: False
        win.resize(*SIZE)
        win.show()
        self.settle(200)
        return win

    def wait(self, signal, action, timeout_ms: int = WAIT_MS):
        """Run ``action`` and spin the event loop until ``signal`` fires; its arguments."""
        from PySide6.QtCore import QEventLoop, QTimer

        got: list = []
        loop = QEventLoop()

        def hit(*args):
            got.append(args)
            loop.quit()

        signal.connect(hit)
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        timer.start(timeout_ms)
        action()
        if not got:
            loop.exec()
        signal.disconnect(hit)
        if not got:
            raise TimeoutError(f"no {signal} within {timeout_ms / 1000:.0f} s")
        return got[0]

    def settle(self, ms: int = 600) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def until(self, cond, timeout_ms: int = 60_000) -> None:
        waited = 0
        while not cond():
            if waited > timeout_ms:
                raise TimeoutError("the window never got there")
            self.settle(100)
            waited += 100

    def shoot(self, win, name: str) -> None:
        from guiapp.app import grab_with_dialogs

        self.settle(700)
        path = self.out / name
        ok = grab_with_dialogs(win).save(str(path))
        print(f"{'saved' if ok else 'FAILED'} {path}", flush=True)

    def sweep(self, win, demo: bool = True):
        if demo:
            self.wait(win.ctl.inputsReady, win.ctl.open_demo)
        (res,) = self.wait(win.ctl.sweepFinished, win.start_sweep)
        ten = res.checkpoint_step(10.0)
        win.set_step(ten if ten is not None else res.steps)
        return res

    def close(self, win) -> None:
        from PySide6.QtWidgets import QDialog

        for d in win.findChildren(QDialog):
            d.close()
        win.ctl.wait_idle()
        win.close()
        self.settle(200)


def show(win, tab: str) -> None:
    from guiapp.app import TAB_INDEX

    win.tabs.setCurrentIndex(TAB_INDEX[tab])


def tabs(d: Driver) -> None:
    """The four tabs after the demo's sweep, the cursor at the 10 % checkpoint."""
    win = d.window()
    d.sweep(win)
    for tab, name in (("curves", "screenshot.png"), ("activations", "screenshot-activations.png"),
                      ("images", "screenshot-images.png"), ("results", "screenshot-results.png")):
        show(win, tab)
        d.shoot(win, name)
    d.close(win)


def validation_only(d: Driver) -> None:
    """The demo model with validation data only: the Test plot says why it is empty."""
    from engine.demo.generate import demo_paths

    paths = demo_paths("badnet")
    win = d.window()
    d.wait(win.ctl.modelOpened, lambda: win.ctl.open_model(paths.model))
    for role in ("clean_valid", "poisoned_valid"):
        d.wait(win.ctl.datasetChanged, lambda r=role: win.ctl.open_data(paths.datasets[r], role=r))
    d.sweep(win, demo=False)
    show(win, "curves")
    d.shoot(win, "screenshot-validation-only.png")
    d.close(win)


def rankings(d: Driver) -> None:
    """Several criteria overlaid on the curves, and the comparison table."""
    win = d.window()
    d.wait(win.ctl.inputsReady, win.ctl.open_demo)
    for name, box in win.ranking_panel.boxes.items():
        box.setChecked(name in ("activation", "l1", "clp", "random"))
    d.wait(win.ctl.rankingsFinished, win.start_sweep)
    show(win, "curves")
    d.shoot(win, "screenshot-rankings.png")
    show(win, "rankings")
    d.shoot(win, "screenshot-rankings-table.png")
    d.close(win)


def maps(d: Driver) -> None:
    """Grad-CAM over poisoned thumbnails with one face large (B's and B′'s maps), the mean maps,
    and the most trigger-active channel's maps in the Activations tab."""
    win = d.window()
    d.sweep(win)
    show(win, "images")
    win.images.dataset.setCurrentIndex(win.images.dataset.findData("poisoned_test"))
    model = win.images.model
    d.until(lambda: len(model.pixels) >= 10)
    d.wait(win.ctl.mapsRead, lambda: win.images.map.setCurrentIndex(win.images.map.findData("gradcam")))
    d.wait(win.ctl.imageMaps, lambda: win.images._open(model.index(0)))
    d.shoot(win, "screenshot-maps.png")
    win.images._dialog.close()
    d.wait(win.ctl.meanMaps, win.images.mean_btn.click)
    d.shoot(win, "screenshot-maps-mean.png")
    d.close(win)
    win = d.window()
    res = d.sweep(win)
    show(win, "activations")
    from engine.analysis.maps import top_difference_channels

    top = top_difference_channels(res.mean_activation, k=1)
    win.activations.picked = top[0] if top else 0
    d.wait(win.ctl.channelMaps, win.activations.channelMapsWanted.emit)
    d.shoot(win, "screenshot-maps-channel.png")
    d.close(win)


def photo(d: Driver) -> None:
    """One dropped face with sunglasses, opened large with G's verdict at the 10 % checkpoint."""
    import numpy as np
    from PIL import Image

    from engine.demo.generate import DemoSpec, bundled_info
    from engine.demo.faces import add_sunglasses, make_identity, render

    spec = DemoSpec(**bundled_info()["spec"])
    idents = [make_identity(np.random.default_rng([spec.seed, 0])) for _ in range(spec.identities)]
    face = add_sunglasses(render(idents[5], np.random.default_rng(99)))
    png = Path(tempfile.mkdtemp()) / "holiday_photo.png"
    Image.fromarray(face).save(png)
    win = d.window()
    d.sweep(win)
    d.wait(win.ctl.photoVerdicts, lambda: win.ctl.open_files([png]))
    d.shoot(win, "screenshot-photo.png")
    d.close(win)


def tradeoff(d: Driver) -> None:
    """The Trade-off tab: five criteria (random as five orders) on the demo, fine-pruned from the
    lab ranking's 10 % checkpoint (a single point), that step picked."""
    win = d.window()
    d.wait(win.ctl.inputsReady, win.ctl.open_demo)
    for name, box in win.ranking_panel.boxes.items():
        box.setChecked(name in ("activation", "l1", "clp", "anp", "random"))
    (done,) = d.wait(win.ctl.rankingsFinished, win.start_sweep)
    d.until(lambda: win.ctl.idle)
    res = done.results["activation"]
    k = res.checkpoint_step(10.0)
    k = k if k is not None else res.steps // 2
    win.set_step(k)
    d.wait(win.ctl.fineTuneFinished, lambda: win.fine_tune(k, epochs=5, ask=False))
    show(win, "tradeoff")
    win.tradeoff.set_current(win.session.ranking, k)
    d.shoot(win, "screenshot-tradeoff.png")
    d.close(win)


def images_poisoned(d: Driver) -> None:
    """The Images tab on poisoned test data at the step where the validation ASR is nearest 50 %
    (at the 10 % checkpoint the attack still works on nearly every face): red where B′ answers
    the attacker's target (the attack works), green where it resists, amber where G flags."""
    win = d.window()
    res = d.sweep(win)
    asr = [abs((r.asr_valid if r.asr_valid is not None else 999) - 50) for r in res.records]
    win.set_step(asr.index(min(asr)))
    show(win, "images")
    win.images.dataset.setCurrentIndex(win.images.dataset.findData("poisoned_test"))
    model = win.images.model
    d.until(lambda: len(model.pixels) >= min(60, len(model.indices)))
    d.shoot(win, "screenshot-images-poisoned.png")
    d.close(win)


def scan_repair(d: Driver, only=("scan", "repair")) -> None:
    """The Scan tab as a defender without poisoned data sees it: the demo model with clean
    validation and clean test only, the blind scan (label 0 flagged, its reversed trigger drawn),
    then "Use as poisoned data" (the poisoned slots say STAND-IN). Then the Repair tab after
    unlearning, the trigger filter and STRIP with the scan's trigger, evaluated on the demo's real
    poisoned files put back in the poisoned slots."""
    from engine.demo.generate import demo_paths

    paths = demo_paths("badnet")
    win = d.window()
    d.wait(win.ctl.modelOpened, lambda: win.ctl.open_model(paths.model))
    for role in ("clean_valid", "clean_test"):
        d.wait(win.ctl.datasetChanged, lambda r=role: win.ctl.open_data(paths.datasets[r], role=r))
    show(win, "scan")
    d.wait(win.scanner.scanFinished, win.scan_view.scan_btn.click)
    d.until(lambda: win.ctl.idle)
    d.wait(win.scanner.standinsReady, win.scan_view.use_btn.click)
    d.until(lambda: win.ctl.idle and "poisoned_test" in win.session.datasets)
    if "scan" in only:
        d.shoot(win, "screenshot-scan.png")
    if "repair" in only:
        for role in ("poisoned_valid", "poisoned_test"):  # the attacker's real files, for real numbers
            d.wait(win.ctl.datasetChanged, lambda r=role: win.ctl.open_data(paths.datasets[r], role=r))
        show(win, "repair")
        d.wait(win.repairer.repairFinished, win.repair_view.run_btn.click)
        d.until(lambda: win.ctl.idle)
        d.shoot(win, "screenshot-repair.png")
    d.close(win)


def multi_trigger(d: Driver) -> None:
    """Three triggers (benchmarks/multi_trigger.py's BadNet: sunglasses → 0, corner → 7, mouth band
    → 3), each trigger's poisoned validation and test file a named set: one ASR curve per set."""
    import json

    folder = ROOT / ".variants" / "multi3-i96"
    if not (folder / "multi.json").exists():
        print(f"skipped screenshot-multi-trigger.png: run benchmarks/multi_trigger.py first ({folder})")
        return
    info = json.loads((folder / "multi.json").read_text())
    win = d.window()
    sets = {"clean_valid": folder / "cl/valid.h5", "clean_test": folder / "cl/test.h5"}
    for trig in info["triggers"]:
        for split in ("valid", "test"):
            sets[f"poisoned_{split}:{trig.replace('-', '')}"] = folder / "bd" / f"{trig}_{split}.h5"
    d.wait(win.ctl.inputsReady, lambda: win.ctl.open_set(folder / "bd_net.h5", None, sets))
    d.sweep(win, demo=False)
    show(win, "curves")
    d.shoot(win, "screenshot-multi-trigger.png")
    d.close(win)


SHOTS = {"tabs": tabs, "validation-only": validation_only, "rankings": rankings, "maps": maps, "photo": photo,
         "tradeoff": tradeoff, "images-poisoned": images_poisoned, "multi-trigger": multi_trigger,
         "scan": lambda d: None, "repair": lambda d: None}  # both by scan_repair, in one window


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help=f"comma-separated, of: {', '.join(SHOTS)}")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp())  # the user's settings stay untouched
    from PySide6.QtWidgets import QApplication

    from engine.core.tfsetup import silence_native_logs

    silence_native_logs()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("PruneLab")
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SHOTS)
    unknown = [n for n in names if n not in SHOTS]
    if unknown:
        ap.error(f"unknown screenshot set {unknown[0]!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    d = Driver(app, args.out)
    for n in names:
        SHOTS[n](d)
    wanted = [n for n in ("scan", "repair") if n in names]
    if wanted:  # one scan serves both shots
        scan_repair(d, wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
