"""PruneLab engine: everything but the window. Sub-packages, from the top layer down (each may
import only those below it; ``pyproject.toml``'s import-linter contract enforces it):

``cli`` (commands) → ``report`` | ``demo`` (files, figures; the demo) → ``analysis`` (maps,
triggers) → ``pruning`` (graph, rules, criteria, sweep, fine-tuning) → ``models`` (safe
loading) → ``io`` (datasets, files, cache) → ``core`` (errors, job state, lazy TensorFlow).

Importing it is cheap: TensorFlow/Keras are imported inside the functions that need them, so
the window can show itself before paying for TensorFlow.
"""

from engine.core.errors import PruneLabError, PruneLabWarning  # noqa: F401
