"""Weighted graphs of multilayer perceptrons (Filan et al. 2021, section 3.1-3.2 of the reference).

A network is a list of 2-D float arrays ``W_l`` of shape ``(n_l, n_{l+1})`` (inputs x outputs,
the Keras layout; a torch ``nn.Linear.weight`` is ``(out, in)`` and must be transposed). The
graph has one node per neuron of every layer, the input and output layers included, numbered
layer by layer: node ``(l, i)`` has index ``sum_{l' < l} n_{l'} + i``. Edge ``(l, i) -- (l+1, j)``
has weight ``|W_l[i, j]|``; there are no edges inside a layer and no self loops, so the
adjacency is symmetric and block tridiagonal with zero diagonal blocks::

        [ 0      |W_0|   0      ... ]
    A = [ |W_0|'  0      |W_1|  ... ]
        [ 0      |W_1|'  0      ... ]

Biases are ignored. Consecutive layers alternate, so the graph is bipartite (even layers
against odd layers); :mod:`harness.cluster` exploits this for speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ISOLATION_RTOL",
    "KeptGraph",
    "check_isolation_rtol",
    "expand_labels",
    "kept_graph",
    "kept_units",
    "normalized_abs",
    "layer_sizes",
    "node_index",
    "node_layer_unit",
    "remove_isolated",
    "symmetric_csr",
    "validate_weights",
    "weights_to_graph",
]

ISOLATION_RTOL = float(np.finfo(np.float32).eps)
"""Default relative degree below which a neuron counts as isolated (float32 machine epsilon).

A neuron whose degree (sum of its |w|) is at most ``ISOLATION_RTOL`` times the median degree of
the network is isolated: removed before clustering, as neurons of degree exactly 0 are in the
paper. Weights that weight decay drives towards 0 in float32 (L2 on blank border pixels and dead
units: 1e-39 and below) never reach 0; left in, they give clusters of no volume and n-cuts near
0. ``isolation_rtol=0`` gives the paper's exact-zero rule."""


def validate_weights(weights: Sequence[object]) -> list[np.ndarray]:
    """Check a chain of weight matrices and return float64 copies.

    Parameters
    ----------
    weights : sequence of array-like, each of shape (n_l, n_{l+1})
        Weight matrices in layer order, inputs x outputs (numpy arrays, nested lists or
        torch tensors; a torch ``nn.Linear.weight`` is (out, in) and must be transposed).

    Returns
    -------
    list of ndarray of shape (n_l, n_{l+1}), dtype float64
        Independent copies; the caller may modify them.

    Raises
    ------
    ValueError
        If the list is empty, a matrix is not 2-D or has a zero dimension, holds NaN or
        infinite values, or two consecutive matrices do not chain (``W_l.shape[1] !=
        W_{l+1}.shape[0]``).
    """
    if isinstance(weights, np.ndarray) and weights.dtype != object:
        raise ValueError(
            "weights must be a sequence of 2-D matrices, one per layer, not a single array "
            f"of shape {weights.shape}; wrap a single matrix in a list: [W]"
        )
    try:
        items = list(weights)
    except TypeError as exc:
        raise ValueError(
            f"weights must be a sequence of 2-D matrices, got {type(weights).__name__}"
        ) from exc
    if not items:
        raise ValueError("weights is empty; pass at least one (n_in, n_out) weight matrix")
    out: list[np.ndarray] = []
    for layer, w in enumerate(items):
        if hasattr(w, "detach") and hasattr(w, "cpu"):  # a torch tensor (maybe requiring grad)
            w = w.detach().cpu().numpy()
        if np.iscomplexobj(np.asarray(w)):  # before the float conversion, which would warn
            raise ValueError(f"layer {layer} holds complex numbers; weights must be real")
        try:
            arr = np.array(w, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layer {layer}: cannot convert to a float matrix ({exc})") from exc
        if arr.ndim != 2:
            raise ValueError(
                f"layer {layer} has {arr.ndim} dimensions (shape {arr.shape}); every weight "
                "matrix must be 2-D with shape (n_inputs, n_outputs)"
            )
        if 0 in arr.shape:
            raise ValueError(f"layer {layer} has an empty shape {arr.shape}")
        bad = ~np.isfinite(arr)
        n_bad = int(bad.sum())
        if n_bad:
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"layer {layer} has {n_bad} non-finite value(s) (NaN or inf), the first at "
                f"index {first}; fix or drop them before building the graph"
            )
        out.append(arr)
    for layer in range(len(out) - 1):
        n_out, n_in = out[layer].shape[1], out[layer + 1].shape[0]
        if n_out != n_in:
            raise ValueError(
                f"layer {layer} has {n_out} outputs but layer {layer + 1} expects {n_in} "
                "inputs; matrices must be (n_inputs, n_outputs) and chain in order "
                "(transpose torch nn.Linear weights)"
            )
    return out


