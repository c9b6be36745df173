"""Profiles: one switch that scales every experiment (data, training, instances, nulls).

=========  =====================================  ==============================================
profile    purpose                                what it runs
=========  =====================================  ==============================================
smoke      tests and CI plumbing                  the first 4,000 training examples, each tag's
                                                  schedule x 0.05 (the MLP's 20+20 -> 1+1),
                                                  1 instance, 4 null samples; claims recorded,
                                                  not asserted
ci         claims asserted on every CI run        5 MLPs on 12,000 examples, 3+3 epochs,
                                                  1 instance, 30 nulls; only the claims of
                                                  ``harness.claims.CI_CLAIMS``
quick      default main job on a 2-core machine   full data, each tag's schedule x 0.3 / x 0.2
                                                  (20+20 -> 6+4), 2 instances, 50 null
                                                  samples; claims asserted
paper      the paper's settings                   each tag's own schedule (x 1.0), 5 instances,
                                                  50 nulls (320 for the different-K study),
                                                  100 random inits, 20 random lesion trials
                                                  (100 for the double lesion's singles)
=========  =====================================  ==============================================

A profile never replaces a model's training schedule or data; it scales them
(:meth:`Profile.schedule`, :meth:`Profile.subset`), so ``MNIST-x10-EPOCHS`` still trains ten
times longer than ``MNIST`` and ``RANDOM-OVERFITTING`` keeps its 3,000 examples at every profile.

Convolutional networks have their own scale (``cnn_*`` fields): a small-CNN epoch on 60,000
images costs about 3 minutes on 2 cores. smoke trains them on 250 images for 1+1 epochs;
quick on the first 4,000 training images for 2+2 epochs (the CNN's 10+10 x 0.2), one
instance, and lesions them on 500 test images with 10 random trials; paper at the paper's
10+10 epochs on all data, 5 instances, 20 lesion trials.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from harness.claims.statuses import CI_CLAIMS
from harness.options import check_choice

__all__ = ["MLP_SCHEDULE", "Profile", "PROFILES", "get_profile"]

#: The paper's default MLP schedule, ``mlp_config`` (reference §2.1): 20 epochs of training,
#: then 20 of pruning. Profiles are described as a fraction of it.
MLP_SCHEDULE = (20, 20)


def _scaled(epochs: int, scale: float) -> int:
    """``max(1, round(epochs * scale))`` with halves rounded up; 0 stays 0."""
    if epochs == 0:
        return 0
    # The 1e-9 absorbs float error in the product (0.3 * 35 = 10.499999999999998), so
    # halves round up as written rather than by the accident of the binary fraction.
    return max(1, math.floor(epochs * scale + 0.5 + 1e-9))


@dataclass(frozen=True)
class Profile:
    """Everything a profile scales. Experiments read these; nothing else hard-codes sizes.

    Attributes
    ----------
    epoch_scale, pruning_scale : float
        Fractions of each model's own epochs and pruning epochs that this profile trains
        (1.0: the tag's schedule exactly); see :meth:`schedule`.
    n_train, n_test : int or None
        Caps on the training / test subset (the first n examples); None: no cap. A model's
        own subset (``RANDOM-OVERFITTING``'s 3,000) is never enlarged; see :meth:`subset`.
    """

    name: str
    epoch_scale: float
    pruning_scale: float
    instances: int
    n_nulls: int
    n_nulls_k: int  # null samples for the different-K study (paper: 320)
    n_train: int | None  # cap on the training subset (first n examples); None = no cap
    n_test: int | None  # cap on the test subset; None = no cap
    random_init_trials: int
    lesion_trials: int  # random trials per sub-cluster of the single lesion test
    double_lesion_trials: int  # random trials per pair of the double lesion test
    learning_curve_every: int  # cluster every n-th epoch snapshot
    assert_claims: bool
    description: str
    tags: tuple[str, ...] | None = None  # only these model tags run (None: every tag)
    studies: tuple[str, ...] | None = None  # only these experiment modules run (None: all)
    claims: tuple[str, ...] | None = None  # only these registry claims run (None: all)
    # Convolutional networks (small CNN, VGG) have their own scale: one epoch of the small CNN
    # on 60,000 images costs about 3 minutes on 2 cores (an MLP epoch: 5 seconds).
    cnn_epoch_scale: float = 1.0
    cnn_pruning_scale: float = 1.0
    cnn_n_train: int | None = None
    cnn_n_test: int | None = None
    cnn_instances: int = 5
    cnn_lesion_trials: int = 20
    # Random-init draws of the VGG (a 4,224-node clustering costs seconds); None: as
    # random_init_trials.
    random_init_trials_vgg: int | None = None
    # Random trials of the single lesions inside the double lesion test; None: as
    # lesion_trials. The paper ran its MLP lesion table with 20 and the double lesion's
    # singles with 100 (reference §6.6-§6.7).
    double_lesion_single_trials: int | None = None

    @property
    def double_lesion_singles(self) -> int:
        """Random trials of the double lesion test's single lesions."""
        if self.double_lesion_single_trials is None:
            return self.lesion_trials
        return self.double_lesion_single_trials

    def is_conv(self, arch: str) -> bool:
        """Whether ``arch`` trains on this profile's convolutional scale (CNN and VGG)."""
        return str(arch) != "mlp"

    def instances_for(self, arch: str = "mlp") -> int:
        """Trained instances per model tag of architecture ``arch``."""
        return self.cnn_instances if self.is_conv(arch) else self.instances

    def runs(self, *, study: str | None = None, tag: str | None = None, claim: str | None = None) -> bool:
        """Whether a test of this study / model tag / claim runs at this profile."""
        if study is not None and self.studies is not None and study not in self.studies:
            return False
        if tag is not None and self.tags is not None and tag not in self.tags:
            return False
        return claim is None or self.claims is None or claim in self.claims

    def schedule(self, epochs: int, pruning_epochs: int, arch: str = "mlp") -> tuple[int, int]:
        """A model's ``(epochs, pruning_epochs)`` at this profile.

        Each is ``max(1, round(n * scale))`` (halves rounded up) with ``epoch_scale`` /
        ``pruning_scale``; a phase of 0 epochs stays 0 (no pruning stays no pruning). At
        scale 1.0 this is the model's own schedule.

        >>> PROFILES["quick"].schedule(20, 20), PROFILES["quick"].schedule(200, 20)
        ((6, 4), (60, 4))
        >>> PROFILES["smoke"].schedule(10, 0), PROFILES["paper"].schedule(30, 40)
        ((1, 0), (30, 40))
        >>> PROFILES["quick"].schedule(10, 10, arch="cnn")
        (2, 2)
        """
        if self.is_conv(arch):
            return _scaled(epochs, self.cnn_epoch_scale), _scaled(pruning_epochs, self.cnn_pruning_scale)
        return _scaled(epochs, self.epoch_scale), _scaled(pruning_epochs, self.pruning_scale)

    def subset(self, n: int | None, split: str = "train", arch: str = "mlp") -> int | None:
        """A model's subset size of ``split`` ("train" or "test") under this profile's cap.

        ``min(n, cap)``, where ``n = None`` is the full split and ``cap = None`` no cap; so
        the profile can only shrink a model's data, never replace its own subset.

        >>> PROFILES["smoke"].subset(None), PROFILES["smoke"].subset(3000)
        (4000, 3000)
        >>> PROFILES["paper"].subset(3000), PROFILES["paper"].subset(None, "test")
        (3000, None)
        """
        check_choice("split", split, ("train", "test"))
        if self.is_conv(arch):
            cap = self.cnn_n_train if split == "train" else self.cnn_n_test
        else:
            cap = self.n_train if split == "train" else self.n_test
        if cap is None:
            return n
        return cap if n is None else min(n, cap)

    @property
    def epochs(self) -> int:
        """Epochs of the paper's default MLP (20) at this profile: ``schedule(20, 20)[0]``."""
        return self.schedule(*MLP_SCHEDULE)[0]

    @property
    def pruning_epochs(self) -> int:
        """Pruning epochs of the default MLP (20) at this profile."""
        return self.schedule(*MLP_SCHEDULE)[1]

    def to_row(self) -> dict[str, object]:
        row = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {**row, "epochs": self.epochs, "pruning_epochs": self.pruning_epochs}


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        epoch_scale=0.05,
        pruning_scale=0.05,
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
        description="plumbing only: small real subsets, 1+1 epochs (schedules x 0.05), "
        "4 nulls; claims recorded",
        cnn_epoch_scale=0.1,
        cnn_pruning_scale=0.1,
        cnn_n_train=250,
        cnn_n_test=200,
        cnn_instances=1,
        cnn_lesion_trials=2,
    ),
    "quick": Profile(
        name="quick",
        epoch_scale=0.3,
        pruning_scale=0.2,
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
        description="full data, 6+4 epochs (schedules x 0.3 / x 0.2), 2 instances, 50 nulls; "
        "CNNs: the first 4,000 training images, 2+2 epochs (x 0.2), 1 instance, lesions on "
        "500 test images with 10 random trials; claims asserted",
        cnn_epoch_scale=0.2,
        cnn_pruning_scale=0.2,
        cnn_n_train=4000,
        cnn_n_test=500,
        cnn_instances=1,
        cnn_lesion_trials=10,
        random_init_trials_vgg=6,
    ),
    "ci": Profile(
        name="ci",
        epoch_scale=0.15,
        pruning_scale=0.15,
        instances=1,
        n_nulls=30,
        n_nulls_k=30,
        n_train=12000,
        n_test=2000,
        random_init_trials=20,
        lesion_trials=20,
        double_lesion_trials=4,
        learning_curve_every=1,
        assert_claims=True,
        description="claims asserted in CI on a 2-core runner: 5 MLPs on the first 12,000 "
        "examples, 3+3 epochs, 1 instance, 30 nulls; the claims of harness.claims.CI_CLAIMS",
        tags=("MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT", "HALVES-MNIST"),
        cnn_instances=1,
        studies=("clustering", "null_models", "random_init"),
        claims=tuple(CI_CLAIMS),
        random_init_trials_vgg=2,
    ),
    "paper": Profile(
        name="paper",
        epoch_scale=1.0,
        pruning_scale=1.0,
        instances=5,
        n_nulls=50,
        n_nulls_k=320,
        n_train=None,
        n_test=None,
        random_init_trials=100,
        lesion_trials=20,  # the paper's MLP lesion table (reference §6.7)
        double_lesion_trials=50,
        double_lesion_single_trials=100,  # the double lesion's singles (reference §6.6)
        learning_curve_every=5,
        assert_claims=True,
        description="the paper's settings: each model's own schedule (MLP 20+20, CNN 10+10), "
        "5 instances, 50/320 nulls, CNN lesions with 20 random trials on the full test set",
        cnn_lesion_trials=20,
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
