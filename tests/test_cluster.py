"""n-cut, spectral embedding, k-means and spectral clustering (both methods)."""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from harness.cluster import (
    METHODS,
    ClusteringResult,
    DisconnectedGraphWarning,
    NegligibleClusterWarning,
    ave_in_out,
    batched_kmeans,
    cluster_weights,
    default_n_init,
    ncut,
    ncut_batch,
    spectral_clustering,
    spectral_embedding,
)
from harness.embedding import two_coloring
from harness.graph import kept_units, normalized_abs, weights_to_graph


def planted_network(sizes, n_modules, seed=0, within=1.0, between=0.03, density=1.0):
    """MLP weights with modules: unit i of every layer is in module i % n_modules."""
    rng = np.random.default_rng(seed)
    ws, modules = [], [np.arange(s) % n_modules for s in sizes]
    for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        same = modules[layer][:, None] == modules[layer + 1][None, :]
        scale = np.where(same, within, between) * (rng.random((a, b)) < density)
        ws.append(scale * rng.uniform(0.5, 1.5, (a, b)) * rng.choice([-1.0, 1.0], (a, b)))
    return ws, np.concatenate(modules)


def random_graph(n, p, seed):
    rng = np.random.default_rng(seed)
    a = np.triu((rng.random((n, n)) < p) * rng.uniform(0.1, 2.0, (n, n)), 1)
    return a + a.T


def same_partition(a, b):
    return adjusted_rand_score(a, b) == 1.0


# ---------------------------------------------------------------- n-cut


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["gnp", "mlp"])
def test_ncut_matches_networkx(seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "gnp":
        g = nx.gnp_random_graph(20, 0.8, seed=seed)
        for u, v in g.edges:
            g[u][v]["weight"] = float(rng.uniform(0.1, 3.0))
        adj = nx.to_scipy_sparse_array(g, nodelist=range(20), weight="weight")
    else:
        ws = [rng.normal(size=(6, 5)), rng.normal(size=(5, 4))]
        adj = weights_to_graph(ws)
        g = nx.from_scipy_sparse_array(adj)
    n = adj.shape[0]
    labels = rng.integers(0, 2, size=n)
    labels[:2] = [0, 1]  # both sides non-empty
    side = [i for i in range(n) if labels[i] == 0]
    other = [i for i in range(n) if labels[i] == 1]
    expected = nx.normalized_cut_size(g, side, other, weight="weight")
    assert ncut(adj, labels, eps=0.0) == pytest.approx(expected, rel=1e-12)


def test_ncut_hand_values_of_the_original_tests():
    w = [np.array([[12, -1.3], [0, 7.4]]), np.array([[-8.9, 0.15], [0.23, -5.7]])]
    assert ncut(weights_to_graph(w), [0, 1, 0, 1, 0, 1]) == pytest.approx(0.098897, abs=1e-6)
    w1 = np.array([[5.4, 0.03, 0, 0], [0, 0, -0.4, 5.5], [-12, 0, 4.8, -0.07], [0, 6.3, 0.001, 7]])
    w2 = np.array([[-13.3, -0.4, 6, 0.1], [0.7, -8, 0, -5.8], [7.4, 0.3, -15, 0], [0, 0, 0, -12.3]])
    assert ncut(weights_to_graph([w1, w2]), [1, 0] * 6) == pytest.approx(0.037213, abs=1e-6)


def test_ncut_by_hand_with_unlabelled_nodes():
    # Path 0 -1- 1 -2- 2 -3- 3. Node 3 is "no cluster" (-1): its edge still counts in the
    # cut and volume of cluster {2}.
    a = sp.diags([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], [1, -1]).tocsr()
    labels = np.array([0, 0, 1, -1])
    # cluster 0: cut 2, vol 1 + 3 = 4; cluster 1: cut 2 + 3 = 5, vol 5.
    assert ncut(a, labels, eps=0.0) == pytest.approx(2 / 4 + 5 / 5)
    assert ncut(a, [-1, -1, -1, -1]) == 0.0


def test_ncut_eps_and_zero_volume_cluster():
    a = np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]])
    # Node 2 has no edges: its cluster has zero volume and contributes 0 even with eps=0.
    assert ncut(a, [0, 0, 1], eps=0.0) == 0.0
    assert ncut(a, [0, 1, 1], eps=0.0) == pytest.approx(2.0)
    assert ncut(a, [0, 1, 1], eps=1.0) == pytest.approx(2 * 1 / 2)


