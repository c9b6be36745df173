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

Exactness and speed
-------------------
Every floating-point operation that decides a label or an inertia is the one the first
version of this module ran, on the same operands in the same order, so the results are
bit-identical to it (``tests/test_kmeans.py`` keeps a frozen copy and compares). The speed
comes from how the work around those operations is organised:

* The nearest centre (:class:`NearestCentre`). ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` and ``|x|^2``
  is the same for every centre, so the nearest centre minimises ``|c|^2 - 2 x.c``: one
  float32 matrix product for all restarts, then ``+ |c|^2``. ``np.argmin`` over the K
  centres makes one short call per (point, restart) pair, half of the old iteration; here
  the minimum is a vectorised reduction over a centre-major copy of a block of distances
  that stays in cache, and the label the first centre at that minimum, so ties go to the
  first centre exactly as with ``argmin``.
* The cluster sums (:class:`ClusterSums`) stay a sparse one-hot product, which adds a
  cluster's points in index order; its matrix is built once per number of running
  restarts and its indices rewritten in place, and a column of ones gives the sizes.
* Labels are ``uint8`` (K <= 256) and kept only for the restarts still running.
* k-means++ scores its candidates a block of restarts at a time in reused buffers.
* :func:`inertia_batch` scores all partitions with one sparse product (float64), instead
  of ``n_features`` calls of ``np.bincount`` per partition.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.sparse as sp

from harness.seeding import SeedLike

__all__ = [
    "BLOCK_ENTRIES",
    "ROW_BLOCK",
    "ClusterSums",
    "NearestCentre",
    "batched_kmeans",
    "blas_threads",
    "centre_distances",
    "inertia_batch",
]

_MAX_ITER = 300
_TOL = 1e-4
_SETTLED = 1e-3  # a restart whose labels change for at most this fraction has settled
#: The nearest-centre search (:class:`NearestCentre`) takes blocks of :data:`ROW_BLOCK` points
#: when the distances of all points to all centres have more than this many entries (1 MiB of
#: float32), so that a block's distances stay in cache through the passes over them.
BLOCK_ENTRIES = 262_144
#: Points per block of the nearest-centre search: ``3 * 2**7``, see :class:`NearestCentre`.
ROW_BLOCK = 384
# float64 entries per block of k-means++ candidate distances (1 MiB).
_KPP_BLOCK = 131_072


def _kmeanspp(x: np.ndarray, k: int, n_init: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding for ``n_init`` restarts at once; centres (n_init, k, d).

    At each step every restart draws ``2 + log k`` candidates with probability proportional
    to the squared distance to its nearest centre so far and keeps the candidate that lowers
    the potential (the sum of those squared distances) most, as scikit-learn.
    """
    n, d = x.shape
    n_trials = 2 + int(np.log(k))
    x_sq = np.einsum("ij,ij->i", x, x)
    rows = np.arange(n_init)
    centers = np.empty((n_init, k, d), dtype=x.dtype)
    first = rng.integers(n, size=n_init)
    centers[:, 0] = x[first]
    closest = np.maximum(x_sq[first][:, None] + x_sq[None, :] - 2.0 * (x[first] @ x.T), 0.0)
    # Candidates are scored a block of restarts at a time, in two reused buffers: one
    # (n_init, n_trials, n) array per step would stream through memory several times.
    per_block = max(1, min(n_init, _KPP_BLOCK // (n_trials * n)))
    cand_d = np.empty((per_block, n_trials, n))
    scratch = np.empty_like(cand_d)
    xt = x.T
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
        chosen = np.empty(n_init, dtype=np.intp)
        for start in range(0, n_init, per_block):
            stop = min(n_init, start + per_block)
            blk, tmp = cand_d[: stop - start], scratch[: stop - start]
            ids = cand[start:stop]
            # max(|a|^2 + |x|^2 - 2 a.x, 0): the squared distance of every point to each
            # candidate, evaluated in the same order of operations as one expression.
            np.matmul(x[ids], xt, out=blk)
            blk *= 2.0
            np.add(x_sq[ids][..., None], x_sq, out=tmp)
            np.subtract(tmp, blk, out=blk)
            np.maximum(blk, 0.0, out=blk)
            np.minimum(blk, closest[start:stop, None, :], out=blk)
            # The candidate that lowers the potential most (the first on ties).
            best = np.argmin(blk.sum(axis=2), axis=1)
            chosen[start:stop] = ids[np.arange(stop - start), best]
            closest[start:stop] = blk[np.arange(stop - start), best]
        centers[:, c] = x[chosen]
    return centers


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # scans the loaded libraries once (milliseconds)


def blas_threads() -> int:
    """The most threads a BLAS library of this process may use now (20 us)."""
    info = _blas_controller().select(user_api="blas").info()
    return max((int(lib["num_threads"]) for lib in info), default=1)


def centre_distances(
    x: np.ndarray, flat: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``-2 x.c`` (n, R*k) and ``|c|^2`` (R*k,) for every point and centre, in float32.

    ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` and ``|x|^2`` is the same for every centre, so
    ``|c|^2 - 2 x.c`` orders the centres of each point as the squared distance does: one
    matrix product for all restarts. ``out`` (n * R * k,) is a buffer for the product.
    """
    b = (-2.0 * flat).T
    prod = x @ b if out is None else np.matmul(x, b, out=out.reshape(x.shape[0], b.shape[1]))
    return prod, np.einsum("ij,ij->i", flat, flat)


class NearestCentre:
    """The nearest centre of every point, for one or many sets of k centres.

    For a block of points the distances ``|c|^2 - 2 x.c`` (:func:`centre_distances`) are copied
    centre-major, ``d[j, point, restart]``, so that every centre's plane is contiguous;
    then ``low = min_j d[j]`` is one reduction over the planes, and the label is the first
    ``j`` with ``d[j] == low``: the largest rank ``k - j`` among the centres at the minimum,
    another reduction (over ``uint8`` ranks masked by ``d[j] == low``). All of these are
    vectorised loops over contiguous (point, restart) pairs, about twice as fast as
    ``np.argmin`` along the centre axis. A block of ``row_block`` points (or all of them,
    when the product has at most ``block_entries`` entries) keeps its distances in cache
    through these passes.

    With one BLAS thread (as in null-sample workers) the product too is computed a block
    of rows at a time, which is exact: BLAS computes a row of ``x @ B`` by the same
    operations whichever other rows are in the call, provided the blocks start at a
    multiple of its kernel's row count (a row's micro-kernel, and so its order of summation,
    is fixed by its position modulo that count; observed with OpenBLAS and checked by
    ``tests/test_kmeans.py``). :data:`ROW_BLOCK` ``= 3 * 2**7`` is a multiple of the row counts of
    common kernels (4, 6, 8, 12, 16, 24, 32, 48, 64). Several BLAS threads split the rows of
    a call among themselves at places that depend on its size, so then the product is
    computed whole, as before, and only the passes after it go by blocks.
    The buffers are allocated once, for up to ``max_sets`` sets of centres.

    Parameters
    ----------
    x : ndarray of float32, shape (n, d)
        The points.
    k : int
        Centres per set.
    max_sets : int
        The most sets of centres one call gets.
    row_block : int, default=ROW_BLOCK
        Points per block. Blocked products are exact only for a multiple of the BLAS kernel's
        row count (the default), or for exactly representable distances.
    block_entries : int, default=BLOCK_ENTRIES
        Distance matrices with more entries than this go by blocks.

    Attributes
    ----------
    row_blocks : bool
        Whether the product, too, is computed a block of rows at a time (one BLAS thread).
    """

    def __init__(self, x: np.ndarray, k: int, max_sets: int, *, row_block: int = ROW_BLOCK,
                 block_entries: int = BLOCK_ENTRIES) -> None:
        self.x, self.k = x, k
        self.row_block, self.block_entries = row_block, block_entries
        n = x.shape[0]
        # Row blocks of the product are exact with one BLAS thread only: several threads
        # split the rows of a call among themselves at points that depend on its size.
        self.row_blocks = blas_threads() == 1
        entries = min(n * max_sets * k, max(block_entries, row_block * max_sets * k))
        self._prod = np.empty(entries if self.row_blocks else n * max_sets * k, np.float32)
        self._planes = np.empty(entries, dtype=np.float32)
        self._ties = np.empty(entries, dtype=bool)
        self._codes = np.empty(entries, dtype=np.uint8)
        self._low = np.empty(entries // k, dtype=np.float32)
        self._rank = (k - np.arange(k)).astype(np.uint8)[:, None, None]  # k .. 1

    def __call__(self, centers: np.ndarray) -> np.ndarray:
        """Labels of the nearest centre, the first of tied ones (as ``np.argmin``).

        Parameters
        ----------
        centers : ndarray of float32, shape (R, k, d)
            R sets of k centres (``R <= max_sets``).

        Returns
        -------
        ndarray of shape (n, R)
            ``argmin_j |c_rj|^2 - 2 x_i.c_rj``; uint8 for k <= 256, else intp.
        """
        x, k = self.x, self.k
        n = x.shape[0]
        n_rest, _, d = centers.shape
        flat = centers.reshape(n_rest * k, d)
        if k > 256:
            prod, c_sq = centre_distances(x, flat)
            prod += c_sq
            return prod.reshape(n, n_rest, k).argmin(axis=2)
        labels = np.empty((n, n_rest), dtype=np.uint8)
        rows = n if n * n_rest * k <= self.block_entries else self.row_block
        whole = None
        if rows < n and not self.row_blocks:
            whole, c_sq = centre_distances(x, flat, self._prod[: n * n_rest * k])
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            size = (stop - start) * n_rest
            shape = (k, stop - start, n_rest)
            if whole is None:
                block, c_sq = centre_distances(x[start:stop], flat, self._prod[: k * size])
            else:
                block = whole[start:stop]
            block += c_sq
            planes = self._planes[: k * size].reshape(shape)
            # One contiguous plane per centre (numpy runs this copy as one strided loop).
            np.copyto(planes, block.reshape(-1, n_rest, k).transpose(2, 0, 1))
            low = np.minimum.reduce(planes, axis=0, out=self._low[:size].reshape(shape[1:]))
            # The first centre at the minimum has the largest rank k - j among those at it.
            ties = np.equal(planes, low, out=self._ties[: k * size].reshape(shape))
            codes = np.multiply(
                ties.view(np.uint8), self._rank, out=self._codes[: k * size].reshape(shape)
            )
            lab = np.maximum.reduce(codes, axis=0, out=labels[start:stop])
            np.subtract(k, lab, out=lab)
        return labels


class ClusterSums:
    """Sums and sizes of the clusters of many labellings of the same points.

    Row ``r * k + j`` of the result is cluster j of labelling r. The sums are a sparse
    (R*k, n) one-hot matrix times ``x``: scipy adds the points of a cluster in index order,
    one after the other in the dtype of ``x`` (as ``np.bincount`` does in float64), several
    times faster than a dense one-hot product. A column of ones appended to ``x`` sums to
    the cluster sizes (exact below 2**24 points in float32, 2**53 in float64). The matrix
    is built once per number of labellings and its indices rewritten in place for each
    labelling: building a scipy matrix costs more than the product for a few restarts.
    """

    def __init__(self, x: np.ndarray, k: int) -> None:
        n = x.shape[0]
        self._ones = n <= (2**24 if x.dtype == np.float32 else 2**53)
        self.x = np.hstack([x, np.ones((n, 1), dtype=x.dtype)]) if self._ones else x
        self.k = k
        self._one_hot: sp.csc_matrix | None = None
        self._offsets: np.ndarray = np.zeros(0, dtype=np.int32)

    def __call__(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sums (R*k, d), in the dtype of ``x``, and sizes (R*k,), float64, of labels (n, R)."""
        n, n_rest = labels.shape
        size = n_rest * self.k
        if self._one_hot is None or self._one_hot.shape[0] != size:
            # int32 index arrays when they fit, which scipy takes as they are (int64 ones it
            # scans, to see whether they fit int32).
            idx = np.int32 if n * n_rest < np.iinfo(np.int32).max else np.int64
            self._offsets = self.k * np.arange(n_rest, dtype=idx)
            self._one_hot = sp.csc_matrix(
                (
                    np.ones(n * n_rest, dtype=self.x.dtype),
                    np.zeros(n * n_rest, dtype=idx),
                    np.arange(0, n * n_rest + 1, n_rest, dtype=idx),
                ),
                shape=(size, n),
            )
        # Column i (point i) holds one entry per labelling r, in row r * k + labels[i, r].
        rows = self._one_hot.indices
        np.add(labels, self._offsets, out=rows.reshape(n, n_rest))
        sums = np.asarray(self._one_hot @ self.x)
        if self._ones:
            return sums[:, :-1], sums[:, -1].astype(np.float64)
        return sums, np.bincount(rows, minlength=size).astype(np.float64)


