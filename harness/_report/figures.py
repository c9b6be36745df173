"""Figures of the clusterability experiments (matplotlib, object-oriented API only).

Every function takes plain arrays or DataFrames and an output path *stem* (no extension),
writes one file per requested format (PNG and SVG by default) atomically and returns the
paths. Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never
through ``pyplot``: no global backend switch, no figure registry to leak into, nothing to
close. Style settings apply inside ``matplotlib.rc_context`` only, so the user's rcParams are
untouched.

Reproducibility: SVGs use a fixed ``svg.hashsalt`` and carry no date or creator metadata,
PNGs carry no software tag, and nothing random is drawn (strip plots use a deterministic
swarm layout), so the same inputs give byte-identical files.

Bad input: NaN and infinite values are dropped (and their count shown in the figure);
empty input gives an annotated empty figure rather than an exception. Inconsistent shapes
(e.g. labels that do not match the weights) raise ``ValueError``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from harness._report._io import atomic_write_bytes, natural_key

__all__ = [
    "FORMATS",
    "TAXONOMY_COLORS",
    "cluster_colors",
    "plot_clustered_network",
    "plot_clustering",
    "plot_dependency_graph",
    "plot_double_lesion_heatmap",
    "plot_factors_grid",
    "plot_k_sensitivity",
    "plot_learning_curve",
    "plot_lesion_accuracy",
    "plot_lesion_class_damage",
    "plot_lesion_taxonomy",
    "plot_null_distribution",
    "plot_random_init",
]

#: Output formats a figure function can write.
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

_METADATA: dict[str, dict[str, Any]] = {
    # Drop everything that varies between runs or library versions.
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}

_STYLE: dict[Any, Any] = {
    "svg.hashsalt": "clusterability-harness",
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "image.interpolation": "nearest",
    "savefig.dpi": 130.0,
    "savefig.facecolor": "white",
}

#: Unpruned / pruned / paper colours, used consistently across figures.
PHASE_STYLE: dict[str, dict[str, Any]] = {
    "unpruned": {"color": "#1f77b4", "marker": "o"},
    "pruned": {"color": "#d62728", "marker": "^"},
}
_OTHER_PHASE = {"color": "#7f7f7f", "marker": "s"}
_NULL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
_TRUE_COLOR = "#d62728"
_PAPER_COLOR = "black"

#: Colours of the lesion taxonomy (reference §6.5).
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

_QUALITATIVE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
]
_ISOLATED_COLOR = "#e8e8e8"
_SYMLOG_TICKS = (-1000, -300, -100, -30, -10, -3, 0, 3, 10, 30, 100, 300, 1000)


# ----------------------------------------------------------------------------------------
# infrastructure


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    fmts = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ValueError(f"unknown figure format(s) {bad or fmts}; allowed: {', '.join(FORMATS)}")
    return fmts


@contextmanager
def _figure(figsize: tuple[float, float]) -> Iterator[Figure]:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _save(fig: Figure, out_stem: str | os.PathLike[str], formats: Sequence[str]) -> list[Path]:
    # Called inside _figure's rc_context: svg.hashsalt is read at save time.
    stem = Path(out_stem)
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=_METADATA[fmt])
        paths.append(atomic_write_bytes(Path(f"{stem}.{fmt}"), buf.getvalue()))
    return paths


def _empty(ax: Axes, message: str) -> None:
    """Annotate an axes that has nothing to show."""
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="0.35",
        fontsize=10,
        wrap=True,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)


def _note(fig: Figure, text: str) -> None:
    """A small grey footnote at the bottom right of the figure (kept clear of the data)."""
    if text:
        fig.supxlabel(text, x=0.995, ha="right", fontsize=7, color="0.45")


def _finish(
    fig: Figure,
    out_stem: str | os.PathLike[str],
    formats: Sequence[str],
    *,
    note: str = "",
    title: str | None = None,
    ax: Axes | None = None,
) -> list[Path]:
    """The last step of a figure function: footnote, title, then :func:`_save`.

    ``note`` becomes the footnote (:func:`_note`; nothing when empty). ``title``, when given,
    goes above ``ax`` or, without ``ax``, above the whole figure. Call it inside
    :func:`_figure`'s ``with`` block, like :func:`_save`.
    """
    _note(fig, note)
    if title:
        if ax is None:
            fig.suptitle(title)
        else:
            ax.set_title(title)
    return _save(fig, out_stem, formats)


def _empty_figure(
    figsize: tuple[float, float],
    message: str,
    out_stem: str | os.PathLike[str],
    formats: Sequence[str],
    *,
    title: str | None = None,
) -> list[Path]:
    """Save a figure of one empty axes annotated with ``message`` (input with nothing to draw)."""
    with _figure(figsize) as fig:
        ax = fig.add_subplot()
        _empty(ax, message)
        return _finish(fig, out_stem, formats, title=title, ax=ax)


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


def _finite(values: Any) -> tuple[np.ndarray, int]:
    """Finite entries of ``values`` as float64 (flattened) and the number dropped."""
    arr = np.asarray(values, dtype=float).ravel()
    mask = np.isfinite(arr)
    return arr[mask], int(arr.size - mask.sum())


def _dropped_note(n: int) -> str:
    return f"{n} non-finite value{'s' if n != 1 else ''} not shown" if n else ""


def _fmt_stat(value: float | None, spec: str) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def _is_missing(value: Any) -> bool:
    """Whether a cell value is missing: None or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ordered_unique(values: Sequence[Any]) -> list[Any]:
    """Distinct non-missing values in order of first appearance."""
    out: dict[Any, None] = {}
    for v in values:
        if _is_missing(v):
            continue
        out.setdefault(v, None)
    return list(out)


