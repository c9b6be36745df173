"""Figures of lesion experiments: single lesions, their taxonomy, double lesions, dependencies.

Same conventions as :mod:`harness.report.figures.clustering`: arrays in, one file per format
out, non-finite values dropped and counted, empty input drawn as an empty figure; arrays of
inconsistent shapes raise ``ValueError``. The lesion statistics themselves (reference §6) are
computed by :mod:`harness.lesion`; these functions only draw them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

from harness.files import natural_key
from harness.report.figures.common import (
    ISOLATED_COLOR,
    QUALITATIVE,
    TRUE_COLOR,
    StrPath,
    check_formats,
    empty,
    figure_doc,
    finish,
    new_figure,
    swarm_offsets,
)

__all__ = [
    "TAXONOMY_COLORS",
    "plot_dependency_graph",
    "plot_double_lesion_heatmap",
    "plot_lesion_accuracy",
    "plot_lesion_class_damage",
    "plot_lesion_taxonomy",
]

#: Colours of the lesion taxonomy (reference §6.5); other categories get further colours.
TAXONOMY_COLORS: dict[str, str] = {
    "important": "#d62728",
    "least_important": "#9467bd",
    "prunable": "#2ca02c",
    "sig-but-not-diff": "#ff7f0e",
    "diff-but-not-sig": "#bcbd22",
    "small": "#7f7f7f",
    "complete": "#17becf",
    "other": "#1f77b4",
}


def _diverging_image(
    ax: Axes, values: np.ndarray, cmap: str, *, aspect: Literal["auto", "equal"]
) -> tuple[AxesImage, float]:
    """Draw a matrix as an image on a colour scale symmetric about zero; NaN cells are grey.

    The scale runs from -m to +m, m the largest finite absolute value (1 if all are zero);
    ``values`` must have a finite entry. Returns the image (for a colour bar) and m.
    """
    vmax = float(np.abs(values[np.isfinite(values)]).max()) or 1.0
    im = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=matplotlib.colormaps[cmap].with_extremes(bad="#dddddd"),
        aspect=aspect,
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax),
    )
    ax.grid(False)
    return im, vmax


def _labels_for(n: int, labels: Sequence[str] | None, what: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    labels = [str(v) for v in labels]
    if len(labels) != n:
        raise ValueError(f"{what}: got {len(labels)} labels for {n} sub-clusters")
    return labels


@figure_doc
def plot_lesion_accuracy(
    true_acc: ArrayLike,
    random_acc: ArrayLike,
    out_stem: StrPath,
    *,
    labels: Sequence[str] | None = None,
    baseline: float | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Per sub-cluster: accuracy after the true lesion against same-size random lesions.

    Random lesions are a grey swarm, the true lesion a red cross, the unlesioned accuracy a
    dashed green line (the original's ``plot_overall_damaged_clusters``).

    Parameters
    ----------
    true_acc : array-like of shape (n_subclusters,)
    random_acc : array-like of shape (n_random, n_subclusters)
    labels : sequence of str, optional
        Sub-cluster labels, e.g. ``"L1-c3 (0.20)"`` (layer, cluster, share of the layer).
    baseline : float, optional
        Unlesioned accuracy.
    %(output)s
    """
    fmts = check_formats(formats)
    true = np.asarray(true_acc, dtype=float).ravel()
    rand = np.asarray(random_acc, dtype=float)
    if rand.size == 0:
        rand = np.zeros((0, true.size))
    if rand.ndim == 1:
        rand = rand[:, None] if true.size == 1 else rand[None, :]
    if rand.ndim != 2 or rand.shape[1] != true.size:
        raise ValueError(
            f"random_acc must have shape (n_random, {true.size}) to match true_acc; "
            f"got {np.shape(random_acc)}"
        )
    names = _labels_for(true.size, labels, "plot_lesion_accuracy")
    n = true.size
    with new_figure((max(5.0, 0.42 * n + 1.8), 3.9)) as fig:
        ax = fig.add_subplot()
        dropped = int((~np.isfinite(rand)).sum() + (~np.isfinite(true)).sum())
        if n == 0 or not (np.isfinite(true).any() or np.isfinite(rand).any()):
            empty(ax, "no lesion results")
        else:
            both = np.concatenate([rand[np.isfinite(rand)], true[np.isfinite(true)]])
            bin_size = (float(both.max()) - float(both.min())) / 70 or None
            for i in range(n):
                r = rand[:, i]
                r = r[np.isfinite(r)]
                ax.scatter(
                    i + swarm_offsets(r, width=0.7, bin_size=bin_size, max_step=0.09),
                    r,
                    s=8,
                    color="0.45",
                    alpha=0.7,
                    linewidths=0,
                    label="random lesions" if i == 0 else None,
                )
            ok = np.isfinite(true)
            ax.scatter(
                np.arange(n)[ok],
                true[ok],
                marker="X",
                s=60,
                color=TRUE_COLOR,
                edgecolors="white",
                linewidths=0.5,
                zorder=3,
                label="true lesion",
            )
            if baseline is not None and math.isfinite(float(baseline)):
                ax.axhline(
                    float(baseline),
                    color="#2ca02c",
                    linestyle="--",
                    linewidth=1.0,
                    label=f"unlesioned ({float(baseline):.3f})",
                )
            ax.set_xticks(range(n), names, rotation=60, ha="right", rotation_mode="anchor")
            ax.set_xlim(-0.7, n - 0.3)
            ax.set_ylabel("test accuracy after lesion")
            ax.legend(loc="best")
        return finish(fig, out_stem, fmts, dropped=dropped, title=title, ax=ax)


