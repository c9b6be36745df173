"""Tests of harness.report: tables, claims, aggregates, workbook, figures, summaries, index.html."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from harness import report as R
from harness.report.figures import activations as figures_activations

# ----------------------------------------------------------------------------------------
# synthetic results


def clustering_rows() -> list[dict[str, Any]]:
    """Rows like experiments/test_clustering.py records (several tests, 3 instances each)."""
    rows = []
    for tag, phase, paper in [
        ("MNIST", "unpruned", 10.024),
        ("MNIST", "pruned", 8.880),
        ("MNIST+DROPOUT", "pruned", 8.350),
    ]:
        for i in (0, 1, 2, 10):
            ncut = paper + 0.01 * i + 1.0 / 3.0
            rows.append(
                {
                    "study": "clustering",
                    "test_id": f"experiments/test_clustering.py::test_factor[{tag}-{phase}-i{i}]",
                    "profile": "smoke",
                    "seed": 1000 + i,
                    "model_tag": tag,
                    "condition": "Control",
                    "phase": phase,
                    "instance": i,
                    "n_clusters": 12,
                    "null": "layer",
                    "ncut": ncut,
                    "null_mean": ncut + 0.3,
                    "null_std": 0.035,
                    "z": -0.3 / 0.035,
                    "p": 1.0 / 9.0 if i != 2 else 1.0,
                    "is_sig": i != 2,
                    "n_samples": 8,
                    "test_acc": 0.98,
                    "paper_ncut": paper,
                    "paper_z": -4.5,
                    "outcome": "passed",
                    "duration_s": 1.25 + i,
                    "model_key": f"key{i}",
                }
            )
    return rows


def lesion_rows() -> list[dict[str, Any]]:
    """Several rows per test (one per sub-cluster), as a lesion experiment would record."""
    rows = []
    for layer, label in itertools.product((1, 2), (0, 3, 10)):
        rows.append(
            {
                "study": "lesion",
                "test_id": "experiments/test_lesion.py::test_single[FASHION]",
                "profile": "smoke",
                "seed": 7,
                "layer": layer,
                "label": label,
                "taxonomy": "important" if label == 3 else "other",
                "diff": -0.01 * (layer + label),
                "p": 1 / 21,
                "per_class": [0.9, 0.8],
            }
        )
    return rows


def claim_dicts() -> list[dict[str, Any]]:
    base = {"study": "clustering", "profile": "smoke", "note": ""}
    return [
        {**base, "claim": "z below zero", "expected": "z < 0", "observed": "z=-3",
         "verdict": "pass", "test_id": "experiments/test_clustering.py::test_a"},
        {**base, "claim": "dropout lowers n-cut <script>alert(1)</script>", "expected": "a < b",
         "observed": "a=8.5, b=8.4", "verdict": "fail",
         "test_id": "experiments/test_clustering.py::test_b"},
        {**base, "claim": "recorded only", "expected": "", "observed": "1", "verdict": "recorded",
         "test_id": "experiments/test_clustering.py::test_c"},
        {**base, "claim": "known divergence", "expected": "x", "observed": "y", "verdict": "xfail",
         "test_id": "experiments/test_clustering.py::test_d", "note": "needs paper scale"},
        {**base, "claim": "crashed after recording", "expected": "x", "observed": "y",
         "verdict": "error", "test_id": "experiments/test_clustering.py::test_e"},
    ]  # fmt: skip


def read_csv_text(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


# ----------------------------------------------------------------------------------------
# tables


def test_csv_and_md_identical_for_rows_in_any_order(tmp_path: Path) -> None:
    rows = clustering_rows() + lesion_rows()
    by_study = {"clustering": rows[:12], "lesion": rows[12:]}
    R.write_study_tables(by_study, tmp_path / "a")
    rng = random.Random(0)
    for k in range(4):
        # rows of one test (lesion: one per sub-cluster) are shuffled too
        shuffled = {s: [dict(x) for x in rng.sample(r, len(r))] for s, r in by_study.items()}
        R.write_study_tables(shuffled, tmp_path / f"b{k}")
        for name in ("clustering.csv", "clustering.md", "lesion.csv", "lesion.md"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / f"b{k}" / name).read_bytes()


def test_rows_sorted_by_test_id_naturally_then_by_identity(tmp_path: Path) -> None:
    R.write_study_tables({"clustering": clustering_rows(), "lesion": lesion_rows()}, tmp_path)
    table = read_csv_text(tmp_path / "clustering.csv")
    ids = [r[table[0].index("test_id")] for r in table[1:]]
    assert ids[:4] == [
        f"experiments/test_clustering.py::test_factor[MNIST+DROPOUT-pruned-i{i}]"
        for i in (0, 1, 2, 10)  # natural order: i2 before i10
    ]
    lesion = read_csv_text(tmp_path / "lesion.csv")
    li, la = lesion[0].index("layer"), lesion[0].index("label")
    assert [(int(r[li]), int(r[la])) for r in lesion[1:]] == [
        (1, 0), (1, 3), (1, 10), (2, 0), (2, 3), (2, 10)
    ]  # fmt: skip


def test_column_order_identity_metrics_paper_timing() -> None:
    cols = R.column_order(clustering_rows())
    assert cols[:2] == ["study", "test_id"]
    # known identity columns, then unknown string columns (model_key) before any metric
    assert cols.index("model_key") < cols.index("ncut")
    assert cols.index("instance") < cols.index("ncut") < cols.index("z") < cols.index("test_acc")
    paper = [c for c in cols if c.startswith("paper_")]
    assert paper == ["paper_ncut", "paper_z"]  # in the order of their metrics
    assert cols.index("test_acc") < cols.index("paper_ncut")
    assert cols[-1] == "duration_s"
    lesion_cols = R.column_order(lesion_rows())
    # unknown numeric/list columns are metrics, after the identity block
    assert lesion_cols.index("taxonomy") < lesion_cols.index("diff")
    assert lesion_cols.index("label") < lesion_cols.index("taxonomy")
    assert R.is_timing_column("wall_time") and R.is_timing_column("fit_s")
    assert not R.is_timing_column("n_samples")


def test_csv_keeps_full_precision_and_special_values(tmp_path: Path) -> None:
    rows = [
        {"test_id": "t::a", "x": 1 / 3, "y": 1e-300, "z": float("nan"), "w": float("inf"),
         "b": True, "n": None, "lst": [1, 2.5], "big": 2**60},
        {"test_id": "t::b", "x": -0.1, "y": 12345678.123456789, "z": 0.0, "w": -float("inf"),
         "b": False, "n": "text, with comma", "lst": {"k": 1}, "big": 3},
    ]  # fmt: skip
    R.write_study_tables({"s": rows}, tmp_path)
    df = pd.read_csv(tmp_path / "s.csv")
    assert df["x"].tolist() == [1 / 3, -0.1]
    assert df["y"].tolist() == [1e-300, 12345678.123456789]
    assert math.isnan(df["z"][0]) and df["z"][1] == 0.0
    assert df["w"].tolist() == [float("inf"), -float("inf")]
    assert df["b"].tolist() == [True, False]
    assert math.isnan(df["n"][0]) and df["n"][1] == "text, with comma"
    assert json.loads(df["lst"][0]) == [1, 2.5]
    assert df["big"].tolist() == [2**60, 3]
    text = (tmp_path / "s.csv").read_text()
    assert "0.3333333333333333" in text and "\r" not in text


def test_markdown_rounds_floats_and_escapes_pipes(tmp_path: Path) -> None:
    rows = [{"test_id": "t::a|b", "ncut": 1 / 3, "p": 1e-14, "k": 12, "acc": 1.0}]
    R.write_study_tables({"s": rows}, tmp_path)
    md = (tmp_path / "s.md").read_text()
    assert md.startswith("# Study `s`")
    assert "0.333" in md and "0.3333" not in md
    assert "1.00e-14" in md
    assert "t::a\\|b" in md
    assert "1.000" in md  # a float column stays a float column
    header = next(line for line in md.splitlines() if line.startswith("| test_id"))
    assert [h.strip() for h in header.strip("|").split("|")] == ["test_id", "ncut", "p", "k", "acc"]


def test_empty_study_is_skipped_and_bad_names_rejected(tmp_path: Path) -> None:
    assert R.write_study_tables({"empty": []}, tmp_path) == []
    with pytest.raises(ValueError, match="file name"):
        R.write_study_tables({"../evil": [{"test_id": "x"}]}, tmp_path)
    with pytest.raises(ValueError, match="not a dict"):
        R.write_study_tables({"s": [[1, 2]]}, tmp_path)  # type: ignore[list-item]


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    R.write_study_tables({"s": [{"test_id": "t::a", "x": 1.0}]}, tmp_path)
    before = (tmp_path / "s.csv").read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        R.write_study_tables({"s": [{"test_id": "t::a", "x": 2.0}]}, tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "s.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.md"]  # no temp files


def test_claims_failing_first_and_validated(tmp_path: Path) -> None:
    claims = claim_dicts()
    paths = R.write_claims(random.Random(1).sample(claims, len(claims)), tmp_path)
    assert [p.name for p in paths] == ["claims.csv", "claims.md"]
    table = read_csv_text(tmp_path / "claims.csv")
    assert table[0][: len(R.CLAIM_COLUMNS)] == list(R.CLAIM_COLUMNS)
    assert table[0][len(R.CLAIM_COLUMNS) :] == ["profile"]  # other keys follow, sorted
    verdicts = [r[table[0].index("verdict")] for r in table[1:]]
    assert verdicts == ["fail", "error", "xfail", "pass", "recorded"]
    md = (tmp_path / "claims.md").read_text()
    assert "5 claims: 1 fail, 1 error, 1 xfail, 1 pass, 1 recorded" in md
    assert md.index("dropout lowers") < md.index("z below zero")
    with pytest.raises(ValueError, match="verdict must be one of 'fail', 'error', 'xpass'"):
        R.write_claims([{**claims[0], "verdict": "maybe"}], tmp_path)
    with pytest.raises(ValueError, match="lacks verdict"):
        R.write_claims([{"claim": "x"}], tmp_path)
    R.write_claims([], tmp_path)
    assert read_csv_text(tmp_path / "claims.csv") == [list(R.CLAIM_COLUMNS)]
    assert "no claims" in (tmp_path / "claims.md").read_text()


def test_claims_list_every_registry_entry(tmp_path: Path) -> None:
    from harness.claims import REGISTRY

    ran = next(iter(REGISTRY.values()))
    record = {"claim_id": ran.id, "claim": ran.statement, "verdict": "fail", "observed": "z=1",
              "test_id": ran.test, "study": ran.study, "status": "assert", "note": ""}  # fmt: skip
    hand = claim_dicts()[0]
    paths = R.write_claims_registry([record, hand], tmp_path, profile="quick")
    assert [p.name for p in paths] == ["claims.csv", "claims.md"]
    frame = pd.read_csv(tmp_path / "claims.csv", keep_default_na=False)
    assert len(frame) == len(REGISTRY) + 1  # every registry claim, and the hand-written one
    assert set(REGISTRY) <= set(frame["claim_id"])
    assert list(frame.columns[: len(R.CLAIM_COLUMNS)]) == list(R.CLAIM_COLUMNS)
    first = frame.iloc[0]
    assert (first["claim_id"], first["verdict"], first["table"]) == (ran.id, "fail", ran.table)
    assert first["expected"] == ran.evidence  # filled in from the registry
    assert frame.iloc[1]["claim"] == hand["claim"]  # pass before not run
    not_run = frame[frame["verdict"] == "not run"]
    assert len(not_run) == len(REGISTRY) - 1
    some = not_run.iloc[0]
    entry = REGISTRY[some["claim_id"]]
    assert (some["status"], some["note"]) == entry.status_at("quick")
    assert some["test_id"] == entry.test and some["expected"] == entry.evidence
    md = (tmp_path / "claims.md").read_text()
    assert f"{len(REGISTRY) + 1} claims: 1 fail, 1 pass, {len(REGISTRY) - 1} not run." in md
    # idempotent: records already completed add nothing
    again = R.registry_claims(R.registry_claims([record], profile="quick"), profile="quick")
    assert len(again) == len(REGISTRY)
    # the page shows "not run" claims with their own style, last
    text = R.build_index(tmp_path, {}).read_text()
    table = text[text.index('<table class="claims"') :]
    assert 'class="pill v-not-run"' in table
    assert table.index("v-fail") < table.index("v-pass") < table.index("v-not-run")


def test_aggregate_matches_hand_computed_table_b_line() -> None:
    rows = clustering_rows()
    agg = R.aggregate(rows, ["model_tag", "phase"])
    assert list(agg["model_tag"]) == ["MNIST", "MNIST", "MNIST+DROPOUT"]
    assert list(agg["phase"]) == ["pruned", "unpruned", "pruned"]
    line = agg.iloc[0]
    ncuts = [r["ncut"] for r in rows if r["model_tag"] == "MNIST" and r["phase"] == "pruned"]
    assert line["n"] == 4
    assert line["ncut_mean"] == pytest.approx(np.mean(ncuts), abs=1e-12)
    assert line["ncut_sd"] == pytest.approx(np.std(ncuts, ddof=1), abs=1e-12)
    assert line["is_sig_n_true"] == 3
    assert line["p_n_one"] == 1
    assert line["paper_ncut_const"] == 8.880
    custom = R.aggregate(rows, "model_tag", stats={"z": ["median", "count"], "test_acc": "max"})
    assert list(custom.columns) == ["model_tag", "n", "z_median", "z_count", "test_acc_max"]
    assert custom["n"].tolist() == [8, 4]
    with pytest.raises(ValueError, match="must be one of 'mean', 'sd'.*got 'average'"):
        R.aggregate(rows, ["model_tag"], stats={"z": "average"})
    with pytest.raises(ValueError, match="cannot group by"):
        R.aggregate(rows, ["nope"])
    # a DataFrame works too, and single values have no SD
    single = R.aggregate(pd.DataFrame(rows[:1]), ["model_tag"], stats={"ncut": "sd"})
    assert math.isnan(single["ncut_sd"][0])


def test_study_frame_is_sorted_and_ordered() -> None:
    rows = clustering_rows()
    df = R.study_frame(random.Random(3).sample(rows, len(rows)))
    assert list(df.columns) == R.column_order(rows)
    assert df["test_id"].iloc[0].endswith("[MNIST+DROPOUT-pruned-i0]")
    assert R.study_frame([]).empty


def test_write_workbook(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    tables = {
        "clustering/summary": R.aggregate(clustering_rows(), ["model_tag"]),
        "raw": pd.DataFrame({"a": [1.5, float("nan"), float("inf")], "b": ["x", None, "z"]}),
        "raw ": pd.DataFrame({"a": [1]}),
    }
    path = R.write_workbook(tables, tmp_path / "out.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["clustering_summary", "raw", "raw "]
    ws = wb["raw"]
    assert [c.value for c in ws[1]] == ["a", "b"]
    assert [ws.cell(row=r, column=1).value for r in (2, 3, 4)] == [1.5, None, "inf"]
    assert wb["clustering_summary"].cell(row=2, column=1).value == "MNIST"
    with pytest.raises(ValueError, match="at least one table"):
        R.write_workbook({}, tmp_path / "x.xlsx")


def test_split_frame_one_table_per_kind_without_empty_columns() -> None:
    rows = [
        {"test_id": "t::b", "kind": "pair", "mode": "joint", "x": 1.0, "n": None},
        {"test_id": "t::a", "kind": "pair", "mode": "joint", "x": 2.0, "n": None},
        {"test_id": "t::a", "kind": "summary", "mode": "joint", "x": None, "n": 3},
        {"test_id": "t::a", "kind": "pair", "mode": "conditional", "x": 4.0, "n": None},
        {"test_id": "t::a", "kind": None, "mode": "joint", "x": 5.0, "n": None},
    ]
    tables = R.split_frame(pd.DataFrame(rows), ["kind", "mode", "absent"], prefix="double")
    assert list(tables) == ["double-pair-conditional", "double-pair-joint", "double-summary-joint"]
    assert tables["double-pair-joint"]["test_id"].tolist() == ["t::a", "t::b"]
    assert "n" not in tables["double-pair-joint"] and "x" not in tables["double-summary-joint"]
    assert R.split_frame(pd.DataFrame(rows), ["absent"]) == {}


# ----------------------------------------------------------------------------------------
# study summaries


def test_summary_functions_get_their_study_rows_and_stems(tmp_path: Path) -> None:
    seen: dict[str, tuple[pd.DataFrame, Path]] = {}

    def clustering_summary(rows: pd.DataFrame, stem: Callable[[str], Path]) -> list[Path]:
        seen["clustering"] = (rows, stem("grid"))
        return R.plot_factors_grid(rows.assign(dataset="MNIST"), stem("grid"), formats=("svg",))

    def never(rows: pd.DataFrame, stem: Callable[[str], Path]) -> list[Path]:
        raise AssertionError("a study without rows gets no summary")

    rows = clustering_rows()
    paths = R.write_summary_figures(
        {"clustering": clustering_summary, "lesion": never},
        {"clustering": random.Random(0).sample(rows, len(rows)), "lesion": []},
        tmp_path,
    )
    frame, stem = seen["clustering"]
    assert frame.equals(R.study_frame(rows))  # report order, whatever the arrival order
    assert stem == R.figure_stem(tmp_path, "clustering", R.SUMMARY_ID, "grid")
    assert paths == [Path(f"{stem}.svg")] and paths[0].is_file()
    assert R.summary_stem(tmp_path, "clustering")("grid") == stem
    with pytest.raises(ValueError, match="file name"):
        R.summary_stem(tmp_path, "../up")


# ----------------------------------------------------------------------------------------
# figures


def _factors() -> pd.DataFrame:
    rows = []
    for ds, cond, phase in itertools.product(("MNIST", "FASHION"), ("Control", "L1"), PHASES):
        for i in range(3):
            rows.append({"dataset": ds, "condition": cond, "phase": phase, "instance": i,
                         "z": -5.0 - i if cond == "Control" else 25.0 + i, "paper_z": -4.0})  # fmt: skip
    return pd.DataFrame(rows)


PHASES = ("unpruned", "pruned")


def _network() -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(1)
    sizes = [16, 12, 12, 4]
    weights = [rng.normal(size=(a, b)) for a, b in itertools.pairwise(sizes)]
    labels = rng.integers(0, 3, sum(sizes))
    labels[3] = -1
    return weights, labels


def _good_calls() -> dict[str, Callable[[Path], list[Path]]]:
    # each test builds its own generator: data do not depend on which tests ran before
    rng = np.random.default_rng(0)
    s, r, c = 5, 12, 4
    weights, labels = _network()
    return {
        "null": lambda stem: R.plot_null_distribution(
            8.3, {"layer": rng.normal(9.2, 0.03, 40), "layer_nonzero": rng.normal(8.6, 0.02, 40)},
            stem, p={"layer": 1 / 41, "layer_nonzero": 1 / 41}, z={"layer": -30.0}, title="t",
        ),
        "factors": lambda stem: R.plot_factors_grid(
            _factors(), stem, row_order=["L1", "Control", "absent"], title="factors"
        ),
        "k": lambda stem: R.plot_k_sensitivity(
            [{"model_tag": m, "null": n, "n_clusters": k, "is_sig": k > 4, "z": -k * 1.0}
             for m in ("A", "B") for n in ("layer", "layer_nonzero") for k in (2, 4, 7, 12)],
            stem,
        ),
        "random_init": lambda stem: R.plot_random_init(
            {"MLP": rng.normal(10.3, 0.03, 30), "CNN": rng.normal(10.9, 0.01, 20)}, stem,
            trained={"MLP": [9.0, 9.1, 8.9]}, paper={"MLP": 10.295},
        ),
        "learning_curve": lambda stem: R.plot_learning_curve(
            [{"epoch": e, "ncut": 2.5 - 0.01 * e, "test_acc": 0.9, "paper_ncut": 2.4,
              "phase": "unpruned" if e <= 20 else "pruned"} for e in range(5, 41, 5)],
            stem,
        ),
        "lesion_accuracy": lambda stem: R.plot_lesion_accuracy(
            0.8 - rng.random(s) * 0.1, 0.86 - rng.random((r, s)) * 0.01, stem,
            labels=[f"L1-c{i}" for i in range(s)], baseline=0.87,
        ),
        "class_damage": lambda stem: R.plot_lesion_class_damage(
            0.8 - rng.random((s, c)) * 0.3, np.full(c, 0.85), stem,
            random_class_acc=0.84 - rng.random((r, s, c)) * 0.01,
        ),
        "taxonomy": lambda stem: R.plot_lesion_taxonomy(
            rng.random(s), -rng.random(s) * 0.1,
            ["important", "small", "other", "new-kind", "important"], stem,
            labels=[f"c{i}" for i in range(s)],
        ),
        "double": lambda stem: R.plot_double_lesion_heatmap(
            -rng.random((s, s)) * 0.1, stem, p=rng.choice([0.01, 0.5, 1.0], (s, s)),
            labels=[f"{i}" for i in range(s)],
        ),
        "dependency": lambda stem: R.plot_dependency_graph(
            [(1, 0), (1, 2), (2, 2), (3, 5)],
            [((1, 0), (2, 2)), ((2, 2), (1, 0)), ((1, 2), (3, 5))], stem,
            edge_kinds=["II", "III", "II"],
        ),
        "network": lambda stem: R.plot_clustered_network(weights, labels, stem, max_edges=60),
        "correlation_pictures": lambda stem: R.plot_correlation_pictures(_pictures(), stem, title="t"),
    }  # fmt: skip


def _degenerate_calls() -> dict[str, tuple[Callable[[Path], list[Path]], str]]:
    nan = float("nan")
    return {
        "null-empty": (lambda st: R.plot_null_distribution(nan, [], st), "no finite n-cut"),
        "null-nan": (lambda st: R.plot_null_distribution(8.0, [nan, float("inf")], st),
                     "no null samples"),
        "factors-empty": (lambda st: R.plot_factors_grid([], st), "no results"),
        "factors-nan": (lambda st: R.plot_factors_grid(
            [{"dataset": "M", "condition": "C", "phase": "pruned", "z": nan}], st),
            "1 non-finite value not shown"),
        "k-empty": (lambda st: R.plot_k_sensitivity(pd.DataFrame(), st), "no results"),
        "random-empty": (lambda st: R.plot_random_init({}, st), "no n-cuts"),
        "random-nan": (lambda st: R.plot_random_init({"MLP": [nan, nan]}, st), "no finite n-cuts"),
        "curve-empty": (lambda st: R.plot_learning_curve([], st), "no checkpoints"),
        "curve-nan": (lambda st: R.plot_learning_curve([{"epoch": 1, "ncut": nan}], st),
                      "no finite ncut values"),
        "lesion-empty": (lambda st: R.plot_lesion_accuracy([], [], st), "no lesion results"),
        "lesion-nan": (lambda st: R.plot_lesion_accuracy([nan], [[nan]], st), "no lesion results"),
        "damage-empty": (lambda st: R.plot_lesion_class_damage(np.zeros((0, 3)), np.ones(3), st),
                         "no per-class lesion results"),
        "taxonomy-empty": (lambda st: R.plot_lesion_taxonomy([], [], [], st), "no sub-clusters"),
        "double-empty": (lambda st: R.plot_double_lesion_heatmap(np.zeros((0, 0)), st),
                         "no double-lesion results"),
        "double-nan": (lambda st: R.plot_double_lesion_heatmap(np.full((2, 2), nan), st),
                       "no double-lesion results"),
        "dependency-empty": (lambda st: R.plot_dependency_graph([], [], st),
                             "no important sub-clusters"),
        "network-empty": (lambda st: R.plot_clustered_network([], [], st), "no weight matrices"),
        "pictures-empty": (lambda st: R.plot_correlation_pictures([], st), "no cluster of 4 units"),
    }  # fmt: skip


def _check_png(path: Path) -> np.ndarray:
    assert path.suffix.lower() == ".png" and path.stat().st_size > 3000
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 150
    assert float(img[..., :3].std()) > 0.01  # not blank
    return img


def _check_svg(path: Path) -> str:
    text = path.read_text()
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")
    return text


@pytest.mark.parametrize("name", list(_good_calls()))
def test_figure_functions_write_png_and_svg(name: str, tmp_path: Path) -> None:
    stem = tmp_path / "fig" / name
    paths = _good_calls()[name](stem)
    assert paths == [Path(f"{stem}.png"), Path(f"{stem}.svg")]
    _check_png(paths[0])
    _check_svg(paths[1])


@pytest.mark.parametrize("name", list(_degenerate_calls()))
def test_figure_functions_survive_empty_and_nan_input(name: str, tmp_path: Path) -> None:
    call, message = _degenerate_calls()[name]
    paths = call(tmp_path / name)
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert matplotlib.image.imread(paths[0]).size > 0
    # matplotlib writes each text as an SVG comment even when drawn as paths
    assert message in _check_svg(paths[1])


def test_correlation_pictures_draw_rows_of_other_shapes_and_control_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One axes per row: a row with a smaller image and fewer controls than the first still
    draws, each row on its own symmetric colour scale, with every image's pixels in it."""
    from harness.activations import ClusterPicture

    rng = np.random.default_rng(8)
    pics = [
        ClusterPicture(0, 0, 4, rng.normal(size=(1, 28, 28)), rng.normal(size=(3, 1, 28, 28))),
        ClusterPicture(1, 2, 6, 50 * rng.normal(size=(2, 10, 10)), rng.normal(size=(1, 2, 10, 10))),
    ]
    fig_axes: list[Any] = []
    real_finish = figures_activations.finish

    def keep(fig: Any, *args: Any, **kwargs: Any) -> list[Path]:
        fig_axes.extend(fig.axes)
        return real_finish(fig, *args, **kwargs)

    monkeypatch.setattr(figures_activations, "finish", keep)
    paths = R.plot_correlation_pictures(pics, tmp_path / "pics")
    _check_png(paths[0])
    assert len(fig_axes) == 2
    for ax, pic in zip(fig_axes, pics, strict=True):
        (image,) = ax.get_images()
        drawn = np.asarray(image.get_array(), dtype=float)
        expected = [pic.image, *pic.random_images]
        assert np.isfinite(drawn).sum() == sum(im.size for im in expected)
        vmax = max(float(np.abs(im).max()) for im in expected)
        assert image.get_clim() == pytest.approx((-vmax, vmax))
    labels = [t.get_text() for t in fig_axes[0].get_xticklabels()]
    assert labels == ["cluster", "random 1", "random 2", "random 3"]


