"""Table J: n-cut and accuracy through training and pruning (reference §7.3, Table J).

MNIST and FASHION MLPs with and without dropout, trained with per-epoch weight snapshots;
every ``profile.learning_curve_every``-th epoch of each phase is clustered with K = 4 (no
null). Epochs 1..E are unpruned, E+1..E+P pruned.
"""

from __future__ import annotations

import pytest

from harness.cache import cached_clusterability
from harness.claims import REGISTRY, claims_for
from harness.paper import paper_value
from harness.report import plot_learning_curve
from harness.spec import AnalysisSpec
from harness.tasks import analysis_seed

pytestmark = pytest.mark.learning_curve

K = 4
SPEC = AnalysisSpec(n_clusters=K, null="layer", n_samples=0)  # Table J clusters, no null
TAGS = ["MNIST", "FASHION", "MNIST+DROPOUT", "FASHION+DROPOUT"]


@pytest.mark.parametrize("tag", TAGS)
def test_learning_curve(tag, trained, profile, store, record):
    for row in curve_rows(tag, trained, profile, store):
        record(row)


def curve_rows(tag, trained, profile, store):
    """The rows of Table J for one model: its n-cut at every clustered epoch snapshot."""
    model = trained(tag, 0, snapshots=True)
    every = profile.learning_curve_every
    rows = []
    for epoch, phase, weights in model.snapshots():
        phase_epoch = epoch if phase == "unpruned" else epoch - model.config.epochs
        phase_length = model.config.epochs if phase == "unpruned" else model.config.pruning_epochs
        last_of_phase = phase_epoch == phase_length
        if phase_epoch % every and not last_of_phase:
            continue
        result = cached_clusterability(
            weights,
            SPEC,
            seed=analysis_seed(model, "snapshot", epoch),
            store=store,
            identity={"model": model.key, "snapshot_epoch": epoch},
        )
        metrics = model.metrics[phase][phase_epoch - 1]
        paper_epoch = epoch if profile.name == "paper" else None
        rows.append(
            {
                "model_tag": tag,
                "epoch": epoch,
                "phase": phase,
                "seed": result.seed,
                "model_seed": model.config.seed,
                "n_clusters": K,
                "ncut": result.ncut,
                "ave_in_out": result.ave_in_out,
                "method": result.method,
                "train_acc": metrics.get("train_acc"),
                "test_acc": metrics.get("test_acc"),
                "test_loss": metrics.get("test_loss"),
                "paper_ncut": (
                    _nan_to_none(paper_value("J", tag, f"ncut_epoch_{paper_epoch}"))
                    if paper_epoch
                    else None
                ),
            }
        )
    return rows


@pytest.mark.parametrize("claim_id", claims_for("learning_curve"))
def test_claim(claim_id, trained, profile, store, cell_rows, claim):
    def build(cell, instance):
        if instance:  # the learning curves are drawn for instance 0 only
            return []
        return [r for r in curve_rows(cell.tag, trained, profile, store) if r["phase"] == cell.phase]

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))


def summary_figures(rows, stem):
    """N-cut and test accuracy of every model through training, pruning start dashed."""
    unpruned = rows.loc[rows["phase"] == "unpruned", "epoch"]
    prune_start = float(unpruned.max()) + 0.5 if len(unpruned) else None
    title = f"n-cut (K = {K}) and test accuracy through training and pruning"
    return plot_learning_curve(
        rows, stem("learning-curves"), hue="model_tag", prune_start=prune_start, title=title
    )


def _nan_to_none(value: float) -> float | None:
    return None if value != value else value
