"""Tests of harness.report.drift and harness.report.baseline: a run against a multi-seed baseline.

The rules under test (module docstring of harness.report.drift): a run whose networks are the
baseline's at its seed is compared *paired*, to the sampling error; any other run against the
baseline's spread over seeds; a study's cells together by the pooled test; cells from the
``cell`` column, so variants stay apart.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness import report as R
from harness.report.baseline import seed_folder, write_baseline_manifest

# Per-seed value of the MNIST pruned n-cut in the baseline: mean 8.1, between-seed SD 0.1.
SEED_VALUES = {0: 8.0, 1: 8.1, 2: 8.2, 3: 8.05, 4: 8.15}
NULL_STD, N_SAMPLES = 0.05, 100  # sampling error 0.005


def row(cell: str, ncut: float, *, digest: str, test: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "study": "clustering",
        "test_id": test or f"experiments/test_clustering.py::{cell}-i0",
        "cell": cell,
        "instance": 0,
        "weights_digest": digest,
        "ncut": ncut,
        "null_mean": ncut + 1.0,
        "null_std": NULL_STD,
        "z": -20.0,
        "n_samples": N_SAMPLES,
        **extra,
    }


def claims(verdict: str) -> list[dict[str, Any]]:
    return [
        {"claim_id": "B-MNIST-pruned-sig", "table": "B", "claim": "significant", "verdict": verdict,
         "holds": verdict in ("pass", "xpass"), "observed": "z=-20",
         "test_id": "experiments/test_clustering.py::test_claim[B-MNIST-pruned-sig]", "study": "clustering"},
    ]  # fmt: skip


def write_run(root: Path, seed: int, rows: list[dict[str, Any]], *, profile: str = "ci",
              verdict: str = "pass") -> Path:
    R.write_study_tables({"clustering": rows}, root)
    R.write_claims(claims(verdict), root)
    R.write_run_info({"profile": profile, "seed": seed}, root)
    return root


def seed_rows(seed: int, shift: float = 0.0, cells: int = 1, digest: str | None = None) -> list[dict[str, Any]]:
    out = []
    for c in range(cells):
        # each cell its own level; the seed moves every cell by the same seed effect
        value = SEED_VALUES[seed] + c + shift if seed in SEED_VALUES else 8.1 + c + shift
        out.append(row(f"test_factor[tag=T{c}, phase=pruned]", value, digest=digest or f"w{seed}-{c}"))
    return out


def make_baseline(root: Path, seeds=(0, 1, 2, 3, 4), cells: int = 1, profile: str = "ci") -> Path:
    for seed in seeds:
        write_run(root / seed_folder(seed), seed, seed_rows(seed, cells=cells), profile=profile)
    write_baseline_manifest(root, profile=profile, seeds=list(seeds))
    return root


def test_paired_run_identical_to_its_seed_has_no_drift(tmp_path: Path) -> None:
    base = make_baseline(tmp_path / "base")
    cur = write_run(tmp_path / "cur", 0, seed_rows(0))
    drift = R.compare_runs(cur, base)
    assert drift.ok, drift
    assert drift.n_paired == drift.n_cells > 0
    assert drift.largest is not None and drift.largest.n_se == 0


def test_paired_rule_sees_a_small_change_of_the_analysis(tmp_path: Path) -> None:
    """Same networks (digests), the n-cut 0.05 lower: 10 sampling errors, flagged paired."""
    base = make_baseline(tmp_path / "base")
    cur = write_run(tmp_path / "cur", 0, seed_rows(0, shift=-0.05, digest="w0-0"))
    drift = R.compare_runs(cur, base)
    assert not drift.ok
    (move,) = [m for m in drift.moved if m.metric == "ncut"]
    assert move.rule.startswith("paired")
    assert move.n_se == pytest.approx(0.05 / (NULL_STD / math.sqrt(N_SAMPLES)))


def test_seed_spread_accepts_another_draw_within_the_noise(tmp_path: Path) -> None:
    """Another seed (or machine): other digests; 8.25 is 1.4 between-seed SDs from 8.1."""
    base = make_baseline(tmp_path / "base")
    cur = write_run(tmp_path / "cur", 7, [row("test_factor[tag=T0, phase=pruned]", 8.25, digest="x")])
    drift = R.compare_runs(cur, base)
    assert drift.ok, drift.moved
    assert drift.n_paired == 0
    assert all(m.rule.startswith("seed spread (5 seeds)") for m in drift.compared)


def test_same_seed_with_other_weights_is_compared_by_seed_spread(tmp_path: Path) -> None:
    """Seed 0 on another CPU: its networks differ, so its own seed's value is no reference."""
    base = make_baseline(tmp_path / "base")
    cur = write_run(tmp_path / "cur", 0, [row("test_factor[tag=T0, phase=pruned]", 8.2, digest="other")])
    drift = R.compare_runs(cur, base)
    assert drift.ok and drift.n_paired == 0