def test_ncut_batch_equals_single():
    adj = sp.csr_matrix(random_graph(30, 0.3, 1))
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 5, size=(7, 30))
    batch = ncut_batch(adj, labels)
    assert batch.shape == (7,)
    np.testing.assert_allclose(batch, [ncut(adj, row) for row in labels], rtol=1e-12)


def test_ncut_self_loops_count_in_volume_only():
    a = np.array([[2.0, 1.0], [1.0, 0.0]])
    # cluster {0}: cut 1, vol 3; cluster {1}: cut 1, vol 1.
    assert ncut(a, [0, 1], eps=0.0) == pytest.approx(1 / 3 + 1)


@given(seed=st.integers(0, 100_000), k=st.integers(1, 6))
@settings(max_examples=50, deadline=None)
def test_ncut_invariances_and_range(seed, k):
    rng = np.random.default_rng(seed)
    n = 12
    a = random_graph(n, 0.4, seed)
    labels = rng.integers(0, k, size=n)
    value = ncut(a, labels)
    assert 0.0 <= value <= k + 1e-9
    perm = rng.permutation(n)
    assert ncut(a[perm][:, perm], labels[perm]) == pytest.approx(value, rel=1e-10, abs=1e-12)
    renamed = rng.permutation(k + 3)[labels]
    assert ncut(a, renamed) == pytest.approx(value, rel=1e-10, abs=1e-12)


def test_ncut_input_errors():
    a = random_graph(4, 1.0, 0)
    with pytest.raises(ValueError, match="shape"):
        ncut(a, [0, 1])
    with pytest.raises(ValueError, match=">= -1"):
        ncut(a, [0, 1, -2, 0])
    with pytest.raises(ValueError, match="symmetric"):
        ncut(np.triu(a), [0, 1, 1, 0])
    with pytest.raises(ValueError, match="negative"):
        ncut(-a, [0, 1, 1, 0])
    with pytest.raises(ValueError, match="square"):
        ncut(np.ones((3, 4)), [0, 1, 1])


def test_ave_in_out():
    assert ave_in_out(6.0, 12) == pytest.approx((1 - 0.5) / (2 * 0.5))
    assert ave_in_out(9.0, 12) == pytest.approx(0.25 / 1.5)
    assert ave_in_out(0.0, 4) == float("inf")


# ---------------------------------------------------------------- embedding


def testtwo_coloring():
    path = sp.diags([np.ones(4), np.ones(4)], [1, -1], shape=(5, 5)).tocsr()
    col = two_coloring(path)
    np.testing.assert_array_equal(col, [False, True, False, True, False])
    triangle = sp.csr_matrix(np.ones((3, 3)) - np.eye(3))
    assert two_coloring(triangle) is None


def _subspace_distance(a, b):
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    return float(np.sin(scipy.linalg.subspace_angles(qa, qb)).max())


