"""The normalised cut of a graph partition and its ``ave_in_out`` (reference 4.2).

For a partition of a weighted undirected graph into clusters ``c``, the normalised cut
(Shi & Malik 2000) is

    ``ncut = sum_c cut(c) / vol(c)``,  ``cut(c) = sum_{u in c, v not in c} A_uv``,
    ``vol(c) = sum_{u in c} deg(u)``,

without the factor 1/2 some authors use, so it lies in ``[0, K]`` for K clusters; lower means
more clusterable. Each volume gets ``EPS * mean degree`` added, a guard that is relative to the
graph's weights, so multiplying every edge by ``c > 0`` changes no n-cut.

:func:`ncut` scores one partition, :func:`ncut_batch` many partitions of one graph (the
k-means restarts of :mod:`harness.cluster`, or a null distribution's samples) with the graph's
degrees and edge list prepared once in an :class:`NcutScorer`.

References
----------
Shi, J. & Malik, J. (2000). Normalized cuts and image segmentation. IEEE TPAMI 22(8).
Filan, D., Casper, S., Hod, S., Wild, C., Critch, A. & Russell, S. (2021). Clusterability in
neural networks. arXiv:2103.03386.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "EPS",
    "NcutScorer",
    "as_adjacency",
    "ave_in_out",
    "ncut",
    "ncut_batch",
]

EPS = 1e-8
"""Relative guard in ``cut / (vol + EPS * mean degree)``: scale-free, and far below any
real cluster's volume (a cluster's volume is at least its nodes' degrees)."""


def as_adjacency(adjacency: Any) -> sp.csr_matrix:
    """Validate a square, symmetric, non-negative, finite adjacency; return float64 CSR.

    Parameters
    ----------
    adjacency : sparse matrix or ndarray of shape (n_nodes, n_nodes)

    Returns
    -------
    scipy.sparse.csr_matrix of float64, shape (n_nodes, n_nodes)
        Without explicit zeros (the caller's matrix is never modified).

    Raises
    ------
    ValueError
        If the matrix is not 2-D and square, is empty, or has NaN, infinite, negative or
        asymmetric entries.
    """
    if sp.issparse(adjacency):
        adj = sp.csr_matrix(adjacency, dtype=np.float64)
    else:
        arr = np.asarray(adjacency, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"adjacency must be a 2-D square matrix, got shape {arr.shape}")
        adj = sp.csr_matrix(arr)
    if adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {adj.shape}")
    if adj.shape[0] == 0:
        raise ValueError("adjacency is empty (0 nodes)")
    if (adj.data == 0).any():  # explicit zeros are not edges; never modify the caller's matrix
        adj = adj.copy()
        adj.eliminate_zeros()
    data = adj.data
    if not np.isfinite(data).all():
        raise ValueError("adjacency has NaN or infinite entries")
    if (data < 0).any():
        raise ValueError(
            "adjacency has negative entries; edge weights must be >= 0 (use |W| for weights)"
        )
    diff = adj - adj.T
    if diff.nnz and np.abs(diff.data).max() > 1e-10 * max(1.0, float(np.abs(data).max())):
        raise ValueError("adjacency is not symmetric; pass an undirected graph (A == A.T)")
    return adj


