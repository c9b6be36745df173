"""Clustering units by their activations, and comparing with the weight clusters (reference §7.1).

Three steps, each a pure function of arrays:

1. :func:`activation_clusterability`: spectral clustering of the activation graph
   (:func:`harness.activations.activation_graph`, ``r^2`` of Spearman correlations) with K,
   against the *edge-shuffle* null: each sample permutes all upper-triangle entries of the
   graph (every unit pair, not per layer, as the original), symmetrises and clusters it.
   Sample ``i`` draws from ``stream(derive_seed(seed, "null", "edge"), i)`` (shuffle: its
   child 0, clustering: child 1), as :mod:`harness.nulls` does, so the null does not depend
   on the number of workers. p and z come from :mod:`harness.stats`.
2. :func:`compare_clusterings`: on the units kept in both graphs, the normalised mutual
   information (NMI) between activation and weight labels with a label-permutation null, the
   *transfer n-cut* (the activation graph cut by the weight labels), and the mean ``r^2``
   within and between weight clusters. The original's ``inter_mean`` indexed with an integer
   array (it read columns 0 and 1 only) and its ``entropy`` was taken of raw labels (§11
   item 8); neither is reproduced. The NMI is scikit-learn's, in [0, 1].
Both for a torch network and its test set: :func:`harness.activations.activation_test`
(:mod:`harness.activations.network`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from harness.cluster import cluster_graph
from harness.ncut import NcutScorer, ave_in_out, ncut
from harness.options import check_choice
from harness.progress import Progress
from harness.seeding import derive_seed, generator, stream
from harness.spec import METHODS, PAPER_K
from harness.stats import ClusterabilityResult, is_sig, pvalue, zscore
from harness.workers import iter_chunks, parallel_map, threads_per_process

__all__ = [
    "EDGE_NULL",
    "ClusterComparison",
    "activation_clusterability",
    "compare_clusterings",
    "edge_shuffle",
]

#: The name of the edge-shuffle null in results and seeds.
EDGE_NULL = "edge"
# Null samples of graphs below this many (pairs x samples) run in-process.
_MIN_PARALLEL_WORK = 20_000_000


def edge_shuffle(adjacency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The graph with its upper-triangle entries randomly permuted, symmetrised, diagonal 0.

    Keeps the multiset of edge weights; destroys any structure in where they sit.
    """
    n = adjacency.shape[0]
    iu = np.triu_indices(n, k=1)
    out = np.zeros_like(adjacency)
    out[iu] = rng.permutation(adjacency[iu])
    return out + out.T


def _check_graph(adjacency: Any) -> np.ndarray:
    adj = np.asarray(adjacency.toarray() if sp.issparse(adjacency) else adjacency, dtype=np.float64)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {adj.shape}")
    if not np.isfinite(adj).all() or (adj < 0).any():
        raise ValueError("adjacency must be finite and non-negative")
    return adj


def _cluster_dense(adj: np.ndarray, k: int, method: str, seed: Any) -> tuple[np.ndarray, float]:
    csr = sp.csr_matrix(adj)
    return cluster_graph(csr, k, method=method, seed=seed, scorer=NcutScorer(csr))


def _null_chunk(task: tuple[Any, ...]) -> list[float]:
    """Worker entry: the n-cuts of one chunk of edge-shuffle samples, single-threaded."""
    from threadpoolctl import threadpool_limits

    adj, k, method, items = task
    out = []
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ss in items:
            shuffled = edge_shuffle(adj, np.random.default_rng(stream(ss, 0)))
            out.append(_cluster_dense(shuffled, k, method, stream(ss, 1))[1])
    return out


