"""Claim margins and the calibration rule that reads them.

A calibration asserts a claim only if it held at every calibrated seed *and* its margins
(how far each instance sat on the holding side) leave it little chance of failing at
another seed (:mod:`harness.calibration`). These tests pin down the pieces: the observed
text reads back, each check family's margins agree with its verdict, the predicted chance
behaves as a probability should, and the rule turns margins into statuses.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness import calibration as C
from harness.claims import REGISTRY
from harness.claims.checks import (
    all_below_all,
    column_greater,
    every_instance_at_least,
    every_instance_below,
    last_epoch_lower,
    lowest_mean,
    mean_abs_at_least,
    mean_abs_below,
    mean_at_least,
    mean_lower,
    significant_in_every_instance,
    value_within,
)
from harness.claims.extra import median_at_least, median_below
from harness.claims.model import Cell, Claim, Measured
from harness.claims.observed import format_observed, parse_observed

A, B, D = Cell("A"), Cell("B"), Cell("D")

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda v: abs(v) > 1e-3)
names = st.text(alphabet="abcdefgKLMN_ +=-0123456789", min_size=1, max_size=20).map(str.strip).filter(
    lambda s: bool(s) and not s.endswith("=")
)


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=5e-4, abs_tol=1e-12)


# --------------------------------------------------------------------------- observed text


@given(st.dictionaries(names, st.one_of(finite, st.just(math.nan), st.lists(finite, max_size=4)), max_size=5))
def test_the_observed_text_reads_back(observed: dict) -> None:
    back = parse_observed(format_observed(observed))
    assert list(back) == list(observed)
    for name, value in observed.items():
        if isinstance(value, list):
            assert len(back[name]) == len(value)
            assert all(_close(a, b) for a, b in zip(back[name], value, strict=True))
        else:
            assert _close(back[name], value)


def test_names_may_hold_equals_signs_and_bad_text_reads_as_nothing() -> None:
    text = "MNIST pruned K=12 layer=9.03, FASHION pruned K=12 layer=[9.5, nan]"
    back = parse_observed(text)
    assert back["MNIST pruned K=12 layer"] == pytest.approx(9.03)
    assert back["FASHION pruned K=12 layer"][0] == pytest.approx(9.5) and math.isnan(back["FASHION pruned K=12 layer"][1])
    assert parse_observed("") == {} and parse_observed("no numbers here") == {}


# ----------------------------------------------------------------- margins agree with verdicts


def _rows(cell: Cell, column: str, values: list[float]) -> list[dict]:
    return [{"model_tag": cell.tag, "phase": cell.phase, "null": cell.null, "n_clusters": cell.n_clusters,
             "instance": i, column: v} for i, v in enumerate(values)]  # fmt: skip


def _agree(check: Measured, rows: list[dict]) -> None:
    outcome = check(pd.DataFrame(rows))
    margins = check.margins(outcome.observed)
    values = list(margins.values()) if isinstance(margins, dict) else list(margins)
    assume(all(abs(m) > 1e-9 for m in values))  # a tie sits on the threshold either way
    assert outcome.holds == (bool(values) and all(m > 0 for m in values)), (outcome, margins)
    text_margins = check.margins(parse_observed(format_observed(dict(outcome.observed))))
    assert type(text_margins) is type(margins)  # the calibration reads the same kind back


lists = st.lists(finite, min_size=1, max_size=4)


@settings(max_examples=60)
@given(a=lists, b=lists, bound=finite)
def test_exact_families_hold_exactly_when_every_margin_is_positive(a, b, bound) -> None:
    """For the families whose verdict is a threshold on the numbers they report, the
    margins' signs are the verdict."""
    both = _rows(A, "x", a) + _rows(B, "x", b)
    _agree(mean_lower([A], [B], column="x"), both)
    _agree(lowest_mean(A, [B], column="x"), both)
    _agree(all_below_all([A], [B], column="x"), both)
    _agree(mean_at_least(A, "x", bound), both)
    _agree(every_instance_below(A, "x", bound), both)
    _agree(every_instance_at_least(A, "x", bound), both)
    _agree(value_within(A, "x", bound, 10.0), both)
    _agree(mean_abs_at_least(A, "x", abs(bound)), both)
    _agree(mean_abs_below(A, "x", abs(bound)), both)
    rows = [{**r, "y": r["x"] + v} for r, v in zip(_rows(A, "x", a), b, strict=False)]
    _agree(column_greater(A, "y", "x"), rows)
    epochs = [{**r, "epoch": r["instance"], "ncut": r["x"]} for r in _rows(Cell("A", "pruned"), "x", a)]
    epochs += [{**r, "epoch": r["instance"], "ncut": r["x"]} for r in _rows(Cell("A", "unpruned"), "x", b)]
    _agree(last_epoch_lower(Cell("A", "pruned"), Cell("A", "unpruned")), epochs)


