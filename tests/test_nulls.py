"""Shuffle null models and seeded, parallel null distributions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cluster import DisconnectedGraphWarning, cluster_weights
from harness.nulls import NULL_METHODS, null_distribution, shuffle_weights
from harness.seeding import child_streams
from harness.stats import chi2_rank_test, pvalue


def sparse_net(sizes, seed, density=0.5):
    rng = np.random.default_rng(seed)
    ws = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(scale=0.3, size=(a, b))
        w[rng.random((a, b)) > density] = 0.0
        ws.append(w)
    return ws


def interleaved_matrix():
    """The original test's 4x5 matrix: 1..10 interleaved with 10 zeros."""
    w = np.zeros(20)
    w[::2] = np.arange(1, 11)
    return w.reshape(4, 5)


# ---------------------------------------------------------------- shuffles


@given(seed=st.integers(0, 2**32 - 1), null=st.sampled_from(NULL_METHODS))
@settings(max_examples=40, deadline=None)
def test_shuffles_keep_shapes_and_do_not_modify_input(seed, null):
    ws = sparse_net([5, 4, 3], seed % 1000)
    before = [w.copy() for w in ws]
    out = shuffle_weights(ws, null, np.random.default_rng(seed))
    assert [w.shape for w in out] == [w.shape for w in ws]
    for a, b in zip(ws, before, strict=True):
        np.testing.assert_array_equal(a, b)


@given(seed=st.integers(0, 2**32 - 1), null=st.sampled_from(["layer", "layer_nonzero"]))
@settings(max_examples=40, deadline=None)
def test_permutation_shuffles_keep_each_layers_values(seed, null):
    ws = sparse_net([6, 5, 4], seed % 1000)
    out = shuffle_weights(ws, null, np.random.default_rng(seed))
    for a, b in zip(ws, out, strict=True):
        np.testing.assert_array_equal(np.sort(a.ravel()), np.sort(b.ravel()))
        if null == "layer_nonzero":
            np.testing.assert_array_equal(a != 0, b != 0)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None)
def test_kde_nonzero_distribution_keeps_zero_pattern(seed):
    ws = sparse_net([6, 5, 4], seed % 1000)
    out = shuffle_weights(ws, "layer_nonzero_distribution", np.random.default_rng(seed))
    for a, b in zip(ws, out, strict=True):
        np.testing.assert_array_equal(a != 0, b != 0)
        assert not np.array_equal(a, b)


def test_shuffle_methods_on_the_original_example():
    w = interleaved_matrix()
    nz = w != 0
    rng = np.random.default_rng(0)

    (layer,) = shuffle_weights([w], "layer", rng)
    np.testing.assert_array_equal(np.sort(layer.ravel()), np.sort(w.ravel()))
    assert not np.array_equal(layer != 0, nz)

    (nonzero,) = shuffle_weights([w], "layer_nonzero", rng)
    np.testing.assert_array_equal(nonzero != 0, nz)
    np.testing.assert_array_equal(np.sort(nonzero[nz]), np.arange(1, 11))
    assert not np.array_equal(nonzero, w)

    (kde,) = shuffle_weights([w], "layer_nonzero_distribution", rng)
    np.testing.assert_array_equal(kde != 0, nz)
    assert not np.isin(kde[nz], w[nz]).any()
    assert kde[nz].mean() != pytest.approx(w[nz].mean(), abs=1e-6)
    # Bandwidth 0.01: every new value lies near one of the old values.
    assert np.abs(kde[nz][:, None] - np.arange(1, 11)[None, :]).min(axis=1).max() < 0.1

    (both,) = shuffle_weights([w], "layer_all_distribution", rng)
    assert not np.array_equal(both != 0, nz)
    assert np.count_nonzero(both) == 10
    assert not np.isin(both[both != 0], w[nz]).any()