def layer_sizes(weights: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Number of units per layer, input and output layers included.

    Parameters
    ----------
    weights : sequence of ndarray of shape (n_l, n_{l+1})

    Returns
    -------
    tuple of int, length ``len(weights) + 1``
    """
    if len(weights) == 0:
        raise ValueError("weights is empty; pass at least one (n_in, n_out) weight matrix")
    return tuple(int(np.shape(w)[0]) for w in weights) + (int(np.shape(weights[-1])[1]),)


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])


def node_index(sizes: Sequence[int], layer: int, unit: int) -> int:
    """Global node index of unit ``unit`` of layer ``layer``: ``sum(sizes[:layer]) + unit``."""
    if not 0 <= layer < len(sizes):
        raise ValueError(f"layer {layer} out of range; the network has {len(sizes)} layers")
    if not 0 <= unit < sizes[layer]:
        raise ValueError(f"unit {unit} out of range; layer {layer} has {sizes[layer]} units")
    return int(sum(sizes[:layer]) + unit)


def node_layer_unit(sizes: Sequence[int], index: int) -> tuple[int, int]:
    """Inverse of :func:`node_index`: the ``(layer, unit)`` of a global node index."""
    offsets = _offsets(sizes)
    if not 0 <= index < offsets[-1]:
        raise ValueError(f"node index {index} out of range; the network has {offsets[-1]} nodes")
    layer = int(np.searchsorted(offsets, index, side="right") - 1)
    return layer, int(index - offsets[layer])


def weights_to_graph(weights: Sequence[np.ndarray]) -> sp.csr_matrix:
    """Symmetric adjacency matrix of the network's neurons, edge weights ``|W|``.

    Parameters
    ----------
    weights : sequence of ndarray of shape (n_l, n_{l+1})
        Validated weight matrices (see :func:`validate_weights`).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_nodes, n_nodes), float64
        ``A = U + U.T`` where ``U`` holds ``|W_l|`` in block ``(l, l+1)``. Exact zeros are
        not stored, so ``A.nnz`` is twice the number of nonzero weights.
    """
    absw = [np.abs(np.asarray(w, dtype=np.float64)) for w in weights]
    keep = [np.ones(n, dtype=bool) for n in layer_sizes(absw)]
    n, rows, cols, vals = _edges(absw, keep)
    return symmetric_csr(n, rows, cols, vals)


def _edges(
    abs_weights: Sequence[np.ndarray], keep: Sequence[np.ndarray]
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The upper-triangular edge list of the graph of the kept neurons, in row-major order.

    Nodes are the kept neurons numbered layer by layer; the edge ``(l, i) -- (l+1, j)`` of
    two kept neurons weighs ``abs_weights[l][i, j]`` and is listed when that is nonzero.
    """
    counts = [int(k.sum()) for k in keep]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    new_index = [np.cumsum(k) - 1 + offsets[layer] for layer, k in enumerate(keep)]
    rows, cols, vals = [], [], []
    for layer, a in enumerate(abs_weights):  # loop over layers only; entries are vectorised
        r, c = np.nonzero(a)
        inside = keep[layer][r] & keep[layer + 1][c]
        r, c = r[inside], c[inside]
        rows.append(new_index[layer][r])
        cols.append(new_index[layer + 1][c])
        vals.append(a[r, c])
    # Rows come out in row-major order, which symmetric_csr relies on to skip a sort.
    return sum(counts), np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


@dataclass(frozen=True)
class KeptGraph:
    """The graph of a network's non-isolated neurons (:func:`kept_graph`).

    Attributes
    ----------
    adjacency : scipy.sparse.csr_matrix of shape (n_kept, n_kept)
        ``|W|`` scaled by a power of two (see :func:`normalized_abs`).
    parity : ndarray of bool, shape (n_kept,)
        True on odd layers: a 2-colouring of the bipartite graph.
    mask : ndarray of bool, shape (n_nodes,)
        True for the kept neurons, over all neurons in global order.
    edges : (rows, cols, vals)
        The upper-triangular edge list of ``adjacency`` (each edge once).
    """

    adjacency: sp.csr_matrix
    parity: np.ndarray
    mask: np.ndarray
    edges: tuple[np.ndarray, np.ndarray, np.ndarray]


def kept_graph(
    weights: Sequence[np.ndarray], *, isolation_rtol: float = ISOLATION_RTOL
) -> KeptGraph:
    """Isolated neurons removed and the |W| graph of the rest, in one pass over the weights.

    The hot path of null sampling; its adjacency equals
    ``weights_to_graph(remove_isolated(w, isolation_rtol=...)[0])`` up to the power-of-two
    scale of :func:`normalized_abs`, which no n-cut sees. Empty when every neuron is
    isolated.
    """
    absw = normalized_abs(weights)
    keep = kept_units(absw, isolation_rtol=isolation_rtol)
    n_kept, rows, cols, vals = _edges(absw, keep)
    parity = np.repeat(np.arange(len(keep)) % 2 == 1, [int(k.sum()) for k in keep])
    adjacency = symmetric_csr(n_kept, rows, cols, vals)
    return KeptGraph(adjacency, parity, np.concatenate(keep), (rows, cols, vals))


