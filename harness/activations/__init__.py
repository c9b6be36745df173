"""Activation clustering and correlation pictures (reference §7.1-7.2, the paper's Table M).

* :func:`record_activations`: hidden-unit activations of a torch network on a dataset;
* :func:`activation_graph`: ``r^2`` of the units' Spearman correlations;
* :func:`activation_clusterability`: its spectral clustering against an edge-shuffle null;
* :func:`compare_clusterings`: NMI (with a permutation null), transfer n-cut, mean ``r^2``
  within and between weight clusters;
* :func:`activation_test`: all of it for one network and its test set;
* :func:`correlation_pictures`: what each weight cluster responds to, against random units.
"""

from __future__ import annotations

from harness.activations.analysis import (
    EDGE_NULL,
    ClusterComparison,
    activation_clusterability,
    compare_clusterings,
    edge_shuffle,
)
from harness.activations.correlation import (
    activation_graph,
    rank_rows,
    spearman_between,
    spearman_matrix,
)
from harness.activations.network import (
    ActivationResult,
    activation_test,
    compare_with_weights,
    dataset_inputs,
    weight_graph_for_activations,
)
from harness.activations.pictures import (
    ClusterPicture,
    CorrelationPictures,
    align_signs,
    correlation_pictures,
    unit_weight_labels,
)
from harness.activations.record import UnitActivations, as_module, record_activations

__all__ = [
    "EDGE_NULL",
    "ActivationResult",
    "ClusterComparison",
    "ClusterPicture",
    "CorrelationPictures",
    "UnitActivations",
    "activation_clusterability",
    "activation_graph",
    "activation_test",
    "align_signs",
    "as_module",
    "compare_clusterings",
    "compare_with_weights",
    "correlation_pictures",
    "edge_shuffle",
    "rank_rows",
    "record_activations",
    "spearman_between",
    "spearman_matrix",
    "dataset_inputs",
    "unit_weight_labels",
    "weight_graph_for_activations",
]
