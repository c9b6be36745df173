"""Convolutional networks: Tables C and D, and the CNN lesion tables (reference §3.3, §6, §9).

A CNN is clustered as its filter graph: one node per conv filter, conv->conv edges weighted by
the paper's matrix 1-norm of each 3x3 kernel slice (:mod:`harness.filters`), K = 12 against
the ``layer`` null (per-layer shuffles of the filter matrices). Table C: the small CNN on
MNIST and FASHION x {control, dropout, L1, L2, clusterable init}, stacked and stacked-same;
Table D: the CIFAR-10 VGG (skipped with the reason when CIFAR-10 is absent). Both unpruned
and pruned. The L2 rows are also reported under the paper's exact-zero isolation rule
(``isolation = "exact-zero"``) next to the default negligible-degree rule; the VGG rows also
with batch-norm scales folded into the kernels (``bn = "folded"``), which the paper meant to
do and did not (reference §11 item 2). The lesion test silences the filters of each
sub-cluster of the unpruned networks (the paper's CNN lesion rows).
"""

from __future__ import annotations

import pytest

from fixtures.lesions import single_lesion
from harness.claims import REGISTRY, claims_for
from harness.filters import PAPER_FILTER_NORM
from harness.graph import ISOLATION_RTOL
from harness.paper import paper_columns
from harness.report import plot_factors_grid
from harness.spec import PAPER_K
from harness.tasks import analysis_seed

pytestmark = pytest.mark.cnn

K = PAPER_K
FACTORS = [
    ("CNN-MNIST", "Control"),
    ("CNN-MNIST+DROPOUT", "Dropout"),
    ("CNN-MNIST+L1REG", "L1 Reg"),
    ("CNN-MNIST+L2REG", "L2 Reg"),
    ("CNN-MNIST+MOD-INIT", "Clusterable Init"),
    ("CNN-STACKED-MNIST", "Stacked Diff"),
    ("CNN-STACKED-SAME-MNIST", "Stacked Same"),
    ("CNN-FASHION", "Control"),
    ("CNN-FASHION+DROPOUT", "Dropout"),
    ("CNN-FASHION+L1REG", "L1 Reg"),
    ("CNN-FASHION+L2REG", "L2 Reg"),
    ("CNN-FASHION+MOD-INIT", "Clusterable Init"),
    ("CNN-STACKED-FASHION", "Stacked Diff"),
    ("CNN-STACKED-SAME-FASHION", "Stacked Same"),
]
VGG = [
    ("CNN-VGG-CIFAR10", "Control"),
    ("CNN-VGG-CIFAR10+L1REG", "L1 Reg"),
    ("CNN-VGG-CIFAR10+L2REG", "L2 Reg"),
    ("CNN-VGG-CIFAR10+DROPOUT", "Dropout"),
    ("CNN-VGG-CIFAR10+DROPOUT+L2REG", "Dropout, L2 Reg"),
    ("CNN-VGG-CIFAR10+MOD-INIT", "Clusterable Init"),
]
CONDITION = dict(FACTORS + VGG)
PHASES = ["unpruned", "pruned"]
PAPER_METRICS = ("ncut", "null_mean", "null_std", "z", "p", "test_acc")
LESION_TAGS = ["CNN-MNIST", "CNN-FASHION"] + [t for t, _ in VGG]
LESION_PAPER = (
    "chi2_p_means_median",
    "combined_p_means_median",
    "chi2_p_ranges_median",
    "combined_p_ranges_median",
    "effect_means_mean",
    "effect_ranges_median",
)
# Which graph variants a tag is also reported under (beyond the default one).
ISOLATION = {"negligible": ISOLATION_RTOL, "exact-zero": 0.0}


def _table(tag):
    return "D" if tag.startswith("CNN-VGG") else "C"


def variants(tag):
    """``(isolation, bn)`` variants of one tag's rows; the first is the one claims use."""
    out = [("negligible", "unfolded")]
    if "L2REG" in tag:
        out.append(("exact-zero", "unfolded"))
    if tag.startswith("CNN-VGG"):
        out.append(("negligible", "folded"))
    return out