def test_shuffle_is_reproducible_from_the_rng():
    ws = sparse_net([5, 4, 3], 0)
    for null in NULL_METHODS:
        a = shuffle_weights(ws, null, np.random.default_rng(5))
        b = shuffle_weights(ws, null, np.random.default_rng(5))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_shuffle_errors():
    with pytest.raises(ValueError, match="null must be one of .*'layer_nonzero'"):
        shuffle_weights([np.ones((2, 2))], "global", np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        shuffle_weights([np.ones((2, 2))], "layer", 0)


# ---------------------------------------------------------------- null distributions


def test_sample_seeds_are_spawned_children():
    seeds = child_streams(7, 3)
    assert [s.spawn_key for s in seeds] == [(0,), (1,), (2,)]
    assert all(s.entropy == 7 for s in seeds)


def test_null_distribution_is_seeded_and_prefix_stable():
    ws = sparse_net([12, 10, 8], 1, density=0.6)
    a = null_distribution(ws, 3, n_samples=6, seed=4, n_workers=1)
    b = null_distribution(ws, 3, n_samples=6, seed=4, n_workers=1)
    c = null_distribution(ws, 3, n_samples=4, seed=4, n_workers=1)
    d = null_distribution(ws, 3, n_samples=6, seed=5, n_workers=1)
    assert a.shape == (6,) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:4], c)  # sample i depends only on child i
    assert not np.array_equal(a, d)
    assert ((a > 0) & (a < 3)).all()


@pytest.mark.integration
def test_null_distribution_identical_with_one_and_two_workers():
    # Spawns a 2-process pool (the worker start-up dominates the run time).
    ws = sparse_net([14, 10, 10, 6], 2, density=0.5)
    one = null_distribution(ws, 3, n_samples=5, seed=11, n_workers=1)
    two = null_distribution(ws, 3, n_samples=5, seed=11, n_workers=2)
    np.testing.assert_array_equal(one, two)


def test_zero_samples():
    assert null_distribution([np.ones((3, 3))], 2, n_samples=0).shape == (0,)


def test_null_distribution_errors():
    ws = sparse_net([6, 5, 4], 0, density=0.8)
    with pytest.raises(ValueError, match="null must be one of"):
        null_distribution(ws, 2, null="shuffle")
    with pytest.raises(ValueError, match="method must be one of"):
        null_distribution(ws, 2, method="slow")
    with pytest.raises(ValueError, match="n_samples"):
        null_distribution(ws, 2, n_samples=-1)
    with pytest.raises(ValueError, match="n_clusters"):
        null_distribution(ws, 1)


def test_shuffle_that_isolates_too_many_neurons_raises():
    # Kept network: a 3x3 diagonal (6 neurons). A 'layer' shuffle usually puts two nonzeros
    # in one row or column, leaving at most 5 neurons: not enough for 5 clusters.
    w = np.zeros((3, 8))
    w[0, 0], w[1, 1], w[2, 2] = 1.0, 2.0, 3.0
    with pytest.raises(ValueError, match=r"null sample \d+ \(after 'layer' shuffling\)"):
        null_distribution([w], 5, n_samples=10, seed=0, n_workers=1)


def test_disconnected_null_samples_warn_once():
    # The zero pattern of a diagonal network is kept by 'layer_nonzero': every sample is
    # two disconnected edges.
    w = np.zeros((2, 2))
    w[0, 0], w[1, 1] = 1.0, 2.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        null_distribution([w], 2, null="layer_nonzero", n_samples=4, n_workers=1)
    msgs = [str(c.message) for c in caught if issubclass(c.category, DisconnectedGraphWarning)]
    assert len(msgs) == 1 and "4 of 4" in msgs[0]


def test_pvalues_of_iid_networks_against_their_layer_null_are_uniform():
    # A network with i.i.d. weights is exchangeable with its own layer shuffles, so its
    # p-value is uniform on {1/(n+1), ..., 1}: a calibration check of the whole pipeline.
    n_nets, n_samples = 30, 9
    ps = []
    for i in range(n_nets):
        ws = sparse_net([10, 8, 6], 100 + i, density=0.7)
        true = cluster_weights(ws, 3, seed=i).ncut
        null = null_distribution(ws, 3, n_samples=n_samples, seed=i, n_workers=1)
        ps.append(pvalue(true, null))
    ps = np.array(ps)
    assert 0.3 < ps.mean() < 0.75  # expected 0.55
    assert np.mean(ps <= 0.1) < 0.3  # expected 0.1
    assert chi2_rank_test(ps, n_samples) > 1e-3


def test_the_two_nulls_of_an_unpruned_network_are_independent_draws():
    # layer and layer_nonzero are the same operation on a dense matrix; the null method
    # enters the seed, so their distributions are not bit-identical (Table A's Cohen's d).
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(20, 12)), rng.normal(size=(12, 6))]
    a = null_distribution(ws, 3, null="layer", n_samples=6, seed=4, n_workers=1)
    b = null_distribution(ws, 3, null="layer_nonzero", n_samples=6, seed=4, n_workers=1)
    assert not np.array_equal(a, b)


