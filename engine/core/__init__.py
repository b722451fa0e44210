"""The bottom layer: one-line errors and warnings (``errors``), the job state a long task polls,
the one ``Progress`` record it yields and ``drive`` (``state``), the shared words — roles, metric
keys (``vocabulary``), the lazy TensorFlow/Keras import (``tfsetup``) and the version
(``version``). Imports nothing else of the engine."""
