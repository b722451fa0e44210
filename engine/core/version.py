"""PruneLab's version, read once from the installed package's metadata (pyproject.toml is its
only home); a source tree that was never installed says so instead of guessing."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("prunelab")
    except PackageNotFoundError:
        return "(not installed)"
