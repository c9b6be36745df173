"""Re-derive what each claim observed in a kept run, from the tables that run kept.

A calibration keeps each seed's tables and ``claims.csv`` (:mod:`harness.calibration`), and
reads each claim's margins from the ``observed`` text of ``claims.csv``. When a check starts
reporting a number it did not before (the ``z`` of a p = 1 claim, the ``nmi_z`` of Table M),
the kept texts lack it and those claims' margins cannot be read. :func:`reobserve` evaluates
each claim again on its study's kept table and writes the new text, only where that
evaluation reproduces the run: the same verdict, and every number the old text had, unchanged.
Anything else keeps its old text (the tables of some studies, such as the lesions, hold more
rows than a claim's test builds, so their claims are left alone).

``python -m harness calibrate --profile quick --reobserve`` runs it on every seed of a
calibration and rewrites its ``calibration.md``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from harness.claims.catalog import REGISTRY
from harness.claims.observed import format_observed, parse_observed
from harness.files import atomic_write_text

__all__ = ["reobserve"]


def _same_numbers(old: str, new: str) -> bool:
    """Every name of ``old`` is in ``new`` with the same value, as written."""
    before, after = parse_observed(old), parse_observed(new)
    if not before and old.strip():
        return False
    return all(
        name in after and format_observed({name: value}) == format_observed({name: after[name]})
        for name, value in before.items()
    )


def reobserve(folder: str | os.PathLike[str]) -> tuple[int, int]:
    """Rewrite ``<folder>/claims.csv`` (atomically) with each registry claim's ``observed``
    text evaluated on ``<folder>/<study>.csv``, where that reproduces the run.

    Returns ``(rewritten, kept)``: claims whose text now comes from the tables, and claims
    whose old text stays (not in the registry, not run, no table, or the evaluation differs).
    """
    import pandas as pd

    folder = Path(folder)
    path = folder / "claims.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        records = list(reader)
    tables: dict[str, pd.DataFrame | None] = {}
    rewritten = kept = 0
    for rec in records:
        claim = REGISTRY.get(rec.get("claim_id", ""))
        if claim is None or rec.get("verdict") == "not run":
            kept += 1
            continue
        if claim.study not in tables:
            table = folder / f"{claim.study}.csv"
            tables[claim.study] = pd.read_csv(table) if table.is_file() else None
        rows = tables[claim.study]
        if rows is None:
            kept += 1
            continue
        try:
            outcome = claim.evaluate(rows)
        except (KeyError, ValueError, TypeError, IndexError):
            kept += 1
            continue
        text = format_observed(dict(outcome.observed))
        old = rec.get("observed", "")
        if str(bool(outcome.holds)) != rec.get("holds") or not _same_numbers(old, text):
            kept += 1
            continue
        rewritten += text != old
        kept += text == old
        rec["observed"] = text
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, out.getvalue())
    return rewritten, kept
