"""Table A: the `layer` and `layer_nonzero` null models side by side (reference §9, Table A).

MNIST and FASHION, with and without dropout, unpruned and pruned, K = 12. Each row holds the
true n-cut, both nulls' summaries and Cohen's d between the two null distributions. The two
nulls are independent draws (the null method enters the samples' seed), so for an unpruned
network, where both shuffles are the same operation, d is a sample of a distribution
centred on 0, as in the paper, not exactly 0.
"""

from __future__ import annotations

import pytest

from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns
from harness.report import plot_null_distribution
from harness.spec import PAPER_K
from harness.stats import cohen_d

pytestmark = pytest.mark.null_models

K = PAPER_K
TAGS = ["MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT"]
NULLS = ["layer", "layer_nonzero"]


@pytest.mark.parametrize("phase", ["unpruned", "pruned"])
@pytest.mark.parametrize("tag", TAGS)
def test_two_nulls(tag, phase, instance, trained, analysed, record, figure):
    model = trained(tag, instance)
    by_null = {null: analysed(model, phase, n_clusters=K, null=null) for null in NULLS}
    plot_null_distribution(
        by_null["layer"].ncut,
        {null: r.null_distribution for null, r in by_null.items()},
        figure("nulls"),
        p={null: r.pvalue for null, r in by_null.items()},
        z={null: r.z for null, r in by_null.items()},
        title=f"{tag} {phase} (instance {instance}), K = {K}",
    )
    record(two_null_row(model, by_null, tag, phase, instance))


def two_null_row(model, by_null, tag, phase, instance):
    """One row of Table A: the true n-cut, both nulls' summaries, Cohen's d between them."""
    layer, nonzero = by_null["layer"], by_null["layer_nonzero"]
    row = {
        "model_tag": tag,
        "phase": phase,
        "instance": instance,
        "n_clusters": K,
        "ncut": layer.ncut,
        "method": layer.method,
        "n_samples": layer.n_samples,
        "seed": layer.seed,  # the network's clustering seed; each null's samples derive from it
        "cohen_d": cohen_d(layer.null_distribution, nonzero.null_distribution),
    }
    for prefix, result in (("layer", layer), ("nonzero", nonzero)):
        row.update(
            {
                f"{prefix}_null_mean": result.null_mean,
                f"{prefix}_null_std": result.null_std,
                f"{prefix}_z": result.z,
                f"{prefix}_p": result.pvalue,
                f"{prefix}_is_sig": result.is_sig,
            }
        )
    paper = paper_columns("A", tag, ("ncut", "cohen_d"), phase=phase, null="")
    for null in NULLS:
        prefix = "nonzero" if null == "layer_nonzero" else "layer"
        cols = paper_columns("A", tag, ("null_mean", "p"), phase=phase, null=null)
        paper.update({k.replace("paper_", f"paper_{prefix}_"): v for k, v in cols.items()})
    return {**row, **model.row_columns(phase), **paper}


@pytest.mark.parametrize("claim_id", claims_for("null_models"))
def test_claim(claim_id, trained, analysed, cell_rows, claim):
    def build(cell, instance):
        model = trained(cell.tag, instance)
        by_null = {null: analysed(model, cell.phase, n_clusters=K, null=null) for null in NULLS}
        return two_null_row(model, by_null, cell.tag, cell.phase, instance)

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))
