"""Figures of the backdoor maps: ``backdoor_map.png`` (mean maps of clean vs poisoned data), a
dataset's mean map and the grid of first images beside their maps. The maps themselves are
computed in :mod:`engine.analysis.maps`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.analysis.maps import MapMaker, MeanMap, _keras_model, _limited, mean_map, trigger_channels
from engine.analysis.meanmaps import model_key_parts, sample_indices, sampled_mean_map
from engine.core.state import ProgressCallback


def _overlay(ax, image, m, vmax, cmap="inferno"):
    grey = np.asarray(image, np.float32)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
    return ax.imshow(m, cmap=cmap, vmin=0, vmax=vmax, alpha=0.6, interpolation="bilinear")


def backdoor_map_figure(clean: MeanMap, poisoned: MeanMap, title: str | None = None,
                        names: tuple[str, str] = ("clean", "poisoned")):
    """Mean maps side by side (clean | poisoned), over the mean image, with one colour scale."""
    from engine.report.figures import _plt

    plt = _plt()
    vmax = float(max(clean.map.max(), poisoned.map.max(), 1e-6))
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 4.6), layout="constrained")
    im = None
    for ax, mm, name in ((axes[0], clean, names[0]), (axes[1], poisoned, names[1])):
        im = _overlay(ax, mm.image, mm.map, vmax)
        sub = f"{name} ({mm.n:,} images)"
        if mm.localisation is not None and np.isfinite(mm.localisation):
            sub += f"\non the trigger: {mm.localisation:.2f}×"
        ax.set_title(sub, fontsize=9)
        ax.axis("off")
    cb = fig.colorbar(im, ax=list(axes), fraction=0.04, pad=0.03)
    cb.set_label("mean map (each image's map scaled to max 1)", fontsize=8)
    fig.suptitle(title or f"Where the model looks: mean {METHOD_TITLES[clean.method]}", fontsize=10)
    return fig


METHOD_TITLES = {"channels": "activation of the chosen channels", "gradcam": "Grad-CAM map",
                 "occlusion": "occlusion map"}


def write_backdoor_map(model, layer: str | None, clean_ds, poisoned_ds, path: str | os.PathLike,
                       state=None, *, method: str = "gradcam", channels: Sequence[int] | None = None,
                       limit: int | None = None, mask: np.ndarray | None = None,
                       names: tuple[str, str] = ("clean validation", "poisoned validation"),
                       progress: ProgressCallback | None = None, sample: int | None = None,
                       use_cache: bool = False) -> Path:
    """``backdoor_map.png``: mean maps over clean and poisoned (validation) data, side by side,
    written atomically. ``method='channels'`` without ``channels`` uses the top trigger channels.
    ``sample``: map a seeded sample of that many images per set (see :func:`sampled_mean_map`),
    cached by content when ``use_cache`` (and ``model`` is a LoadedModel read from files)."""
    from engine.report.figures import save_figure

    scale = float(getattr(model, "input_scale", 255.0))
    km = _keras_model(model)
    if method == "channels" and not channels:
        channels = trigger_channels(model, layer, clean_ds, poisoned_ds, limit=limit, state=state).channels
    maker = MapMaker(km, layer, method, channels, input_scale=scale)
    if sample is not None and mask is None and limit is None:
        parts = model_key_parts(model) if use_cache else None
        nc = len(sample_indices(clean_ds.n, sample))
        both = nc + len(sample_indices(poisoned_ds.n, sample))
        step = (lambda off: (lambda d, n: progress(off + d, both))) if progress else (lambda off: None)
        c = sampled_mean_map(maker, clean_ds, key_parts=parts, sample=sample, state=state, progress=step(0))
        p = sampled_mean_map(maker, poisoned_ds, key_parts=parts, sample=sample, state=state, progress=step(nc))
    else:
        nc, npz = _limited(clean_ds, limit), _limited(poisoned_ds, limit)
        step = (lambda off: (lambda d, n: progress(off + d, nc + npz))) if progress else (lambda off: None)
        c = mean_map(maker, clean_ds, limit=limit, mask=mask, state=state, progress=step(0))
        p = mean_map(maker, poisoned_ds, limit=limit, mask=mask, state=state, progress=step(nc))
    title = f"Where {maker.layer} looks: mean {METHOD_TITLES[method]}"
    if method == "channels":
        title += f" (channels {', '.join(map(str, maker.channels))})"
    fig = backdoor_map_figure(c, p, title, names)
    path = Path(path)
    save_figure(fig, path)
    return path


def mean_figure(mm: MeanMap, title: str):
    """One dataset's mean map over its mean image, with a colour scale."""
    from engine.report.figures import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 4.6), layout="constrained")
    im = _overlay(ax, mm.image, mm.map, float(max(mm.map.max(), 1e-6)))
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03).set_label("mean map", fontsize=8)
    return fig


def grid_figure(images: np.ndarray, maps_: np.ndarray, labels: np.ndarray, classes: np.ndarray | None, title: str):
    """The first images, each beside its map (over the image), with label → explained class."""
    from engine.report.figures import _plt

    plt = _plt()
    n = len(images)
    cols = 5
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 0.95 + 0.8, rows * 1.3 + 0.4), squeeze=False,
                             layout="constrained")
    im = None
    for i in range(rows * cols):
        a, b = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        a.axis("off")
        b.axis("off")
        if i >= n:
            continue
        a.imshow(np.clip(images[i], 0, 255).astype(np.uint8))
        im = b.imshow(np.clip(images[i], 0, 255).astype(np.uint8).mean(axis=-1), cmap="gray", vmin=0, vmax=255)
        im = b.imshow(maps_[i], cmap="inferno", vmin=0, vmax=1, alpha=0.6, interpolation="bilinear")
        txt = f"#{i} label {labels[i]}" + (f" → {classes[i]}" if classes is not None else "")
        a.set_title(txt, fontsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
    fig.suptitle(title, fontsize=9)
    return fig
