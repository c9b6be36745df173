"""Figures of the clusterability experiments, by subject (matplotlib, object-oriented API only).

- :mod:`~harness.report.figures.clustering`: one network's n-cut against its nulls, the
  factors grid, significance against K;
- :mod:`~harness.report.figures.training`: random init against trained, learning curves;
- :mod:`~harness.report.figures.lesions`: single and double lesions, taxonomy, dependencies;
- :mod:`~harness.report.figures.networks`: a clustered network drawn neuron by neuron;
- :mod:`~harness.report.figures.common`: formats, style, colours and saving shared by all.

Every ``plot_*`` function takes plain arrays or DataFrames and an output path stem (no
extension), writes one file per requested format (PNG and SVG by default) atomically and
returns the paths; the same inputs give byte-identical files. The functions know column
names and the paper's vocabulary (phases, null models, lesion taxonomy), never study names,
model tags or numbers of clusters: those come from the experiment that calls them.
"""

from __future__ import annotations

from harness.report.figures.clustering import (
    plot_factors_grid,
    plot_k_sensitivity,
    plot_null_distribution,
)
from harness.report.figures.common import (
    FORMATS,
    PHASE_STYLE,
    cluster_colors,
    swarm_offsets,
)
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
from harness.report.figures.training import plot_learning_curve, plot_random_init

__all__ = [
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
]
