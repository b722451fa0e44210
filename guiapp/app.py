"""Starting the window (``prunelab``, ``prunelab gui [FILES…]``, ``prunelab-gui``), and the
automation flags used for screenshots and smoke tests.

The window is shown before TensorFlow is imported; models load in a worker thread."""

from __future__ import annotations

import argparse
import os
import sys
import time

from guiapp.kinds import Tab  # noqa: E402

TAB_INDEX = {t.name.lower(): t for t in Tab}  # the --tab option's words


def process_age() -> float | None:
    """Seconds since this process started (Linux), to time the start-up honestly."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_window(args: argparse.Namespace, first_launch: bool = False) -> int:
    """Show the window, open what ``args`` names, run the automation it asks for."""
    t0 = time.perf_counter()
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from engine.core.tfsetup import silence_native_logs

    silence_native_logs()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("PruneLab")
    app.setOrganizationName("PruneLab")
    try:
        from importlib.resources import as_file, files

        with as_file(files("resources.icons") / "prunelab.png") as icon:
            app.setWindowIcon(QIcon(str(icon)))
    except (OSError, ModuleNotFoundError):
        pass
    from guiapp.mainwindow import MainWindow

    win = MainWindow()
    app.aboutToQuit.connect(win.ctl.shutdown)  # no thread outlives the window
    win.show()
    app.processEvents()
    if args.smoke_test:
        age = process_age()
        since = f"{age:.2f} s after the process started" if age is not None else \
            f"{time.perf_counter() - t0:.2f} s after main()"
        print(f"prunelab: window shown {since} (TensorFlow imported: {'tensorflow' in sys.modules})", flush=True)
        QTimer.singleShot(3000, app.quit)
        app.exec()
        return 0
    status = {"code": 0}
    win.automation = Automation(win, args, status, app)  # kept: its methods are connected slots
    ctl = win.ctl
    if args.demo or first_launch:
        ctl.open_demo("badnet")
    elif args.files:
        ctl.open_files(args.files)
    app.exec()
    return status["code"]


def grab_with_dialogs(win):
    """The window's picture with its open dialogs painted where they stand on screen."""
    from PySide6.QtGui import QPainter
    from PySide6.QtWidgets import QDialog

    shot = win.grab()
    painter = QPainter(shot)
    for d in win.findChildren(QDialog):
        if d.isVisible():
            painter.drawPixmap(d.frameGeometry().topLeft() - win.frameGeometry().topLeft(), d.grab())
    painter.end()
    return shot


class Automation:
    """``--run``, ``--screenshot``, ``--tab``, ``--quit``; the first launch sweeps the demo."""

    def __init__(self, win, args, status: dict, app):
        from PySide6.QtCore import QTimer

        self.win, self.args, self.status, self.app, self.timer = win, args, status, app, QTimer
        if args.quit:
            win.errorShown.connect(self.failed)
        self.sweep = args.run or not (args.demo or args.files or args.screenshot or args.quit)
        if self.sweep or args.screenshot or args.quit:
            win.ctl.inputsReady.connect(self._ready)

    def _ready(self) -> None:
        """The first inputs are open: sweep them (once), or go straight to the screenshot."""
        self.win.ctl.inputsReady.disconnect(self._ready)
        if self.args.rankings:
            names = [n.strip() for n in self.args.rankings.split(",") if n.strip()]
            for name, box in self.win.ranking_panel.boxes.items():
                box.setChecked(name in names)
        if self.sweep:
            self.win.ctl.sweepFinished.connect(self._swept)
            self.timer.singleShot(100, self.win.start_sweep)
        else:
            self.finish()

    def _swept(self, res) -> None:
        self.win.ctl.sweepFinished.disconnect(self._swept)
        self.finish(res)

    def finish(self, res=None) -> None:
        win, args = self.win, self.args
        if args.tab:
            win.tabs.setCurrentIndex(TAB_INDEX[args.tab])
        if res is not None:
            ten = res.checkpoint_step(10.0)
            win.set_step(ten if ten is not None else res.steps)
        if res is not None and args.demo and args.files:  # photos judged after the demo's sweep
            win.ctl.photoVerdicts.connect(self._judged)
            win.ctl.open_files(args.files)
            return
        self.timer.singleShot(600, self.shoot)

    def _judged(self, _verdicts) -> None:
        self.win.ctl.photoVerdicts.disconnect(self._judged)
        self.timer.singleShot(800, self.shoot)

    def shoot(self) -> None:
        args = self.args
        if args.screenshot:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            ok = grab_with_dialogs(self.win).save(str(args.screenshot))
            print(f"prunelab: screenshot {'saved to' if ok else 'FAILED:'} {args.screenshot}", flush=True)
            self.status["code"] = 0 if ok else 1
        if args.quit:
            self.app.quit()

    def failed(self, msg: str) -> None:
        print(f"prunelab: error: {msg}", file=sys.stderr, flush=True)
        self.status["code"] = 2
        self.app.quit()
