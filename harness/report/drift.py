"""Drift between two runs of the same profile and seed: flipped claims, moved cell means.

:func:`compare_runs` reads two reports folders (their study CSVs, ``claims.csv`` and
``run.json``) and reports what changed: claims whose verdict changed, cells whose mean moved
by more than :data:`THRESHOLD` standard errors, and studies, cells or claims present in only
one of the two. :func:`write_drift` writes ``drift.md``; the page shows :func:`drift_line`.

The standard error of a cell's mean comes from the *baseline*:

* ``sd / sqrt(n)`` over the cell's rows (its instances) when it has two or more that differ;
* with a single instance (or identical ones) there is no spread, so the null model's
  sampling error stands in: ``null_std / sqrt(n_samples)`` for metrics in n-cut units
  (``ncut``, ``null_mean``) and ``1 / sqrt(n_samples)`` for ``z`` (the null SD is its unit);
* without a null (no ``null_std`` or ``n_samples``), a relative tolerance: the mean moved
  when it changed by more than 1% of the baseline's value (written as an SE of
  ``1% x |before| / 3``, so that 3 SE is the 1%).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.files import atomic_write_text, natural_key
from harness.report.runinfo import read_run_info
from harness.report.tables import markdown_table, study_csvs

__all__ = [
    "DRIFT_FILE",
    "DRIFT_METRICS",
    "Drift",
    "Flip",
    "GROUP_COLUMNS",
    "Move",
    "RELATIVE_TOLERANCE",
    "THRESHOLD",
    "compare_runs",
    "drift_line",
    "read_drift_line",
    "write_drift",
]

#: ``drift.md`` in a reports folder.
DRIFT_FILE = "drift.md"

#: Metrics compared by default (those a study has).
DRIFT_METRICS: tuple[str, ...] = ("ncut", "z", "null_mean")

#: Columns that identify a cell, where a study has them; a study with none is grouped by
#: ``test_id``. ``init``, ``epoch``, ``kind`` and ``mode`` keep apart rows that are not
#: instances of one cell (random inits, epochs of a curve, summary rows, lesion modes).
GROUP_COLUMNS: tuple[str, ...] = (
    "model_tag", "init", "phase", "epoch", "n_clusters", "null", "kind", "mode",
)  # fmt: skip

#: A cell mean moved when it changed by more than this many standard errors.
THRESHOLD = 3.0

#: Without any spread, a cell mean moved when it changed by more than this fraction.
RELATIVE_TOLERANCE = 0.01

_NCUT_UNITS = frozenset({"ncut", "null_mean"})


@dataclass(frozen=True)
class Flip:
    """A claim whose verdict changed: ``claim`` is its id (or test id and statement)."""

    claim: str
    before: str
    after: str


@dataclass(frozen=True)
class Move:
    """A cell whose mean moved by more than :data:`THRESHOLD` standard errors."""

    study: str
    group: str
    metric: str
    before: float
    after: float
    se: float
    n_se: float
    rule: str

    def to_row(self) -> dict[str, object]:
        return {
            "study": self.study,
            "cell": self.group,
            "metric": self.metric,
            "before": self.before,
            "after": self.after,
            "se": self.se,
            "n_se": self.n_se,
            "se_rule": self.rule,
        }


@dataclass(frozen=True)
class Drift:
    """What changed between a baseline run and the current one.

    Attributes
    ----------
    current, baseline : str
        The two reports folders, as given.
    profile, seed : object
        The profile and base seed of the two runs (the current run's when they differ).
    mismatch : tuple of str
        Why the runs are not comparable (profile or seed differ, run.json missing); empty
        when they are.
    flipped : tuple of Flip
        Claims whose verdict changed.
    moved : tuple of Move
        Cell means that moved by more than ``threshold`` standard errors.
    missing, new : tuple of str
        Studies, cells and claims only the baseline has (missing) or only the current run.
    n_cells, n_claims : int
        Cell means and claims compared.
    threshold : float
        Standard errors a mean may move.
    """

    current: str
    baseline: str
    profile: object = None
    seed: object = None
    mismatch: tuple[str, ...] = ()
    flipped: tuple[Flip, ...] = ()
    moved: tuple[Move, ...] = ()
    missing: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    n_cells: int = 0
    n_claims: int = 0
    threshold: float = THRESHOLD

    @property
    def ok(self) -> bool:
        """Comparable runs, no flipped claim, no moved mean, nothing missing."""
        return not (self.mismatch or self.flipped or self.moved or self.missing)

    def __repr__(self) -> str:
        return (
            f"Drift(ok={self.ok}, baseline={self.baseline!r}, mismatch={len(self.mismatch)}, "
            f"flipped={len(self.flipped)}, moved={len(self.moved)}/{self.n_cells}, "
            f"missing={len(self.missing)}, new={len(self.new)})"
        )


# ----------------------------------------------------------------------------------------
# reading


def _read_csv(path: Path) -> pd.DataFrame:
    # as text: keys compare exactly as written (the writer is deterministic)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _groups(frame: pd.DataFrame, keys: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The rows of each cell, by a label such as ``"model_tag=MNIST, phase=pruned"``."""
    labels = pd.Series(
        [
            ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True) if v != "")
            or "(all rows)"
            for values in frame[list(keys)].itertuples(index=False, name=None)
        ],
        index=frame.index,
        dtype=object,
    )
    return {str(label): part for label, part in frame.groupby(labels, sort=False)}


