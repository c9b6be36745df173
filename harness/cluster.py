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

    1. Embedding. The K smallest eigenvalues of L are the K largest (algebraic) eigenvalues of
       the normalised adjacency ``M = D^-1/2 A D^-1/2``. A network graph is bipartite (even
       layers against odd layers), so ``M = [[0, B], [B.T, 0]]`` after ordering the nodes by
       layer parity, its spectrum is symmetric (+-sigma pairs) and its top eigenpairs are
       the top singular triplets of ``B``: eigenvalue ``sigma_i``, eigenvector
       ``[u_i; v_i] / sqrt(2)``. We compute them from the smaller Gram matrix
       (``B.T @ B`` or ``B @ B.T``) with ARPACK (Lanczos, no shift-invert, no factorisation)
       or, when it is small, a dense ``eigh``; this never returns the -sigma eigenvectors near
       -1 that a plain ``eigsh(M, which="LA")`` has to resolve. Graphs that are not bipartite
       use ``eigsh(M, which="LA")``. As in scikit-learn the trivial eigenvector is kept,
       vectors are divided by ``sqrt(degree)`` and given deterministic signs. ARPACK stops at
       a relative tolerance of ``1e-4`` instead of machine precision: the eigenvalues
       near the bulk of a random graph's spectrum are nearly degenerate, so the extra digits
       only rotate the embedding inside an almost-invariant subspace.
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

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as sla

from harness.graph import (
    ISOLATION_RTOL,
    expand_labels,
    kept_units,
    layer_sizes,
    normalized_abs,
    symmetric_csr,
    validate_weights,
)
from harness.kmeans import batched_kmeans, inertia_batch
from harness.ncut import EPS, NcutScorer, as_adjacency, ave_in_out, ncut, ncut_batch
from harness.options import check_choice
from harness.seeding import SEED_MODULUS, SeedLike, stream_seed