@settings(max_examples=40)
@given(p=st.lists(st.floats(min_value=1e-12, max_value=1.0), min_size=1, max_size=4))
def test_p_value_families_margins_on_their_scales(p) -> None:
    assume(all(abs(v - 0.05) > 1e-6 for v in p))
    rows = _rows(A, "p", p)
    _agree(every_instance_below(A, "p", 0.05, log=True), rows)
    _agree(median_at_least(A, ["p"], 0.05), rows)
    _agree(median_below(A, ["p"], 0.05), rows)


def test_significance_margins_are_z_beyond_the_shuffles_extreme() -> None:
    check = significant_in_every_instance(A)
    assert isinstance(check, Measured)
    assert check.margins({"p": [0.0196, 0.0196], "z": [-6.2, -3.2]}) == pytest.approx([4.0, 1.0])


def test_every_claim_measures_margins_and_the_calibration_can_read_them() -> None:
    """Every registry claim's check has margins, and at every seed of the quick calibration
    they read from the text it kept, except where the kept tables could not re-derive a
    number the check added later (the CNN L2 rows pool two isolation rules in one table)."""
    from harness.calibration import calibration

    unmeasured = [c.id for c in REGISTRY.values() if not isinstance(c.check, Measured)]
    assert unmeasured == [], f"give these checks margins (harness.claims.checks): {unmeasured}"
    unreadable = set()
    for claim_id, entry in calibration("quick").items():
        for text in entry.observed:
            found = REGISTRY[claim_id].observed_margins(text)
            assert found is not None, claim_id
            if not found:
                unreadable.add(claim_id)
    assert unreadable == {"C-CNN-MNIST+L2REG-pruned-p1", "C-CNN-FASHION+L2REG-pruned-p1"}
    claim = REGISTRY["B-MNIST-pruned-sig"]
    assert claim.observed_margins("p=[0.01961, 1], z=[-9.947, 3.475]") == pytest.approx([7.747, -5.675])
    assert claim.observed_margins("mean=3") == []  # numbers of another shape: none read


def test_p1_margins_need_the_ncut_above_every_shuffle_not_just_their_mean() -> None:
    """p = 1 needs z beyond the shuffles' upper extreme: an n-cut just above the shuffles'
    mean (z = +0.5) is on the failing side."""
    claim = next(c for c in REGISTRY.values() if c.id.endswith("-p1"))
    assert claim.observed_margins("p=[0.7], ncut=[10.3], null_mean=[10.2], z=[0.5]") == pytest.approx([-1.7])
    assert claim.observed_margins("p=[1], ncut=[10.9], null_mean=[10.2], z=[6.2]") == pytest.approx([4.0])


def test_the_nmi_claims_have_two_named_margins() -> None:
    claim = REGISTRY["M-MNIST-pruned-nmi-low-above-chance"]
    found = claim.observed_margins("nmi=[0.05, 0.28], nmi_p=[0.0196, 0.0196], nmi_z=[9, 5]")
    assert found == pytest.approx({"significance": 2.8, "below the bound": 0.02})


# ----------------------------------------------------------------------- the predicted chance


def _calibration(*per_seed: str, holds: bool = True) -> C.ClaimCalibration:
    seeds = tuple(range(len(per_seed)))
    return C.ClaimCalibration("X", "quick", seeds, (holds,) * len(seeds), tuple(per_seed))


def _z(text: str) -> list[float]:
    """The margins as a claim reads them: ``[]`` where the text lacks them."""
    return [float(z) for z in parse_observed(text).get("z", [])]


def _outlook(values: list[list[float]]) -> float:
    entry = _calibration(*(format_observed({"z": v}) for v in values))
    result = entry.outlook(_z)
    assert result is not None and not result.problem, result
    return result.hold


margin_sets = st.lists(st.lists(st.floats(min_value=-20, max_value=20), min_size=2, max_size=2), min_size=3, max_size=6)


@settings(max_examples=60)
@given(values=margin_sets, shift=st.floats(min_value=0.01, max_value=5), scale=st.floats(min_value=0.1, max_value=10))
def test_the_chance_of_holding_is_a_probability_that_grows_with_the_margins(values, shift, scale) -> None:
    smallest = [min(seed) for seed in values]
    assume(max(smallest) - min(smallest) > 1e-2)
    hold = _outlook(values)
    assert 0.0 <= hold <= 1.0
    assert _outlook([[v + shift for v in seed] for seed in values]) >= hold - 1e-9
    assert _outlook([[v * scale for v in seed] for seed in values]) == pytest.approx(hold, abs=2e-3)


def test_the_chance_is_the_student_t_predictive_of_each_seeds_smallest_margin() -> None:
    from scipy import stats

    entry = _calibration("z=[3, 9]", "z=[8, 5]", "z=[4, 7]", "z=[6, 6]")
    smallest = [3.0, 5.0, 4.0, 6.0]
    mean, sd = sum(smallest) / 4, float(pd.Series(smallest).std())
    expected = 1 - stats.t.cdf(-mean / (sd * math.sqrt(1 + 1 / 4)), df=3)
    assert entry.outlook(_z).hold == pytest.approx(expected)


