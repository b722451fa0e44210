"""Entry point of the frozen app: the GUI, or the CLI when given a command."""

import sys

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] in ("sweep", "eval", "demo", "cache", "finetune", "--version", "-h", "--help"):
        from engine.cli import main

        sys.exit(main(args))
    from guiapp.app import main as gui

    sys.exit(gui(args[1:] if args[:1] == ["gui"] else args, default_demo=not args))
