"""Tests of harness.report.drift: two reports folders compared (claims, cell means, coverage)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from harness import report as R

# MNIST pruned: instances 8.0, 8.1, 8.2 -> mean 8.1, sd 0.1, SE 0.1/sqrt(3) = 0.0577
BASE_NCUTS = (8.0, 8.1, 8.2)
SE = 0.1 / math.sqrt(3)


def clustering_rows(shift_pruned: float = 0.0, shift_unpruned: float = 0.0) -> list[dict[str, Any]]:
    rows = []
    for phase, base, shift in (("pruned", 8.0, shift_pruned), ("unpruned", 10.0, shift_unpruned)):
        for i, offset in enumerate((0.0, 0.1, 0.2)):
            rows.append(
                {
                    "study": "clustering",
                    "test_id": f"experiments/test_clustering.py::test_factor[MNIST-{phase}-i{i}]",
                    "model_tag": "MNIST",
                    "phase": phase,
                    "instance": i,
                    "n_clusters": 12,
                    "null": "layer",
                    "ncut": base + offset + shift,
                    "null_mean": base + 1.0,
                    "null_std": 0.05,
                    "z": -20.0,
                    "n_samples": 100,
                }  # fmt: skip
            )
    return rows


def single_rows(ncut: float) -> list[dict[str, Any]]:
    """One instance per cell: the SE is the null's, null_std / sqrt(n_samples) = 0.01."""
    return [
        {"study": "stability", "test_id": "experiments/test_stability.py::test_instance[LINE-i0]",
         "model_tag": "LINE", "phase": "pruned", "instance": 0, "n_clusters": 12, "null": "layer",
         "ncut": ncut, "null_mean": 8.0, "null_std": 0.1, "z": -5.0, "n_samples": 100}
    ]  # fmt: skip


def claims(verdict: str) -> list[dict[str, Any]]:
    return [
        {"claim_id": "B-MNIST-pruned-sig", "table": "B", "claim": "significant", "verdict": verdict,
         "test_id": "experiments/test_clustering.py::test_claim[B-MNIST-pruned-sig]", "study": "clustering"},
        {"claim_id": "", "table": "", "claim": "ad hoc", "verdict": "pass",
         "test_id": "experiments/test_x.py::test_y", "study": "x"},
    ]  # fmt: skip


def make_run(
    root: Path,
    *,
    profile: str = "quick",
    seed: int = 0,
    rows: dict[str, list[dict[str, Any]]] | None = None,
    verdict: str = "pass",
) -> Path:
    rows = (
        rows
        if rows is not None
        else {"clustering": clustering_rows(), "stability": single_rows(7.0)}
    )
    R.write_study_tables(rows, root)
    R.write_claims(claims(verdict), root)
    R.write_run_info({"profile": profile, "seed": seed}, root)
    return root


def test_identical_runs_have_no_drift(tmp_path: Path) -> None:
    base, cur = make_run(tmp_path / "base"), make_run(tmp_path / "cur")
    drift = R.compare_runs(cur, base)
    assert drift.ok and not drift.flipped and not drift.moved and not drift.missing
    assert drift.n_claims == 2
    assert drift.n_cells == 9  # 3 cells x (ncut, z, null_mean)
    assert R.drift_line(drift).startswith("No drift against the baseline")
    assert "Drift(ok=True" in repr(drift)


