"""The single lesion test of pruned MLPs (reference §6.1-§6.5 and its MLP lesion table).

Each sub-cluster (the units of one K = 12 cluster within one hidden layer) is silenced and
the damage compared with random same-size sets from the same layer. Per instance, one
whole-network row (the paper's columns: chi2 and Fisher-combined p of the mean and range
statistics, effect factors) and one row per sub-cluster.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from harness.lesion import single_lesion_test
from harness.paper import paper_columns
from harness.report import (
    plot_lesion_accuracy,
    plot_lesion_class_damage,
    plot_lesion_taxonomy,
    split_frame,
    write_workbook,
)

pytestmark = pytest.mark.lesion

K = 12
TAGS = ["MNIST", "FASHION", "POLY"]
PAPER = (
    "chi2_p_means_median",
    "combined_p_means_median",
    "chi2_p_ranges_median",
    "combined_p_ranges_median",
    "effect_means_mean",
    "effect_ranges_median",
)


def _lesion(model, labels, test_split, profile):
    """The lesion test of one model; seeded by the model's identity, so that the table rows
    and the claims below see the same random lesions."""
    x, y = test_split(model)
    weights = model.weights("pruned")
    sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
    return single_lesion_test(
        model.model("pruned"),
        labels,
        sizes,
        x,
        y,
        n_trials=profile.lesion_trials,
        seed=zlib.crc32(f"{model.key}:lesion".encode()),
        task="regression" if model.config.dataset == "poly" else "classification",
    )


@pytest.mark.parametrize("tag", TAGS)
def test_single_lesion(tag, instance, trained, analysed, test_split, profile, record, figure):
    model = trained(tag, instance)
    clustering = analysed(model, "pruned", n_clusters=K, null="layer")
    result = _lesion(model, clustering.labels, test_split, profile)
    identity = {"model_tag": tag, "phase": "pruned", "instance": instance, "n_clusters": K}
    record(
        result.to_row(),
        kind="network",
        **identity,
        **paper_columns("lesion_mlp", tag, PAPER, phase="pruned"),
    )
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


@pytest.mark.parametrize("dataset", ["MNIST", "FASHION"])
def test_claim_lesions_matter(dataset, trained, analysed, test_split, profile, claim):
    results = []
    for i in range(profile.instances):
        model = trained(dataset, i)
        labels = analysed(model, "pruned", n_clusters=K, null="layer").labels
        results.append(_lesion(model, labels, test_split, profile))
    p = [r.combined_p_means for r in results]
    effect = [r.effect_means for r in results]
    claim(
        f"lesioning {dataset} sub-clusters hurts more than random lesions in every instance",
        all(v < 1e-3 for v in p) and all(e > 1 for e in effect),
        expected="combined_p_means < 1e-3 and effect_means > 1 in every instance "
        "(paper medians 1.3e-08 MNIST, 7.7e-06 FASHION; effects 1.03, 1.14)",
        observed={"combined_p_means": p, "effect_means": effect},
    )


def test_claim_random_labels_no_important(trained, analysed, test_split, profile, claim, record):
    model = trained("RANDOM", 0)
    labels = analysed(model, "pruned", n_clusters=K, null="layer", n_samples=0).labels
    result = _lesion(model, labels, test_split, profile)
    record(result.to_row(), kind="network", model_tag="RANDOM", phase="pruned", instance=0, n_clusters=K)
    counts = result.taxonomy_counts()
    claim(
        "on the RANDOM-label model no sub-cluster is important",
        counts["important"] == 0,
        expected="0 important sub-clusters (paper, K=10: none of 25)",
        observed={"important": counts["important"], "sub_clusters": len(result.rows),
                  "test_acc": result.unlesioned},
    )
