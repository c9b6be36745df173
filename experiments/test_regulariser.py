"""Table E: training for clusterability (reference §7.4, §9 Table E).

The small MLP (49-64x3-10) on 7x7 MNIST, trained plainly (``SMALL-MNIST``) and with the
clusterability regulariser (``SMALL-MNIST+CLUSTERABILITY-GRADIENT``: the sum of eigenvalues
2..4 of the weight graph's normalised Laplacian, weight normalisation before every batch;
:mod:`harness.regulariser`), unpruned and pruned, clustered with K = 12 against the ``layer``
null. The paper trained 10 instances of each where its other tables have 5, so this study
has twice the profile's instances (``INSTANCE_FACTOR``).
"""

from __future__ import annotations

import pytest

from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns
from harness.report import plot_factors_grid
from harness.spec import PAPER_K

pytestmark = pytest.mark.regulariser

K = PAPER_K
INSTANCE_FACTOR = 2
FACTORS = [
    ("SMALL-MNIST", "Control"),
    ("SMALL-MNIST+CLUSTERABILITY-GRADIENT", "Cluster Gradient"),
]
CONDITION = dict(FACTORS)
PHASES = ["unpruned", "pruned"]
PAPER_METRICS = ("ncut", "ncut_sd", "null_mean", "null_std", "z", "p", "train_acc", "test_acc")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("tag", [t for t, _ in FACTORS])
def test_regulariser(tag, phase, instance, trained, analysed, record):
    model = trained(tag, instance)
    result = analysed(model, phase, n_clusters=K, null="layer")
    record(table_e_row(model, result, tag, phase, instance))


def table_e_row(model, result, tag, phase, instance):
    """One row of Table E: the clustering result, the model's metrics, the paper's numbers."""
    return {
        **result.to_row(),
        "model_tag": tag,
        "condition": CONDITION[tag],
        "phase": phase,
        "instance": instance,
        "cluster_lambda": model.config.cluster_lambda,
        **model.row_columns(phase),
        **paper_columns("E", tag, PAPER_METRICS, phase=phase),
    }


@pytest.mark.parametrize("claim_id", claims_for("regulariser"))
def test_claim(claim_id, trained, analysed, profile, claim):
    import pandas as pd

    rows = []
    for cell in REGISTRY[claim_id].cells:
        for instance in range(profile.instances * INSTANCE_FACTOR):
            model = trained(cell.tag, instance)
            result = analysed(model, cell.phase, n_clusters=K, null="layer")
            rows.append(table_e_row(model, result, cell.tag, cell.phase, instance))
    claim(claim_id, pd.DataFrame(rows))


def summary_figures(rows, stem):
    """n-cut of control and regularised networks, unpruned next to pruned."""
    panels = rows.assign(dataset="7x7 MNIST, 49-64x3-10 MLP")
    title = f"Table E: n-cut, K = {K} (paper: hollow diamonds)"
    order = list(CONDITION.values())
    return plot_factors_grid(panels, stem("regulariser-grid"), value="ncut", row_order=order,
                             title=title)
