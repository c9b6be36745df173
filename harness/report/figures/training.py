"""Figures of clusterability through training: random init against trained, learning curves.

Same conventions as :mod:`harness.report.figures.clustering`: arrays or rows in, one file
per format out, non-finite values dropped and counted, empty input drawn as an empty figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from numpy.typing import ArrayLike

from harness.report.figures.common import (
    PAPER_COLOR,
    QUALITATIVE,
    Rows,
    StrPath,
    as_frame,
    check_formats,
    dropped_note,
    empty,
    figure_doc,
    finish,
    finite,
    new_figure,
    numeric,
    ordered_unique,
    require,
    swarm_offsets,
)

__all__ = ["plot_learning_curve", "plot_random_init"]


@figure_doc
def plot_random_init(
    random_ncuts: Mapping[str, ArrayLike],
    out_stem: StrPath,
    *,
    trained: Mapping[str, ArrayLike] | None = None,
    paper: Mapping[str, float] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """N-cuts of randomly initialised networks next to those of trained ones.

    One panel per network (key), each with its own n-cut scale (a random MLP's n-cuts spread
    over +-0.03 around 10.3, a CNN's around 10.9): random-init n-cuts in grey, trained n-cuts
    in blue, each a box (quartiles) over a swarm of the individual values. ``paper`` values
    (the paper's random-init means, Table I) are hollow black diamonds on the grey box.

    Parameters
    ----------
    random_ncuts : mapping of str to array-like of shape (n_trials,)
        Network name -> n-cuts of untrained networks.
    trained : mapping of str to array-like, optional
        Network name -> n-cuts of trained networks (may have keys of its own).
    paper : mapping of str to float, optional
        Network name -> the paper's random-init mean.
    %(output)s
    """
    fmts = check_formats(formats)
    trained = dict(trained or {})
    paper = dict(paper or {})
    keys = list(dict.fromkeys([*random_ncuts, *trained]))
    series = [("random init", "#8c8c8c", dict(random_ncuts)), ("trained", QUALITATIVE[0], trained)]
    with new_figure((max(4.5, 2.3 * len(keys) + 0.8), 3.8)) as fig:
        axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
        dropped = 0
        handles: dict[str, PathCollection] = {}
        for ax, key in zip(axes, keys, strict=False):
            drew = False
            ticks: dict[int, str] = {}
            for x, (name, color, data) in enumerate(series):
                if key not in data:
                    continue
                ticks[x] = name.replace(" ", "\n")
                vals, n_bad = finite(data[key])
                dropped += n_bad
                if vals.size == 0:
                    continue
                drew = True
                ax.boxplot(
                    [vals],
                    positions=[x],
                    widths=0.55,
                    showfliers=False,
                    patch_artist=True,
                    boxprops={"facecolor": color, "alpha": 0.25, "edgecolor": color},
                    medianprops={"color": color},
                    whiskerprops={"color": color},
                    capprops={"color": color},
                )
                handles[name] = ax.scatter(
                    x + swarm_offsets(vals, width=0.45),
                    vals,
                    s=9,
                    color=color,
                    alpha=0.8,
                    linewidths=0,
                    label=name,
                )
            ref = paper.get(key)
            if ref is not None and math.isfinite(float(ref)):
                drew = True
                handles["paper"] = ax.scatter(
                    [0],
                    [float(ref)],
                    marker="D",
                    s=55,
                    facecolors="none",
                    edgecolors=PAPER_COLOR,
                    zorder=4,
                    label="paper (random-init mean)",
                )
            ax.set_title(str(key))
            if not drew:
                empty(ax, "no finite n-cuts")
                continue
            ax.set_xticks(list(ticks), list(ticks.values()))
            ax.set_xlim(-0.6, 1.6)
            ax.margins(y=0.15)
        if not keys:
            empty(axes[0], "no n-cuts")
        else:
            axes[0].set_ylabel("n-cut")
        if handles:
            fig.legend(
                handles=list(handles.values()), loc="outside lower center", ncols=len(handles)
            )
        return finish(fig, out_stem, fmts, note=dropped_note(dropped), title=title)


@figure_doc
def plot_learning_curve(
    data: Rows,
    out_stem: StrPath,
    *,
    x: str = "epoch",
    ncut: str = "ncut",
    acc: str | None = "test_acc",
    hue: str | None = None,
    prune_start: float | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """N-cut (top) and test accuracy (bottom) through training, pruning start dashed.

    Parameters
    ----------
    data : DataFrame or sequence of dict
        One row per checkpoint with columns ``x`` and ``ncut``, optionally ``acc``,
        ``phase`` ("unpruned"/"pruned"), ``paper_<ncut>`` (drawn dotted, grey) and ``hue``.
    x, ncut, acc, hue : str
        Column names (``acc``/``hue`` may be None or absent).
    prune_start : float, optional
        Epoch after which pruning starts; the dashed line goes there. By default the last
        ``unpruned`` epoch when a ``phase`` column exists.
    %(output)s
    """
    fmts = check_formats(formats)
    df = as_frame(data)
    has_acc = bool(acc) and acc in df.columns
    with new_figure((6.4, 5.0 if has_acc else 3.4)) as fig:
        axes = fig.subplots(2 if has_acc else 1, 1, sharex=True, squeeze=False)[:, 0]
        if df.empty:
            for ax in axes:
                empty(ax, "no checkpoints")
            return finish(fig, out_stem, fmts, title=title)
        require(df, [x, ncut], "plot_learning_curve")
        xs = numeric(df[x])
        groups = ordered_unique(list(df[hue])) if hue and hue in df.columns else [None]
        panels: list[tuple[Axes, str]] = [(axes[0], ncut)]
        if has_acc:
            assert acc is not None
            panels.append((axes[1], acc))
        dropped = 0
        for ax, column in panels:
            ys = numeric(df[column])
            paper_col = f"paper_{column}"
            paper_ys = numeric(df[paper_col]) if paper_col in df.columns else None
            drew = False
            for gi, g in enumerate(groups):
                sel = np.ones(len(df), dtype=bool) if g is None else np.asarray(df[hue] == g)
                ok = sel & np.isfinite(xs) & np.isfinite(ys)
                dropped += int((sel & ~(np.isfinite(xs) & np.isfinite(ys))).sum())
                order = np.argsort(xs[ok], kind="stable")
                color = QUALITATIVE[gi % 10]
                if ok.any():
                    drew = True
                    ax.plot(
                        xs[ok][order],
                        ys[ok][order],
                        marker="o",
                        markersize=3.5,
                        color=color,
                        label=None if g is None else str(g),
                    )
                if paper_ys is not None:
                    okp = sel & np.isfinite(xs) & np.isfinite(paper_ys)
                    if okp.any():
                        op = np.argsort(xs[okp], kind="stable")
                        ax.plot(
                            xs[okp][op],
                            paper_ys[okp][op],
                            linestyle=":",
                            marker="D",
                            markersize=3,
                            markerfacecolor="none",
                            color=color,
                            alpha=0.7,
                            label="paper" if gi == 0 else None,
                        )
            if not drew:
                empty(ax, f"no finite {column} values")
            ax.set_ylabel(column)
        starts: list[float] = []
        if prune_start is not None and math.isfinite(float(prune_start)):
            starts = [float(prune_start)]
        elif "phase" in df.columns:
            unpruned = np.asarray(df["phase"] == "unpruned") & np.isfinite(xs)
            if unpruned.any() and np.asarray(df["phase"] == "pruned").any():
                starts = [float(xs[unpruned].max())]
        for ax in axes:
            for s in starts:
                ax.axvline(s, color="0.25", linestyle="--", linewidth=1.0)
        if starts:
            axes[0].text(
                starts[0],
                1.0,
                " pruning starts",
                transform=axes[0].get_xaxis_transform(),
                va="top",
                ha="left",
                fontsize=7.5,
                color="0.25",
            )
        axes[-1].set_xlabel(x)
        handles, labels = axes[0].get_legend_handles_labels()
        if labels:
            axes[0].legend(loc="best")
        return finish(fig, out_stem, fmts, note=dropped_note(dropped), title=title)
