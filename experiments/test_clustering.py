"""Table B: clusterability of trained MLPs across training factors (reference §9, Table B).

Grid: MNIST and FASHION x {control, dropout, L1, L2, clusterable init}, HALVES and
HALVES-SAME of both datasets, and POLY; unpruned and pruned; K = 12 against the ``layer``
null. One row per (model, instance, phase). The claims are those of the registry
(:mod:`harness.claims`) for Table B: each ``test_claim[<id>]`` builds the rows of its cells
with :func:`factor_row`, the same code that writes the table, and asserts the claim on them.
"""

from __future__ import annotations

import pytest

from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns
from harness.report import plot_factors_grid, plot_null_distribution
from harness.spec import PAPER_K

pytestmark = pytest.mark.clustering

K = PAPER_K
FACTORS = [
    ("MNIST", "Control"),
    ("MNIST+DROPOUT", "Dropout"),
    ("MNIST+L1REG", "L1 Reg"),
    ("MNIST+L2REG", "L2 Reg"),
    ("MNIST+L2REG-ALL", "L2 Reg (all layers)"),
    ("MNIST+MOD-INIT", "Clusterable Init"),
    ("HALVES-SAME-MNIST", "Halves Same"),
    ("HALVES-MNIST", "Halves Diff"),
    ("FASHION", "Control"),
    ("FASHION+DROPOUT", "Dropout"),
    ("FASHION+L1REG", "L1 Reg"),
    ("FASHION+L2REG", "L2 Reg"),
    ("FASHION+L2REG-ALL", "L2 Reg (all layers)"),
    ("FASHION+MOD-INIT", "Clusterable Init"),
    ("HALVES-SAME-FASHION", "Halves Same"),
    ("HALVES-FASHION", "Halves Diff"),
    ("POLY", "Control"),
]
CONDITION = dict(FACTORS)
PHASES = ["unpruned", "pruned"]
PAPER_METRICS = ("ncut", "null_mean", "null_std", "z", "p", "test_acc")

@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("tag", [t for t, _ in FACTORS])
def test_factor(tag, phase, instance, trained, analysed, record, figure):
    model = trained(tag, instance)
    result = analysed(model, phase, n_clusters=K, null="layer")
    plot_null_distribution(
        result.ncut,
        {"layer": result.null_distribution},
        figure("null"),
        p=result.pvalue,
        z=result.z,
        title=f"{tag} {phase} (instance {instance}), K = {K}",
    )
    record(factor_row(model, result, tag, phase, instance))


def factor_row(model, result, tag, phase, instance):
    """One row of Table B: the clustering result, the model's metrics, the paper's numbers."""
    return {
        **result.to_row(),
        "model_tag": tag,
        "condition": CONDITION.get(tag, ""),
        "phase": phase,
        "instance": instance,
        **model.row_columns(phase),
        **paper_columns("B", tag, PAPER_METRICS, phase=phase),
    }


@pytest.mark.parametrize("claim_id", claims_for("clustering"))
def test_claim(claim_id, trained, analysed, cell_rows, claim):
    cells = REGISTRY[claim_id].cells
    missing = sorted({c.tag for c in cells} - set(CONDITION))
    if missing:
        pytest.skip(f"{missing} not in this study's grid")

    def build(cell, instance):
        model = trained(cell.tag, instance)
        result = analysed(model, cell.phase, n_clusters=cell.n_clusters, null=cell.null)
        return factor_row(model, result, cell.tag, cell.phase, instance)

    claim(claim_id, cell_rows(cells, build))


def summary_figures(rows, stem):
    """The factors grid: z per condition (rows) and dataset (panels), unpruned next to pruned."""
    panels = rows.assign(dataset=rows["model_tag"].map(_panel))
    title = f"z-score against the layer null, K = {K}"
    order = list(dict.fromkeys(CONDITION.values()))
    return plot_factors_grid(panels, stem("factors-grid"), row_order=order, title=title)


def _panel(tag):
    """The panel of a model in the factors grid: its dataset, the halves networks apart."""
    dataset = next((d for d in ("FASHION", "MNIST", "POLY") if d in tag), tag)
    return f"{dataset} (halves)" if tag.startswith("HALVES") else dataset