def _analysis(analysed, model, phase, isolation="negligible", bn="unfolded"):
    return analysed(
        model, phase, n_clusters=K, null="layer", filter_norm=PAPER_FILTER_NORM,
        fold_batch_norm=bn == "folded", isolation_rtol=ISOLATION[isolation],
    )


@pytest.mark.clustering
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("tag", [t for t, _ in FACTORS + VGG])
def test_cnn_factor(tag, phase, instance, trained, analysed, record):
    model = trained(tag, instance)
    for isolation, bn in variants(tag):
        result = _analysis(analysed, model, phase, isolation, bn)
        record(factor_row(model, result, tag, phase, instance, isolation, bn))
        assert 0 <= result.ncut <= K


def factor_row(model, result, tag, phase, instance, isolation="negligible", bn="unfolded"):
    """One row of Table C or D: the clustering of the filter graph, metrics, paper numbers."""
    return {
        **result.to_row(),
        "model_tag": tag,
        "condition": CONDITION.get(tag, ""),
        "phase": phase,
        "instance": instance,
        "paper_table": _table(tag),
        "filter_norm": PAPER_FILTER_NORM,
        "isolation": isolation,
        "bn": bn,
        **model.row_columns(phase),
        **paper_columns(_table(tag), tag, PAPER_METRICS, phase=phase),
    }


def lesion_row(model, result, tag, instance):
    """The whole-network row of the CNN lesion table for one unpruned instance."""
    table = "lesion_vgg" if tag.startswith("CNN-VGG") else "lesion_cnn"
    return {
        **result.to_row(),
        "kind": "network",
        "paper_table": table,
        "model_tag": tag,
        "phase": "unpruned",
        "instance": instance,
        "n_clusters": K,
        "seed": analysis_seed(model, "lesion"),
        "model_seed": model.config.seed,
        **paper_columns(table, tag, LESION_PAPER, phase="unpruned"),
    }


@pytest.mark.lesion
@pytest.mark.parametrize("tag", LESION_TAGS)
def test_cnn_lesion(tag, instance, trained, analysed, test_split, profile, record):
    model = trained(tag, instance)
    labels = _analysis(analysed, model, "unpruned").labels
    result = single_lesion(model, labels, test_split, profile, phase="unpruned")
    record(lesion_row(model, result, tag, instance))
    identity = {"model_tag": tag, "phase": "unpruned", "instance": instance, "n_clusters": K}
    for row in result.to_frame().to_dict("records"):
        record(row, kind="sub_cluster", **identity)
    assert len(result.rows) > 0


@pytest.mark.parametrize("claim_id", claims_for("cnn"))
def test_claim(claim_id, trained, analysed, test_split, profile, cell_rows, claim):
    spec = REGISTRY[claim_id]

    def build(cell, instance):
        model = trained(cell.tag, instance)
        if spec.table.startswith("lesion"):
            labels = _analysis(analysed, model, "unpruned").labels
            result = single_lesion(model, labels, test_split, profile, phase="unpruned")
            return lesion_row(model, result, cell.tag, instance)
        result = _analysis(analysed, model, cell.phase)
        return factor_row(model, result, cell.tag, cell.phase, instance)

    claim(claim_id, cell_rows(spec.cells, build))


def summary_figures(rows, stem):
    """z per condition for the small CNN (panels: dataset), the default graph variant only."""
    if not {"isolation", "bn", "z", "model_tag"} <= set(rows.columns):
        return []
    rows = rows[(rows["isolation"] == "negligible") & (rows["bn"] == "unfolded")]
    rows = rows[rows["model_tag"].isin([t for t, _ in FACTORS])]
    if rows.empty:
        return []
    panels = rows.assign(dataset=rows["model_tag"].map(_panel))
    order = list(dict.fromkeys(c for _, c in FACTORS))
    title = f"small CNN: z-score against the layer null, K = {K} (filter graph)"
    return plot_factors_grid(panels, stem("cnn-factors-grid"), row_order=order, title=title)


def _panel(tag):
    dataset = "FASHION" if "FASHION" in tag else "MNIST"
    return f"{dataset} (stacked)" if "STACKED" in tag else dataset
