"""The real experiments write the same tables whatever the worker count (ci profile).

Runs a slice of the ci grid (MNIST+DROPOUT in both phases, the case where the worker count
used to change the trained weights: pruned n-cut 8.976 with ``-n 1`` and 9.286 with ``-n 2``,
because each worker trained with cores/workers threads; and the MLP random inits) with one
worker and with two, each with its own empty store so that everything is recomputed, and
compares the CSVs apart from timing columns. ``HARNESS_DETERMINISM_FULL=1`` runs the whole
ci profile instead (minutes).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELECTION = (
    ["experiments"]
    if os.environ.get("HARNESS_DETERMINISM_FULL") == "1"
    else [
        "experiments/test_clustering.py::test_factor",
        "experiments/test_random_init.py::test_random_init",
        "-k",
        "(random_init and not cnn and not vgg) or MNIST+DROPOUT",
    ]
)


def _run(tmp_path: Path, workers: str) -> Path:
    reports = tmp_path / f"reports-n{workers}"
    env = dict(os.environ, HARNESS_STORE=str(tmp_path / f"store-n{workers}"))
    cmd = [
        sys.executable, "-m", "pytest", *SELECTION, "-n", workers, "--profile", "ci",
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
def test_same_tables_with_1_and_2_workers(tmp_path):
    serial = _run(tmp_path, "1")
    parallel = _run(tmp_path, "2")
    studies = sorted(p.stem for p in serial.glob("*.csv") if p.stem not in ("claims", "fidelity"))
    assert {"clustering", "random_init"} <= set(studies)
    for study in studies:
        a, b = _table(serial / f"{study}.csv"), _table(parallel / f"{study}.csv")
        assert a, f"no rows in {study}.csv"
        assert a == b, f"{study}.csv differs between -n 1 and -n 2"
    clustering = _table(serial / "clustering.csv")
    assert "MNIST+DROPOUT" in {r["model_tag"] for r in clustering}
    assert {r["phase"] for r in clustering} == {"unpruned", "pruned"}