def test_seed_spread_flags_an_outlier(tmp_path: Path) -> None:
    base = make_baseline(tmp_path / "base")
    cur = write_run(tmp_path / "cur", 7, [row("test_factor[tag=T0, phase=pruned]", 9.5, digest="x")])
    drift = R.compare_runs(cur, base)
    assert [m.metric for m in drift.moved] == ["ncut", "null_mean"]
    assert drift.moved[0].rule == "seed spread (5 seeds)" and drift.moved[0].n_se > 3
    assert "seed spread" in (tmp_path / "cur" / R.write_drift(drift, cur).name).read_text()


def test_pooled_test_catches_a_shift_no_cell_shows(tmp_path: Path) -> None:
    """Every one of 40 cells moved down by one between-seed SD: each cell is within its
    noise, the study as a whole is not."""
    base = make_baseline(tmp_path / "base", cells=40)
    sd = 0.0790569  # SD of SEED_VALUES
    rows = [
        row(f"test_factor[tag=T{c}, phase=pruned]", 8.1 + c - sd, digest=f"x{c}") for c in range(40)
    ]
    drift = R.compare_runs(write_run(tmp_path / "cur", 9, rows), base)
    assert not drift.moved
    pooled = {p.metric: p for p in drift.pooled_moved}
    assert "ncut" in pooled and pooled["ncut"].z < -3
    assert not drift.ok
    # the same cells within noise, in both directions: nothing pooled
    rows = [
        row(f"test_factor[tag=T{c}, phase=pruned]", 8.1 + c + (sd if c % 2 else -sd), digest=f"x{c}")
        for c in range(40)
    ]
    assert R.compare_runs(write_run(tmp_path / "cur2", 9, rows), base).ok


def test_cells_keep_variants_apart(tmp_path: Path) -> None:
    """Two isolation rules of one model are two cells: their gap is no spread of either."""
    variants = {"negligible": 10.8, "exact-zero": 6.97}
    root = tmp_path / "base"
    for seed, wobble in zip((0, 1, 2), (0.0, 0.02, -0.02), strict=True):
        rows = [
            row(f"test_cnn[tag=L2, isolation={iso}]", value + wobble, digest=f"w{seed}",
                test=f"experiments/test_cnn.py::test_cnn[L2-{iso}-i0]")
            for iso, value in variants.items()
        ]
        write_run(root / seed_folder(seed), seed, rows)
    write_baseline_manifest(root, profile="ci", seeds=[0, 1, 2])
    # the exact-zero cell moved to the other's value: flagged, since its own spread is small
    rows = [
        row(f"test_cnn[tag=L2, isolation={iso}]", 10.8, digest="x",
            test=f"experiments/test_cnn.py::test_cnn[L2-{iso}-i0]")
        for iso in variants
    ]
    drift = R.compare_runs(write_run(tmp_path / "cur", 5, rows), root)
    assert [m.group for m in drift.moved if m.metric == "ncut"] == [
        "test_cnn[tag=L2, isolation=exact-zero]"
    ]


