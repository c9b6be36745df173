"""Table I: n-cuts of untrained MLPs, and the claim that training makes MLPs clusterable.

Glorot-uniform 784-256x4-10 MLPs, plain and with clusterable initialisation, K = 12, no
null (reference §5.5). ``clusterable-all`` scales all five matrices as the paper's Table I
did; ``clusterable`` skips the first matrix as training does (reference §2.7).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.cache import cached_random_init_ncuts
from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns, paper_value
from harness.report import plot_random_init
from harness.seeding import derive_seed

pytestmark = pytest.mark.random_init

K = 12
INITS = {
    "plain": {"clusterable": False, "skip_first": True, "paper": "MLP/plain"},
    "clusterable": {"clusterable": True, "skip_first": True, "paper": None},
    "clusterable-all": {"clusterable": True, "skip_first": False, "paper": "MLP/clusterable"},
}


def random_init_seed(init, harness_seed):
    return derive_seed(harness_seed, "random_init", init)


def _ncuts(init, profile, store, harness_seed):
    spec = INITS[init]
    return cached_random_init_ncuts(
        n_trials=profile.random_init_trials,
        clusterable=spec["clusterable"],
        skip_first=spec["skip_first"],
        seed=random_init_seed(init, harness_seed),
        store=store,
        n_clusters=K,
    )


@pytest.mark.parametrize("init", list(INITS))
def test_random_init(init, profile, store, harness_seed, record):
    ncuts = _ncuts(init, profile, store, harness_seed)
    record(random_init_row(init, ncuts, harness_seed))
    assert np.all((ncuts >= 0) & (ncuts <= K))


def random_init_row(init, ncuts, harness_seed):
    """One row of Table I: the n-cuts of ``len(ncuts)`` untrained MLPs of one initialisation."""
    paper_tag = INITS[init]["paper"]
    paper = (
        paper_columns("I", paper_tag, ("mean", "sd", "min", "max"))
        if paper_tag
        else {"paper_mean": None, "paper_sd": None, "paper_min": None, "paper_max": None}
    )
    return {
        "network": "MLP 784-256x4-10",
        "init": init,
        "model_tag": paper_tag or f"MLP/{init}",
        "phase": "init",
        "null": "none",
        "seed": random_init_seed(init, harness_seed),
        "n_clusters": K,
        "n_trials": int(ncuts.size),
        "mean": float(ncuts.mean()),
        "sd": float(ncuts.std()),
        "min": float(ncuts.min()),
        "max": float(ncuts.max()),
        **paper,
    }


@pytest.mark.parametrize("claim_id", claims_for("random_init"))
def test_claim(claim_id, trained, analysed, profile, store, harness_seed, cell_rows, claim, figure):
    by_tag = {spec["paper"] or f"MLP/{init}": init for init, spec in INITS.items()}

    def build(cell, instance):
        if cell.phase == "init":
            init = by_tag[cell.tag]
            return random_init_row(init, _ncuts(init, profile, store, harness_seed), harness_seed)
        model = trained(cell.tag, instance)
        result = analysed(model, cell.phase, n_clusters=K, null="layer")
        return {**result.to_row(), "model_tag": cell.tag, "phase": cell.phase, "instance": instance}

    rows = cell_rows(REGISTRY[claim_id].cells, build)
    trained_rows = rows[rows["phase"] != "init"]
    if len(trained_rows) and claim_id.startswith("I-trained"):
        plot_random_init(
            {f"random {init}": _ncuts(init, profile, store, harness_seed) for init in INITS},
            figure("random-vs-trained"),
            trained={"trained (MNIST/FASHION, +-dropout)": trained_rows["ncut"].tolist()},
            paper={
                "random plain": paper_value("I", "MLP/plain", "mean"),
                "random clusterable-all": paper_value("I", "MLP/clusterable", "mean"),
            },
            title=f"n-cut (K = {K}) of untrained and trained MLPs",
        )
    claim(claim_id, rows)
