"""Table N: feature visualisation of sub-clusters against random unit sets (reference §7.5).

For each network, every sub-cluster of a hidden layer (MLP) or conv layer (CNN, the filter
graph's clusters) with ``5 < size < 80%`` of its layer gets an input image optimised to
excite its units, as do 9 random same-size sets of the layer (:mod:`harness.feature_vis`).
The true images are compared with the random ones by the entropy of the network's output
and the objective reached (chi2 rank test and Fisher combination over sub-clusters). The
paper visualised its ``+LUCID`` networks, trained on a scrambled 3-channel MNIST only to fit
lucid; the plain networks stand in for them (pruned MLPs, unpruned CNNs, as the paper). The
VGG rows need CIFAR-10 and skip without it. The images are in the report.
"""

from __future__ import annotations

import pytest

from fixtures.lesions import graph_layer_sizes
from harness.claims import REGISTRY, claims_for
from harness.claims.extra import FEATURE_VIS_MODELS
from harness.feature_vis import N_RANDOM, STEPS, feature_vis_test
from harness.paper import paper_columns
from harness.report import plot_feature_images
from harness.spec import PAPER_K
from harness.tasks import analysis_seed

pytestmark = pytest.mark.feature_vis

K = PAPER_K
PHASE = {tag: phase for tag, phase, _ in FEATURE_VIS_MODELS}
PAPER = tuple(f"{c}_median" for c in (
    "chi2_p_entropy", "chi2_p_objective", "fisher_p_entropy", "fisher_p_objective",
    "effect_objective",
))
SMOKE_STEPS = 8  # the smoke profile checks plumbing: a few optimisation steps


@pytest.fixture(scope="session")
def visualised(analysed, datasets, profile):
    """Factory ``visualised(model, tag)``: the feature-visualisation test of one network, once
    per process (the table row and the claims see the same result), seeded by the model."""
    cache = {}

    def _visualised(model, tag):
        if model.key not in cache:
            cache[model.key] = _visualise(model, tag, analysed, datasets, profile)
        return cache[model.key]

    return _visualised


def _visualise(model, tag, analysed, datasets, profile):
    """The feature-visualisation test of one network, seeded by the model's identity."""
    from harness.data import input_shape

    phase = PHASE[tag]
    labels = analysed(model, phase, n_clusters=K, null="layer").labels
    config = model.config
    image_shape = input_shape(datasets(config.dataset, seed=config.data_seed))
    first = 0 if config.arch == "mlp" else 1  # a CNN's first layer is its first conv's filters
    return feature_vis_test(
        model.model(phase), labels, graph_layer_sizes(model, phase), image_shape=image_shape,
        first_layer=first,
        n_random=min(N_RANDOM, profile.lesion_trials),
        steps=SMOKE_STEPS if profile.name == "smoke" else STEPS,
        seed=analysis_seed(model, "feature_vis"),
    )


def network_row(model, result, tag, instance):
    """The whole-network row of Table N for one instance."""
    return {
        **result.to_row(),
        "kind": "network",
        "model_tag": tag,
        "phase": PHASE[tag],
        "instance": instance,
        "n_clusters": K,
        "seed": analysis_seed(model, "feature_vis"),
        "model_seed": model.config.seed,
        **paper_columns("N", tag, PAPER, phase=PHASE[tag]),
    }


@pytest.mark.parametrize("tag", list(PHASE))
def test_feature_vis(tag, instance, trained, visualised, record, figure):
    model = trained(tag, instance)
    result = visualised(model, tag)
    record(network_row(model, result, tag, instance))
    identity = {"model_tag": tag, "phase": PHASE[tag], "instance": instance, "n_clusters": K}
    for row in result.to_frame().to_dict("records"):
        record(row, kind="sub_cluster", **identity)
    names = [f"L{s.layer}-c{s.label} (n={s.size})" for s in result.sub_clusters]
    plot_feature_images(
        result.images, figure("features"), labels=names,
        title=f"{tag} {PHASE[tag]} (instance {instance}): images maximising each sub-cluster",
    )
    assert result.to_row()["n_sub_clusters"] == len(result.sub_clusters)


@pytest.mark.parametrize("claim_id", claims_for("feature_vis"))
def test_claim(claim_id, trained, visualised, cell_rows, claim):
    def build(cell, instance):
        model = trained(cell.tag, instance)
        return network_row(model, visualised(model, cell.tag), cell.tag, instance)

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))