def test_a_one_seed_baseline_compares_only_the_same_networks(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", 0, seed_rows(0))
    assert R.compare_runs(write_run(tmp_path / "same", 0, seed_rows(0)), base).ok
    other = R.compare_runs(write_run(tmp_path / "other", 3, seed_rows(3)), base)
    assert other.mismatch and "make baseline" in other.mismatch[0]
    assert "Not comparable" in R.drift_line(other)


def test_claim_verdicts(tmp_path: Path) -> None:
    """Compared by whether the claim held, so that a calibration's recorded verdicts compare
    with a run's asserted ones."""
    base = make_baseline(tmp_path / "base")
    recorded = [{**c, "verdict": "recorded"} for c in claims("pass")]
    R.write_claims(recorded, tmp_path / "base" / "seed-0")
    assert not R.compare_runs(write_run(tmp_path / "p", 0, seed_rows(0)), base).flipped
    flipped = R.compare_runs(write_run(tmp_path / "a", 0, seed_rows(0), verdict="fail"), base)
    assert [f.claim for f in flipped.flipped] == ["B-MNIST-pruned-sig"] and not flipped.ok
    # unpaired: a verdict some baseline seed had is no flip
    R.write_claims(claims("fail"), tmp_path / "base" / "seed-1")
    other = R.compare_runs(write_run(tmp_path / "b", 8, seed_rows(8), verdict="fail"), base)
    assert not other.flipped


def test_missing_cells_and_claims_fail_new_ones_are_listed(tmp_path: Path) -> None:
    base = make_baseline(tmp_path / "base", cells=2)
    cur = tmp_path / "cur"
    write_run(cur, 0, seed_rows(0, cells=1) + [row("test_factor[tag=NEW]", 8.0, digest="n")])
    drift = R.compare_runs(cur, base)
    assert "cell clustering: test_factor[tag=T1, phase=pruned]" in drift.missing
    assert "cell clustering: test_factor[tag=NEW]" in drift.new
    assert not drift.ok


def test_random_init_means_are_compared(tmp_path: Path) -> None:
    """Table I's ``mean``, with sd / sqrt(n_trials) as its sampling error."""
    def ri(seed: int, mean: float) -> list[dict[str, Any]]:
        return [{"study": "random_init", "test_id": "experiments/test_random_init.py::test_random_init[mlp]",
                 "cell": "test_random_init[init=mlp]", "mean": mean, "sd": 0.05, "n_trials": 100}]  # fmt: skip

    root = tmp_path / "base"
    for seed, mean in ((0, 10.30), (1, 10.31), (2, 10.29)):
        R.write_study_tables({"random_init": ri(seed, mean)}, root / seed_folder(seed))
        R.write_run_info({"profile": "ci", "seed": seed}, root / seed_folder(seed))
    write_baseline_manifest(root, profile="ci", seeds=[0, 1, 2])
    cur = tmp_path / "cur"
    R.write_study_tables({"random_init": ri(5, 10.0)}, cur)
    R.write_run_info({"profile": "ci", "seed": 5}, cur)
    drift = R.compare_runs(cur, root)
    assert drift.n_cells == 1 and [m.metric for m in drift.moved] == ["mean"]


def test_page_banner_says_when_drift_failed_the_run(tmp_path: Path) -> None:
    base = make_baseline(tmp_path / "base")
    cur = write_run(tmp_path / "cur", 7, [row("test_factor[tag=T0, phase=pruned]", 9.5, digest="x")])
    R.write_drift(R.compare_runs(cur, base), cur)
    page = R.build_index(cur).read_text()
    assert "drifted from its baseline" in page and "Every asserted claim holds." not in page
    assert 'href="drift.md"' in page
    ok = write_run(tmp_path / "ok", 0, seed_rows(0))
    R.write_drift(R.compare_runs(ok, base), ok)
    assert "Every asserted claim holds." in R.build_index(ok).read_text()


# ----------------------------------------------------------------------------------------
# bad baselines: one line, naming the file and the fix


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: (b / "seed-1" / "claims.csv").write_text('claim_id,verdict,holds\n"B-x,pass,True\n'),
         "not a well-formed CSV"),
        (lambda b: (b / "seed-1" / "clustering.csv").write_text("a,b\n1,2,3\n"), "row 2 has 3 fields"),
        (lambda b: (b / "seed-2" / "run.json").write_text('{"profile": "ci", "se'), "not valid JSON"),
        (lambda b: (b / "seed-2" / "run.json").unlink(), "is missing"),
        (lambda b: (b / "baseline.json").write_text(json.dumps({"profile": "ci", "seeds": []})),
         "non-empty list of 'seeds'"),
        (lambda b: (b / "baseline.json").write_text(json.dumps({"profile": "ci", "seeds": [2**40]})),
         "not an integer in [0, 2**32)"),
    ],
)
def test_a_bad_baseline_is_one_clear_error(tmp_path: Path, damage, message) -> None:
    base = make_baseline(tmp_path / "base", seeds=(0, 1, 2))
    damage(base)
    with pytest.raises(R.BaselineError, match=None) as info:
        R.load_baseline(base, profile="ci")
    text = str(info.value)
    assert message in text and "make baseline" in text and "\n" not in text


def test_a_baseline_of_another_profile_is_refused(tmp_path: Path) -> None:
    base = make_baseline(tmp_path / "base", seeds=(0, 1, 2), profile="quick")
    with pytest.raises(R.BaselineError, match="baseline of profile 'quick'; this run's profile is 'ci'"):
        R.load_baseline(base, profile="ci")


def test_the_committed_ci_baseline_loads() -> None:
    """baselines/ci is a baseline of several seeds that this version can read."""
    root = Path(__file__).resolve().parents[1] / "baselines" / "ci"
    baseline = R.load_baseline(root, profile="ci")
    assert len(baseline.seeds) >= 3
    for run in baseline.runs:
        for study, frame in run.tables.items():
            assert "cell" in frame.columns, (study, run.seed)
