"""Tables H2/H7/H10: significance at other numbers of clusters (reference §9).

Pruned MNIST and FASHION MLPs with and without dropout, K in {2, 7, 10}, both the ``layer``
and the ``layer_nonzero`` nulls (the paper used 10 instances and 320 null samples).
"""

from __future__ import annotations

import pytest

from harness.paper import paper_columns
from harness.report import plot_k_sensitivity

pytestmark = pytest.mark.n_clusters

KS = [2, 7, 10]
TAGS = ["MNIST", "FASHION", "MNIST+DROPOUT", "FASHION+DROPOUT"]
NULLS = ["layer", "layer_nonzero"]


@pytest.mark.parametrize("null", NULLS)
@pytest.mark.parametrize("k", KS, ids=[f"K{k}" for k in KS])
@pytest.mark.parametrize("tag", TAGS)
def test_k(tag, k, null, instance, trained, analysed, profile, record):
    model = trained(tag, instance)
    result = analysed(model, "pruned", n_clusters=k, null=null, n_samples=profile.n_nulls_k)
    record(
        result.to_row(),
        model_tag=tag,
        phase="pruned",
        instance=instance,
        model_key=model.key[:16],
        **model.final_metrics("pruned"),
        **paper_columns(f"H{k}", tag, ("ncut",), phase="pruned", null=""),
        **paper_columns(f"H{k}", tag, ("null_mean", "z", "p", "n_sig"), phase="pruned", null=null),
    )
    assert 0.0 <= result.ncut <= k


def summary_figures(rows, stem):
    """Fraction significant and mean z against K, one line per model and null."""
    title = "significance against the number of clusters K"
    return plot_k_sensitivity(rows, stem("k-sensitivity"), hue="model_tag", style="null", title=title)


@pytest.mark.parametrize("dataset", ["MNIST", "FASHION"])
def test_claim_k2_not_significant(dataset, trained, analysed, profile, claim):
    results = [
        analysed(trained(dataset, i), "pruned", n_clusters=2, null="layer", n_samples=profile.n_nulls_k)
        for i in range(profile.instances)
    ]
    claim(
        f"at K=2 pruned {dataset} MLPs are not significant against the layer null",
        not any(r.is_sig for r in results),
        expected="no instance with p = 1/(n+1) (paper: 0 of 10)",
        observed={"p": [r.pvalue for r in results], "z": [r.z for r in results]},
    )
