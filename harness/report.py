"""Result tables, figures and the browsable report of a run.

Everything lands in one reports folder (``reports/`` by default; see ``reports/README.md``)::

    <study>.csv / <study>.md      one table per experiment module (full precision / rounded)
    claims.csv / claims.md        every research claim with its verdict, failing claims first
    figures/<study>/*.png|svg     figures, named by figure_stem(reports_dir, study, test_id, name)
    run.json                      profile, seed, versions, wall time of the run
    index.html                    a static page showing all of the above

Who calls what:

- the pytest plugin, on the controller at session end: :func:`write_study_tables`,
  :func:`write_claims`, :func:`write_run_info` (or its own run.json) and :func:`build_index`;
- experiments, during a test: the ``plot_*`` functions with ``figure_stem(...)`` as the
  output stem (figures are written by whoever draws them; names are deterministic);
- analysis code and notebooks: :func:`study_frame`, :func:`aggregate`, :func:`write_workbook`;
- the CLI: ``python -m harness report [--reports-dir DIR] [--embed-images]`` rebuilds
  ``index.html`` from whatever the folder holds; ``python -m harness cluster FILE --plot OUT``
  uses :func:`plot_clustering`.

All files are written atomically (temporary file + ``os.replace``): a reader sees the old
file or the new one, never a partial one.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness._report._io import figure_stem, slug
    from harness._report.figures import (
        FORMATS,
        TAXONOMY_COLORS,
        cluster_colors,
        plot_clustered_network,
        plot_clustering,
        plot_dependency_graph,
        plot_double_lesion_heatmap,
        plot_factors_grid,
        plot_k_sensitivity,
        plot_learning_curve,
        plot_lesion_accuracy,
        plot_lesion_class_damage,
        plot_lesion_taxonomy,
        plot_null_distribution,
        plot_random_init,
        swarm_offsets,
    )
    from harness._report.page import build_index, read_run_info, write_run_info
    from harness._report.study_figures import write_study_figures
    from harness._report.tables import (
        AGG_STATS,
        CLAIM_COLUMNS,
        DEFAULT_AGG,
        IDENTITY_COLUMNS,
        METRIC_COLUMNS,
        VERDICTS,
        aggregate,
        column_order,
        format_number,
        is_timing_column,
        sort_claims,
        sort_rows,
        study_frame,
        verdict_counts,
        write_claims,
        write_study_tables,
        write_workbook,
    )

__all__ = [
    # tables
    "AGG_STATS",
    "CLAIM_COLUMNS",
    "DEFAULT_AGG",
    "IDENTITY_COLUMNS",
    "METRIC_COLUMNS",
    "VERDICTS",
    "aggregate",
    "column_order",
    "format_number",
    "is_timing_column",
    "sort_claims",
    "sort_rows",
    "study_frame",
    "verdict_counts",
    "write_claims",
    "write_study_tables",
    "write_workbook",
    "write_study_figures",
    # figures
    "FORMATS",
    "TAXONOMY_COLORS",
    "cluster_colors",
    "figure_stem",
    "plot_clustered_network",
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
    "slug",
    "swarm_offsets",
    # page
    "build_index",
    "read_run_info",
    "write_run_info",
    "plot_clusterability",
    # CLI
    "register_cli",
]


# pandas and matplotlib take a second or two to import; load them on first use so that
# ``python -m harness ...`` (which imports this module for its subcommand) starts quickly.
_LAZY_MODULES = {
    "harness._report._io": ("figure_stem", "slug"),
    "harness._report.figures": (
        "FORMATS",
        "TAXONOMY_COLORS",
        "cluster_colors",
        "plot_clustered_network",
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
    ),
    "harness._report.page": ("build_index", "read_run_info", "write_run_info"),
    "harness._report.study_figures": ("write_study_figures",),
    "harness._report.tables": (
        "AGG_STATS",
        "CLAIM_COLUMNS",
        "DEFAULT_AGG",
        "IDENTITY_COLUMNS",
        "METRIC_COLUMNS",
        "VERDICTS",
        "aggregate",
        "column_order",
        "format_number",
        "is_timing_column",
        "sort_claims",
        "sort_rows",
        "study_frame",
        "verdict_counts",
        "write_claims",
        "write_study_tables",
        "write_workbook",
    ),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def plot_clusterability(result: Any, weights: Any, path: str | Path) -> Path:
    """The clustered network of one clusterability result, to ``path`` (.png, .svg, .pdf).

    Used by ``python -m harness cluster FILE --plot OUT.png``: neurons by layer coloured by
    cluster (the input layer as an image of its labels), edge widths by |w|, and the n-cut,
    p-value and z-score in the title.
    """
    from harness._report.figures import plot_clustering

    title = f"K = {result.n_clusters}: n-cut {result.ncut:.3f}"
    if result.n_samples:
        title += f", p = {result.p:.3g}, z = {result.z:.2f} ({result.null} null, n = {result.n_samples})"
    return plot_clustering(weights, result.labels, path, title=title)


def _cli_report(args: argparse.Namespace) -> int:
    from harness._report.page import build_index, read_run_info

    reports_dir = Path(args.reports_dir)
    path = build_index(reports_dir, read_run_info(reports_dir), embed_images=args.embed_images)
    print(path)
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report``: rebuild ``index.html`` from a reports folder's CSVs, figures, run.json."""
    parser = subparsers.add_parser(
        "report",
        help="rebuild reports/index.html from the tables, figures and run.json of a run",
        description=(
            "Rebuild the static index.html of a reports folder from the files it holds "
            "(<study>.csv, claims.csv, figures/<study>/*, run.json). Open the page in any "
            "browser; it needs no server and no network."
        ),
    )
    parser.add_argument(
        "--reports-dir",
        default="reports",
        metavar="DIR",
        help="the reports folder (default: ./reports)",
    )
    parser.add_argument(
        "--embed-images",
        action="store_true",
        help="inline the figures as data URIs: one portable (larger) file",
    )
    parser.set_defaults(func=_cli_report)
