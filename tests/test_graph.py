"""Weight graphs: validation, node numbering, adjacency structure, isolated-node removal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.graph import (
    expand_labels,
    layer_sizes,
    node_index,
    node_layer_unit,
    remove_isolated,
    validate_weights,
    weights_to_graph,
)


def random_net(sizes, seed=0, density=1.0):
    rng = np.random.default_rng(seed)
    ws = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(size=(a, b))
        w[rng.random((a, b)) > density] = 0.0
        ws.append(w)
    return ws


# ---------------------------------------------------------------- validate_weights


def test_validate_returns_float64_copies():
    ws = [np.ones((2, 3), dtype=np.float32), [[1, 2], [3, 4], [5, 6]]]
    out = validate_weights(ws)
    assert [w.dtype for w in out] == [np.float64, np.float64]
    out[0][0, 0] = 99.0
    assert ws[0][0, 0] == 1.0


def test_validate_empty():
    with pytest.raises(ValueError, match="empty"):
        validate_weights([])


def test_validate_not_2d_names_layer():
    with pytest.raises(ValueError, match=r"layer 1 has 3 dimensions"):
        validate_weights([np.ones((2, 3)), np.ones((3, 2, 2))])


def test_validate_single_array_is_rejected():
    with pytest.raises(ValueError, match="single array"):
        validate_weights(np.ones((3, 3)))


def test_validate_non_finite_says_how_many_and_where():
    w = np.ones((4, 5))
    w[1, 2] = np.nan
    w[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"layer 1 has 2 non-finite value\(s\).*\(1, 2\)"):
        validate_weights([np.ones((3, 4)), w])


def test_validate_mismatched_shapes_message():
    ws = [np.ones((5, 4)), np.ones((4, 7)), np.ones((7, 256)), np.ones((128, 3))]
    with pytest.raises(ValueError, match="layer 2 has 256 outputs but layer 3 expects 128 inputs"):
        validate_weights(ws)


# ---------------------------------------------------------------- node numbering


def test_layer_sizes():
    assert layer_sizes(random_net([5, 4, 3, 2])) == (5, 4, 3, 2)


@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_node_index_round_trip(sizes, data):
    layer = data.draw(st.integers(0, len(sizes) - 1))
    unit = data.draw(st.integers(0, sizes[layer] - 1))
    idx = node_index(sizes, layer, unit)
    assert idx == sum(sizes[:layer]) + unit
    assert node_layer_unit(sizes, idx) == (layer, unit)


def test_node_layer_unit_covers_all_nodes_in_order():
    sizes = (3, 1, 2)
    pairs = [node_layer_unit(sizes, i) for i in range(sum(sizes))]
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)]


def test_node_index_out_of_range():
    with pytest.raises(ValueError, match="unit 3 out of range"):
        node_index((3, 2), 0, 3)
    with pytest.raises(ValueError, match="layer 2 out of range"):
        node_index((3, 2), 2, 0)
    with pytest.raises(ValueError, match="out of range"):
        node_layer_unit((3, 2), 5)


# ---------------------------------------------------------------- adjacency


def test_graph_block_structure():
    sizes = [4, 3, 5, 2]
    ws = random_net(sizes, density=0.7)
    adj = weights_to_graph(ws).toarray()
    off = np.cumsum([0, *sizes])
    assert adj.shape == (14, 14)
    np.testing.assert_array_equal(adj, adj.T)
    assert np.all(np.diag(adj) == 0)
    for i in range(len(sizes)):
        for j in range(len(sizes)):
            block = adj[off[i] : off[i + 1], off[j] : off[j + 1]]
            if j == i + 1:
                np.testing.assert_array_equal(block, np.abs(ws[i]))
            elif i == j + 1:
                np.testing.assert_array_equal(block, np.abs(ws[j]).T)
            else:
                assert not block.any(), (i, j)


def test_graph_stores_only_nonzero_weights():
    ws = random_net([6, 5, 4], density=0.3, seed=3)
    adj = weights_to_graph(ws)
    assert adj.nnz == 2 * sum(int(np.count_nonzero(w)) for w in ws)
    assert adj.format == "csr"


@given(
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=40, deadline=None)
def test_graph_symmetric_nonnegative(sizes, seed):
    adj = weights_to_graph(random_net(sizes, seed=seed, density=0.6))
    assert (adj != adj.T).nnz == 0
    assert (adj.data >= 0).all()
    assert adj.diagonal().sum() == 0


# ---------------------------------------------------------------- isolated nodes


def test_remove_isolated_drops_rows_and_columns_everywhere():
    w0 = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])  # input unit 1 isolated
    w1 = np.array([[3.0, 0.0], [0.0, 0.0], [0.0, 4.0]])  # hidden 1 isolated (no in, no out)
    w2 = np.array([[5.0, 0.0, 0.0], [6.0, 0.0, 7.0]])  # output unit 1 isolated
    kept, mask = remove_isolated([w0, w1, w2])
    np.testing.assert_array_equal(
        mask, [True, False, True, False, True, True, True, True, False, True]
    )
    np.testing.assert_array_equal(kept[0], [[1.0, 2.0]])
    np.testing.assert_array_equal(kept[1], [[3.0, 0.0], [0.0, 4.0]])
    # The output layer's isolated column is dropped too (no Ellipsis quirk).
    np.testing.assert_array_equal(kept[2], [[5.0, 0.0], [6.0, 7.0]])
    # The kept graph is the original graph restricted to the mask.
    full = weights_to_graph([w0, w1, w2]).toarray()
    np.testing.assert_array_equal(weights_to_graph(kept).toarray(), full[mask][:, mask])


def test_remove_isolated_keeps_everything_when_dense():
    ws = random_net([4, 3, 2])
    kept, mask = remove_isolated(ws)
    assert mask.all()
    for a, b in zip(kept, ws, strict=True):
        np.testing.assert_array_equal(a, b)


@given(seed=st.integers(0, 10_000), density=st.floats(0.05, 0.5))
@settings(max_examples=40, deadline=None)
def test_remove_isolated_mask_is_degree_positive(seed, density):
    ws = random_net([6, 5, 5, 3], seed=seed, density=density)
    kept, mask = remove_isolated(ws)
    degree = np.asarray(weights_to_graph(ws).sum(axis=1)).ravel()
    np.testing.assert_array_equal(mask, degree > 0)
    assert layer_sizes(kept) == tuple(
        int(m.sum()) for m in np.split(mask, np.cumsum([6, 5, 5])[:3])
    )


def test_expand_labels():
    mask = np.array([True, False, True, True, False])
    full = expand_labels(np.array([2, 0, 1]), mask)
    np.testing.assert_array_equal(full, [2, -1, 0, 1, -1])
    assert full.dtype == np.int64


def test_expand_labels_length_mismatch():
    with pytest.raises(ValueError, match="keeps 3 nodes"):
        expand_labels(np.array([0, 1]), np.array([True, True, True]))


def test_validate_accepts_torch_tensors_requiring_grad():
    import torch

    w = torch.ones((3, 2), requires_grad=True)
    (out,) = validate_weights([w])
    assert out.dtype == np.float64 and out.shape == (3, 2)