def test_figures_are_byte_reproducible(tmp_path: Path) -> None:
    weights, labels = _network()
    null = np.random.default_rng(2).normal(9.0, 0.1, 30)
    for k in ("a", "b"):
        R.plot_null_distribution(8.0, {"layer": null}, tmp_path / k / "null", p=0.03, z=-3.0)
        R.plot_clustered_network(weights, labels, tmp_path / k / "net", max_edges=40)
    for name in ("null.png", "null.svg", "net.png", "net.svg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    svg = (tmp_path / "a" / "null.svg").read_text()
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg


def test_figures_leave_rcparams_alone(tmp_path: Path) -> None:
    keys = [k for k in matplotlib.rcParams if k != "backend"]
    before = {k: matplotlib.rcParams[k] for k in keys}
    R.plot_null_distribution(8.0, [8.5, 8.6], tmp_path / "x", formats=("svg",))
    assert {k: matplotlib.rcParams[k] for k in keys} == before


def test_figure_argument_errors(tmp_path: Path) -> None:
    weights, labels = _network()
    with pytest.raises(ValueError, match="one label per neuron"):
        R.plot_clustered_network(weights, labels[:-1], tmp_path / "n")
    with pytest.raises(ValueError, match="must chain"):
        R.plot_clustered_network([np.ones((3, 4)), np.ones((5, 2))], np.zeros(9), tmp_path / "n")
    with pytest.raises(ValueError, match="2-D"):
        R.plot_clustered_network([np.ones((3, 3, 2, 2))], np.zeros(5), tmp_path / "n")
    with pytest.raises(ValueError, match="figure format must be one of 'png', 'svg', 'pdf'"):
        R.plot_null_distribution(1.0, [1.0], tmp_path / "x", formats=("jpg",))
    with pytest.raises(ValueError, match="shape"):
        R.plot_lesion_accuracy([0.8, 0.7], np.ones((3, 3)), tmp_path / "x")
    with pytest.raises(ValueError, match="refers to a node"):
        R.plot_dependency_graph([(1, 0)], [((1, 0), (2, 1))], tmp_path / "x")
    with pytest.raises(ValueError, match="needs column"):
        R.plot_factors_grid([{"z": 1.0}], tmp_path / "x")
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        R.plot_clustering(weights, labels, tmp_path / "out.jpg")


def test_plot_clustering_writes_exactly_the_named_file(tmp_path: Path) -> None:
    weights, labels = _network()
    out = R.plot_clustering(weights, labels, tmp_path / "my.net.PNG", max_edges=30)
    assert out == tmp_path / "my.net.PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.net.PNG"]
    _check_png(out)
    svg = R.plot_clustering(weights, labels, tmp_path / "net.svg")
    _check_svg(svg)


