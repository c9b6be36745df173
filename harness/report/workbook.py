"""Excel workbooks of result tables, one sheet per table (for analysis outside Python)."""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from harness.files import atomic_write_bytes, natural_key
from harness.report.cells import is_missing, plain

__all__ = ["split_frame", "write_workbook"]


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
    value = plain(value)
    if is_missing(value):
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