@pytest.mark.parametrize(
    ("sizes", "density"),
    [
        pytest.param([20, 16, 12, 8], 1.0, id="dense-gram"),
        pytest.param([330, 310, 320], 1.0, id="arpack-dense-block"),
        pytest.param([330, 310, 320], 0.15, id="arpack-sparse-block"),
    ],
)
def test_embedding_matches_dense_eigenvectors(sizes, density):
    ws, _ = planted_network(sizes, 4, seed=1, density=density)
    adj = weights_to_graph(ws)
    k = 4
    emb, vals = spectral_embedding(adj, k, seed=0)
    d = np.asarray(adj.sum(axis=1)).ravel()
    m = adj.toarray() / np.sqrt(np.outer(d, d))
    n = m.shape[0]
    ref_vals, ref_vecs = scipy.linalg.eigh(m, subset_by_index=[n - k - 1, n - 1])
    assert ref_vals[0] < ref_vals[1] - 0.1  # a clear gap after the top k
    np.testing.assert_allclose(vals, ref_vals[::-1][:k], rtol=1e-6, atol=1e-8)
    assert vals[0] == pytest.approx(1.0)
    # Same subspace as u = D^-1/2 x for the top eigenvectors x.
    assert _subspace_distance(emb, ref_vecs[:, ::-1][:, :k] / np.sqrt(d)[:, None]) < 1e-4
    # Deterministic signs: largest-magnitude entry of each column positive.
    cols = np.arange(k)
    assert (emb[np.abs(emb).argmax(axis=0), cols] > 0).all()


def test_embedding_non_bipartite_graph_matches_sklearn_subspace():
    from sklearn.manifold import spectral_embedding as sk_embedding

    # Two dense communities joined weakly: a clear 2-dimensional top subspace.
    rng = np.random.default_rng(0)
    a = random_graph(40, 0.9, 0)
    a[:20, 20:] *= 0.02
    a[20:, :20] *= 0.02
    assert two_coloring(sp.csr_matrix(a)) is None
    emb, _ = spectral_embedding(a, 2, seed=rng)
    ref = sk_embedding(a, n_components=2, drop_first=False, random_state=0)
    assert _subspace_distance(emb, ref) < 1e-4


# ---------------------------------------------------------------- k-means


def test_batched_kmeans_recovers_blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10.0, size=(5, 3))
    truth = np.repeat(np.arange(5), 40)
    x = centers[truth] + rng.normal(scale=0.3, size=(200, 3))
    labels = batched_kmeans(x, 5, n_init=6, seed=1)
    assert labels.shape == (6, 200)
    assert any(same_partition(row, truth) for row in labels)


def test_batched_kmeans_is_seeded():
    x = np.random.default_rng(0).normal(size=(100, 4))
    np.testing.assert_array_equal(
        batched_kmeans(x, 4, n_init=3, seed=7), batched_kmeans(x, 4, n_init=3, seed=7)
    )


# ---------------------------------------------------------------- spectral clustering


@pytest.mark.parametrize("method", METHODS)
def test_planted_modules_are_recovered(method):
    ws, modules = planted_network([24, 16, 16, 8], 4, seed=2)
    labels = spectral_clustering(weights_to_graph(ws), 4, method=method, seed=0)
    assert same_partition(labels, modules)


def test_fast_and_reference_agree_on_planted_modules():
    ws, _ = planted_network([40, 32, 24, 12], 6, seed=5)
    adj = weights_to_graph(ws)
    fast = spectral_clustering(adj, 6, method="fast", seed=1)
    ref = spectral_clustering(adj, 6, method="reference", seed=1)
    assert same_partition(fast, ref)


@pytest.mark.parametrize("method", METHODS)
def test_block_diagonal_graph_has_zero_ncut(method):
    ws, _ = planted_network([12, 12, 12], 3, seed=0, between=0.0)
    adj = weights_to_graph(ws)
    with pytest.warns(DisconnectedGraphWarning, match="3 connected components"):
        labels = spectral_clustering(adj, 3, method=method, seed=0)
    assert ncut(adj, labels) == pytest.approx(0.0, abs=1e-12)