def _as_labels(labels: Any, n: int, *, batched: bool) -> np.ndarray:
    lab = np.asarray(labels)
    want_ndim = 2 if batched else 1
    if lab.ndim != want_ndim or lab.shape[-1] != n:
        shape = "(n_partitions, n_nodes)" if batched else "(n_nodes,)"
        raise ValueError(f"labels must have shape {shape} with n_nodes={n}, got {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.equal(np.mod(lab, 1), 0)):
            raise ValueError("labels must be integers (cluster ids, -1 for 'no cluster')")
        lab = lab.astype(np.int64)
    if lab.size and lab.min() < -1:
        raise ValueError("labels must be >= -1 (-1 marks nodes that belong to no cluster)")
    return lab.astype(np.int64, copy=False)


class NcutScorer:
    """Precomputed degrees and edge lists of one graph, to score many partitions fast.

    Parameters
    ----------
    adjacency : scipy.sparse.csr_matrix of shape (n, n)
        A validated graph (see :func:`as_adjacency`); :meth:`from_edges` builds one from an
        edge list instead.
    """

    def __init__(self, adjacency: sp.csr_matrix) -> None:
        self.n = adjacency.shape[0]
        self.degree = np.asarray(adjacency.sum(axis=1)).ravel()
        upper = sp.triu(adjacency, k=1, format="coo")
        self.rows = upper.row.astype(np.int64)
        self.cols = upper.col.astype(np.int64)
        self.data = upper.data
        diag = adjacency.diagonal()
        self.loop_nodes = np.flatnonzero(diag)
        self.loop_data = diag[self.loop_nodes]

    @classmethod
    def from_edges(
        cls, n: int, rows: np.ndarray, cols: np.ndarray, data: np.ndarray
    ) -> NcutScorer:
        """From each undirected edge listed once (no self loops, no duplicates)."""
        self = cls.__new__(cls)
        self.n = n
        self.degree = np.bincount(rows, weights=data, minlength=n) + np.bincount(
            cols, weights=data, minlength=n
        )
        self.rows, self.cols, self.data = rows, cols, data
        self.loop_nodes = np.zeros(0, dtype=np.int64)
        self.loop_data = np.zeros(0)
        return self

    def volumes(self, labels: np.ndarray) -> np.ndarray:
        """Volume of clusters ``0..max`` of one partition (shape (n,))."""
        return np.bincount(labels[labels >= 0], weights=self.degree[labels >= 0])

    def score(self, labels: np.ndarray, eps: float) -> np.ndarray:
        """n-cut of each row of ``labels`` (shape (B, n)); -1 entries are not clusters.

        ``eps`` is relative: each volume gets ``eps * mean(degree)`` added, so the n-cut of
        ``c * A`` equals the n-cut of ``A`` for every ``c > 0``.
        """
        positive = self.degree[self.degree > 0]
        eps = float(eps) * (float(positive.mean()) if positive.size else 0.0)
        n_rows = labels.shape[0]
        out = np.zeros(n_rows)
        if n_rows == 0 or labels.size == 0:
            return out
        n_bins = int(labels.max()) + 2  # bin 0 collects the -1 ("no cluster") nodes
        # Small integer labels make the per-edge gathers below several times faster than
        # int64 (the edge list of a large graph does not fit in cache); one partition at a
        # time for the same reason.
        dtype = np.uint8 if n_bins <= 255 else (np.uint16 if n_bins <= 65535 else np.int64)
        shifted = (labels + 1).astype(dtype)
        for b in range(n_rows):
            lab = shifted[b]
            counts = np.bincount(lab, minlength=n_bins)[1:]
            vol = np.bincount(lab, weights=self.degree, minlength=n_bins)[1:]
            lr = lab[self.rows]
            same = lr == lab[self.cols]
            within = 2.0 * np.bincount(lr[same], weights=self.data[same], minlength=n_bins)[1:]
            if self.loop_nodes.size:
                within += np.bincount(
                    lab[self.loop_nodes], weights=self.loop_data, minlength=n_bins
                )[1:]
            cut = np.maximum(vol - within, 0.0)  # rounding can leave -1e-16
            # A cluster of zero volume has zero cut: count it as 0, not 0/0, when eps == 0.
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where((counts > 0) & (cut > 0), cut / (vol + eps), 0.0)
            out[b] = terms.sum()
        return out


def ncut(adjacency: Any, labels: Any, *, eps: float = EPS) -> float:
    """Normalised cut of a partition: ``sum_c cut(c) / (vol(c) + eps * mean_degree)`` (ref. 4.2).

    Parameters
    ----------
    adjacency : sparse matrix or ndarray of shape (n_nodes, n_nodes)
        Symmetric, non-negative edge weights.
    labels : array-like of int, shape (n_nodes,)
        Cluster id per node; ``-1`` marks nodes that belong to no cluster.
    eps : float, default=1e-8
        Guards empty volumes, relative to the mean degree of the nodes of positive degree
        (the original added an absolute 1e-8, which made the n-cut depend on the weights'
        scale: all weights x 1e-10 turned 0.69 into 0.18). Scale-free: multiplying every
        edge by ``c > 0`` changes no n-cut.

    Returns
    -------
    float
        ``sum_c cut(c) / (vol(c) + eps * mean_degree)`` over the clusters present, with
        ``cut(c) = sum_{u in c, v not in c} A_uv`` and ``vol(c) = sum_{u in c} deg(u)``,
        ``deg(u) = sum_v A_uv``. No factor 1/2, so the range is [0, K] for K clusters.

    Notes
    -----
    Nodes labelled -1 are not clusters, but they stay in the graph: an edge from cluster c to
    a -1 node counts in ``cut(c)`` and in ``vol(c)``, as in the original (where the only such
    nodes are removed isolated ones, which have no edges, so it makes no difference there).
    Self loops count in the volume and never in the cut. A cluster of zero volume contributes
    0 (even with ``eps=0``).
    """
    adj = as_adjacency(adjacency)
    lab = _as_labels(labels, adj.shape[0], batched=False)
    return float(NcutScorer(adj).score(lab[None, :], eps)[0])


def ncut_batch(adjacency: Any, labels: Any, *, eps: float = EPS) -> np.ndarray:
    """n-cut of many partitions of one graph at once.

    Parameters
    ----------
    adjacency : sparse matrix or ndarray of shape (n_nodes, n_nodes)
    labels : array-like of int, shape (n_partitions, n_nodes)
    eps : float, default=1e-8

    Returns
    -------
    ndarray of shape (n_partitions,)
        ``ncut(adjacency, labels[i], eps=eps)`` for every i (see :func:`ncut`).
    """
    adj = as_adjacency(adjacency)
    lab = _as_labels(labels, adj.shape[0], batched=True)
    return NcutScorer(adj).score(lab, eps)


def ave_in_out(ncut_value: float, n_clusters: int) -> float:
    """``(1 - ncut/K) / (2 ncut/K)``, reported next to every n-cut (reference 4.2).

    If every cluster had the same ``cut/vol``, this would be the ratio of within-cluster to
    between-cluster edge weight. ``inf`` for an n-cut of 0.
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    x = float(ncut_value) / n_clusters
    if x == 0.0:
        return math.inf
    return (1.0 - x) / (2.0 * x)

