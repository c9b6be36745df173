"""Training, the pruning schedule, configs, tags and the store-backed entry point (§2.5-2.9)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import harness.training as train_module
from harness.configs import TAGS, TrainConfig, config_for_tag, training_tag
from harness.data import Dataset
from harness.models import build_model, kernel_layers, weight_matrices
from harness.optim import kernel_penalty
from harness.pruning import Pruner
from harness.store import Store
from harness.train_context import use_progress
from harness.trained_model import TrainedModel
from harness.training import (
    TrainingDivergedError,
    get_or_train,
    model_key_payload,
    polynomial_sparsity,
    prune_step_sparsity,
    run_epoch,
    train,
)

ROOT = Path(__file__).resolve().parent.parent


def synthetic(n_train: int = 96, n_test: int = 40, *, shape: tuple[int, ...] = (28, 28),
              seed: int = 0, name: str = "synthetic", channel_axis: int | None = None) -> Dataset:
    """A small uint8 image classification dataset on the 0..255 scale.

    Noise in 0..127 plus one bright row whose index encodes the label, so a network can
    fit it in a few epochs.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    x = rng.integers(0, 128, size=(n, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    rows = x.reshape(n, -1, shape[-1])
    rows[np.arange(n), y % rows.shape[1], :] = 255
    x.reshape(n, -1)[:, 0] = 0
    return Dataset(name, seed, x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                   "classification", 10, channel_axis=channel_axis)


def tiny(**changes: object) -> TrainConfig:
    base = TrainConfig("synthetic", widths=(24, 16), epochs=2, pruning_epochs=3, batch_size=16)
    return base.replace(**changes)


def _kernels(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2}


# -- the schedule -----------------------------------------------------------------------------


def test_polynomial_sparsity_hand_values() -> None:
    assert polynomial_sparsity(0, end_step=100) == pytest.approx(0.5)
    assert polynomial_sparsity(100, end_step=100) == pytest.approx(0.9)
    assert polynomial_sparsity(250, end_step=100) == pytest.approx(0.9)  # clipped
    assert polynomial_sparsity(50, end_step=100) == pytest.approx(0.9 - 0.4 * 0.125)
    assert polynomial_sparsity(25, end_step=100) == pytest.approx(0.9 - 0.4 * 0.75 ** 3)
    # MNIST: E = 469 * 20 = 9380; tfmot's last update (step 9370) is 5e-10 short of 0.9.
    assert polynomial_sparsity(9370, end_step=9380) == pytest.approx(
        0.9 - 0.4 * (10 / 9380) ** 3, abs=1e-15)
    assert polynomial_sparsity(10, end_step=20, initial_sparsity=0.2, final_sparsity=0.6,
                               begin_step=10) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        polynomial_sparsity(0, end_step=0)


def test_prune_step_sparsity_every_frequency_steps_and_at_the_end() -> None:
    config = TrainConfig("x", pruning_frequency=10)
    end = 95  # not a multiple of the frequency
    updates = {t: prune_step_sparsity(t, config, end) for t in range(end + 1)}
    steps = [t for t, s in updates.items() if s is not None]
    assert steps == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    assert updates[0] == pytest.approx(0.5)
    assert updates[95] == pytest.approx(0.9)
    assert updates[40] == pytest.approx(0.9 - 0.4 * (1 - 40 / 95) ** 3)
    values = [updates[t] for t in steps]
    assert values == sorted(values)


def test_pruner_keeps_exact_count_with_ties() -> None:
    w = torch.ones(10, 10)  # all magnitudes tie
    pruner = Pruner([w])
    pruner.prune_to(0.9)
    assert int(torch.count_nonzero(w)) == 10
    w2 = torch.arange(1.0, 41.0).reshape(5, 8)
    pruner = Pruner([w2])
    pruner.prune_to(0.75)
    assert sorted(w2[w2 != 0].tolist()) == [31.0 + i for i in range(10)]


# -- pruning during training ------------------------------------------------------------------


def test_masked_weights_stay_zero_at_every_step() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(input_shape=(784,), n_out=10))
    kernels = [m.weight for m in kernel_layers(model)]
    pruner = Pruner(kernels)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-7)
    data = synthetic(64)
    x = torch.as_tensor(data.x_train.reshape(64, -1) / 255.0, dtype=torch.float32)
    y = torch.as_tensor(np.array(data.y_train))
    config = TrainConfig("x", pruning_frequency=3)
    end = 12
    seen: list[int] = []

    def schedule(step: int) -> float | None:
        # Called before every step: whatever was masked must still be exactly zero.
        for w, mask in zip(kernels, pruner.masks, strict=True):
            assert torch.all(w[mask == 0] == 0)
        seen.append(step)
        return prune_step_sparsity(step, config, end)

    step = 0
    for _ in range(3):
        _, _, taken = run_epoch(model, optimizer, x, y, torch.randperm(64),
                                batch_size=16, classification=True, pruner=pruner,
                                schedule=schedule, first_step=step)
        step += taken
    assert seen == list(range(12))
    for w, mask in zip(kernels, pruner.masks, strict=True):
        assert torch.all(w[mask == 0] == 0)
        assert torch.count_nonzero(w) == torch.count_nonzero(mask)


