"""Lesion tests: silence clusters of units and compare the damage with random same-size lesions.

Re-implements the lesion tests of Filan et al. 2021, "Clusterability in Neural Networks"
(arXiv:2103.03386), as described in §6 of the method reference: every *sub-cluster* (the
units of one hidden layer that share a spectral-clustering label) is lesioned by zeroing its
incoming weights and biases, and the damage is compared with lesions of random sets of the
same size drawn from the same layer.

The same calls serve MLPs and conv networks (``harness.models.SmallCNN``, ``VGG``). For a
conv network the units are the filters of its conv layers (§3.3) and the labels come from
clustering its filter graph::

    from harness.cluster import cluster_weights
    from harness.model_kernels import module_filter_graph
    from harness.lesion import single_lesion_test

    clustering = cluster_weights(module_filter_graph(cnn), 12, seed=seed)
    result = single_lesion_test(
        cnn, clustering.labels, clustering.layer_sizes, x_test, y_test,  # x: (N, C, H, W)
        n_trials=20, seed=seed,
    )

Sub-cluster ``(l, c)`` is then the filters of conv layer ``l`` (1..n_conv) with label ``c``.
A batch norm after a filter (the VGG) is silenced with it by default (``ablation="output"``);
``ablation="kernel"`` zeroes kernel and bias only, as the paper's code
(:mod:`~harness.lesion.ablation`).

Building blocks, from low to high level, one module each:

* :mod:`~harness.lesion.units`: :func:`sub_clusters`, :func:`layer_pool`,
  :func:`random_units`: which units to lesion, and random same-size sets (§6.1, §6.4).
* :mod:`~harness.lesion.ablation`: :func:`lesioned`, a context manager that zeroes the
  incoming weights and biases of units (the filters of conv layers) and restores the exact
  original tensors on exit (§6.2).
* :mod:`~harness.lesion.evaluation`: :func:`evaluate_lesions` evaluates many lesions on a test
  set (§6.3), either one at a time with :func:`lesioned` (``method="reference"``) or batched
  (``method="fast"``: :mod:`~harness.lesion.fast` for MLPs, :mod:`~harness.lesion.fast_conv`
  for conv networks, each explaining why it is exact).
* :mod:`~harness.lesion.statistics`: :func:`taxonomy`, :func:`single_lesion_statistics`: the
  statistics of §6.5.
* :mod:`~harness.lesion.single`, :mod:`~harness.lesion.double`: :func:`single_lesion_test`,
  :func:`double_lesion_test`, the whole tests (§6.5, §6.6): thin wrappers around one
  sweep (:mod:`~harness.lesion.sweep`). :mod:`~harness.lesion.specs` holds the lesion
  specifications and the batches they are evaluated in.

Deviations from the original code (§11 of the reference) are described where they happen:
reproducible random draws (:mod:`~harness.lesion.sweep`), disjoint same-layer members of a
joint double lesion (:mod:`~harness.lesion.double`), the regression direction and undefined
range statistics (:mod:`~harness.lesion.statistics`).
"""

from __future__ import annotations

from harness.lesion.ablation import ABLATIONS, lesioned
from harness.lesion.double import DoubleLesionResult, PairLesion, double_lesion_test
from harness.lesion.evaluation import (
    LesionEvaluation,
    evaluate_lesions,
    poly_coefficients,
    term_outcomes,
)
from harness.lesion.single import single_lesion_test
from harness.lesion.statistics import (
    SingleLesionResult,
    SubClusterLesion,
    single_lesion_statistics,
    taxonomy,
)
from harness.lesion.sweep import label_layout
from harness.lesion.units import SubCluster, layer_pool, random_units, sub_clusters

__all__ = [
    "ABLATIONS",
    "DoubleLesionResult",
    "LesionEvaluation",
    "PairLesion",
    "SingleLesionResult",
    "SubCluster",
    "SubClusterLesion",
    "double_lesion_test",
    "evaluate_lesions",
    "label_layout",
    "layer_pool",
    "lesioned",
    "poly_coefficients",
    "random_units",
    "single_lesion_statistics",
    "single_lesion_test",
    "sub_clusters",
    "taxonomy",
    "term_outcomes",
]
