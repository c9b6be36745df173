"""The single lesion test of pruned MLPs (reference §6.1-§6.5 and its MLP lesion table).

Each sub-cluster (the units of one K = 12 cluster within one hidden layer) is silenced and
the damage compared with random same-size sets from the same layer. Per instance, one
whole-network row (the paper's columns: chi2 and Fisher-combined p of the mean and range
statistics, effect factors) and one row per sub-cluster.

The paper's claim that no sub-cluster of the RANDOM-label network is important is not
asserted: at chance test accuracy a lesion cannot lower accuracy measurably, so the claim
cannot fail as measured.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.lesions import single_lesion
from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns
from harness.report import (
    plot_lesion_accuracy,
    plot_lesion_class_damage,
    plot_lesion_taxonomy,
    split_frame,
    write_workbook,
)
from harness.spec import PAPER_K
from harness.tasks import analysis_seed

pytestmark = pytest.mark.lesion

K = PAPER_K
TAGS = ["MNIST", "FASHION", "POLY"]
PAPER = (
    "chi2_p_means_median",
    "combined_p_means_median",
    "chi2_p_ranges_median",
    "combined_p_ranges_median",
    "effect_means_mean",
    "effect_ranges_median",
)


@pytest.mark.parametrize("tag", TAGS)
def test_single_lesion(tag, instance, trained, analysed, test_split, profile, record, figure):
    model = trained(tag, instance)
    clustering = analysed(model, "pruned", n_clusters=K, null="layer")
    result = single_lesion(model, clustering.labels, test_split, profile, phase="pruned")
    identity = {"model_tag": tag, "phase": "pruned", "instance": instance, "n_clusters": K}
    record(network_row(model, result, tag, instance))
    for row in result.to_frame().to_dict("records"):
        record(row, kind="sub_cluster", **identity)
    names = [f"L{s.layer}-c{s.label} ({s.to_row()['proportion']:.2f})" for s in result.sub_clusters]
    true_overall = np.array([r.true for r in result.rows])
    plot_lesion_accuracy(
        true_overall, result.random_overall, figure("lesion-accuracy"), labels=names,
        baseline=result.unlesioned, title=f"{tag} pruned, instance {instance}: lesioned sub-clusters",
    )
    plot_lesion_class_damage(
        result.true_outcomes, result.unlesioned_outcomes, figure("lesion-class-damage"),
        random_class_acc=result.random_outcomes, labels=names, class_names=list(result.outcome_names),
        title=f"{tag}: change per {'class' if result.task == 'classification' else 'term'}",
    )
    plot_lesion_taxonomy(
        [s.to_row()["proportion"] for s in result.sub_clusters],
        [r.diff for r in result.rows],
        [r.taxonomy for r in result.rows],
        figure("lesion-taxonomy"),
        labels=names,
        title=f"{tag}: taxonomy of sub-clusters",
    )
    assert len(result.rows) > 0


def summary_figures(rows, stem):
    """The lesion table as a workbook, one sheet per kind of row (network, sub-cluster)."""
    sheets = split_frame(rows, ["kind"], prefix="single")
    return [write_workbook(sheets, stem("tables").with_suffix(".xlsx"))] if sheets else []


def network_row(model, result, tag, instance):
    """The whole-network row of the lesion table for one pruned instance."""
    return {
        **result.to_row(),
        "kind": "network",
        "model_tag": tag,
        "phase": "pruned",
        "instance": instance,
        "n_clusters": K,
        "seed": analysis_seed(model, "lesion"),
        "model_seed": model.config.seed,
        **paper_columns("lesion_mlp", tag, PAPER, phase="pruned"),
    }


@pytest.mark.parametrize("claim_id", claims_for("lesion"))
def test_claim(claim_id, trained, analysed, test_split, profile, cell_rows, claim):
    def build(cell, instance):
        model = trained(cell.tag, instance)
        labels = analysed(model, "pruned", n_clusters=K, null="layer").labels
        result = single_lesion(model, labels, test_split, profile, phase="pruned")
        return network_row(model, result, cell.tag, instance)

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))