def _mean(frame: pd.DataFrame, column: str) -> float:
    """Mean of a column's finite values (NaN if it has none)."""
    values = _numbers(frame, column)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def _standard_error(
    metric: str, group: pd.DataFrame, before: float, threshold: float
) -> tuple[float, str]:
    values = _numbers(group, metric)
    values = values[np.isfinite(values)]
    if values.size >= 2:
        se = float(values.std(ddof=1)) / math.sqrt(values.size)
        if se > 0:
            return se, "sd/sqrt(n)"
    null_std, n_samples = _mean(group, "null_std"), _mean(group, "n_samples")
    if n_samples > 0 and null_std > 0:
        if metric in _NCUT_UNITS:
            return null_std / math.sqrt(n_samples), "null_std/sqrt(n_samples)"
        if metric == "z":
            return 1.0 / math.sqrt(n_samples), "1/sqrt(n_samples)"
    return RELATIVE_TOLERANCE * abs(before) / threshold, f"{RELATIVE_TOLERANCE:.0%} relative"


def _compare_cell(
    study: str, label: str, metric: str, old: pd.DataFrame, new: pd.DataFrame, threshold: float
) -> Move | None:
    before, after = _mean(old, metric), _mean(new, metric)
    if math.isnan(before) and math.isnan(after):
        return None
    if math.isnan(before) or math.isnan(after):
        return Move(study, label, metric, before, after, math.nan, math.inf, "no value on one side")
    se, rule = _standard_error(metric, old, before, threshold)
    diff = abs(after - before)
    if se > 0:
        n_se = diff / se
    else:
        n_se = math.inf if diff > 0 else 0.0
    return Move(study, label, metric, before, after, se, n_se, rule) if n_se > threshold else None


