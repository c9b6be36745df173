"""What clusters look like: the correlation pictures of a network's clusters (reference §7.2).

:func:`plot_correlation_pictures` draws one row per (layer, cluster): the cluster's average
sign-aligned pixel-correlation image first, then its random same-size controls, on one
symmetric diverging colour scale per row, so that a cluster's image and its controls can be
compared by eye.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.figures.common import (
    FORMATS,
    StrPath,
    check_formats,
    empty_figure,
    figure_doc,
    finish,
    new_figure,
)

__all__ = ["plot_correlation_pictures", "plot_correlation_pictures_file"]

_CELL = 1.05  # inches per image
_MAX_ROWS = 60


def _tile(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, C*W): channels side by side."""
    arr = np.asarray(image, dtype=float)
    if arr.ndim == 2:
        return arr
    return np.concatenate(list(arr), axis=1)


@figure_doc
def plot_correlation_pictures(
    pictures: Any,
    out_stem: StrPath,
    *,
    layer_names: Sequence[str] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Each cluster's correlation picture next to its random same-size controls.

    Parameters
    ----------
    pictures : CorrelationPictures or sequence of ClusterPicture
        From :func:`harness.activations.correlation_pictures`: objects with ``layer``,
        ``cluster``, ``size``, ``image`` of shape (C, H, W) and ``random_images`` of shape
        (n_random, C, H, W).
    layer_names : sequence of str, optional
        Names of the layers (default ``"layer 1"``, ``"layer 2"``, ...).
    %(output)s
    """
    fmts = check_formats(formats)
    items = list(getattr(pictures, "pictures", pictures))
    if not items:
        return empty_figure(
            (4.5, 2.0), "no cluster of 4 units up to 80% of its layer", out_stem, fmts, title=title
        )
    shown = items[:_MAX_ROWS]
    n_cols = 1 + max(len(p.random_images) for p in shown)
    tiles = [[_tile(p.image), *(_tile(r) for r in p.random_images)] for p in shown]
    height = max(im.shape[0] for row in tiles for im in row)
    width = max(im.shape[1] for row in tiles for im in row)
    gap = max(2, width // 8)  # blank (NaN) columns between the images of a row
    # One axes per row, its images side by side in one array on the row's colour scale: a
    # figure of 60 rows draws in a fraction of the time that one axes per image takes.
    centres = [col * (width + gap) + (width - 1) / 2 for col in range(n_cols)]
    with new_figure((0.9 + _CELL * width / height * n_cols, 0.35 + _CELL * len(shown))) as fig:
        axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
        for ax, pic, images in zip(axes, shown, tiles, strict=True):
            vmax = max(float(np.abs(im).max()) for im in images) or 1.0
            row = np.full((height, n_cols * (width + gap) - gap), np.nan)
            for col, image in enumerate(images):
                h, w = image.shape  # a smaller image sits top left in its slot
                row[:h, col * (width + gap) : col * (width + gap) + w] = image
            ax.imshow(row, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for side in ax.spines:
                ax.spines[side].set_visible(False)
            name = layer_names[pic.layer] if layer_names else f"layer {pic.layer + 1}"
            ax.set_ylabel(f"{name}\ncluster {pic.cluster}\n{pic.size} units", fontsize=7)
        axes[0].xaxis.tick_top()
        axes[0].set_xticks(
            centres, ["cluster", *(f"random {c}" for c in range(1, n_cols))], fontsize=8
        )
        axes[0].tick_params(axis="x", length=0)
        note = f"first {_MAX_ROWS} of {len(items)} clusters" if len(items) > _MAX_ROWS else ""
        note = "; ".join(
            n for n in (note, "Spearman r with each pixel, signs aligned; red > 0 > blue") if n
        )
        return finish(fig, out_stem, fmts, note=note, title=title)


def plot_correlation_pictures_file(
    pictures: Any, out_path: StrPath, *, title: str | None = None
) -> Path:
    """:func:`plot_correlation_pictures` to one file whose extension names the format."""
    out = Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(
            f"cannot tell the figure format from {out.name!r}; end the file name with one of "
            + ", ".join(f".{f}" for f in FORMATS)
        )
    stem = out.with_name(out.name[: -len(out.suffix)])
    written = plot_correlation_pictures(pictures, stem, title=title, formats=(fmt,))
    if written[0] != out:
        os.replace(written[0], out)
    return out