def test_train_prunes_every_kernel_to_exactly_90_percent() -> None:
    data = synthetic(100)  # 7 steps per epoch: E = 21, not a multiple of 10
    result = train(tiny(snapshots=True), data, device="cpu", progress=False)
    assert result.info["pruning_end_step"] == 7 * 3
    pruned = _kernels(result.pruned_state)
    unpruned = _kernels(result.unpruned_state)
    assert len(pruned) == 3
    for name, w in pruned.items():
        keep = round(w.numel() * (1 - 0.9))
        assert int(torch.count_nonzero(w)) == keep, name
        assert int(torch.count_nonzero(unpruned[name])) == w.numel()  # dense before pruning
    # Biases are not pruned (a dead unit's bias may be 0, but never 90% of them).
    for name, b in result.pruned_state.items():
        if name.endswith("bias"):
            assert torch.count_nonzero(b) > 0.5 * b.numel()
    # Once zero in a pruned snapshot, zero in every later one.
    pruned_snaps = [s for _, phase, s in result.snapshots if phase == "pruned"]
    for earlier, later in zip(pruned_snaps, pruned_snaps[1:], strict=False):
        for name in pruned:
            assert torch.all(later[name][earlier[name] == 0] == 0)
    sparsity = [row["sparsity"] for row in result.metrics["pruned"]]
    assert sparsity == sorted(sparsity) and sparsity[-1] == pytest.approx(0.9, abs=1e-3)


def test_cnn_conv_kernels_are_pruned_too() -> None:
    data = synthetic(48, 16, shape=(12, 12))
    config = TrainConfig("synthetic", arch="cnn", widths=(4, 8, 8), dense_widths=(16,),
                         epochs=1, pruning_epochs=2, batch_size=16, dropout=0.5)
    result = train(config, data, device="cpu", progress=False)
    assert result.config.input_shape == (1, 12, 12)
    kernels = _kernels(result.pruned_state)
    assert sum(w.dim() == 4 for w in kernels.values()) == 3
    for w in kernels.values():
        assert int(torch.count_nonzero(w)) == round(w.numel() * 0.1)


def test_conv_nets_train_channels_last_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    assert train_module.memory_format("cnn") == train_module.memory_format("vgg") == torch.channels_last
    assert train_module.memory_format("mlp") == torch.contiguous_format
    data = synthetic(64, 16, shape=(12, 12))
    config = TrainConfig("synthetic", arch="cnn", widths=(4, 8, 8), dense_widths=(16,),
                         epochs=2, pruning_epochs=1, batch_size=16, dropout=0.25)
    a = train(config, data, device="cpu", progress=False)
    b = train(config, data, device="cpu", progress=False)
    for phase in ("unpruned", "pruned"):
        sa, sb = a.state(phase), b.state(phase)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert all(v.is_contiguous() for v in sa.values())  # stored in the default layout
    # Without dropout, the default layout trains the same network up to float rounding in
    # the convolutions. (With dropout the masks differ: torch draws them in memory order.)
    plain = config.replace(dropout=0.0)
    d = train(plain, data, device="cpu", progress=False)
    monkeypatch.setattr(train_module, "memory_format", lambda arch: torch.contiguous_format)
    e = train(plain, data, device="cpu", progress=False)
    sd, se = d.state("unpruned"), e.state("unpruned")
    assert max(float((sd[k] - se[k]).abs().max()) for k in sd) < 1e-6


