"""Memory guard: refuse, with a clear message, what would not fit in RAM."""

from __future__ import annotations

import os

from engine.core.errors import PruneLabError
from engine.io.hdf5 import human_bytes


def available_bytes() -> int:
    """MemAvailable on Linux; a conservative fallback elsewhere."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def limit_bytes() -> int:
    env = os.environ.get("PRUNELAB_MEMORY_LIMIT_MB")
    if env:
        return int(float(env) * 1024 * 1024)
    return int(available_bytes() * 0.8)


def check_fits(nbytes: int, path, what: str) -> None:
    lim = limit_bytes()
    if nbytes > lim:
        raise PruneLabError(path, f"{what} would need {human_bytes(nbytes)} of memory, more than "
                            f"the {human_bytes(lim)} available")
