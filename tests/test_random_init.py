"""Untrained networks of the random-init study (Table I): sampling, multipliers, seeds, n-cuts."""

from __future__ import annotations

import numpy as np
import pytest

from harness.cache import FORMAT_VERSION, cached_random_init_ncuts, random_init_payload
from harness.cluster import cluster_weights
from harness.filters import filter_adjacency
from harness.profiles import PROFILES
from harness.random_init import (
    CNN_CHANNELS,
    CONV_BETWEEN,
    VGG_CHANNELS,
    module_multipliers,
    random_conv_kernels,
    random_init_weights,
    random_mlp_weights,
)
from harness.store import Store


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("channels", [CNN_CHANNELS, VGG_CHANNELS], ids=["cnn", "vgg"])
def test_conv_kernels_skip_the_first_conv_and_chain(channels):
    kernels = random_conv_kernels(channels, rng=_rng())
    assert len(kernels) == len(channels) - 1
    for c, k in enumerate(kernels, start=1):
        assert k.shape == (3, 3, channels[c - 1], channels[c])
        assert k.dtype == np.float64


def test_conv_kernels_are_glorot_uniform_with_keras_fans():
    # Keras' fans of a (kh, kw, in, out) kernel are in*kh*kw and out*kh*kw.
    k = random_conv_kernels((64, 128, 256), rng=_rng(1))[1]  # (3, 3, 128, 256)
    limit = np.sqrt(6.0 / (9 * 128 + 9 * 256))
    assert np.abs(k).max() <= limit
    assert np.abs(k).max() > 0.99 * limit  # 295k draws fill the interval
    # U(-l, l): mean 0, variance l^2 / 3
    assert abs(k.mean()) < 0.01 * limit
    assert k.var() == pytest.approx(limit**2 / 3, rel=0.01)


def test_conv_multipliers_are_2_8_and_0_8_per_slice():
    plain = random_conv_kernels(CNN_CHANNELS, rng=_rng(3))
    mod = random_conv_kernels(CNN_CHANNELS, clusterable=True, rng=_rng(3))
    within, between = module_multipliers(10, between=CONV_BETWEEN)
    assert (within, between) == pytest.approx((2.8, 0.8))
    assert within / 10 + between * 9 / 10 == pytest.approx(1.0)
    ratios = []
    for p, m in zip(plain, mod, strict=True):
        r = m / p  # the kernels are drawn before the modules: same draws
        # one multiplier per (in filter, out filter) slice, constant over the 3x3 positions
        np.testing.assert_allclose(r, np.broadcast_to(r[:1, :1], r.shape), rtol=1e-12)
        r = r[0, 0]
        assert np.all(np.isclose(r, within) | np.isclose(r, between))
        assert 0.03 < np.isclose(r, within).mean() < 0.2  # ~1/10 of the slices
        ratios.append(np.isclose(r, within))
    # The filters of conv2 carry one module each, shared by both kernels that touch them:
    # two conv2 filters have the same module iff their columns in kernel 2 match (64 input
    # filters make an accidental match impossible in practice), and then their rows in
    # kernel 3 match too.
    same_in_k2 = (ratios[0].T[:, None, :] == ratios[0].T[None, :, :]).all(-1)
    same_in_k3 = (ratios[1][:, None, :] == ratios[1][None, :, :]).all(-1)
    np.testing.assert_array_equal(same_in_k2, same_in_k3)


def test_seeded_draws_reproduce():
    for network in ("cnn", "vgg"):
        for clusterable in (False, True):
            a = random_init_weights(network, clusterable=clusterable, rng=_rng(7))
            b = random_init_weights(network, clusterable=clusterable, rng=_rng(7))
            c = random_init_weights(network, clusterable=clusterable, rng=_rng(8))
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
            assert not np.array_equal(a[0], c[0])


def test_filter_graphs_have_the_papers_node_counts():
    cnn = random_init_weights("cnn", rng=_rng())
    assert [w.shape for w in cnn] == [(64, 64), (64, 64)]
    vgg = random_init_weights("vgg", rng=_rng())
    assert len(vgg) == 12
    assert vgg[0].shape[0] + sum(w.shape[1] for w in vgg) == 4224
    for w in (*cnn, *vgg):
        assert (w > 0).all()  # fully connected: no isolated filter


def test_filter_graph_is_the_matrix_1_norm_of_the_kernels():
    kernels = random_conv_kernels(CNN_CHANNELS, rng=_rng(5))
    graph = random_init_weights("cnn", rng=_rng(5))
    for k, w in zip(kernels, graph, strict=True):
        np.testing.assert_array_equal(w, filter_adjacency(k, "matrix1"))
        i, j = 3, 17
        assert w[i, j] == pytest.approx(np.linalg.norm(np.abs(k[:, :, i, j]), 1))


