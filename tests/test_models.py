"""Architectures, Keras-like init and the clusterable init (reference §2.2-2.4, §2.7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from harness.configs import TrainConfig
from harness.models import (
    MLP,
    VGG,
    VGG_DROPOUT,
    VGG_FILTERS,
    VGG_POOL_AFTER,
    SmallCNN,
    build_model,
    clusterable_init_,
    conv_kernels,
    keras_init_,
    weight_matrices,
)


def _types(module: nn.Module) -> list[type]:
    return [type(m) for m in module.modules() if not isinstance(m, (nn.Sequential, MLP,
                                                                       SmallCNN, VGG))]


# -- forward shapes and layer structure -----------------------------------------------------


def test_mlp_forward_shapes_and_flattening() -> None:
    model = MLP(784, (256, 256, 256, 256), 10)
    assert model(torch.rand(5, 784)).shape == (5, 10)
    assert model(torch.rand(5, 28, 28)).shape == (5, 10)  # images are flattened
    poly = MLP(2, (256,) * 4, 512)
    assert poly(torch.randn(3, 2)).shape == (3, 512)
    assert [w.shape for w in weight_matrices(model)] == [
        (784, 256), (256, 256), (256, 256), (256, 256), (256, 10)
    ]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 784 * 256 + 3 * 256 * 256 + 256 * 10 + 4 * 256 + 10


def test_mlp_dropout_after_every_hidden_layer_not_input() -> None:
    layers = list(MLP(784, (32, 16, 8), 10, dropout=0.5).layers)
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Linear", "ReLU", "Dropout"] * 3 + ["Linear"]
    assert all(m.p == 0.5 for m in layers if isinstance(m, nn.Dropout))
    assert nn.Dropout not in _types(MLP(784, (32, 16), 10, dropout=0.0))


def test_mlp_eval_mode_is_deterministic_and_train_mode_drops() -> None:
    model = MLP(20, (64, 64), 3, dropout=0.5)
    x = torch.rand(8, 20)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.equal(a, b)


def test_small_cnn_shapes_and_layers() -> None:
    cnn = SmallCNN((1, 28, 28), dropout=True)
    x = torch.rand(4, 1, 28, 28)
    assert cnn(x).shape == (4, 10)
    # Flat and (N, H, W) inputs are reshaped to channels-first images.
    assert torch.equal(cnn.eval()(x), cnn(x.reshape(4, 784)))
    assert torch.equal(cnn(x), cnn(x.reshape(4, 28, 28)))
    kinds = [type(m).__name__ for m in cnn.features]
    assert kinds == ["Conv2d", "ReLU", "Dropout",
                     "Conv2d", "ReLU", "MaxPool2d", "Dropout",
                     "Conv2d", "ReLU", "MaxPool2d", "Dropout"]
    assert [m.p for m in cnn.modules() if isinstance(m, nn.Dropout)] == [0.25] * 3 + [0.5]
    dense = [m for m in cnn.classifier if isinstance(m, nn.Linear)]
    assert (dense[0].in_features, dense[0].out_features) == (64 * 7 * 7, 128)
    assert dense[1].out_features == 10
    assert nn.Dropout not in _types(SmallCNN((1, 28, 28), dropout=False))
    kernels = conv_kernels(cnn)
    assert [k.shape for k in kernels] == [(3, 3, 1, 64), (3, 3, 64, 64), (3, 3, 64, 64)]


def test_small_cnn_stacked_and_channel_last_inputs() -> None:
    stacked = SmallCNN((2, 28, 28), channels=(8, 8, 8), n_classes=10)
    assert stacked(torch.rand(3, 2, 28, 28)).shape == (3, 10)
    colour = SmallCNN((3, 32, 32), channels=(4, 4, 4)).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(colour(x), colour(x.permute(0, 2, 3, 1)))  # (N, H, W, C) accepted
    with pytest.raises(ValueError, match="expected a batch"):
        colour(torch.rand(2, 5, 5))


def test_vgg_structure_and_forward() -> None:
    vgg = VGG(dropout=True)
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == list(VGG_FILTERS)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in vgg.features) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.features) == 5
    # Block order: conv, relu, [pool], BN, [dropout], with the §2.4 rates.
    feats = list(vgg.features)
    rates = []
    for i, conv in enumerate(convs):
        j = feats.index(conv)
        expected = [nn.Conv2d, nn.ReLU] + ([nn.MaxPool2d] if VGG_POOL_AFTER[i] else [])
        expected += [nn.BatchNorm2d]
        assert [type(m) for m in feats[j:j + len(expected)]] == expected
        after = feats[j + len(expected)] if j + len(expected) < len(feats) else None
        rates.append(after.p if isinstance(after, nn.Dropout) else 0.0)
    assert rates == list(VGG_DROPOUT)
    bn = [m for m in vgg.modules() if isinstance(m, nn.BatchNorm2d)][0]
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)  # Keras defaults
    head = [type(m).__name__ for m in vgg.classifier]
    assert head == ["Flatten", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear", "ReLU",
                    "Linear"]
    assert vgg.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert nn.Dropout not in _types(VGG(dropout=False))


# -- init -----------------------------------------------------------------------------------


def test_keras_init_glorot_bounds_zero_bias_and_seeded() -> None:
    a = keras_init_(MLP(784, (256, 64), 10), seed=1)
    b = keras_init_(MLP(784, (256, 64), 10), seed=1)
    c = keras_init_(MLP(784, (256, 64), 10), seed=2)
    for la, lb, lc in zip(a.layers, b.layers, c.layers, strict=True):
        if isinstance(la, nn.Linear):
            limit = math.sqrt(6.0 / (la.in_features + la.out_features))
            assert la.weight.abs().max() <= limit
            assert la.weight.abs().max() > 0.95 * limit  # really uniform over the range
            assert torch.count_nonzero(la.bias) == 0
            assert torch.equal(la.weight, lb.weight)
            assert not torch.equal(la.weight, lc.weight)
    cnn = keras_init_(SmallCNN((1, 28, 28), channels=(16, 32, 32)), seed=0)
    conv = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)][1]
    assert conv.weight.abs().max() <= math.sqrt(6.0 / ((16 + 32) * 9))


def test_build_model_seeded_and_leaves_global_rng_alone() -> None:
    config = TrainConfig("mnist", widths=(32, 32), input_shape=(784,), n_out=10, seed=7)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    m1 = build_model(config)
    assert torch.equal(torch.get_rng_state(), before)
    m2 = build_model(config)
    m3 = build_model(config.replace(seed=8))
    for w1, w2, w3 in zip(weight_matrices(m1), weight_matrices(m2), weight_matrices(m3), strict=True):
        np.testing.assert_array_equal(w1, w2)
        assert not np.array_equal(w1, w3)


def test_build_model_architectures_and_errors() -> None:
    cnn = build_model(TrainConfig("x", arch="cnn", input_shape=(2, 28, 28), n_out=10,
                                  widths=(4, 4, 4), dense_widths=(16,), dropout=0.5))
    assert isinstance(cnn, SmallCNN) and cnn.dropout and cnn.in_shape == (2, 28, 28)
    assert [m.p for m in cnn.modules() if isinstance(m, nn.Dropout)] == [0.25] * 3 + [0.5]
    vgg = build_model(TrainConfig("x", arch="vgg", input_shape=(3, 32, 32), n_out=10))
    assert isinstance(vgg, VGG) and not vgg.dropout
    with pytest.raises(ValueError, match="resolved"):
        build_model(TrainConfig("mnist"))
    with pytest.raises(ValueError, match="conv layers"):
        build_model(TrainConfig("x", arch="vgg", input_shape=(3, 32, 32), n_out=10,
                                widths=(8, 8)))


def _distinct(values: np.ndarray) -> set[float]:
    """Distinct values rounded to 4 decimals, as Python floats (float32 ratios are inexact)."""
    return {round(float(v), 4) for v in np.unique(values)}


def _ratios(before: list[np.ndarray], after: list[np.ndarray]) -> list[np.ndarray]:
    return [a / b for a, b in zip(after, before, strict=True)]


def test_clusterable_init_mlp_multipliers() -> None:
    model = keras_init_(MLP(784, (256, 256, 256, 256), 10), seed=0)
    before = weight_matrices(model)
    modules = clusterable_init_(model, n_modules=10, seed=3)
    after = weight_matrices(model)
    assert [len(m) for m in modules] == [784, 256, 256, 256, 256, 10]
    np.testing.assert_array_equal(modules[-1], np.arange(10))  # output module = class
    ratios = _ratios(before, after)
    np.testing.assert_array_equal(ratios[0], 1.0)  # the first Dense is skipped
    for k in range(1, 5):
        same = modules[k][:, None] == modules[k + 1][None, :]
        np.testing.assert_allclose(ratios[k][same], 4.6, rtol=1e-6)
        np.testing.assert_allclose(ratios[k][~same], 0.6, rtol=1e-6)
        # About 1/10 of the pairs are within a module, so the mean multiplier is ~1.
        assert abs(ratios[k].mean() - 1.0) < 0.15
    big = np.concatenate([r.ravel() for r in ratios[1:4]])
    assert abs(big.mean() - 1.0) < 0.05


@pytest.mark.parametrize("m", [2, 5, 10, 13])
def test_clusterable_init_expected_multiplier_is_one(m: int) -> None:
    model = keras_init_(MLP(50, (400, 400), 3), seed=0)
    before = weight_matrices(model)
    modules = clusterable_init_(model, n_modules=m, seed=0)
    ratio = weight_matrices(model)[1] / before[1]
    up = 1 + 0.4 * (m - 1)
    assert _distinct(ratio) <= {0.6, round(up, 4)}
    # The multipliers' expectation under uniform modules is exactly 1 ...
    assert up / m + 0.6 * (m - 1) / m == pytest.approx(1.0)
    # ... and the realised mean is close to it (160,000 pairs).
    assert abs(ratio.mean() - 1.0) < 0.05
    if m >= 3:
        np.testing.assert_array_equal(modules[-1], np.arange(3))
    else:  # more outputs than modules: drawn at random
        assert set(modules[-1]) <= set(range(m))


def test_clusterable_init_random_output_modules_when_many_classes() -> None:
    model = keras_init_(MLP(10, (20,), 30), seed=0)
    modules = clusterable_init_(model, n_modules=4, seed=0)
    assert modules[-1].shape == (30,) and set(modules[-1]) <= set(range(4))


def test_clusterable_init_cnn_multipliers() -> None:
    cnn = keras_init_(SmallCNN((1, 28, 28), channels=(32, 48, 64)), seed=0)
    before = conv_kernels(cnn)
    dense_before = weight_matrices(cnn)
    modules = clusterable_init_(cnn, n_modules=10, seed=1)
    after = conv_kernels(cnn)
    assert [len(m) for m in modules] == [32, 48, 64]
    np.testing.assert_array_equal(after[0], before[0])  # the first conv is skipped
    for c in (1, 2):
        ratio = after[c] / before[c]  # (kh, kw, in, out)
        same = modules[c - 1][:, None] == modules[c][None, :]
        np.testing.assert_allclose(ratio[:, :, same], 2.8, rtol=1e-6)
        np.testing.assert_allclose(ratio[:, :, ~same], 0.8, rtol=1e-6)
    for a, b in zip(weight_matrices(cnn), dense_before, strict=True):
        np.testing.assert_array_equal(a, b)  # dense layers untouched


def test_clusterable_init_vgg_and_build_model_hook() -> None:
    small = dict(filters=(4,) * 13, dense=(8, 8))
    vgg = keras_init_(VGG(**small), seed=0)
    before = conv_kernels(vgg)
    modules = clusterable_init_(vgg, n_modules=2, seed=0)
    after = conv_kernels(vgg)
    assert len(modules) == 13
    np.testing.assert_array_equal(after[0], before[0])
    ratio = after[5] / before[5]
    same = modules[4][:, None] == modules[5][None, :]
    np.testing.assert_allclose(ratio[:, :, same], 1 + 0.2 * 1, rtol=1e-6)
    np.testing.assert_allclose(ratio[:, :, ~same], 0.8, rtol=1e-6)
    # build_model applies it when init_modules > 0, from the config's seed.
    config = TrainConfig("mnist", widths=(64, 64), input_shape=(784,), n_out=10, seed=4)
    plain = weight_matrices(build_model(config))
    modular = weight_matrices(build_model(config.replace(init_modules=10)))
    np.testing.assert_array_equal(plain[0], modular[0])
    assert _distinct(modular[1] / plain[1]) == {0.6, 4.6}
    with pytest.raises(TypeError):
        clusterable_init_(nn.Linear(3, 3), seed=0)


def test_weight_matrices_and_conv_kernels_layout_and_copies() -> None:
    model = MLP(6, (5,), 4)
    w = weight_matrices(model)
    linear = model.layers[0]
    np.testing.assert_array_equal(w[0], linear.weight.detach().numpy().T)
    w[0][:] = 0  # a copy: the model is unchanged
    assert torch.count_nonzero(linear.weight) > 0
    cnn = SmallCNN((1, 8, 8), channels=(2, 3, 4), dense=(5,))
    k = conv_kernels(cnn)[1]
    weight = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)][1].weight.detach().numpy()
    assert k.shape == (3, 3, 2, 3)
    assert k[1, 2, 0, 2] == weight[2, 0, 1, 2]
    assert [m.shape for m in weight_matrices(cnn)] == [(4 * 2 * 2, 5), (5, 10)]