def activation_clusterability(
    adjacency: Any,
    n_clusters: int = PAPER_K,
    *,
    n_samples: int = 100,
    seed: int = 0,
    method: str = "fast",
    n_workers: int | None = None,
    progress: bool | None = None,
) -> ClusterabilityResult:
    """Spectral clustering of an activation graph against its edge-shuffle null.

    Parameters
    ----------
    adjacency : array-like of shape (n_units, n_units)
        Symmetric, non-negative (:func:`harness.activations.activation_graph`).
    n_clusters : int, default=PAPER_K
    n_samples : int, default=100
        Edge-shuffle samples (the paper's 100).
    seed : int, default=0
        Seed of the graph's clustering; null sample ``i`` uses
        ``stream(derive_seed(seed, "null", "edge"), i)``.
    method : {"fast", "reference", "fast_ncut"}
    n_workers : int, optional
        Worker processes; the result does not depend on it.
    progress : bool, optional

    Returns
    -------
    ClusterabilityResult
        With ``null = "edge"``; ``labels`` over the graph's units.
    """
    check_choice("method", method, METHODS)
    adj = _check_graph(adjacency)
    n = adj.shape[0]
    if isinstance(n_clusters, bool) or int(n_clusters) != n_clusters or not 2 <= n_clusters < n:
        raise ValueError(f"n_clusters must be an integer in [2, {n - 1}], got {n_clusters!r}")
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, got {n_samples!r}")
    k, n_samples = int(n_clusters), int(n_samples)
    labels, value = _cluster_dense(adj, k, method, seed)
    base = derive_seed(seed, "null", EDGE_NULL)
    seeds = [stream(base, i) for i in range(n_samples)]
    if n_workers is None:
        small = n * n // 2 * n_samples < _MIN_PARALLEL_WORK
        n_workers = 1 if small else threads_per_process()
    n_workers = max(1, min(int(n_workers), max(n_samples, 1)))
    n_chunks = min(n_samples, n_workers * 4 if n_workers > 1 else 10)
    tasks = (
        [(adj, k, method, chunk) for chunk in iter_chunks(seeds, n_chunks) if chunk]
        if seeds
        else []
    )
    with Progress(n_samples, "edge-shuffle null samples", enabled=progress) as bar:
        chunks = parallel_map(
            _null_chunk, tasks, n_workers=n_workers, on_result=lambda c: bar.update(len(c))
        )
    null = np.array([v for c in chunks for v in c], dtype=np.float64)
    return ClusterabilityResult.from_null(
        ncut=value,
        ave_in_out=ave_in_out(value, k),
        labels=labels,
        n_clusters=k,
        method=method,
        null=EDGE_NULL,
        seed=int(seed),
        null_distribution=null,
    )


# ----------------------------------------------------------------------------------------------
# comparison with the weight clusters


@dataclass(frozen=True)
class ClusterComparison:
    """Activation clusters against weight clusters on the units both kept (reference §7.1).

    Attributes
    ----------
    nmi : float
        Normalised mutual information of the two labelings, in [0, 1].
    nmi_null : ndarray of float, shape (n_samples,)
        NMI of the activation labels with random permutations of the weight labels.
    nmi_null_mean, nmi_null_std, nmi_z : float
    nmi_p : float
        Right-sided: small when the NMI is above chance.
    nmi_p_left : float
        Left-sided, the paper's "NMI p" (about 1 when the NMI is above chance).
    transfer_ncut : float
        n-cut of the activation graph under the weight labels.
    intra_mean, inter_mean : float
        Mean ``r^2`` over pairs of distinct units in the same weight cluster, and in
        different weight clusters.
    n_common : int
        Units kept in both graphs.
    n_weight_clusters, n_activation_clusters : int
        Clusters present among the common units. A weight cluster made only of units
        without activity (dead units of a pruned network) is absent, and the transfer
        n-cut then sums over fewer than K clusters.
    """

    nmi: float
    nmi_null: np.ndarray = field(repr=False, compare=False)
    nmi_null_mean: float
    nmi_null_std: float
    nmi_z: float
    nmi_p: float
    nmi_p_left: float
    nmi_is_sig: bool
    transfer_ncut: float
    intra_mean: float
    inter_mean: float
    n_common: int
    n_weight_clusters: int
    n_activation_clusters: int

    def to_row(self) -> dict[str, Any]:
        return {
            "nmi": float(self.nmi),
            "nmi_null_mean": float(self.nmi_null_mean),
            "nmi_null_std": float(self.nmi_null_std),
            "nmi_z": float(self.nmi_z),
            "nmi_p": float(self.nmi_p),
            "nmi_p_left": float(self.nmi_p_left),
            "nmi_is_sig": bool(self.nmi_is_sig),
            "transfer_ncut": float(self.transfer_ncut),
            "intra_mean": float(self.intra_mean),
            "inter_mean": float(self.inter_mean),
            "n_common": int(self.n_common),
            "n_weight_clusters": int(self.n_weight_clusters),
            "n_activation_clusters": int(self.n_activation_clusters),
        }


