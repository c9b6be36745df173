"""Drawing one clustered network: its neurons by layer, coloured by cluster.

Same conventions as :mod:`harness.report.figures.clustering` (one file per format, written
atomically); :func:`plot_clustering` and :func:`plot_clusterability` write a single file whose
extension names the format, for ``python -m harness cluster FILE --plot OUT.png``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from numpy.typing import ArrayLike

from harness.report.figures.common import (
    FORMATS,
    ISOLATED_COLOR,
    StrPath,
    check_formats,
    cluster_colors,
    empty,
    empty_figure,
    figure_doc,
    finish,
    new_figure,
)

if TYPE_CHECKING:
    from harness.stats import ClusterabilityResult

__all__ = ["plot_clustered_network", "plot_clusterability", "plot_clustering"]


def _input_shape(n: int) -> tuple[int, int]:
    """Most square (rows, cols) with rows * cols == n (28 x 28 for 784; 1 x n for primes)."""
    rows = int(math.isqrt(n))
    while rows > 1 and n % rows:
        rows -= 1
    return max(rows, 1), n // max(rows, 1)


def _check_network(
    weights: Sequence[ArrayLike], labels: ArrayLike
) -> tuple[list[np.ndarray], np.ndarray]:
    mats = [np.asarray(w, dtype=float) for w in weights]
    for i, w in enumerate(mats):
        if w.ndim != 2:
            raise ValueError(
                f"weights[{i}] has shape {w.shape}; pass 2-D (n_in, n_out) matrices between "
                "consecutive layers (for a CNN, the per-filter norm matrices of harness.graph)"
            )
        if i and mats[i - 1].shape[1] != w.shape[0]:
            raise ValueError(
                f"weights[{i - 1}] has {mats[i - 1].shape[1]} outputs but weights[{i}] has "
                f"{w.shape[0]} inputs; the matrices must chain (n_0, n_1), (n_1, n_2), ..."
            )
    lab = np.asarray(labels).ravel()
    if mats:
        n_total = mats[0].shape[0] + sum(w.shape[1] for w in mats)
        if lab.size != n_total:
            raise ValueError(
                f"labels has {lab.size} entries but the network has {n_total} neurons "
                f"(layer sizes {[mats[0].shape[0]] + [w.shape[1] for w in mats]}); give one "
                "label per neuron, -1 for isolated ones"
            )
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        as_float = lab.astype(float)
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            raise ValueError("labels must be integers (cluster ids, -1 for isolated neurons)")
        lab = as_float.astype(int)
    return mats, lab.astype(int)


@figure_doc
def plot_clustered_network(
    weights: Sequence[ArrayLike],
    labels: ArrayLike,
    out_stem: StrPath,
    *,
    max_edges: int = 3000,
    input_shape: tuple[int, int] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """The clustered network: neurons by layer coloured by cluster, strongest edges drawn.

    Left: the input layer as an image of cluster labels (28 x 28 for MNIST; the most square
    factorisation of its size otherwise). Right: every later layer as a column of neurons,
    sorted by cluster within the layer so that clusters form blocks; the strongest edges
    between drawn layers, widths proportional to |w|, coloured when both ends share a cluster.
    Isolated neurons (label -1) are light grey.

    Parameters
    ----------
    weights : sequence of array-like of shape (n_l, n_{l+1})
        Weight matrices between consecutive layers (input first). Signs are ignored.
    labels : array-like of int, shape (n_neurons,)
        Cluster label of every neuron, layers concatenated input first; -1 = isolated.
    max_edges : int
        Edges drawn, shared equally among the layer pairs (each keeps its strongest); widths
        are relative to the strongest weight of the pair.
    input_shape : (int, int), optional
        Shape of the input image; must multiply to the input size.
    %(output)s

    Raises
    ------
    ValueError
        If the matrices do not chain, or ``labels`` does not have one entry per neuron.
    """
    fmts = check_formats(formats)
    mats, lab = _check_network(weights, labels)
    if max_edges < 0:
        raise ValueError(f"max_edges must be >= 0; got {max_edges}")
    if not mats:
        return empty_figure((5.0, 3.0), "no weight matrices", out_stem, fmts)
    sizes = [mats[0].shape[0]] + [w.shape[1] for w in mats]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    layer_labels = [lab[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]
    palette = cluster_colors(lab) if lab.size else {}
    n_in = sizes[0]
    if input_shape is None:
        input_shape = _input_shape(n_in)
    if int(input_shape[0]) * int(input_shape[1]) != n_in:
        raise ValueError(f"input_shape {input_shape} does not hold {n_in} input neurons")
    with new_figure((11.0, 5.6)) as fig:
        grid = fig.add_gridspec(1, 2, width_ratios=[1.0, 2.6])
        ax_img = fig.add_subplot(grid[0, 0])
        ax_net = fig.add_subplot(grid[0, 1])
        # input image of cluster labels
        uniq = sorted(palette)
        index = {lab_: i for i, lab_ in enumerate(uniq)}
        if n_in:
            img = np.vectorize(index.__getitem__, otypes=[float])(layer_labels[0]).reshape(
                input_shape
            )
            cmap = ListedColormap([palette[u] for u in uniq] or ["white"])
            ax_img.imshow(img, cmap=cmap, vmin=-0.5, vmax=max(len(uniq), 1) - 0.5)
            ax_img.set_title(f"input layer ({input_shape[0]} x {input_shape[1]}) by cluster")
        else:
            empty(ax_img, "no input neurons")
        ax_img.grid(False)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        # later layers as columns, clusters contiguous
        ax_net.grid(False)
        y_of: list[np.ndarray] = [np.zeros(0)]
        for li in range(1, len(sizes)):
            ll = layer_labels[li]
            # isolated last, then by label; stable so neuron order breaks ties
            order = np.lexsort((np.arange(ll.size), ll, ll < 0))
            y = np.empty(ll.size)
            y[order] = np.linspace(1, 0, ll.size) if ll.size > 1 else 0.5
            y_of.append(y)
        pairs = list(range(1, len(mats)))
        quota = max_edges // len(pairs) if pairs else 0
        grey_segs, grey_w, col_segs, col_w, col_c = [], [], [], [], []
        for pi in pairs:
            w = np.abs(mats[pi])
            w = np.where(np.isfinite(w), w, 0.0)
            flat = w.ravel()
            k = min(quota, int(np.count_nonzero(flat)))
            if k == 0:
                continue
            top = np.argpartition(flat, flat.size - k)[flat.size - k :]
            top = top[np.argsort(flat[top], kind="stable")]  # weakest first: strong on top
            wmax = float(flat[top].max()) or 1.0
            src, dst = np.unravel_index(top, w.shape)
            la, lb = layer_labels[pi][src], layer_labels[pi + 1][dst]
            for s_, d_, a_, b_, v in zip(src, dst, la, lb, flat[top], strict=True):
                seg = [(pi - 1, y_of[pi][s_]), (pi, y_of[pi + 1][d_])]
                width = 0.15 + 1.6 * v / wmax
                if a_ == b_ and a_ >= 0:
                    col_segs.append(seg)
                    col_w.append(width)
                    col_c.append(palette[int(a_)])
                else:
                    grey_segs.append(seg)
                    grey_w.append(width)
        if grey_segs:
            ax_net.add_collection(
                LineCollection(grey_segs, linewidths=grey_w, colors="0.7", alpha=0.25, zorder=1)
            )
        if col_segs:
            ax_net.add_collection(
                LineCollection(col_segs, linewidths=col_w, colors=col_c, alpha=0.55, zorder=2)
            )
        for li in range(1, len(sizes)):
            ll = layer_labels[li]
            if ll.size == 0:
                continue
            ax_net.scatter(
                np.full(ll.size, li - 1),
                y_of[li],
                s=max(3.0, min(30.0, 3000 / ll.size)),
                c=[palette[int(v)] for v in ll],
                edgecolors="none",
                zorder=3,
            )
        ax_net.set_xticks(
            range(len(sizes) - 1), [f"layer {li}\n({sizes[li]})" for li in range(1, len(sizes))]
        )
        ax_net.set_yticks([])
        ax_net.spines["left"].set_visible(False)
        ax_net.set_xlim(-0.3, len(sizes) - 1.7 if len(sizes) > 2 else 0.3)
        ax_net.set_ylim(-0.04, 1.04)
        n_edges = len(grey_segs) + len(col_segs)
        ax_net.set_title(f"hidden and output layers; {n_edges} strongest edges")
        shown = [u for u in uniq if u >= 0][:20]
        handles = [Patch(color=palette[u], label=f"cluster {u}") for u in shown]
        if -1 in palette:
            handles.append(Patch(color=ISOLATED_COLOR, label="isolated"))
        if handles:
            fig.legend(
                handles=handles, loc="outside lower center", ncols=min(len(handles), 11), fontsize=7
            )
        return finish(fig, out_stem, fmts, title=title)


def plot_clustering(
    weights: Sequence[ArrayLike],
    labels: ArrayLike,
    out_path: StrPath,
    *,
    max_edges: int = 3000,
    title: str | None = None,
) -> Path:
    """:func:`plot_clustered_network` to one file whose extension gives the format.

    Used by ``python -m harness cluster FILE --plot OUT.png``.

    Parameters
    ----------
    weights : sequence of array-like of shape (n_l, n_{l+1})
    labels : array-like of int, shape (n_neurons,)
    out_path : path
        ``.png``, ``.svg`` or ``.pdf``.
    max_edges : int
    title : str, optional

    Returns
    -------
    Path
    """
    out = Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:  # a message about the file name, rather than check_formats' one
        raise ValueError(
            f"cannot tell the figure format from {out.name!r}; end the file name with one of "
            + ", ".join(f".{f}" for f in FORMATS)
        )
    stem = out.with_name(out.name[: -len(out.suffix)])
    written = plot_clustered_network(
        weights, labels, stem, max_edges=max_edges, title=title, formats=(fmt,)
    )
    # the stem joined with the lower-case extension; keep the caller's spelling
    if written[0] != out:
        os.replace(written[0], out)
    return out


def plot_clusterability(
    result: ClusterabilityResult, weights: Sequence[ArrayLike], path: StrPath
) -> Path:
    """The clustered network of one clusterability result, to ``path`` (.png, .svg, .pdf).

    Used by ``python -m harness cluster FILE --plot OUT.png``: :func:`plot_clustering` with
    the n-cut, p-value and z-score in the title.

    Parameters
    ----------
    result : ClusterabilityResult
        The result of :func:`harness.api.clusterability` for ``weights``.
    weights : sequence of array-like of shape (n_l, n_{l+1})
        The weight matrices that were clustered, input layer first.
    path : str or os.PathLike
        Output file; its extension names the format.

    Returns
    -------
    Path
    """
    title = f"K = {result.n_clusters}: n-cut {result.ncut:.3f}"
    if result.n_samples:
        title += f", p = {result.pvalue:.3g}, z = {result.z:.2f} ({result.null} null, n = {result.n_samples})"
    return plot_clustering(weights, result.labels, path, title=title)
