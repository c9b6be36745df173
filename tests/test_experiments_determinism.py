"""The real experiments write the same tables with and without xdist (smoke profile).

Runs a slice of the experiment grid (two models of the clustering study, both phases, and
the random-init study) twice, serially and with two workers, each with its own empty store
so that everything is recomputed, and compares the CSVs apart from timing columns.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELECTION = [
    "experiments/test_clustering.py::test_factor",
    "experiments/test_random_init.py::test_random_init",
    "-k",
    "random_init or (not HALVES and (MNIST-unpruned or MNIST-pruned or POLY))",
]


def _run(tmp_path: Path, workers: str) -> Path:
    reports = tmp_path / f"reports-n{workers}"
    env = dict(os.environ, HARNESS_STORE=str(tmp_path / f"store-n{workers}"))
    cmd = [
        sys.executable, "-m", "pytest", *SELECTION, "-n", workers, "--profile", "smoke",
        "--reports-dir", str(reports), "-q", "-p", "no:cacheprovider",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return reports


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]


@pytest.mark.integration
def test_same_tables_with_0_and_2_workers(tmp_path):
    serial = _run(tmp_path, "0")
    parallel = _run(tmp_path, "2")
    for study in ("clustering", "random_init"):
        a, b = _table(serial / f"{study}.csv"), _table(parallel / f"{study}.csv")
        assert a, f"no rows in {study}.csv"
        assert a == b, f"{study}.csv differs between -n 0 and -n 2"
    clustering = _table(serial / "clustering.csv")
    assert {r["model_tag"] for r in clustering} == {"MNIST", "POLY"}
    assert {r["phase"] for r in clustering} == {"unpruned", "pruned"}