# -- determinism, metrics, errors -------------------------------------------------------------


def test_same_seed_gives_bit_identical_weights_and_restores_rng() -> None:
    data = synthetic()
    config = tiny(dropout=0.3, l1=1e-4)
    torch.manual_seed(99)
    rng_before = torch.get_rng_state()
    a = train(config, data, device="cpu", progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    b = train(config, data, device="cpu", progress=False)
    c = train(config.replace(seed=1), data, device="cpu", progress=False)
    for phase in ("unpruned", "pruned"):
        sa, sb, sc = a.state(phase), b.state(phase), c.state(phase)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.metrics == b.metrics


def test_cpu_training_uses_one_thread_whatever_the_caller_has() -> None:
    """The thread count changes float order in torch's kernels, hence the weights: training
    pins :data:`TRAIN_THREADS` so that the worker count cannot, and restores the caller's."""
    from harness.training import TRAIN_THREADS

    data = synthetic()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = train(tiny(dropout=0.3), data, device="cpu", progress=False)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        b = train(tiny(dropout=0.3), data, device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    assert a.info["threads"] == b.info["threads"] == TRAIN_THREADS == 1
    assert all(torch.equal(a.state()[k], b.state()[k]) for k in a.state())


def test_metrics_rows_follow_keras_conventions() -> None:
    data = synthetic(128, 64)
    result = train(tiny(epochs=3, pruning_epochs=2, l2=1e-3), data, device="cpu",
                   progress=False)
    unpruned, pruned = result.metrics["unpruned"], result.metrics["pruned"]
    assert [r["epoch"] for r in unpruned] == [1, 2, 3]
    assert [r["epoch"] for r in pruned] == [4, 5]
    for row in unpruned + pruned:
        assert 0.0 <= row["train_acc"] <= 1.0 and 0.0 <= row["test_acc"] <= 1.0
        assert row["penalty"] > 0
        assert row["test_loss"] > row["penalty"]  # data loss + penalty, as Keras reports
    # test metrics are those of the final weights in eval mode.
    model = build_model(result.config, init=False)
    model.load_state_dict(result.pruned_state)
    model.eval()
    x, y = torch.as_tensor(data.x_test.reshape(64, -1) / np.float32(255)), data.y_test
    with torch.no_grad():
        acc = (model(x.float()).argmax(1).numpy() == y).mean()
    assert pruned[-1]["test_acc"] == pytest.approx(acc)
    final = result.final_metrics("pruned")
    assert set(final) == {"train_acc", "train_loss", "test_acc", "test_loss"}
    assert all(type(v) is float for v in final.values())
    row = result.to_row()
    assert row["pruned_test_acc"] == final["test_acc"]
    assert all(type(v) in (str, int, float) for v in row.values())


def test_learns_a_learnable_task() -> None:
    data = synthetic(512, 256)
    config = tiny(widths=(64,), epochs=8, pruning_epochs=2, batch_size=32, lr=3e-3)
    result = train(config, data, device="cpu", progress=False)
    assert result.final_metrics("unpruned")["test_acc"] > 0.8  # chance is 0.1


def test_regression_uses_mse_and_has_no_accuracy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = np.stack([x[:, 0] * x[:, 1], x[:, 0] ** 2, np.ones(80)], 1)
    data = Dataset("reg", 0, x[:60], y[:60], x[60:], y[60:], "regression", 3)
    config = TrainConfig("reg", widths=(8, 8), epochs=2, pruning_epochs=1, batch_size=16)
    result = train(config, data, device="cpu", progress=False)
    assert result.config.input_shape == (2,) and result.config.n_out == 3
    row = result.metrics["unpruned"][-1]
    assert "train_acc" not in row and "test_acc" not in row
    model = build_model(result.config, init=False)
    model.load_state_dict(result.unpruned_state)
    model.eval()
    with torch.no_grad():
        mse = float(((model(torch.as_tensor(x[60:], dtype=torch.float32))
                      - torch.as_tensor(y[60:], dtype=torch.float32)) ** 2).mean())
    assert row["test_loss"] == pytest.approx(mse, rel=1e-5)
    assert set(result.final_metrics("pruned")) == {"train_loss", "test_loss"}


def test_no_shuffle_and_subsets() -> None:
    data = synthetic(64, 32)
    result = train(tiny(shuffle=False, n_train=40, n_test=10), data, device="cpu",
                   progress=False)
    assert result.info["n_train"] == 40 and result.info["n_test"] == 10
    assert result.info["steps_per_epoch"] == 3
    with pytest.raises(ValueError, match="exceeds"):
        train(tiny(n_train=65), data, device="cpu", progress=False)


def test_nan_loss_raises_with_epoch_and_phase(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = np.full((40, 2), 1e30)  # the squared error overflows float32
    data = Dataset("huge", 0, x[:32], y[:32], x[32:], y[32:], "regression", 2)
    config = TrainConfig("huge", widths=(4,), epochs=2, pruning_epochs=1, batch_size=8)
    with pytest.raises(TrainingDivergedError, match="epoch 1") as info:
        train(config, data, device="cpu", progress=False)
    assert info.value.epoch == 1 and info.value.phase == "unpruned"
    store = Store(tmp_path / "store")
    with pytest.raises(TrainingDivergedError):
        get_or_train(config, store=store, dataset=data, device="cpu", progress=False)
    kind_dir = tmp_path / "store" / "model"
    assert store.artifacts("model") == []
    assert not [p for p in kind_dir.iterdir() if p.name.startswith(".tmp")]


def test_dataset_name_must_match() -> None:
    with pytest.raises(ValueError, match="dataset"):
        train(TrainConfig("mnist", epochs=1), synthetic(), device="cpu", progress=False)


# -- configs ----------------------------------------------------------------------------------


def test_config_round_trip_through_json() -> None:
    config = TrainConfig("mnist", arch="cnn", widths=(8, 8, 8), dropout=0.5, l1=5e-5,
                         init_modules=10, seed=3, n_train=100, snapshots=True)
    data = json.loads(json.dumps(config.to_dict()))
    again = TrainConfig.from_dict(data)
    assert again == config and hash(again) == hash(config)
    assert isinstance(again.widths, tuple)
    assert config.replace(seed=4).seed == 4 and config.seed == 3


def test_config_bad_fields_and_values() -> None:
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) 'epoch'.*valid fields"
                       ".*pruning_epochs"):
        TrainConfig.from_dict({"dataset": "mnist", "epoch": 3})
    with pytest.raises(ValueError, match="'dropuot'"):
        TrainConfig("mnist").replace(dropuot=0.5)
    with pytest.raises(ValueError, match="needs at least a 'dataset'"):
        TrainConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="arch must be one of 'mlp', 'cnn', 'vgg'"):
        TrainConfig("mnist", arch="rnn")
    for bad in ({"epochs": -1}, {"batch_size": 0}, {"dropout": 1.0}, {"lr": 0.0},
                {"initial_sparsity": 0.95}, {"final_sparsity": 1.0}, {"widths": (0, 3)},
                {"epochs": 2.5}, {"l1": float("nan")}, {"widths": "256"}, {"shuffle": "yes"}):
        with pytest.raises(ValueError):
            TrainConfig("mnist", **bad)  # type: ignore[arg-type]


