"""Starting the window: ``prunelab`` / ``prunelab gui [FILES…]`` / ``prunelab-gui``.

The window is shown before TensorFlow is imported; models load in a worker thread."""

from __future__ import annotations

import argparse
import os
import sys
import time


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


def parse(argv):
    from engine.cli import add_gui_arguments

    p = argparse.ArgumentParser(prog="prunelab gui", description="Open the PruneLab window.")
    return add_gui_arguments(p).parse_args(argv)


def main(argv=None, default_demo: bool | None = None) -> int:
    t0 = time.perf_counter()
    args = parse(sys.argv[1:] if argv is None else argv)
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
    except Exception:
        pass
    from guiapp.mainwindow import MainWindow

    win = MainWindow()
    win.show()
    app.processEvents()
    shown = time.perf_counter() - t0
    status = {"code": 0}

    if args.smoke_test:
        tf_loaded = "tensorflow" in sys.modules
        age = process_age()
        since = f"{age:.2f} s after the process started" if age is not None else f"{shown:.2f} s after main()"
        print(f"prunelab: window shown {since} (TensorFlow imported: {tf_loaded})", flush=True)
        QTimer.singleShot(3000, app.quit)
        app.exec()
        return 0

    tabs = {"curves": 0, "activations": 1, "images": 2, "results": 3}

    def finish_automation(res=None):
        if args.tab:
            win.tabs.setCurrentIndex(tabs.get(args.tab, 0))
        if res is not None:
            ten = res.checkpoint_step(10.0)
            win.set_step(ten if ten is not None else res.steps)

        def shoot():
            if args.screenshot:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                ok = win.grab().save(str(args.screenshot))
                print(f"prunelab: screenshot {'saved to' if ok else 'FAILED:'} {args.screenshot}", flush=True)
                status["code"] = 0 if ok else 1
            if args.quit:
                app.quit()

        QTimer.singleShot(600, shoot)

    def failed(msg):
        print(f"prunelab: error: {msg}", file=sys.stderr, flush=True)
        if args.quit:
            status["code"] = 2
            app.quit()

    if args.quit:
        win.errorShown.connect(failed)
    if args.run:
        win.sweepFinished.connect(finish_automation)
        ready = win.demoReady if args.demo else win.modelLoaded
        ready.connect(lambda *_: QTimer.singleShot(100, win.start_sweep))
    elif args.screenshot or args.quit:
        (win.demoReady if args.demo else win.modelLoaded).connect(lambda *_: finish_automation())
    if args.demo:
        win.open_demo("badnet")
    elif args.files:
        win.open_files(args.files)
    elif default_demo or (default_demo is None and argv is None and not sys.argv[1:]):
        # plain `prunelab`: open the bundled demo and sweep it, so the first launch shows the
        # whole story (the sweep takes seconds; everything stays interactive meanwhile)
        win.demoReady.connect(lambda: QTimer.singleShot(100, win.start_sweep))
        win.open_demo("badnet")
    app.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