def test_fast_is_the_reference_estimator_on_random_networks():
    # "fast" computes scikit-learn's estimator (same restarts, lowest inertia): its mean n-cut
    # over random networks matches the reference's, neither systematically lower (as the
    # lowest-n-cut selection of "fast_ncut" is) nor higher.
    rng = np.random.default_rng(3)
    fast, ref, by_ncut = [], [], []
    for i in range(12):
        ws = [rng.uniform(-1, 1, (a, b)) for a, b in [(60, 40), (40, 40), (40, 10)]]
        adj = weights_to_graph(ws)
        fast.append(ncut(adj, spectral_clustering(adj, 6, method="fast", seed=i)))
        ref.append(ncut(adj, spectral_clustering(adj, 6, method="reference", seed=i)))
        by_ncut.append(ncut(adj, spectral_clustering(adj, 6, method="fast_ncut", seed=i)))
    assert np.mean(fast) == pytest.approx(np.mean(ref), rel=0.01)
    assert np.mean(by_ncut) <= np.mean(fast)


@pytest.mark.parametrize("method", METHODS)
def test_clustering_is_reproducible(method):
    ws = [
        np.random.default_rng(0).normal(size=(30, 20)),
        np.random.default_rng(1).normal(size=(20, 10)),
    ]
    adj = weights_to_graph(ws)
    a = spectral_clustering(adj, 5, method=method, seed=3)
    b = spectral_clustering(adj, 5, method=method, seed=3)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= set(range(5))


def test_spectral_clustering_input_errors():
    adj = weights_to_graph(planted_network([6, 5, 4], 2)[0])
    with pytest.raises(ValueError, match=">= 2"):
        spectral_clustering(adj, 1)
    with pytest.raises(ValueError, match="exceeds the number of nodes"):
        spectral_clustering(adj, 16)
    with pytest.raises(ValueError, match=r"method must be one of 'fast', 'reference'"):
        spectral_clustering(adj, 2, method="sklearn")
    with pytest.raises(ValueError, match="integer"):
        spectral_clustering(adj, 2.5)


def test_default_n_init():
    assert default_n_init(1818, "reference") == 25
    assert default_n_init(2001, "reference") == 100
    # "fast" is the paper's estimator: the same restart count as scikit-learn's.
    assert default_n_init(1818, "fast") == 25
    assert default_n_init(5000, "fast") == 100
    assert default_n_init(5000, "fast_ncut") == 8
    with pytest.raises(ValueError, match="method must be one of"):
        default_n_init(10, "exact")


# ---------------------------------------------------------------- cluster_weights


def test_cluster_weights_result():
    ws, modules = planted_network([16, 12, 8], 4, seed=0)
    ws[0][3] = 0.0  # input unit 3 becomes isolated
    res = cluster_weights(ws, 4, seed=0)
    assert isinstance(res, ClusteringResult)
    assert res.labels.shape == (36,)
    assert res.labels[3] == -1 and not res.mask[3]
    assert (res.labels[res.mask] >= 0).all()
    assert same_partition(res.labels[res.mask], modules[res.mask])
    assert res.ncut == pytest.approx(ncut(weights_to_graph(ws), res.labels))
    assert res.ave_in_out == pytest.approx(ave_in_out(res.ncut, 4))
    assert "array" not in repr(res) and "ncut=" in repr(res)
    row = res.to_row()
    assert row["n_removed"] == 1 and row["n_nodes"] == 36
    assert all(type(v) in (int, float, str, bool, type(None)) for v in row.values())


def test_cluster_weights_errors():
    with pytest.raises(ValueError, match="no nonzero weights"):
        cluster_weights([np.zeros((3, 2)), np.zeros((2, 2))], 2)
    sparse = [np.diag([1.0, 2.0]), np.zeros((2, 5))]
    sparse[1][0, 0] = 1.0
    # Kept neurons: 2 inputs, 2 hidden, 1 output = 5.
    with pytest.raises(ValueError, match="not below the 5 non-isolated neurons"):
        cluster_weights(sparse, 6)
    with pytest.raises(ValueError, match="layer 1 has 3 outputs but layer 2 expects 4 inputs"):
        cluster_weights([np.ones((2, 2)), np.ones((2, 3)), np.ones((4, 2))], 2)
    with pytest.raises(ValueError, match="method must be one of"):
        cluster_weights([np.ones((3, 3))], 2, method="slow")


