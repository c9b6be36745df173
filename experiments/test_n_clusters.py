"""Tables H2/H7/H10: significance at other numbers of clusters (reference §9).

Pruned MNIST and FASHION MLPs with and without dropout, K in {2, 7, 10}, both the ``layer``
and the ``layer_nonzero`` nulls (the paper used 10 instances and 320 null samples).
"""

from __future__ import annotations

import pytest

from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns, paper_value
from harness.report import plot_k_sensitivity

pytestmark = pytest.mark.n_clusters

KS = [2, 7, 10]
TAGS = ["MNIST", "FASHION", "MNIST+DROPOUT", "FASHION+DROPOUT"]
NULLS = ["layer", "layer_nonzero"]
PAPER_INSTANCES = 10  # the paper trained 10 instances for Tables H2/H7/H10


@pytest.mark.parametrize("null", NULLS)
@pytest.mark.parametrize("k", KS, ids=[f"K{k}" for k in KS])
@pytest.mark.parametrize("tag", TAGS)
def test_k(tag, k, null, instance, trained, analysed, profile, record):
    model = trained(tag, instance)
    result = analysed(model, "pruned", n_clusters=k, null=null, n_samples=profile.n_nulls_k)
    record(k_row(model, result, tag, k, null, instance))


def k_row(model, result, tag, k, null, instance):
    """One row of Tables H2/H7/H10: one pruned instance at K clusters against one null.

    ``frac_sig`` is this instance's significance as a fraction; the paper's ``n_sig`` is a
    count out of its 10 instances, given as ``paper_frac_sig`` next to it, so the two compare
    at any number of instances.
    """
    paper = paper_columns(f"H{k}", tag, ("null_mean", "z", "p", "n_sig"), phase="pruned", null=null)
    n_paper = paper_value(f"H{k}", tag, "n_sig", phase="pruned", null=null)
    return {
        **result.to_row(),
        "model_tag": tag,
        "phase": "pruned",
        "instance": instance,
        "frac_sig": float(result.is_sig),
        **model.row_columns("pruned"),
        **paper_columns(f"H{k}", tag, ("ncut",), phase="pruned", null=""),
        **paper,
        "paper_frac_sig": None if n_paper != n_paper else n_paper / PAPER_INSTANCES,
    }


@pytest.mark.parametrize("claim_id", claims_for("n_clusters"))
def test_claim(claim_id, trained, analysed, profile, cell_rows, claim):
    def build(cell, instance):
        model = trained(cell.tag, instance)
        result = analysed(
            model, "pruned", n_clusters=cell.n_clusters, null=cell.null, n_samples=profile.n_nulls_k
        )
        return k_row(model, result, cell.tag, cell.n_clusters, cell.null, instance)

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))


def summary_figures(rows, stem):
    """Fraction significant and mean z against K, one line per model and null."""
    title = "significance against the number of clusters K"
    return plot_k_sensitivity(rows, stem("k-sensitivity"), hue="model_tag", style="null", title=title)