def test_resolved_fills_defaults_so_spelled_out_configs_share_a_key() -> None:
    data = synthetic()
    a = TrainConfig("synthetic").resolved(data)
    b = TrainConfig("synthetic", widths=(256, 256, 256, 256), input_shape=(784,),
                    n_out=10).resolved(data)
    assert a == b and a.widths == (256,) * 4 and a.input_shape == (784,) and a.n_out == 10
    assert TrainConfig("synthetic", arch="cnn").resolved(data).input_shape == (1, 28, 28)
    with pytest.raises(ValueError, match="input_shape"):
        TrainConfig("synthetic", input_shape=(10,)).resolved(data)
    assert "TrainConfig('mnist', seed=2)" == repr(TrainConfig("mnist", seed=2))


# -- tags -------------------------------------------------------------------------------------


def test_tags_match_the_paper() -> None:
    from harness.data import DATASETS

    assert len(TAGS) > 150
    assert all(config.dataset in DATASETS for config in TAGS.values())
    mnist = config_for_tag("MNIST")
    assert (mnist.dataset, mnist.arch, mnist.epochs, mnist.pruning_epochs, mnist.batch_size,
            mnist.widths) == ("mnist", "mlp", 20, 20, 128, None)
    assert config_for_tag("mnist+dropout").dropout == 0.5  # case-insensitive
    assert config_for_tag("FASHION+L1REG").l1 == 5e-5
    assert config_for_tag("FASHION+L2REG").l2 == 5e-5 and config_for_tag("FASHION+L2REG").l1 == 0
    assert config_for_tag("MNIST+MOD-INIT").init_modules == 10
    cifar = config_for_tag("CIFAR10+DROPOUT")
    assert (cifar.epochs, cifar.pruning_epochs, cifar.dropout) == (100, 40, 0.2)
    assert config_for_tag("CIFAR10").pruning_epochs == 40
    assert config_for_tag("RANDOM-OVERFITTING").n_train == 3000
    assert config_for_tag("RANDOM-OVERFITTING").shuffle is False
    assert config_for_tag("MNIST-x10-EPOCHS").epochs == 200
    cnn = config_for_tag("CNN-STACKED-SAME-FASHION+DROPOUT")
    assert (cnn.dataset, cnn.arch, cnn.batch_size, cnn.epochs, cnn.dropout) == (
        "stacked_same_fashion", "cnn", 64, 10, 0.5)
    vgg = config_for_tag("CNN-VGG-CIFAR10+DROPOUT+L2REG")
    assert (vgg.dataset, vgg.arch, vgg.epochs, vgg.pruning_epochs, vgg.l2, vgg.augment) == (
        "cifar10_full", "vgg", 200, 50, 5e-4, True)
    assert config_for_tag("POLY+L1REG").dataset == "poly"
    assert config_for_tag("HALVES-CIFAR10+MOD-INIT+L2REG").epochs == 40
    assert config_for_tag("MNIST", seed=3).seed == 3
    assert training_tag(config_for_tag("MNIST+MOD-INIT+DROPOUT")) == \
        "mnist_mlp_20epochs_mod_init_dropout"
    assert training_tag(config_for_tag("POLY")) == "poly_mlp_regression_20epochs"
    assert training_tag(config_for_tag("CNN-VGG-CIFAR10")) == "cifar10_full_cnn_vgg_200epochs"