def test_cluster_weights_warns_on_disconnected_network():
    ws, _ = planted_network([8, 8, 8], 2, between=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(DisconnectedGraphWarning):
            cluster_weights(ws, 2, seed=0)


@given(seed=st.integers(0, 100_000), density=st.floats(0.05, 1.0))
@settings(max_examples=40, deadline=None)
def test_network_graph_equals_remove_isolated_then_graph(seed, density):
    from harness.cluster import network_graph
    from harness.graph import remove_isolated

    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=s) * (rng.random(s) < density) for s in [(7, 5), (5, 6), (6, 3)]]
    kept, mask = remove_isolated(ws)
    if mask.sum() < 3:
        return
    graph = network_graph(ws, 2)
    # The graph is |W| scaled by a power of two (exact), which no n-cut sees.
    expected = weights_to_graph(normalized_abs(kept))
    assert (graph.adjacency != expected).nnz == 0
    np.testing.assert_array_equal(graph.mask, mask)
    np.testing.assert_allclose(graph.scorer.degree, np.asarray(expected.sum(axis=1)).ravel())
    labels = rng.integers(0, 3, size=int(mask.sum()))
    assert graph.scorer.score(labels[None, :], 1e-8)[0] == pytest.approx(ncut(expected, labels))
    # The layer-parity colouring is a valid 2-colouring of the kept graph.
    upper = sp.triu(expected, format="coo")
    assert (graph.parity[upper.row] != graph.parity[upper.col]).all()


def test_symmetric_csr_accepts_unsorted_edges():
    from harness.graph import symmetric_csr

    rows, cols, vals = np.array([2, 0, 1]), np.array([3, 1, 3]), np.array([1.0, 2.0, 3.0])
    adj = symmetric_csr(4, rows, cols, vals).toarray()
    expected = np.zeros((4, 4))
    expected[rows, cols] = vals
    np.testing.assert_array_equal(adj, expected + expected.T)


def test_embedding_rejects_a_wrong_coloring():
    adj = weights_to_graph(planted_network([6, 5, 4], 2)[0])
    with pytest.raises(ValueError, match="not a 2-colouring"):
        spectral_embedding(adj, 2, coloring=np.zeros(15, dtype=bool))
    with pytest.raises(ValueError, match="n_components"):
        spectral_embedding(adj, 0)


def test_arpack_failure_falls_back_with_a_warning(monkeypatch):
    import scipy.sparse.linalg as sla

    ws, _ = planted_network([330, 310, 320], 4, seed=1)  # ARPACK-sized Gram matrix
    adj = weights_to_graph(ws)
    expected, expected_vals = spectral_embedding(adj, 4, seed=0)

    def no_convergence(*args, **kwargs):
        raise sla.ArpackNoConvergence("no convergence", np.zeros(0), np.zeros((0, 0)))

    monkeypatch.setattr(sla, "eigsh", no_convergence)
    with pytest.warns(RuntimeWarning, match="dense eigensolver"):
        emb, vals = spectral_embedding(adj, 4, seed=0)
    np.testing.assert_allclose(vals, expected_vals, rtol=1e-6)
    assert _subspace_distance(emb, expected) < 1e-4


