"""Thresholds: the relative drops of clean validation accuracy at which B′/G are kept.

One rule everywhere (CLI, window, sweep): percentages in (0, 100], separated by commas
(or semicolons), an optional ``%`` after each; a value given twice is refused rather than
silently producing two identical checkpoints. Reaching a threshold is decided exactly, with
fractions, so 2 % of 200 correct images is 4 images, never 3.999…"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable

DEFAULT_THRESHOLDS = (2.0, 4.0, 10.0)


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``"2, 4,10%"`` -> ``(2.0, 4.0, 10.0)``; raises ValueError with a one-line reason."""
    vals: list[float] = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip().rstrip("%").strip()
        if not part:
            continue
        try:
            vals.append(float(part))
        except ValueError:
            raise ValueError(f"'{part}' is not a number; thresholds are percentages such as 2,4,10") from None
    return validate_thresholds(vals)


def validate_thresholds(values: Iterable[float]) -> tuple[float, ...]:
    """Sorted thresholds; refuses an empty list, values outside (0, 100] and duplicates."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("give at least one threshold, such as 2,4,10")
    for v in vals:
        if not (0 < v <= 100):  # also refuses NaN
            raise ValueError(f"threshold {v:g} % is outside (0, 100]")
    seen: set[float] = set()
    for v in vals:
        if v in seen:
            raise ValueError(f"threshold {v:g} % is given twice")
        seen.add(v)
    return tuple(sorted(vals))


def reached(base_correct: int, correct: int, thresholds: Iterable[float]) -> list[float]:
    """The thresholds (in %) that the relative drop from ``base_correct`` to ``correct``
    correctly classified images reaches, compared exactly."""
    if base_correct <= 0:
        return []
    drop = Fraction(base_correct - correct, base_correct) * 100
    return [t for t in thresholds if drop >= Fraction(str(t))]


def label(t: float) -> str:
    """File-name form of a threshold: 2 -> "2", 2.5 -> "2_5"."""
    return f"{t:g}".replace(".", "_")