def symmetric_csr(n: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> sp.csr_matrix:
    """``U + U.T`` for the upper-triangular edge list ``(rows, cols, vals)`` in row-major order.

    Building U's CSR arrays directly and adding its transpose avoids the sort of a COO
    conversion (several times faster on a network graph).
    """
    if rows.size and (np.diff(rows) < 0).any():  # not row-major: let scipy sort it
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    upper = sp.csr_matrix((vals, cols, indptr), shape=(n, n))
    return sp.csr_matrix(upper + upper.T.tocsr())


def normalized_abs(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``|W_l| / 2**e`` for every layer, with ``2**e`` the power of two just above max |W|.

    Every normalised cut, degree ratio and spectral embedding is invariant to multiplying all
    weights by a constant; dividing by a power of two is exact in floating point, so the
    graph of ``c * W`` equals the graph of ``W`` bit for bit when ``c`` is a power of two, and
    up to rounding otherwise. It also keeps degrees finite for weights near the float64 limits
    (1e307 x 784 overflows) and away from the subnormal range (1e-320).
    """
    absw = [np.abs(np.asarray(w, dtype=np.float64)) for w in weights]
    top = max((float(a.max()) for a in absw if a.size), default=0.0)
    if top == 0.0 or not np.isfinite(top):
        return absw
    exponent = int(np.frexp(top)[1])
    return [np.ldexp(a, -exponent) for a in absw]


def check_isolation_rtol(isolation_rtol: object) -> float:
    """``isolation_rtol`` as a float if it is a number >= 0; ValueError otherwise."""
    try:
        value = float(isolation_rtol)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"isolation_rtol must be a number >= 0, got {isolation_rtol!r}") from None
    if not value >= 0.0:
        raise ValueError(f"isolation_rtol must be >= 0, got {isolation_rtol!r}")
    return value


def kept_units(
    abs_weights: Sequence[np.ndarray], *, isolation_rtol: float = ISOLATION_RTOL
) -> list[np.ndarray]:
    """Which neurons take part in the graph: per layer, a bool mask of the non-isolated ones.

    Parameters
    ----------
    abs_weights : sequence of ndarray of shape (n_l, n_{l+1})
        Absolute weights (see :func:`normalized_abs`).
    isolation_rtol : float, default=ISOLATION_RTOL
        A neuron is isolated when its degree (the sum of its edges' weights) is at most
        ``isolation_rtol`` times the median degree over the neurons of positive degree.
        0 gives the paper's rule (degree exactly 0).

    Returns
    -------
    list of ndarray of bool, one per layer of units (``len(abs_weights) + 1``)
    """
    isolation_rtol = check_isolation_rtol(isolation_rtol)
    sizes = layer_sizes(abs_weights)
    degree = [np.zeros(n) for n in sizes]
    for layer, a in enumerate(abs_weights):
        degree[layer] += a.sum(axis=1)
        degree[layer + 1] += a.sum(axis=0)
    flat = np.concatenate(degree)
    positive = flat[flat > 0]
    threshold = float(isolation_rtol) * float(np.median(positive)) if positive.size else 0.0
    return [d > threshold for d in degree]


def remove_isolated(
    weights: Sequence[np.ndarray], *, isolation_rtol: float = ISOLATION_RTOL
) -> tuple[list[np.ndarray], np.ndarray]:
    """Drop the isolated neurons (section 3.2 of the reference), by :func:`kept_units`' rule.

    Parameters
    ----------
    weights : sequence of ndarray of shape (n_l, n_{l+1})
    isolation_rtol : float, default=ISOLATION_RTOL
        See :func:`kept_units`; 0 removes only neurons of degree exactly 0, as the paper.

    Returns
    -------
    kept_weights : list of ndarray of shape (m_l, m_{l+1})
        The (signed) matrices with the rows and columns of removed neurons dropped, in every
        layer, the output layer included (the original left output columns unmasked, an
        ``Ellipsis`` quirk that is not reproduced; it only matters when an output unit is
        isolated). A layer may end up with zero units.
    mask : ndarray of bool, shape (n_nodes,)
        True for kept nodes, over all nodes of the original network in global order.

    Notes
    -----
    Only single isolated nodes are removed; components that touch neither the input nor the
    output layer stay, as in the original.
    """
    ws = [np.asarray(w) for w in weights]
    keep = kept_units(normalized_abs(ws), isolation_rtol=isolation_rtol)
    kept = [w[keep[i]][:, keep[i + 1]] for i, w in enumerate(ws)]
    return kept, np.concatenate(keep)


def expand_labels(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels over all nodes from labels over the kept nodes; removed nodes get -1.

    Parameters
    ----------
    labels : ndarray of int, shape (mask.sum(),)
    mask : ndarray of bool, shape (n_nodes,)

    Returns
    -------
    ndarray of int64, shape (n_nodes,)
    """
    mask = np.asarray(mask, dtype=bool)
    labels = np.asarray(labels)
    if labels.shape != (int(mask.sum()),):
        raise ValueError(
            f"labels has shape {labels.shape} but the mask keeps {int(mask.sum())} nodes; "
            "pass one label per kept node"
        )
    full = np.full(mask.shape[0], -1, dtype=np.int64)
    full[mask] = labels
    return full
