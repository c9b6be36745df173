"""Profiles: one switch that scales every experiment (data, training, instances, nulls).

=========  =====================================  ==============================================
profile    purpose                                what it runs
=========  =====================================  ==============================================
smoke      tests and CI plumbing                  small real subsets, 1+1 epochs, 1 instance,
                                                  4 null samples; claims recorded, not asserted
quick      default main job on a 2-core machine   full data, reduced epochs, 2 instances,
                                                  50 null samples; claims asserted
paper      the paper's settings                   20+20 epochs, 5 instances, 50 nulls (320 for
                                                  the different-K study), 100 random inits
=========  =====================================  ==============================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Everything a profile scales. Experiments read these; nothing else hard-codes sizes."""

    name: str
    epochs: int
    pruning_epochs: int
    instances: int
    n_nulls: int
    n_nulls_k: int  # null samples for the different-K study (paper: 320)
    n_train: int | None  # training subset (first n examples); None = full
    n_test: int | None
    random_init_trials: int
    lesion_trials: int
    double_lesion_trials: int
    learning_curve_every: int  # cluster every n-th epoch snapshot
    assert_claims: bool
    description: str

    def to_row(self) -> dict[str, object]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        epochs=1,
        pruning_epochs=1,
        instances=1,
        n_nulls=4,
        n_nulls_k=4,
        n_train=4000,
        n_test=1000,
        random_init_trials=2,
        lesion_trials=4,
        double_lesion_trials=2,
        learning_curve_every=1,
        assert_claims=False,
        description="plumbing only: small real subsets, 1+1 epochs, 4 nulls; claims recorded",
    ),
    "quick": Profile(
        name="quick",
        epochs=6,
        pruning_epochs=4,
        instances=2,
        n_nulls=50,
        n_nulls_k=50,
        n_train=None,
        n_test=None,
        random_init_trials=20,
        lesion_trials=20,
        double_lesion_trials=10,
        learning_curve_every=1,
        assert_claims=True,
        description="full data, 6+4 epochs, 2 instances, 50 nulls; claims asserted",
    ),
    "paper": Profile(
        name="paper",
        epochs=20,
        pruning_epochs=20,
        instances=5,
        n_nulls=50,
        n_nulls_k=320,
        n_train=None,
        n_test=None,
        random_init_trials=100,
        lesion_trials=20,
        double_lesion_trials=50,
        learning_curve_every=5,
        assert_claims=True,
        description="the paper's settings: 20+20 epochs, 5 instances, 50/320 nulls",
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ValueError listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {sorted(PROFILES)} (--profile NAME)"
        ) from None
