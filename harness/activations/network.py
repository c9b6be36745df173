"""Table M for one network: its units' activations, clustered and set against its weights.

:func:`activation_test` records a torch network's hidden units on a test set
(:mod:`harness.activations.record`), clusters their activation graph against the
edge-shuffle null and compares with the weight graph of the same units
(:mod:`harness.activations.analysis`). The weight graph is Table M's: an MLP's
hidden->hidden matrices (``weights[1:-1]``, the hidden units only), a CNN's conv->conv
filter graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.activations.analysis import (
    ClusterComparison,
    activation_clusterability,
    compare_clusterings,
)
from harness.activations.correlation import activation_graph
from harness.activations.record import UnitActivations, as_module, record_activations
from harness.cluster import ClusteringResult, cluster_weights
from harness.options import check_choice
from harness.seeding import derive_seed
from harness.spec import PAPER_K
from harness.stats import ClusterabilityResult

__all__ = [
    "ActivationResult",
    "activation_test",
    "compare_with_weights",
    "dataset_inputs",
    "weight_graph_for_activations",
]


@dataclass(frozen=True)
class ActivationResult:
    """Table M for one network: weight clusters, activation clusters, and their comparison.

    Attributes
    ----------
    activation : ClusterabilityResult
        The activation graph's clustering against the edge-shuffle null; labels over the
        units with spread (``units_mask``).
    weights : ClusteringResult
        The weight graph's clustering (no null); labels over all units, -1 for isolated.
    comparison : ClusterComparison
    units_mask : ndarray of bool, shape (n_units,)
        Units with spread in their activations.
    layer_sizes : tuple of int
        Units per layer (hidden layers, or conv layers).
    n_examples : int
        Examples the activations were recorded on.
    """

    activation: ClusterabilityResult
    weights: ClusteringResult
    comparison: ClusterComparison
    units_mask: np.ndarray = field(repr=False, compare=False)
    layer_sizes: tuple[int, ...]
    n_examples: int

    def to_row(self) -> dict[str, Any]:
        """One flat row of builtin scalars: ``weight_*``, ``act_*`` and the comparison."""
        act = self.activation.to_row()
        row: dict[str, Any] = {
            "n_clusters": int(self.activation.n_clusters),
            "method": act["method"],
            "seed": act["seed"],
            "weight_ncut": float(self.weights.ncut),
            "weight_n_removed": int((~self.weights.mask).sum()),
            "act_ncut": act["ncut"],
            "act_null": act["null"],
            "act_n_samples": act["n_samples"],
            "act_null_mean": act["null_mean"],
            "act_null_std": act["null_std"],
            "act_z": act["z"],
            "act_p": act["p"],
            "act_is_sig": act["is_sig"],
            "n_units": int(self.units_mask.size),
            "n_units_kept": int(self.units_mask.sum()),
            "n_examples": int(self.n_examples),
        }
        row.update(self.comparison.to_row())
        return row

    def __repr__(self) -> str:
        c = self.comparison
        return (
            f"ActivationResult(weight_ncut={self.weights.ncut:.4f}, act_ncut="
            f"{self.activation.ncut:.4f}, act_p={self.activation.pvalue:.4g}, act_z="
            f"{self.activation.z:.3g}, transfer_ncut={c.transfer_ncut:.4f}, nmi={c.nmi:.3f}, "
            f"nmi_p={c.nmi_p:.4g}, K={self.activation.n_clusters}, units="
            f"{int(self.units_mask.sum())}/{self.units_mask.size})"
        )

    def __str__(self) -> str:
        c, a = self.comparison, self.activation
        return "\n".join(
            [
                f"units     {int(self.units_mask.sum())} of {self.units_mask.size} with spread "
                f"(layers {'-'.join(map(str, self.layer_sizes))}), {self.n_examples} examples",
                f"weights   n-cut {self.weights.ncut:.4f} (K = {a.n_clusters})",
                f"activity  n-cut {a.ncut:.4f}; edge-shuffle null x {a.n_samples}: mean "
                f"{a.null_mean:.4f}, sd {a.null_std:.4f}; z = {a.z:.3f}, p = {a.pvalue:.4g}",
                f"verdict   {a.verdict}",
                f"compare   {c.n_common} common units: NMI {c.nmi:.4f} (permutation null mean "
                f"{c.nmi_null_mean:.4f}, z = {c.nmi_z:.2f}, p = {c.nmi_p:.4g}); transfer n-cut "
                f"{c.transfer_ncut:.4f}; mean r^2 within {c.intra_mean:.4f}, between "
                f"{c.inter_mean:.4f}",
            ]
        )


def weight_graph_for_activations(module: Any) -> list[np.ndarray]:
    """The weight graph whose nodes are the recorded units (Table M's).

    An MLP's hidden->hidden matrices (``weights[1:-1]``: its hidden units only; 1,024 nodes
    for the paper's 784-256x4-10); a CNN's conv->conv filter graph (one node per filter).
    """
    from torch import nn

    from harness.model_kernels import module_filter_graph
    from harness.models import weight_matrices

    if any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return module_filter_graph(module)
    mats = weight_matrices(module)
    if len(mats) < 3:
        raise ValueError(
            f"the MLP has {len(mats)} Linear layers; the hidden-unit weight graph needs at "
            "least 3 (two hidden layers)"
        )
    return mats[1:-1]


def compare_with_weights(
    units: UnitActivations,
    adjacency: np.ndarray,
    activation: ClusterabilityResult,
    weights: ClusteringResult,
    *,
    n_samples: int,
    seed: int,
) -> ClusterComparison:
    """:func:`compare_clusterings` on the units kept in both the activation and weight graphs."""
    if weights.mask.size != units.n_units:
        raise ValueError(
            f"the weight graph has {weights.mask.size} nodes but {units.n_units} units were "
            "recorded; they must be the same units"
        )
    kept = np.flatnonzero(units.mask)  # activation graph row -> unit
    common_rows = np.flatnonzero(weights.mask[kept])
    return compare_clusterings(
        adjacency[np.ix_(common_rows, common_rows)],
        activation.labels[common_rows],
        weights.labels[kept[common_rows]],
        n_samples=n_samples,
        seed=seed,
    )


def dataset_inputs(module: Any, dataset: str, *, n_examples: int | None = None) -> Any:
    """The test split of a :mod:`harness.data` dataset, shaped for ``module``'s forward.

    Flat vectors for an MLP (checked against its first layer's inputs), images
    ``(N, C, H, W)`` for a network with conv layers; the first ``n_examples`` examples.
    """
    from torch import nn

    from harness.data import DATASETS, as_torch, load_dataset

    check_choice("dataset", dataset, tuple(DATASETS))
    conv = any(isinstance(m, nn.Conv2d) for m in module.modules())
    x, _ = as_torch(load_dataset(dataset), "test", flatten=not conv, subset=n_examples)
    if not conv:
        first = next(m for m in module.modules() if isinstance(m, nn.Linear))
        if first.in_features != x.shape[1]:
            raise ValueError(
                f"the network takes {first.in_features} inputs but {dataset!r} has "
                f"{x.shape[1]} features per example"
            )
    return x


def activation_test(
    network: Any,
    inputs: Any,
    n_clusters: int = PAPER_K,
    *,
    n_examples: int | None = None,
    n_samples: int = 100,
    seed: int = 0,
    method: str = "fast",
    n_workers: int | None = None,
    progress: bool | None = None,
    units: UnitActivations | None = None,
) -> ActivationResult:
    """Table M for one network: activation clusters, weight clusters, and how they agree.

    Parameters
    ----------
    network : torch.nn.Module, weight matrices, .npz or state dict path
        See :func:`harness.activations.as_module`.
    inputs : torch.Tensor, ndarray of shape (n_examples, ...), or str
        The test set, as the network's forward takes it, or the name of a dataset of
        :mod:`harness.data` (``"mnist"``, ``"fashion"``, ...): its test split.
    n_clusters : int, default=PAPER_K
    n_examples : int, optional
        Use only the first ``n_examples`` inputs.
    n_samples : int, default=100
        Edge-shuffle null samples and NMI permutations (the paper: 100 each).
    seed : int, default=0
    method : {"fast", "reference", "fast_ncut"}
    n_workers : int, optional
    progress : bool, optional
    units : UnitActivations, optional
        Activations already recorded (from a cache); ``inputs`` is then not used.

    Returns
    -------
    ActivationResult
    """
    module = as_module(network)
    if units is None:
        if isinstance(inputs, str):
            inputs = dataset_inputs(module, inputs, n_examples=n_examples)
        elif n_examples is not None:
            inputs = inputs[: int(n_examples)]
        units = record_activations(module, inputs)
    adjacency = activation_graph(units.values)
    activation = activation_clusterability(
        adjacency,
        n_clusters,
        n_samples=n_samples,
        seed=seed,
        method=method,
        n_workers=n_workers,
        progress=progress,
    )
    weights = cluster_weights(
        weight_graph_for_activations(module),
        n_clusters,
        method=method,
        seed=derive_seed(seed, "weights"),
    )
    comparison = compare_with_weights(
        units, adjacency, activation, weights, n_samples=n_samples, seed=seed
    )
    return ActivationResult(
        activation=activation,
        weights=weights,
        comparison=comparison,
        units_mask=units.mask,
        layer_sizes=units.layer_sizes,
        n_examples=units.n_examples,
    )