def test_unknown_tag_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"'MNIST\+DROPOUT'.*harness.configs.TAGS"):
        config_for_tag("MNIST+DRPOUT")
    with pytest.raises(ValueError, match="unknown model tag 'ZZZ'; all"):
        config_for_tag("ZZZ")


# -- the first-layer L1 quirk of the original MLPs (§2.2, §11 item 1) --------------------------


def test_quirk_puts_l1_at_the_active_rate_on_the_first_kernel_only() -> None:
    torch.manual_seed(0)
    kernels = [torch.randn(6, 5), torch.randn(4, 6), torch.randn(3, 4)]
    first, rest = kernels[0], kernels[1:]
    rate = 0.01

    def l1(w: torch.Tensor) -> float:
        return float(w.abs().sum())

    def sq(w: torch.Tensor) -> float:
        return float((w * w).sum())

    quirk = kernel_penalty(kernels, 0.0, rate, first_layer_l1=True)
    clean = kernel_penalty(kernels, 0.0, rate)
    assert quirk is not None and clean is not None
    assert float(quirk) == pytest.approx(rate * (l1(first) + sum(map(sq, rest))))
    assert float(clean) == pytest.approx(rate * sum(map(sq, kernels)))
    # L1 runs have L1 on every kernel already: the quirk changes nothing.
    l1_quirk, l1_clean = (kernel_penalty(kernels, rate, 0.0, first_layer_l1=q) for q in (True, False))
    assert l1_quirk is not None and l1_clean is not None and torch.equal(l1_quirk, l1_clean)
    # Both on: the original's L2 took precedence, so the first kernel gets L1 at the L2 rate.
    both = kernel_penalty(kernels, rate / 2, rate, first_layer_l1=True)
    assert both is not None
    assert float(both) == pytest.approx(
        rate * l1(first) + sum(rate / 2 * l1(w) + rate * sq(w) for w in rest))
    assert kernel_penalty(kernels, 0.0, 0.0, first_layer_l1=True) is None


