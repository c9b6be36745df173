"""Figures of clustering results: n-cuts against nulls, factors grid, K, random init, training.

Every function takes plain arrays or DataFrames and an output path *stem* (no extension),
writes one file per requested format (PNG and SVG by default) atomically and returns the
paths (see :mod:`harness.report.figures.common`). NaN and infinite values are dropped (and
their count shown in the figure); empty input gives an annotated empty figure rather than an
exception. Inconsistent input (e.g. missing columns) raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from numpy.typing import ArrayLike

from harness.files import natural_key
from harness.report.cells import is_missing
from harness.report.figures.common import (
    OTHER_PHASE,
    PAPER_COLOR,
    PHASE_STYLE,
    QUALITATIVE,
    TRUE_COLOR,
    Rows,
    StrPath,
    as_frame,
    check_formats,
    empty,
    empty_figure,
    figure_doc,
    finish,
    finite,
    new_figure,
    numeric,
    ordered_unique,
    require,
    swarm_offsets,
)

__all__ = [
    "plot_factors_grid",
    "plot_k_sensitivity",
    "plot_learning_curve",
    "plot_null_distribution",
    "plot_random_init",
]

_NULL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
_SYMLOG_TICKS = (-1000, -300, -100, -30, -10, -3, 0, 3, 10, 30, 100, 300, 1000)


def _fmt_stat(value: float | None, spec: str) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


@figure_doc
def plot_null_distribution(
    ncut: float,
    nulls: Mapping[str, ArrayLike] | ArrayLike,
    out_stem: StrPath,
    *,
    p: float | Mapping[str, float] | None = None,
    z: float | Mapping[str, float] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Histogram of the shuffled networks' n-cuts with the true n-cut marked.

    The title (e.g. the model and phase) is followed by a line of statistics: the n-cut and,
    per null, the p-value and z-score.

    Parameters
    ----------
    ncut : float
        The trained network's n-cut.
    nulls : mapping of str to array-like of shape (n_samples,), or array-like
        Null distribution(s), e.g. ``{"layer": ..., "layer_nonzero": ...}``; all are drawn
        over shared bins. A bare array is named ``"null"``.
    p, z : float or mapping of str to float, optional
        p-value and z-score of ``ncut`` against each null (as computed by
        :mod:`harness.stats`), shown in the title; a float applies to a single null.
    %(output)s
    """
    fmts = check_formats(formats)
    named = dict(nulls) if isinstance(nulls, Mapping) else {"null": nulls}
    cleaned = {k: finite(v) for k, v in named.items()}
    dropped = sum(n for _, n in cleaned.values())
    all_null = np.concatenate([v for v, _ in cleaned.values()]) if cleaned else np.zeros(0)
    true = float(ncut) if ncut is not None else float("nan")

    def per_null(stat: float | Mapping[str, float] | None, key: str) -> float | None:
        if stat is None:
            return None
        if isinstance(stat, Mapping):
            return stat.get(key)
        return float(stat) if len(named) == 1 else None

    stat_parts = [f"n-cut = {_fmt_stat(true, '.3f')}"]
    for key in named:
        pk, zk = per_null(p, key), per_null(z, key)
        if pk is not None or zk is not None:
            stat_parts.append(f"{key}: p = {_fmt_stat(pk, '.3g')}, z = {_fmt_stat(zk, '.2f')}")
    notes: list[str] = []
    with new_figure((6.4, 3.8)) as fig:
        ax = fig.add_subplot()
        if all_null.size == 0 and not math.isfinite(true):
            empty(ax, "no finite n-cut and no null samples")
        else:
            if all_null.size:
                lo, hi = float(all_null.min()), float(all_null.max())
                pad = 0.05 * (hi - lo) if hi > lo else max(0.05 * abs(lo), 0.01)
                n_bins = int(np.clip(2 * math.sqrt(all_null.size), 5, 40))
                edges = np.linspace(lo - pad, hi + pad, n_bins + 1).tolist()
                for i, (key, (vals, _)) in enumerate(cleaned.items()):
                    if vals.size == 0:
                        continue
                    color = _NULL_COLORS[i % len(_NULL_COLORS)]
                    ax.hist(vals, bins=edges, color=color, alpha=0.35, histtype="stepfilled")
                    ax.hist(
                        vals,
                        bins=edges,
                        color=color,
                        histtype="step",
                        linewidth=1.2,
                        label=f"{key} null (n = {vals.size}, mean {vals.mean():.3f})",
                    )
            else:
                notes.append("no null samples")
            if math.isfinite(true):
                ax.axvline(true, color=TRUE_COLOR, linewidth=2, label=f"trained n-cut {true:.3f}")
            ax.set_xlabel("n-cut")
            ax.set_ylabel("shuffled networks")
            ax.legend(loc="best")
            ax.margins(x=0.08)
        lines = ([title] if title else []) + ["; ".join(stat_parts)]
        ax.set_title("\n".join(lines), fontsize=9.5)
        return finish(fig, out_stem, fmts, note="; ".join(notes), dropped=dropped)


