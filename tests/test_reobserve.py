"""Re-deriving what each claim observed in a kept run from the tables it kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from harness.claims import REGISTRY
from harness.claims.reobserve import reobserve
from harness.cli import main

P1 = "B-MNIST+L1REG-pruned-p1"


def _kept_run(folder: Path, *, holds: str, observed: str) -> Path:
    cell = REGISTRY[P1].cells[0]
    base = {"model_tag": cell.tag, "phase": cell.phase, "null": cell.null, "n_clusters": cell.n_clusters}
    pd.DataFrame([
        {**base, "instance": 0, "p": 1.0, "ncut": 10.9, "null_mean": 10.2, "z": 6.2},
        {**base, "instance": 1, "p": 1.0, "ncut": 10.8, "null_mean": 10.3, "z": 4.1},
    ]).to_csv(folder / "clustering.csv", index=False)  # fmt: skip
    rows = [
        {"claim_id": P1, "verdict": "recorded", "observed": observed, "holds": holds, "study": "clustering"},
        {"claim_id": "", "verdict": "pass", "observed": "x=1", "holds": "True", "study": "clustering"},
        {"claim_id": "B-MNIST-pruned-sig", "verdict": "not run", "observed": "", "holds": "", "study": "clustering"},
    ]
    with open(folder / "claims.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _observed(folder: Path) -> str:
    return next(r for r in csv.DictReader(open(folder / "claims.csv", encoding="utf-8")) if r["claim_id"] == P1)["observed"]


def test_a_claim_gets_the_numbers_its_check_reports_now(tmp_path: Path) -> None:
    folder = _kept_run(tmp_path, holds="True", observed="p=[1, 1], ncut=[10.9, 10.8], null_mean=[10.2, 10.3]")
    assert reobserve(folder) == (1, 2)
    assert _observed(folder) == "p=[1, 1], ncut=[10.9, 10.8], null_mean=[10.2, 10.3], z=[6.2, 4.1]"
    assert REGISTRY[P1].observed_margins(_observed(folder)) == pytest.approx([4.0, 1.9])
    assert reobserve(folder) == (0, 3)  # nothing left to add


@pytest.mark.parametrize(
    ("holds", "observed"),
    [
        ("False", "p=[1, 1], ncut=[10.9, 10.8], null_mean=[10.2, 10.3]"),  # another verdict
        ("True", "p=[1, 1], ncut=[10.9, 10.7], null_mean=[10.2, 10.3]"),  # another number
        ("True", "not what a check writes"),
    ],
)
def test_a_table_that_does_not_reproduce_the_run_leaves_the_text_alone(tmp_path: Path, holds: str, observed: str) -> None:
    folder = _kept_run(tmp_path, holds=holds, observed=observed)
    assert reobserve(folder) == (0, 3)
    assert _observed(folder) == observed


def test_reobserve_without_a_calibration_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["calibrate", "--profile", "quick", "--reobserve", "--out", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "holds no calibration" in err[0]
