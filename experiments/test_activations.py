"""Table M: clustering units by their activations, against the weight clusters (reference §7.1, §7.2).

Each network's hidden units (an MLP's 4 x 256 hidden units; a small CNN's 192 conv filters,
each reduced by the L2 norm over its map) are recorded on the test set and joined by the
``r^2`` of their Spearman correlations; that graph is clustered with K = 12 against
edge-shuffled graphs, and compared with the weight graph of the same units (the MLP's
hidden->hidden matrices, 1,024 nodes; the CNN's filter graph): NMI against label
permutations, transfer n-cut, mean ``r^2`` within and between weight clusters. Each test
also draws the correlation pictures of the network's clusters (§7.2). One row per (model,
instance, phase), the paper's single instance next to ours, and a control the paper does not
have: an untrained MLP (``MLP-UNTRAINED``, phase ``init``).
"""

from __future__ import annotations

import pytest

from harness.activations import correlation_pictures, unit_weight_labels
from harness.claims import REGISTRY, claims_for
from harness.paper import paper_columns
from harness.report import plot_correlation_pictures
from harness.spec import PAPER_K
from harness.tasks import analysis_seed

pytestmark = pytest.mark.activations

K = PAPER_K
MLP_TAGS = ["MNIST", "FASHION"]
CNN_TAGS = ["CNN-MNIST", "CNN-FASHION"]
PHASES = ["unpruned", "pruned"]
PAPER_METRICS = ("weight_ncut", "act_ncut", "act_p", "act_z", "transfer_ncut", "nmi", "nmi_p_left")


def _table_m(tag, phase, instance, trained, activation_analysed, unit_activations, record, figure):
    model = trained(tag, instance)
    result = activation_analysed(model, phase, n_clusters=K)
    units, x = unit_activations(model, phase)
    module = model.model(phase)
    seed = analysis_seed(model, f"pictures:{phase}")
    labels = unit_weight_labels(module, K, seed=seed)
    pictures = correlation_pictures(units, x, labels, seed=seed)
    plot_correlation_pictures(
        pictures,
        figure("correlations"),
        title=f"{tag} {phase} (instance {instance}): what each weight cluster responds to",
    )
    record(table_m_row(model, result, tag, phase, instance), n_pictures=len(pictures.pictures))
    assert 0 <= result.comparison.nmi <= 1


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("tag", MLP_TAGS)
def test_table_m_mlp(
    tag, phase, instance, trained, activation_analysed, unit_activations, record, figure
):
    _table_m(tag, phase, instance, trained, activation_analysed, unit_activations, record, figure)


@pytest.mark.cnn
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("tag", CNN_TAGS)
def test_table_m_cnn(
    tag, phase, instance, trained, activation_analysed, unit_activations, record, figure
):
    _table_m(tag, phase, instance, trained, activation_analysed, unit_activations, record, figure)


@pytest.mark.parametrize("dataset", ["mnist"])
def test_table_m_untrained_control(dataset, datasets, profile, store, seed, record):
    """Not in the paper: an untrained 784-256x4-10 MLP (Keras init), to see how much of the
    activation graph's significance the edge-shuffle null grants any layered network."""
    from harness.activations.cache import cached_activation_test, cached_activations
    from harness.data import as_torch
    from harness.models import MLP, keras_init_

    module = keras_init_(MLP(), seed=seed).eval()
    x, _ = as_torch(datasets(dataset), "test", flatten=True, subset=profile.subset(None, "test"))
    identity = {"untrained": "MLP", "init_seed": seed, "dataset": dataset, "n_examples": len(x)}
    units = cached_activations(module, x, store=store, identity=identity)
    result = cached_activation_test(
        module,
        units,
        store=store,
        identity=identity,
        n_clusters=K,
        n_samples=profile.n_nulls,
        seed=seed,
    )
    record(
        {
            **result.to_row(),
            "model_tag": f"MLP-UNTRAINED ({dataset})",
            "phase": "init",
            "instance": 0,
        }
    )


def table_m_row(model, result, tag, phase, instance):
    """One row of Table M: the activation test, the model's metrics, the paper's numbers."""
    return {
        **result.to_row(),
        "model_tag": tag,
        "phase": phase,
        "instance": instance,
        **model.row_columns(phase),
        **paper_columns("M", tag, PAPER_METRICS, phase=phase),
    }


def _conv_marked(ids):
    return [pytest.param(i, marks=pytest.mark.cnn) if "-CNN-" in i else i for i in ids]


@pytest.mark.parametrize("claim_id", _conv_marked(claims_for("activations")))
def test_claim(claim_id, trained, activation_analysed, cell_rows, claim):
    def build(cell, instance):
        model = trained(cell.tag, instance)
        result = activation_analysed(model, cell.phase, n_clusters=cell.n_clusters)
        return table_m_row(model, result, cell.tag, cell.phase, instance)

    claim(claim_id, cell_rows(REGISTRY[claim_id].cells, build))
