"""Drift written down: ``drift.md`` (:func:`write_drift`), its one-line summary
(:func:`drift_line`, the page's header), and that line read back."""

from __future__ import annotations

import math
import os
from pathlib import Path

from harness.files import atomic_write_text
from harness.report.drift.rules import Drift
from harness.report.tables import markdown_table

__all__ = ["DRIFT_FILE", "drift_failed", "drift_line", "read_drift_line", "write_drift"]

#: ``drift.md`` in a reports folder.
DRIFT_FILE = "drift.md"


def drift_line(drift: Drift) -> str:
    """One sentence: comparable or not, and what changed (for the page header)."""
    if drift.mismatch:
        return f"Not comparable with the baseline {drift.baseline}: {'; '.join(drift.mismatch)}."
    parts = [
        f"{len(drift.flipped)} of {drift.n_claims} claim verdicts changed",
        f"{len(drift.moved)} of {drift.n_cells} cell values moved beyond their noise "
        f"({drift.n_paired} paired)",
        f"{len(drift.pooled_moved)} of {len(drift.pooled)} study-wide pooled shifts",
    ]
    if drift.missing:
        parts.append(f"{len(drift.missing)} missing")
    if drift.new:
        parts.append(f"{len(drift.new)} new")
    largest = drift.largest
    if largest is not None:
        parts.append(
            f"largest move {largest.n_se:.2f} SD ({largest.study} {largest.group} {largest.metric})"
        )
    head = "No drift" if drift.ok else "Drift"
    seeds = ", ".join(str(s) for s in drift.baseline_seeds)
    return (
        f"{head} against the baseline {drift.baseline} (profile {drift.profile}, seed "
        f"{drift.seed}; baseline seeds {seeds}): {', '.join(parts)}."
    )


def write_drift(drift: Drift, reports_dir: str | os.PathLike[str]) -> Path:
    """Write ``<reports_dir>/drift.md``: :func:`drift_line` first, then the tables.

    Returns the path, written atomically.
    """
    lines = [
        drift_line(drift),
        "",
        "# Drift",
        "",
        f"This run: `{drift.current}`; baseline: `{drift.baseline}` (seeds "
        f"{', '.join(str(s) for s in drift.baseline_seeds)}). A cell is a study's rows of one "
        "configuration (the `cell` column: the test and every parameter but the instance).",
        "",
        "Rules (see `harness/report/drift/__init__.py`):",
        "",
        "- **paired**: this run's networks are bitwise those of the baseline's run at the same "
        f"seed, so only the analysis can have changed; a cell moved when it changed by more "
        f"than {drift.threshold:g} sampling errors (null_std/sqrt(n_samples) for n-cuts, "
        "1/sqrt(n_samples) for z, sd/sqrt(n_trials) for random-init means);",
        "- **seed spread**: otherwise, against the baseline's distribution over its seeds: "
        "combined spread sqrt(between-seed SD^2 + sampling error^2), the prediction error "
        "over it with k-1 degrees of freedom, shown as the normal deviate of equal tail "
        f"probability; moved beyond {drift.cell_cutoff:.2f}, the cutoff that keeps all "
        f"these comparisons together at the false-alarm rate of one {drift.threshold:g}-SD "
        "test (Bonferroni);",
        "- **pooled**: per study and metric, the mean signed standardised change over its "
        f"standard error; beyond {drift.pooled_cutoff:.2f} (likewise family-wise) the study "
        "moved as a whole.",
    ]
    if drift.mismatch:
        lines += ["", "## Not comparable", "", *(f"- {m}" for m in drift.mismatch)]
    if drift.flipped:
        rows: list[dict[str, object]] = [
            {"claim": f.claim, "baseline": f.before, "this run": f.after} for f in drift.flipped
        ]
        lines += ["", "## Claims whose verdict changed", "", markdown_table(list(rows[0]), rows)]
    if drift.moved:
        rows = [m.to_row() for m in drift.moved]
        lines += [
            "", "## Cells that moved beyond their noise", "",
            markdown_table(list(rows[0]), rows),
        ]
    if drift.pooled:
        rows = [{**p.to_row(), "moved": abs(p.z) > drift.pooled_cutoff} for p in drift.pooled]
        lines += ["", "## Pooled per study", "", markdown_table(list(rows[0]), rows)]
    largest = sorted(
        (m for m in drift.compared if math.isfinite(m.n_se)), key=lambda m: -m.n_se
    )[:10]
    if largest:
        rows = [m.to_row() for m in largest]
        lines += ["", "## Largest standardised moves", "", markdown_table(list(rows[0]), rows)]
    for title, items in (("Missing from this run", drift.missing), ("New in this run", drift.new)):
        if items:
            lines += ["", f"## {title}", "", *(f"- {item}" for item in items)]
    return atomic_write_text(Path(reports_dir) / DRIFT_FILE, "\n".join(lines) + "\n")


def read_drift_line(reports_dir: str | os.PathLike[str]) -> str | None:
    """The summary line of ``<reports_dir>/drift.md`` (its first line), or None."""
    path = Path(reports_dir) / DRIFT_FILE
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            return line.strip()
    return None


def drift_failed(line: str | None) -> bool:
    """Whether a drift summary line reports drift (for the page's banner)."""
    return bool(line) and not str(line).startswith("No drift")
