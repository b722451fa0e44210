"""Starting the window (``prunelab``, ``prunelab gui [FILES…]``, ``prunelab-gui``), and the
automation flags used for screenshots and smoke tests.

The window is shown before TensorFlow is imported; models load in a worker thread."""

from __future__ import annotations

import argparse
import os
import sys
import time

TAB_INDEX = {"curves": 0, "activations": 1, "images": 2, "results": 3}


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

    from engine.tfsetup import silence_native_logs

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


class Automation:
    """``--run``, ``--screenshot``, ``--tab``, ``--quit``; the first launch sweeps the demo."""

    def __init__(self, win, args, status: dict, app):
        from PySide6.QtCore import QTimer

        self.win, self.args, self.status, self.app, self.timer = win, args, status, app, QTimer
        ctl = win.ctl
        ready = ctl.demoReady if (args.demo or not args.files) else ctl.modelOpened
        if args.quit:
            win.errorShown.connect(self.failed)
        if args.run or not (args.demo or args.files or args.screenshot or args.quit):
            ctl.sweepFinished.connect(self.finish)
            ready.connect(lambda *_: QTimer.singleShot(100, win.start_sweep))
        elif args.screenshot or args.quit:
            ready.connect(lambda *_: self.finish())

    def finish(self, res=None) -> None:
        win, args = self.win, self.args
        if args.tab:
            win.tabs.setCurrentIndex(TAB_INDEX[args.tab])
        if res is not None:
            ten = res.checkpoint_step(10.0)
            win.set_step(ten if ten is not None else res.steps)
        self.timer.singleShot(600, self.shoot)

    def shoot(self) -> None:
        args = self.args
        if args.screenshot:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            ok = self.win.grab().save(str(args.screenshot))
            print(f"prunelab: screenshot {'saved to' if ok else 'FAILED:'} {args.screenshot}", flush=True)
            self.status["code"] = 0 if ok else 1
        if args.quit:
            self.app.quit()

    def failed(self, msg: str) -> None:
        print(f"prunelab: error: {msg}", file=sys.stderr, flush=True)
        self.status["code"] = 2
        self.app.quit()
