"""What every figure shares: output formats, style, colours, saving, and input clean-up.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never through
``pyplot``: no global backend switch, no figure registry to leak into, nothing to close. Style
settings apply inside ``matplotlib.rc_context`` only, so the user's rcParams are untouched.

Reproducibility: SVGs use a fixed ``svg.hashsalt`` and carry no date or creator metadata,
PNGs carry no software tag, and nothing random is drawn (strip plots use the deterministic
:func:`swarm_offsets`), so the same inputs give byte-identical files.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from harness.files import atomic_write_bytes
from harness.options import check_choice
from harness.report.cells import is_missing

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = [
    "FORMATS",
    "ISOLATED_COLOR",
    "OTHER_PHASE",
    "PAPER_COLOR",
    "PHASE_STYLE",
    "QUALITATIVE",
    "TRUE_COLOR",
    "Rows",
    "StrPath",
    "as_frame",
    "check_formats",
    "cluster_colors",
    "empty",
    "empty_figure",
    "figure_doc",
    "finish",
    "finite",
    "new_figure",
    "numeric",
    "ordered_unique",
    "require",
    "save",
    "swarm_offsets",
]

#: A path given by the caller: ``str`` or any ``os.PathLike``.
StrPath: TypeAlias = "str | os.PathLike[str]"

#: Result rows for a figure: a DataFrame, or a sequence of dicts (one per row).
Rows: TypeAlias = "pd.DataFrame | Sequence[Mapping[str, object]]"

#: Output formats a figure function can write.
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

_METADATA: dict[str, dict[str, str | None]] = {
    # Drop everything that varies between runs or library versions.
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}

_STYLE: dict[RcKeyType, object] = {
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

#: Colour and marker of each training phase, used consistently across figures; other phase
#: names get :data:`OTHER_PHASE`.
PHASE_STYLE: dict[str, dict[str, str]] = {
    "unpruned": {"color": "#1f77b4", "marker": "o"},
    "pruned": {"color": "#d62728", "marker": "^"},
}
OTHER_PHASE: dict[str, str] = {"color": "#7f7f7f", "marker": "s"}
TRUE_COLOR = "#d62728"  # the trained network, or the true lesion
PAPER_COLOR = "black"  # the paper's published values
ISOLATED_COLOR = "#e8e8e8"  # neurons without edges (cluster label -1)

#: Twenty qualitative colours (matplotlib's ``tab20`` order: strong colours first).
QUALITATIVE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip

# The parameters and return value every figure function shares, in numpydoc form; a figure
# function's docstring ends its Parameters section with ``%(output)s`` (see figure_doc).
_OUTPUT_DOC = """out_stem : str or os.PathLike
        Output path without extension; one file per format is written (atomically).
    title : str, optional
        Title of the figure.
    formats : sequence of str
        Any of :data:`FORMATS` (default PNG and SVG).

    Returns
    -------
    list of Path
        The files written, in the order of ``formats``."""

F = TypeVar("F", bound=Callable[..., object])


def figure_doc(func: F) -> F:
    """Complete a figure function's docstring with the shared output parameters."""
    if func.__doc__:
        func.__doc__ = func.__doc__.replace("%(output)s", _OUTPUT_DOC)
    return func


# ----------------------------------------------------------------------------------------
# drawing and saving


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """``formats`` as a non-empty tuple of :data:`FORMATS` (a bare string is one format)."""
    fmts = (formats,) if isinstance(formats, str) else tuple(formats)
    if not fmts:
        raise ValueError(f"formats is empty; give at least one of {', '.join(FORMATS)}")
    return tuple(check_choice("figure format", f, FORMATS) for f in fmts)