def _claims(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    frame = _read_csv(path)
    out: dict[str, str] = {}
    for rec in frame.to_dict("records"):
        key = (
            str(rec.get("claim_id") or "") or f"{rec.get('test_id', '')} :: {rec.get('claim', '')}"
        )
        out[key] = str(rec.get("verdict", ""))
    return out


def _mismatch(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    reasons = []
    for what, info in (("this run", current), ("the baseline", baseline)):
        if not info:
            reasons.append(f"no run.json in {what}")
    if reasons:
        return reasons
    for key in ("profile", "seed"):
        if current.get(key) != baseline.get(key):
            reasons.append(
                f"{key} {current.get(key)!r} here, {baseline.get(key)!r} in the baseline"
            )
    return reasons


def compare_runs(
    current: str | os.PathLike[str],
    baseline: str | os.PathLike[str],
    *,
    metrics: Sequence[str] = DRIFT_METRICS,
    threshold: float = THRESHOLD,
) -> Drift:
    """Compare the reports folder of a run with a baseline run's.

    Parameters
    ----------
    current, baseline : path
        Reports folders, each with ``run.json``, study CSVs and usually ``claims.csv``.
    metrics : sequence of str
        Columns compared cell by cell (those a study has).
    threshold : float
        A cell mean moved when it changed by more than this many standard errors.

    Returns
    -------
    Drift
        Not ok, and nothing compared, when the runs' profile or base seed differ (or a
        ``run.json`` is missing). Else: claims (by ``claim_id``, else test id and statement)
        whose verdict changed; cells whose mean moved; studies, cells and claims only one run
        has. Cells group a study's rows by the :data:`GROUP_COLUMNS` both runs' tables have
        (else by ``test_id``). Standard errors as in the module docstring: the baseline's
        ``sd / sqrt(n)``; with one instance ``null_std / sqrt(n_samples)`` (``1 /
        sqrt(n_samples)`` for ``z``); without a null, 1% of the baseline's value.

    Raises
    ------
    FileNotFoundError
        If either folder does not exist.
    """
    cur, base = Path(current), Path(baseline)
    for path in (cur, base):
        if not path.is_dir():
            raise FileNotFoundError(f"reports folder {path} does not exist")
    info_cur, info_base = read_run_info(cur), read_run_info(base)
    mismatch = _mismatch(info_cur, info_base)
    if mismatch:
        return Drift(
            str(current),
            str(baseline),
            profile=info_cur.get("profile"),
            seed=info_cur.get("seed"),
            mismatch=tuple(mismatch),
            threshold=threshold,
        )

    missing: list[str] = []
    new: list[str] = []
    moved: list[Move] = []
    n_cells = 0
    tables_cur, tables_base = study_csvs(cur), study_csvs(base)
    missing += [f"study {s}" for s in tables_base if s not in tables_cur]
    new += [f"study {s}" for s in tables_cur if s not in tables_base]
    for study in (s for s in tables_base if s in tables_cur):
        old, now = _read_csv(tables_base[study]), _read_csv(tables_cur[study])
        keys = [c for c in GROUP_COLUMNS if c in old.columns and c in now.columns] or ["test_id"]
        if any(k not in frame.columns for frame in (old, now) for k in keys):
            missing.append(f"study {study}: no test_id column")
            continue
        groups_old, groups_new = _groups(old, keys), _groups(now, keys)
        missing += [f"cell {study}: {g}" for g in groups_old if g not in groups_new]
        new += [f"cell {study}: {g}" for g in groups_new if g not in groups_old]
        shared = [m for m in metrics if m in old.columns and m in now.columns]
        for group in (g for g in groups_old if g in groups_new):
            for metric in shared:
                n_cells += 1
                move = _compare_cell(
                    study, group, metric, groups_old[group], groups_new[group], threshold
                )
                if move is not None:
                    moved.append(move)

    claims_old, claims_new = _claims(base / "claims.csv"), _claims(cur / "claims.csv")
    flipped = tuple(
        Flip(key, claims_old[key], claims_new[key])
        for key in sorted(claims_old, key=natural_key)
        if key in claims_new and claims_old[key] != claims_new[key]
    )
    missing += [f"claim {k}" for k in sorted(claims_old, key=natural_key) if k not in claims_new]
    new += [f"claim {k}" for k in sorted(claims_new, key=natural_key) if k not in claims_old]
    return Drift(
        str(current),
        str(baseline),
        profile=info_cur.get("profile"),
        seed=info_cur.get("seed"),
        flipped=flipped,
        moved=tuple(moved),
        missing=tuple(missing),
        new=tuple(new),
        n_cells=n_cells,
        n_claims=sum(k in claims_new for k in claims_old),
        threshold=threshold,
    )


# ----------------------------------------------------------------------------------------
# writing


def drift_line(drift: Drift) -> str:
    """One sentence: comparable or not, and what changed (for the page header)."""
    if drift.mismatch:
        return f"Not comparable with the baseline {drift.baseline}: {'; '.join(drift.mismatch)}."
    parts = [
        f"{len(drift.flipped)} of {drift.n_claims} claim verdicts changed",
        f"{len(drift.moved)} of {drift.n_cells} cell means moved by more than "
        f"{drift.threshold:g} SE",
    ]
    if drift.missing:
        parts.append(f"{len(drift.missing)} missing")
    if drift.new:
        parts.append(f"{len(drift.new)} new")
    head = "No drift" if drift.ok else "Drift"
    return (
        f"{head} against the baseline {drift.baseline} (profile {drift.profile}, seed "
        f"{drift.seed}): {', '.join(parts)}."
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
        f"This run: `{drift.current}`; baseline: `{drift.baseline}`. A cell (a study's rows "
        f"sharing {', '.join(GROUP_COLUMNS)}, where present) moved when its mean changed by "
        f"more than {drift.threshold:g} standard errors of the baseline's mean: sd/sqrt(n) "
        "over its instances; with one instance null_std/sqrt(n_samples) (1/sqrt(n_samples) "
        f"for z); without a null, {RELATIVE_TOLERANCE:.0%} of the baseline's value.",
    ]
    if drift.mismatch:
        lines += ["", "## Not comparable", "", *(f"- {m}" for m in drift.mismatch)]
    if drift.flipped:
        rows: list[dict[str, object]] = [
            {"claim": f.claim, "before": f.before, "after": f.after} for f in drift.flipped
        ]
        lines += [
            "",
            "## Claims whose verdict changed",
            "",
            markdown_table(["claim", "before", "after"], rows),
        ]
    if drift.moved:
        rows = [m.to_row() for m in drift.moved]
        cols = list(rows[0])
        lines += [
            "",
            f"## Cell means moved by more than {drift.threshold:g} SE",
            "",
            markdown_table(cols, rows),
        ]
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
