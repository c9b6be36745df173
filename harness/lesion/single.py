"""The single lesion test (§6.1-§6.5): every sub-cluster against random same-size lesions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

from harness.lesion.statistics import SingleLesionResult
from harness.lesion.sweep import LesionOptions, lesion_sweep

if TYPE_CHECKING:  # pragma: no cover - typing only
    from typing import Unpack

    import torch
    from torch import nn

__all__ = ["single_lesion_test"]


def single_lesion_test(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    x_test: ArrayLike | torch.Tensor,
    y_test: ArrayLike | torch.Tensor,
    **options: Unpack[LesionOptions],
) -> SingleLesionResult:
    """Lesion every sub-cluster and compare with random same-size lesions (§6.1–§6.5).

    Random trial ``r`` of sub-cluster (l, c) draws from
    ``SeedSequence(seed, spawn_key=(r, 0, l, c))``.

    Parameters
    ----------
    model, labels, layer_sizes, x_test, y_test
        The network, its clustering and a test set. For an MLP: the labels of its weight
        graph over all units and all layer widths. For a conv network (``SmallCNN``,
        ``VGG``): the labels of its filter graph and the filter counts of its conv layers,
        i.e. ``ClusteringResult.labels`` and ``.layer_sizes`` of
        ``cluster_weights(module_filter_graph(model), K)``, and images ``x_test`` of shape
        (N, C, H, W); sub-clusters are then groups of filters of one conv layer (§3.3).
    **options
        Keyword options of :func:`~harness.lesion.sweep.lesion_sweep` (:class:`LesionOptions`),
        e.g. ``n_trials``, ``seed``, ``method`` ("fast" or "reference"), ``ablation``
        ("output" or "kernel": how a batch norm after a filter is treated, VGG).

    Examples
    --------
    >>> clustering = cluster_weights(module_filter_graph(cnn), 12, seed=0)  # doctest: +SKIP
    >>> result = single_lesion_test(  # doctest: +SKIP
    ...     cnn, clustering.labels, clustering.layer_sizes, x_test, y_test, n_trials=20, seed=0
    ... )

    Returns
    -------
    SingleLesionResult
    """
    return lesion_sweep(model, labels, layer_sizes, x_test, y_test, **options).single