__all__ = [
    "METHODS",
    "ClusteringResult",
    "DisconnectedGraphWarning",
    "NegligibleClusterWarning",
    "NetworkGraph",
    "cluster_graph",
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

METHODS = ("fast", "reference", "fast_ncut")

_NCUT_SELECT_N_INIT = 8  # restarts of "fast_ncut", which ranks them by the objective
_EIG_TOL = 1e-4  # ARPACK relative tolerance of the fast embedding
_DENSE_EIG_MAX = 300  # eigenproblems up to this size use dense LAPACK eigh


class DisconnectedGraphWarning(UserWarning):
    """The graph has more than one connected component; spectral clustering may split it
    along the components rather than into balanced clusters."""


class NegligibleClusterWarning(UserWarning):
    """A cluster of the chosen partition has next to no volume (its cut/vol term is
    meaningless): nearly isolated neurons that the isolation rule did not remove."""


# --------------------------------------------------------------------------------------
# spectral embedding
# --------------------------------------------------------------------------------------


def _two_coloring(adj: sp.csr_matrix) -> np.ndarray | None:
    """A 2-colouring (bool per node) if the graph is bipartite, else None.

    Level-synchronous BFS from one root per component, one sparse mat-vec per level.
    """
    n = adj.shape[0]
    _, comp = csgraph.connected_components(adj, directed=False)
    roots = np.unique(comp, return_index=True)[1]
    color = np.full(n, -1, dtype=np.int8)
    color[roots] = 0
    pattern = adj.astype(bool).astype(np.float32)
    frontier = np.zeros(n, dtype=np.float32)
    frontier[roots] = 1.0
    level = 0
    while True:
        level += 1
        reached = (pattern @ frontier) > 0
        new = reached & (color < 0)
        if not new.any():
            break
        color[new] = level % 2
        frontier = new.astype(np.float32)
    upper = sp.triu(adj, k=0, format="coo")
    if (color[upper.row] == color[upper.col]).any():
        return None
    return color.astype(bool)


def _check_coloring(coloring: Any, adj: sp.csr_matrix) -> np.ndarray:
    n = adj.shape[0]
    col = np.asarray(coloring, dtype=bool)
    if col.shape != (n,):
        raise ValueError(f"coloring must have shape ({n},), got {col.shape}")
    upper = sp.triu(adj, k=0, format="coo")
    bad = int(np.count_nonzero(col[upper.row] == col[upper.col]))
    if bad:
        raise ValueError(
            f"coloring is not a 2-colouring of the graph: {bad} edge(s) join nodes of the "
            "same colour; omit it to detect one"
        )
    return col


def _dense_top(op: Any, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    mat = op.toarray() if sp.issparse(op) else np.asarray(op @ np.eye(n))
    vals, vecs = scipy.linalg.eigh(mat, subset_by_index=[n - k, n - 1])
    return vals, vecs


def _eigsh_top(op: Any, n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs of a symmetric operator of size n, in decreasing order."""
    if n <= _DENSE_EIG_MAX or k >= n - 1:
        vals, vecs = _dense_top(op, n, k)
    else:
        # A seeded start vector: ARPACK's default one comes from a process-global stream,
        # which would make results depend on what ran earlier in the process.
        v0 = rng.uniform(0.5, 1.5, size=n)
        try:
            vals, vecs = sla.eigsh(op, k=k, which="LA", tol=_EIG_TOL, v0=v0)
        except sla.ArpackNoConvergence:
            try:  # a larger Krylov space usually resolves clustered eigenvalues
                ncv = min(n - 1, max(4 * k + 1, 40))
                vals, vecs = sla.eigsh(op, k=k, which="LA", tol=_EIG_TOL, v0=v0, ncv=ncv)
            except sla.ArpackNoConvergence:
                warnings.warn(
                    f"ARPACK did not converge for the fast spectral embedding ({n} x {n}); "
                    "falling back to a dense eigensolver (slow for large graphs)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                vals, vecs = _dense_top(op, n, k)
    order = np.argsort(vals)[::-1]
    return vals[order], vecs[:, order]


def spectral_embedding(
    adjacency: Any,
    n_components: int,
    *,
    seed: SeedLike = None,
    coloring: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Spectral embedding for normalised-cut clustering (the "fast" method's step 1).

    Parameters
    ----------
    adjacency : sparse matrix or ndarray of shape (n_nodes, n_nodes)
        Symmetric, non-negative edge weights.
    n_components : int
        Number of eigenvectors K.
    seed : int, SeedSequence, Generator or None
        Seeds the ARPACK start vector.
    coloring : array-like of bool, shape (n_nodes,), optional
        A known 2-colouring (for a network graph: layer parity). Detected when omitted.

    Returns
    -------
    embedding : ndarray of shape (n_nodes, n_components)
        Eigenvectors of ``D^-1/2 A D^-1/2`` with the largest eigenvalues, trivial vector
        included, each divided by ``sqrt(degree)``, signs fixed so that each column's largest
        absolute entry is positive (same convention as scikit-learn).
    eigenvalues : ndarray of shape (n_components,)
        The eigenvalues of ``D^-1/2 A D^-1/2`` in decreasing order (1 first for a connected
        graph); ``1 - eigenvalues`` are the smallest eigenvalues of the normalised Laplacian.
    """
    adj = as_adjacency(adjacency)
    k = _check_k(n_components, adj.shape[0], name="n_components", minimum=1)
    rng = np.random.default_rng(seed)
    col = None if coloring is None else _check_coloring(coloring, adj)
    return _embedding(adj, k, rng, col)


def _embedding(
    adj: sp.csr_matrix, k: int, rng: np.random.Generator, coloring: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    n = adj.shape[0]
    degree = np.asarray(adj.sum(axis=1)).ravel()
    # Isolated nodes (degree 0) get a zero row in M; using 1 keeps the scaling finite.
    inv_sqrt = 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0))
    row_of = np.repeat(np.arange(n), np.diff(adj.indptr))
    m = sp.csr_matrix(
        (adj.data * inv_sqrt[row_of] * inv_sqrt[adj.indices], adj.indices, adj.indptr),
        shape=adj.shape,
    )
    if coloring is None:
        coloring = _two_coloring(adj)
    if coloring is not None:
        side_a = np.flatnonzero(coloring)
        side_b = np.flatnonzero(~coloring)
        if len(side_a) > len(side_b):
            side_a, side_b = side_b, side_a
        if 0 < k < len(side_a):
            result = _bipartite_embedding(m, k, rng, side_a, side_b)
            if result is not None:
                vecs, vals = result
                return _finish_embedding(vecs, inv_sqrt), vals
    vals, vecs = _eigsh_top(m, n, k, rng)
    return _finish_embedding(vecs, inv_sqrt), vals


def _bipartite_embedding(
    m: sp.csr_matrix, k: int, rng: np.random.Generator, side_a: np.ndarray, side_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-k eigenpairs of ``M = [[0, B], [B.T, 0]]`` from the top singular triplets of B.

    ``side_a`` is the smaller colour class. Returns None when B has fewer than k nonzero
    singular values (then some top eigenvectors of M are null vectors that the Gram matrix
    cannot give back).
    """
    n = m.shape[0]
    small = len(side_a)
    # Rows of the big side only have columns on the small side: slice rows, renumber columns.
    position = np.empty(n, dtype=np.int64)
    position[side_a] = np.arange(small)
    rows = m[side_b]
    b = sp.csr_matrix((rows.data, position[rows.indices], rows.indptr), shape=(len(side_b), small))
    gram: Any
    if small <= _DENSE_EIG_MAX:
        gram = (b.T @ b).toarray()
    elif b.nnz > 0.25 * b.shape[0] * small and b.shape[0] * small <= 2**25:
        # A mostly dense block (unpruned network): dense mat-vecs beat CSR ones.
        bd = b.toarray()
        gram = sla.LinearOperator(
            (small, small), matvec=lambda x: bd.T @ (bd @ x), dtype=np.float64
        )
    else:
        bt = b.T.tocsr()
        gram = sla.LinearOperator((small, small), matvec=lambda x: bt @ (b @ x), dtype=np.float64)
    mu, v_small = _eigsh_top(gram, small, k, rng)
    sigma = np.sqrt(np.clip(mu, 0.0, None))
    if sigma[-1] <= 1e-8:
        return None
    vecs = np.empty((n, k))
    vecs[side_a] = v_small / math.sqrt(2.0)
    vecs[side_b] = (b @ v_small) / (sigma * math.sqrt(2.0))  # u = B v / sigma
    return vecs, sigma


def _finish_embedding(vecs: np.ndarray, inv_sqrt: np.ndarray) -> np.ndarray:
    emb = vecs * inv_sqrt[:, None]  # u = D^-1/2 x, the relaxed Ncut indicator vectors
    rows = np.argmax(np.abs(emb), axis=0)
    signs = np.sign(emb[rows, np.arange(emb.shape[1])])
    signs[signs == 0] = 1.0
    return np.ascontiguousarray(emb * signs)


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


def _check_k(n_clusters: Any, n_nodes: int, *, name: str = "n_clusters", minimum: int = 2) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {n_clusters!r}")
    k = int(n_clusters)
    if k < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {k}")
    if k > n_nodes:
        raise ValueError(
            f"{name}={k} exceeds the number of nodes ({n_nodes}); use at most {n_nodes}"
        )
    return k


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
    k = _check_k(n_clusters, adj.shape[0])
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
    emb, _ = _embedding(adj, k, rng, coloring)
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
    """Isolated neurons removed and the |W| graph of the rest, in one pass over the weights.

    The hot path of null sampling; its adjacency equals
    ``weights_to_graph(remove_isolated(w, isolation_rtol=...)[0])`` up to the power-of-two
    scale of :func:`harness.graph.normalized_abs`, which no n-cut sees.

    Raises
    ------
    ValueError
        If no neuron is left, or ``n_clusters`` is not below the number of kept neurons.
    """
    absw = normalized_abs(weights)
    sizes = layer_sizes(absw)
    keep = kept_units(absw, isolation_rtol=isolation_rtol)
    counts = [int(k.sum()) for k in keep]
    n_kept = sum(counts)
    if n_kept == 0:
        raise ValueError(f"{what} has no nonzero weights: every neuron is isolated")
    _check_k_against_network(int(n_clusters), n_kept, what)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    new_index = [np.cumsum(k) - 1 + offsets[layer] for layer, k in enumerate(keep)]
    rows_l, cols_l, vals_l = [], [], []
    for layer, a in enumerate(absw):
        r, c = np.nonzero(a)
        inside = keep[layer][r] & keep[layer + 1][c]
        r, c = r[inside], c[inside]
        rows_l.append(new_index[layer][r])
        cols_l.append(new_index[layer + 1][c])
        vals_l.append(a[r, c])
    rows, cols, vals = np.concatenate(rows_l), np.concatenate(cols_l), np.concatenate(vals_l)
    adjacency = symmetric_csr(n_kept, rows, cols, vals)
    parity = np.repeat(np.arange(len(sizes)) % 2 == 1, counts)
    scorer = NcutScorer.from_edges(n_kept, rows, cols, vals)
    return NetworkGraph(adjacency, parity, np.concatenate(keep), scorer)


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
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"n_clusters must be an integer, got {n_clusters!r}")
    if n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
    graph = network_graph(ws, int(n_clusters), isolation_rtol=isolation_rtol)
    _warn_if_disconnected(graph.adjacency)
    labels, value = cluster_graph(
        graph.adjacency,
        int(n_clusters),
        method=method,
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
        ave_in_out=ave_in_out(value, int(n_clusters)),
        n_clusters=int(n_clusters),
        method=method,
        seed=None if seed is None else int(seed),
        layer_sizes=layer_sizes(ws),
    )
