"""Tests of harness.lesion: ablation, random sets, statistics (§6.5), fast == reference (§6.6)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from harness import lesion as L
from harness.lesion import evaluation as lesion_evaluation

# --- independent oracles of the §5.3/§6.5 formulas (not harness.stats) --------------------------


def _pvalue(x: float, null: np.ndarray, side: str = "left") -> float:
    """(#{null at least as extreme as x} + 1) / (n + 1): ties count against significance."""
    null = np.asarray(null, dtype=float)
    count = np.sum(null <= x) if side == "left" else np.sum(null >= x)
    return (count + 1) / (len(null) + 1)


def _chi2_rank(p: np.ndarray, n: int) -> float:
    ranks = np.round(np.asarray(p) * (n + 1) - 1).astype(int)
    counts = np.bincount(ranks, minlength=n + 1)
    return scipy.stats.chisquare(counts).pvalue


def _fisher(p: np.ndarray, n: int) -> float:
    return scipy.stats.combine_pvalues(np.asarray(p) - 1 / (2 * (n + 1)), method="fisher").pvalue


# --- small models ---------------------------------------------------------------------------------

SIZES = (12, 16, 16, 14, 6)  # input, 3 hidden ReLU layers, 6 classes


def _mlp(sizes, *, dropout: float = 0.0, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _blobs(n: int, n_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, dim))
    y = rng.integers(0, n_classes, n)
    x = centres[y] + rng.normal(size=(n, dim))
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained on Gaussian blobs (with dropout, so eval mode matters)."""
    x, y = _blobs(900, SIZES[-1], SIZES[0], seed=1)
    model = _mlp(SIZES, dropout=0.2, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xt, yt = torch.as_tensor(x[:500]), torch.as_tensor(y[:500])
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.train()  # left in training mode on purpose: the library must evaluate in eval mode
    return model, x[500:], y[500:]


def _labels(sizes, seed: int = 3, k: int = 3, removed: float = 0.15) -> np.ndarray:
    """Full-length labels: inputs/outputs -1, hidden units in 0..k-1 with some removed."""
    rng = np.random.default_rng(seed)
    parts = [-np.ones(sizes[0], dtype=int)]
    for w in sizes[1:-1]:
        lab = rng.integers(0, k, w)
        lab[rng.random(w) < removed] = -1
        parts.append(lab)
    parts.append(-np.ones(sizes[-1], dtype=int))
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def labels():
    lab = _labels(SIZES)
    # Layer 1 gets one big cluster (> half the layer) to exercise the dense-mask branch of the
    # fast method; the others are small (low-rank branch).
    start = SIZES[0]
    lab[start : start + 16] = [0] * 11 + [1, 1, 2, 2, -1]
    return lab


def _record_lesions(monkeypatch) -> list[dict[int, np.ndarray]]:
    """Record every lesion the reference method applies."""
    seen: list[dict[int, np.ndarray]] = []
    original = lesion_evaluation.lesioned

    def spy(model, lesion, **kwargs):
        seen.append({k: np.asarray(v) for k, v in lesion.items()})
        return original(model, lesion, **kwargs)

    monkeypatch.setattr(lesion_evaluation, "lesioned", spy)
    return seen


# --- ablation ---------------------------------------------------------------------------------------


def _hidden_activations(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    acts = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: acts.append(out.detach().clone()))
        for m in model
        if isinstance(m, nn.ReLU)
    ]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return acts


def test_lesioned_units_output_exactly_zero_and_model_is_restored_bitwise():
    model = _mlp(SIZES, seed=4)
    x = torch.randn(64, SIZES[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ptrs = {k: v.data_ptr() for k, v in model.state_dict().items()}
    lesion = {1: [0, 3, 15], 3: np.array([2, 13])}
    clean = _hidden_activations(model, x)
    with L.lesioned(model, lesion) as same:
        assert same is model
        acts = _hidden_activations(model, x)
        assert torch.all(model[0].weight[[0, 3, 15]] == 0) and torch.all(
            model[0].bias[[0, 3, 15]] == 0
        )
    assert torch.all(acts[0][:, [0, 3, 15]] == 0)
    assert torch.all(acts[2][:, [2, 13]] == 0)
    assert clean[0][:, [0, 3, 15]].abs().sum() > 0  # the units were active before
    others = [u for u in range(16) if u not in (0, 3, 15)]
    assert torch.equal(acts[0][:, others], clean[0][:, others])  # untouched units unchanged
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
        assert after[k].data_ptr() == ptrs[k]  # the same tensors, restored in place


def test_lesioned_restores_after_exception():
    model = _mlp(SIZES, seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), L.lesioned(model, {2: [1, 2, 3]}):
        assert torch.all(model[2].weight[[1, 2, 3]] == 0)
        raise RuntimeError("boom")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("lesion", "match"),
    [
        ({7: [0]}, "cannot lesion layer 7"),
        ({1: [16]}, "must lie in 0..15"),
        ({0: [1]}, "cannot lesion layer 0"),
    ],
)
def test_lesioned_rejects_bad_input_without_touching_the_model(lesion, match):
    model = _mlp(SIZES, seed=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match), L.lesioned(model, lesion):
        pass
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_lesioned_handles_torch_pruning_reparametrization():
    model = _mlp(SIZES, seed=7)
    prune.l1_unstructured(model[2], "weight", amount=0.5)
    x = torch.randn(32, SIZES[0])
    orig = model[2].weight_orig.clone()
    with L.lesioned(model, {2: [4, 5]}):
        assert torch.all(_hidden_activations(model, x)[1][:, [4, 5]] == 0)
    assert torch.equal(model[2].weight_orig, orig)


# --- sub-clusters and random sets -----------------------------------------------------------------


def test_sub_clusters_split_hidden_layers_by_label():
    sizes = (3, 5, 4, 2)
    labels = np.array([0, 1, 2] + [1, -1, 1, 0, 2] + [2, 2, -1, 0] + [0, 1])
    subs = L.sub_clusters(labels, sizes)
    got = [(s.layer, s.label, s.units, s.size, s.proportion) for s in subs]
    assert got == [
        (1, 0, (3,), 1, 1 / 4),
        (1, 1, (0, 2), 2, 2 / 4),
        (1, 2, (4,), 1, 1 / 4),
        (2, 0, (3,), 1, 1 / 3),
        (2, 2, (0, 1), 2, 2 / 3),
    ]
    assert [s.layer for s in L.sub_clusters(labels, sizes, layers=[0, 3])] == [0, 0, 0, 3, 3]
    np.testing.assert_array_equal(L.layer_pool(labels, sizes, 1), [0, 2, 3, 4])
    assert subs[1].name == "1-1" and subs[1].to_row() == {
        "layer": 1,
        "label": 1,
        "size": 2,
        "proportion": 0.5,
    }


@pytest.mark.parametrize(
    ("labels", "sizes", "match"),
    [
        (np.zeros(5, int), (3, 3), "sum to 6"),
        (np.array([0, -2, 0, 0]), (2, 2), ">= -1"),
        (np.array([0.5, 0, 0, 0]), (2, 2), "integers"),
        (np.zeros(4, int), (4,), "at least two"),
    ],
)
def test_sub_clusters_reject_bad_labels(labels, sizes, match):
    with pytest.raises(ValueError, match=match):
        L.sub_clusters(labels, sizes)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(2, 40),
    removed_frac=st.floats(0, 0.7),
    size_frac=st.floats(0, 1),
    exclude_frac=st.floats(0, 0.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_units_have_size_lie_in_pool_and_avoid_exclusions(
    width, removed_frac, size_frac, exclude_frac, seed
):
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(rng.random(width) >= removed_frac)
    exclude = (
        rng.choice(pool, size=int(exclude_frac * pool.size), replace=False) if pool.size else pool
    )
    available = np.setdiff1d(pool, exclude)
    size = int(size_frac * available.size)
    units = L.random_units(pool, size, rng, exclude=exclude)
    assert units.size == size == np.unique(units).size
    assert np.all(np.isin(units, pool)) and not np.any(np.isin(units, exclude))
    assert np.all(np.diff(units) > 0)
    with pytest.raises(ValueError, match="cannot draw"):
        L.random_units(pool, available.size + 1, rng, exclude=exclude)


def test_random_trials_draw_from_the_documented_streams(trained, labels, monkeypatch):
    """Trial r of sub-cluster (l, c) draws from SeedSequence(seed, spawn_key=(r, 0, l, c))."""
    model, x, y = trained
    seen = _record_lesions(monkeypatch)
    n_trials, seed = 3, 13
    res = L.single_lesion_test(
        model, labels, SIZES, x, y, n_trials=n_trials, seed=seed, method="reference"
    )
    for s, sub in enumerate(res.sub_clusters):
        pool = L.layer_pool(labels, SIZES, sub.layer)
        for r in range(n_trials):
            stream = np.random.SeedSequence(seed, spawn_key=(r, 0, sub.layer, sub.label))
            expected = L.random_units(pool, sub.size, np.random.default_rng(stream))
            got = seen[1 + s * (n_trials + 1) + 1 + r]  # unlesioned, then per s: true, trials
            np.testing.assert_array_equal(got[sub.layer], expected)


def test_unseeded_run_records_a_replayable_seed(trained, labels):
    model, x, y = trained
    a = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=2, seed=None, layers=[2])
    b = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=2, seed=a.seed, layers=[2])
    np.testing.assert_array_equal(a.random_overall, b.random_overall)
    with pytest.raises(ValueError, match="seed must be an integer in"):
        L.single_lesion_test(model, labels, SIZES, x, y, n_trials=2, seed=-1)


def test_single_test_random_sets_match_size_layer_and_pool(trained, labels, monkeypatch):
    model, x, y = trained
    seen = _record_lesions(monkeypatch)
    n_trials = 4
    res = L.single_lesion_test(
        model, labels, SIZES, x, y, n_trials=n_trials, seed=5, method="reference"
    )
    subs = res.sub_clusters
    assert len(seen) == 1 + len(subs) * (n_trials + 1)
    assert sum(1 for d in seen if not d) == 1  # the unlesioned evaluation
    lesions = [d for d in seen if d]
    # Every lesion is one layer, drawn from that layer's non-removed units (never a -1 unit).
    for d in lesions:
        ((layer, units),) = d.items()
        assert np.all(np.isin(units, L.layer_pool(labels, SIZES, layer)))
    # Per (layer, size): the true sets plus n_trials random sets of each such sub-cluster.
    expected: dict[tuple[int, int], int] = {}
    for sub in subs:
        expected[(sub.layer, sub.size)] = expected.get((sub.layer, sub.size), 0) + n_trials + 1
        assert any(np.array_equal(d.get(sub.layer, []), sub.units) for d in lesions)
    got: dict[tuple[int, int], int] = {}
    for d in lesions:
        ((layer, units),) = d.items()
        got[(layer, units.size)] = got.get((layer, units.size), 0) + 1
    assert got == expected
    # The random trials differ from each other (fails with vanishing probability).
    for sub in subs:
        pool = L.layer_pool(labels, SIZES, sub.layer)
        if 1 < sub.size < pool.size - 1:
            draws = {
                d[sub.layer].tobytes()
                for d in lesions
                if sub.layer in d and d[sub.layer].size == sub.size
            }
            assert len(draws) > 2


def test_seeding_is_per_trial_and_reproducible(trained, labels):
    model, x, y = trained
    a = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=3, seed=9)
    b = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=3, seed=9)
    c = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=3, seed=10)
    np.testing.assert_array_equal(a.random_overall, b.random_overall)
    assert not np.array_equal(a.random_overall, c.random_overall)
    # More trials extend the draws: trial r does not depend on n_trials.
    d = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=5, seed=9)
    np.testing.assert_array_equal(d.random_overall[:3], a.random_overall)
    # Restricting the layers leaves the other sub-clusters' draws unchanged.
    e = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=3, seed=9, layers=[2])
    keep = [i for i, s in enumerate(a.sub_clusters) if s.layer == 2]
    np.testing.assert_array_equal(e.random_overall, a.random_overall[:, keep])


# --- taxonomy and statistics --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"pvalue": 1 / 21, "diff": -0.5, "size": 40, "proportion": 1.0}, "complete"),
        ({"pvalue": 1 / 21, "diff": -0.5, "size": 12, "proportion": 0.2}, "small"),
        ({"pvalue": 1 / 21, "diff": -0.01, "size": 13, "proportion": 0.2}, "important"),
        ({"pvalue": 1.0, "diff": -0.009}, "prunable"),
        ({"pvalue": 1.0, "diff": -0.01}, "least_important"),
        ({"pvalue": 1 / 21, "diff": 0.2}, "sig-but-not-diff"),
        ({"pvalue": 2 / 21, "diff": -0.02}, "diff-but-not-sig"),
        ({"pvalue": 2 / 21, "diff": -0.01}, "other"),
        ({"pvalue": 0.5, "diff": 0.3}, "other"),
    ],
)
def test_taxonomy_branches(kwargs, expected):
    assert L.taxonomy(n_trials=20, **kwargs) == expected


def test_taxonomy_threshold_is_strict_one_over_n_trials():
    # 1/20 itself is not significant; only p = 1/21 passes with 20 trials.
    assert L.taxonomy(1 / 20, -0.5, n_trials=20) == "diff-but-not-sig"
    assert L.taxonomy(1 / 20, -0.5, n_trials=20, p_threshold=0.06) == "important"
    assert L.taxonomy(1 / 21, -0.004, n_trials=20, diff_threshold=-0.003) == "important"


def _hand_example():
    """3 sub-clusters, 4 trials, 3 classes, constructed so every quantity is known."""
    subs = [
        L.SubCluster(1, 0, tuple(range(20)), 0.4),
        L.SubCluster(1, 1, tuple(range(20, 35)), 0.3),
        L.SubCluster(2, 0, tuple(range(5)), 0.1),
    ]
    unlesioned_outcomes = np.array([0.9, 0.8, 0.7])
    true_outcomes = np.array([[0.5, 0.8, 0.7], [0.85, 0.75, 0.65], [0.9, 0.8, 0.7]])
    rng = np.random.default_rng(0)
    random_outcomes = unlesioned_outcomes - rng.uniform(0.0, 0.06, size=(4, 3, 3))
    random_outcomes[2, 1] = [0.85, 0.75, 0.65]  # a tie with sub-cluster 1's true outcome
    true_overall = true_outcomes.mean(axis=1)
    random_overall = random_outcomes.mean(axis=2)
    return subs, unlesioned_outcomes, true_outcomes, random_outcomes, true_overall, random_overall


def test_single_lesion_statistics_on_a_hand_made_example():
    subs, u_out, t_out, r_out, t_all, r_all = _hand_example()
    res = L.single_lesion_statistics(
        subs,
        unlesioned=0.8,
        unlesioned_outcomes=u_out,
        true_overall=t_all,
        true_outcomes=t_out,
        random_overall=r_all,
        random_outcomes=r_out,
    )
    n = 4
    for s, row in enumerate(res.rows):
        assert row.true == pytest.approx(t_all[s])
        assert row.diff == pytest.approx(t_all[s] - 0.8)
        assert row.pvalue == pytest.approx(_pvalue(t_all[s], r_all[:, s]))
        assert row.random_mean == pytest.approx(r_all[:, s].mean())
        assert row.random_std == pytest.approx(r_all[:, s].std(ddof=1))
        assert row.z == pytest.approx((t_all[s] - r_all[:, s].mean()) / r_all[:, s].std(ddof=1))
        np.testing.assert_array_equal(row.random, r_all[:, s])
    # Sub-cluster 0 is worse than every random lesion and drops accuracy by 0.133: important.
    assert res.rows[0].pvalue == pytest.approx(1 / 5) and res.rows[0].taxonomy == "important"
    # Sub-cluster 1 ties one random lesion (a tie counts against significance): p = 2/5, so
    # its 0.05 drop is not significant.
    assert res.rows[1].pvalue == pytest.approx(2 / 5)
    assert res.rows[1].taxonomy == "diff-but-not-sig"
    # Sub-cluster 2 leaves the network unchanged, better than all random lesions.
    assert res.rows[2].pvalue == 1.0 and res.rows[2].diff == pytest.approx(0.0)
    assert res.rows[2].taxonomy == "small"  # size 5 <= 12 is checked before the p rules
    big = L.SubCluster(2, 0, tuple(range(13)), 0.2)
    res13 = L.single_lesion_statistics(
        [*subs[:2], big],
        unlesioned=0.8,
        unlesioned_outcomes=u_out,
        true_overall=t_all,
        true_outcomes=t_out,
        random_overall=r_all,
        random_outcomes=r_out,
    )
    assert [r.taxonomy for r in res13.rows] == ["important", "diff-but-not-sig", "prunable"]

    # Whole-network statistics, recomputed from the formulas of §6.5.
    t_means, r_means = t_out.mean(1), r_out.mean(2)
    mean_p = np.array([_pvalue(t_means[s], r_means[:, s]) for s in range(3)])
    change_t = t_out - u_out
    with np.errstate(invalid="ignore"):  # sub-cluster 2 changes nothing: 0 / 0
        t_range = np.ptp(change_t / change_t.mean(1, keepdims=True), axis=1)
    change_r = r_out - u_out
    r_range = np.ptp(change_r / change_r.mean(2, keepdims=True), axis=2)
    assert math.isnan(t_range[2])  # no change at all: undefined range
    range_p = np.array([_pvalue(t_range[s], r_range[:, s], "right") for s in range(2)])
    np.testing.assert_allclose([r.mean_pvalue for r in res.rows], mean_p)
    np.testing.assert_allclose([r.range_pvalue for r in res.rows][:2], range_p)
    assert math.isnan(res.rows[2].range_pvalue)
    assert res.chi2_p_means == pytest.approx(_chi2_rank(mean_p, n))
    assert res.combined_p_means == pytest.approx(_fisher(mean_p, n))
    assert res.chi2_p_ranges == pytest.approx(_chi2_rank(range_p, n))  # NaN left out
    assert res.combined_p_ranges == pytest.approx(_fisher(range_p, n))
    assert res.effect_means == pytest.approx(np.mean(r_means.mean(0) / t_means))
    assert res.effect_ranges == pytest.approx(np.nanmean(r_range.mean(0) / t_range))


def test_effect_ranges_is_inf_when_a_true_range_is_zero():
    subs, u_out, t_out, r_out, t_all, r_all = _hand_example()
    t_out = t_out.copy()
    t_out[2] = u_out - 0.05  # uniform damage over classes: range exactly 0
    res = L.single_lesion_statistics(
        subs,
        unlesioned=0.8,
        unlesioned_outcomes=u_out,
        true_overall=t_all,
        true_outcomes=t_out,
        random_overall=r_all,
        random_outcomes=r_out,
    )
    assert res.rows[2].range_statistic == pytest.approx(0.0, abs=1e-12)
    assert res.effect_ranges == math.inf


def test_regression_direction_higher_mse_is_damage():
    # One sub-cluster whose lesion raises the MSE far more than any random lesion.
    subs = [L.SubCluster(1, 0, tuple(range(30)), 0.5)]
    u_out = np.array([0.1, 0.2, 0.3])
    t_out = np.array([[0.9, 0.4, 0.5]])
    r_out = u_out + np.linspace(0.01, 0.05, 6)[:, None, None] * np.array([1.0, 1.2, 0.8])
    kw = {
        "unlesioned": 0.2,
        "unlesioned_outcomes": u_out,
        "true_overall": t_out.mean(1),
        "true_outcomes": t_out,
        "random_overall": r_out.mean(2),
        "random_outcomes": r_out,
    }
    reg = L.single_lesion_statistics(subs, task="regression", **kw)
    row = reg.rows[0]
    assert row.diff > 0 and row.pvalue == pytest.approx(1 / 7)
    assert row.taxonomy == "important"
    assert row.mean_pvalue == pytest.approx(1 / 7)
    assert reg.effect_means == pytest.approx(t_out.mean() / r_out.mean(2).mean())
    assert reg.effect_means > 1
    # The accuracy direction (the paper's POLY table, bug 9) would call it harmless.
    cls = L.single_lesion_statistics(subs, task="classification", **kw)
    assert cls.rows[0].pvalue == 1.0 and cls.rows[0].taxonomy == "prunable"
    assert cls.effect_means < 1
    # The regression row says that its mean columns are not the paper's POLY direction.
    direction = reg.to_row()["direction"]
    assert direction.startswith("corrected: higher MSE = damage") and "§11 item 9" in direction
    assert reg.summary_frame()["direction"].tolist() == [direction]
    assert "corrected" not in cls.to_row()["direction"]
    assert {"combined_p_means", "chi2_p_means", "effect_means"} <= set(reg.to_row())
    # effect_means_as_paper is the paper's direction for both tasks: the number to compare
    # with its tables (the POLY one reversed), the same formula as classification's.
    assert reg.to_row()["effect_means_as_paper"] == pytest.approx(cls.effect_means)
    assert reg.effect_means_as_paper < 1
    assert cls.to_row()["effect_means_as_paper"] == cls.effect_means


def test_term_outcomes_average_outputs_with_coefficient_one():
    coef = L.poly_coefficients(2)
    np.testing.assert_array_equal(coef, [[0, 0], [0, 1], [1, 0], [1, 1]])
    mse = np.array([[1.0, 2.0, 4.0, 8.0]])
    np.testing.assert_allclose(L.term_outcomes(mse), [[(4 + 8) / 2, (2 + 8) / 2]])
    assert L.poly_coefficients(9).shape == (512, 9) and L.poly_coefficients(9)[511].sum() == 9
    assert L.term_outcomes(np.ones((3, 512))).shape == (3, 9)
    with pytest.raises(ValueError, match="power of two"):
        L.term_outcomes(np.ones(6))


# --- evaluation: fast == reference ---------------------------------------------------------------------


def test_evaluate_lesions_matches_direct_computation(trained):
    model, x, y = trained
    lesions = [{}, {1: [0, 1, 2]}, {2: range(10), 3: [1]}, {1: [5], 3: [0, 2, 4, 6, 8, 10, 12]}]
    ev = L.evaluate_lesions(model, lesions, x, y, method="fast")
    model.eval()
    for i, lesion in enumerate(lesions):
        with torch.no_grad(), L.lesioned(model, lesion):
            pred = model(torch.as_tensor(x)).argmax(1).numpy()
        assert ev.overall[i] == np.mean(pred == y)
        for c in range(SIZES[-1]):
            assert ev.per_class[i, c] == np.mean(pred[y == c] == c)
            assert ev.proportions[i, c] == np.mean(pred == c)
    model.train()
    assert len(ev) == 4 and ev.take([1, 3]).overall.tolist() == ev.overall[[1, 3]].tolist()


def test_fast_equals_reference_single(trained, labels):
    model, x, y = trained
    kw = {"n_trials": 6, "seed": 2}
    fast = L.single_lesion_test(model, labels, SIZES, x, y, method="fast", **kw)
    ref = L.single_lesion_test(model, labels, SIZES, x, y, method="reference", **kw)
    assert any(s.size * 2 > 16 for s in fast.sub_clusters)  # the dense branch is exercised
    np.testing.assert_array_equal(fast.true_outcomes, ref.true_outcomes)
    np.testing.assert_array_equal(fast.random_outcomes, ref.random_outcomes)
    np.testing.assert_array_equal(fast.random_overall, ref.random_overall)
    np.testing.assert_array_equal(fast.true_proportions, ref.true_proportions)
    assert fast.to_frame().equals(ref.to_frame())
    # The lesions matter in this model (the comparison is not between constants).
    assert np.ptp(fast.random_overall) > 0.02 and min(r.diff for r in fast.rows) < -0.05


def test_fast_is_independent_of_block_size(trained, labels):
    model, x, y = trained
    big = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=3)
    tiny = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=3, batch_elements=50)
    np.testing.assert_array_equal(big.random_outcomes, tiny.random_outcomes)


def test_fast_equals_reference_regression():
    sizes = (3, 10, 12, 8)  # 8 outputs = 2**3 coefficient vectors: 3 terms
    model = _mlp(sizes, seed=8)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = rng.normal(size=(200, 8)).astype(np.float32)
    labels = _labels(sizes, seed=5, k=2, removed=0.1)
    kw = {"n_trials": 5, "seed": 1, "task": "regression"}
    fast = L.single_lesion_test(model, labels, sizes, x, y, method="fast", **kw)
    ref = L.single_lesion_test(model, labels, sizes, x, y, method="reference", **kw)
    assert fast.true_outcomes.shape == (len(fast.rows), 3)
    np.testing.assert_allclose(fast.true_outcomes, ref.true_outcomes, rtol=1e-5)
    np.testing.assert_allclose(fast.random_overall, ref.random_overall, rtol=1e-5)
    assert [r.taxonomy for r in fast.rows] == [r.taxonomy for r in ref.rows]
    assert [r.pvalue for r in fast.rows] == [r.pvalue for r in ref.rows]
    # MSE direction: diff > 0 means damage; p is right-sided.
    for row in fast.rows:
        assert row.pvalue == pytest.approx(_pvalue(row.true, row.random, side="right"))
        assert row.diff == pytest.approx(row.true - fast.unlesioned)


@pytest.mark.parametrize("mode", ["joint", "conditional"])
def test_fast_equals_reference_double(trained, labels, mode):
    model, x, y = trained
    kw = {"n_trials": 3, "seed": 4, "mode": mode, "layers": [1, 3]}
    fast = L.double_lesion_test(model, labels, SIZES, x, y, method="fast", **kw)
    ref = L.double_lesion_test(model, labels, SIZES, x, y, method="reference", **kw)
    a, b = fast.to_frame(), ref.to_frame()
    assert a.equals(b)
    for ra, rb in zip(fast.rows, ref.rows, strict=True):
        np.testing.assert_array_equal(ra.random, rb.random)
    s = len(fast.single.rows)
    assert len(fast.rows) == (s * (s + 1) // 2 if mode == "joint" else s * s)


def test_joint_diagonal_equals_single_lesion(trained, labels):
    model, x, y = trained
    single = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=4, seed=3)
    joint = L.double_lesion_test(model, labels, SIZES, x, y, n_trials=4, seed=3, mode="joint")
    diagonal = [r for r in joint.rows if r.is_diagonal]
    assert len(diagonal) == len(single.rows)
    for d, s in zip(diagonal, single.rows, strict=True):
        assert (d.true, d.diff, d.pvalue, d.z) == (s.true, s.diff, s.pvalue, s.z)
        np.testing.assert_array_equal(d.random, s.random)
    assert joint.single.to_frame().equals(single.to_frame())


def test_double_single_trials_apart_from_pair_trials(trained, labels, monkeypatch):
    model, x, y = trained
    kw = {"seed": 6, "mode": "conditional", "layers": [1, 3]}
    seen = _record_lesions(monkeypatch)
    res = L.double_lesion_test(
        model, labels, SIZES, x, y, n_trials=3, single_trials=7, method="reference", **kw
    )
    subs = res.single.sub_clusters
    n_single = 1 + len(subs) * (7 + 1)
    assert len(seen) == n_single + len(subs) * (len(subs) - 1) * (3 + 1)
    # The singles: 7 random trials, recorded, and the same as a single test with 7 trials.
    assert res.single_trials == res.single.n_trials == 7 and res.n_trials == 3
    assert {len(r.random) for r in res.single.rows} == {7}
    alone = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=7, seed=6, layers=[1, 3])
    assert res.single.to_frame().equals(alone.to_frame())
    assert set(res.single.to_frame()["n_trials"]) == {7}
    assert res.single.to_row()["n_trials"] == 7
    # The pairs: 3 random trials, the same draws as with 3 single trials.
    same = L.double_lesion_test(model, labels, SIZES, x, y, n_trials=3, **kw)
    assert same.single_trials == 3
    for a, b in zip(res.rows, same.rows, strict=True):
        assert len(a.random) == (7 if a.is_diagonal else 3)
        if not a.is_diagonal:
            assert (a.true, a.score, a.pvalue) == (b.true, b.score, b.pvalue)
            np.testing.assert_array_equal(a.random, b.random)
        else:
            np.testing.assert_array_equal(a.random[:3], b.random)  # trial r: one stream
        # "important" uses 1/7 on the diagonal (the singles), 1/3 for the pairs.
        expected = L.taxonomy(a.pvalue, a.score, n_trials=len(a.random))
        assert a.taxonomy == expected
    single_important = [r.taxonomy == "important" for r in res.single.rows]
    assert single_important == [r.pvalue < 1 / 7 and r.diff <= -0.01 for r in res.single.rows]
    # Every row records both counts.
    frame = res.to_frame()
    assert set(frame["n_trials"]) == {3} and set(frame["single_trials"]) == {7}
    assert frame["n_random"].tolist() == [7 if d else 3 for d in frame["is_diagonal"]]
    row = res.to_row()
    assert (row["n_trials"], row["single_trials"]) == (3, 7)
    assert "single_trials=7" in repr(res)


def test_single_trials_validation(trained, labels):
    model, x, y = trained
    with pytest.raises(ValueError, match="single_trials must be at least 1"):
        L.double_lesion_test(model, labels, SIZES, x, y, n_trials=2, single_trials=0)
    with pytest.raises(ValueError, match="double lesion test only"):
        L.single_lesion_test(model, labels, SIZES, x, y, n_trials=2, single_trials=3)


def test_double_random_members_never_overlap(trained, labels, monkeypatch):
    model, x, y = trained
    subs = L.sub_clusters(labels, SIZES, layers=[2])
    seen = _record_lesions(monkeypatch)
    n_trials = 5
    cond = L.double_lesion_test(
        model,
        labels,
        SIZES,
        x,
        y,
        n_trials=n_trials,
        mode="conditional",
        method="reference",
        layers=[2],
    )
    n_single = 1 + len(subs) * (n_trials + 1)
    pairs = seen[n_single:]
    assert len(pairs) == len(subs) * (len(subs) - 1) * (n_trials + 1)
    k = 0
    for j in range(len(subs)):
        for i in range(len(subs)):
            if i == j:
                continue
            fixed = set(subs[j].units)
            for lesion in pairs[k : k + n_trials + 1]:
                units = set(lesion[2].tolist())
                assert fixed <= units  # the given member is always lesioned
                assert len(units) == subs[i].size + subs[j].size  # the other never overlaps it
            k += n_trials + 1
    assert {len(r.random) for r in cond.rows} == {n_trials}
    seen.clear()
    L.double_lesion_test(
        model, labels, SIZES, x, y, n_trials=n_trials, mode="joint", method="reference", layers=[2]
    )
    pairs = seen[n_single:]
    k = 0
    for i, j in itertools.combinations(range(len(subs)), 2):
        for lesion in pairs[k : k + n_trials + 1]:
            assert lesion[2].size == subs[i].size + subs[j].size  # same-layer members disjoint
        k += n_trials + 1


def test_conditional_score_is_extra_damage_given_second(trained, labels):
    model, x, y = trained
    cond = L.double_lesion_test(
        model, labels, SIZES, x, y, n_trials=3, mode="conditional", layers=[1, 2]
    )
    single = {r.sub_cluster.name: r for r in cond.single.rows}
    for row in cond.rows:
        if row.is_diagonal:
            assert row.score == single[row.first.name].diff
        else:
            assert row.score == pytest.approx(row.diff - single[row.second.name].diff)
            assert row.pvalue == pytest.approx(_pvalue(row.true, row.random))
    mat = cond.matrix("score")
    first, second = cond.rows[1].first.name, cond.rows[1].second.name
    assert mat.loc[first, second] == cond.rows[1].score


# --- double-lesion tables on hand-made rows ----------------------------------------------------------


def _double_by_hand(
    mode: str, single_tax: list[str], pair_tax: dict[tuple[int, int], str]
) -> L.DoubleLesionResult:
    subs = [L.SubCluster(layer, 0, tuple(range(20)), 0.5) for layer in (1, 2, 3)]
    single_rows = tuple(
        L.SubClusterLesion(
            s, 0.5, -0.3, 0.05, 0.8, 0.01, -30.0, t, 0.5, 0.05, 1.0, 0.5, np.zeros(2)
        )
        for s, t in zip(subs, single_tax, strict=True)
    )
    single = L.SingleLesionResult(
        task="classification",
        n_trials=2,
        seed=0,
        method="fast",
        unlesioned=0.8,
        rows=single_rows,
        chi2_p_means=1.0,
        chi2_p_ranges=1.0,
        combined_p_means=1.0,
        combined_p_ranges=1.0,
        effect_means=1.0,
        effect_ranges=1.0,
        outcome_names=("0",),
        unlesioned_outcomes=np.zeros(1),
        true_outcomes=np.zeros((3, 1)),
        random_outcomes=np.zeros((2, 3, 1)),
        random_overall=np.zeros((2, 3)),
    )
    rows = tuple(
        L.PairLesion(
            subs[i], subs[j], 0.1, -0.7, -0.1 * (i + 1) - j, 0.3, 0.7, 0.01, -60.0, t, np.zeros(2)
        )
        for (i, j), t in pair_tax.items()
    )
    return L.DoubleLesionResult(
        mode=mode,
        task="classification",
        n_trials=2,
        seed=0,
        method="fast",
        unlesioned=0.8,
        single=single,
        rows=rows,
    )


def test_important_pairs_dependency_types():
    imp, other = "important", "other"
    pair_tax = {(i, j): other for i in range(3) for j in range(3)}
    pair_tax.update(
        {(0, 1): imp, (1, 0): other, (0, 2): other, (2, 0): imp, (1, 2): imp, (2, 1): imp}
    )
    res = _double_by_hand("conditional", [imp, imp, imp], pair_tax)
    table = res.important_pairs()
    assert table[["x", "y", "type"]].values.tolist() == [
        ["1-0", "2-0", "II"],
        ["1-0", "3-0", "III"],
        ["2-0", "3-0", "IV"],
    ]
    assert table["s_x_given_y"].tolist() == [-1.1, -2.1, -2.2]
    assert res.dependency_counts() == {"I": 0, "II": 1, "III": 1, "IV": 1}
    # Only singles that are 'important' take part.
    res2 = _double_by_hand("conditional", [imp, "small", imp], pair_tax)
    assert res2.important_pairs()["type"].tolist() == ["III"]
    assert res2.to_row()["n_type_III"] == 1
    with pytest.raises(ValueError, match="mode='joint'"):
        res.joint_grouping()


def test_joint_grouping_counts():
    imp = "important"
    pair_tax = {
        (0, 0): imp,
        (0, 1): imp,
        (0, 2): "other",
        (1, 1): "other",
        (1, 2): imp,
        (2, 2): "other",
    }
    res = _double_by_hand("joint", [imp, "small", "other"], pair_tax)
    got = {tuple(r[:3]): r[3] for r in res.joint_grouping().itertuples(index=False)}
    assert got == {
        (True, True, True): 1,  # (0, 0)
        (True, False, True): 1,  # (0, 1)
        (True, False, False): 1,  # (0, 2)
        (False, False, False): 2,  # (1, 1), (2, 2)
        (False, False, True): 1,  # (1, 2)
    }
    assert sum(got.values()) == len(res.rows)
    mat = res.matrix("score")
    assert mat.loc["1-0", "2-0"] == mat.loc["2-0", "1-0"] == -1.1
    with pytest.raises(ValueError, match="mode='conditional'"):
        res.important_pairs()


# --- results, validation ----------------------------------------------------------------------------


def _builtin(value) -> bool:
    return type(value) in (int, float, str, bool)


def test_results_rows_are_builtin_and_reprs_short(trained, labels):
    model, x, y = trained
    res = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=3)
    row = res.to_row()
    assert all(_builtin(v) for v in row.values()), row
    for key in (
        "chi2_p_means",
        "chi2_p_ranges",
        "combined_p_means",
        "combined_p_ranges",
        "effect_means",
        "effect_ranges",
    ):
        assert key in row
    assert sum(
        v
        for k, v in row.items()
        if k.startswith("n_") and k != "n_trials" and k != "n_sub_clusters"
    ) == len(res.rows)
    assert all(_builtin(v) for r in res.rows for v in r.to_row().values())
    frame = res.to_frame()
    assert len(frame) == len(res.rows) and {
        "layer",
        "label",
        "diff",
        "pvalue",
        "taxonomy",
        "unlesioned",
    } <= set(frame)
    assert res.summary_frame().shape == (1, len(row))
    assert len(repr(res)) < 300 and "array" not in repr(res) and "array" not in repr(res.rows[0])
    double = L.double_lesion_test(model, labels, SIZES, x, y, n_trials=2, layers=[3])
    assert all(_builtin(v) for v in double.to_row().values())
    assert all(_builtin(v) for r in double.rows for v in r.to_row().values())
    assert len(repr(double)) < 200


def test_option_and_input_validation(trained, labels):
    model, x, y = trained
    with pytest.raises(ValueError, match="method must be one of 'fast', 'reference'; got 'slow'"):
        L.single_lesion_test(model, labels, SIZES, x, y, method="slow")
    with pytest.raises(ValueError, match="task must be one of 'classification', 'regression'"):
        L.single_lesion_test(model, labels, SIZES, x, y, task="ranking")
    with pytest.raises(ValueError, match="mode must be one of 'joint', 'conditional'; got 'both'"):
        L.double_lesion_test(model, labels, SIZES, x, y, mode="both")
    with pytest.raises(ValueError, match="n_trials must be at least 1"):
        L.single_lesion_test(model, labels, SIZES, x, y, n_trials=0)
    with pytest.raises(ValueError, match="same network"):
        L.single_lesion_test(model, labels, (12, 16, 15, 15, 6), x, y)
    with pytest.raises(ValueError, match="labels must lie in 0..5"):
        L.single_lesion_test(model, labels, SIZES, x, y + 3)
    with pytest.raises(ValueError, match="same non-zero number of samples"):
        L.single_lesion_test(model, labels, SIZES, x, y[:-1])
    with pytest.raises(ValueError, match="hidden"):
        L.evaluate_lesions(model, [{4: [0]}], x, y)  # the output layer is not lesionable


def test_fast_rejects_models_that_are_not_relu_chains(labels):
    model = nn.Sequential(
        nn.Linear(12, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, 14),
        nn.ReLU(),
        nn.Linear(14, 6),
    )
    x, y = _blobs(50, 6, 12, seed=0)
    with pytest.raises(ValueError, match="method='reference'"):
        L.single_lesion_test(model, labels, SIZES, x, y, n_trials=2)
    # The reference method works with any architecture.
    res = L.single_lesion_test(model, labels, SIZES, x, y, n_trials=2, method="reference")
    assert len(res.rows) == len(L.sub_clusters(labels, SIZES))
