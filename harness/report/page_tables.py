"""The study tables of ``index.html``: a study's CSV read back and rendered as HTML.

Floats are shown rounded (:func:`~harness.report.cells.format_number`, the exact value in a
tooltip), the paper's values (``paper_<metric>``) next to ours and shaded, timings muted; for
tables with instances, a per-model summary (means over instances) comes first.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.report.aggregate import aggregate
from harness.report.cells import format_number
from harness.report.csvfile import read_csv_records
from harness.report.tables import is_timing_column

__all__ = [
    "MAX_TABLE_ROWS",
    "escape",
    "read_csv_table",
    "short_test_id",
    "summary_html",
    "table_html",
]

#: Rows shown per table; the CSV next to the page has all of them.
MAX_TABLE_ROWS = 2000


def escape(value: object) -> str:
    """``str(value)``, HTML-escaped for text and attribute values."""
    return html.escape(str(value), quote=True)


def read_csv_table(
    path: Path, *, required: Sequence[str] = ()
) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV table the run wrote: its header and one dict per row.

    Raises
    ------
    ReportFileError
        (a ValueError) If the file is not the whole table: an unclosed quote, a row with
        another number of fields than the header, no header, or a ``required`` column
        missing (:func:`~harness.report.csvfile.read_csv_records`).
    """
    header, records = read_csv_records(path, required=required)
    return header, [dict(zip(header, record, strict=True)) for record in records]


def _as_float(text: str) -> float | None:
    if text in ("True", "False"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _numeric_kind(values: Sequence[str]) -> str:
    present = [v for v in values if v != ""]
    if not present or any(_as_float(v) is None for v in present):
        return "text"
    if all(v.lstrip("-").isdigit() for v in present):
        return "int"
    return "float"


def _display_columns(header: Sequence[str]) -> list[str]:
    """CSV order, without ``study``, each ``paper_X`` moved right after ``X``."""
    cols = [c for c in header if c != "study"]
    out = [c for c in cols if not (c.startswith("paper_") and c[6:] in cols)]
    for c in cols:
        if c.startswith("paper_") and c[6:] in cols:
            out.insert(out.index(c[6:]) + 1, c)
    return out


def short_test_id(test_id: str) -> str:
    return test_id.split("::", 1)[1] if "::" in test_id else test_id


def table_html(header: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    cols = _display_columns(header)
    kinds = {c: _numeric_kind([r.get(c, "") for r in rows]) for c in cols}

    def classes(c: str) -> list[str]:
        out = []
        if kinds[c] != "text":
            out.append("num")
        if c.startswith("paper_"):
            out.append("paper")
        if is_timing_column(c):
            out.append("timing")
        return out

    head = "".join(
        f'<th class="{" ".join(classes(c))}"'
        + (' title="the paper\'s published value"' if c.startswith("paper_") else "")
        + f">{escape(c)}</th>"
        for c in cols
    )
    body = []
    shown = rows[:MAX_TABLE_ROWS]
    for r in shown:
        cells = []
        for c in cols:
            raw = r.get(c, "")
            cls = classes(c)
            if c == "test_id":
                cells.append(
                    f'<td class="tid-cell" title="{escape(raw)}"><code>{escape(short_test_id(raw))}</code></td>'
                )
                continue
            if c == "outcome" and raw:
                cells.append(f'<td><span class="pill o-{escape(raw)}">{escape(raw)}</span></td>')
                continue
            if kinds[c] == "float" and raw:
                value = _as_float(raw)
                text = format_number(value) if value is not None else raw
                attr = f' title="{escape(raw)}"'
            else:
                text, attr = raw, ""
            if raw in ("True", "False"):
                cls.append(f"t-{raw}")
            cells.append(f'<td class="{" ".join(cls)}"{attr}>{escape(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = ""
    if len(rows) > MAX_TABLE_ROWS:
        note = f'<p class="links">First {MAX_TABLE_ROWS} of {len(rows)} rows; the CSV has all.</p>'
    return (
        f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}"
    )


#: Columns that identify one trained model across instances (the paper's table lines).
_GROUP_COLUMNS = (
    "model_tag",
    "network",
    "condition",
    "phase",
    "dataset",
    "init",
    "n_clusters",
    "null",
    "method",
)


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if text.lstrip("-").isdigit():
        return int(text)
    value = _as_float(text)
    return text if value is None else value


def summary_html(header: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    """Per-model means over instances next to the paper's values (like Table B), if any.

    Shown for tables with an ``instance`` column and ``paper_<metric>`` columns; groups are
    the model-identifying columns present (:data:`_GROUP_COLUMNS`).
    """
    cols = set(header)
    paper = [c[6:] for c in header if c.startswith("paper_") and c[6:] in cols]
    by = [c for c in _GROUP_COLUMNS if c in cols]
    if "instance" not in cols or not paper or not by or not rows:
        return ""
    stats: dict[str, tuple[str, ...]] = {}
    for m in paper:
        stats[m] = ("mean", "sd") if m == "ncut" else ("mean",)
    if "is_sig" in cols:
        stats["is_sig"] = ("n_true",)
    if "p" in cols:
        stats["p"] = (*stats.get("p", ()), "n_one")
    for m in paper:
        stats[f"paper_{m}"] = ("const",)
    records = [{k: _parse_cell(v) for k, v in r.items()} for r in rows]
    df = aggregate(records, by, stats=stats)
    rename = {f"{m}_mean": m for m in paper}
    rename |= {f"paper_{m}_const": f"paper_{m}" for m in paper}
    rename |= {"is_sig_n_true": "n_sig", "p_n_one": "n_p1"}
    df = df.rename(columns=rename)
    # A table can hold its own n_sig / n_p1 columns (e.g. stability summaries): keep the first.
    df = df.loc[:, ~df.columns.duplicated()]
    out_rows = []
    for rec in df.to_dict(orient="records"):
        line = {}
        for k, v in rec.items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                line[str(k)] = ""
            elif isinstance(v, float):
                line[str(k)] = repr(v)
            else:
                line[str(k)] = str(v)
        out_rows.append(line)
    note = (
        '<p class="links">Mean over instances (<code>n</code>); <code>ncut_sd</code> is the '
        "sample SD over instances; <code>n_sig</code> counts instances beating every shuffle, "
        "<code>n_p1</code> those above every shuffle. Shaded: the paper's published values.</p>"
    )
    return f"<h3>Per model, ours next to the paper</h3>{table_html(list(df.columns), out_rows)}{note}<h3>All rows</h3>"
