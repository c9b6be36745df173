"""Activation clustering (reference §7.1), correlation pictures (§7.2) and Table M's claims."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

import harness
from harness.activations import (
    activation_clusterability,
    activation_graph,
    activation_test,
    align_signs,
    as_module,
    compare_clusterings,
    correlation_pictures,
    edge_shuffle,
    record_activations,
    spearman_between,
    spearman_matrix,
)
from harness.activations.cache import cached_activation_test, cached_activations
from harness.activations.claims import NMI_LOW
from harness.claims import REGISTRY
from harness.cli import EXIT_USAGE, main
from harness.store import Store


def _two_signal_mlp(n_in=20, width=16, seed=0):
    """784-free toy MLP: inputs 0..9 feed hidden units 0..7 of every layer, inputs 10..19
    units 8..15 (block-diagonal weights), so the two halves carry independent signals."""
    gen = torch.Generator().manual_seed(seed)
    half_in, half = n_in // 2, width // 2
    layers: list[nn.Module] = []
    sizes = [(n_in, width), (width, width), (width, width)]
    for a, b in sizes:
        lin = nn.Linear(a, b)
        w = torch.zeros(b, a)
        ha = a // 2
        w[:half, :ha] = torch.rand(half, ha, generator=gen) + 0.5
        w[half:, ha:] = torch.rand(b - half, a - ha, generator=gen) + 0.5
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.zero_()
        layers += [lin, nn.ReLU()]
    out = nn.Linear(width, 2)
    layers.append(out)
    assert half_in == 10
    return nn.Sequential(*layers)


def _two_signal_inputs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    s1, s2 = rng.normal(size=(2, n, 1))
    x = np.concatenate(
        [s1 + 0.3 * rng.normal(size=(n, 10)), s2 + 0.3 * rng.normal(size=(n, 10))], axis=1
    )
    return torch.as_tensor(x, dtype=torch.float32)


@pytest.mark.filterwarnings(
    "ignore:the graph has 2 connected components"
)  # block-diagonal by design
def test_two_independent_signals_recovered_and_significant():
    model, x = _two_signal_mlp(), _two_signal_inputs()
    result = activation_test(model, x, 2, n_samples=19, seed=3)
    truth = np.tile(np.repeat([0, 1], 8), 3)[result.units_mask]
    act = result.activation
    from sklearn.metrics import normalized_mutual_info_score

    assert normalized_mutual_info_score(truth, act.labels) > 0.95
    assert act.is_sig and act.pvalue == pytest.approx(1 / 20)
    # the weight graph is block-diagonal too: both clusterings agree, far above chance
    assert result.comparison.nmi > 0.95 and result.comparison.nmi_is_sig
    assert result.comparison.intra_mean > 10 * result.comparison.inter_mean
    assert result.comparison.n_common == int(result.units_mask.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_independent_noise_units_not_significant(seed):
    values = np.random.default_rng(seed).normal(size=(40, 1000))
    result = activation_clusterability(activation_graph(values), 2, n_samples=19, seed=seed)
    assert not result.is_sig
    assert result.pvalue > 1 / 20


def test_nmi_of_identical_labelings_is_one_and_permutation_null_near_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    adj = rng.random((400, 400))
    adj = (adj + adj.T) / 2
    np.fill_diagonal(adj, 0)
    cmp = compare_clusterings(adj, labels, labels, n_samples=50, seed=0)
    assert cmp.nmi == pytest.approx(1.0)
    assert cmp.nmi_null_mean < 0.02 and 0 <= cmp.nmi_null.min()
    assert cmp.nmi_is_sig and cmp.nmi_p == pytest.approx(1 / 51) and cmp.nmi_p_left == 1.0
    assert all(isinstance(v, (int, float, bool, str)) for v in cmp.to_row().values())


def test_within_and_between_means_by_hand():
    adj = np.array([[0, 1, 0.2, 0.4], [1, 0, 0.6, 0.0], [0.2, 0.6, 0, 3], [0.4, 0.0, 3, 0]])
    cmp = compare_clusterings(adj, [0, 0, 1, 1], [0, 0, 1, 1], n_samples=0)
    assert cmp.n_weight_clusters == cmp.n_activation_clusters == 2
    assert cmp.intra_mean == pytest.approx((1 + 3) / 2)
    assert cmp.inter_mean == pytest.approx((0.2 + 0.4 + 0.6 + 0.0) / 4)
    assert math.isnan(cmp.nmi_p) and not cmp.nmi_is_sig


def test_spearman_matrix_equals_scipy_with_ties():
    values = np.random.default_rng(1).integers(0, 5, size=(30, 200)).astype(float)
    expected = scipy.stats.spearmanr(values, axis=1).statistic
    np.testing.assert_allclose(spearman_matrix(values), expected, atol=1e-12)
    pixels = np.random.default_rng(2).integers(0, 3, size=(7, 200))
    full = scipy.stats.spearmanr(np.vstack([values, pixels]), axis=1).statistic
    np.testing.assert_allclose(spearman_between(values, pixels), full[:30, 30:], atol=1e-12)


def test_constant_rows_get_zero_correlation_and_bad_input_is_rejected():
    values = np.vstack([np.zeros(10), np.arange(10.0), np.arange(10.0)[::-1]])
    corr = spearman_matrix(values)
    assert corr[0].tolist() == [0.0, 0.0, 0.0] and corr[1, 2] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="NaN"):
        spearman_matrix(np.array([[1.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="2 examples"):
        spearman_matrix(np.ones((3, 1)))


_INT_VALUES = hnp.arrays(
    np.int64, st.tuples(st.integers(3, 8), st.integers(5, 30)), elements=st.integers(-20, 20)
)


@settings(max_examples=40, deadline=None)
@given(_INT_VALUES, st.data())
def test_graph_unchanged_under_monotone_transforms_of_a_unit(values, data):
    """r^2 is a function of ranks: any strictly monotone map of a unit's activations (an
    increasing one keeps r, a decreasing one flips its sign) leaves the graph unchanged."""
    row = data.draw(st.integers(0, values.shape[0] - 1))
    transform = data.draw(
        st.sampled_from(
            [lambda v: 3 * v + 7, lambda v: v**3, lambda v: -v, lambda v: np.exp(v / 10)]
        )
    )
    changed = values.astype(np.float64)
    changed[row] = transform(changed[row])
    np.testing.assert_allclose(activation_graph(changed), activation_graph(values), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(_INT_VALUES, st.randoms(use_true_random=False))
def test_comparison_unchanged_under_unit_permutation(values, rnd):
    n = values.shape[0]
    adj = activation_graph(values)
    act = np.array([rnd.randrange(3) for _ in range(n)])
    wts = np.array([rnd.randrange(3) for _ in range(n)])
    perm = np.array(rnd.sample(range(n), n))
    a = compare_clusterings(adj, act, wts, n_samples=0).to_row()
    b = compare_clusterings(adj[np.ix_(perm, perm)], act[perm], wts[perm], n_samples=0).to_row()
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float) and math.isnan(a[key]):
            assert math.isnan(b[key])
        else:
            assert a[key] == pytest.approx(b[key], abs=1e-9), key
    np.testing.assert_allclose(activation_graph(values[perm]), adj[np.ix_(perm, perm)], atol=1e-12)


def test_edge_shuffle_keeps_the_edge_multiset():
    adj = activation_graph(np.random.default_rng(0).normal(size=(12, 50)))
    shuffled = edge_shuffle(adj, np.random.default_rng(1))
    iu = np.triu_indices(12, 1)
    assert np.array_equal(np.sort(shuffled[iu]), np.sort(adj[iu]))
    assert np.array_equal(shuffled, shuffled.T) and not np.diag(shuffled).any()
    assert not np.array_equal(shuffled, adj)


def test_without_null_samples_there_is_no_verdict():
    adj = activation_graph(np.random.default_rng(0).normal(size=(20, 60)))
    result = activation_clusterability(adj, 3, n_samples=0, seed=0)
    assert result.n_samples == 0 and math.isnan(result.pvalue) and not result.is_sig
    assert 0 <= result.ncut <= 3
    with pytest.raises(ValueError, match="n_clusters"):
        activation_clusterability(adj, 20, n_samples=0)


def test_null_does_not_depend_on_workers():
    adj = activation_graph(np.random.default_rng(0).normal(size=(30, 80)))
    one = activation_clusterability(adj, 3, n_samples=6, seed=5, n_workers=1)
    two = activation_clusterability(adj, 3, n_samples=6, seed=5, n_workers=2)
    np.testing.assert_array_equal(one.null_distribution, two.null_distribution)
    assert one.null == "edge" and one.n_samples == 6


# ---------------------------------------------------------------- recording


def test_record_mlp_hidden_units_drops_dead_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].bias[1] = -100.0  # unit 1 of the first hidden layer is always 0
        model[2].bias[:] = 10.0  # the second layer is always active
    x = torch.randn(50, 4)
    units = record_activations(model, x)
    assert units.layer_sizes == (3, 2) and units.kind == "mlp"
    assert units.mask.tolist() == [True, False, True, True, True]
    expected = torch.relu(model[0](x)).T.detach().numpy()[[0, 2]]
    np.testing.assert_allclose(units.values[:2], expected, rtol=1e-6)


def test_record_conv_channels_by_l2_norm_over_the_map():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2)
    )
    x = torch.randn(20, 1, 6, 6)
    units = record_activations(model, x, drop_constant=False)
    expected = torch.relu(model[0](x)).flatten(2).norm(dim=2).T.detach().numpy()
    assert units.kind == "conv" and units.layer_sizes == (3,)
    np.testing.assert_allclose(units.values, expected, rtol=1e-5)


def test_record_rejects_networks_without_hidden_units_and_shared_activations():
    with pytest.raises(ValueError, match="no hidden units"):
        record_activations(nn.Linear(3, 2), torch.randn(5, 3))
    relu = nn.ReLU()
    shared = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu, nn.Linear(3, 1))
    with pytest.raises(ValueError, match="shared"):
        record_activations(shared, torch.randn(5, 3))


def test_as_module_from_npz_with_and_without_biases(tmp_path):
    rng = np.random.default_rng(0)
    w0, b0, w1, w2 = (
        rng.normal(size=(4, 3)),
        rng.normal(size=3),
        rng.normal(size=(3, 3)),
        rng.normal(size=(3, 2)),
    )
    np.savez(tmp_path / "n.npz", w0, b0, w1, w2)
    module = as_module(tmp_path / "n.npz")
    x = rng.normal(size=(5, 4))
    h = np.maximum(x @ w0 + b0, 0)
    expected = np.maximum(h @ w1, 0) @ w2
    np.testing.assert_allclose(
        module(torch.as_tensor(x, dtype=torch.float32)).detach().numpy(), expected, rtol=1e-5
    )
    np.savez(tmp_path / "bad.npz", w0, w0)
    with pytest.raises(ValueError, match="do not chain"):
        as_module(tmp_path / "bad.npz")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_as_module_from_state_dicts_of_the_harness_models(tmp_path, suffix):
    from safetensors.torch import save_file

    from harness.models import MLP, SmallCNN

    torch.manual_seed(0)
    for model, x in (
        (MLP(widths=(8, 8, 8), dropout=0.1), torch.rand(4, 784)),
        (SmallCNN(channels=(4, 4, 4), dense=(8,)), torch.rand(4, 1, 28, 28)),
    ):
        path = tmp_path / f"{type(model).__name__}{suffix}"
        if suffix == ".pt":
            torch.save(model.state_dict(), path)
        else:
            save_file(model.state_dict(), str(path))
        rebuilt = as_module(path)
        model.eval()
        torch.testing.assert_close(rebuilt(x), model(x))
        assert (
            record_activations(rebuilt, x).layer_sizes == record_activations(model, x).layer_sizes
        )


# ---------------------------------------------------------------- pictures


def test_align_signs_aligns_negated_copies():
    v = np.random.default_rng(0).normal(size=20)
    signs = align_signs(np.stack([v, -v, v, -v]), rng=np.random.default_rng(0))
    assert abs(float((signs[:, None] * np.stack([v, -v, v, -v])).sum(axis=0) @ v)) == pytest.approx(
        4 * v @ v
    )


def test_cluster_picture_shows_the_pixels_its_units_read():
    rng = np.random.default_rng(0)
    n, side = 800, 6
    x = rng.normal(size=(n, side * side))
    top, bottom = x[:, :18].mean(axis=1), x[:, 18:].mean(axis=1)
    noise = 0.2 * rng.normal(size=(16, n))
    # 8 units read the top half (half of them negated), 8 the bottom half
    values = (
        np.vstack([np.outer([1, -1, 1, -1, 1, -1, 1, -1], top), np.outer(np.ones(8), bottom)])
        + noise
    )
    from harness.activations import UnitActivations

    units = UnitActivations(values.astype(np.float32), np.ones(16, bool), (16,), "mlp")
    labels = np.repeat([0, 1], 8)
    pics = correlation_pictures(units, x, labels, n_random=2, seed=0)
    assert [(p.layer, p.cluster, p.size) for p in pics.pictures] == [(0, 0, 8), (0, 1, 8)]
    top_pic = np.abs(pics.pictures[0].image.reshape(-1))
    assert top_pic[:18].mean() > 5 * top_pic[18:].mean()  # signs aligned, not cancelled
    assert pics.pictures[0].random_images.shape == (2, 1, side, side)
    # a cluster of 80%+ of the layer, or below 4 units, is not drawn
    assert correlation_pictures(units, x, np.zeros(16, int), seed=0).pictures == ()


# ---------------------------------------------------------------- cache, API, CLI


@pytest.mark.filterwarnings("ignore:the graph has 2 connected components")
def test_cached_results_equal_fresh_ones(tmp_path):
    model, x = _two_signal_mlp(), _two_signal_inputs(200)
    store = Store(tmp_path / "store")
    units = cached_activations(model, x, store=store, identity={"m": 1})
    again = cached_activations(model, x, store=store, identity={"m": 1})
    np.testing.assert_array_equal(units.values, again.values)
    cached = cached_activation_test(
        model, units, store=store, identity={"m": 1}, n_clusters=2, n_samples=4, seed=1
    )
    fresh = activation_test(model, x, 2, n_samples=4, seed=1)
    assert cached.to_row() == fresh.to_row()
    np.testing.assert_array_equal(cached.activation.labels, fresh.activation.labels)
    assert len(store.keys("activation_test")) == 1


def test_public_api_is_lazy():
    assert harness.activation_test is activation_test
    with pytest.raises(AttributeError):
        _ = harness.no_such_name  # type: ignore[attr-defined]


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.npz", "mnist"], "no such file"),
        (["{net}", "no-such-data"], "dataset must be one of"),
        (["{net}", "mnist", "-k", "0"], "positive integer"),
        (["{net}", "mnist", "--plot", "out.gif"], "must be one of 'png', 'svg', 'pdf'"),
        (["{net}", "poly"], "takes 784 inputs"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, needle, tmp_path, capsys):
    net = tmp_path / "net.npz"
    np.savez(net, *[np.ones((a, b)) for a, b in ((784, 4), (4, 4), (4, 4), (4, 2))])
    argv = ["activations", *(a.format(net=net) for a in args)]
    assert main(argv) == EXIT_USAGE
    _one_line_error(capsys, needle)


def test_cli_runs_on_a_users_npz_and_draws_pictures(tmp_path, capsys):
    from harness.data import is_cached

    if not is_cached("mnist"):
        pytest.skip("MNIST is not in the data directory (python -m harness data fetch)")
    rng = np.random.default_rng(0)
    sizes = [784, 24, 24, 24, 10]
    net = tmp_path / "net.npz"
    np.savez(
        net,
        *[
            rng.normal(0, (2 / (a + b)) ** 0.5, (a, b))
            for a, b in zip(sizes, sizes[1:], strict=False)
        ],
    )
    plot = tmp_path / "pics.png"
    argv = ["activations", str(net), "mnist", "-k", "3", "--samples", "3", "--n-test", "300",
            "--plot", str(plot), "--json", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["n_units"] == 72 and row["n_examples"] == 300 and 0 <= row["nmi"] <= 1
    assert plot.is_file() and plot.stat().st_size > 3000


# ---------------------------------------------------------------- claims


def _m_claims():
    return {k: c for k, c in REGISTRY.items() if c.table == "M"}


def test_table_m_claims_are_registered_for_the_activations_study():
    claims = _m_claims()
    assert {"M-MNIST-pruned-act-sig", "M-FASHION-unpruned-nmi-low-above-chance",
            "M-CNN-MNIST-unpruned-nmi-low-above-chance"} <= set(claims)  # fmt: skip
    assert all(c.study == "activations" for c in claims.values())


def _rows(cell, **columns):
    return pd.DataFrame([{"model_tag": cell.tag, "phase": cell.phase, "n_clusters": 12, **columns}])


@pytest.mark.parametrize("claim_id", sorted(_m_claims()))
def test_table_m_claims_hold_on_the_papers_pattern_and_fail_on_contradicting_rows(claim_id):
    claim = REGISTRY[claim_id]
    (cell,) = claim.cells
    if claim_id.endswith("act-sig"):
        good = _rows(cell, act_is_sig=True, act_p=1 / 51, act_z=-200.0)
        bad = pd.concat([good, _rows(cell, act_is_sig=False, act_p=0.4, act_z=-0.2)])
    else:
        good = _rows(cell, nmi=0.05, nmi_is_sig=True, nmi_p=1 / 51)
        high = _rows(cell, nmi=NMI_LOW + 0.2, nmi_is_sig=True, nmi_p=1 / 51)
        chance = _rows(cell, nmi=0.05, nmi_is_sig=False, nmi_p=0.3)
        assert not claim.evaluate(high).holds and not claim.evaluate(chance).holds
        bad = pd.concat([good, chance])
    assert claim.evaluate(good).holds
    assert not claim.evaluate(bad).holds
    assert not claim.evaluate(good.iloc[0:0]).holds  # no rows: does not hold
    other = good.assign(model_tag="ELSEWHERE")
    assert not claim.evaluate(other).holds