def test_plot_clusterability_titles_the_result(tmp_path: Path) -> None:
    from harness.stats import ClusterabilityResult

    weights, labels = _network()
    result = ClusterabilityResult.from_null(
        ncut=1.25, ave_in_out=0.5, labels=labels, n_clusters=3, method="fast", null="layer",
        seed=0, null_distribution=np.array([1.5, 1.6, 1.7]),
    )  # fmt: skip
    out = R.plot_clusterability(result, weights, tmp_path / "net.svg")
    assert out == tmp_path / "net.svg"
    assert "n-cut 1.250, p = 0.25" in _check_svg(out)


def test_swarm_offsets_deterministic_and_bounded() -> None:
    values = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0])
    off = R.swarm_offsets(values, width=0.6)
    assert np.array_equal(off, R.swarm_offsets(values, width=0.6))
    assert np.all(np.abs(off) <= 0.3 + 1e-12)
    # points sharing a value are spread apart, a lone point stays centred
    assert len(set(off[:4].round(9))) == 4 and off[4] == 0.0
    assert R.swarm_offsets(np.zeros(0)).size == 0
    assert np.all(np.abs(R.swarm_offsets(values, width=0.6, max_step=0.01)) <= 0.015 + 1e-12)


def test_figure_stem_is_deterministic_and_safe(tmp_path: Path) -> None:
    a = R.figure_stem(tmp_path, "lesion", "experiments/test_lesion.py::test_x[A/B c]", "acc")
    assert a == R.figure_stem(
        tmp_path, "lesion", "experiments/test_lesion.py::test_x[A/B c]", "acc"
    )
    assert a.parent == tmp_path / "figures" / "lesion"
    assert re.fullmatch(r"test_x-A-B-c-[0-9a-f]{8}__acc", a.name)
    b = R.figure_stem(tmp_path, "lesion", "experiments/test_lesion.py::test_x[A-B-c]", "acc")
    assert a != b  # look alike after cleaning, distinguished by the crc32
    with pytest.raises(ValueError):
        R.figure_stem(tmp_path, "lesion", "t", "a/b")