@figure_doc
def plot_factors_grid(
    data: Rows,
    out_stem: StrPath,
    *,
    value: str = "z",
    row: str = "condition",
    col: str = "dataset",
    phase: str = "phase",
    row_order: Sequence[object] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Z-score (or any ``value``) per condition and dataset, unpruned next to pruned.

    One panel per ``col`` value (dataset), one line per ``row`` value (condition). Each
    instance is a small translucent marker; the mean over instances a large one (circle:
    unpruned, triangle: pruned). If a ``paper_<value>`` column exists its value is drawn as a
    hollow black diamond. The x axis becomes symmetric-log when values exceed +-20 (the
    paper's z-scores range from -130 to +24).

    Parameters
    ----------
    data : DataFrame or sequence of dict, shape (n_rows, ...)
        Result rows with columns ``row``, ``col``, ``phase`` and ``value``.
    value, row, col, phase : str
        Column names.
    row_order : sequence, optional
        The ``row`` values from top to bottom; values not listed follow in order of first
        appearance (the default for all).
    %(output)s
    """
    fmts = check_formats(formats)
    df = as_frame(data)
    paper_col = f"paper_{value}"
    if df.empty:
        return empty_figure((4.2, 3.2), "no results", out_stem, fmts, title=title)
    require(df, [value, row, col, phase], "plot_factors_grid")
    vals = numeric(df[value])
    paper_vals = numeric(df[paper_col]) if paper_col in df.columns else None
    cols = sorted(ordered_unique(list(df[col])), key=lambda v: natural_key(str(v)))
    rows_ = ordered_unique(list(df[row]))
    if row_order is not None:
        rows_ = [r for r in row_order if r in rows_] + [r for r in rows_ if r not in row_order]
    phases = ordered_unique(list(df[phase]))
    phases.sort(
        key=lambda ph: (0, list(PHASE_STYLE).index(ph)) if ph in PHASE_STYLE else (1, str(ph))
    )
    n_panels = max(1, len(cols))
    height = 1.2 + 0.42 * max(1, len(rows_)) * max(1, len(phases)) ** 0.5
    finite_all = vals[np.isfinite(vals)]
    if paper_vals is not None:
        finite_all = np.concatenate([finite_all, paper_vals[np.isfinite(paper_vals)]])
    symlog = finite_all.size > 0 and float(np.abs(finite_all).max()) > 20
    with new_figure((min(3.6 * n_panels + 1.6, 16), min(height, 12))) as fig:
        axes = fig.subplots(1, n_panels, sharey=True, squeeze=False)[0]
        n_dropped = int((~np.isfinite(vals)).sum())
        if not rows_ or not cols:
            empty(axes[0], "no results with a condition and dataset")
        offsets = np.linspace(-0.18, 0.18, len(phases)) if len(phases) > 1 else np.zeros(1)
        handles: dict[str, PathCollection] = {}
        for ax, c in zip(axes, cols, strict=False):
            in_col = np.asarray(df[col] == c)
            for ri, r in enumerate(rows_):
                in_row = in_col & np.asarray(df[row] == r)
                for pi, ph in enumerate(phases):
                    sel = in_row & np.asarray(df[phase] == ph)
                    v = vals[sel]
                    v = v[np.isfinite(v)]
                    y = ri + offsets[pi]
                    style = PHASE_STYLE.get(str(ph), OTHER_PHASE)
                    if v.size:
                        ax.scatter(
                            v,
                            np.full(v.size, y),
                            s=12,
                            alpha=0.4,
                            color=style["color"],
                            marker=style["marker"],
                            linewidths=0,
                        )
                        handles[str(ph)] = ax.scatter(
                            [v.mean()],
                            [y],
                            s=55,
                            color=style["color"],
                            marker=style["marker"],
                            edgecolors="white",
                            linewidths=0.6,
                            label=f"{ph} (mean)",
                            zorder=3,
                        )
                    if paper_vals is not None:
                        pv = paper_vals[sel]
                        pv = pv[np.isfinite(pv)]
                        if pv.size:
                            handles["paper"] = ax.scatter(
                                [pv[0]],
                                [y],
                                s=70,
                                facecolors="none",
                                edgecolors=PAPER_COLOR,
                                marker="D",
                                linewidths=1.0,
                                label="paper (mean)",
                                zorder=2,
                            )
            ax.axvline(0, color="0.3", linewidth=0.8, linestyle="--")
            ax.set_title(str(c))
            ax.set_xlabel(value)
            if symlog:
                # symlog keeps small and huge z-scores readable on one axis; plain tick
                # labels (-30, -10, 0, 10) read better than powers of ten
                ax.set_xscale("symlog", linthresh=3.0)
                lo = min(float(finite_all.min()), 0.0) * 1.3 - 1
                hi = max(float(finite_all.max()), 0.0) * 1.3 + 1
                ticks = [t for t in _SYMLOG_TICKS if lo <= t <= hi]
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
                ax.minorticks_off()
        for ax in axes[len(cols) :]:
            empty(ax, "")
        axes[0].set_yticks(range(len(rows_)), [str(r) for r in rows_])
        axes[0].set_ylim(len(rows_) - 0.5, -0.5)
        if handles:
            keys = [str(ph) for ph in phases if str(ph) in handles] + ["paper"] * (
                "paper" in handles
            )
            fig.legend(
                handles=[handles[k] for k in keys], loc="outside lower center", ncols=len(keys)
            )
        if title:  # title before footnote, as before: the order shows in the SVG and PDF
            fig.suptitle(title)
        return finish(fig, out_stem, fmts, dropped=n_dropped)


@figure_doc
def plot_k_sensitivity(
    data: Rows,
    out_stem: StrPath,
    *,
    k: str = "n_clusters",
    hue: str | None = "model_tag",
    style: str | None = "null",
    sig: str = "is_sig",
    value: str = "z",
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Fraction of significant instances and mean z-score against the number of clusters K.

    Left: fraction of rows with ``sig`` true per (``hue``, ``style``, K); right: mean ``value``
    with a +-1 SD bar. One colour per ``hue`` value (model), one line style per ``style``
    value (null model), when those columns exist.

    Parameters
    ----------
    data : DataFrame or sequence of dict
        One row per instance, K and null model.
    k, hue, style, sig, value : str
        Column names; ``hue``/``style`` may be None or absent.
    %(output)s
    """
    fmts = check_formats(formats)
    df = as_frame(data)
    with new_figure((9.0, 3.6)) as fig:
        ax_sig, ax_z = fig.subplots(1, 2)
        if df.empty:
            empty(ax_sig, "no results")
            empty(ax_z, "no results")
            return finish(fig, out_stem, fmts, title=title)
        require(df, [k, sig, value], "plot_k_sensitivity")
        hues = ordered_unique(list(df[hue])) if hue and hue in df.columns else [None]
        styles = ordered_unique(list(df[style])) if style and style in df.columns else [None]
        linestyles = ["-", "--", ":", "-."]
        ks = numeric(df[k])
        sigs = np.asarray([np.nan if is_missing(v) else float(bool(v)) for v in df[sig]])
        vals = numeric(df[value])
        n_dropped = int((~np.isfinite(vals)).sum())
        drew = False
        for hi, hv in enumerate(hues):
            color = QUALITATIVE[hi % 10]
            for si, sv in enumerate(styles):
                sel = np.isfinite(ks)
                if hv is not None:
                    sel &= np.asarray(df[hue] == hv)
                if sv is not None:
                    sel &= np.asarray(df[style] == sv)
                kvals = sorted(set(ks[sel].tolist()))
                if not kvals:
                    continue
                frac, mean, sd = [], [], []
                for kv in kvals:
                    m = sel & (ks == kv)
                    s = sigs[m]
                    s = s[np.isfinite(s)]
                    frac.append(s.mean() if s.size else np.nan)
                    v = vals[m]
                    v = v[np.isfinite(v)]
                    mean.append(v.mean() if v.size else np.nan)
                    sd.append(v.std(ddof=1) if v.size > 1 else 0.0)
                parts = [str(x) for x in (hv, sv) if x is not None]
                label = " / ".join(parts) or None
                ls = linestyles[si % len(linestyles)]
                ax_sig.plot(kvals, frac, marker="o", color=color, linestyle=ls, label=label)
                ax_z.errorbar(
                    kvals,
                    mean,
                    yerr=sd,
                    marker="o",
                    color=color,
                    linestyle=ls,
                    capsize=3,
                    label=label,
                )
                drew = True
        if not drew:
            empty(ax_sig, "no rows with a finite K")
            empty(ax_z, "no rows with a finite K")
        else:
            ax_sig.set_ylim(-0.05, 1.05)
            ax_sig.set_xlabel("number of clusters K")
            ax_sig.set_ylabel(f"fraction with {sig}")
            ax_z.axhline(0, color="0.3", linewidth=0.8, linestyle="--")
            ax_z.set_xlabel("number of clusters K")
            ax_z.set_ylabel(f"{value} (mean +- SD)")
            if any(h is not None for h in hues) or any(s is not None for s in styles):
                ax_z.legend(loc="best")
        return finish(fig, out_stem, fmts, dropped=n_dropped if drew else 0, title=title)


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
        return finish(fig, out_stem, fmts, dropped=dropped, title=title)


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
        return finish(fig, out_stem, fmts, dropped=dropped, title=title)
