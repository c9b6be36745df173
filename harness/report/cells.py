"""Cell values of result rows: the text a value gets in a CSV, a Markdown table or the page.

Rows are dicts of builtin values recorded by the experiments (:meth:`to_row` of a result);
these helpers turn one value into exact CSV text, rounded display text, or a sort key that
orders any mix of values the same way every time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TypeGuard

import numpy as np

from harness.files import natural_key

__all__ = [
    "Row",
    "check_rows",
    "column_kind",
    "csv_cell",
    "display_cell",
    "format_number",
    "is_missing",
    "is_number",
    "md_escape",
    "plain",
    "value_key",
]

#: A result row or a claim: column name -> builtin value (str, int, float, bool, None, list,
#: dict), as recorded by the experiments.
Row = Mapping[str, object]


def plain(value: object) -> object:
    """numpy scalars -> Python scalars (rows should not carry them, but be forgiving)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def csv_cell(value: object) -> str:
    """Exact, deterministic text of one CSV cell.

    ``None`` -> empty; floats -> shortest round-trip repr (``nan``, ``inf``, ``-inf`` spelled
    out so that pandas reads them back); lists and dicts -> JSON with sorted keys.
    """
    value = plain(value)
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


def column_kind(values: Iterable[object]) -> str:
    """'int', 'float' (numbers, some non-integral) or 'other', ignoring missing values."""
    kind = "int"
    for v in values:
        v = plain(v)
        if v is None:
            continue
        if not is_number(v):
            return "other"
        if isinstance(v, float):
            # any float makes the column a float column: "10.000" next to "9.875"
            kind = "float"
    return kind


def display_cell(value: object, kind: str) -> str:
    value = plain(value)
    if value is None:
        return ""
    if kind == "float" and is_number(value):
        return format_number(float(value))
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def md_escape(text: str) -> str:
    # A literal '|' would end a pipe-table cell; newlines would end the row.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def value_key(value: object) -> tuple[object, ...]:
    """Total order on cell values: numbers, then strings (natural order), then missing."""
    value = plain(value)
    if is_missing(value):
        return (3,)
    if isinstance(value, bool | int | float):
        return (0, float(value))
    if isinstance(value, str):
        return (1, natural_key(value))
    return (2, json.dumps(value, sort_keys=True, default=str))


def check_rows(rows: Iterable[Row], what: str) -> list[Row]:
    out = list(rows)
    for i, row in enumerate(out):
        if not isinstance(row, Mapping):
            raise ValueError(
                f"{what}[{i}] is a {type(row).__name__}, not a dict; rows are dicts of "
                "builtin values (use a result's to_row())"
            )
    return out
