"""The headless commands (``prunelab sweep | eval | maps | finetune | demo | cache``): argparse,
progress printing and one function per command (``main``; ``maps`` for ``prunelab maps``)."""
