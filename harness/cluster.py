"""Spectral clustering of weight graphs, scored by the normalised cut (reference sections 4.1-4.3).

The n-cut itself is :mod:`harness.ncut`; the k-means that turns an embedding into labels is
:mod:`harness.kmeans`. Both are re-exported here.

Three methods, chosen by ``method=``; the first two are the same estimator (the paper's):

``"reference"``
    Exactly what the original code ran: scikit-learn ``SpectralClustering(n_clusters=K,
    affinity="precomputed", eigen_solver="arpack", assign_labels="kmeans", n_init=n_init)``
    with ``n_init`` 25, or 100 above 2000 nodes. Its embedding is the K eigenvectors of the
    normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` with the smallest eigenvalues, found by
    ARPACK in shift-invert mode (a sparse LU factorisation of L), each divided by
    ``sqrt(degree)`` (the relaxed Ncut solution ``u = D^-1/2 x``, Shi & Malik 2000; von
    Luxburg 2007), and the labels are those of the k-means restart with the lowest inertia.
    The original ran scikit-learn 0.20 (shift-invert about 1 on ``-L``; current versions
    shift about ``-1e-5`` on ``L``): the same eigenvectors, but random streams differ, so
    single n-cuts match the paper's only in distribution (e.g. random-init MLPs, Table I).

``"fast"`` (default)
    The same relaxation, the same k-means and the same restart rule (the lowest inertia of
    25 restarts, 100 above 2000 nodes), computed more cheaply:

    1. Embedding (:mod:`harness.embedding`). The K smallest eigenvalues of L are the K
       largest eigenvalues of ``M = D^-1/2 A D^-1/2``; a network graph is bipartite, so they
       are the top singular values of its off-diagonal block, computed from the smaller Gram
       matrix with ARPACK (relative tolerance ``1e-4``) or a dense ``eigh``. As in
       scikit-learn the trivial eigenvector is kept, vectors are divided by
       ``sqrt(degree)`` and given deterministic signs.
    2. k-means. All ``n_init`` restarts run at once in numpy
       (:func:`harness.kmeans.batched_kmeans`): k-means++ seeding as scikit-learn's,
       vectorised over restarts, then Lloyd iterations in float32 with scikit-learn's
       stopping rule plus one more (a restart also stops once at most 0.1% of the nodes
       change cluster in an iteration). Nearest centres come from a reduction over blocks
       of distances that stay in cache rather than from ``argmin``, with the same result.
    3. Selection. The restart with the lowest inertia (:func:`harness.kmeans.inertia_batch`,
       in float64), the first on ties, as scikit-learn.

``"fast_ncut"``
    A different estimator, kept by name: the fast embedding and k-means with 8 restarts,
    of which the one with the lowest *n-cut* is kept (restarts with an empty cluster only win
    if all have one). It finds partitions 0.5-1.2% lower than the paper's estimator, on the
    true network and its shuffles alike; the first version of the harness used it as
    ``"fast"`` and put its n-cuts next to the paper's (random-init MLP 10.23 against 10.295).

The speed of ``fast`` against ``reference`` is measured by ``python -m bench nulls`` (one
thread per process, as in a null-sampling worker; methods interleaved sample by sample, same
shuffles for both), on three graphs: 784-256x4-10 pruned to 90% (a), unpruned (b), and
784-2048x4-10 pruned (c). See the README for the figures of the latest run.

References
----------
Shi, J. & Malik, J. (2000). Normalized cuts and image segmentation. IEEE TPAMI 22(8).
von Luxburg, U. (2007). A tutorial on spectral clustering. Statistics and Computing 17(4).
Filan, D., Casper, S., Hod, S., Wild, C., Critch, A. & Russell, S. (2021). Clusterability in
neural networks. arXiv:2103.03386.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph

from harness.embedding import check_k, embed_graph, spectral_embedding
from harness.graph import ISOLATION_RTOL, expand_labels, kept_graph, layer_sizes, validate_weights
from harness.kmeans import batched_kmeans, inertia_batch
from harness.ncut import EPS, NcutScorer, as_adjacency, ave_in_out, ncut, ncut_batch
from harness.options import check_choice
from harness.seeding import SEED_MODULUS, SeedLike, stream_seed
from harness.spec import METHODS, AnalysisSpec, check_n_clusters

__all__ = [
    "METHODS",
    "ClusteringResult",
    "DisconnectedGraphWarning",
    "NegligibleClusterWarning",
    "NetworkGraph",
    "cluster_graph",
    "cluster_network",
    "network_graph",
    "ave_in_out",
    "batched_kmeans",
    "cluster_weights",
    "default_n_init",
    "ncut",
    "ncut_batch",
    "spectral_clustering",
    "spectral_embedding",
]

_NCUT_SELECT_N_INIT = 8  # restarts of "fast_ncut", which ranks them by the objective


class DisconnectedGraphWarning(UserWarning):
    """The graph has more than one connected component; spectral clustering may split it
    along the components rather than into balanced clusters."""


class NegligibleClusterWarning(UserWarning):
    """A cluster of the chosen partition has next to no volume (its cut/vol term is
    meaningless): nearly isolated neurons that the isolation rule did not remove."""


# --------------------------------------------------------------------------------------
# spectral clustering
# --------------------------------------------------------------------------------------


def default_n_init(n_nodes: int, method: str = "reference") -> int:
    """k-means restarts when ``n_init`` is None: 25, or 100 above 2000 nodes (the original's
    rule, for "reference" and "fast" alike); 8 for "fast_ncut"."""
    _check_method(method)
    if method == "fast_ncut":
        return _NCUT_SELECT_N_INIT
    return 100 if n_nodes > 2000 else 25


def _check_method(method: str) -> None:
    check_choice("method", method, METHODS)


def _check_k_against_network(n_clusters: int, n_kept: int, what: str) -> None:
    """K must be below the number of clustered neurons: K = n puts every neuron in a cluster
    of its own, a partition with nothing left to find (and whose shuffles all tie with it)."""
    if n_clusters >= n_kept:
        raise ValueError(
            f"n_clusters={n_clusters} is not below the {n_kept} non-isolated neurons of "
            f"{what}; use at most {n_kept - 1} clusters"
        )


def _warn_if_disconnected(adj: sp.csr_matrix, stacklevel: int = 3) -> int:
    n_comp, _ = csgraph.connected_components(adj, directed=False)
    if n_comp > 1:
        warnings.warn(
            f"the graph has {n_comp} connected components; spectral clustering may just "
            "separate the components (remove isolated parts or expect low n-cuts)",
            DisconnectedGraphWarning,
            stacklevel=stacklevel,
        )
    return int(n_comp)


def _int_seed(seed: SeedLike) -> int | None:
    """An int for scikit-learn's random_state (which must lie in ``[0, 2**32)``) from any seed.

    Seeds in range pass unchanged; a larger one is mapped by the harness's one rule
    (:func:`harness.seeding.stream_seed`), so any seed the rest of the harness accepts works.
    """
    if seed is None:
        return None
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(SEED_MODULUS - 1))
    if isinstance(seed, np.random.SeedSequence):
        return stream_seed(seed)
    value = int(seed)
    return value if value < SEED_MODULUS else stream_seed(value)


def spectral_clustering(
    adjacency: Any,
    n_clusters: int,
    *,
    method: str = "fast",
    n_init: int | None = None,
    seed: SeedLike = None,
) -> np.ndarray:
    """Cluster a graph's nodes by spectral clustering (normalised-cut relaxation).

    Parameters
    ----------
    adjacency : sparse matrix or ndarray of shape (n_nodes, n_nodes)
        Symmetric, non-negative edge weights (no isolated nodes expected; see
        :func:`harness.graph.remove_isolated`).
    n_clusters : int
        Number of clusters K, ``2 <= K <= n_nodes``.
    method : {"fast", "reference"}, default="fast"
        See the module docstring.
    n_init : int, optional
        k-means restarts; default :func:`default_n_init` (reference 25 or 100, fast 8).
    seed : int, SeedSequence, Generator or None
        Randomness of the eigensolver start and k-means. None is not reproducible.

    Returns
    -------
    ndarray of int64, shape (n_nodes,)
        Cluster label in ``0..K-1`` of each row of ``adjacency``.

    Warns
    -----
    DisconnectedGraphWarning
        If the graph has several connected components.
    """
    _check_method(method)
    adj = as_adjacency(adjacency)
    k = check_k(n_clusters, adj.shape[0])
    _warn_if_disconnected(adj)
    return cluster_graph(adj, k, method=method, n_init=n_init, seed=seed)[0]


def cluster_graph(
    adj: sp.csr_matrix,
    k: int,
    *,
    method: str = "fast",
    n_init: int | None = None,
    seed: SeedLike = None,
    coloring: np.ndarray | None = None,
    scorer: NcutScorer | None = None,
) -> tuple[np.ndarray, float]:
    """Core of :func:`spectral_clustering` on a validated graph: labels and their n-cut.

    Parameters
    ----------
    adj : scipy.sparse.csr_matrix of shape (n, n)
        A validated graph (see :func:`network_graph` for a network's).
    k : int
    method, n_init, seed
        See :func:`spectral_clustering`.
    coloring : ndarray of bool, shape (n,), optional
        A known 2-colouring (layer parity), which saves detecting one.
    scorer : optional
        The graph's prepared n-cut scorer (``NetworkGraph.scorer``).

    Returns
    -------
    labels : ndarray of int64, shape (n,)
    ncut : float
    """
    n = adj.shape[0]
    n_init = default_n_init(n, method) if n_init is None else int(n_init)
    if n_init < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init}")
    if scorer is None:
        scorer = NcutScorer(adj)
    if method == "reference":
        from sklearn.cluster import SpectralClustering

        with warnings.catch_warnings():
            # Reported once, as DisconnectedGraphWarning, by the caller.
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
            model = SpectralClustering(
                n_clusters=k,
                affinity="precomputed",
                eigen_solver="arpack",
                assign_labels="kmeans",
                n_init=n_init,
                random_state=_int_seed(seed),
            ).fit(adj)
        labels = np.asarray(model.labels_, dtype=np.int64)
        return labels, _checked_score(scorer, labels, k)
    rng = np.random.default_rng(seed)
    emb, _ = embed_graph(adj, k, rng, coloring)
    candidates = batched_kmeans(emb, k, n_init=n_init, seed=rng)
    if method == "fast":
        # scikit-learn's rule: the restart with the lowest inertia (the first on ties).
        best = int(np.argmin(inertia_batch(emb, candidates)))
        return candidates[best], _checked_score(scorer, candidates[best], k)
    scores = scorer.score(candidates, EPS)
    # A restart that lost a cluster would win unfairly (fewer terms in the sum).
    n_used = np.array([np.unique(row).size for row in candidates])
    if (n_used == k).any():
        scores = np.where(n_used == k, scores, np.inf)
    best = int(np.argmin(scores))
    _warn_if_negligible(scorer, candidates[best], k)
    return candidates[best], float(scores[best])


def _checked_score(scorer: NcutScorer, labels: np.ndarray, k: int) -> float:
    _warn_if_negligible(scorer, labels, k)
    return float(scorer.score(labels[None, :], EPS)[0])


def _warn_if_negligible(scorer: NcutScorer, labels: np.ndarray, k: int) -> None:
    vol = scorer.volumes(labels)
    tiny = np.flatnonzero(vol <= ISOLATION_RTOL * vol.sum() / max(k, 1))
    if tiny.size:
        warnings.warn(
            f"{tiny.size} cluster(s) of the chosen partition have next to no volume "
            f"(at most {float(vol[tiny].max()):.3g} of a total {float(vol.sum()):.3g}): they hold "
            "nearly isolated neurons and contribute ~0 to the n-cut. Raise isolation_rtol "
            "to remove such neurons before clustering.",
            NegligibleClusterWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusteringResult:
    """Spectral clustering of one network's weight graph.

    Attributes
    ----------
    labels : ndarray of int64, shape (n_nodes,)
        Cluster per neuron in global node order (see :mod:`harness.graph`); -1 for isolated
        neurons removed before clustering.
    mask : ndarray of bool, shape (n_nodes,)
        True for neurons that were clustered.
    ncut : float
        n-cut of the partition on the graph of kept neurons.
    ave_in_out : float
    n_clusters : int
    method : str
    seed : int or None
    layer_sizes : tuple of int
        Units per layer of the original network.
    """

    labels: np.ndarray = field(repr=False, compare=False)
    mask: np.ndarray = field(repr=False, compare=False)
    ncut: float
    ave_in_out: float
    n_clusters: int
    method: str
    seed: int | None
    layer_sizes: tuple[int, ...] = ()

    def to_row(self) -> dict[str, Any]:
        """Builtin-typed summary (no arrays)."""
        return {
            "ncut": float(self.ncut),
            "ave_in_out": float(self.ave_in_out),
            "n_clusters": int(self.n_clusters),
            "method": str(self.method),
            "seed": None if self.seed is None else int(self.seed),
            "n_nodes": int(self.mask.shape[0]),
            "n_removed": int(np.count_nonzero(~self.mask)),
        }

    def __repr__(self) -> str:
        return (
            f"ClusteringResult(ncut={self.ncut:.4f}, ave_in_out={self.ave_in_out:.4f}, "
            f"K={self.n_clusters}, nodes={self.mask.shape[0]} ({int((~self.mask).sum())} "
            f"removed), method={self.method!r}, seed={self.seed})"
        )


@dataclass(frozen=True)
class NetworkGraph:
    """The graph of a network's non-isolated neurons, with what clustering needs.

    Attributes
    ----------
    adjacency : scipy.sparse.csr_matrix of shape (n_kept, n_kept)
        ``|W|`` scaled by a power of two (see :func:`harness.graph.normalized_abs`).
    parity : ndarray of bool, shape (n_kept,)
        True on odd layers: a 2-colouring of the bipartite graph.
    mask : ndarray of bool, shape (n_nodes,)
        True for the kept neurons, over all neurons in global order.
    scorer
        Degrees and edge list prepared for scoring many partitions.
    """

    adjacency: sp.csr_matrix
    parity: np.ndarray
    mask: np.ndarray
    scorer: NcutScorer


def network_graph(
    weights: Sequence[np.ndarray],
    n_clusters: int,
    *,
    isolation_rtol: float = ISOLATION_RTOL,
    what: str = "the network",
) -> NetworkGraph:
    """The graph of a network's non-isolated neurons (:func:`harness.graph.kept_graph`),
    checked against ``n_clusters``, with its n-cut scorer.

    Raises
    ------
    ValueError
        If no neuron is left, or ``n_clusters`` is not below the number of kept neurons.
    """
    graph = kept_graph(weights, isolation_rtol=isolation_rtol)
    n_kept = graph.adjacency.shape[0]
    if n_kept == 0:
        raise ValueError(f"{what} has no nonzero weights: every neuron is isolated")
    _check_k_against_network(int(n_clusters), n_kept, what)
    scorer = NcutScorer.from_edges(n_kept, *graph.edges)
    return NetworkGraph(graph.adjacency, graph.parity, graph.mask, scorer)


def cluster_weights(
    weights: Sequence[Any],
    n_clusters: int,
    *,
    method: str = "fast",
    seed: int | None = None,
    n_init: int | None = None,
    isolation_rtol: float = ISOLATION_RTOL,
) -> ClusteringResult:
    """Cluster a network's neurons: validate, drop isolated neurons, build |W| graph, cluster.

    Parameters
    ----------
    weights : sequence of array-like, each of shape (n_l, n_{l+1})
        Weight matrices, inputs x outputs (Keras layout).
    n_clusters : int
        Number of clusters K (``2 <= K <`` number of non-isolated neurons).
    method : {"fast", "reference", "fast_ncut"}, default="fast"
    seed : int or None
        Seed of the clustering (None: not reproducible).
    n_init : int, optional
        k-means restarts; see :func:`default_n_init`.
    isolation_rtol : float, default=ISOLATION_RTOL
        Neurons whose degree is at most this fraction of the median degree are removed
        (see :func:`harness.graph.kept_units`); 0 gives the paper's exact-zero rule.

    Returns
    -------
    ClusteringResult
    """
    _check_method(method)
    ws = validate_weights(weights)
    spec = AnalysisSpec(
        n_clusters=check_n_clusters(n_clusters), method=method, isolation_rtol=isolation_rtol
    )
    return cluster_network(ws, spec, seed=seed, n_init=n_init)


def cluster_network(
    weights: Sequence[np.ndarray],
    spec: AnalysisSpec,
    *,
    seed: int | None,
    n_init: int | None = None,
) -> ClusteringResult:
    """:func:`cluster_weights` of weights already validated, with the settings of ``spec``.

    Parameters
    ----------
    weights : sequence of ndarray of float64, each of shape (n_l, n_{l+1})
        As returned by :func:`harness.graph.validate_weights` (not checked again).
    spec : AnalysisSpec
        Its ``n_clusters``, ``method`` and ``isolation_rtol`` are used.
    seed, n_init
        As :func:`cluster_weights`.
    """
    k = spec.n_clusters
    graph = network_graph(weights, k, isolation_rtol=spec.isolation_rtol)
    _warn_if_disconnected(graph.adjacency)
    labels, value = cluster_graph(
        graph.adjacency,
        k,
        method=spec.method,
        n_init=n_init,
        seed=seed,
        coloring=graph.parity,
        scorer=graph.scorer,
    )
    mask = graph.mask
    return ClusteringResult(
        labels=expand_labels(labels, mask),
        mask=mask,
        ncut=value,
        ave_in_out=ave_in_out(value, k),
        n_clusters=k,
        method=spec.method,
        seed=None if seed is None else int(seed),
        layer_sizes=layer_sizes(weights),
    )
