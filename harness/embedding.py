"""Spectral embedding of a graph for normalised-cut clustering (the "fast" method's step 1).

The K smallest eigenvalues of the normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` are the K
largest (algebraic) eigenvalues of the normalised adjacency ``M = D^-1/2 A D^-1/2``. A network
graph is bipartite (even layers against odd layers), so ``M = [[0, B], [B.T, 0]]`` after
ordering the nodes by layer parity, its spectrum is symmetric (+-sigma pairs) and its top
eigenpairs are the top singular triplets of ``B``: eigenvalue ``sigma_i``, eigenvector
``[u_i; v_i] / sqrt(2)``. They come from the smaller Gram matrix (``B.T @ B`` or ``B @ B.T``)
with ARPACK (Lanczos, no shift-invert, no factorisation) or, when it is small, a dense
``eigh``; this never returns the -sigma eigenvectors near -1 that a plain
``eigsh(M, which="LA")`` has to resolve. Graphs that are not bipartite use
``eigsh(M, which="LA")``. As in scikit-learn the trivial eigenvector is kept, vectors are
divided by ``sqrt(degree)`` (the relaxed Ncut solution ``u = D^-1/2 x``, Shi & Malik 2000)
and given deterministic signs. ARPACK stops at a relative tolerance of ``1e-4`` instead of
machine precision: the eigenvalues near the bulk of a random graph's spectrum are nearly
degenerate, so the extra digits only rotate the embedding inside an almost-invariant
subspace. :mod:`harness.cluster` turns the embedding into clusters.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as sla

from harness.ncut import as_adjacency
from harness.seeding import SeedLike

__all__ = ["check_k", "embed_graph", "spectral_embedding", "two_coloring"]

_EIG_TOL = 1e-4  # ARPACK relative tolerance of the fast embedding
_DENSE_EIG_MAX = 300  # eigenproblems up to this size use dense LAPACK eigh


def check_k(n_clusters: Any, n_nodes: int, *, name: str = "n_clusters", minimum: int = 2) -> int:
    """``n_clusters`` as an int if it is an integer in ``[minimum, n_nodes]``; ValueError otherwise."""
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


def two_coloring(adj: sp.csr_matrix) -> np.ndarray | None:
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
    k = check_k(n_components, adj.shape[0], name="n_components", minimum=1)
    rng = np.random.default_rng(seed)
    col = None if coloring is None else _check_coloring(coloring, adj)
    return embed_graph(adj, k, rng, col)


def embed_graph(
    adj: sp.csr_matrix, k: int, rng: np.random.Generator, coloring: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Core of :func:`spectral_embedding` on a validated graph (``coloring`` checked or None)."""
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
        coloring = two_coloring(adj)
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

