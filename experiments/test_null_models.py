"""Table A: the `layer` and `layer_nonzero` null models side by side (reference §9, Table A).

MNIST and FASHION, with and without dropout, unpruned and pruned, K = 12. Each row holds the
true n-cut, both nulls' summaries and Cohen's d between the two null distributions.
"""

from __future__ import annotations

import pytest

from harness.paper import paper_columns
from harness.report import plot_null_distribution
from harness.stats import cohen_d

pytestmark = pytest.mark.null_models

K = 12
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
    row = {
        "model_tag": tag,
        "phase": phase,
        "instance": instance,
        "n_clusters": K,
        "ncut": by_null["layer"].ncut,
        "method": by_null["layer"].method,
        "n_samples": by_null["layer"].n_samples,
        "cohen_d": cohen_d(by_null["layer"].null_distribution, by_null["layer_nonzero"].null_distribution),
    }
    for null, result in by_null.items():
        prefix = "nonzero" if null == "layer_nonzero" else "layer"
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
    record(row, **model.final_metrics(phase), **paper)
    # The same true clustering underlies both nulls (same weights, same seed).
    assert by_null["layer"].ncut == pytest.approx(by_null["layer_nonzero"].ncut)