@pytest.mark.parametrize("quirk", [True, False], ids=["quirk", "l2-all"])
def test_first_kernel_step_is_sign_based_under_the_quirk(quirk: bool) -> None:
    # Zero inputs and Keras' zero biases make every hidden activation 0, so no data gradient
    # reaches any kernel: one SGD step (lr 1) moves each kernel by minus its penalty gradient.
    rate = 0.05
    config = tiny(l2=rate, first_layer_l1=quirk, input_shape=(784,), n_out=10)
    model = build_model(config)
    kernels = [m.weight for m in kernel_layers(model)]
    before = [w.detach().clone() for w in kernels]
    x, y = torch.zeros(16, 784), torch.zeros(16, dtype=torch.int64)
    _, _, steps = run_epoch(model, torch.optim.SGD(model.parameters(), lr=1.0), x, y, None,
                            batch_size=16, classification=True, l2=config.l2,
                            first_layer_l1=config.first_layer_l1)
    assert steps == 1
    moved = [w.detach() - b for w, b in zip(kernels, before, strict=True)]
    first = -rate * torch.sign(before[0]) if quirk else -2 * rate * before[0]
    torch.testing.assert_close(moved[0], first)
    for step, b in zip(moved[1:], before[1:], strict=True):
        torch.testing.assert_close(step, -2 * rate * b)  # L2 on every later kernel


def test_train_applies_the_quirk_and_reports_its_penalty() -> None:
    rate = 1e-3
    config = tiny(l2=rate, first_layer_l1=True, epochs=1, pruning_epochs=0)
    result = train(config, synthetic(), device="cpu", progress=False)
    assert result.config.first_layer_l1
    kernels = list(_kernels(result.unpruned_state).values())
    expected = rate * (kernels[0].abs().sum() + sum((w * w).sum() for w in kernels[1:]))
    assert result.metrics["unpruned"][0]["penalty"] == pytest.approx(float(expected), rel=1e-5)


def test_paper_l2_mlp_tags_carry_the_quirk_and_l2reg_all_tags_do_not() -> None:
    for tag, config in TAGS.items():
        paper_l2_mlp = config.arch == "mlp" and config.l2 > 0 and not tag.endswith("-ALL")
        assert config.first_layer_l1 == paper_l2_mlp, tag
    for tag in ("MNIST+L2REG", "FASHION+MOD-INIT+L2REG", "HALVES-CIFAR10+MOD-INIT+L2REG",
                "POLY+L2REG", "MNIST-FASHION-SEPARATED+L2REG", "FASHION-CIFAR10+L2REG"):
        assert config_for_tag(tag).first_layer_l1, tag
    for tag in ("MNIST+L1REG", "CNN-MNIST+L2REG", "CNN-VGG-CIFAR10+DROPOUT+L2REG", "MNIST"):
        assert not config_for_tag(tag).first_layer_l1, tag
    for dataset in ("MNIST", "FASHION"):
        clean, paper = config_for_tag(f"{dataset}+L2REG-ALL"), config_for_tag(f"{dataset}+L2REG")
        assert clean == paper.replace(first_layer_l1=False) and clean.l2 == 5e-5
        assert clean.l1 == 0 and not clean.first_layer_l1


