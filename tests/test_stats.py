"""p-values, z-scores, effect sizes, rank tests and the result dataclass."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from harness.stats import (
    ClusterabilityResult,
    chi2_rank_test,
    cohen_d,
    cohen_d_stats,
    fisher_combined,
    is_sig,
    overall_std,
    pvalue,
    zscore,
)

# ---------------------------------------------------------------- p-value


def test_pvalue_examples_of_the_original_tests():
    # Without ties the value is the paper's compute_pvalue: (#{null < x} + 1) / (n + 1).
    null = np.arange(100) + 0.5
    assert pvalue(0, null) == pytest.approx(1 / 101)
    assert pvalue(1, null) == pytest.approx(2 / 101)
    assert pvalue(101, null) == pytest.approx(101 / 101)


def test_pvalue_right_side_and_ties():
    null = np.array([1.0, 2.0, 2.0, 3.0])
    # Ties count against significance (as scipy.stats.permutation_test): 1.0, 2.0, 2.0 <= 2.0.
    assert pvalue(2.0, null, side="left") == pytest.approx(4 / 5)
    assert pvalue(2.0, null, side="right") == pytest.approx(4 / 5)
    assert pvalue(0.0, null, side="right") == pytest.approx(5 / 5)
    assert pvalue(9.0, null, side="right") == pytest.approx(1 / 5)


def test_pvalue_ties_within_relative_tolerance_and_not_beyond():
    x = 7.25
    assert pvalue(x, [x * (1 + 1e-12)] * 5) == 1.0  # float noise: a tie
    assert pvalue(x, [x * (1 + 1e-6)] * 5) == pytest.approx(1 / 6)  # a real difference


def test_all_tied_null_is_never_significant_and_warns():
    from harness.stats import DegenerateNullWarning

    with pytest.warns(DegenerateNullWarning, match="no spread"):
        res = ClusterabilityResult.from_null(
            ncut=3.0, ave_in_out=0.5, labels=np.zeros(4, dtype=int), n_clusters=4,
            method="fast", null="layer", seed=0, null_distribution=np.full(20, 3.0),
        )
    assert res.pvalue == 1.0 and not res.is_sig and math.isnan(res.z)
    assert "no verdict" in str(res)


def test_zero_spread_null_gives_no_z_even_when_the_statistic_differs():
    assert math.isnan(zscore(1.0, [2.0, 2.0, 2.0]))


def test_pvalue_errors():
    with pytest.raises(ValueError, match=r"side must be one of 'left', 'right'"):
        pvalue(1.0, [1.0, 2.0], side="two-sided")
    with pytest.raises(ValueError, match="empty"):
        pvalue(1.0, [])
    with pytest.raises(ValueError, match="NaN"):
        pvalue(1.0, [1.0, np.nan])
    with pytest.raises(ValueError, match="NaN"):
        pvalue(float("nan"), [1.0])


def test_pvalues_are_calibrated_under_the_null():
    # Statistic and null from the same continuous distribution: p is uniform on the
    # n + 1 values k / (n + 1).
    rng = np.random.default_rng(0)
    n, trials = 19, 4000
    ps = np.array([pvalue(rng.normal(), rng.normal(size=n)) for _ in range(trials)])
    assert set(np.unique(np.round(ps * (n + 1)))) == set(range(1, n + 2))
    for alpha in (0.05, 0.1, 0.25, 0.5):
        # P(p <= alpha) = floor(alpha (n + 1)) / (n + 1); 4000 trials give SE < 0.008.
        expected = math.floor(alpha * (n + 1) + 1e-9) / (n + 1)
        assert np.mean(ps <= alpha + 1e-12) == pytest.approx(expected, abs=0.03)
    assert chi2_rank_test(ps, n) > 1e-3


# ---------------------------------------------------------------- z and effect sizes


def test_zscore_population_sd():
    null = np.array([1.0, 2.0, 3.0, 4.0])
    assert zscore(0.0, null) == pytest.approx((0.0 - 2.5) / np.std(null))
    assert zscore(2.5, null) == 0.0


def test_zscore_degenerate():
    # A null without spread gives no z-score, whichever side the statistic is on.
    assert math.isnan(zscore(1.0, [2.0, 2.0]))
    assert math.isnan(zscore(3.0, [2.0, 2.0]))
    assert math.isnan(zscore(2.0, [2.0, 2.0]))
    assert math.isnan(zscore(2.0, []))


def test_cohen_d_matches_cohen_d_stats():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 100)
    y = rng.normal(2.0, 1.3, 100)
    d = cohen_d(x, y)
    d_stats = cohen_d_stats(x.mean(), y.mean(), x.std(), y.std(), 100)
    assert abs(d - d_stats) <= 1e-9
    assert d < -1.0  # means 2 SDs apart


def test_cohen_d_by_hand():
    a, b = [1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0]
    pooled = math.sqrt((2 * 1.0 + 3 * np.var(b, ddof=1)) / 5)
    assert cohen_d(a, b) == pytest.approx((2.0 - 4.5) / pooled)
    assert cohen_d_stats(2.0, 4.5, np.std(a), np.std(b), 3, 4) == pytest.approx(cohen_d(a, b))
    with pytest.raises(ValueError, match="n_a \\+ n_b > 2"):
        cohen_d([1.0], [2.0])


def test_is_sig():
    assert is_sig(1 / 51, 50)
    assert not is_sig(2 / 51, 50)
    assert is_sig(pvalue(-1.0, np.zeros(320)), 320)
    assert not is_sig(float("nan"), 0)


def test_overall_std_is_sd_of_pooled_groups():
    rng = np.random.default_rng(1)
    groups = [rng.normal(loc, scale, 50) for loc, scale in [(0, 1), (3, 0.5), (-1, 2)]]
    means = [g.mean() for g in groups]
    stds = [g.std() for g in groups]
    assert overall_std(means, stds) == pytest.approx(np.concatenate(groups).std(), rel=1e-12)


# ---------------------------------------------------------------- combined tests


def test_chi2_rank_test_hand_example():
    # n = 3 samples: p in {1/4, 2/4, 3/4, 1} -> ranks 0..3. Ranks [0, 0, 1, 3] -> counts
    # [2, 1, 0, 1], expected 1 each: chi2 = 2 on 3 df.
    p = chi2_rank_test([0.25, 0.25, 0.5, 1.0], 3)
    assert p == pytest.approx(scipy.stats.chi2.sf(2.0, 3))
    assert p == pytest.approx(0.5724067, abs=1e-6)


def test_fisher_combined_hand_example():
    # Two p = 1/21 with n = 20: shifted to 1/42; X = -2 sum log p = 4 log 42 on 4 df, whose
    # survival function is exp(-x/2) (1 + x/2) = (1 + 2 log 42) / 42^2.
    expected = (1 + 2 * math.log(42)) / 42**2
    assert fisher_combined([1 / 21, 1 / 21], 20) == pytest.approx(expected, rel=1e-10)
    assert expected == pytest.approx(0.0048047, abs=1e-6)


def test_combined_tests_reject_out_of_range_pvalues():
    with pytest.raises(ValueError, match=r"\[1/\(n_samples\+1\), 1\]"):
        fisher_combined([0.001], 20)
    with pytest.raises(ValueError, match="empty"):
        chi2_rank_test([], 20)


# ---------------------------------------------------------------- result


def _result(n_samples=5, labels=(0, 1, -1, 1)):
    null = np.linspace(5.0, 6.0, n_samples)
    return ClusterabilityResult.from_null(
        ncut=4.0,
        ave_in_out=0.5,
        labels=np.array(labels),
        n_clusters=2,
        method="fast",
        null="layer",
        seed=3,
        null_distribution=null,
    )


def test_result_from_null():
    res = _result()
    assert res.pvalue == pytest.approx(1 / 6)
    assert res.is_sig
    assert res.null_mean == pytest.approx(5.5)
    assert res.null_std == pytest.approx(np.std(np.linspace(5, 6, 5)))
    assert res.z == pytest.approx((4.0 - 5.5) / res.null_std)
    assert res.n_removed == 1 and res.n_nodes == 4


def test_result_row_and_json_types():
    res = _result()
    row = res.to_row()
    assert all(type(v) in (int, float, str, bool, type(None)) for v in row.values()), row
    out = res.to_json()
    for key in (
        "ncut",
        "ave_in_out",
        "labels",
        "null_mean",
        "null_std",
        "z",
        "p",
        "n_samples",
        "method",
        "null",
        "seed",
        "n_clusters",
        "null_distribution",
    ):
        assert key in out
    assert out["labels"] == [0, 1, -1, 1]
    assert len(out["null_distribution"]) == 5
    json.dumps(out, allow_nan=False)


def test_result_without_samples_has_nan_null_fields():
    res = _result(n_samples=0)
    assert res.n_samples == 0 and not res.is_sig
    assert all(math.isnan(v) for v in (res.null_mean, res.null_std, res.z, res.pvalue))
    out = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert out["null_mean"] is None and out["p"] is None and out["null_distribution"] == []


def test_result_repr_is_short():
    res = _result(n_samples=200, labels=np.zeros(5000, dtype=int))
    text = repr(res)
    assert len(text) < 250 and "[" not in text
    assert "pvalue=" in text and "z=" in text


def test_result_str_is_a_readable_summary():
    text = str(_result())
    for word in ("n-cut", "null", "z =", "p =", "verdict", "significant", "method", "seed"):
        assert word in text, (word, text)


def test_result_to_frame_is_one_row():
    frame = _result().to_frame()
    assert frame.shape[0] == 1 and frame.loc[0, "p"] == pytest.approx(1 / 6)
