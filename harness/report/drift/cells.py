"""Drift's inputs: a study table's cells, their values and sampling errors, and claim outcomes.

A cell is what the study records as one configuration: the ``cell`` column the plugin writes
into every row, with the row's position when a test records several rows
(:func:`cell_labels`). A cell's value is the mean over its rows (instances) of a metric,
with the sampling error of that mean (:data:`DRIFT_METRICS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.baseline import BaselineError, read_csv_strict

__all__ = [
    "DRIFT_METRICS",
    "cell_labels",
    "cell_value",
    "cells_of",
    "claim_verdicts",
    "column_values",
    "digests",
    "read_claims",
]


def column_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` as floats (NaN where it is not a number, or the frame lacks it)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _null_se(std_column: str) -> Callable[[pd.DataFrame], np.ndarray]:
    def se(rows: pd.DataFrame) -> np.ndarray:
        return column_values(rows, std_column) / np.sqrt(column_values(rows, "n_samples"))

    return se


def _z_se(rows: pd.DataFrame) -> np.ndarray:
    return 1.0 / np.sqrt(column_values(rows, "n_samples"))


def _cohen_se(rows: pd.DataFrame) -> np.ndarray:
    # Two groups of n samples (Hedges & Olkin 1985): var(d) ~ 2/n + d^2 / (4n).
    n, d = column_values(rows, "n_samples"), column_values(rows, "cohen_d")
    return np.sqrt(2.0 / n + d**2 / (4.0 * n))


def _trials_se(rows: pd.DataFrame) -> np.ndarray:
    return column_values(rows, "sd") / np.sqrt(column_values(rows, "n_trials"))


#: The metrics compared, each with its sampling error per row (the paired rule's unit).
DRIFT_METRICS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "ncut": _null_se("null_std"),
    "null_mean": _null_se("null_std"),
    "z": _z_se,
    "layer_null_mean": _null_se("layer_null_std"),
    "layer_z": _z_se,
    "nonzero_null_mean": _null_se("nonzero_null_std"),
    "nonzero_z": _z_se,
    "cohen_d": _cohen_se,
    "mean": _trials_se,  # Table I: the mean n-cut of n_trials random networks
}


def cell_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's cell: its ``cell`` column, with the row's position when a test has several."""
    if "cell" not in frame.columns:
        raise BaselineError(
            "a table has no 'cell' column (written by an older version); refresh the baseline "
            "with `make baseline`"
        )
    labels = frame["cell"].astype(str)
    if "test_id" in frame.columns:
        position = frame.groupby("test_id", sort=False).cumcount()
        several = frame.groupby("test_id", sort=False)["test_id"].transform("size") > 1
        labels = labels.where(~several, labels + " #" + position.astype(str))
    return labels


def cells_of(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A study table's rows by cell (:func:`cell_labels`), in table order."""
    labels = cell_labels(frame)
    return {str(label): part for label, part in frame.groupby(labels, sort=False)}


def cell_value(rows: pd.DataFrame, metric: str) -> tuple[float, float]:
    """A cell's mean of ``metric`` and the sampling error of that mean."""
    values = column_values(rows, metric)
    finite = np.isfinite(values)
    if not finite.any():
        return math.nan, math.nan
    se = DRIFT_METRICS[metric](rows)[finite]
    se = se[np.isfinite(se)]
    sampling = float(np.sqrt(np.mean(se**2) / finite.sum())) if se.size else math.nan
    return float(values[finite].mean()), sampling


def digests(rows: pd.DataFrame) -> list[str]:
    """The rows' ``weights_digest`` values, sorted (empty without trained networks)."""
    if "weights_digest" not in rows.columns:
        return []
    return sorted(rows["weights_digest"].astype(str))


def claim_verdicts(frame: pd.DataFrame | None) -> dict[str, str]:
    """Whether each claim that ran held: ``"holds"`` or ``"fails"`` by claim id.

    Compared by outcome, not by verdict: a baseline made by calibration runs records every
    claim (verdict ``recorded``), and a run asserts some of them (``pass``, ``xfail``, ...).
    Claims that did not run (``not run``) are left out.
    """
    if frame is None:
        return {}
    out: dict[str, str] = {}
    for rec in frame.to_dict("records"):
        if str(rec.get("verdict", "")) == "not run":
            continue
        key = str(rec.get("claim_id") or "") or f"{rec.get('test_id', '')} :: {rec.get('claim', '')}"
        holds = str(rec.get("holds", "")).strip().lower()
        out[key] = "holds" if holds in ("true", "1") else "fails" if holds in ("false", "0") else str(rec.get("verdict", ""))
    return out


def read_claims(folder: Path) -> pd.DataFrame | None:
    """``<folder>/claims.csv`` as text cells, or None if the run wrote none."""
    path = folder / "claims.csv"
    return read_csv_strict(path) if path.is_file() else None
