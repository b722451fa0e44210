"""What several commands share."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from engine.core.errors import PruneLabError


def settle_input_scale(args, model, clean, *, say: bool = True):
    """Settle the model's input convention; say it (one line on stderr unless quiet, or a
    warning when it was assumed) now, or later with :func:`say_input_scale` once the command's
    other inputs are checked (a refusal comes first, alone)."""
    from engine.models.scale import decide

    d = decide(model, getattr(args, "input_scale", "auto"), clean, say=False)
    if say:
        say_input_scale(args, model, d)
    return d


def say_input_scale(args, model, d) -> None:
    from engine.core.errors import warn

    if d.warning:
        warn(model.path, d.warning)
    elif not getattr(args, "quiet", False) and d.source in ("detected", "given"):
        print(d.line(), file=sys.stderr)


def add_model_args(parser, model_group=None) -> None:
    """The one way a command names its model: ``--model M`` (Keras 2 .h5, .keras or weights .h5),
    ``--weights W`` (into M; alone: into the lab's DeepID), ``--allow-unsafe-model``.
    ``model_group``: where ``--model`` goes (sweep's --demo excludes it)."""
    (model_group or parser).add_argument("--model", type=Path, metavar="M",
                                         help="model file: Keras 2 .h5, Keras 3 .keras, or weights .h5")
    parser.add_argument("--weights", type=Path, metavar="W",
                        help="weights .h5 to load into the model (the lab's bd_weights.h5); alone, into the lab's DeepID")
    parser.add_argument("--allow-unsafe-model", action="store_true",
                        help="load models with Lambda layers or foreign code (only for files you trust)")


def open_model(args, summary: dict | None = None):
    """The one loader call of the commands: ``--model``/``--weights`` as given, or (``finetune``)
    the model a sweep's ``summary.json`` names when neither is given."""
    from engine.models.loading import load_model

    model, weights = getattr(args, "model", None), getattr(args, "weights", None)
    if model is None and weights is None and summary is not None:
        model, weights = summary.get("model"), summary.get("weights")
        if model is not None and weights is not None and Path(model) == Path(weights):
            model = None  # a sweep made with --weights alone: the DeepID with those weights
    if model is None and weights is None:
        raise PruneLabError(None, "give a model: --model M, --weights W (the lab's DeepID), or both")
    return load_model(model, weights, allow_unsafe=args.allow_unsafe_model)


class ProgressPrinter:
    """tqdm's bar (rate and time left) on a terminal; in a log, a few plain lines per phase
    and dataset, each with the same rate and time-left text."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr  # looked up now: silence_native_logs() replaces it
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._bar = None
        self._key = None
        self._t0 = time.perf_counter()
        self._d0 = 0
        self._last_quarter = -1

    def update(self, phase: str, done: int, total: int, text: str = "") -> None:
        from tqdm import tqdm

        if self.quiet:
            return
        key = (phase, text.split(":")[0])  # one bar per phase and dataset
        if key != self._key:
            # a new dataset's steps continue a count that spans all datasets: rate and time
            # left are measured from where this bar starts, not from zero
            self.close()
            self._key, self._t0, self._d0, self._last_quarter = key, time.perf_counter(), done, -1
            if self.tty:
                self._bar = tqdm(total=total, initial=done, desc=f"{phase:<11}", file=self.stream,
                                 leave=True, dynamic_ncols=True, unit="it")
        if self._bar is not None:
            self._bar.total = total
            self._bar.set_postfix_str(text[:50], refresh=False)
            self._bar.update(done - self._bar.n)
            if done >= total:
                self.close()
            return
        quarter = int(4 * done / total) if total else 4
        if quarter != self._last_quarter:
            self._last_quarter = quarter
            meter = tqdm.format_meter(done, total, time.perf_counter() - self._t0, ncols=0, initial=self._d0)
            print(f"{phase}: {text} {meter}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def poisoned_set_roles(values, base: str) -> dict[str, Path]:
    """``--poisoned-valid F`` or, repeated, ``--poisoned-valid NAME=F``: role → file. One set keeps
    the plain role (today's names and outputs); several become named roles ``poisoned_valid:NAME``
    (a set given without a name takes its file's stem). A value that is an existing file is a
    file even if it holds '='."""
    from engine.core.vocabulary import SET_NAME_CHARS, named_role, valid_set_name

    option = "--" + base.replace("_", "-")
    sets: list[tuple[str | None, Path]] = []
    for v in values or []:
        v = str(v)
        name, path = None, Path(v)
        if "=" in v and not path.exists():
            name, path = v.split("=", 1)[0], Path(v.split("=", 1)[1])
            if not valid_set_name(name):
                raise PruneLabError(None, f"{option} {v}: a set's name is {SET_NAME_CHARS} (up to 40), "
                                    "as in NAME=FILE")
        sets.append((name, path))
    if len(sets) <= 1:
        return {base: p for _, p in sets}
    out: dict[str, Path] = {}
    for name, path in sets:
        if name is None:
            stem = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in path.stem)
            name = stem.lstrip("_-")[:40] or "set"
        role = named_role(base, name)
        if role in out:
            raise PruneLabError(path, f"{option}: two poisoned sets are named '{name}'; name them NAME=FILE")
        out[role] = path
    return out