def test_batched_kmeans_input_errors():
    with pytest.raises(ValueError, match="n_clusters must be in"):
        batched_kmeans(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="finite 2-D"):
        batched_kmeans(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(ValueError, match="n_init"):
        batched_kmeans(np.zeros((3, 2)), 2, n_init=0)


def test_batched_kmeans_handles_duplicate_points():
    # Fewer distinct points than clusters: seeding and empty-cluster relocation must cope.
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    labels = batched_kmeans(x, 3, n_init=4, seed=0)
    assert labels.shape == (4, 20)
    for row in labels:
        assert len(set(row[:10])) == 1 and len(set(row[10:])) == 1  # copies stay together


def test_spectral_clustering_does_not_modify_its_input():
    a = sp.csr_matrix(random_graph(20, 0.5, 0))
    i, j = a.nonzero()[0][0], a.nonzero()[1][0]
    for r, c in ((i, j), (j, i)):  # an explicit zero, symmetric
        a.data[a.indptr[r] + np.flatnonzero(a.indices[a.indptr[r] : a.indptr[r + 1]] == c)] = 0.0
    assert (a.data == 0).sum() == 2
    before = (a.data.copy(), a.indices.copy(), a.indptr.copy())
    spectral_clustering(a, 3, seed=0)
    for x, y in zip(before, (a.data, a.indices, a.indptr), strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- scale, isolation, edges


@given(
    log_c=st.floats(-30, 30),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=25, deadline=None)
def test_ncut_is_unchanged_when_all_weights_are_scaled(log_c, seed):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=s) for s in [(12, 8), (8, 8), (8, 4)]]
    c = 10.0**log_c
    base = cluster_weights(ws, 3, seed=1)
    scaled = cluster_weights([w * c for w in ws], 3, seed=1)
    assert scaled.ncut == pytest.approx(base.ncut, rel=1e-6)
    np.testing.assert_array_equal(scaled.mask, base.mask)


@pytest.mark.parametrize("c", [1e-320, 1e-100, 1e100, 1e307])
def test_ncut_survives_extreme_scales(c):
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=s) for s in [(12, 8), (8, 8), (8, 4)]]
    base = cluster_weights(ws, 3, seed=1)
    scaled = cluster_weights([w * c for w in ws], 3, seed=1)
    # 1e-320 is subnormal: the weights themselves lose digits, but nothing becomes 0 or inf.
    assert scaled.ncut == pytest.approx(base.ncut, rel=1e-2)


def test_public_ncut_is_scale_free():
    adj = sp.csr_matrix(random_graph(30, 0.3, 2))
    labels = np.random.default_rng(0).integers(0, 4, size=30)
    for c in (1e-12, 1e-6, 1e6):
        assert ncut(adj * c, labels) == pytest.approx(ncut(adj, labels), rel=1e-9)


def _decayed_network():
    """What L2 on every layer leaves in float32: blank pixels and dead units at ~1e-39."""
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(60, 20)), rng.normal(size=(20, 20)), rng.normal(size=(20, 4))]
    ws[0][:30] = rng.normal(size=(30, 20)) * 1e-39  # 30 "border pixels"
    ws[0][:, :5] = 1e-39  # 5 dead hidden units: tiny in- and out-weights
    ws[1][:5] = 1e-39
    return ws


def test_near_isolated_neurons_are_removed_like_isolated_ones():
    ws = _decayed_network()
    res = cluster_weights(ws, 6, seed=0)
    assert (res.labels[:30] == -1).all() and (res.labels[60:65] == -1).all()
    assert int((res.labels >= 0).sum()) == 60 + 20 + 20 + 4 - 35
    assert res.ncut > 2.0  # a real partition, not clusters of nothing


def test_exact_zero_rule_reproduces_the_near_isolated_failure_and_warns():
    ws = _decayed_network()
    with pytest.warns(NegligibleClusterWarning, match="next to no volume"):
        exact = cluster_weights(ws, 6, seed=0, isolation_rtol=0.0)  # the paper's rule
    assert exact.ncut < 1e-6  # clusters of subnormal weights score ~0: the bug it guards


def test_k_not_below_the_number_of_neurons_is_rejected():
    ws = [np.ones((3, 2)), np.ones((2, 2))]
    with pytest.raises(ValueError, match="not below the 7 non-isolated neurons"):
        cluster_weights(ws, 7, seed=0)


def test_kept_units_rule():
    absw = [np.array([[1.0, 1.0], [1e-30, 0.0], [0.0, 0.0]]), np.ones((2, 2))]
    keep = kept_units(absw)
    assert keep[0].tolist() == [True, False, False]
    keep = kept_units(absw, isolation_rtol=0.0)
    assert keep[0].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="isolation_rtol"):
        kept_units(absw, isolation_rtol=-1.0)
