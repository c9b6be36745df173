"""Result tables: one CSV and one Markdown table per study, and the claims table.

Rows are dicts of builtin types recorded by experiments (see :mod:`harness.plugin`). Whatever
order they arrive in (xdist schedules tests in any order), the same rows always give the same
bytes: rows are sorted by test id and then by their values, columns follow a fixed order, and
floats are written with Python's shortest round-trip ``repr`` (full precision, no noise digits).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.files import atomic_write_text, natural_key
from harness.options import check_choice
from harness.report.cells import (
    Row,
    check_rows,
    column_kind,
    csv_cell,
    display_cell,
    md_escape,
    plain,
    value_key,
)
from harness.report.naming import check_name

if TYPE_CHECKING:
    from harness.claims import Claim

__all__ = [
    "CLAIM_COLUMNS",
    "IDENTITY_COLUMNS",
    "METRIC_COLUMNS",
    "RUN_TABLES",
    "VERDICTS",
    "column_order",
    "csv_text",
    "is_timing_column",
    "markdown_table",
    "registry_claims",
    "sort_claims",
    "sort_rows",
    "study_csvs",
    "study_frame",
    "verdict_counts",
    "write_claims",
    "write_claims_registry",
    "write_study_tables",
]

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
#: test crashed after recording it; ``xpass``: a claim marked expected-to-fail held;
#: ``recorded``: checked but not asserted at this profile; ``not run``: a claim of the
#: registry (:mod:`harness.claims`) that no test of this run checked.
VERDICTS: tuple[str, ...] = ("fail", "error", "xpass", "xfail", "pass", "recorded", "not run")

#: Columns of the claims table, always all of them and in this order; any other keys of the
#: claim dicts follow, sorted. ``claim`` is the statement, ``expected`` the paper's evidence
#: (or what an ad-hoc claim expects), ``status`` and ``note`` the claim's status at the run's
#: profile (``assert``, ``xfail``, ``record``) and its reason, ``test_id`` the test that
#: checked it (for a claim not run: the test that asserts it).
CLAIM_COLUMNS: tuple[str, ...] = (
    "claim_id",
    "table",
    "claim",
    "expected",
    "verdict",
    "observed",
    "status",
    "note",
    "test_id",
    "study",
)

#: Tables of a reports folder that are about the whole run, not one study.
RUN_TABLES: frozenset[str] = frozenset({"claims", "fidelity"})


# ----------------------------------------------------------------------------------------
# column order and row order


def is_timing_column(name: str) -> bool:
    """Timing columns (seconds) go last: names ending in ``_s``, ``wall_time``, ``duration``."""
    return name.endswith("_s") or name in _TIMING_NAMES


def _canonical_rows(rows: Sequence[Row]) -> list[Row]:
    # An order that depends only on the *set* of rows, used to decide the first-seen order
    # of columns the harness does not know about.
    return sorted(
        rows,
        key=lambda r: (
            natural_key(str(r.get("test_id", ""))),
            json.dumps({str(k): csv_cell(v) for k, v in r.items()}, sort_keys=True),
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
        values = [plain(r.get(col)) for r in rows]
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


def sort_rows(rows: Sequence[Row], columns: Sequence[str] | None = None) -> list[Row]:
    """Rows in report order: by test id (natural order), then by their values column by column.

    Rows of one test (e.g. one per lesioned sub-cluster) thus come out in identity-column
    order, and identical input sets give identical output whatever order they arrived in.
    """
    cols = list(columns) if columns is not None else column_order(rows)
    return sorted(
        rows,
        key=lambda r: (
            natural_key(str(r.get("test_id", ""))),
            tuple(value_key(r.get(c)) for c in cols),
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
    rows = check_rows(rows, "rows")
    if not rows:
        return pd.DataFrame()
    cols = column_order(rows)
    ordered = sort_rows(rows, cols)
    return pd.DataFrame.from_records(
        [{c: plain(r.get(c)) for c in cols} for r in ordered], columns=cols
    )


def study_csvs(reports_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The study tables of a reports folder: ``{study: <study>.csv}``, in natural order.

    Every ``*.csv`` directly in the folder except the run-wide tables (:data:`RUN_TABLES`:
    ``claims.csv``, ``fidelity.csv``). A missing folder has none.
    """
    root = Path(reports_dir)
    if not root.is_dir():
        return {}
    found = {p.stem: p for p in root.glob("*.csv") if p.is_file() and p.stem not in RUN_TABLES}
    return {name: found[name] for name in sorted(found, key=natural_key)}


# ----------------------------------------------------------------------------------------
# writers


