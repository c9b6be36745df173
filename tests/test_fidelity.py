"""Tests of harness.report.fidelity: cells reproduced within the paper's spread, claims held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness import report as R
from harness.claims import REGISTRY
from harness.paper import paper_value

# Table B, MNIST: pruned 8.88 (SD 0.049), unpruned 10.024 (SD 0.017).
PRUNED, PRUNED_SD = 8.88, 0.049
UNPRUNED, UNPRUNED_SD = 10.024, 0.017


def clustering_row(tag: str, phase: str, instance: int, ncut: float) -> dict[str, Any]:
    return {
        "study": "clustering",
        "test_id": f"experiments/test_clustering.py::test_factor[{tag}-{phase}-i{instance}]",
        "model_tag": tag,
        "phase": phase,
        "instance": instance,
        "n_clusters": 12,
        "null": "layer",
        "ncut": ncut,
        "paper_ncut": paper_value("B", tag, "ncut", phase=phase),
    }


def rows_by_study() -> dict[str, list[dict[str, Any]]]:
    clustering = [
        # mean 8.88 + 1.5 SD: within the paper's spread (2 SD)
        *(clustering_row("MNIST", "pruned", i, PRUNED + 1.5 * PRUNED_SD + d) for i, d in enumerate((-0.01, 0.0, 0.01))),
        # mean 10.024 + 3 SD: outside it
        *(clustering_row("MNIST", "unpruned", i, UNPRUNED + 3 * UNPRUNED_SD) for i in range(3)),
        # no paper value: not a paper cell
        {**clustering_row("MNIST+L2REG-ALL", "pruned", 0, 7.0), "paper_ncut": None},
    ]  # fmt: skip
    # H7 records each instance once per null: it counts once
    n_clusters = [
        {"model_tag": "MNIST", "phase": "pruned", "instance": i, "n_clusters": k, "null": null,
         "ncut": 4.556 + 0.01 * i if k == 7 else 9.0, "paper_ncut": paper_value(f"H{k}", "MNIST", "ncut")}
        for i in range(2) for k in (7, 10) for null in ("layer", "layer_nonzero")
    ]  # fmt: skip
    # a summary row over instances (no instance) is not an instance
    stability = [
        {"model_tag": "LINE", "phase": "pruned", "instance": 0, "n_clusters": 12, "ncut": 7.361, "paper_ncut": 7.361},
        {"model_tag": "LINE", "phase": "pruned", "kind": "summary", "ncut": 99.0, "paper_ncut": 7.361},
    ]  # fmt: skip
    # Table I: the paper's SD travels in the row (paper_sd); Table J: no SD, 2% rule
    random_init = [
        {"init": "plain", "n_clusters": 12, "mean": 10.295 + 0.07, "paper_mean": 10.295, "paper_sd": 0.032},
        {"init": "clusterable", "n_clusters": 12, "mean": 6.0, "paper_mean": None, "paper_sd": None},
    ]  # fmt: skip
    learning_curve = [
        {"model_tag": "MNIST", "epoch": 10, "phase": "unpruned", "n_clusters": 4, "ncut": 2.492 * 1.019, "paper_ncut": 2.492},
        {"model_tag": "MNIST", "epoch": 15, "phase": "unpruned", "n_clusters": 4, "ncut": 2.0, "paper_ncut": None},
    ]  # fmt: skip
    return {
        "clustering": clustering,
        "n_clusters": n_clusters,
        "stability": stability,
        "random_init": random_init,
        "learning_curve": learning_curve,
    }


def claim_records() -> list[dict[str, Any]]:
    ids = [k for k in REGISTRY if REGISTRY[k].table == "B"][:4]
    verdicts = ["pass", "fail", "xfail", "recorded"]
    records = [
        {"claim_id": i, "table": "B", "claim": REGISTRY[i].statement, "verdict": v,
         "study": "clustering", "test_id": REGISTRY[i].test}
        for i, v in zip(ids, verdicts, strict=True)
    ]  # fmt: skip
    # hand-written: no id, no table; counted under its study's table (J)
    records.append({"claim_id": "", "table": "", "claim": "pruning lowers the K=4 n-cut",
                    "verdict": "pass", "study": "learning_curve", "test_id": "t::x"})  # fmt: skip
    return records


def test_cells_reproduced_within_spread_or_two_percent() -> None:
    cells = R.fidelity_cells(rows_by_study()).set_index(["table", "cell"])
    pruned = cells.loc[("B", "MNIST pruned K=12")]
    assert pruned["n"] == 3
    assert pruned["ours"] == pytest.approx(PRUNED + 1.5 * PRUNED_SD)
    assert pruned["paper_sd"] == pytest.approx(PRUNED_SD)  # looked up in the paper's table
    assert pruned["tolerance"] == pytest.approx(2 * PRUNED_SD)
    assert pruned["reproduced"] and pruned["null"] == "layer"
    unpruned = cells.loc[("B", "MNIST unpruned K=12")]
    assert not unpruned["reproduced"] and unpruned["diff"] == pytest.approx(3 * UNPRUNED_SD)
    assert "2 x paper SD" in unpruned["rule"]
    # a cell without a paper value is not a paper cell
    assert not any("L2REG-ALL" in c for _, c in cells.index)
    # H7: one value per instance although each instance has a row per null
    h7 = cells.loc[("H7", "MNIST pruned K=7")]
    assert h7["n"] == 2 and h7["reproduced"] and h7["null"] == ""
    assert not cells.loc[("H10", "MNIST pruned K=10")]["reproduced"]
    # summary rows (no instance) are left out
    assert cells.loc[("G", "LINE pruned K=12")]["n"] == 1
    assert cells.loc[("G", "LINE pruned K=12")]["reproduced"]
    # Table I: the SD from the row; 0.07 > 2 x 0.032
    plain = cells.loc[("I", "plain K=12")]
    assert plain["paper_sd"] == 0.032 and not plain["reproduced"]
    # Table J: no SD, 1.9% off is within 2%
    j = cells.loc[("J", "MNIST epoch 10")]
    assert j["reproduced"] and "2% of paper" in j["rule"] and pd.isna(j["paper_sd"])


def test_fidelity_table_counts_cells_and_claims() -> None:
    frame = R.fidelity_table(rows_by_study(), claim_records(), profile="quick").set_index("table")
    assert list(frame.index[:9]) == ["A", "B", "G", "H2", "H7", "H10", "I", "J", "lesion"]
    b = frame.loc["B"]
    assert (b["paper_cells"], b["cells_run"], b["cells_reproduced"]) == (31, 2, 1)
    assert (b["claims_asserted"], b["claims_held"], b["claims_xfail"], b["claims_recorded"]) == (
        2,
        1,
        1,
        1,
    )
    n_b = sum(c.table == "B" for c in REGISTRY.values())
    assert b["claims"] == n_b and b["claims_not_run"] == n_b - 4
    assert frame.loc["J", "claims_held"] >= 1  # the hand-written claim, by its study
    assert frame.loc["A", "cells_run"] == 0 and frame.loc["A", "paper_cells"] == 8
    assert frame.loc["I", "paper_cells"] == 6 and frame.loc["J", "paper_cells"] == 57
    assert set(frame["profile"]) == {"quick"}
    line = R.fidelity_line(frame.reset_index())
    assert line.startswith(
        "Reproduced 4 of 7 paper cells run (B 1/2, G 1/1, H7 1/1, H10 0/1, I 0/1, J 1/1)"
    )
    assert "2 of 3 asserted claims hold" in line and "1 xfail" in line and "not run" in line


def test_write_fidelity_and_page(tmp_path: Path) -> None:
    rows = rows_by_study()
    frame = R.fidelity_table(rows, claim_records(), profile="quick")
    paths = R.write_fidelity(frame, tmp_path, cells=R.fidelity_cells(rows))
    assert [p.name for p in paths] == ["fidelity.csv", "fidelity.md"]
    md = (tmp_path / "fidelity.md").read_text()
    assert R.fidelity_line(frame) in md and "2 x paper SD" in md and "2% of paper" in md
    assert md.index("MNIST unpruned K=12") < md.index("MNIST pruned K=12")  # not reproduced first
    back = R.read_fidelity(tmp_path)
    assert back is not None and R.fidelity_line(back) == R.fidelity_line(frame)
    R.write_study_tables({"clustering": rows["clustering"]}, tmp_path)
    page = R.build_index(tmp_path, {}).read_text()
    assert "Reproduced 4 of 7 paper cells" in page and 'href="fidelity.md"' in page
    assert 'id="study-fidelity"' not in page  # a run-wide table, not a study
    assert R.read_fidelity(tmp_path / "nowhere") is None


def test_empty_run() -> None:
    frame = R.fidelity_table({}, [], profile="smoke")
    assert int(frame["cells_run"].sum()) == 0
    line = R.fidelity_line(frame)
    assert line.startswith("No paper cells run; no claims asserted")
