"""What several commands share."""

from __future__ import annotations

import sys


def settle_input_scale(args, model, clean) -> None:
    """Settle the model's input convention (one line on stderr unless quiet)."""
    from engine.models.scale import decide

    d = decide(model, getattr(args, "input_scale", "auto"), clean)
    if not getattr(args, "quiet", False) and d.source in ("detected", "given"):
        print(d.line(), file=sys.stderr)
