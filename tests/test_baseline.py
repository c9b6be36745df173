"""The committed baselines and calibrations: current, and what they make of claim statuses.

``baselines/ci`` is the ci profile run at several seeds (``make baseline``): the drift
check's reference and the ci calibration. It must hold exactly the tests and claims the ci
profile runs today, and every claim the ci profile asserts must have held at every seed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import calibration as C
from harness import report as R
from harness.claims import CI_CLAIMS, REGISTRY
from harness.claims.catalog import observed_margins
from harness.report.baseline import (
    claim_of_test,
    seed_folder,
    stale_entries,
    write_baseline_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
CI_BASELINE = ROOT / "baselines" / "ci"


def _collected(profile: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "experiments", "--profile", profile, "--collect-only",
         "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line.strip() for line in proc.stdout.splitlines() if "::" in line]


def _fake_run(
    root: Path, seed: int, tests: list[str], claims: dict[str, bool], profile: str = "quick",
    observed: dict[str, str] | None = None,
) -> None:
    rows = [{"study": "clustering", "test_id": t, "cell": t.split("::")[-1], "ncut": 8.0} for t in tests]
    R.write_study_tables({"clustering": rows}, root / seed_folder(seed))
    R.write_claims(
        [{"claim_id": c, "claim": c, "verdict": "recorded", "holds": h,
          "observed": (observed or {}).get(c, f"z={-3 - seed}"),
          "test_id": f"experiments/test_clustering.py::test_claim[{c}]"} for c, h in claims.items()],
        root / seed_folder(seed),
    )  # fmt: skip
    R.write_run_info({"profile": profile, "seed": seed}, root / seed_folder(seed))


def test_claim_of_test() -> None:
    assert claim_of_test("experiments/test_clustering.py::test_claim[B-MNIST-pruned-sig]") == "B-MNIST-pruned-sig"
    assert claim_of_test("experiments/test_clustering.py::test_claim[B-x]@MNIST/i0") == "B-x"
    assert claim_of_test("experiments/test_clustering.py::test_factor[MNIST-pruned-i0]") == ""


def test_a_stale_baseline_is_found(tmp_path: Path) -> None:
    tests = ["experiments/test_clustering.py::test_factor[A-i0]", "experiments/test_clustering.py::test_factor[B-i0]"]
    for seed in (0, 1, 2):
        _fake_run(tmp_path, seed, tests[:1], {"B-old": True})
    write_baseline_manifest(tmp_path, profile="quick", seeds=[0, 1, 2])
    baseline = R.load_baseline(tmp_path)
    collected = [*tests, "experiments/test_clustering.py::test_claim[B-new]"]
    problems = stale_entries(baseline, collected)
    assert "seed-0: no row of experiments/test_clustering.py::test_factor[B-i0]" in problems
    assert "seed-2: no verdict of claim B-new" in problems
    assert "seed-1: a verdict of claim B-old, which the profile no longer checks" in problems
    current = [tests[0], "experiments/test_clustering.py::test_claim[B-old]"]
    assert stale_entries(baseline, current) == []


@pytest.mark.integration
def test_the_ci_baseline_is_current() -> None:
    """Fails when the ci profile gains or loses a test or claim that baselines/ci lacks or
    holds: the baseline cannot go stale silently."""
    baseline = R.load_baseline(CI_BASELINE, profile="ci")
    problems = stale_entries(baseline, _collected("ci"))
    assert not problems, (
        f"baselines/ci is stale ({len(problems)} problems; refresh it with `make baseline` and "
        "commit it with the reason): " + "; ".join(problems[:12])
    )


def test_every_ci_claim_held_at_every_calibrated_seed() -> None:
    measured = C.calibration("ci")
    assert measured is not None, "baselines/ci has no calibration: run `make baseline`"
    for claim_id in CI_CLAIMS:
        assert claim_id in measured, f"{claim_id} is not in the ci calibration: `make baseline`"
        entry = measured[claim_id]
        assert all(entry.holds), (
            f"{claim_id} held at {sum(entry.holds)} of {len(entry.holds)} calibrated ci seeds "
            f"({entry.observed}); a ci claim must hold at every seed"
        )
        assert REGISTRY[claim_id].status_at("ci")[0] == "assert"


def test_calibrated_statuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Held at every seed with wide margins: asserted. Failed at every seed, far from
    holding: strict xfail with each seed's numbers. In between: recorded with its hold rate.
    Not calibrated: recorded."""
    ids = list(REGISTRY)
    always, never, mixed, absent = (
        next(i for i in ids if i.endswith("-sig") and "mixed" not in i),
        next(i for i in ids if i.endswith("-p1")),
        next(i for i in ids if i.startswith("I-")),
        next(i for i in ids if i.startswith("lesion")),
    )
    folder = tmp_path / "quick"
    for seed in (0, 1, 2):
        observed = {
            always: f"p=[0.01961, 0.01961], z=[{-9 - seed}, {-10 + seed / 2}]",
            never: f"p=[0.5], ncut=[{6 + seed / 10}], null_mean=[9], z=[{-8 - seed / 4}]",
        }
        _fake_run(folder, seed, [], {always: True, never: False, mixed: seed != 1}, observed=observed)
    write_baseline_manifest(folder, profile="quick", seeds=[0, 1, 2])
    monkeypatch.setenv(C.ENV_BASELINES, str(tmp_path))
    C.clear_calibration_cache()
    try:
        assert REGISTRY[always].status_at("quick")[0] == "assert"
        status, reason = REGISTRY[never].status_at("quick")
        assert status == "xfail" and "seed 0: p=[0.5], ncut=[6.0]" in reason and "seed 2: p=[0.5], ncut=[6.2]" in reason
        status, reason = REGISTRY[mixed].status_at("quick")
        assert status == "record" and "held at 2 of 3 seeds" in reason and "67%" in reason
        status, reason = REGISTRY[absent].status_at("quick")
        assert status == "record" and "make calibrate PROFILE=quick" in reason
        # a profile without a calibration keeps the registry's own statuses
        assert REGISTRY[always].status_at("paper")[0] == "assert"
        summary = C.write_calibration_summary(folder, "quick").read_text()
        assert f"| {mixed} | holds | fails | holds | 67% | - | record |" in summary
        summary = C.write_calibration_summary(folder, "quick", observed_margins).read_text()
        row = next(line for line in summary.splitlines() if line.startswith(f"| {always} |"))
        assert row.startswith(f"| {always} | holds | holds | holds | 100% | 99.") and row.endswith("| assert |")
        assert "## Each seed left out" in summary
    finally:
        C.clear_calibration_cache()


