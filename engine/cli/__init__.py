"""The headless commands: argparse and one function per command (``main``: sweep, eval, demo,
cache, finetune; ``maps``; ``scan``: scan and stamp; ``repair``), and what they share — the
model arguments, the input-scale line, the progress printer (``common``)."""
