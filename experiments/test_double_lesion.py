"""The double lesion test: how pairs of sub-clusters depend on each other (reference §6.6).

FASHION+DROPOUT, pruned, K = 10 (the paper's setting), joint (every unordered pair) and
conditional (extra damage of lesioning i given j is already lesioned). The single lesions
inside use ``profile.double_lesion_singles`` random trials (the paper's 100 at the paper
profile, where the single lesion table uses 20), the pairs ``profile.double_lesion_trials``;
every row records both. Rows: one per pair,
the important-pairs table with its dependency types I-IV, and summary counts.
"""

from __future__ import annotations

import pytest

from fixtures.lesions import graph_layer_sizes
from harness.claims import REGISTRY, claims_for
from harness.lesion import double_lesion_test
from harness.report import (
    plot_dependency_graph,
    plot_double_lesion_heatmap,
    split_frame,
    write_workbook,
)
from harness.tasks import analysis_seed

pytestmark = pytest.mark.double_lesion

K = 10
TAG = "FASHION+DROPOUT"


def double_lesion(mode, trained, analysed, test_split, profile):
    """The double lesion test of the paper's model (instance 0), seeded by its identity."""
    model = trained(TAG, 0)
    labels = analysed(model, "pruned", n_clusters=K, null="layer", n_samples=0).labels
    x, y = test_split(model)
    return double_lesion_test(
        model.model("pruned"), labels, graph_layer_sizes(model, "pruned"), x, y,
        mode=mode, n_trials=profile.double_lesion_trials, single_trials=profile.double_lesion_singles,
        seed=analysis_seed(model, "double_lesion"),
    )


@pytest.mark.parametrize("mode", ["joint", "conditional"])
def test_double_lesion(mode, trained, analysed, test_split, profile, record, figure):
    result = double_lesion(mode, trained, analysed, test_split, profile)
    identity = {"model_tag": TAG, "phase": "pruned", "instance": 0, "n_clusters": K, "mode": mode}
    for row in result.to_frame().to_dict("records"):
        record(row, kind="pair", **identity)
    summary = result.to_row()
    if mode == "joint":
        for row in result.joint_grouping().to_dict("records"):
            record(row, kind="joint_grouping", **identity)
    else:
        pairs = result.important_pairs()
        for row in pairs.to_dict("records"):
            record(row, kind="important_pair", **identity)
        # An edge a -> b where "a given b" is not important: once b is lesioned, a adds
        # no significant damage, so a's importance depends on b (types I-III; IV has none).
        where = {s.name: (s.layer, s.label) for s in result.single.sub_clusters}
        nodes = [(s.layer, s.label) for s, r in zip(result.single.sub_clusters, result.single.rows, strict=True)
                 if r.taxonomy == "important"]
        edges, kinds = [], []
        for r in pairs.to_dict("records"):
            if not r["x_given_y_important"]:
                edges.append((where[r["x"]], where[r["y"]]))
                kinds.append(r["type"])
            if not r["y_given_x_important"]:
                edges.append((where[r["y"]], where[r["x"]]))
                kinds.append(r["type"])
        plot_dependency_graph(nodes, edges, figure("dependency-graph"), edge_kinds=kinds,
                              title=f"{TAG}: important sub-clusters; a -> b when a|b is not important")
    record(summary, kind="summary", **identity)
    threshold = 1.0 / profile.double_lesion_trials
    plot_double_lesion_heatmap(
        result.matrix("score"), figure(f"{mode}-heatmap"), p=result.matrix("pvalue"),
        p_threshold=threshold, title=f"{TAG} pruned, K = {K}: {mode} double lesion",
    )



def summary_figures(rows, stem):
    """The double-lesion tables as a workbook, one sheet per kind of row and mode."""
    sheets = split_frame(rows, ["kind", "mode"], prefix="double")
    return [write_workbook(sheets, stem("tables").with_suffix(".xlsx"))] if sheets else []


@pytest.mark.parametrize("claim_id", claims_for("double_lesion"))
def test_claim(claim_id, trained, analysed, test_split, profile, cell_rows, claim):
    def build(cell, instance):
        if instance:  # the paper ran the double lesion on one instance
            return []
        result = double_lesion(cell.null, trained, analysed, test_split, profile)
        return {**result.to_row(), "model_tag": TAG, "phase": "pruned", "null": cell.null,
                "n_clusters": K, "mode": cell.null}

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))
