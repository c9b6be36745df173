"""Per-group statistics of result rows, like the per-model lines of the paper's tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.options import check_choice
from harness.report.cells import Row, check_rows, is_missing, is_number, plain, value_key

__all__ = ["AGG_STATS", "DEFAULT_AGG", "aggregate"]

#: Statistics understood by :func:`aggregate`.
AGG_STATS: tuple[str, ...] = (
    "mean",
    "sd",
    "median",
    "min",
    "max",
    "sum",
    "count",
    "n_true",
    "n_one",
    "const",
)

#: Default statistics of :func:`aggregate`: the columns of the paper's Table B.
DEFAULT_AGG: dict[str, tuple[str, ...]] = {
    "ncut": ("mean", "sd"),
    "ave_in_out": ("mean",),
    "null_mean": ("mean",),
    "null_std": ("mean",),
    "z": ("mean",),
    "p": ("mean", "n_one"),
    "is_sig": ("n_true",),
    "n_samples": ("const",),
    "train_acc": ("mean",),
    "test_acc": ("mean",),
    "test_loss": ("mean",),
}


def _numeric(values: Sequence[object]) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        v = plain(v)
        if is_number(v) or isinstance(v, bool):
            out[i] = float(v)
    return out


def _stat(values: Sequence[object], stat: str) -> object:
    if stat == "const":
        present = [plain(v) for v in values if not is_missing(plain(v))]
        if present and all(v == present[0] for v in present):
            return present[0]
        return float("nan")
    x = _numeric(values)
    finite = x[~np.isnan(x)]
    if stat == "count":
        return int(finite.size)
    if stat == "n_true":
        return int(np.count_nonzero(finite != 0))
    if stat == "n_one":
        # p == 1 exactly when the true n-cut is above every null sample: (n+1)/(n+1).
        return int(np.count_nonzero(np.isclose(finite, 1.0, rtol=0.0, atol=1e-12)))
    if stat == "sum":
        return float(finite.sum())
    if finite.size == 0:
        return float("nan")
    if stat == "mean":
        return float(finite.mean())
    if stat == "sd":
        return float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    if stat == "median":
        return float(np.median(finite))
    if stat == "min":
        return float(finite.min())
    if stat == "max":
        return float(finite.max())
    raise AssertionError(stat)  # pragma: no cover - validated by the caller


def aggregate(
    rows: Iterable[Row] | pd.DataFrame,
    by: Sequence[str],
    *,
    stats: Mapping[str, str | Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Per-group statistics of result rows, like the per-model lines of the paper's Table B.

    Parameters
    ----------
    rows : iterable of dict or DataFrame
        Result rows (one per trained instance, typically).
    by : sequence of str
        Grouping columns, e.g. ``["model_tag", "phase"]``. Missing values form their own group.
    stats : mapping of str to str or sequence of str, optional
        ``{column: statistic or [statistics]}``. Statistics (:data:`AGG_STATS`):

        - ``mean``, ``median``, ``min``, ``max``, ``sum``: over finite values;
        - ``sd``: sample standard deviation (ddof = 1, as pandas and the paper's tables;
          NaN for a single value);
        - ``count``: number of finite values;
        - ``n_true``: number of true values (e.g. ``is_sig``: the paper's "#p=1/51");
        - ``n_one``: number of values equal to 1 (e.g. ``p``: the paper's "#p=1");
        - ``const``: the group's common value, NaN if the values differ (for ``paper_*``).

        Default: :data:`DEFAULT_AGG` for the columns present, plus ``const`` for every
        ``paper_*`` column.

    Returns
    -------
    DataFrame of shape (n_groups, len(by) + 1 + n_statistics)
        Columns ``by...``, ``n`` (rows in the group), then ``<column>_<statistic>`` in the
        order of ``stats``. Groups are sorted by their keys (natural order).

    Raises
    ------
    ValueError
        For an unknown statistic, or a ``by`` or ``stats`` column absent from every row.
    """
    if isinstance(rows, pd.DataFrame):
        records: list[Row] = [
            {k: (None if is_missing(plain(v)) else plain(v)) for k, v in r.items()}
            for r in rows.to_dict(orient="records")
        ]
    else:
        records = check_rows(rows, "rows")
    by = [by] if isinstance(by, str) else list(by)
    present = {str(k) for r in records for k in r}
    if records:
        missing = [c for c in by if c not in present]
        if missing:
            raise ValueError(
                f"cannot group by {missing}: no row has these columns; available: {sorted(present)}"
            )
    if stats is None:
        spec: dict[str, tuple[str, ...]] = {c: s for c, s in DEFAULT_AGG.items() if c in present}
        spec.update({c: ("const",) for c in sorted(present) if c.startswith("paper_")})
    else:
        spec = {c: (s,) if isinstance(s, str) else tuple(s) for c, s in stats.items()}
        if records:
            absent = [c for c in spec if c not in present]
            if absent:
                raise ValueError(
                    f"stats columns {absent} are in no row; available: {sorted(present)}"
                )
    for col, names in spec.items():
        for name in names:
            check_choice(f"statistic of column {col!r}", name, AGG_STATS)
    groups: dict[tuple[object, ...], list[Row]] = {}
    for r in records:
        key = tuple(None if is_missing(plain(r.get(c))) else plain(r.get(c)) for c in by)
        groups.setdefault(key, []).append(r)
    out_cols = [*by, "n"] + [f"{c}_{s}" for c, names in spec.items() for s in names]
    out_rows = []
    for key in sorted(groups, key=lambda k: tuple(value_key(v) for v in k)):
        members = groups[key]
        line: dict[str, object] = dict(zip(by, key, strict=True))
        line["n"] = len(members)
        for col, names in spec.items():
            values = [m.get(col) for m in members]
            for s in names:
                line[f"{col}_{s}"] = _stat(values, s)
        out_rows.append(line)
    return pd.DataFrame.from_records(out_rows, columns=out_cols)