def _within_between(adj: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean edge weight over distinct pairs in the same cluster, and in different ones."""
    _, inv = np.unique(labels, return_inverse=True)
    onehot = np.zeros((labels.size, inv.max() + 1))
    onehot[np.arange(labels.size), inv] = 1.0
    block = onehot.T @ adj @ onehot  # summed weights between every pair of clusters
    sizes = onehot.sum(axis=0)
    within_pairs = float((sizes * (sizes - 1)).sum())
    between_pairs = float(labels.size**2 - (sizes**2).sum())
    within = float(np.trace(block)) - float(np.trace(adj))
    between = float(block.sum() - np.trace(block))
    return (
        within / within_pairs if within_pairs else math.nan,
        between / between_pairs if between_pairs else math.nan,
    )


def compare_clusterings(
    adjacency: Any,
    activation_labels: Any,
    weight_labels: Any,
    *,
    n_samples: int = 100,
    seed: int = 0,
) -> ClusterComparison:
    """Compare two clusterings of the same units (rows of ``adjacency``).

    Parameters
    ----------
    adjacency : array-like of shape (n, n)
        The activation graph of the common units.
    activation_labels, weight_labels : array-like of int, shape (n,)
    n_samples : int, default=100
        Permutations of the weight labels for the NMI null; sample ``i`` uses
        ``generator(derive_seed(seed, "null", "nmi"), i)``.
    seed : int, default=0

    Returns
    -------
    ClusterComparison
    """
    from sklearn.metrics import normalized_mutual_info_score as nmi_score

    adj = _check_graph(adjacency)
    a = np.asarray(activation_labels).ravel()
    w = np.asarray(weight_labels).ravel()
    if not a.size == w.size == adj.shape[0]:
        raise ValueError(
            f"labels of {a.size} and {w.size} units for a graph of {adj.shape[0]} units"
        )
    if a.size < 2:
        raise ValueError("need at least 2 common units to compare clusterings")
    nmi = float(nmi_score(a, w))
    base = derive_seed(seed, "null", "nmi")
    null = np.array(
        [nmi_score(a, generator(base, i).permutation(w)) for i in range(int(n_samples))],
        dtype=np.float64,
    )
    if null.size:
        p_right, p_left = pvalue(nmi, null, side="right"), pvalue(nmi, null, side="left")
        z, mean, sd = zscore(nmi, null), float(null.mean()), float(null.std())
        sig = is_sig(p_right, null.size) and not math.isnan(z)
    else:
        p_right = p_left = z = mean = sd = math.nan
        sig = False
    intra, inter = _within_between(adj, w)
    return ClusterComparison(
        nmi=nmi,
        nmi_null=null,
        nmi_null_mean=mean,
        nmi_null_std=sd,
        nmi_z=float(z),
        nmi_p=float(p_right),
        nmi_p_left=float(p_left),
        nmi_is_sig=bool(sig),
        transfer_ncut=float(ncut(adj, w)),
        intra_mean=intra,
        inter_mean=inter,
        n_common=int(a.size),
        n_weight_clusters=int(np.unique(w).size),
        n_activation_clusters=int(np.unique(a).size),
    )