def test_quirk_flag_is_checked_and_keyed_only_when_it_changes_the_model() -> None:
    with pytest.raises(ValueError, match="arch must be 'mlp'"):
        TrainConfig("mnist", arch="cnn", l2=5e-5, first_layer_l1=True)
    with pytest.raises(ValueError, match="first_layer_l1 must be True or False"):
        TrainConfig("mnist", first_layer_l1="yes")  # type: ignore[arg-type]
    data = synthetic()
    plain = model_key_payload(tiny(l2=5e-5), data)
    quirk = model_key_payload(tiny(l2=5e-5, first_layer_l1=True), data)
    assert "first_layer_l1" not in plain["config"]  # configs without it keep their keys
    assert quirk["config"] == {**plain["config"], "first_layer_l1": True}
    # Without L2 the quirk is a no-op: resolved() clears it, so it is the same model and key.
    assert tiny(l1=5e-5, first_layer_l1=True).resolved(data) == tiny(l1=5e-5).resolved(data)
    assert (model_key_payload(tiny(l1=5e-5, first_layer_l1=True), data)
            == model_key_payload(tiny(l1=5e-5), data))
    config = tiny(l2=5e-5, first_layer_l1=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert "first_layer_l1=True" in repr(config)


# -- store-backed training --------------------------------------------------------------------


def test_get_or_train_trains_once_and_reads_back(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthetic()
    store = Store(tmp_path)
    config = tiny(snapshots=True)
    first = get_or_train(config, store=store, dataset=data, device="cpu", progress=False)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained twice")

    monkeypatch.setattr(train_module, "train", fail)
    again = get_or_train(config.replace(widths=[24, 16]), store=store, dataset=data,
                         device="cpu")
    assert again.key == first.key and again.path == first.path
    assert first.config.input_shape == (784,)
    weights = again.weights("pruned")
    assert [w.shape for w in weights] == [(784, 24), (24, 16), (16, 10)]
    assert all(w.dtype == np.float32 for w in weights)
    assert int(np.count_nonzero(weights[0])) == round(784 * 24 * 0.1)
    assert np.count_nonzero(again.weights("unpruned")[0]) == 784 * 24
    model = again.model("unpruned")
    assert not model.training
    np.testing.assert_array_equal(weight_matrices(model)[1], again.weights("unpruned")[1])
    final = again.final_metrics("pruned")
    assert final == {k: again.metrics["pruned"][-1][k] for k in final}
    snaps = again.snapshots()
    assert [(e, p) for e, p, _ in snaps] == [(1, "unpruned"), (2, "unpruned"), (3, "pruned"),
                                            (4, "pruned"), (5, "pruned")]
    np.testing.assert_array_equal(snaps[-1][2][0], weights[0])
    np.testing.assert_array_equal(snaps[1][2][2], again.weights("unpruned")[2])
    row = again.to_row()
    assert all(isinstance(v, (str, int, float)) for v in row.values())
    assert row["model_key"] == again.key
    text = repr(again)
    assert again.key[:12] in text and "synthetic/mlp" in text and len(text) < 200
    meta = json.loads((again.path / "meta.json").read_text())
    assert meta["seed"] == 0 and "torch" in meta["versions"] and meta["created"]
    assert meta["key_payload"]["dataset"] == data.content_hash


def test_different_data_or_config_get_different_keys(tmp_path: Path) -> None:
    store = Store(tmp_path)
    config = tiny(epochs=1, pruning_epochs=0)
    a = get_or_train(config, store=store, dataset=synthetic(seed=0), device="cpu")
    b = get_or_train(config, store=store, dataset=synthetic(seed=1), device="cpu")
    c = get_or_train(config.replace(seed=5), store=store, dataset=synthetic(seed=0),
                     device="cpu")
    assert len({a.key, b.key, c.key}) == 3
    with pytest.raises(ValueError, match="pruning_epochs=0"):
        a.weights("pruned")
    with pytest.raises(ValueError, match="phase must be one of"):
        a.weights("final")
    with pytest.raises(ValueError, match="without snapshots"):
        a.snapshots()


# -- CLI and real data ------------------------------------------------------------------------


@pytest.mark.integration
def test_cli_trains_from_a_json_config_on_real_mnist(tmp_path: Path) -> None:
    config = TrainConfig("mnist", widths=(32,), epochs=5, pruning_epochs=1, n_train=2048,
                         n_test=512)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    env = {**os.environ, "HARNESS_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "train", str(path), "--store", str(tmp_path / "s"),
           "--seed", "1", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["dataset"] == "mnist" and row["seed"] == 1
    assert row["unpruned_test_acc"] > 0.7  # 2048 MNIST examples, 5 epochs (~0.85)
    trained = TrainedModel.from_path(row["path"])
    assert trained.key == row["model_key"]
    bad = subprocess.run([sys.executable, "-m", "harness", "train", "MNIST+DRPOUT"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert bad.returncode == 2 and "MNIST+DROPOUT" in bad.stderr


def test_progress_auto_is_off_in_tests() -> None:
    assert use_progress(None) is False
    assert use_progress(True) is True


def test_training_loss_is_finite_and_decreasing_on_average() -> None:
    data = synthetic(256, 64)
    result = train(tiny(widths=(32,), epochs=5, pruning_epochs=0, lr=3e-3), data,
                   device="cpu", progress=False)
    losses = [row["train_loss"] for row in result.metrics["unpruned"]]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert result.pruned_state is None and result.metrics["pruned"] == []


def test_models_module_layers_are_what_pruning_sees() -> None:
    model = build_model(TrainConfig("x", arch="cnn", input_shape=(1, 8, 8), n_out=3,
                                    widths=(2, 2, 2), dense_widths=(4,)))
    layers = kernel_layers(model)
    assert [type(m) for m in layers] == [nn.Conv2d] * 3 + [nn.Linear] * 2


def test_data_errors_propagate_and_nothing_is_stored(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.data
    from harness.data import DataUnavailableError

    def unavailable(name: str, **kwargs: object) -> Dataset:
        raise DataUnavailableError(f"{name} is not available here")

    monkeypatch.setattr(harness.data, "load_dataset", unavailable)
    store = Store(tmp_path)
    with pytest.raises(DataUnavailableError, match="fashion is not available"):
        get_or_train(config_for_tag("FASHION"), store=store)
    with pytest.raises(ValueError, match="dataset must be one of"):
        monkeypatch.undo()
        get_or_train(TrainConfig("no-such-data"), store=store)
    assert not (tmp_path / "model").exists()


def test_bench_train_runs_and_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_train

    state = torch.get_rng_state()
    try:
        code = bench_train.main(["--n", "384", "--repeats", "1", "--cnn-batches", "2",
                                 "--threads", str(torch.get_num_threads())])
    finally:
        torch.set_rng_state(state)
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    by_bench = {line["bench"]: line for line in lines}
    assert set(by_bench) == {"train", "train_cnn"}
    cnn = by_bench["train_cnn"]
    for layout in ("contiguous", "channels_last"):
        assert cnn[f"{layout}_train_ms_per_img"] > 0 and cnn[f"{layout}_eval_ms_per_img"] > 0
    last = by_bench["train"]
    assert last["bench"] == "train" and last["n"] == 384
    assert last["epoch_s"] > 0 and last["dataloader_epoch_s"] > 0
    assert last["speedup"] == pytest.approx(last["dataloader_epoch_s"] / last["epoch_s"],
                                            rel=1e-2)


def test_pruning_penalty_off_trains_the_pruning_phase_on_the_data_loss_alone() -> None:
    data = synthetic()
    on = train(tiny(l2=1e-3, first_layer_l1=True), data, device="cpu", progress=False)
    off_config = tiny(l2=1e-3, first_layer_l1=True, pruning_penalty=False)
    off = train(off_config, data, device="cpu", progress=False)
    # the same training phase, then the penalty stops
    assert on.metrics["unpruned"] == off.metrics["unpruned"]
    assert all(r["penalty"] > 0 for r in on.metrics["pruned"])
    assert all(r["penalty"] == 0 for r in off.metrics["pruned"])
    default = model_key_payload(tiny(l2=1e-3), data)
    assert "pruning_penalty" not in default["config"]  # configs without it keep their keys
    assert model_key_payload(tiny(l2=1e-3, pruning_penalty=False), data)["config"] == {
        **default["config"], "pruning_penalty": False}
    # without a penalty the flag changes nothing: the same model and key
    assert tiny(pruning_penalty=False).resolved(data) == tiny().resolved(data)
    with pytest.raises(ValueError, match="pruning_penalty must be True or False"):
        TrainConfig("mnist", pruning_penalty=0)  # type: ignore[arg-type]