def test_mlp_path_is_unchanged():
    # The MLP draws of the study stay bit-identical (their stored n-cuts stay valid).
    for skip_first in (True, False):
        a = random_init_weights("mlp", clusterable=True, skip_first=skip_first, rng=_rng(2))
        b = random_mlp_weights(clusterable=True, skip_first=skip_first, rng=_rng(2))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_options_are_checked():
    with pytest.raises(ValueError, match="'mlp', 'cnn', 'vgg'"):
        random_init_weights("resnet", rng=_rng())
    with pytest.raises(ValueError, match="skip_first=False is an MLP option"):
        random_init_weights("cnn", skip_first=False, rng=_rng())
    with pytest.raises(ValueError, match="at least two"):
        random_conv_kernels((64,), rng=_rng())
    with pytest.raises(ValueError, match="skip_first=False"):
        cached_random_init_ncuts(n_trials=1, clusterable=False, skip_first=False, seed=0,
                                 store=Store("/nonexistent"), network="vgg")


def test_vgg_channels_are_the_models():
    from harness.models import VGG_FILTERS

    assert VGG_CHANNELS == VGG_FILTERS


def test_mlp_store_key_is_unchanged():
    """MLP results stored before the conv networks existed keep their keys."""
    before = {"n_trials": 20, "clusterable": True, "skip_first": False, "seed": 5,
              "n_clusters": 12, "method": "fast", "format": FORMAT_VERSION}
    now = random_init_payload("mlp", n_trials=20, clusterable=True, skip_first=False, seed=5,
                               n_clusters=12, method="fast")
    assert now == before
    cnn = random_init_payload("cnn", n_trials=20, clusterable=True, skip_first=True, seed=5,
                               n_clusters=12, method="fast")
    assert cnn["network"] == "cnn"


def test_small_cnn_draws(tmp_path):
    """A few draws: near Table I (paper 10.923 / 9.249; ours 10.90 / 9.32 over 100), cached."""
    store = Store(tmp_path)
    plain = cached_random_init_ncuts(n_trials=4, clusterable=False, seed=1, store=store,
                                     network="cnn", n_workers=1)
    mod = cached_random_init_ncuts(n_trials=4, clusterable=True, seed=1, store=store,
                                   network="cnn", n_workers=1)
    assert plain.shape == mod.shape == (4,)
    assert abs(plain.mean() - 10.90) < 0.05
    assert abs(mod.mean() - 9.32) < 0.15
    assert mod.max() < plain.min()
    again = cached_random_init_ncuts(n_trials=4, clusterable=False, seed=1, store=store,
                                     network="cnn", n_workers=1)
    np.testing.assert_array_equal(plain, again)


def test_one_vgg_draw():
    """One 4,224-node draw lands in Table I's range (paper 8.485-8.603)."""
    rng = _rng(11)
    weights = random_init_weights("vgg", rng=rng)
    ncut = cluster_weights(weights, 12, seed=int(rng.integers(2**31))).ncut
    assert 8.40 < ncut < 8.65


def test_profiles_keep_the_vgg_study_small_where_they_should():
    paper = PROFILES["paper"]
    assert (paper.random_init_trials_vgg or paper.random_init_trials) == 100
    for name in ("quick", "ci"):
        n = PROFILES[name].random_init_trials_vgg
        assert n is not None and n <= 10


def _table_i_row(tag: str, **values: float) -> dict[str, object]:
    return {"model_tag": tag, "phase": "init", "null": "none", "n_clusters": 12, **values}


def test_conv_random_init_claims():
    import pandas as pd

    from harness.claims import REGISTRY, claims_for

    ids = claims_for("random_init")
    for name in ("cnn", "cnn-clusterable", "vgg", "vgg-clusterable",
                 "cnn-clusterable-lower", "vgg-clusterable-lower"):
        assert f"I-random-init-{name}" in ids
    cnn = REGISTRY["I-random-init-cnn"]
    assert cnn.evaluate(pd.DataFrame([_table_i_row("CNN/plain", mean=10.899)])).holds
    assert not cnn.evaluate(pd.DataFrame([_table_i_row("CNN/plain", mean=10.85)])).holds
    assert not cnn.evaluate(pd.DataFrame([_table_i_row("VGG/plain", mean=10.92)])).holds
    vgg = REGISTRY["I-random-init-vgg"]
    assert vgg.evaluate(pd.DataFrame([_table_i_row("VGG/plain", mean=8.513)])).holds
    assert not vgg.evaluate(pd.DataFrame([_table_i_row("VGG/plain", mean=8.40)])).holds
    lower = REGISTRY["I-random-init-vgg-clusterable-lower"]
    rows = [_table_i_row("VGG/clusterable", min=7.6, max=7.9),
            _table_i_row("VGG/plain", min=8.49, max=8.59)]
    assert lower.evaluate(pd.DataFrame(rows)).holds
    rows[0]["max"] = 8.5
    assert not lower.evaluate(pd.DataFrame(rows)).holds


def test_random_mlp_weights_takes_a_seed_or_a_generator() -> None:
    from harness.random_init import random_mlp_weights

    by_seed = random_mlp_weights([5, 4, 3], seed=7)
    by_rng = random_mlp_weights([5, 4, 3], rng=np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(by_seed, by_rng, strict=True))
    with pytest.raises(ValueError, match="exactly one of rng= and seed="):
        random_mlp_weights([5, 4, 3])
    with pytest.raises(ValueError, match="exactly one of rng= and seed="):
        random_mlp_weights([5, 4, 3], seed=1, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        random_mlp_weights([5, 4, 3], seed=2**70)