def _relocate_empty(
    x: np.ndarray,
    x_sq: np.ndarray,
    centers: np.ndarray,
    labels: np.ndarray,
    counts: np.ndarray,
    means: np.ndarray,
) -> None:
    """Move each empty cluster of ``means`` (in place) to a point far from its own centre.

    As scikit-learn: the empty clusters of a restart take, in order, the points with the
    largest squared distance to the centre they were assigned to (``centers``, before the
    update). Rare, so the distances are recomputed here (the same values, bit for bit).
    """
    n_rest, k, d = centers.shape
    prod, c_sq = centre_distances(x, centers.reshape(n_rest * k, d))
    prod += c_sq
    own = np.take_along_axis(
        prod.reshape(x.shape[0], n_rest, k), labels.astype(np.intp)[:, :, None], axis=2
    )[:, :, 0] + x_sq[:, None]
    empty = np.argwhere(counts == 0)
    for r in np.unique(empty[:, 0]):
        ks = empty[empty[:, 0] == r, 1]
        far = np.argsort(-own[:, r], kind="stable")[: len(ks)]
        means[r, ks] = x[far]


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
    k = int(n_clusters)
    centers64 = _kmeanspp(x64, k, n_init, rng)
    # Lloyd in float32: the distances only decide the nearest centre, and halving the memory
    # traffic nearly halves the time.
    xs = x64.astype(np.float32)
    x_sq = np.einsum("ij,ij->i", xs, xs)
    centers = centers64.astype(np.float32)
    tol_abs = float(tol * np.mean(np.var(x64, axis=0)))
    active = np.arange(n_init)
    previous: np.ndarray | None = None  # labels (n, len(active)) of the last iteration
    # A restart stops when its centres move less than tol (scikit-learn's rule) or when at
    # most 0.1% of the points changed cluster: such last moves change the n-cut in the 4th
    # decimal, and a few restarts crawling for tens of iterations would dominate the time.
    max_changed = int(_SETTLED * n)
    nearest, cluster_sums = NearestCentre(xs, k, n_init), ClusterSums(xs, k)
    for _ in range(max_iter):
        current = centers[active]
        labels = nearest(current)
        if previous is None:
            changed = np.full(active.size, n)
        else:
            changed = np.count_nonzero(labels != previous, axis=0)
        sums, counts = cluster_sums(labels)
        # The float32 sums divided in float64; an empty cluster (mean 0 here) is relocated.
        means = (sums / np.maximum(counts, 1.0)[:, None]).reshape(active.size, k, -1)
        counts = counts.reshape(active.size, k)
        if counts.min() == 0:
            _relocate_empty(xs, x_sq, current, labels, counts, means)
        shift = ((means - current) ** 2).sum(axis=(1, 2))
        centers[active] = means
        running = ~((changed <= max_changed) | (shift <= tol_abs))
        active = active[running]
        if active.size == 0:
            break
        previous = labels if running.all() else labels[:, running]
    return np.array(nearest(centers).T, dtype=np.int64, order="C")


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

    Notes
    -----
    All partitions are scored at once: the cluster sums of partition ``r`` are the rows
    ``r * K .. r * K + K - 1`` of one sparse one-hot product, which adds a cluster's points in
    index order, as ``np.bincount`` does, so every inertia is the same float as when the
    partitions are scored one by one.
    """
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    n_part = labels.shape[0]
    total = float(np.einsum("ij,ij->", x64, x64))
    if labels.size == 0:
        return np.full(n_part, max(total, 0.0))
    k = int(labels.max()) + 1
    sums, counts = ClusterSums(x64, k)(np.ascontiguousarray(labels.T))
    sums = np.ascontiguousarray(sums).reshape(n_part, k, -1)
    counts = counts.reshape(n_part, k)
    # |sum_c|^2 / n_c per cluster, summed over the clusters present: a row sum when all are
    # (the same pairwise sum as the partition's own array), the rare others one by one.
    sq = np.einsum("rkd,rkd->rk", sums, sums)
    used = counts > 0
    full = used.all(axis=1)
    explained = np.empty(n_part)
    explained[full] = (sq[full] / counts[full]).sum(axis=1)
    for r in np.flatnonzero(~full):
        explained[r] = (sq[r, used[r]] / counts[r, used[r]]).sum()
    return np.maximum(total - explained, 0.0)