@contextmanager
def new_figure(figsize: tuple[float, float]) -> Iterator[Figure]:
    """A figure on its own Agg canvas, inside the house style (:func:`save` it in the block)."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def save(fig: Figure, out_stem: StrPath, formats: Sequence[str]) -> list[Path]:
    """Write ``<out_stem>.<format>`` for every format, atomically, without varying metadata."""
    # Called inside new_figure's rc_context: svg.hashsalt is read at save time.
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=_METADATA[fmt])
        paths.append(atomic_write_bytes(Path(f"{out_stem}.{fmt}"), buf.getvalue()))
    return paths


def empty(ax: Axes, message: str) -> None:
    """Annotate an axes that has nothing to show."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            color="0.35", fontsize=10, wrap=True)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)


def finish(
    fig: Figure,
    out_stem: StrPath,
    formats: Sequence[str],
    *,
    note: str = "",
    dropped: int = 0,
    title: str | None = None,
    ax: Axes | None = None,
) -> list[Path]:
    """The last step of a figure function: footnote, title, then :func:`save`.

    ``note`` and the number of values ``dropped`` (non-finite, not drawn) become a small grey
    footnote at the bottom right (none when there is nothing to say). ``title``, when given,
    goes above ``ax`` or, without ``ax``, above the whole figure.
    """
    note = "; ".join(n for n in (note, _dropped_note(dropped)) if n)
    if note:
        fig.supxlabel(note, x=0.995, ha="right", fontsize=7, color="0.45")
    if title:
        if ax is None:
            fig.suptitle(title)
        else:
            ax.set_title(title)
    return save(fig, out_stem, formats)


def empty_figure(
    figsize: tuple[float, float],
    message: str,
    out_stem: StrPath,
    formats: Sequence[str],
    *,
    title: str | None = None,
) -> list[Path]:
    """Save a figure of one empty axes annotated with ``message`` (input with nothing to draw)."""
    with new_figure(figsize) as fig:
        ax = fig.add_subplot()
        empty(ax, message)
        return finish(fig, out_stem, formats, title=title, ax=ax)


# ----------------------------------------------------------------------------------------
# input clean-up


def finite(values: ArrayLike) -> tuple[np.ndarray, int]:
    """Finite entries of ``values`` as float64 (flattened) and the number dropped."""
    arr = np.asarray(values, dtype=float).ravel()
    mask = np.isfinite(arr)
    return arr[mask], int(arr.size - mask.sum())


def _dropped_note(n: int) -> str:
    """The footnote for ``n`` values not drawn (empty for none)."""
    return f"{n} non-finite value{'s' if n != 1 else ''} not shown" if n else ""


def ordered_unique(values: Sequence[object]) -> list[object]:
    """Distinct non-missing values in order of first appearance."""
    return list(dict.fromkeys(v for v in values if not is_missing(v)))


def as_frame(data: Rows | None) -> pd.DataFrame:
    """Rows as a DataFrame (an empty one for None)."""
    if data is None:
        return pd.DataFrame()
    if isinstance(data, pd.DataFrame):
        return data
    return pd.DataFrame.from_records(list(data))


def require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise ValueError naming the ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs column(s) {missing}; got {list(df.columns)}. Pass rows with these "
            "columns or name the columns to use with the keyword arguments."
        )


def numeric(series: pd.Series) -> np.ndarray:
    """A column as float64, NaN where a value is not a number."""
    return np.asarray(pd.to_numeric(series, errors="coerce"), dtype=float)


# ----------------------------------------------------------------------------------------
# layout and colour


def swarm_offsets(
    values: ArrayLike,
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
    values : array-like of shape (n,)
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


def cluster_colors(labels: ArrayLike) -> dict[int, str]:
    """Colour of every cluster label present (``-1``, isolated, is light grey).

    Labels are taken in sorted order and given the 20 :data:`QUALITATIVE` colours in turn
    (cycling beyond 20 clusters).
    """
    uniq = sorted({int(v) for v in np.asarray(labels).ravel()})
    out: dict[int, str] = {}
    i = 0
    for lab in uniq:
        if lab < 0:
            out[lab] = ISOLATED_COLOR
        else:
            out[lab] = QUALITATIVE[i % len(QUALITATIVE)]
            i += 1
    return out