def _frame(data: pd.DataFrame | Sequence[Mapping[str, Any]] | None) -> pd.DataFrame:
    if data is None:
        return pd.DataFrame()
    if isinstance(data, pd.DataFrame):
        return data
    return pd.DataFrame.from_records(list(data))


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs column(s) {missing}; got {list(df.columns)}. Pass rows with these "
            "columns or name the columns to use with the keyword arguments."
        )


def _num(series: pd.Series) -> np.ndarray:
    return np.asarray(pd.to_numeric(series, errors="coerce"), dtype=float)


def swarm_offsets(
    values: np.ndarray,
    *,
    width: float = 0.4,
    n_bins: int = 40,
    bin_size: float | None = None,
    max_step: float | None = None,
) -> np.ndarray:
    """Deterministic horizontal offsets for a strip plot that does not hide points.

    Values are binned along the value axis; points sharing a bin are spread symmetrically
    (0, +d, -d, +2d, ...), with ``d`` chosen so the fullest bin spans ``width``. Unlike random
    jitter this needs no RNG and draws the same picture every time (a simple beeswarm).

    Parameters
    ----------
    values : ndarray of shape (n,)
        Finite values.
    width : float
        Total horizontal extent of the fullest bin.
    n_bins : int
        Number of bins over the value range (when ``bin_size`` is not given).
    bin_size : float, optional
        Bin height in data units; pass the same one for every strip of an axes (e.g. the
        axes' value range / 60) so that swarms of different spread look alike.
    max_step : float, optional
        Largest horizontal distance between neighbours in a bin (uniform spacing across
        strips); by default the fullest bin always spans ``width``.

    Returns
    -------
    ndarray of shape (n,)
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return np.zeros(0)
    lo, hi = float(values.min()), float(values.max())
    if bin_size is not None and bin_size > 0:
        bins = np.floor((values - lo) / bin_size).astype(int)
    elif hi > lo:
        bins = np.minimum(((values - lo) / (hi - lo) * n_bins).astype(int), n_bins - 1)
    else:
        bins = np.zeros(values.size, dtype=int)
    counts = np.bincount(bins)
    fullest = int(counts.max())
    step = width / (fullest - 1) if fullest > 1 else 0.0
    if max_step is not None:
        step = min(step, max_step)
    offsets = np.zeros(values.size)
    for b in np.nonzero(counts)[0]:
        members = np.nonzero(bins == b)[0]
        members = members[np.argsort(values[members], kind="stable")]
        c = members.size
        # slots centred on 0, filled from the middle out: 0, -1, +1, -2, +2 (odd counts)
        # or -0.5, +0.5, -1.5, +1.5 (even counts)
        slots = np.arange(c) - (c - 1) / 2
        slots = slots[np.lexsort((slots, np.abs(slots)))]
        offsets[members] = slots * step
    return offsets


def cluster_colors(labels: Sequence[int] | np.ndarray) -> dict[int, str]:
    """Colour of every cluster label present (``-1``, isolated, is light grey).

    Labels are taken in sorted order and given the 20 qualitative colours of ``tab20``-like
    palette in turn (cycling beyond 20 clusters).
    """
    uniq = sorted({int(v) for v in np.asarray(labels).ravel()})
    out: dict[int, str] = {}
    i = 0
    for lab in uniq:
        if lab < 0:
            out[lab] = _ISOLATED_COLOR
        else:
            out[lab] = _QUALITATIVE[i % len(_QUALITATIVE)]
            i += 1
    return out


# ----------------------------------------------------------------------------------------
# clustering: true n-cut against its nulls


def plot_null_distribution(
    ncut: float,
    nulls: Mapping[str, Any] | Any,
    out_stem: str | os.PathLike[str],
    *,
    p: float | Mapping[str, float] | None = None,
    z: float | Mapping[str, float] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Histogram of the shuffled networks' n-cuts with the true n-cut marked.

    Parameters
    ----------
    ncut : float
        The trained network's n-cut.
    nulls : mapping of str to array-like of shape (n_samples,), or array-like
        Null distribution(s), e.g. ``{"layer": ..., "layer_nonzero": ...}``; all are drawn
        over shared bins. A bare array is named ``"null"``.
    out_stem : path
        Output path without extension.
    p, z : float or mapping of str to float, optional
        p-value and z-score of ``ncut`` against each null (as computed by
        :mod:`harness.stats`), shown in the title; a float applies to a single null.
    title : str, optional
        First title line (e.g. the model and phase).
    formats : sequence of str
        Any of :data:`FORMATS`.

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
    named: dict[str, Any] = dict(nulls) if isinstance(nulls, Mapping) else {"null": nulls}
    finite = {k: _finite(v) for k, v in named.items()}
    dropped = sum(n for _, n in finite.values())
    all_null = np.concatenate([v for v, _ in finite.values()]) if finite else np.zeros(0)
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
    with _figure((6.4, 3.8)) as fig:
        ax = fig.add_subplot()
        if all_null.size == 0 and not math.isfinite(true):
            _empty(ax, "no finite n-cut and no null samples")
        else:
            if all_null.size:
                lo, hi = float(all_null.min()), float(all_null.max())
                pad = 0.05 * (hi - lo) if hi > lo else max(0.05 * abs(lo), 0.01)
                n_bins = int(np.clip(2 * math.sqrt(all_null.size), 5, 40))
                edges = np.linspace(lo - pad, hi + pad, n_bins + 1).tolist()
                for i, (key, (vals, _)) in enumerate(finite.items()):
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
                ax.axvline(true, color=_TRUE_COLOR, linewidth=2, label=f"trained n-cut {true:.3f}")
            ax.set_xlabel("n-cut")
            ax.set_ylabel("shuffled networks")
            ax.legend(loc="best")
            ax.margins(x=0.08)
        notes.append(_dropped_note(dropped))
        _note(fig, "; ".join(n for n in notes if n))
        lines = ([title] if title else []) + ["; ".join(stat_parts)]
        ax.set_title("\n".join(lines), fontsize=9.5)
        return _save(fig, out_stem, fmts)


# ----------------------------------------------------------------------------------------
# clustering: factors grid, K sensitivity, random init, learning curves


def plot_factors_grid(
    data: pd.DataFrame | Sequence[Mapping[str, Any]],
    out_stem: str | os.PathLike[str],
    *,
    value: str = "z",
    row: str = "condition",
    col: str = "dataset",
    phase: str = "phase",
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
    out_stem : path
        Output path without extension.
    value, row, col, phase : str
        Column names.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
    df = _frame(data)
    paper_col = f"paper_{value}"
    if df.empty:
        return _empty_figure((4.2, 3.2), "no results", out_stem, fmts, title=title)
    _require(df, [value, row, col, phase], "plot_factors_grid")
    vals = _num(df[value])
    paper_vals = _num(df[paper_col]) if paper_col in df.columns else None
    cols = sorted(_ordered_unique(list(df[col])), key=lambda v: natural_key(str(v)))
    rows_ = _ordered_unique(list(df[row]))
    phases = _ordered_unique(list(df[phase]))
    phases.sort(
        key=lambda ph: (0, list(PHASE_STYLE).index(ph)) if ph in PHASE_STYLE else (1, str(ph))
    )
    n_panels = max(1, len(cols))
    height = 1.2 + 0.42 * max(1, len(rows_)) * max(1, len(phases)) ** 0.5
    finite_all = vals[np.isfinite(vals)]
    if paper_vals is not None:
        finite_all = np.concatenate([finite_all, paper_vals[np.isfinite(paper_vals)]])
    symlog = finite_all.size > 0 and float(np.abs(finite_all).max()) > 20
    with _figure((min(3.6 * n_panels + 1.6, 16), min(height, 12))) as fig:
        axes = fig.subplots(1, n_panels, sharey=True, squeeze=False)[0]
        n_dropped = int((~np.isfinite(vals)).sum())
        if not rows_ or not cols:
            _empty(axes[0], "no results with a condition and dataset")
        offsets = np.linspace(-0.18, 0.18, len(phases)) if len(phases) > 1 else np.zeros(1)
        handles: dict[str, Any] = {}
        for ax, c in zip(axes, cols, strict=False):
            in_col = np.asarray(df[col] == c)
            for ri, r in enumerate(rows_):
                in_row = in_col & np.asarray(df[row] == r)
                for pi, ph in enumerate(phases):
                    sel = in_row & np.asarray(df[phase] == ph)
                    v = vals[sel]
                    v = v[np.isfinite(v)]
                    y = ri + offsets[pi]
                    style = PHASE_STYLE.get(str(ph), _OTHER_PHASE)
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
                                edgecolors=_PAPER_COLOR,
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
            _empty(ax, "")
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
        return _finish(fig, out_stem, fmts, note=_dropped_note(n_dropped))


def plot_k_sensitivity(
    data: pd.DataFrame | Sequence[Mapping[str, Any]],
    out_stem: str | os.PathLike[str],
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
    out_stem : path
    k, hue, style, sig, value : str
        Column names; ``hue``/``style`` may be None or absent.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
    df = _frame(data)
    with _figure((9.0, 3.6)) as fig:
        ax_sig, ax_z = fig.subplots(1, 2)
        if df.empty:
            _empty(ax_sig, "no results")
            _empty(ax_z, "no results")
            return _save(fig, out_stem, fmts)
        _require(df, [k, sig, value], "plot_k_sensitivity")
        hues = _ordered_unique(list(df[hue])) if hue and hue in df.columns else [None]
        styles = _ordered_unique(list(df[style])) if style and style in df.columns else [None]
        linestyles = ["-", "--", ":", "-."]
        ks = _num(df[k])
        sigs = np.asarray([np.nan if _is_missing(v) else float(bool(v)) for v in df[sig]])
        vals = _num(df[value])
        n_dropped = int((~np.isfinite(vals)).sum())
        drew = False
        for hi, hv in enumerate(hues):
            color = _QUALITATIVE[hi % 10]
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
            _empty(ax_sig, "no rows with a finite K")
            _empty(ax_z, "no rows with a finite K")
        else:
            ax_sig.set_ylim(-0.05, 1.05)
            ax_sig.set_xlabel("number of clusters K")
            ax_sig.set_ylabel(f"fraction with {sig}")
            ax_z.axhline(0, color="0.3", linewidth=0.8, linestyle="--")
            ax_z.set_xlabel("number of clusters K")
            ax_z.set_ylabel(f"{value} (mean +- SD)")
            if any(h is not None for h in hues) or any(s is not None for s in styles):
                ax_z.legend(loc="best")
        note = _dropped_note(n_dropped) if drew else ""
        return _finish(fig, out_stem, fmts, note=note, title=title)


def plot_random_init(
    random_ncuts: Mapping[str, Any],
    out_stem: str | os.PathLike[str],
    *,
    trained: Mapping[str, Any] | None = None,
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
    out_stem : path
    trained : mapping of str to array-like, optional
        Network name -> n-cuts of trained networks (may have keys of its own).
    paper : mapping of str to float, optional
        Network name -> the paper's random-init mean.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
    trained = dict(trained or {})
    paper = dict(paper or {})
    keys = list(dict.fromkeys([*random_ncuts, *trained]))
    series = [("random init", "#8c8c8c", dict(random_ncuts)), ("trained", "#1f77b4", trained)]
    with _figure((max(4.5, 2.3 * len(keys) + 0.8), 3.8)) as fig:
        axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
        dropped = 0
        handles: dict[str, Any] = {}
        for ax, key in zip(axes, keys, strict=False):
            drew = False
            ticks: dict[int, str] = {}
            for x, (name, color, data) in enumerate(series):
                if key not in data:
                    continue
                ticks[x] = name.replace(" ", "\n")
                vals, n_bad = _finite(data[key])
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
                    edgecolors=_PAPER_COLOR,
                    zorder=4,
                    label="paper (random-init mean)",
                )
            ax.set_title(str(key))
            if not drew:
                _empty(ax, "no finite n-cuts")
                continue
            ax.set_xticks(list(ticks), list(ticks.values()))
            ax.set_xlim(-0.6, 1.6)
            ax.margins(y=0.15)
        if not keys:
            _empty(axes[0], "no n-cuts")
        else:
            axes[0].set_ylabel("n-cut")
        if handles:
            fig.legend(
                handles=list(handles.values()), loc="outside lower center", ncols=len(handles)
            )
        return _finish(fig, out_stem, fmts, note=_dropped_note(dropped), title=title)


def plot_learning_curve(
    data: pd.DataFrame | Sequence[Mapping[str, Any]],
    out_stem: str | os.PathLike[str],
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
    out_stem : path
    x, ncut, acc, hue : str
        Column names (``acc``/``hue`` may be None or absent).
    prune_start : float, optional
        Epoch after which pruning starts; the dashed line goes there. By default the last
        ``unpruned`` epoch when a ``phase`` column exists.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
    df = _frame(data)
    has_acc = bool(acc) and acc in df.columns
    with _figure((6.4, 5.0 if has_acc else 3.4)) as fig:
        axes = fig.subplots(2 if has_acc else 1, 1, sharex=True, squeeze=False)[:, 0]
        if df.empty:
            for ax in axes:
                _empty(ax, "no checkpoints")
            return _save(fig, out_stem, fmts)
        _require(df, [x, ncut], "plot_learning_curve")
        xs = _num(df[x])
        groups = _ordered_unique(list(df[hue])) if hue and hue in df.columns else [None]
        panels: list[tuple[Axes, str]] = [(axes[0], ncut)]
        if has_acc:
            assert acc is not None
            panels.append((axes[1], acc))
        dropped = 0
        for ax, column in panels:
            ys = _num(df[column])
            paper_col = f"paper_{column}"
            paper_ys = _num(df[paper_col]) if paper_col in df.columns else None
            drew = False
            for gi, g in enumerate(groups):
                sel = np.ones(len(df), dtype=bool) if g is None else np.asarray(df[hue] == g)
                ok = sel & np.isfinite(xs) & np.isfinite(ys)
                dropped += int((sel & ~(np.isfinite(xs) & np.isfinite(ys))).sum())
                order = np.argsort(xs[ok], kind="stable")
                color = _QUALITATIVE[gi % 10]
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
                _empty(ax, f"no finite {column} values")
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
        return _finish(fig, out_stem, fmts, note=_dropped_note(dropped), title=title)


# ----------------------------------------------------------------------------------------
# lesion


def _labels_for(n: int, labels: Sequence[str] | None, what: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    labels = [str(v) for v in labels]
    if len(labels) != n:
        raise ValueError(f"{what}: got {len(labels)} labels for {n} sub-clusters")
    return labels


def plot_lesion_accuracy(
    true_acc: Any,
    random_acc: Any,
    out_stem: str | os.PathLike[str],
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
    out_stem : path
    labels : sequence of str, optional
        Sub-cluster labels, e.g. ``"L1-c3 (0.20)"`` (layer, cluster, share of the layer).
    baseline : float, optional
        Unlesioned accuracy.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
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
    with _figure((max(5.0, 0.42 * n + 1.8), 3.9)) as fig:
        ax = fig.add_subplot()
        dropped = int((~np.isfinite(rand)).sum() + (~np.isfinite(true)).sum())
        if n == 0 or not (np.isfinite(true).any() or np.isfinite(rand).any()):
            _empty(ax, "no lesion results")
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
                color=_TRUE_COLOR,
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
        return _finish(fig, out_stem, fmts, note=_dropped_note(dropped), title=title, ax=ax)


def plot_lesion_class_damage(
    true_class_acc: Any,
    baseline_class_acc: Any,
    out_stem: str | os.PathLike[str],
    *,
    random_class_acc: Any | None = None,
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
    out_stem : path
    random_class_acc : array-like of shape (n_random, n_subclusters, n_classes), optional
    labels : sequence of str, optional
        Sub-cluster labels.
    class_names : sequence of str, optional
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
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
    with _figure((max(4.5, 0.45 * c_count + 2.6), max(3.0, 0.3 * s_count + 1.6))) as fig:
        ax = fig.add_subplot()
        finite = np.isfinite(damage)
        if s_count == 0 or c_count == 0 or not finite.any():
            _empty(ax, "no per-class lesion results")
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
        note = _dropped_note(int((~finite).sum()))
        return _finish(fig, out_stem, fmts, note=note, title=title, ax=ax)


def plot_lesion_taxonomy(
    proportion: Any,
    diff: Any,
    taxonomy: Sequence[str],
    out_stem: str | os.PathLike[str],
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
    out_stem : path
    labels : sequence of str, optional
        Point annotations (shown when there are at most 40 sub-clusters).
    diff_threshold : float
        The taxonomy's diff threshold, drawn as a dashed line.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
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
        colors[t] = _QUALITATIVE[(10 + i) % len(_QUALITATIVE)]
    with _figure((7.2, 4.2)) as fig:
        ax = fig.add_subplot()
        ok = np.isfinite(prop) & np.isfinite(d)
        if not ok.any():
            _empty(ax, "no sub-clusters")
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
        note = _dropped_note(int((~ok).sum()))
        return _finish(fig, out_stem, fmts, note=note, title=title, ax=ax)


# ----------------------------------------------------------------------------------------
# double lesion


def plot_double_lesion_heatmap(
    s: Any,
    out_stem: str | os.PathLike[str],
    *,
    p: Any | None = None,
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
    out_stem : path
    p : array-like of shape (n_subclusters, n_subclusters), optional
        p-values of the conditional lesion tests.
    labels : sequence of str, optional
    p_threshold : float
        Significance threshold (the original used 1/50).
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
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
    with _figure((max(4.5, 0.36 * n + 2.8), max(3.8, 0.36 * n + 1.8))) as fig:
        ax = fig.add_subplot()
        finite = np.isfinite(cell)
        if n == 0 or not finite.any():
            _empty(ax, "no double-lesion results")
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
        note = _dropped_note(int((~finite).sum()))  # "" when there is no cell at all
        return _finish(fig, out_stem, fmts, note=note, title=title, ax=ax)


def plot_dependency_graph(
    nodes: Sequence[tuple[int, int]],
    edges: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    out_stem: str | os.PathLike[str],
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
    out_stem : path
    edge_kinds : sequence of str, optional
        A category per edge (e.g. the pair type ``"II"``/``"III"``), coloured with a legend.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path
    """
    fmts = _check_formats(formats)
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
    kind_color = {k: _QUALITATIVE[i % 10] for i, k in enumerate(kind_names)}
    with _figure((max(4.0, 1.9 * len(layers) + 1.5), max(3.0, 0.75 * tallest + 1.4))) as fig:
        ax = fig.add_subplot()
        ax.grid(False)
        if not node_list:
            _empty(ax, "no important sub-clusters")
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
                _QUALITATIVE[nd[1] % len(_QUALITATIVE)] if nd[1] >= 0 else _ISOLATED_COLOR
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
                from matplotlib.lines import Line2D

                ax.legend(
                    [Line2D([], [], color=kind_color[k], lw=1.5) for k in kind_names],
                    [f"type {k}" for k in kind_names],
                    loc="upper right",
                    bbox_to_anchor=(1.0, -0.08),
                    ncols=len(kind_names),
                )
        note = "no dependencies" if node_list and not edge_list else ""
        return _finish(fig, out_stem, fmts, note=note, title=title, ax=ax)


