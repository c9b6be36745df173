"""Spearman correlations between units, and between units and input pixels (reference §7.1-7.2).

A Spearman correlation is the Pearson correlation of ranks. Each variable (a unit's
activations over the examples, or a pixel's values) is ranked once (ties get their average
rank, as :func:`scipy.stats.spearmanr` does), centred and scaled to unit norm; every
correlation is then one entry of a single matrix product ``Z_a @ Z_b.T``, never a loop over
pairs. The activation graph of §7.1 is the matrix of squared correlations ``r^2`` with a
zero diagonal.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["activation_graph", "rank_rows", "spearman_between", "spearman_matrix"]


def _average_ranks(arr: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(arr, axis=1)`` (average ranks of ties), vectorised over rows.

    One sort per row; in sorted order, a position's rank is the mean of the first and last
    positions of its run of equal values (found by running max / min over run boundaries),
    plus one. The same numbers as scipy's, without its per-call overhead.
    """
    n, m = arr.shape
    order = np.argsort(arr, axis=1)
    ordered = np.take_along_axis(arr, order, axis=1)
    idx = np.arange(m, dtype=np.int32)
    new_run = np.empty((n, m), dtype=bool)
    new_run[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=new_run[:, 1:])
    first = np.where(new_run, idx, 0)
    np.maximum.accumulate(first, axis=1, out=first)
    ends_run = np.empty((n, m), dtype=bool)
    ends_run[:, -1] = True
    ends_run[:, :-1] = new_run[:, 1:]
    last = np.where(ends_run, idx, m - 1)[:, ::-1]
    last = np.minimum.accumulate(last, axis=1)[:, ::-1]
    ranks = np.empty((n, m), dtype=np.float64)
    ranks[np.arange(n)[:, None], order] = (first + last) * 0.5 + 1.0
    return ranks


def rank_rows(values: ArrayLike) -> np.ndarray:
    """Standardised ranks of each row: average ranks of ties, centred, scaled to norm 1.

    Parameters
    ----------
    values : array-like of shape (n_variables, n_examples)

    Returns
    -------
    ndarray of float64, shape (n_variables, n_examples)
        ``Z`` with ``Z @ Z.T`` the Spearman correlation matrix. A constant row (no spread)
        is all zeros, so its correlations come out 0 rather than NaN.
    """
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"values must be 2-D (n_variables, n_examples), got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"a correlation needs at least 2 examples, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise ValueError("values contain NaN or infinite entries; drop or fix those examples")
    ranks = _average_ranks(arr)
    ranks -= ranks.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", ranks, ranks))
    # Ranks are integers or halves, so a row's spread is either 0 or at least ~1: no
    # tolerance is needed to tell a constant row.
    ranks /= np.where(norms > 0, norms, 1.0)[:, None]
    return ranks


def spearman_matrix(values: ArrayLike) -> np.ndarray:
    """Spearman correlation between every pair of rows, as one matrix product.

    Equals ``scipy.stats.spearmanr(values, axis=1).statistic`` for rows with spread (to
    rounding); rows without spread get correlation 0 with everything (scipy: NaN).

    Parameters
    ----------
    values : array-like of shape (n_variables, n_examples)

    Returns
    -------
    ndarray of float64, shape (n_variables, n_variables)
        Symmetric, in [-1, 1]; the diagonal is 1 for rows with spread.
    """
    z = rank_rows(values)
    corr = z @ z.T
    np.clip(corr, -1.0, 1.0, out=corr)
    return corr


def spearman_between(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Spearman correlation of every row of ``a`` with every row of ``b``.

    Parameters
    ----------
    a : array-like of shape (n_a, n_examples)
    b : array-like of shape (n_b, n_examples)

    Returns
    -------
    ndarray of float64, shape (n_a, n_b)
        0 where either row has no spread (a blank border pixel, say).
    """
    za, zb = rank_rows(a), rank_rows(b)
    if za.shape[1] != zb.shape[1]:
        raise ValueError(f"a has {za.shape[1]} examples but b has {zb.shape[1]}")
    corr = za @ zb.T
    np.clip(corr, -1.0, 1.0, out=corr)
    return corr


def activation_graph(values: ArrayLike) -> np.ndarray:
    """The activation graph of §7.1: ``r^2`` of the units' Spearman correlations, diagonal 0.

    Parameters
    ----------
    values : array-like of shape (n_units, n_examples)
        Activations of the units with spread (see :func:`harness.activations.record_activations`).

    Returns
    -------
    ndarray of float64, shape (n_units, n_units)
        Symmetric, in [0, 1], zero diagonal.
    """
    corr = spearman_matrix(values)
    adj = np.square(corr, out=corr)
    np.fill_diagonal(adj, 0.0)
    # The product is symmetric only up to rounding; the n-cut and the eigensolver want it exact.
    return (adj + adj.T) / 2.0