def csv_text(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """Rows as CSV text: a header of ``columns``, then one line per row, full precision.

    Cells are written by :func:`~harness.report.cells.csv_cell` (shortest round-trip float
    ``repr``, ``nan``/``inf`` spelled out, empty = missing, lists and dicts as JSON).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def markdown_table(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """Rows as a Markdown (pipe) table: floats rounded, numbers right-aligned, text escaped."""
    from tabulate import tabulate

    kinds = {c: column_kind(r.get(c) for r in rows) for c in columns}
    body = [[md_escape(display_cell(r.get(c), kinds[c])) for c in columns] for r in rows]
    align = ["right" if kinds[c] in ("int", "float") else "left" for c in columns]
    return str(
        tabulate(
            body,
            headers=[md_escape(c) for c in columns],
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
        rows = check_rows(rows_by_study[study], f"rows_by_study[{study!r}]")
        if not rows:
            continue
        cols = column_order(rows)
        ordered = sort_rows(rows, cols)
        written.append(atomic_write_text(out_dir / f"{study}.csv", csv_text(cols, ordered)))
        md = (
            f"# Study `{study}`\n\n"
            f"{len(ordered)} rows. Identity columns first, then metrics, the paper's values "
            "(`paper_*`) and timings in seconds (`*_s`). Floats are rounded here; "
            f"`{study}.csv` has full precision.\n\n"
            f"{markdown_table(cols, ordered)}\n"
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
    items = check_rows(claims, "claims")
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
            json.dumps({str(k): csv_cell(v) for k, v in c.items()}, sort_keys=True),
        ),
    )


def _claim_columns(claims: Sequence[Row]) -> list[str]:
    extra = sorted({str(k) for c in claims for k in c} - set(CLAIM_COLUMNS))
    return list(CLAIM_COLUMNS) + extra


def registry_claims(
    records: Iterable[Row],
    *,
    profile: str,
    registry: Mapping[str, Claim] | None = None,
) -> list[Row]:
    """Claim records completed with every claim of the registry, one row per claim.

    Parameters
    ----------
    records : iterable of dict
        Claims checked by the run (the ``claim`` fixture's records: ``claim_id``, ``table``,
        ``claim``, ``expected``, ``observed``, ``verdict``, ``status``, ``note``,
        ``test_id``, ``study``, ...).
    profile : str
        The run's profile, for the status (and its reason) of the claims not run.
    registry : mapping of str to Claim, optional
        Claims by id; default :data:`harness.claims.REGISTRY`.

    Returns
    -------
    list of dict
        Every record, kept as it is (hand-written claims, whose ``claim_id`` is empty or not
        in the registry, included) except that a registry claim's empty fields (table,
        statement, evidence, study, status and reason at ``profile``) are filled in from the
        registry; then one row with verdict ``not run`` for each registry claim that no
        record names, in registry order. Applying it twice adds nothing.
    """
    if registry is None:
        from harness.claims import REGISTRY

        registry = REGISTRY
    rows: list[Row] = []
    seen: set[str] = set()
    for record in check_rows(records, "records"):
        claim_id = str(record.get("claim_id") or "")
        entry = registry.get(claim_id) if claim_id else None
        if entry is None:
            rows.append(dict(record))
            continue
        seen.add(claim_id)
        status, reason = entry.status_at(profile)
        defaults: dict[str, object] = {
            "table": entry.table,
            "claim": entry.statement,
            "expected": entry.evidence,
            "study": entry.study,
            "test_id": entry.test,
            "status": status,
            "note": reason,
        }
        row = dict(record)
        for key, value in defaults.items():
            if plain(row.get(key)) in (None, ""):
                row[key] = value
        rows.append(row)
    for claim_id, entry in registry.items():
        if claim_id in seen:
            continue
        status, reason = entry.status_at(profile)
        rows.append(
            {
                "claim_id": claim_id,
                "table": entry.table,
                "claim": entry.statement,
                "expected": entry.evidence,
                "verdict": "not run",
                "observed": "",
                "status": status,
                "note": reason,
                "test_id": entry.test,
                "study": entry.study,
                "profile": profile,
            }
        )
    return rows


def verdict_counts(claims: Iterable[Row]) -> dict[str, int]:
    """Number of claims per verdict, in :data:`VERDICTS` order (zero counts omitted)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        counts[str(c["verdict"])] = counts.get(str(c["verdict"]), 0) + 1
    return {v: n for v, n in counts.items() if n}


def write_claims(claims: Iterable[Row], reports_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``claims.csv`` and ``claims.md`` (failing claims first), atomically.

    Parameters
    ----------
    claims : iterable of dict
        Each with ``claim`` (text) and ``verdict`` (one of :data:`VERDICTS`), and usually
        the other :data:`CLAIM_COLUMNS` (missing ones are left empty); other keys become
        extra columns, sorted. To list every claim of the registry, pass the records through
        :func:`registry_claims` first (or call :func:`write_claims_registry`).
    reports_dir : path
        Output directory (created if missing).

    Returns
    -------
    list of Path
        ``[claims.csv, claims.md]``; written even when there are no claims, so that a
        stale table from an earlier run never survives. ``claims.md`` opens with the totals
        (``"44 claims: 2 fail, 40 pass, 2 not run."``).
    """
    ordered = sort_claims(claims)
    cols = _claim_columns(ordered)
    out_dir = Path(reports_dir)
    csv_path = atomic_write_text(out_dir / "claims.csv", csv_text(cols, ordered))
    counts = verdict_counts(ordered)
    summary = ", ".join(f"{n} {v}" for v, n in counts.items()) or "no claims"
    md = f"# Claims\n\n{len(ordered)} claims: {summary}. Failing claims first.\n\n"
    if ordered:
        md += markdown_table(cols, ordered) + "\n"
    md_path = atomic_write_text(out_dir / "claims.md", md)
    return [csv_path, md_path]


def write_claims_registry(
    records: Iterable[Row],
    reports_dir: str | os.PathLike[str],
    *,
    profile: str,
    registry: Mapping[str, Claim] | None = None,
) -> list[Path]:
    """:func:`write_claims` of :func:`registry_claims`: every registry claim with its verdict.

    Registry claims no test checked get the verdict ``not run`` and their status at
    ``profile``; hand-written claims are kept. Returns ``[claims.csv, claims.md]``.
    """
    return write_claims(registry_claims(records, profile=profile, registry=registry), reports_dir)
