"""The ``prunelab`` command — the one place that decides between the headless commands
(``engine.cli.main``) and the window. The packaged app freezes this same function.

It imports no Qt and no TensorFlow: ``prunelab sweep …`` never pays for the GUI, and the window
appears before TensorFlow is loaded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP_FLAGS = ("-h", "--help", "--version")


def gui_parser(prog: str = "prunelab gui") -> argparse.ArgumentParser:
    """The window's options, shared by ``prunelab gui`` and ``prunelab-gui``."""
    g = argparse.ArgumentParser(prog=prog, description="Open the PruneLab window (optionally with files).")
    g.add_argument("files", nargs="*", type=Path, help="models and datasets to open")
    g.add_argument("--demo", action="store_true", help="open the bundled demo")
    g.add_argument("--run", action="store_true", help="start the sweep once everything is open")
    g.add_argument("--rankings", metavar="NAMES", help="criteria to tick before --run, e.g. activation,l1,clp,random")
    g.add_argument("--screenshot", type=Path, help="after the sweep, save a screenshot of the window")
    from guiapp.kinds import Tab

    g.add_argument("--tab", default=None, choices=[t.name.lower() for t in Tab],
                   help="the tab to show for --screenshot")
    g.add_argument("--quit", action="store_true", help="exit when the automation is done")
    g.add_argument("--smoke-test", action="store_true", help="open the window, process events, exit 0")
    return g


def main(argv: list[str] | None = None) -> int:
    """``prunelab`` → the window on the demo; ``prunelab gui [FILES] [options]`` → the window;
    ``prunelab COMMAND …`` → a headless command; ``prunelab --smoke-test`` → the packaged
    app's start-up check."""
    from engine.cli.main import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in COMMANDS or argv[0] in HELP_FLAGS):
        from engine.cli.main import main as cli_main

        return cli_main(argv)
    if argv[:1] == ["gui"]:
        return open_window(gui_parser().parse_args(argv[1:]))
    if not argv:  # plain `prunelab`: the bundled demo, swept, so the first launch shows the story
        return open_window(gui_parser().parse_args([]), first_launch=True)
    if argv[0].startswith("-"):  # window options without the word "gui"
        return open_window(gui_parser("prunelab").parse_args(argv))
    print(f"prunelab: error: unknown command '{argv[0]}' (commands: {', '.join(COMMANDS)}, gui)",
          file=sys.stderr)
    return 2


def gui_main(argv: list[str] | None = None) -> int:
    """``prunelab-gui [FILES] [options]``: the window; with nothing given, the demo."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return open_window(gui_parser("prunelab-gui").parse_args(argv), first_launch=not argv)


NO_DISPLAY = ("prunelab: error: no display (DISPLAY and WAYLAND_DISPLAY are unset): run the headless form, e.g. "
              "'prunelab sweep --demo --out demo-run', or the window under 'xvfb-run prunelab' (it needs the xcb "
              "libraries the README lists)")


def display_problem(env=None, platform: str | None = None) -> str | None:
    """On Linux, the one-line reason the window cannot open (no X11/Wayland display and no
    off-screen Qt platform asked for), else None. Decided before Qt starts: Qt itself would
    abort the process with a message our silenced stderr hides."""
    import os

    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if qpa in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return NO_DISPLAY


def open_window(args: argparse.Namespace, first_launch: bool = False) -> int:
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        from guiapp.app import run_window
    except ImportError as e:
        print(f"prunelab: error: the window needs PySide6 and pyqtgraph ({e}); on a machine without a "
              "display use 'prunelab sweep --demo --out DIR'", file=sys.stderr)
        return 2
    return run_window(args, first_launch=first_launch)


if __name__ == "__main__":
    sys.exit(main())
