"""k-means: the batched implementation against a frozen copy of its first version.

The frozen copy below is ``harness/kmeans.py`` as of commit 463fa6d, before the speed-up:
the same code, without its comments and with renamed functions. The current implementation
reorganises the work (blocked distances, a reduction instead of ``np.argmin``, reused sparse
matrices) but performs the same floating-point operations on the same operands, so labels
and inertias must be bit-identical, not just close.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import harness.cluster as cluster
from harness.cluster import cluster_graph, network_graph, spectral_embedding
from harness.graph import remove_isolated, weights_to_graph
from harness.kmeans import (
    ROW_BLOCK,
    ClusterSums,
    NearestCentre,
    batched_kmeans,
    blas_threads,
    centre_distances,
    inertia_batch,
)

# ---------------------------------------------------------------- frozen copy (463fa6d)

_FROZEN_MAX_ITER = 300
_FROZEN_TOL = 1e-4
_FROZEN_SETTLED = 1e-3


def _frozen_kmeanspp(x, k, n_init, rng):
    n, d = x.shape
    n_trials = 2 + int(np.log(k))
    x_sq = np.einsum("ij,ij->i", x, x)
    rows = np.arange(n_init)
    centers = np.empty((n_init, k, d), dtype=x.dtype)
    first = rng.integers(n, size=n_init)
    centers[:, 0] = x[first]
    closest = np.maximum(x_sq[first][:, None] + x_sq[None, :] - 2.0 * (x[first] @ x.T), 0.0)
    for c in range(1, k):
        cums = np.cumsum(closest, axis=1)
        if not (cums[:, -1] > 0).all():
            cums = np.where(cums[:, -1:] > 0, cums, np.arange(1, n + 1) / n)
        base = np.concatenate([[0.0], np.cumsum(cums[:, -1])[:-1]])
        draws = rng.random((n_init, n_trials)) * cums[:, -1:]
        flat = np.searchsorted((cums + base[:, None]).ravel(), (draws + base[:, None]).ravel())
        cand = np.clip(flat.reshape(n_init, n_trials) - (rows * n)[:, None], 0, n - 1)
        cand_d = np.maximum(
            x_sq[cand][..., None] + x_sq[None, None, :] - 2.0 * (x[cand] @ x.T), 0.0
        )
        np.minimum(cand_d, closest[:, None, :], out=cand_d)
        best = np.argmin(cand_d.sum(axis=2), axis=1)
        centers[:, c] = x[cand[rows, best]]
        closest = cand_d[rows, best]
    return centers


def _frozen_assign(x, centers):
    n_rest, k, d = centers.shape
    dist = x @ (-2.0 * centers.reshape(n_rest * k, d)).T
    dist += np.einsum("ij,ij->i", centers.reshape(-1, d), centers.reshape(-1, d))
    dist = dist.reshape(x.shape[0], n_rest, k)
    return dist.argmin(axis=2), dist


def _frozen_update(x, labels, dist, old, x_sq):
    n, d = x.shape
    n_rest, k, _ = old.shape
    bins = (labels + (k * np.arange(n_rest))[None, :]).ravel()
    counts = np.bincount(bins, minlength=n_rest * k)
    assign = sp.csr_matrix(
        (np.ones(n * n_rest, dtype=x.dtype), bins, np.arange(0, n * n_rest + 1, n_rest)),
        shape=(n, n_rest * k),
    )
    sums = np.asarray(assign.T @ x)
    centers = (sums / np.maximum(counts, 1)[:, None]).reshape(n_rest, k, d)
    if counts.min() == 0:
        empty = np.argwhere(counts.reshape(n_rest, k) == 0)
        own = np.take_along_axis(dist, labels[:, :, None], axis=2)[:, :, 0] + x_sq[:, None]
        for r in np.unique(empty[:, 0]):
            ks = empty[empty[:, 0] == r, 1]
            far = np.argsort(-own[:, r], kind="stable")[: len(ks)]
            centers[r, ks] = x[far]
    return centers


def frozen_batched_kmeans(x, n_clusters, *, n_init=25, seed=None, max_iter=300, tol=1e-4):
    rng = np.random.default_rng(seed)
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    n = x64.shape[0]
    centers64 = _frozen_kmeanspp(x64, n_clusters, n_init, rng)
    xs = x64.astype(np.float32)
    x_sq = np.einsum("ij,ij->i", xs, xs)
    centers = centers64.astype(np.float32)
    tol_abs = float(tol * np.mean(np.var(x64, axis=0)))
    active = np.arange(n_init)
    labels = np.full((n, n_init), -1, dtype=np.int64)
    max_changed = int(_FROZEN_SETTLED * n)
    for _ in range(max_iter):
        lab, dist = _frozen_assign(xs, centers[active])
        changed = np.count_nonzero(lab != labels[:, active], axis=0)
        labels[:, active] = lab
        new = _frozen_update(xs, lab, dist, centers[active], x_sq)
        shift = ((new - centers[active]) ** 2).sum(axis=(1, 2))
        centers[active] = new
        active = active[~((changed <= max_changed) | (shift <= tol_abs))]
        if active.size == 0:
            break
    final, _ = _frozen_assign(xs, centers)
    return np.ascontiguousarray(final.T)


def frozen_inertia_batch(x, labels):
    x64 = np.asarray(x, dtype=np.float64)
    total = float(np.einsum("ij,ij->", x64, x64))
    out = np.empty(labels.shape[0])
    k = int(labels.max()) + 1 if labels.size else 0
    for r, lab in enumerate(labels):
        counts = np.bincount(lab, minlength=k).astype(np.float64)
        sums = np.stack(
            [np.bincount(lab, weights=x64[:, j], minlength=k) for j in range(x64.shape[1])],
            axis=1,
        )
        used = counts > 0
        out[r] = total - float(
            (np.einsum("ij,ij->i", sums[used], sums[used]) / counts[used]).sum()
        )
    return np.maximum(out, 0.0)


# ---------------------------------------------------------------- inputs


def pruned_mlp(sizes, seed, keep=0.1):
    """Glorot-uniform weights keeping the largest ``keep`` fraction of |w| per layer."""
    rng = np.random.default_rng(seed)
    ws = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.uniform(-1.0, 1.0, (a, b)) * np.sqrt(6.0 / (a + b))
        if keep < 1.0:
            cut = np.quantile(np.abs(w), 1.0 - keep)
            w[np.abs(w) < cut] = 0.0
        ws.append(w)
    return ws


def embedding_of(ws, k, seed=0):
    kept, _ = remove_isolated(ws)
    emb, _ = spectral_embedding(weights_to_graph(kept), k, seed=seed)
    return emb


def planted(sizes, n_modules, seed):
    rng = np.random.default_rng(seed)
    modules = [np.arange(s) % n_modules for s in sizes]
    ws = []
    for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        same = modules[layer][:, None] == modules[layer + 1][None, :]
        ws.append(np.where(same, 1.0, 0.05) * rng.uniform(0.5, 1.5, (a, b)))
    return ws


def _inputs():
    rng = np.random.default_rng(0)
    grid = rng.integers(-3, 4, size=(400, 3)).astype(np.float64)  # many exact ties
    blobs = rng.normal(size=(6, 4))[np.repeat(np.arange(6), 50)] * 5 + rng.normal(size=(300, 4))
    noisy = rng.normal(size=(500, 8))
    return {
        "pruned-mlp": lambda k: embedding_of(pruned_mlp([400, 300, 300, 10], 1), k),
        "dense-mlp": lambda k: embedding_of(pruned_mlp([120, 80, 60, 10], 2, keep=1.0), k),
        "planted": lambda k: embedding_of(planted([60, 48, 36, 12], 6, 3), k),
        "integer-grid": lambda k: grid,
        "blobs": lambda k: blobs,
        "gaussian": lambda k: noisy,
    }


INPUTS = _inputs()

# (input, k, n_init): k = 2, 3, 12, 25 draw 2, 3, 4, 5 k-means++ candidates per step;
# pruned-mlp (1010 points) with 25 restarts of 12 centres goes by blocks of rows.
CASES = [
    ("pruned-mlp", 12, 25),
    ("pruned-mlp", 5, 40),
    ("dense-mlp", 12, 25),
    ("dense-mlp", 3, 7),
    ("planted", 6, 25),
    ("planted", 2, 1),
    ("integer-grid", 12, 25),
    ("integer-grid", 25, 10),
    ("blobs", 6, 25),
    ("gaussian", 12, 100),
    ("gaussian", 25, 3),
]


# ---------------------------------------------------------------- bit-identity


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def blas_limit(request):
    """Run under one BLAS thread (products by row blocks) and under two (whole products)."""
    with threadpool_limits(limits=request.param, user_api="blas"):
        yield request.param


@pytest.mark.parametrize(
    ("name", "k", "n_init"), CASES, ids=[f"{n}-k{k}-r{r}" for n, k, r in CASES]
)
def test_labels_and_inertias_are_bit_identical_to_the_frozen_copy(name, k, n_init, blas_limit):
    x = INPUTS[name](k)
    for seed in (0, 1):
        new = batched_kmeans(x, k, n_init=n_init, seed=seed)
        old = frozen_batched_kmeans(x, k, n_init=n_init, seed=seed)
        assert new.dtype == np.int64 and new.flags.c_contiguous
        np.testing.assert_array_equal(new, old)
        np.testing.assert_array_equal(inertia_batch(x, new), frozen_inertia_batch(x, old))


def test_products_go_by_row_blocks_only_with_one_blas_thread():
    x = np.zeros((10, 2), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        assert NearestCentre(x, 3, 2).row_blocks
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() in (1, 2)  # 1 where BLAS is single-threaded anyway
        assert NearestCentre(x, 3, 2).row_blocks == (blas_threads() == 1)


def test_empty_cluster_relocation_is_bit_identical():
    # Two distinct points and three clusters: every restart has an empty cluster.
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    x += np.random.default_rng(0).normal(scale=1e-3, size=x.shape)
    x[:5] = x[0]  # exact duplicates too
    for seed in range(4):
        np.testing.assert_array_equal(
            batched_kmeans(x, 3, n_init=6, seed=seed),
            frozen_batched_kmeans(x, 3, n_init=6, seed=seed),
        )


def test_more_than_256_clusters_use_argmin_and_agree():
    x = np.random.default_rng(1).normal(size=(320, 3))
    np.testing.assert_array_equal(
        batched_kmeans(x, 260, n_init=2, seed=0), frozen_batched_kmeans(x, 260, n_init=2, seed=0)
    )


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 120),
    d=st.integers(1, 5),
    k=st.integers(1, 9),
    n_init=st.integers(1, 12),
    integer=st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_batched_kmeans_equals_the_frozen_copy_on_random_data(seed, n, d, k, n_init, integer):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, d)).astype(float) if integer else rng.normal(size=(n, d))
    k = min(k, n)
    np.testing.assert_array_equal(
        batched_kmeans(x, k, n_init=n_init, seed=seed),
        frozen_batched_kmeans(x, k, n_init=n_init, seed=seed),
    )


@pytest.mark.parametrize("method", ["fast", "fast_ncut"])
def test_spectral_clustering_is_unchanged(method, blas_limit):
    # The whole "fast" pipeline with the frozen k-means gives the same labels and n-cut.
    for seed, ws in enumerate([pruned_mlp([300, 200, 200, 10], 4), planted([40, 32, 24], 4, 0)]):
        graph = network_graph(ws, 8)
        args = (graph.adjacency, 8)
        kwargs = {"method": method, "seed": seed, "coloring": graph.parity, "scorer": graph.scorer}
        labels, value = cluster_graph(*args, **kwargs)
        with (
            mock.patch.object(cluster, "batched_kmeans", frozen_batched_kmeans),
            mock.patch.object(cluster, "inertia_batch", frozen_inertia_batch),
        ):
            old_labels, old_value = cluster_graph(*args, **kwargs)
        np.testing.assert_array_equal(labels, old_labels)
        assert value == old_value


# ---------------------------------------------------------------- the parts


@pytest.mark.parametrize("n_cols", [12, 36, 300, 1200])
def test_row_blocks_of_a_float32_product_are_bit_identical(n_cols):
    # The assumption behind blocked distances (see harness.kmeans.NearestCentre): BLAS computes
    # the rows of a block starting at a multiple of ROW_BLOCK exactly as in the whole product.
    rng = np.random.default_rng(n_cols)
    x = embedding_of(pruned_mlp([400, 300, 300, 10], 1), 12).astype(np.float32)
    b = (-2.0 * rng.normal(scale=float(np.abs(x).mean()), size=(n_cols, 12))).astype(np.float32).T
    step = ROW_BLOCK
    with threadpool_limits(limits=1, user_api="blas"):
        whole = x @ b
        for start in range(0, x.shape[0], step):
            np.testing.assert_array_equal(x[start : start + step] @ b, whole[start : start + step])


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    n_sets=st.integers(1, 6),
    k=st.integers(1, 12),
    d=st.integers(1, 4),
    blocked=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_nearest_is_argmin_with_ties_to_the_first_centre(seed, n, n_sets, k, d, blocked):
    # Small integers: exact float32 distances with many ties between centres.
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    centers = rng.integers(-2, 3, size=(n_sets, k, d)).astype(np.float32)
    centers[:, -1] = centers[:, 0]  # an exact duplicate centre in every set
    prod, c_sq = centre_distances(x, centers.reshape(-1, d))
    expected = (prod + c_sq).reshape(n, n_sets, k).argmin(axis=2)
    # Blocks of 7 points whatever the size (exact: small integers), or the default blocking.
    blocks = {"row_block": 7, "block_entries": 0} if blocked else {}
    labels = NearestCentre(x, k, n_sets + 1, **blocks)(centers)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 80),
    n_sets=st.integers(1, 5),
    k=st.integers(1, 7),
    dtype=st.sampled_from([np.float32, np.float64]),
)
@settings(max_examples=50, deadline=None)
def test_cluster_sums_add_each_clusters_points_in_order(seed, n, n_sets, k, dtype):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(dtype)
    labels = rng.integers(0, k, size=(n, n_sets)).astype(np.uint8)
    sums_of = ClusterSums(x, k)
    for _ in range(2):  # the second call rewrites the reused matrix
        sums, counts = sums_of(labels)
        expected = np.zeros((n_sets * k, 3), dtype=dtype)
        # np.add.at adds the rows one after the other, in index order.
        np.add.at(expected, (labels + k * np.arange(n_sets)).ravel(), np.repeat(x, n_sets, axis=0))
        assert sums.dtype == dtype and counts.dtype == np.float64
        np.testing.assert_array_equal(sums, expected)
        np.testing.assert_array_equal(counts, np.bincount((labels + k * np.arange(n_sets)).ravel(), minlength=n_sets * k))
        labels = rng.integers(0, k, size=(n, n_sets)).astype(np.uint8)


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    n_part=st.integers(1, 6),
    k=st.integers(1, 6),
)
@settings(max_examples=50, deadline=None)
def test_inertia_batch_equals_scoring_one_by_one(seed, n, n_part, k):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    labels = rng.integers(0, k, size=(n_part, n))  # some clusters may be unused
    got = inertia_batch(x, labels)
    np.testing.assert_array_equal(got, frozen_inertia_batch(x, labels))
    means_sq = [
        sum(((x[lab == c] - x[lab == c].mean(axis=0)) ** 2).sum() for c in np.unique(lab))
        for lab in labels
    ]
    np.testing.assert_allclose(got, means_sq, rtol=1e-9, atol=1e-9)
