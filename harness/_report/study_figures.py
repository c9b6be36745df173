"""Study-level figures, drawn by the controller at the end of a run from the rows of a study.

Per-test figures (one network's null distribution, one model's lesion) are drawn by the
tests themselves; figures that need every row of a study (the factors grid, K sensitivity,
learning curves) are drawn here, once, from the same
rows that make the tables. Each study maps to one function; studies without one get none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness._report._io import figure_stem
from harness._report.figures import (
    plot_factors_grid,
    plot_k_sensitivity,
    plot_learning_curve,
)

__all__ = ["write_study_figures", "SUMMARY_ID"]

SUMMARY_ID = "summary"


def _dataset_of(tag: str) -> str:
    for name in ("FASHION", "MNIST", "POLY", "LINE"):
        if name in str(tag):
            return name
    return str(tag)


def _clustering(df: pd.DataFrame, reports_dir: Path) -> list[Path]:
    if not {"condition", "phase", "z", "model_tag"} <= set(df.columns):
        return []
    data = df.copy()
    data["dataset"] = data["model_tag"].map(_dataset_of)
    halves = data["model_tag"].astype(str).str.startswith("HALVES")
    data.loc[halves, "dataset"] = data.loc[halves, "dataset"] + " (halves)"
    stem = figure_stem(reports_dir, "clustering", SUMMARY_ID, "factors-grid")
    return plot_factors_grid(data, stem, title="z-score against the layer null, K = 12")


def _n_clusters(df: pd.DataFrame, reports_dir: Path) -> list[Path]:
    if not {"n_clusters", "is_sig", "z"} <= set(df.columns):
        return []
    stem = figure_stem(reports_dir, "n_clusters", SUMMARY_ID, "k-sensitivity")
    return plot_k_sensitivity(df, stem, title="significance against the number of clusters K")


def _learning_curve(df: pd.DataFrame, reports_dir: Path) -> list[Path]:
    if not {"epoch", "ncut", "model_tag"} <= set(df.columns):
        return []
    prune_start = None
    if "phase" in df.columns and (df["phase"] == "unpruned").any():
        prune_start = float(df.loc[df["phase"] == "unpruned", "epoch"].max()) + 0.5
    stem = figure_stem(reports_dir, "learning_curve", SUMMARY_ID, "learning-curves")
    return plot_learning_curve(
        df, stem, hue="model_tag", prune_start=prune_start,
        title="n-cut (K = 4) and test accuracy through training and pruning",
    )


def _lesion_workbook(frames: Mapping[str, pd.DataFrame], reports_dir: Path) -> Path | None:
    """``mlp-lesion.xlsx``: one sheet per lesion table (the seed project's lesion workbook)."""
    tables: dict[str, pd.DataFrame] = {}
    for study in ("lesion", "double_lesion"):
        df = frames.get(study)
        if df is None or "kind" not in df.columns:
            continue
        prefix = "single" if study == "lesion" else "double"
        for kind, group in df.groupby("kind", sort=True):
            modes = sorted(group["mode"].dropna().unique()) if "mode" in group.columns else []
            parts = [(f"{prefix}-{kind}-{m}", group[group["mode"] == m]) for m in modes]
            if len(parts) <= 1:
                parts = [(f"{prefix}-{kind}", group)]
            for name, sub in parts:
                tables[name[:31]] = (  # Excel's sheet-name limit
                    sub.dropna(axis=1, how="all").sort_values("test_id", kind="stable")
                )
    if not tables:
        return None
    from harness._report.tables import write_workbook

    return write_workbook(tables, reports_dir / "mlp-lesion.xlsx")


_STUDY_FIGURES: dict[str, Callable[..., list[Path]]] = {
    "clustering": _clustering,
    "n_clusters": _n_clusters,
    "learning_curve": _learning_curve,
}


def write_study_figures(
    rows_by_study: Mapping[str, Sequence[Mapping[str, Any]]], reports_dir: str | Path
) -> list[Path]:
    """Draw the summary figures of every study present in ``rows_by_study``.

    Files go to ``figures/<study>/summary__<name>.png|svg`` (see :func:`figure_stem`).
    """
    reports_dir = Path(reports_dir)
    frames = {study: pd.DataFrame(list(rows)) for study, rows in rows_by_study.items() if rows}
    paths: list[Path] = []
    workbook = _lesion_workbook(frames, reports_dir)
    if workbook is not None:
        paths.append(workbook)
    for study, df in sorted(frames.items()):
        if study in _STUDY_FIGURES:
            paths += _STUDY_FIGURES[study](df, reports_dir)
    return paths