def test_verdict_flip(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", verdict="pass")
    cur = make_run(tmp_path / "cur", verdict="fail")
    drift = R.compare_runs(cur, base)
    assert not drift.ok
    assert drift.flipped == (R.Flip("B-MNIST-pruned-sig", "pass", "fail"),)
    assert "1 of 2 claim verdicts changed" in R.drift_line(drift)


def test_mean_moved_beyond_three_se_is_flagged_and_within_is_not(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    # pruned mean moves by 4 SE, unpruned by 2 SE
    rows = {"clustering": clustering_rows(4 * SE, 2 * SE), "stability": single_rows(7.0)}
    cur = make_run(tmp_path / "cur", rows=rows)
    drift = R.compare_runs(cur, base)
    assert not drift.ok
    assert len(drift.moved) == 1
    move = drift.moved[0]
    assert (move.study, move.metric) == ("clustering", "ncut")
    assert "phase=pruned" in move.group and "model_tag=MNIST" in move.group
    assert move.before == pytest.approx(8.1) and move.after == pytest.approx(8.1 + 4 * SE)
    assert move.se == pytest.approx(SE) and move.n_se == pytest.approx(4.0)
    assert move.rule == "sd/sqrt(n)"
    path = R.write_drift(drift, cur)
    text = path.read_text()
    assert text.splitlines()[0] == R.drift_line(drift) == R.read_drift_line(cur)
    assert "1 of 9 cell means moved by more than 3 SE" in text and "phase=pruned" in text


def test_single_instance_uses_the_null_or_one_percent(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    # n = 1: SE = null_std / sqrt(n_samples) = 0.01; 0.02 is 2 SE, 0.05 is 5 SE
    near = R.compare_runs(
        make_run(
            tmp_path / "near",
            rows={"clustering": clustering_rows(), "stability": single_rows(7.02)},
        ),
        base,
    )
    assert near.ok
    far = R.compare_runs(
        make_run(
            tmp_path / "far", rows={"clustering": clustering_rows(), "stability": single_rows(7.05)}
        ),
        base,
    )
    (move,) = far.moved
    assert move.rule == "null_std/sqrt(n_samples)" and move.n_se == pytest.approx(5.0)
    # without a null: 1% of the baseline's value
    no_null = [
        {k: v for k, v in r.items() if k not in ("null_std", "n_samples")} for r in single_rows(7.0)
    ]
    base2 = make_run(tmp_path / "base2", rows={"stability": no_null})
    within = [{**r, "ncut": 7.0 * 1.009} for r in no_null]
    beyond = [{**r, "ncut": 7.0 * 1.011} for r in no_null]
    assert R.compare_runs(make_run(tmp_path / "w", rows={"stability": within}), base2).ok
    (move,) = R.compare_runs(make_run(tmp_path / "b", rows={"stability": beyond}), base2).moved
    assert move.rule == "1% relative"


def test_profile_or_seed_mismatch_is_not_ok(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", profile="paper")
    cur = make_run(tmp_path / "cur", profile="quick")
    drift = R.compare_runs(cur, base)
    assert not drift.ok and drift.n_cells == 0
    assert drift.mismatch == ("profile 'quick' here, 'paper' in the baseline",)
    assert R.drift_line(drift).startswith("Not comparable with the baseline")
    other_seed = make_run(tmp_path / "seed", seed=1)
    assert not R.compare_runs(other_seed, cur).ok
    (tmp_path / "cur" / "run.json").unlink()
    assert "no run.json in this run" in R.compare_runs(cur, other_seed).mismatch
    with pytest.raises(FileNotFoundError, match="does not exist"):
        R.compare_runs(tmp_path / "nowhere", base)


def test_missing_and_new_cells_and_studies(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    rows = [r for r in clustering_rows() if r["phase"] == "pruned"]
    extra = [{**r, "model_tag": "FASHION"} for r in rows]
    cur = make_run(tmp_path / "cur", rows={"clustering": rows + extra})
    drift = R.compare_runs(cur, base)
    assert not drift.ok
    assert "study stability" in drift.missing
    assert any(m.startswith("cell clustering:") and "phase=unpruned" in m for m in drift.missing)
    assert any("model_tag=FASHION" in n for n in drift.new)


def test_page_shows_the_drift_line(tmp_path: Path) -> None:
    base, cur = make_run(tmp_path / "base"), make_run(tmp_path / "cur", verdict="fail")
    R.write_drift(R.compare_runs(cur, base), cur)
    page = R.build_index(cur).read_text()
    assert "Drift against the baseline" in page and 'href="drift.md"' in page
    assert R.read_drift_line(base) is None
