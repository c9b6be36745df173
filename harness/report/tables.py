"""Result tables: per-study CSV and Markdown, the claims table, aggregates, an .xlsx workbook.

Rows are dicts of builtin types recorded by experiments (see :mod:`harness.plugin`). Whatever
order they arrive in (xdist schedules tests in any order), the same rows always give the same
bytes: rows are sorted by test id and then by their values, columns follow a fixed order, and
floats are written with Python's shortest round-trip ``repr`` (full precision, no noise digits).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pandas as pd

from harness.files import atomic_write_bytes, atomic_write_text, natural_key
from harness.options import check_choice
from harness.report.naming import check_name

__all__ = [
    "AGG_STATS",
    "CLAIM_COLUMNS",
    "DEFAULT_AGG",
    "IDENTITY_COLUMNS",
    "METRIC_COLUMNS",
    "VERDICTS",
    "Row",
    "aggregate",
    "column_order",
    "format_number",
    "is_timing_column",
    "sort_claims",
    "sort_rows",
    "split_frame",
    "study_frame",
    "verdict_counts",
    "write_claims",
    "write_study_tables",
    "write_workbook",
]

#: A result row or a claim: column name -> builtin value (str, int, float, bool, None, list,
#: dict), as recorded by the experiments.
Row = Mapping[str, object]

#: Columns that say *what* a row is about, in display order (present ones only).
IDENTITY_COLUMNS: tuple[str, ...] = (
    "study",
    "test_id",
    "outcome",
    "profile",
    "seed",
    "model_tag",
    "network",
    "condition",
    "phase",
    "instance",
    "dataset",
    "init",
    "n_clusters",
    "null",
    "method",
    "epoch",
    "layer",
    "label",
    "first",
    "second",
)

#: Well-known result columns, in display order; other numeric columns follow them.
METRIC_COLUMNS: tuple[str, ...] = (
    "ncut",
    "ave_in_out",
    "null_mean",
    "null_std",
    "z",
    "p",
    "is_sig",
    "n_samples",
    "train_acc",
    "test_acc",
    "train_loss",
    "test_loss",
)

_TIMING_NAMES = frozenset({"wall_time", "duration"})

#: Claim verdicts, most alarming first (the order of ``claims.csv``). ``error``: the claim's
#: test crashed after recording it; ``xpass``: a claim marked expected-to-fail held.
VERDICTS: tuple[str, ...] = ("fail", "error", "xpass", "xfail", "recorded", "pass")

#: Leading columns of the claims table; any other keys of the claim dicts follow, sorted.
CLAIM_COLUMNS: tuple[str, ...] = ("claim", "expected", "observed", "verdict", "test_id", "study")

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


# ----------------------------------------------------------------------------------------
# cell values


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars (rows should not carry them, but be forgiving)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _csv_cell(value: object) -> str:
    """Exact, deterministic text of one CSV cell.

    ``None`` -> empty; floats -> shortest round-trip repr (``nan``, ``inf``, ``-inf`` spelled
    out so that pandas reads them back); lists and dicts -> JSON with sorted keys.
    """
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def format_number(value: float) -> str:
    """Rounded text of a float for Markdown and HTML (the CSV keeps full precision).

    Three decimals like the paper's tables (``10.024``, ``0.020``); scientific notation with
    three significant digits below 1e-3 or from 1e4 on (``4.40e-14``, ``7.30e+11``).
    """
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e4:
        return f"{value:.2e}"
    return f"{value:.3f}"


def _column_kind(values: Iterable[object]) -> str:
    """'int', 'float' (numbers, some non-integral) or 'other', ignoring missing values."""
    kind = "int"
    for v in values:
        v = _plain(v)
        if v is None:
            continue
        if not _is_number(v):
            return "other"
        if isinstance(v, float):
            # any float makes the column a float column: "10.000" next to "9.875"
            kind = "float"
    return kind


def _display_cell(value: object, kind: str) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if kind == "float" and _is_number(value):
        return format_number(float(value))
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _md_escape(text: str) -> str:
    # A literal '|' would end a pipe-table cell; newlines would end the row.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _value_key(value: object) -> tuple[object, ...]:
    """Total order on cell values: numbers, then strings (natural order), then missing."""
    value = _plain(value)
    if _is_missing(value):
        return (3,)
    if isinstance(value, bool | int | float):
        return (0, float(value))
    if isinstance(value, str):
        return (1, natural_key(value))
    return (2, json.dumps(value, sort_keys=True, default=str))


# ----------------------------------------------------------------------------------------
# column order and row order


def is_timing_column(name: str) -> bool:
    """Timing columns (seconds) go last: names ending in ``_s``, ``wall_time``, ``duration``."""
    return name.endswith("_s") or name in _TIMING_NAMES


def _check_rows(rows: Iterable[Row], what: str) -> list[Row]:
    out = list(rows)
    for i, row in enumerate(out):
        if not isinstance(row, Mapping):
            raise ValueError(
                f"{what}[{i}] is a {type(row).__name__}, not a dict; rows are dicts of "
                "builtin values (use a result's to_row())"
            )
    return out


def _canonical_rows(rows: Sequence[Row]) -> list[Row]:
    # An order that depends only on the *set* of rows, used to decide the first-seen order
    # of columns the harness does not know about.
    return sorted(
        rows,
        key=lambda r: (
            natural_key(str(r.get("test_id", ""))),
            json.dumps({str(k): _csv_cell(v) for k, v in r.items()}, sort_keys=True),
        ),
    )


def column_order(rows: Sequence[Row]) -> list[str]:
    """Stable column order of a study table.

    Identity columns first (:data:`IDENTITY_COLUMNS`, then unknown columns holding only
    strings), then metrics (:data:`METRIC_COLUMNS`, then other unknown columns), then the
    paper's reference values ``paper_<metric>`` in the order of their metrics, timing columns
    (:func:`is_timing_column`) last. Unknown columns keep the order in which the rows first
    show them (rows taken in a canonical order, so the result depends only on the row set).
    """
    seen: dict[str, None] = {}
    for row in _canonical_rows(rows):
        for key in row:
            seen.setdefault(str(key), None)
    columns = list(seen)

    def all_strings(col: str) -> bool:
        values = [_plain(r.get(col)) for r in rows]
        present = [v for v in values if v is not None]
        return bool(present) and all(isinstance(v, str) for v in present)

    timing = [c for c in columns if is_timing_column(c)]
    paper = [c for c in columns if c.startswith("paper_") and c not in timing]
    rest = [c for c in columns if c not in timing and c not in paper]
    identity = [c for c in IDENTITY_COLUMNS if c in rest]
    identity += [
        c for c in rest if c not in IDENTITY_COLUMNS and c not in METRIC_COLUMNS and all_strings(c)
    ]
    metrics = [c for c in METRIC_COLUMNS if c in rest]
    metrics += [c for c in rest if c not in identity and c not in metrics]
    rank = {m: i for i, m in enumerate(metrics)}
    paper.sort(key=lambda c: (0, rank[c[6:]]) if c[6:] in rank else (1, columns.index(c)))
    return identity + metrics + paper + timing


def sort_rows(
    rows: Sequence[Row], columns: Sequence[str] | None = None
) -> list[Row]:
    """Rows in report order: by test id (natural order), then by their values column by column.

    Rows of one test (e.g. one per lesioned sub-cluster) thus come out in identity-column
    order, and identical input sets give identical output whatever order they arrived in.
    """
    cols = list(columns) if columns is not None else column_order(rows)
    return sorted(
        rows,
        key=lambda r: (
            natural_key(str(r.get("test_id", ""))),
            tuple(_value_key(r.get(c)) for c in cols),
        ),
    )


def study_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """The rows of one study as a DataFrame, in report row and column order.

    Parameters
    ----------
    rows : iterable of dict
        Result rows (builtin values).

    Returns
    -------
    DataFrame of shape (n_rows, n_columns)
        Missing cells are NaN/None; dtypes are inferred by pandas.
    """
    rows = _check_rows(rows, "rows")
    if not rows:
        return pd.DataFrame()
    cols = column_order(rows)
    ordered = sort_rows(rows, cols)
    return pd.DataFrame.from_records(
        [{c: _plain(r.get(c)) for c in cols} for r in ordered], columns=cols
    )


# ----------------------------------------------------------------------------------------
# writers


def _csv_text(columns: Sequence[str], rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _markdown_table(columns: Sequence[str], rows: Sequence[Row]) -> str:
    from tabulate import tabulate

    kinds = {c: _column_kind(r.get(c) for r in rows) for c in columns}
    body = [[_md_escape(_display_cell(r.get(c), kinds[c])) for c in columns] for r in rows]
    align = ["right" if kinds[c] in ("int", "float") else "left" for c in columns]
    return str(
        tabulate(
            body,
            headers=[_md_escape(c) for c in columns],
            tablefmt="pipe",
            disable_numparse=True,
            colalign=align,
        )
    )


def write_study_tables(
    rows_by_study: Mapping[str, Iterable[Row]],
    reports_dir: str | os.PathLike[str],
) -> list[Path]:
    """Write ``<reports_dir>/<study>.csv`` and ``<study>.md`` for every study.

    Parameters
    ----------
    rows_by_study : mapping of str to iterable of dict
        Result rows per study (the experiment module name without ``test_``). Studies with
        no rows are skipped.
    reports_dir : path
        Output directory (created if missing).

    Returns
    -------
    list of Path
        The files written, studies in sorted order, CSV before Markdown.

    Notes
    -----
    Rows are sorted by :func:`sort_rows` and columns by :func:`column_order`. The CSV holds
    every value at full precision (floats as their shortest round-trip ``repr``; ``nan`` and
    ``inf`` spelled out; empty = missing) and is byte-identical for identical rows. The
    Markdown rounds floats with :func:`format_number`. Both are written atomically.
    """
    out_dir = Path(reports_dir)
    written: list[Path] = []
    for study in sorted(rows_by_study, key=natural_key):
        check_name(study, "study")
        rows = _check_rows(rows_by_study[study], f"rows_by_study[{study!r}]")
        if not rows:
            continue
        cols = column_order(rows)
        ordered = sort_rows(rows, cols)
        written.append(atomic_write_text(out_dir / f"{study}.csv", _csv_text(cols, ordered)))
        md = (
            f"# Study `{study}`\n\n"
            f"{len(ordered)} rows. Identity columns first, then metrics, the paper's values "
            "(`paper_*`) and timings in seconds (`*_s`). Floats are rounded here; "
            f"`{study}.csv` has full precision.\n\n"
            f"{_markdown_table(cols, ordered)}\n"
        )
        written.append(atomic_write_text(out_dir / f"{study}.md", md))
    return written


def _verdict_rank(verdict: object) -> int:
    return VERDICTS.index(check_choice("claim verdict", verdict, VERDICTS))


def sort_claims(claims: Iterable[Row]) -> list[Row]:
    """Claims in report order: by verdict (:data:`VERDICTS`, failures first), study, test id.

    Raises
    ------
    ValueError
        If a claim is not a dict, lacks ``claim`` or ``verdict``, or has an unknown verdict.
    """
    items = _check_rows(claims, "claims")
    for i, c in enumerate(items):
        missing = [k for k in ("claim", "verdict") if k not in c]
        if missing:
            raise ValueError(f"claims[{i}] lacks {', '.join(missing)}; got keys {sorted(c)}")
        _verdict_rank(c["verdict"])
    return sorted(
        items,
        key=lambda c: (
            _verdict_rank(c["verdict"]),
            natural_key(str(c.get("study", ""))),
            natural_key(str(c.get("test_id", ""))),
            str(c.get("claim", "")),
            json.dumps({str(k): _csv_cell(v) for k, v in c.items()}, sort_keys=True),
        ),
    )


def _claim_columns(claims: Sequence[Row]) -> list[str]:
    extra = sorted({str(k) for c in claims for k in c} - set(CLAIM_COLUMNS))
    return list(CLAIM_COLUMNS) + extra


def verdict_counts(claims: Iterable[Row]) -> dict[str, int]:
    """Number of claims per verdict, in :data:`VERDICTS` order (zero counts omitted)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        counts[str(c["verdict"])] = counts.get(str(c["verdict"]), 0) + 1
    return {v: n for v, n in counts.items() if n}


