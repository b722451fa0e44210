"""Does the window stay responsive during a sweep? (not a test; prints numbers)

Runs the real main window, starts a 10 ms QTimer on the GUI thread, runs a sweep (cold:
the activation cache is cleared first) and prints the longest gap between timer ticks,
the 99th percentile, and how often the curves were redrawn while steps streamed in.

    python benchmarks/gui_responsiveness.py --demo
    python benchmarks/gui_responsiveness.py --data /tmp/bench   # the real-scale files of sweep_speed.py --keep
    python benchmarks/gui_responsiveness.py --demo --maps       # then Grad-CAM over 4 pages of thumbnails
    python benchmarks/gui_responsiveness.py --multi .variants/multi3-i96   # three poisoned sets per split
                                                                # (benchmarks/multi_trigger.py builds it)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--data", type=Path, help="folder written by sweep_speed.py --keep")
    ap.add_argument("--multi", type=Path, help="folder written by multi_trigger.py: three named poisoned sets")
    ap.add_argument("--warm", action="store_true", help="keep the activation cache")
    ap.add_argument("--maps", action="store_true", help="after the sweep, draw Grad-CAM maps on 4 pages of thumbnails")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if not args.warm:
        os.environ["PRUNELAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="prunelab-gui-bench-")
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from engine.core.tfsetup import silence_native_logs
    from guiapp.mainwindow import MainWindow

    silence_native_logs()
    app = QApplication.instance() or QApplication([])
    win = MainWindow(QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.IniFormat))
    win.show()
    ticks: list[float] = []
    redraws: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    arrivals: list[float] = []
    win.ctl.stepRecord.connect(lambda rec: arrivals.append(time.perf_counter()))
    real_refresh = win.curves._refresh

    def counted():
        real_refresh()
        redraws.append(time.perf_counter())

    win.curves._redraw.timeout.disconnect()
    win.curves._redraw.timeout.connect(counted)
    state = {}

    if os.environ.get("BENCH_DEBUG") == "stacks":  # where every thread is while the GUI thread stalls
        import threading
        import traceback

        gui_id = threading.get_ident()

        def watch():
            while True:
                time.sleep(0.02)
                last = ticks[-1] if ticks else state.get("t0")
                if last and timer.isActive() and time.perf_counter() - last > 0.09:
                    frames = sys._current_frames()
                    print(f"--- stalled {1000 * (time.perf_counter() - last):.0f} ms")
                    for tid, fr in frames.items():
                        tag = "GUI" if tid == gui_id else tid
                        print(f"[{tag}]", "".join(traceback.format_stack(fr, limit=6)[-6:]))
                    time.sleep(0.1)

        threading.Thread(target=watch, daemon=True).start()

    def start():
        if not args.warm:
            from engine.io import cache

            cache.clear()
        if os.environ.get("BENCH_SCALE"):  # e.g. 255: no input-scale measurement when the sweep starts
            win.model_panel.scale.setCurrentIndex(win.model_panel.scale.findData(os.environ["BENCH_SCALE"]))
        ticks.clear()
        timer.start()
        state["t0"] = time.perf_counter()
        if os.environ.get("BENCH_DEBUG") == "profile":  # what the GUI thread does to start a sweep
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(win.start_sweep)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        else:
            win.start_sweep()

    def finished(res):
        state["t1"] = time.perf_counter()
        state["res"] = res
        state["sweep_ticks"] = list(ticks)
        if not args.maps:
            timer.stop()
            QTimer.singleShot(50, app.quit)
            return
        # second phase: Grad-CAM over pages of thumbnails (computed in the worker, drawn here)
        ticks.clear()
        state["pages"] = 0
        state["m0"] = time.perf_counter()
        win.tabs.setCurrentWidget(win.images)
        win.images.dataset.setCurrentIndex(win.images.dataset.findData("poisoned_test"))
        QTimer.singleShot(1000, lambda: win.images.map.setCurrentIndex(win.images.map.findData("gradcam")))

    def page_done(_page):
        state["pages"] += 1
        if state["pages"] >= 4:
            state["m1"] = time.perf_counter()
            timer.stop()
            QTimer.singleShot(300, app.quit)
        else:
            QTimer.singleShot(200, lambda: win.images._page(+1))

    win.ctl.mapsRead.connect(page_done)

    win.ctl.sweepFinished.connect(finished)
    win.ctl.error.connect(lambda m: (print("failed:", m), app.quit()))
    win.ctl.inputsReady.connect(lambda: QTimer.singleShot(200, start))
    if args.demo:
        win.ctl.open_demo()
    elif args.multi:
        info = json.loads((args.multi / "multi.json").read_text())
        sets = {"clean_valid": args.multi / "cl/valid.h5", "clean_test": args.multi / "cl/test.h5"}
        for trig in info["triggers"]:
            for split in ("valid", "test"):
                sets[f"poisoned_{split}:{trig.replace('-', '')}"] = args.multi / "bd" / f"{trig}_{split}.h5"
        win.ctl.open_set(args.multi / "bd_net.h5", None, sets)
    else:
        spec = json.loads((args.data / "spec.json").read_text())
        win.ctl.open_set(spec["model"], None, spec["data"])
    app.exec()
    import numpy as np

    if args.maps:
        g = np.diff(np.array(ticks)) * 1000
        print(f"maps: {state['pages']} pages of Grad-CAM thumbnails in {state['m1'] - state['m0']:.1f} s; 10 ms timer: "
              f"longest gap {g.max():.1f} ms, 99th percentile {np.percentile(g, 99):.1f} ms, median {np.median(g):.1f} ms")
    ticks = state["sweep_ticks"]
    gaps = np.diff(np.array(ticks)) * 1000
    res = state["res"]
    steps_t = np.array(redraws)
    span = steps_t[-1] - steps_t[0] if len(steps_t) > 1 else float("nan")
    n_images = sum(len(v) for v in res.labels.values())
    sets = [r for r in res.labels if ":" in r]
    if sets:
        print(f"poisoned sets: {', '.join(sets)}; curves: " + ", ".join(
            f"{split} {len(p.set_curves)}" for split, p in win.curves.plots.items()))
    print(f"sweep: {n_images:,} images, {res.steps} steps, {'warm' if args.warm else 'cold'}, "
          f"{state['t1'] - state['t0']:.1f} s in the window")
    print(f"10 ms timer: {len(ticks)} ticks, longest gap {gaps.max():.1f} ms, 99th percentile "
          f"{np.percentile(gaps, 99):.1f} ms, median {np.median(gaps):.1f} ms")
    t = np.array(ticks)
    if arrivals:  # the stalls while records stream in (the first record to the last)
        inside = (t[1:] >= arrivals[0]) & (t[:-1] <= arrivals[-1])
        g_in = gaps[inside] if inside.any() else np.zeros(1)
        before = gaps[t[1:] < arrivals[0]]
        print(f"while records stream in ({arrivals[-1] - arrivals[0]:.1f} s): longest gap {g_in.max():.1f} ms; before "
              f"the first record (the first activation pass, {arrivals[0] - state['t0']:.1f} s): longest gap "
              f"{before.max() if before.size else 0:.1f} ms")
    if os.environ.get("BENCH_DEBUG"):
        for i in np.flatnonzero(gaps > 50):
            print(f"  gap {gaps[i]:.0f} ms at {t[i] - state['t0']:.2f} s")
        print("  first redraw at", f"{steps_t[0] - state['t0']:.2f} s" if len(steps_t) else "-")
    print(f"curve redraws: {len(steps_t)} in {span:.2f} s = {len(steps_t) / span if span > 0 else float('inf'):.1f} "
          f"per second overall (the activation passes between datasets bring no new points)")
    # while records stream in (consecutive records less than a second apart)
    a = np.array(arrivals)
    busy = [(a[i], a[i + 1]) for i in range(len(a) - 1) if a[i + 1] - a[i] < 1.0]
    busy_time = sum(e - b for b, e in busy)
    in_busy = sum(1 for t in steps_t if any(b <= t <= e + 0.06 for b, e in busy))
    lat = [steps_t[steps_t >= t][0] - t for t in a if np.any(steps_t >= t)]
    print(f"while records stream in: {in_busy / busy_time if busy_time else float('nan'):.1f} redraws per second; "
          f"a new point is on screen at most {max(lat) * 1000:.0f} ms after it arrived "
          f"({len(a)} record updates)")


if __name__ == "__main__":
    main()
