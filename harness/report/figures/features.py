"""Feature-visualisation images: one optimised input per sub-cluster (reference §7.5).

Same conventions as the other figure modules (one file per format, written atomically).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from harness.report.figures.common import (
    FORMATS,
    StrPath,
    check_formats,
    empty_figure,
    figure_doc,
    finish,
    new_figure,
)

__all__ = ["plot_feature_images"]


@figure_doc
def plot_feature_images(
    images: ArrayLike,
    out_stem: StrPath,
    *,
    labels: Sequence[str] | None = None,
    columns: int = 8,
    title: str | None = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """A grid of optimised input images (grey scale, 0 black to 1 white).

    Parameters
    ----------
    images : array-like of shape (n, C, H, W) or (n, H, W)
        Values in [0, 1]; channels are averaged.
    labels : sequence of str, optional
        A caption per image (e.g. ``"L2-c5 (n=14)"``).
    columns : int, default=8
        Images per row.
    %(output)s
    """
    fmts = check_formats(formats)
    arr = np.asarray(images, dtype=float)
    if arr.ndim == 4:
        arr = arr.mean(1)
    if arr.ndim != 3:
        raise ValueError(f"images must have shape (n, C, H, W) or (n, H, W), got {arr.shape}")
    n = arr.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images")
    if n == 0:
        return empty_figure((4.0, 2.0), "no sub-cluster to visualise", out_stem, fmts, title=title)
    cols = max(1, min(int(columns), n))
    rows = math.ceil(n / cols)
    with new_figure((1.3 * cols, 1.45 * rows + 0.4)) as fig:
        axes = fig.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i >= n:
                ax.set_axis_off()
                continue
            ax.imshow(arr[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=7)
        return finish(fig, out_stem, fmts, title=title)
