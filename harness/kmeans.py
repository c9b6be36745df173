"""k-means with all restarts at once, for the spectral embedding of :mod:`harness.cluster`.

:func:`batched_kmeans` runs ``n_init`` restarts together in numpy and returns every restart's
labels, so that the caller chooses among them (by inertia, as scikit-learn, or by n-cut):

1. Seeding. k-means++ (greedy, with ``2 + log K`` candidates per step, as scikit-learn),
   vectorised over restarts.
2. Lloyd iterations on a ``(n_samples, n_init * K)`` distance matrix in float32, with
   scikit-learn's stopping rule (centre shift below ``1e-4`` times the mean feature
   variance; at most 300 iterations) plus one more: a restart also stops once at most 0.1%
   of the samples change cluster in an iteration (those last moves change the n-cut in the
   fourth decimal, while a few slow restarts would double the time), and scikit-learn's
   empty-cluster relocation (an empty cluster takes the point farthest from its own centre).

:func:`inertia_batch` scores the restarts by scikit-learn's rule, in float64.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from harness.seeding import SeedLike

__all__ = ["batched_kmeans", "inertia_batch"]

_MAX_ITER = 300
_TOL = 1e-4
_SETTLED = 1e-3  # a restart whose labels change for at most this fraction has settled


def _kmeanspp(x: np.ndarray, k: int, n_init: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding for ``n_init`` restarts at once; centres (n_init, k, d)."""
    n, d = x.shape
    n_trials = 2 + int(np.log(k))
    x_sq = np.einsum("ij,ij->i", x, x)
    rows = np.arange(n_init)
    centers = np.empty((n_init, k, d), dtype=x.dtype)
    first = rng.integers(n, size=n_init)
    centers[:, 0] = x[first]
    closest = np.maximum(x_sq[first][:, None] + x_sq[None, :] - 2.0 * (x[first] @ x.T), 0.0)
    for c in range(1, k):
        # Sample n_trials candidates per restart with probability ~ closest distance^2:
        # one searchsorted over the concatenated per-restart cumulative sums.
        cums = np.cumsum(closest, axis=1)
        if not (cums[:, -1] > 0).all():  # fewer distinct points than clusters: draw uniformly
            cums = np.where(cums[:, -1:] > 0, cums, np.arange(1, n + 1) / n)
        base = np.concatenate([[0.0], np.cumsum(cums[:, -1])[:-1]])
        draws = rng.random((n_init, n_trials)) * cums[:, -1:]
        flat = np.searchsorted((cums + base[:, None]).ravel(), (draws + base[:, None]).ravel())
        cand = np.clip(flat.reshape(n_init, n_trials) - (rows * n)[:, None], 0, n - 1)
        cand_d = np.maximum(
            x_sq[cand][..., None] + x_sq[None, None, :] - 2.0 * (x[cand] @ x.T), 0.0
        )  # (n_init, n_trials, n)
        np.minimum(cand_d, closest[:, None, :], out=cand_d)
        best = np.argmin(cand_d.sum(axis=2), axis=1)  # the candidate that lowers the potential most
        centers[:, c] = x[cand[rows, best]]
        closest = cand_d[rows, best]
    return centers


