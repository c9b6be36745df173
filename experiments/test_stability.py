"""Table G: stability of significance over trained instances (reference §9, Table G).

Pruned LINE and LINE-MNIST(-SEPARATED) MLPs, with and without dropout, K = 12, ``layer``
null. A model is *stable* when every instance is significant (p = 1/(n+1)).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns
from harness.report import plot_null_distribution
from harness.spec import PAPER_K

pytestmark = pytest.mark.stability

K = PAPER_K
TAGS = [
    "LINE",
    "LINE+DROPOUT",
    "LINE-MNIST",
    "LINE-MNIST-SEPARATED",
    "LINE-MNIST+DROPOUT",
    "LINE-MNIST-SEPARATED+DROPOUT",
]


@pytest.mark.parametrize("tag", TAGS)
def test_instance(tag, instance, trained, analysed, record, figure):
    model = trained(tag, instance)
    result = analysed(model, "pruned", n_clusters=K, null="layer")
    plot_null_distribution(
        result.ncut,
        {"layer": result.null_distribution},
        figure("null"),
        p=result.pvalue,
        z=result.z,
        title=f"{tag} pruned (instance {instance}), K = {K}",
    )
    record(instance_row(model, result, tag, instance))


def instance_row(model, result, tag, instance):
    """One row of Table G: one pruned instance against the layer null."""
    return {
        **result.to_row(),
        "model_tag": tag,
        "phase": "pruned",
        "instance": instance,
        **model.row_columns("pruned"),
        **paper_columns("G", tag, ("ncut", "null_mean", "z", "p", "is_stable"), phase="pruned"),
    }


@pytest.mark.parametrize("tag", TAGS)
def test_stability_summary(tag, trained, analysed, profile, record):
    results = [
        analysed(trained(tag, i), "pruned", n_clusters=K, null="layer")
        for i in range(profile.instances)
    ]
    n_sig = sum(r.is_sig for r in results)
    record(
        model_tag=tag,
        phase="pruned",
        kind="summary",
        n=len(results),
        ncut=float(np.mean([r.ncut for r in results])),
        ncut_sd=float(np.std([r.ncut for r in results])),
        null_mean=float(np.mean([r.null_mean for r in results])),
        z=float(np.mean([r.z for r in results])),
        p=float(np.mean([r.pvalue for r in results])),
        n_sig=n_sig,
        frac_sig=n_sig / len(results),
        is_stable=n_sig == len(results),
        **paper_columns("G", tag, ("ncut", "n_sig", "is_stable"), phase="pruned"),
    )


@pytest.mark.parametrize("claim_id", claims_for("stability"))
def test_claim(claim_id, trained, analysed, cell_rows, claim):
    def build(cell, instance):
        model = trained(cell.tag, instance)
        result = analysed(model, "pruned", n_clusters=K, null="layer")
        return instance_row(model, result, cell.tag, instance)

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))