def test_named_margins_each_get_their_own_distribution() -> None:
    """Table N's four p-values: two always large, one always tiny. Pooled, they would look
    like one wide spread with a fair chance of holding; apart, the tiny one never does."""
    texts = [format_observed({"entropy": 0.5 + d, "objective": 1e-6 * (1 + d)}) for d in (0.0, 0.1, 0.2, 0.3)]
    entry = _calibration(*texts, holds=False)

    def margins(text: str) -> dict[str, float]:
        return {k: v - 0.05 for k, v in parse_observed(text).items()}

    result = entry.outlook(margins)
    assert result is not None and result.hold < 1e-3 and result.statistic == "objective"
    assert entry.status(margins)[0] == "xfail"


@pytest.mark.parametrize(
    ("texts", "problem"),
    [
        (["z=[5, 6]", "mean=3", "z=[7, 8]", "z=[6, 9]"], "none can be read at seed 1"),
        (["z=[5, 6]", "z=[nan, 6]", "z=[7, 8]", "z=[6, 9]"], "none can be read at seed 1"),
        (["z=[5, 6]", "z=[5, 7]", "z=[5, 8]"], "the same at every seed"),
    ],
)
def test_margins_that_cannot_tell_leave_the_claim_recorded(texts, problem) -> None:
    """A seed without readable (finite) margins, or margins with no spread at all (a value
    censored at a floor): no prediction, so neither asserted nor expected to fail."""
    entry = _calibration(*texts)
    assert problem in entry.outlook(_z).problem
    status, reason = entry.status(_z)
    assert status == "record" and "cannot tell" in reason and problem in reason
    assert entry.status()[0] == "assert"  # the verdicts alone would have asserted it


def test_a_mapping_at_some_seeds_and_nothing_at_another_cannot_tell() -> None:
    entry = _calibration("a=0.5", "b=0.7", "a=0.6")
    result = entry.outlook(lambda text: {k: float(v) for k, v in parse_observed(text).items()})
    assert result is not None and "fewer than" in result.problem


# ------------------------------------------------------------------------------ the status rule


def _sig_margins(text: str) -> list[float]:
    return [-float(z) - 2.2 for z in parse_observed(text)["z"]]


def test_held_everywhere_with_wide_margins_is_asserted() -> None:
    entry = _calibration("z=[-9, -10]", "z=[-8.5, -9.5]", "z=[-10, -9]", "z=[-9.5, -9.8]")
    status, reason = entry.status(_sig_margins)
    assert status == "assert" and "predict" in reason


def test_held_everywhere_near_the_threshold_is_recorded_with_its_chance() -> None:
    entry = _calibration("z=[-9, -4]", "z=[-3.5, -8]", "z=[-6, -10]")
    status, reason = entry.status(_sig_margins)
    assert status == "record" and "held at every seed" in reason and "probability" in reason
    assert entry.status()[0] == "assert"  # the verdicts alone would have asserted it


def test_failed_everywhere_but_close_is_not_expected_to_fail() -> None:
    """B-FASHION+L1REG-pruned-p1 at quick: p = 1 in 3 of 10 instances, never both at once."""
    texts = ["z=[-1.5, -3]", "z=[-2.5, -1]", "z=[-3, -2]"]
    entry = _calibration(*texts, holds=False)
    assert entry.status(_sig_margins)[0] == "record"
    far = _calibration("z=[5, 6]", "z=[7, 5.5]", "z=[6, 8]", "z=[6.5, 7]", holds=False)
    assert far.status(_sig_margins)[0] == "xfail"


def test_a_check_without_margins_goes_by_its_verdicts() -> None:
    entry = _calibration("z=[-9, -10]", "z=[-8.5, -9.5]", "z=[-10, -9]")
    status, reason = entry.status(lambda text: None)
    assert status == "assert" and "measures no margins" in reason


def test_leaving_a_seed_out_names_what_that_seed_contradicts() -> None:
    flip = C.ClaimCalibration("flip", "quick", (0, 1, 2, 3), (True, True, True, False),
                              ("z=[-9]", "z=[-9.5]", "z=[-10]", "z=[1]"))  # fmt: skip
    steady = _calibration("z=[-9, -10]", "z=[-8.5, -9.5]", "z=[-10, -9]", "z=[-9, -9.5]")
    out = C.leave_one_seed_out({"flip": flip, "steady": steady}, lambda _c, text: _sig_margins(text))
    assert [seed for seed, *_ in out] == [0, 1, 2, 3]
    assert out[3][3] == ["flip"] and out[3][1] == 2
    assert all(wrong == [] for *_, wrong in out[:3])


def test_margin_measuring_claims_keep_their_identity() -> None:
    """Wrapping a check in Measured changes neither what it decides nor the claim's id."""
    claim = REGISTRY["lesion-POLY-range-sig"]
    assert isinstance(claim, Claim) and isinstance(claim.check, Measured)
    rows = pd.DataFrame(_rows(claim.cells[0], "combined_p_ranges", [0.01, 0.2]))
    assert not claim.evaluate(rows).holds
    assert claim.margins(claim.evaluate(rows).observed) == pytest.approx(
        [math.log10(0.05) - math.log10(0.01), math.log10(0.05) - math.log10(0.2)]
    )