def test_null_sample_streams_depend_on_the_null_and_the_sample():
    from harness.nulls import null_sample_streams

    layer = [s.generate_state(1)[0] for s in null_sample_streams(0, "layer", 3)]
    nonzero = [s.generate_state(1)[0] for s in null_sample_streams(0, "layer_nonzero", 3)]
    assert len(set(layer) | set(nonzero)) == 6


def test_all_equal_weights_are_never_significant():
    from harness.analysis import clusterability
    from harness.stats import DegenerateNullWarning

    ws = [np.full((12, 8), 0.3), np.full((8, 4), 0.3)]
    with pytest.warns(DegenerateNullWarning):
        res = clusterability(ws, 3, n_samples=8, seed=1, n_workers=1)
    assert res.pvalue == 1.0 and not res.is_sig
    np.testing.assert_array_equal(res.null_distribution, res.ncut)


@given(value=st.floats(1e-6, 1e6), k=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None)
def test_all_equal_weights_never_significant_property(value, k, seed):
    import warnings as _w

    from harness.analysis import clusterability

    ws = [np.full((9, 6), value), np.full((6, 3), -value)]
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        res = clusterability(ws, k, n_samples=5, seed=seed, n_workers=1)
    assert not res.is_sig and res.pvalue == 1.0


# ---------------------------------------------------------------- unchanged shuffles


def test_changeable_layers():
    from harness.nulls import changeable_layers

    const = np.full((3, 2), 0.5)
    pruned_const = np.array([[0.0, 2.0], [2.0, 0.0]])
    varied = np.array([[0.0, 1.0], [2.0, 0.0]])
    zeros = np.zeros((2, 2))
    ws = [const, pruned_const, varied, zeros]
    assert changeable_layers(ws, "layer") == (False, True, True, False)
    assert changeable_layers(ws, "layer_nonzero") == (False, False, True, False)
    assert changeable_layers(ws, "layer_nonzero_distribution") == (True, True, True, False)
    assert changeable_layers(ws, "layer_all_distribution") == (True, True, True, False)
    with pytest.raises(ValueError, match="null must be one of"):
        changeable_layers(ws, "global")


@given(seed=st.integers(0, 2**32 - 1), null=st.sampled_from(NULL_METHODS))
@settings(max_examples=30, deadline=None)
def test_a_layer_marked_unchangeable_equals_its_shuffles(seed, null):
    from harness.nulls import changeable_layers

    rng = np.random.default_rng(seed)
    ws = [
        np.where(rng.random((4, 3)) < 0.5, 0.0, 0.7),  # equal nonzero values
        np.full((3, 3), -0.2),
        np.zeros((3, 2)),
        rng.normal(size=(2, 2)),
    ]
    out = shuffle_weights(ws, null, rng)
    for w, s, changeable in zip(ws, out, changeable_layers(ws, null), strict=True):
        if not changeable:
            np.testing.assert_array_equal(w, s)


def test_an_identity_shuffle_ties_with_the_network():
    # A 1 x 2 first layer: its 'layer' shuffle is the identity half of the time, and the
    # second layer cannot change. Those samples are the network itself: they are clustered
    # with the network's seed and tie with it; the others are not.
    from harness.nulls import changeable_layers, null_sample_ncut, null_sample_streams
    from harness.seeding import stream

    ws = [np.array([[1.0, 3.0]]), np.full((2, 3), 0.5)]
    assert changeable_layers(ws, "layer") == (True, False)
    network = cluster_weights(ws, 2, seed=9).ncut
    values, ties = [], []
    for i, ss in enumerate(null_sample_streams(9, "layer", 16)):
        # The sample's shuffle stream; the first layer is shuffled first.
        (shuffled,) = shuffle_weights(ws[:1], "layer", np.random.default_rng(stream(ss, 0)))
        value, _ = null_sample_ncut(ws, 2, "layer", "fast", None, ss, i, network_seed=9)
        # Deciding on the changeable layers only gives the same answer.
        again, _ = null_sample_ncut(
            ws, 2, "layer", "fast", None, ss, i, network_seed=9, changeable=(True, False)
        )
        assert again == value
        values.append(value)
        ties.append(np.array_equal(shuffled, ws[0]))
    values = np.array(values)
    assert 0 < sum(ties) < 16
    np.testing.assert_array_equal(values[ties], network)
    null = null_distribution(ws, 2, n_samples=16, seed=9, n_workers=1)
    np.testing.assert_array_equal(null, values)
