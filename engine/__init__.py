"""PruneLab engine: data and model I/O, ranking, the pruning sweep, B'/G, reports, CLI.

Importing this package is cheap: TensorFlow/Keras are imported inside the functions that
need them, so the GUI can show its window before paying for TensorFlow.
"""

__version__ = "0.1.0"

from engine.errors import PruneLabError, PruneLabWarning  # noqa: F401