@figure_doc
def plot_lesion_class_damage(
    true_class_acc: ArrayLike,
    baseline_class_acc: ArrayLike,
    out_stem: StrPath,
    *,
    random_class_acc: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Per-class damage of each sub-cluster's lesion, as a heatmap.

    Cell (s, k) = (accuracy on class k after lesioning s - unlesioned accuracy on k) x 100,
    in percentage points (red: the lesion hurts the class, blue: it helps). With ``random_class_acc``, a dot marks
    cells where the true lesion hurts class k more than every random lesion of that size.

    Parameters
    ----------
    true_class_acc : array-like of shape (n_subclusters, n_classes)
    baseline_class_acc : array-like of shape (n_classes,)
    random_class_acc : array-like of shape (n_random, n_subclusters, n_classes), optional
    labels : sequence of str, optional
        Sub-cluster labels.
    class_names : sequence of str, optional
    %(output)s
    """
    fmts = check_formats(formats)
    true = np.asarray(true_class_acc, dtype=float)
    if true.size == 0:
        true = true.reshape(0, np.asarray(baseline_class_acc).size)
    base = np.asarray(baseline_class_acc, dtype=float).ravel()
    if true.ndim != 2 or true.shape[1] != base.size:
        raise ValueError(
            f"true_class_acc must have shape (n_subclusters, {base.size}) to match "
            f"baseline_class_acc; got {true.shape}"
        )
    s_count, c_count = true.shape
    rand = None
    if random_class_acc is not None:
        rand = np.asarray(random_class_acc, dtype=float)
        if rand.size and (rand.ndim != 3 or rand.shape[1:] != true.shape):
            raise ValueError(
                f"random_class_acc must have shape (n_random, {s_count}, {c_count}); "
                f"got {rand.shape}"
            )
    names = _labels_for(s_count, labels, "plot_lesion_class_damage")
    classes = (
        [str(c) for c in class_names]
        if class_names is not None
        else [str(i) for i in range(c_count)]
    )
    if len(classes) != c_count:
        raise ValueError(f"got {len(classes)} class names for {c_count} classes")
    damage = (true - base[None, :]) * 100.0
    with new_figure((max(4.5, 0.45 * c_count + 2.6), max(3.0, 0.3 * s_count + 1.6))) as fig:
        ax = fig.add_subplot()
        finite = np.isfinite(damage)
        if s_count == 0 or c_count == 0 or not finite.any():
            empty(ax, "no per-class lesion results")
        else:
            im, vmax = _diverging_image(ax, damage, "RdBu", aspect="auto")
            ax.set_xticks(range(c_count), classes)
            ax.set_yticks(range(s_count), names)
            ax.set_xlabel("class")
            ax.set_ylabel("lesioned sub-cluster")
            cb = fig.colorbar(im, ax=ax, shrink=0.9)
            cb.set_label("accuracy change (percentage points)")
            if s_count * c_count <= 400:
                for (i, j), v in np.ndenumerate(damage):
                    if math.isfinite(v):
                        ax.text(
                            j,
                            i,
                            f"{v:.0f}" if abs(v) >= 0.5 else "0",
                            ha="center",
                            va="center",
                            fontsize=6.5,
                            color="white" if abs(v) > 0.6 * vmax else "0.15",
                        )
            if rand is not None and rand.size:
                # +inf where no random lesion is finite: then nothing is "beyond"
                worst_random = np.where(np.isfinite(rand), rand, np.inf).min(axis=0)
                beyond = np.isfinite(true) & np.isfinite(worst_random) & (true < worst_random)
                ii, jj = np.nonzero(beyond)
                if ii.size:
                    ax.scatter(jj + 0.32, ii - 0.3, s=7, color="black", marker="o")
                    ax.set_xlabel("class   (\u2022 = true lesion worse than every random lesion)")
        return finish(fig, out_stem, fmts, dropped=int((~finite).sum()), title=title, ax=ax)


@figure_doc
def plot_lesion_taxonomy(
    proportion: ArrayLike,
    diff: ArrayLike,
    taxonomy: Sequence[str],
    out_stem: StrPath,
    *,
    labels: Sequence[str] | None = None,
    diff_threshold: float = -0.01,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Sub-clusters by share of their layer (x) and accuracy change (y), coloured by taxonomy.

    Parameters
    ----------
    proportion : array-like of shape (n_subclusters,)
        Sub-cluster size / non-isolated units of its layer.
    diff : array-like of shape (n_subclusters,)
        Accuracy after lesion minus unlesioned accuracy (a fraction; drawn in percentage
        points).
    taxonomy : sequence of str, length n_subclusters
        Category per sub-cluster (``important``, ``small``, ... see reference §6.5).
    labels : sequence of str, optional
        Point annotations (shown when there are at most 40 sub-clusters).
    diff_threshold : float
        The taxonomy's diff threshold, drawn as a dashed line.
    %(output)s
    """
    fmts = check_formats(formats)
    prop = np.asarray(proportion, dtype=float).ravel()
    d = np.asarray(diff, dtype=float).ravel() * 100.0
    tax = [str(t) for t in taxonomy]
    if not (prop.size == d.size == len(tax)):
        raise ValueError(
            f"proportion, diff and taxonomy must have one entry per sub-cluster; got "
            f"{prop.size}, {d.size}, {len(tax)}"
        )
    names = _labels_for(prop.size, labels, "plot_lesion_taxonomy") if labels is not None else None
    known = [t for t in TAXONOMY_COLORS if t in tax]
    unknown = sorted(set(tax) - set(TAXONOMY_COLORS), key=natural_key)
    colors = dict(TAXONOMY_COLORS)
    for i, t in enumerate(unknown):
        colors[t] = QUALITATIVE[(10 + i) % len(QUALITATIVE)]
    with new_figure((7.2, 4.2)) as fig:
        ax = fig.add_subplot()
        ok = np.isfinite(prop) & np.isfinite(d)
        if not ok.any():
            empty(ax, "no sub-clusters")
        else:
            tax_arr = np.asarray(tax, dtype=object)
            for t in known + unknown:
                sel = ok & (tax_arr == t)
                if sel.any():
                    ax.scatter(
                        prop[sel],
                        d[sel],
                        s=36,
                        color=colors[t],
                        label=f"{t} ({sel.sum()})",
                        edgecolors="white",
                        linewidths=0.5,
                        zorder=3,
                    )
            ax.axhline(diff_threshold * 100.0, color="0.3", linestyle="--", linewidth=0.9)
            ax.axhline(0, color="0.6", linewidth=0.6)
            if names is not None and ok.sum() <= 40:
                for idx in np.nonzero(ok)[0].tolist():
                    ax.annotate(
                        names[idx],
                        (prop[idx], d[idx]),
                        textcoords="offset points",
                        xytext=(3, 3),
                        fontsize=6.5,
                        color="0.3",
                    )
            ax.set_xlabel("proportion of the layer's units in the sub-cluster")
            ax.set_ylabel("accuracy change after lesion (percentage points)")
            ax.legend(
                loc="center left", bbox_to_anchor=(1.01, 0.5), title="taxonomy", title_fontsize=8
            )
        return finish(fig, out_stem, fmts, dropped=int((~ok).sum()), title=title, ax=ax)


@figure_doc
def plot_double_lesion_heatmap(
    s: ArrayLike,
    out_stem: StrPath,
    *,
    p: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    p_threshold: float = 1.0 / 50.0,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Conditional double-lesion heatmap: rows = first sub-cluster, columns = second.

    Cell (i, j) = ``-s[i, j] * 100`` where ``s[i, j] = diff_{ij} - diff_j`` is the change of
    accuracy caused by lesioning i on top of j (negative when it hurts), so cells read as extra
    damage in percentage points; on the diagonal ``s[j, j] = diff_j`` (reference §6.6). A star
    marks ``p <= p_threshold``, ``?`` marks ``p == 1`` (no random lesion did less damage).
    Missing pairs (NaN) are grey.

    Parameters
    ----------
    s : array-like of shape (n_subclusters, n_subclusters)
    p : array-like of shape (n_subclusters, n_subclusters), optional
        p-values of the conditional lesion tests.
    labels : sequence of str, optional
    p_threshold : float
        Significance threshold (the original used 1/50).
    %(output)s
    """
    fmts = check_formats(formats)
    mat = np.asarray(s, dtype=float)
    if mat.size == 0:
        mat = mat.reshape(0, 0)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"s must be a square matrix (first x second); got shape {mat.shape}")
    n = mat.shape[0]
    pm = None
    if p is not None:
        pm = np.asarray(p, dtype=float)
        if pm.shape != mat.shape:
            raise ValueError(f"p must have the shape of s, {mat.shape}; got {pm.shape}")
    names = _labels_for(n, labels, "plot_double_lesion_heatmap")
    cell = -mat * 100.0
    with new_figure((max(4.5, 0.36 * n + 2.8), max(3.8, 0.36 * n + 1.8))) as fig:
        ax = fig.add_subplot()
        finite = np.isfinite(cell)
        if n == 0 or not finite.any():
            empty(ax, "no double-lesion results")
        else:
            im, vmax = _diverging_image(ax, cell, "RdBu_r", aspect="equal")
            ax.set_xticks(range(n), names, rotation=60, ha="right", rotation_mode="anchor")
            ax.set_yticks(range(n), names)
            ax.set_xlabel("second (lesioned first, held fixed)")
            ax.set_ylabel("first (added on top)")
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label("-s x 100 (extra damage, percentage points)")
            if pm is not None:
                for (i, j), pv in np.ndenumerate(pm):
                    if not math.isfinite(pv):
                        continue
                    mark = (
                        "?"
                        if math.isclose(pv, 1.0, abs_tol=1e-12)
                        else ("\u2605" if pv <= p_threshold else "")
                    )
                    if mark:
                        strong = math.isfinite(cell[i, j]) and abs(cell[i, j]) > 0.6 * vmax
                        ax.text(
                            j,
                            i,
                            mark,
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if strong else "black",
                        )
                ax.set_xlabel(
                    "second (lesioned first, held fixed)\n"
                    f"\u2605 p \u2264 {p_threshold:.3g}    ? p = 1 (less damage than every random lesion)"
                )
        dropped = int((~finite).sum())  # 0 when there is no cell at all
        return finish(fig, out_stem, fmts, dropped=dropped, title=title, ax=ax)


@figure_doc
def plot_dependency_graph(
    nodes: Sequence[tuple[int, int]],
    edges: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    out_stem: StrPath,
    *,
    edge_kinds: Sequence[str] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Directed dependency graph of important sub-clusters, drawn with matplotlib alone.

    Nodes are ``(layer, cluster)`` pairs placed in columns by layer; an edge ``(a, b)`` is an
    arrow a -> b (for the conditional double lesion: "a's importance depends on b", the pairs
    that are not type IV in reference §6.6). Two-way edges curve apart so both stay visible.

    Parameters
    ----------
    nodes : sequence of (int, int)
        ``(layer, cluster label)`` of each important sub-cluster.
    edges : sequence of ((int, int), (int, int))
        Directed edges between nodes.
    edge_kinds : sequence of str, optional
        A category per edge (e.g. the pair type ``"II"``/``"III"``), coloured with a legend.
    %(output)s
    """
    fmts = check_formats(formats)
    node_list = [(int(a), int(b)) for a, b in nodes]
    node_set = set(node_list)
    edge_list = [((int(a[0]), int(a[1])), (int(b[0]), int(b[1]))) for a, b in edges]
    for a, b in edge_list:
        if a not in node_set or b not in node_set:
            raise ValueError(f"edge {a} -> {b} refers to a node not in nodes {sorted(node_set)}")
    kinds = [str(k) for k in edge_kinds] if edge_kinds is not None else None
    if kinds is not None and len(kinds) != len(edge_list):
        raise ValueError(f"got {len(kinds)} edge kinds for {len(edge_list)} edges")
    layers = sorted({layer for layer, _ in node_list})
    pos: dict[tuple[int, int], tuple[float, float]] = {}
    tallest = 1
    for layer in layers:
        members = sorted(nd for nd in node_set if nd[0] == layer)
        tallest = max(tallest, len(members))
        for i, nd in enumerate(members):
            pos[nd] = (float(layers.index(layer)), (len(members) - 1) / 2 - i)
    kind_names = sorted(set(kinds), key=natural_key) if kinds else []
    kind_color = {k: QUALITATIVE[i % 10] for i, k in enumerate(kind_names)}
    with new_figure((max(4.0, 1.9 * len(layers) + 1.5), max(3.0, 0.75 * tallest + 1.4))) as fig:
        ax = fig.add_subplot()
        ax.grid(False)
        if not node_list:
            empty(ax, "no important sub-clusters")
        else:
            pairs = set(edge_list)
            for e, (a, b) in enumerate(edge_list):
                if a == b:
                    continue
                rad = 0.25 if (b, a) in pairs or a[0] == b[0] else 0.08
                color = kind_color[kinds[e]] if kinds else "0.3"
                ax.annotate(
                    "",
                    xy=pos[b],
                    xytext=pos[a],
                    arrowprops={
                        "arrowstyle": "-|>",
                        "color": color,
                        "lw": 1.2,
                        "shrinkA": 13,
                        "shrinkB": 13,
                        "connectionstyle": f"arc3,rad={rad}",
                    },
                )
            xs = [pos[nd][0] for nd in node_list]
            ys = [pos[nd][1] for nd in node_list]
            colors = [
                QUALITATIVE[nd[1] % len(QUALITATIVE)] if nd[1] >= 0 else ISOLATED_COLOR
                for nd in node_list
            ]
            ax.scatter(xs, ys, s=520, c=colors, edgecolors="0.2", linewidths=0.8, zorder=3)
            for nd in node_list:
                ax.text(
                    *pos[nd],
                    f"c{nd[1]}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    zorder=4,
                    color="black",
                )
            ax.set_xticks(range(len(layers)), [f"layer {layer}" for layer in layers])
            ax.set_yticks([])
            ax.spines["left"].set_visible(False)
            ax.set_xlim(-0.6, len(layers) - 0.4)
            ax.set_ylim(-tallest / 2 - 0.3, tallest / 2 + 0.3)
            if kind_names:
                ax.legend(
                    [Line2D([], [], color=kind_color[k], lw=1.5) for k in kind_names],
                    [f"type {k}" for k in kind_names],
                    loc="upper right",
                    bbox_to_anchor=(1.0, -0.08),
                    ncols=len(kind_names),
                )
        note = "no dependencies" if node_list and not edge_list else ""
        return finish(fig, out_stem, fmts, note=note, title=title, ax=ax)