def _assign(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre per point and restart: labels (n, R) and squared-distance offsets."""
    n_rest, k, d = centers.shape
    dist = x @ (-2.0 * centers.reshape(n_rest * k, d)).T  # (n, R*k); |x|^2 omitted (constant)
    dist += np.einsum("ij,ij->i", centers.reshape(-1, d), centers.reshape(-1, d))
    dist = dist.reshape(x.shape[0], n_rest, k)
    return dist.argmin(axis=2), dist


def _update(
    x: np.ndarray, labels: np.ndarray, dist: np.ndarray, old: np.ndarray, x_sq: np.ndarray
) -> np.ndarray:
    """New centres (R, k, d) from labels (n, R); empty clusters move to far points."""
    n, d = x.shape
    n_rest, k, _ = old.shape
    bins = (labels + (k * np.arange(n_rest))[None, :]).ravel()
    counts = np.bincount(bins, minlength=n_rest * k)
    # Cluster sums of every restart at once: a sparse (n, R*k) assignment matrix, one entry
    # per point and restart, times x (several times faster than a dense one-hot product).
    assign = sp.csr_matrix(
        (np.ones(n * n_rest, dtype=x.dtype), bins, np.arange(0, n * n_rest + 1, n_rest)),
        shape=(n, n_rest * k),
    )
    sums = np.asarray(assign.T @ x)  # (R*k, d)
    centers = (sums / np.maximum(counts, 1)[:, None]).reshape(n_rest, k, d)
    if counts.min() == 0:
        empty = np.argwhere(counts.reshape(n_rest, k) == 0)
        # As scikit-learn: an empty cluster takes the point farthest from its own centre.
        own = np.take_along_axis(dist, labels[:, :, None], axis=2)[:, :, 0] + x_sq[:, None]
        for r in np.unique(empty[:, 0]):
            ks = empty[empty[:, 0] == r, 1]
            far = np.argsort(-own[:, r], kind="stable")[: len(ks)]
            centers[r, ks] = x[far]
    return centers


def batched_kmeans(
    x: np.ndarray,
    n_clusters: int,
    *,
    n_init: int = 25,
    seed: SeedLike = None,
    max_iter: int = _MAX_ITER,
    tol: float = _TOL,
) -> np.ndarray:
    """k-means with ``n_init`` k-means++ restarts run simultaneously.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
    n_clusters : int
    n_init : int, default=25
    seed : int, SeedSequence, Generator or None
    max_iter : int, default=300
    tol : float, default=1e-4
        Relative to the mean feature variance, as scikit-learn's ``tol``. A restart also
        stops once at most 0.1% of the samples change cluster in an iteration.

    Returns
    -------
    ndarray of int64, shape (n_init, n_samples)
        The final labels of every restart (callers choose among them).
    """
    rng = np.random.default_rng(seed)
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    if x64.ndim != 2 or x64.shape[0] == 0 or not np.isfinite(x64).all():
        raise ValueError(f"x must be a finite 2-D array (n_samples, n_features), got {x64.shape}")
    n = x64.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}], got {n_clusters}")
    if n_init < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init}")
    centers64 = _kmeanspp(x64, n_clusters, n_init, rng)
    # Lloyd in float32: the distances only decide the nearest centre, and halving the memory
    # traffic nearly halves the time.
    xs = x64.astype(np.float32)
    x_sq = np.einsum("ij,ij->i", xs, xs)
    centers = centers64.astype(np.float32)
    tol_abs = float(tol * np.mean(np.var(x64, axis=0)))
    active = np.arange(n_init)
    labels = np.full((n, n_init), -1, dtype=np.int64)
    # A restart stops when its centres move less than tol (scikit-learn's rule) or when at
    # most 0.1% of the points changed cluster: such last moves change the n-cut in the 4th
    # decimal, and a few restarts crawling for tens of iterations would dominate the time.
    max_changed = int(_SETTLED * n)
    for _ in range(max_iter):
        lab, dist = _assign(xs, centers[active])
        changed = np.count_nonzero(lab != labels[:, active], axis=0)
        labels[:, active] = lab
        new = _update(xs, lab, dist, centers[active], x_sq)
        shift = ((new - centers[active]) ** 2).sum(axis=(1, 2))
        centers[active] = new
        active = active[~((changed <= max_changed) | (shift <= tol_abs))]
        if active.size == 0:
            break
    final, _ = _assign(xs, centers)
    return np.ascontiguousarray(final.T)


def inertia_batch(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """k-means inertia of each partition: the sum of squared distances to the cluster means.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
    labels : ndarray of int, shape (n_partitions, n_samples), labels in ``0..K-1``

    Returns
    -------
    ndarray of float64, shape (n_partitions,)
        ``sum_c sum_{i in c} |x_i - mean_c|^2 = sum_i |x_i|^2 - sum_c |sum_{i in c} x_i|^2 / n_c``
        (in float64, whatever precision the iterations ran in).
    """
    x64 = np.asarray(x, dtype=np.float64)
    total = float(np.einsum("ij,ij->", x64, x64))
    out = np.empty(labels.shape[0])
    k = int(labels.max()) + 1 if labels.size else 0
    for r, lab in enumerate(labels):
        counts = np.bincount(lab, minlength=k).astype(np.float64)
        sums = np.stack([np.bincount(lab, weights=x64[:, j], minlength=k) for j in range(x64.shape[1])], axis=1)
        used = counts > 0
        out[r] = total - float((np.einsum("ij,ij->i", sums[used], sums[used]) / counts[used]).sum())
    return np.maximum(out, 0.0)