def test_calibrate_add_runs_only_the_new_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``calibrate --add 7`` reuses the kept runs of seeds 0-2 and runs seed 7 alone; the new
    calibration keeps all four seeds. A second ``--add`` of a kept seed runs nothing."""
    from harness import cli

    claim = next(i for i in REGISTRY if i.endswith("-sig"))
    folder = tmp_path / "quick"
    for seed in (0, 1, 2):
        _fake_run(folder, seed, [], {claim: True})
    write_baseline_manifest(folder, profile="quick", seeds=[0, 1, 2])
    ran: list[int] = []

    def fake_pytest(command: list[str], cwd: Path) -> int:
        seed = int(command[command.index("--harness-seed") + 1])
        reports = Path(command[command.index("--reports-dir") + 1])
        ran.append(seed)
        _fake_run(reports.parent, seed, [], {claim: True})
        (reports.parent / seed_folder(seed)).rename(reports / "moved")
        for path in (reports / "moved").iterdir():
            path.rename(reports / path.name)
        return 0

    monkeypatch.setattr(subprocess, "call", fake_pytest)
    argv = ["calibrate", "--profile", "quick", "--out", str(folder), "--add", "7"]
    assert cli.main(argv) == 0
    assert ran == [7]
    assert C.read_calibration(str(tmp_path), "quick")[claim].seeds == (0, 1, 2, 7)
    assert cli.main(["calibrate", "--profile", "quick", "--out", str(folder), "--add", "1"]) == 0
    assert ran == [7]
    # an empty folder has nothing to extend: one line, exit 2
    assert cli.main(["calibrate", "--profile", "quick", "--out", str(tmp_path / "none"), "--add", "3"]) == 2
