"""Table I: n-cuts of untrained networks, and the claim that training makes MLPs clusterable.

Glorot-uniform networks, plain and with clusterable initialisation, K = 12, no null
(reference §5.5):

* MLP 784-256x4-10: ``clusterable-all`` scales all five matrices as the paper's Table I did;
  ``clusterable`` skips the first matrix as training does (reference §2.7).
* small CNN (conv 64-64-64) and VGG (13 convs): the filter graph of conv layers 2..n
  (matrix 1-norm of each 3x3 slice; 192 and 4,224 nodes), clusterable x2.8/x0.8. The VGG
  rows draw ``profile.random_init_trials_vgg`` networks (a VGG clustering costs seconds).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.cache import cached_random_init_ncuts
from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns, paper_value
from harness.report import plot_random_init
from harness.seeding import derive_seed
from harness.spec import PAPER_K

pytestmark = pytest.mark.random_init

K = PAPER_K
NETWORKS = {
    "mlp": "MLP 784-256x4-10",
    "cnn": "small CNN 64-64-64 (filter graph)",
    "vgg": "VGG 13 convs (filter graph)",
}
INITS = {
    "plain": {"network": "mlp", "clusterable": False, "skip_first": True, "paper": "MLP/plain"},
    "clusterable": {"network": "mlp", "clusterable": True, "skip_first": True, "paper": None},
    "clusterable-all": {
        "network": "mlp", "clusterable": True, "skip_first": False, "paper": "MLP/clusterable",
    },
    "cnn-plain": {"network": "cnn", "clusterable": False, "skip_first": True, "paper": "CNN/plain"},
    "cnn-clusterable": {
        "network": "cnn", "clusterable": True, "skip_first": True, "paper": "CNN/clusterable",
    },
    "vgg-plain": {"network": "vgg", "clusterable": False, "skip_first": True, "paper": "VGG/plain"},
    "vgg-clusterable": {
        "network": "vgg", "clusterable": True, "skip_first": True, "paper": "VGG/clusterable",
    },
}  # fmt: skip
MLP_INITS = [init for init, spec in INITS.items() if spec["network"] == "mlp"]


def _conv_marked(values, is_conv):
    """Parameters of the conv networks also carry the ``cnn`` marker (``-m cnn`` runs them)."""
    return [pytest.param(v, marks=pytest.mark.cnn) if is_conv(v) else v for v in values]


def random_init_seed(init, harness_seed):
    return derive_seed(harness_seed, "random_init", init)


def n_trials(init, profile):
    """Draws of one initialisation: the VGG's own count where the profile sets one."""
    if INITS[init]["network"] == "vgg" and profile.random_init_trials_vgg is not None:
        return profile.random_init_trials_vgg
    return profile.random_init_trials


def model_tag(init):
    return INITS[init]["paper"] or f"MLP/{init}"


def _ncuts(init, profile, store, harness_seed, method):
    spec = INITS[init]
    return cached_random_init_ncuts(
        n_trials=n_trials(init, profile),
        clusterable=spec["clusterable"],
        skip_first=spec["skip_first"],
        seed=random_init_seed(init, harness_seed),
        store=store,
        network=spec["network"],
        n_clusters=K,
        method=method,
    )


@pytest.mark.parametrize("init", _conv_marked(INITS, lambda i: INITS[i]["network"] != "mlp"))
def test_random_init(init, profile, store, harness_seed, cluster_method, record):
    ncuts = _ncuts(init, profile, store, harness_seed, cluster_method)
    record(random_init_row(init, ncuts, harness_seed))
    assert np.all((ncuts >= 0) & (ncuts <= K))


def random_init_row(init, ncuts, harness_seed):
    """One row of Table I: the n-cuts of ``len(ncuts)`` untrained networks of one init."""
    paper_tag = INITS[init]["paper"]
    paper = (
        paper_columns("I", paper_tag, ("mean", "sd", "min", "max"))
        if paper_tag
        else {"paper_mean": None, "paper_sd": None, "paper_min": None, "paper_max": None}
    )
    return {
        "network": NETWORKS[INITS[init]["network"]],
        "init": init,
        "model_tag": model_tag(init),
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


@pytest.mark.parametrize(
    "claim_id",
    _conv_marked(claims_for("random_init"), lambda c: "-cnn" in c or "-vgg" in c),
)
def test_claim(
    claim_id, trained, analysed, profile, store, harness_seed, cluster_method, cell_rows, claim, figure
):
    # Later inits win a shared tag: "MLP/clusterable" is Table I's clusterable-all.
    by_tag = {model_tag(init): init for init in INITS}

    def build(cell, instance):
        if cell.phase == "init":
            init = by_tag[cell.tag]
            return random_init_row(init, _ncuts(init, profile, store, harness_seed, cluster_method), harness_seed)
        model = trained(cell.tag, instance)
        result = analysed(model, cell.phase, n_clusters=K, null="layer")
        return {**result.to_row(), "model_tag": cell.tag, "phase": cell.phase, "instance": instance}

    rows = cell_rows(REGISTRY[claim_id].cells, build)
    trained_rows = rows[rows["phase"] != "init"]
    if len(trained_rows) and claim_id.startswith("I-trained"):
        plot_random_init(
            {f"random {init}": _ncuts(init, profile, store, harness_seed, cluster_method) for init in MLP_INITS},
            figure("random-vs-trained"),
            trained={"trained (MNIST/FASHION, +-dropout)": trained_rows["ncut"].tolist()},
            paper={
                "random plain": paper_value("I", "MLP/plain", "mean"),
                "random clusterable-all": paper_value("I", "MLP/clusterable", "mean"),
            },
            title=f"n-cut (K = {K}) of untrained and trained MLPs",
        )
    claim(claim_id, rows)