# ----------------------------------------------------------------------------------------
# index.html


class _HtmlChecker(HTMLParser):
    """Minimal HTML5 well-formedness check: balanced tags, unique ids, collected links."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.doctype = ""
        self.tags: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        d = dict(attrs)
        if d.get("id"):
            self.ids.append(str(d["id"]))
        if tag == "img":
            self.srcs.append(str(d.get("src")))
            if not d.get("alt"):
                self.errors.append("img without alt")
        if tag == "a":
            self.hrefs.append(str(d.get("href")))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            self.errors.append(f"end tag for void element {tag}")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def _pictures(n: int = 3, n_random: int = 2) -> list[Any]:
    """Synthetic correlation pictures (what harness.activations.correlation_pictures returns)."""
    from harness.activations import ClusterPicture

    rng = np.random.default_rng(5)
    return [
        ClusterPicture(i % 2, i, 4 + i, rng.normal(size=(1, 28, 28)), rng.normal(size=(n_random, 1, 28, 28)))
        for i in range(n)
    ]


def make_run(root: Path) -> dict[str, Any]:
    """A synthetic reports folder: tables, claims, figures, run.json."""
    root.mkdir(parents=True, exist_ok=True)
    rows = clustering_rows()
    R.write_study_tables({"clustering": rows, "lesion": lesion_rows()}, root)
    R.write_claims(claim_dicts(), root)
    R.plot_null_distribution(
        8.3, {"layer": np.random.default_rng(3).normal(9.2, 0.03, 30)}, R.figure_stem(root, "clustering", rows[0]["test_id"], "null"), p=1 / 31, z=-20.0,
    )  # fmt: skip
    R.plot_factors_grid(_factors(), R.figure_stem(root, "factors", "experiments/x.py::t", "grid"))
    R.plot_correlation_pictures(
        _pictures(), R.figure_stem(root, "activations", "experiments/test_activations.py::t[MNIST]", "correlations"),
        title="what each weight cluster responds to",
    )  # fmt: skip
    R.plot_feature_images(  # Table N's images: one optimised input per sub-cluster
        np.random.default_rng(4).random((3, 1, 28, 28)),
        R.figure_stem(root, "feature_vis", "experiments/test_feature_vis.py::t[MNIST-i0]", "features"),
        labels=["L1-c0 (n=9)", "L1-c3 (n=14)", "L2-c1 (n=30)"],
    )
    sheets = R.split_frame(pd.DataFrame(lesion_rows()), ["taxonomy"], prefix="single")
    R.write_workbook(sheets, root / "figures" / "factors" / "factors-summary__tables.xlsx")
    info = {"profile": "smoke", "seed": 0, "wall_time_s": 125.5, "started": "2025-01-01 10:00:00",
            "versions": {"python": "3.11", "numpy": "2"}, "args": ["experiments", "-n", "2"],
            "weird <key>": "<b>bold?</b>"}  # fmt: skip
    R.write_run_info(info, root)
    return info


def test_index_is_valid_html_with_existing_local_links(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    info = make_run(root)
    page = R.build_index(root, info)
    assert page == root / "index.html"
    text = page.read_text(encoding="utf-8")
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    assert checker.doctype.lower() == "doctype html"
    assert not checker.errors, checker.errors
    assert not checker.stack, checker.stack
    assert len(checker.ids) == len(set(checker.ids))
    for tag in ("html", "head", "body", "title", "main"):
        assert checker.tags.count(tag) == 1
    assert len(checker.srcs) == 4
    assert any("activations" in src and "correlations" in src for src in checker.srcs)
    for link in checker.srcs + checker.hrefs:
        parsed = urlparse(link)
        if parsed.scheme in ("http", "https") or link.startswith("#"):
            continue
        assert not parsed.scheme, link
        assert (root / unquote(parsed.path)).is_file(), link
    assert "factors-summary__tables.xlsx" in text  # other files of a study are linked
    for anchor in [h[1:] for h in checker.hrefs if h.startswith("#")]:
        assert anchor in checker.ids
    # escaping: the claim's markup and the run-info key are text, never markup
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>bold?</b>" not in text and "weird &lt;key&gt;" in text
    # failing claims first, each verdict colour-coded
    claims = text[text.index('<table class="claims"') :]
    assert claims.index("v-fail") < claims.index("v-error") < claims.index("v-pass")
    assert "2 min 06 s" in text  # wall time
    # ours next to the paper's: paper_ncut directly follows ncut in the tables
    assert re.search(r">ncut</th><th class=\"num paper\"[^>]*>paper_ncut<", text)
    assert "Per model, ours next to the paper" in text
    assert "no study tables" not in text.lower()


def test_index_reads_run_json_and_is_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    info = make_run(root)
    first = R.build_index(root, info).read_bytes()
    second = R.build_index(root).read_bytes()  # run info from run.json
    assert first == second
    assert R.read_run_info(root)["wall_time_s"] == 125.5
    (root / "run.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        R.read_run_info(root)


def test_index_embeds_images_on_request(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    make_run(root)
    text = R.build_index(root, {}, embed_images=True).read_text()
    checker = _HtmlChecker()
    checker.feed(text)
    assert checker.srcs and all(s.startswith("data:image/png;base64,") for s in checker.srcs)


def test_index_of_empty_and_missing_folders(tmp_path: Path) -> None:
    text = R.build_index(tmp_path, {}).read_text()
    assert "No claims table" in text and "No run information" in text
    with pytest.raises(FileNotFoundError, match="does not exist"):
        R.build_index(tmp_path / "missing", {})


def test_index_as_the_cli_rebuilds_it(tmp_path: Path) -> None:
    # `python -m harness report` calls exactly this (harness/cli.py)
    root = tmp_path / "reports"
    make_run(root)
    (root / "index.html").unlink(missing_ok=True)
    page = R.build_index(root, R.read_run_info(root), embed_images=False)
    assert page == root / "index.html"
    assert "Clusterability harness report" in page.read_text()


def _unclosed_quote(path: Path) -> None:
    """Open a quote in the second row's second field and never close it."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    head, sep, tail = lines[2].partition(",")
    lines[2] = f'{head}{sep}"{tail}'
    path.write_text("".join(lines), encoding="utf-8")


