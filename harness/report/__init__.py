"""Result tables, figures and the browsable report of a run.

Everything lands in one reports folder (``reports/`` by default; see ``reports/README.md``)::

    <study>.csv / <study>.md      one table per experiment module (full precision / rounded)
    claims.csv / claims.md        every research claim with its verdict, failing claims first
    figures/<study>/*.png|svg     figures, named by figure_stem(reports_dir, study, test_id, name)
    run.json                      profile, seed, versions, wall time of the run
    index.html                    a static page showing all of the above

Who calls what:

- the pytest plugin, on the controller at session end: :func:`write_study_tables`,
  :func:`write_claims`, :func:`write_summary_figures` (with each experiment module's
  ``summary_figures``), :func:`write_run_info` (or its own run.json) and :func:`build_index`;
- experiments, during a test: the ``plot_*`` functions with the ``figure`` fixture's stem
  (figures are written by whoever draws them; names are deterministic), and in their
  ``summary_figures(rows, stem)`` for the study-level figures;
- analysis code and notebooks: :func:`study_frame`, :func:`aggregate`, :func:`write_workbook`;
- the CLI: ``python -m harness report`` calls :func:`build_index` with :func:`read_run_info`;
  ``python -m harness cluster FILE --plot OUT`` calls :func:`plot_clusterability`.

Modules: :mod:`~harness.report.tables` (study and claims tables), :mod:`~harness.report.cells`
(cell values), :mod:`~harness.report.aggregate`, :mod:`~harness.report.workbook` (.xlsx),
:mod:`~harness.report.page` (index.html and run.json), :mod:`~harness.report.naming` (file
names), :mod:`~harness.report.summaries` and the :mod:`~harness.report.figures` package (one
module per subject).

All files are written atomically (:mod:`harness.files`): a reader sees the old file or the
new one, never a partial one.
"""

from __future__ import annotations

from harness.report.aggregate import AGG_STATS, DEFAULT_AGG, aggregate
from harness.report.cells import Row, format_number
from harness.report.figures.clustering import (
    plot_factors_grid,
    plot_k_sensitivity,
    plot_learning_curve,
    plot_null_distribution,
    plot_random_init,
)
from harness.report.figures.common import FORMATS, PHASE_STYLE, cluster_colors, swarm_offsets
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
from harness.report.page import build_index, read_run_info, write_run_info
from harness.report.summaries import SummaryFigures, summary_stem, write_summary_figures
from harness.report.tables import (
    CLAIM_COLUMNS,
    IDENTITY_COLUMNS,
    METRIC_COLUMNS,
    VERDICTS,
    column_order,
    is_timing_column,
    sort_claims,
    sort_rows,
    study_frame,
    verdict_counts,
    write_claims,
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
    "VERDICTS",
    "Row",
    "aggregate",
    "column_order",
    "format_number",
    "is_timing_column",
    "sort_claims",
    "sort_rows",
    "split_frame",
    "study_frame",
    "verdict_counts",
    "write_claims",
    "write_study_tables",
    "write_workbook",
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
    "plot_dependency_graph",
    "plot_double_lesion_heatmap",
    "plot_factors_grid",
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
