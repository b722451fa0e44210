"""``prunelab maps``: maps of every image of some data files into ``maps.npz`` with a mean and a
grid figure per file."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.analysis.maps import (DEFAULT_TOP, MapChunk, MapMaker, MeanAccumulator, _limited, iter_maps,
                                  trigger_channels)
from engine.core.errors import PruneLabError, warn
from engine.report.maps import grid_figure, mean_figure

GRID_IMAGES = 20


def parse_channels(text: str | None) -> list[int] | None:
    """``"7,11"`` → ``[7, 11]``; a one-line error for anything else."""
    if text is None:
        return None
    try:
        out = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise PruneLabError(None, f"--channels must be comma-separated channel numbers (got '{text}')") from None
    if not out:
        raise PruneLabError(None, "--channels is empty")
    return out


def array_names(paths: Sequence[Path]) -> list[str]:
    """One npz/PNG name per data file: its stem, made unique with the folder name
    (the lab's cl/valid.h5 and bd/valid.h5 → cl_valid, bd_valid) and, failing that, a number."""
    import re

    def clean(s):
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._") or "data"

    stems = [clean(Path(p).stem) for p in paths]
    names = [f"{clean(Path(p).parent.name)}_{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 and names.count(n) == 1 else f"{n}_{seen[n]}")
    return out


@contextlib.contextmanager
def _npz_entry(zf, name: str, shape: tuple[int, ...]):
    """Stream one float32 array into an open .npz (a zip of .npy files) chunk by chunk, so a
    file's maps never sit in memory all at once. Yields ``write(rows)``."""
    written = [0]
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_2_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": shape})

        def write(rows: np.ndarray) -> None:
            rows = np.ascontiguousarray(rows, dtype="<f4")
            fh.write(rows.tobytes())
            written[0] += len(rows)

        yield write
    if written[0] != shape[0]:
        raise PruneLabError(None, f"internal: wrote {written[0]} of {shape[0]} maps for {name}")


def run_maps_cli(args, bar) -> int:
    """``prunelab maps``: check every input first, then map each --data file into --out."""
    import zipfile

    from engine.cli.common import open_model, say_input_scale, settle_input_scale
    from engine.io.datasets import open_dataset
    from engine.report.figures import save_figure
    from engine.report.outputs import check_output_folder, staged_output

    check_output_folder(args.out, "maps")
    if args.limit is not None and args.limit < 1:
        raise PruneLabError(None, f"--limit must be at least 1 (got {args.limit})")
    chans = parse_channels(args.channels)
    if args.method != "channels" and (chans is not None or args.top is not None):
        raise PruneLabError(None, "--channels and --top only apply to --method channels")
    if args.method == "channels" and chans is None and args.poisoned is None:
        raise PruneLabError(None, "--method channels needs --channels 7,11 or --top K --poisoned F")
    if args.top is not None and args.top < 1:
        raise PruneLabError(None, f"--top must be at least 1 (got {args.top})")
    if args.poisoned is not None and (args.method != "channels" or chans is not None):
        raise PruneLabError(args.poisoned, "--poisoned only picks the --top channels for --method channels "
                            "(not with --channels)")
    datasets = [open_dataset(p) for p in args.data]  # bad data fails before TensorFlow starts
    poisoned = open_dataset(args.poisoned) if args.poisoned is not None and chans is None else None
    lm = open_model(args)
    for d in datasets + ([poisoned] if poisoned else []):
        d.expect(lm.input_hwc)
    scale = settle_input_scale(args, lm, next((d for d in datasets if d.has_labels and not d.single_target), None),
                               say=False)  # said once the other inputs are checked
    inputs = lm.input_files() + [d.path for d in datasets] + ([poisoned.path] if poisoned else [])
    if poisoned is not None:
        ppath = Path(poisoned.path).resolve()
        clean = next((d for d in datasets if Path(d.path).resolve() != ppath), None)
        if clean is None:
            raise PruneLabError(args.poisoned, "--top compares it with clean data: give a clean --data file too")
        tc = trigger_channels(lm, args.layer, clean, poisoned, args.top or DEFAULT_TOP, limit=args.limit,
                              progress=lambda d, n: bar.update("channels", d, n, "ranking channels"))
        bar.close()
        chans = tc.channels
    maker = MapMaker(lm, args.layer, args.method, chans, path=lm.path)
    say_input_scale(args, lm, scale)
    names = array_names([d.path for d in datasets])
    how = args.method if args.method == "occlusion" else f"{args.method} at {maker.layer}"
    how += f" (channels {','.join(map(str, chans))})" if chans else ""
    with staged_output(args.out, inputs, "maps") as stage:
        with zipfile.ZipFile(stage / "maps.npz", "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for ds, name in zip(datasets, names):
                n = _limited(ds, args.limit)
                acc = MeanAccumulator(maker.input_hw, args.method)
                first: list[MapChunk] = []
                peak = 0.0
                with _npz_entry(zf, name, (n,) + maker.input_hw) as write:
                    for ch in iter_maps(maker, ds, limit=n,
                                        progress=lambda d, t, name=name: bar.update("maps", d, t, name)):
                        write(ch.maps)
                        acc.add(ch.images, ch.maps)
                        peak = max(peak, float(ch.maps.max())) if len(ch.maps) else peak
                        if ch.start < GRID_IMAGES:
                            first.append(ch)
                bar.close()
                if peak == 0.0:
                    warn(ds.path, f"every {args.method} map is zero: nothing in these images moves the "
                         "model's answer at this layer")
                k = min(GRID_IMAGES, n)
                x = np.concatenate([c.images for c in first])[:k]
                m = np.concatenate([c.maps for c in first])[:k]
                cls = None if args.method == "channels" else np.concatenate([c.classes for c in first])[:k]
                save_figure(grid_figure(x, m, ds.labels[:k], cls, f"{Path(ds.path).name}: {how}"),
                            stage / f"{name}_grid.png")
                save_figure(mean_figure(acc.result(), f"{Path(ds.path).name}: mean {how}\n{n:,} images"),
                            stage / f"{name}_mean.png")
    if not args.quiet:
        for ds, name in zip(datasets, names):
            print(f"{ds.path}: {name} in maps.npz, {name}_mean.png, {name}_grid.png")
        print(f"wrote {args.out} ({how})")
    return 0