# ----------------------------------------------------------------------------------------
# the clustered network


def _input_shape(n: int) -> tuple[int, int]:
    """Most square (rows, cols) with rows * cols == n (28 x 28 for 784; 1 x n for primes)."""
    rows = int(math.isqrt(n))
    while rows > 1 and n % rows:
        rows -= 1
    return max(rows, 1), n // max(rows, 1)


def _check_network(weights: Sequence[Any], labels: Any) -> tuple[list[np.ndarray], np.ndarray]:
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


def plot_clustered_network(
    weights: Sequence[Any],
    labels: Any,
    out_stem: str | os.PathLike[str],
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
    out_stem : path
    max_edges : int
        Edges drawn, shared equally among the layer pairs (each keeps its strongest); widths
        are relative to the strongest weight of the pair.
    input_shape : (int, int), optional
        Shape of the input image; must multiply to the input size.
    title : str, optional
    formats : sequence of str

    Returns
    -------
    list of Path

    Raises
    ------
    ValueError
        If the matrices do not chain, or ``labels`` does not have one entry per neuron.
    """
    fmts = _check_formats(formats)
    mats, lab = _check_network(weights, labels)
    if max_edges < 0:
        raise ValueError(f"max_edges must be >= 0; got {max_edges}")
    if not mats:
        return _empty_figure((5.0, 3.0), "no weight matrices", out_stem, fmts)
    sizes = [mats[0].shape[0]] + [w.shape[1] for w in mats]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    layer_labels = [lab[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]
    palette = cluster_colors(lab) if lab.size else {}
    n_in = sizes[0]
    if input_shape is None:
        input_shape = _input_shape(n_in)
    if int(input_shape[0]) * int(input_shape[1]) != n_in:
        raise ValueError(f"input_shape {input_shape} does not hold {n_in} input neurons")
    with _figure((11.0, 5.6)) as fig:
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
            _empty(ax_img, "no input neurons")
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
        from matplotlib.collections import LineCollection

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
        from matplotlib.patches import Patch

        shown = [u for u in uniq if u >= 0][:20]
        handles = [Patch(color=palette[u], label=f"cluster {u}") for u in shown]
        if -1 in palette:
            handles.append(Patch(color=_ISOLATED_COLOR, label="isolated"))
        if handles:
            fig.legend(
                handles=handles, loc="outside lower center", ncols=min(len(handles), 11), fontsize=7
            )
        return _finish(fig, out_stem, fmts, title=title)


def plot_clustering(
    weights: Sequence[Any],
    labels: Any,
    out_path: str | os.PathLike[str],
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
    if fmt not in FORMATS:
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