def _cut(path: Path, keep: int) -> None:
    """Keep the first ``keep`` characters (negative: all but the last ``-keep``)."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:keep], encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "damage", "message"),
    [
        ("clustering.csv", _unclosed_quote, "not a well-formed CSV"),
        ("lesion.csv", lambda p: p.write_text(p.read_text().replace(",", "", 1)), "row 2 has"),
        ("claims.csv", lambda p: _cut(p, -15), "fields, the header"),  # cut inside its last row
        ("claims.csv", lambda p: _cut(p, 30), "lacks the column(s)"),  # cut inside its header
        ("claims.csv", _unclosed_quote, "not a well-formed CSV"),
        ("claims.csv", lambda p: p.write_text(""), "empty, no header line"),
    ],
    ids=["study-unclosed-quote", "study-ragged-row", "claims-cut-in-a-row",
         "claims-cut-in-the-header", "claims-unclosed-quote", "claims-empty"],
)
def test_report_of_a_damaged_table_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, damage: Callable[[Path], None],
    message: str,
) -> None:
    """`python -m harness report` on a broken CSV: a usage error naming the file, no page
    (not a page showing one garbage row, or "No claim was checked")."""
    from harness.cli import EXIT_USAGE, main

    root = tmp_path / "reports"
    make_run(root)
    damage(root / file)
    with pytest.raises(R.ReportFileError, match=re.escape(message)):
        R.build_index(root, {})
    capsys.readouterr()
    assert main(["report", "--reports-dir", str(root)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(root / file) in err and message in err, err
    assert not (root / "index.html").exists()


def test_public_names_resolve() -> None:
    for name in R.__all__:
        assert getattr(R, name) is not None, name
    with pytest.raises(AttributeError):
        _ = R.no_such_name  # type: ignore[attr-defined]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.integration
def test_index_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("HARNESS_SKIP_BROWSER") == "1":
            pytest.skip("HARNESS_SKIP_BROWSER=1 and chromium is not installed")
        pytest.fail(
            "headless Chromium is needed to check that reports/index.html renders: "
            "apt-get install -y chromium (or set HARNESS_SKIP_BROWSER=1 to skip this check)"
        )
    root = tmp_path / "reports"
    make_run(root)
    page = R.build_index(root)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000",
    ]  # fmt: skip
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table class="claims">' in dom.stdout
    assert "dropout lowers n-cut" in dom.stdout
    assert re.search(r'<img[^>]*alt="correlations"', dom.stdout)  # the correlation pictures
    assert re.search(r'<img[^>]+src="[^"]*features\.png"', dom.stdout)  # Table N's images
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (2000, 1280)
    assert float(img[..., :3].var()) > 0.005  # not a blank page