def write_claims(
    claims: Iterable[Row], reports_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write ``claims.csv`` and ``claims.md`` (failing claims first), atomically.

    Parameters
    ----------
    claims : iterable of dict
        Each with ``claim`` (text), ``expected``, ``observed``, ``verdict`` (one of
        :data:`VERDICTS`), ``test_id`` and ``study``; other keys become extra columns.
    reports_dir : path
        Output directory (created if missing).

    Returns
    -------
    list of Path
        ``[claims.csv, claims.md]``; written even when there are no claims, so that a
        stale table from an earlier run never survives.
    """
    ordered = sort_claims(claims)
    cols = _claim_columns(ordered)
    out_dir = Path(reports_dir)
    csv_path = atomic_write_text(out_dir / "claims.csv", _csv_text(cols, ordered))
    counts = verdict_counts(ordered)
    summary = ", ".join(f"{n} {v}" for v, n in counts.items()) or "no claims"
    md = f"# Claims\n\n{len(ordered)} claims: {summary}. Failing claims first.\n\n"
    if ordered:
        md += _markdown_table(cols, ordered) + "\n"
    md_path = atomic_write_text(out_dir / "claims.md", md)
    return [csv_path, md_path]


# ----------------------------------------------------------------------------------------
# aggregates


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
        v = _plain(v)
        if _is_number(v) or isinstance(v, bool):
            out[i] = float(v)
    return out


def _stat(values: Sequence[object], stat: str) -> object:
    if stat == "const":
        present = [_plain(v) for v in values if not _is_missing(_plain(v))]
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
            {k: (None if _is_missing(_plain(v)) else _plain(v)) for k, v in r.items()}
            for r in rows.to_dict(orient="records")
        ]
    else:
        records = _check_rows(rows, "rows")
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
        key = tuple(None if _is_missing(_plain(r.get(c))) else _plain(r.get(c)) for c in by)
        groups.setdefault(key, []).append(r)
    out_cols = [*by, "n"] + [f"{c}_{s}" for c, names in spec.items() for s in names]
    out_rows = []
    for key in sorted(groups, key=lambda k: tuple(_value_key(v) for v in k)):
        members = groups[key]
        line: dict[str, object] = dict(zip(by, key, strict=True))
        line["n"] = len(members)
        for col, names in spec.items():
            values = [m.get(col) for m in members]
            for s in names:
                line[f"{col}_{s}"] = _stat(values, s)
        out_rows.append(line)
    return pd.DataFrame.from_records(out_rows, columns=out_cols)


# ----------------------------------------------------------------------------------------
# workbook


def split_frame(
    frame: pd.DataFrame, by: Sequence[str], *, prefix: str = "", sort_by: str = "test_id"
) -> dict[str, pd.DataFrame]:
    """One table per combination of the values of ``by``: the sheets of a workbook.

    A study that records rows of several kinds (``kind="pair"``, ``kind="summary"``) thus gets
    one sheet per kind, each without the columns that are empty for it.

    Parameters
    ----------
    frame : DataFrame
        The rows of one study (e.g. from :func:`study_frame`).
    by : sequence of str
        Columns to split by, each adding a part to the table name; columns absent from
        ``frame`` are skipped, rows missing a value in one of them are left out.
    prefix : str
        Start of every table name: ``"<prefix>-<value>-<value>"``.
    sort_by : str
        Rows within a table are sorted by this column (stable), when present.

    Returns
    -------
    dict of str to DataFrame
        Tables in the natural order of their names.
    """
    keys = [c for c in by if c in frame.columns]
    if not keys or frame.empty:
        return {}
    tables: dict[str, pd.DataFrame] = {}
    for values, group in frame.groupby(keys, sort=False, dropna=True):
        parts = values if isinstance(values, tuple) else (values,)
        name = "-".join(str(p) for p in ([prefix] if prefix else []) + list(parts))
        table = group.dropna(axis=1, how="all")
        if sort_by in table.columns:
            table = table.sort_values(sort_by, kind="stable")
        tables[name] = table
    return {name: tables[name] for name in sorted(tables, key=natural_key)}

_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def _sheet_names(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        base = _SHEET_BAD.sub("_", str(name)).strip("'")[:31] or "sheet"
        cand, i = base, 2
        while cand.lower() in {o.lower() for o in out}:
            suffix = f"~{i}"
            cand, i = base[: 31 - len(suffix)] + suffix, i + 1
        out.append(cand)
    return out


def _excel_cell(value: object) -> object:
    value = _plain(value)
    if _is_missing(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        # Excel has no infinity; a string keeps the information visible.
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_workbook(tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> Path:
    """Write DataFrames to one ``.xlsx`` workbook, one sheet per table, atomically.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Sheet name -> table, in sheet order. Names are made valid for Excel (at most 31
        characters, no ``[]:*?/\\``; duplicates get ``~2``, ``~3``).
    path : path
        Output file, conventionally ``reports/<name>.xlsx``.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    NaN cells are left empty and infinities written as the strings ``inf``/``-inf`` (Excel
    has neither). Header cells are bold and the header row is frozen.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    if not tables:
        raise ValueError("write_workbook needs at least one table; got an empty mapping")
    wb = Workbook()
    default = wb.active
    if default is not None:
        wb.remove(default)
    for name, (key, df) in zip(_sheet_names(tables), tables.items(), strict=True):
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"tables[{key!r}] is a {type(df).__name__}, not a pandas DataFrame")
        ws = wb.create_sheet(title=name)
        ws.append([str(c) for c in df.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for record in df.itertuples(index=False, name=None):
            ws.append([_excel_cell(v) for v in record])
        ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return atomic_write_bytes(path, buf.getvalue())
