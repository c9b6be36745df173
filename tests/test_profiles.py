"""Profiles scale each model's own schedule and cap its data (harness.profiles, fixtures.models)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from fixtures import lesions
from fixtures.experiments import load
from fixtures.models import model_config
from harness.configs import TAGS, TrainConfig
from harness.profiles import MLP_SCHEDULE, PROFILES, Profile, get_profile

#: The only fields ``model_config`` sets; every other field must be the tag's own.
_PROFILE_FIELDS = {"epochs", "pruning_epochs", "n_train", "n_test", "seed"}


def _scaled(n: int, scale: float) -> int:
    """The rule restated in exact decimal arithmetic: nearest int, halves up, >= 1; 0 stays 0."""
    if n == 0:
        return 0
    exact = Decimal(n) * Decimal(str(scale))
    return max(1, int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def _capped(n: int | None, cap: int | None) -> int | None:
    if cap is None:
        return n
    return cap if n is None else min(n, cap)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
@pytest.mark.parametrize("tag", list(TAGS))
def test_model_config_scales_the_tags_own_schedule(tag: str, profile: Profile) -> None:
    own = TAGS[tag]
    config = model_config(tag, 1, profile, 7)
    if profile.name == "paper":
        assert (config.epochs, config.pruning_epochs) == (own.epochs, own.pruning_epochs)
        assert (config.n_train, config.n_test) == (own.n_train, own.n_test)
    conv = own.arch != "mlp"  # CNNs and VGGs have the profile's conv scale
    epoch_scale = profile.cnn_epoch_scale if conv else profile.epoch_scale
    pruning_scale = profile.cnn_pruning_scale if conv else profile.pruning_scale
    assert config.epochs == _scaled(own.epochs, epoch_scale)
    assert config.pruning_epochs == _scaled(own.pruning_epochs, pruning_scale)
    assert config.n_train == _capped(own.n_train, profile.cnn_n_train if conv else profile.n_train)
    assert config.n_test == _capped(own.n_test, profile.cnn_n_test if conv else profile.n_test)
    for name in set(TrainConfig.fields()) - _PROFILE_FIELDS:  # dataset, arch, regularisation...
        assert getattr(config, name) == getattr(own, name), name


@pytest.mark.parametrize(
    ("profile", "tag", "expected"),
    [
        ("paper", "MNIST", (20, 20, None)),
        ("paper", "MNIST-x10-EPOCHS", (200, 20, None)),
        ("paper", "CIFAR10+DROPOUT", (100, 40, None)),
        ("paper", "RANDOM-OVERFITTING", (100, 100, 3000)),
        ("paper", "CNN-VGG-CIFAR10", (200, 50, None)),
        ("quick", "MNIST", (6, 4, None)),
        ("quick", "MNIST-x1.5-EPOCHS", (9, 4, None)),
        ("quick", "MNIST-x10-EPOCHS", (60, 4, None)),
        ("quick", "CIFAR10", (6, 8, None)),
        ("quick", "MNIST-CIFAR10+DROPOUT", (9, 8, None)),
        ("quick", "RANDOM-OVERFITTING", (30, 20, 3000)),
        ("quick", "CNN-MNIST", (2, 2, 4000)),  # conv scale: 10+10 x 0.2, 4,000 images
        ("quick", "CNN-VGG-CIFAR10", (40, 10, 4000)),
        ("smoke", "MNIST", (1, 1, 4000)),
        ("smoke", "CNN-MNIST", (1, 1, 250)),
        ("smoke", "MNIST-CIFAR10", (2, 2, 4000)),  # 1.5 rounds up
        ("smoke", "RANDOM-OVERFITTING", (5, 5, 3000)),  # its own 3,000 is under the cap
    ],
    ids=lambda v: str(v) if not isinstance(v, tuple) else "-".join(map(str, v)),
)
def test_model_config_hand_values(profile: str, tag: str,
                                  expected: tuple[int, int, int | None]) -> None:
    config = model_config(tag, 0, get_profile(profile), 0)
    assert (config.epochs, config.pruning_epochs, config.n_train) == expected


def test_overrides_win_and_the_seed_is_per_instance() -> None:
    quick = get_profile("quick")
    config = model_config("MNIST-x10-EPOCHS", 0, quick, 0, epochs=3, snapshots=True)
    assert (config.epochs, config.pruning_epochs, config.snapshots) == (3, 4, True)
    seeds = {model_config("MNIST", i, quick, 0).seed for i in range(3)}
    assert len(seeds) == 3


def test_schedule_rule() -> None:
    profile = Profile("t", epoch_scale=0.5, pruning_scale=0.3, instances=1, n_nulls=1,
                      n_nulls_k=1, n_train=None, n_test=None, random_init_trials=1,
                      lesion_trials=1, double_lesion_trials=1, learning_curve_every=1,
                      assert_claims=False, description="")
    assert profile.schedule(5, 35) == (3, 11)  # 2.5 and 10.5 (10.4999... in binary) round up
    assert profile.schedule(1, 1) == (1, 1)  # never below one epoch
    assert profile.schedule(0, 0) == (0, 0)  # no pruning stays no pruning
    assert profile.schedule(20, 0) == (10, 0)


def test_profiles_describe_the_mlp_default() -> None:
    assert MLP_SCHEDULE == (20, 20)
    got = {name: (p.epochs, p.pruning_epochs) for name, p in PROFILES.items()}
    assert got == {"smoke": (1, 1), "ci": (3, 3), "quick": (6, 4), "paper": (20, 20)}
    assert PROFILES["paper"].epoch_scale == PROFILES["paper"].pruning_scale == 1.0
    row = PROFILES["quick"].to_row()
    assert (row["epochs"], row["pruning_epochs"], row["epoch_scale"]) == (6, 4, 0.3)
    assert all(type(v) in (str, int, float, bool, type(None)) for v in row.values())
    ci = PROFILES["ci"].to_row()
    assert all(type(v) in (str, int, float, bool, type(None), list) for v in ci.values())
    assert PROFILES["ci"].runs(tag="MNIST") and not PROFILES["ci"].runs(tag="POLY")
    assert not PROFILES["ci"].runs(study="lesion") and PROFILES["quick"].runs(study="lesion")


def test_subset_only_caps() -> None:
    smoke, paper = get_profile("smoke"), get_profile("paper")
    assert (smoke.subset(None), smoke.subset(3000), smoke.subset(10**6)) == (4000, 3000, 4000)
    assert (smoke.subset(None, "test"), paper.subset(None), paper.subset(5)) == (1000, None, 5)
    with pytest.raises(ValueError, match="split must be one of 'train', 'test'"):
        smoke.subset(10, "val")


class _StubModel:
    key = "stub"

    class config:  # noqa: N801 - the attribute a TrainedModel has
        dataset = "mnist"

    def weights(self, phase):
        import numpy as np

        return [np.zeros((4, 3)), np.zeros((3, 2))]

    def model(self, phase):
        return None


def test_paper_lesions_use_the_papers_trial_counts(monkeypatch) -> None:
    """The MLP lesion table: 20 random trials per sub-cluster (reference §6.7); the double
    lesion: 100 for its singles and 50 per pair (§6.6)."""
    paper = PROFILES["paper"]
    assert (paper.lesion_trials, paper.double_lesion_singles, paper.double_lesion_trials) == (20, 100, 50)
    for name in ("smoke", "quick", "ci"):  # elsewhere the singles keep the single lesion's count
        assert PROFILES[name].double_lesion_singles == PROFILES[name].lesion_trials
    calls: dict[str, dict] = {}
    double = load("test_double_lesion")
    monkeypatch.setattr(lesions, "single_lesion_test", lambda *a, **kw: calls.setdefault("single", kw))
    monkeypatch.setattr(double, "double_lesion_test", lambda *a, **kw: calls.setdefault("double", kw))
    monkeypatch.setattr(_StubModel.config, "arch", "mlp", raising=False)

    class _Labels:
        labels = None

    split = lambda model: (None, None)  # noqa: E731
    lesions.single_lesion(_StubModel(), None, split, paper, phase="pruned")
    double.double_lesion("joint", lambda tag, i: _StubModel(), lambda *a, **kw: _Labels(), split, paper)
    assert calls["single"]["n_trials"] == 20
    assert (calls["double"]["single_trials"], calls["double"]["n_trials"]) == (100, 50)
