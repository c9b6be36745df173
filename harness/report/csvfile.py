"""Reading back the CSV tables a run wrote (``<study>.csv``, ``claims.csv``), strictly.

The harness writes every table whole (:func:`~harness.report.tables.csv_text`, one record
per row, every record with the header's fields), so anything else is damage: a file cut
short, or edited by hand. :func:`read_csv_records` refuses it with one line that names the
file and what is wrong, rather than showing a table with rows missing or merged.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ReportFileError", "read_csv_records"]


class ReportFileError(ValueError):
    """A file of a reports folder that cannot be read as what it should be.

    The message is one line naming the file and what is wrong with it.
    """


def read_csv_records(
    path: str | os.PathLike[str], *, required: Sequence[str] = ()
) -> tuple[list[str], list[list[str]]]:
    """The header and records of a CSV table, refusing what a truncated or broken file looks like.

    Parsed with :mod:`csv` in strict mode, so an unclosed quote is an error rather than one
    record swallowing the rest of the file; every record must have the header's number of
    fields, and the header must name every column of ``required``.

    Parameters
    ----------
    path : path
        The CSV file.
    required : sequence of str
        Columns the table must have (``claims.csv``: its verdicts and claims).

    Returns
    -------
    header : list of str
    records : list of list of str
        One per row, each as long as ``header``.

    Raises
    ------
    ReportFileError
        Naming the file and the first problem: unreadable, not well-formed, empty, a record
        with another number of fields than the header, or a required column missing.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportFileError(f"{path}: cannot be read ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise ReportFileError(
            f"{path}: not a well-formed CSV ({exc}, line {reader.line_num}); an unclosed quote "
            "or a file cut short"
        ) from None
    if not records or not records[0]:
        raise ReportFileError(f"{path}: empty, no header line")
    header = records[0]
    for number, record in enumerate(records[1:], start=2):
        if len(record) != len(header):
            raise ReportFileError(
                f"{path}: row {number} has {len(record)} fields, the header {len(header)}"
            )
    missing = [c for c in required if c not in header]
    if missing:
        raise ReportFileError(f"{path} lacks the column(s) {missing}; its header: {header}")
    return header, records[1:]
