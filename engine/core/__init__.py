"""The bottom layer: one-line errors and warnings (``errors``), the job state a long task polls
and the one ``Progress`` record it yields (``state``), and the lazy TensorFlow/Keras import
(``tfsetup``). Imports nothing else of the engine."""
