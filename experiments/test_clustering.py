"""Table B: clusterability of trained MLPs across training factors (reference §9, Table B).

Grid: MNIST and FASHION x {control, dropout, L1, L2, clusterable init}, HALVES and
HALVES-SAME of both datasets, and POLY; unpruned and pruned; K = 12 against the ``layer``
null. One row per (model, instance, phase); the claims below aggregate over instances.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.paper import paper_columns
from harness.report import plot_factors_grid, plot_null_distribution

pytestmark = pytest.mark.clustering

K = 12
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

# The L1 counter-result needs the paper's training length. L1 makes the weights heavy-tailed
# only slowly: at 6+4 epochs the layer null of an L1 network is still near the trained
# n-cut (MNIST+L1REG, quick profile: unpruned 9.27 vs null 9.32, pruned 6.30 vs 7.66),
# whereas at 20+20 epochs it collapses as in the paper (same seed: unpruned 8.82 vs null
# 6.46, z = +20.0; pruned 10.00 vs 2.83, z = +25.7; paper +18.0 / +22.3).
L1_SHORT_TRAINING = (
    "needs the paper's 20+20 epochs: with fewer epochs L1 has not yet made the weights "
    "heavy-tailed, so the layer null does not collapse (asserted in the paper profile)"
)


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
    record(
        result.to_row(),
        model_tag=tag,
        condition=CONDITION[tag],
        phase=phase,
        instance=instance,
        model_key=model.key[:16],
        **model.final_metrics(phase),
        **paper_columns("B", tag, PAPER_METRICS, phase=phase),
    )
    assert 0.0 <= result.ncut <= K
    assert 1.0 / (result.n_samples + 1) <= result.pvalue <= 1.0


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


def _results(trained, analysed, profile, tag, phase):
    return [
        analysed(trained(tag, i), phase, n_clusters=K, null="layer")
        for i in range(profile.instances)
    ]


@pytest.mark.parametrize("dataset", ["MNIST", "FASHION"])
def test_claim_pruned_dropout_significant(dataset, trained, analysed, profile, claim):
    results = _results(trained, analysed, profile, f"{dataset}+DROPOUT", "pruned")
    claim(
        f"pruned {dataset}+DROPOUT MLPs are significant against the layer null in every instance",
        all(r.is_sig for r in results),
        expected=f"p = 1/{profile.n_nulls + 1} in all {profile.instances}",
        observed={"p": [r.pvalue for r in results], "z": [r.z for r in results]},
    )


@pytest.mark.parametrize("dataset", ["MNIST", "FASHION"])
def test_claim_dropout_lowers_pruned_ncut(dataset, trained, analysed, profile, claim):
    control = [r.ncut for r in _results(trained, analysed, profile, dataset, "pruned")]
    dropout = [r.ncut for r in _results(trained, analysed, profile, f"{dataset}+DROPOUT", "pruned")]
    claim(
        f"dropout lowers the pruned {dataset} MLP n-cut",
        float(np.mean(dropout)) < float(np.mean(control)),
        expected="mean n-cut with dropout < without (paper: 8.35 < 8.88 MNIST, 8.11 < 8.69 FASHION)",
        observed={"dropout": float(np.mean(dropout)), "control": float(np.mean(control))},
    )


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("dataset", ["MNIST", "FASHION"])
def test_claim_l1_above_null(dataset, phase, trained, analysed, profile, claim):
    results = _results(trained, analysed, profile, f"{dataset}+L1REG", phase)
    claim(
        f"{phase} {dataset}+L1REG MLPs score above their layer-null mean (the paper's counter-result)",
        all(r.ncut > r.null_mean for r in results),
        expected="n-cut > null mean in every instance (paper: p = 1 in 5/5)",
        observed={"ncut": [r.ncut for r in results], "null_mean": [r.null_mean for r in results]},
        xfail=L1_SHORT_TRAINING if profile.epochs < 20 else None,
    )


@pytest.mark.parametrize("dataset", ["MNIST", "FASHION"])
def test_claim_clusterable_init_lowest(dataset, trained, analysed, profile, claim):
    tags = [t for t, _ in FACTORS if t.startswith(dataset) and "HALVES" not in t]
    tags += [f"HALVES-SAME-{dataset}", f"HALVES-{dataset}"]
    means = {
        t: float(np.mean([r.ncut for r in _results(trained, analysed, profile, t, "pruned")]))
        for t in tags
    }
    lowest = min(means, key=means.__getitem__)
    claim(
        f"clusterable init gives the lowest pruned n-cut of the {dataset} grid",
        lowest == f"{dataset}+MOD-INIT",
        expected=f"{dataset}+MOD-INIT lowest (paper: 5.75 MNIST, 6.27 FASHION)",
        observed=means,
    )


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("dataset", ["MNIST", "FASHION"])
def test_claim_halves_significant(dataset, phase, trained, analysed, profile, claim):
    results = _results(trained, analysed, profile, f"HALVES-{dataset}", phase)
    claim(
        f"{phase} HALVES-{dataset} (different digits) is significant in every instance",
        all(r.is_sig for r in results),
        expected=f"p = 1/{profile.n_nulls + 1} in all {profile.instances}",
        observed={"p": [r.pvalue for r in results], "z": [r.z for r in results]},
    )
