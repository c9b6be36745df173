"""Result tables, figures and the browsable report of a run.

Everything lands in one reports folder (``reports/`` by default; see ``reports/README.md``)::

    <study>.csv / <study>.md      one table per experiment module (full precision / rounded)
    claims.csv / claims.md        every claim of the registry (and ad-hoc ones) with its verdict
    fidelity.csv / fidelity.md    per paper table: cells run and reproduced, claims that hold
    drift.md                      what changed against a baseline run (same profile and seed)
    figures/<study>/*.png|svg     figures, named by figure_stem(reports_dir, study, test_id, name)
    run.json                      profile, seed, versions, wall time of the run
    index.html                    a static page showing all of the above

Who calls what:

- the pytest plugin, on the controller at session end: :func:`write_study_tables`,
  :func:`registry_claims` then :func:`write_claims` (or :func:`write_claims_registry`),
  :func:`write_summary_figures` (with each experiment module's ``summary_figures``),
  :func:`fidelity_table` / :func:`fidelity_cells` then :func:`write_fidelity`,
  :func:`write_run_info` (or its own run.json), with a baseline :func:`compare_runs` then
  :func:`write_drift`, and :func:`build_index` last;
- experiments, during a test: the ``plot_*`` functions with the ``figure`` fixture's stem
  (figures are written by whoever draws them; names are deterministic), and in their
  ``summary_figures(rows, stem)`` for the study-level figures;
- analysis code and notebooks: :func:`study_frame`, :func:`aggregate`, :func:`write_workbook`;
- the CLI: ``python -m harness report`` calls :func:`build_index` with :func:`read_run_info`;
  ``python -m harness cluster FILE --plot OUT`` calls :func:`plot_clusterability`.

Modules: :mod:`~harness.report.tables` (study and claims tables), :mod:`~harness.report.cells`
(cell values), :mod:`~harness.report.fidelity` (cells reproduced, claims held, per paper
table), :mod:`~harness.report.drift` (two runs compared), :mod:`~harness.report.aggregate`,
:mod:`~harness.report.workbook` (.xlsx), :mod:`~harness.report.page` (index.html),
:mod:`~harness.report.runinfo` (run.json), :mod:`~harness.report.naming` (file names),
:mod:`~harness.report.summaries` and the :mod:`~harness.report.figures` package (one module
per subject).

All files are written atomically (:mod:`harness.files`): a reader sees the old file or the
new one, never a partial one.
"""

from __future__ import annotations

from harness.report.aggregate import AGG_STATS, DEFAULT_AGG, aggregate
from harness.report.baseline import (
    BASELINE_FILE,
    Baseline,
    BaselineError,
    load_baseline,
    read_csv_strict,
)
from harness.report.cells import Row, format_number
from harness.report.csvfile import ReportFileError
from harness.report.drift import (
    DRIFT_FILE,
    DRIFT_METRICS,
    Drift,
    Flip,
    Move,
    Pooled,
    compare_runs,
    drift_failed,
    drift_line,
    read_drift_line,
    write_drift,
)
from harness.report.fidelity import (
    FIDELITY_COLUMNS,
    FIDELITY_FILE,
    PAPER_TABLES,
    PaperTable,
    fidelity_cells,
    fidelity_line,
    fidelity_table,
    read_fidelity,
    write_fidelity,
)
from harness.report.figures.activations import (
    plot_correlation_pictures,
    plot_correlation_pictures_file,
)
from harness.report.figures.clustering import (
    plot_factors_grid,
    plot_k_sensitivity,
    plot_learning_curve,
    plot_null_distribution,
    plot_random_init,
)
from harness.report.figures.common import FORMATS, PHASE_STYLE, cluster_colors, swarm_offsets
from harness.report.figures.features import plot_feature_images
from harness.report.figures.lesions import (
    TAXONOMY_COLORS,
    plot_dependency_graph,
    plot_double_lesion_heatmap,
    plot_lesion_accuracy,
    plot_lesion_class_damage,
    plot_lesion_taxonomy,
)
from harness.report.figures.networks import (
    plot_clusterability,
    plot_clustered_network,
    plot_clustering,
)
from harness.report.naming import FIGURES_DIR, SUMMARY_ID, check_name, figure_stem, slug
from harness.report.page import build_index
from harness.report.runinfo import read_run_info, write_run_info
from harness.report.summaries import SummaryFigures, summary_stem, write_summary_figures
from harness.report.tables import (
    CLAIM_COLUMNS,
    IDENTITY_COLUMNS,
    METRIC_COLUMNS,
    RUN_TABLES,
    VERDICTS,
    column_order,
    csv_text,
    is_timing_column,
    markdown_table,
    registry_claims,
    sort_claims,
    sort_rows,
    study_csvs,
    study_frame,
    verdict_counts,
    write_claims,
    write_claims_registry,
    write_study_tables,
)
from harness.report.workbook import split_frame, write_workbook

__all__ = [
    # tables
    "AGG_STATS",
    "CLAIM_COLUMNS",
    "DEFAULT_AGG",
    "IDENTITY_COLUMNS",
    "METRIC_COLUMNS",
    "RUN_TABLES",
    "VERDICTS",
    "Row",
    "aggregate",
    "column_order",
    "csv_text",
    "format_number",
    "is_timing_column",
    "markdown_table",
    "registry_claims",
    "sort_claims",
    "sort_rows",
    "split_frame",
    "study_csvs",
    "study_frame",
    "verdict_counts",
    "write_claims",
    "write_claims_registry",
    "write_study_tables",
    "write_workbook",
    # fidelity to the paper
    "FIDELITY_COLUMNS",
    "FIDELITY_FILE",
    "PAPER_TABLES",
    "PaperTable",
    "fidelity_cells",
    "fidelity_line",
    "fidelity_table",
    "read_fidelity",
    "write_fidelity",
    # drift against a baseline run
    "DRIFT_FILE",
    "DRIFT_METRICS",
    "BASELINE_FILE",
    "Baseline",
    "BaselineError",
    "Pooled",
    "drift_failed",
    "load_baseline",
    "read_csv_strict",
    "ReportFileError",
    "Drift",
    "Flip",
    "Move",
    "compare_runs",
    "drift_line",
    "read_drift_line",
    "write_drift",
    # file names
    "FIGURES_DIR",
    "SUMMARY_ID",
    "check_name",
    "figure_stem",
    "slug",
    # figures
    "FORMATS",
    "PHASE_STYLE",
    "TAXONOMY_COLORS",
    "cluster_colors",
    "plot_clustered_network",
    "plot_clusterability",
    "plot_clustering",
    "plot_correlation_pictures",
    "plot_correlation_pictures_file",
    "plot_dependency_graph",
    "plot_double_lesion_heatmap",
    "plot_factors_grid",
    "plot_feature_images",
    "plot_k_sensitivity",
    "plot_learning_curve",
    "plot_lesion_accuracy",
    "plot_lesion_class_damage",
    "plot_lesion_taxonomy",
    "plot_null_distribution",
    "plot_random_init",
    "swarm_offsets",
    # study summaries
    "SummaryFigures",
    "summary_stem",
    "write_summary_figures",
    # page
    "build_index",
    "read_run_info",
    "write_run_info",
]
