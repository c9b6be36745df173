"""Training configurations: :class:`TrainConfig`, and the paper's model tags (reference §2.9).

A :class:`TrainConfig` is everything that determines a trained network, with the dataset's
content: :func:`harness.training.train` takes one and returns a :class:`harness.trained_model.TrainResult`,
and :func:`harness.training.get_or_train` keys the stored model by the resolved config and the
dataset's hash.

``config_for_tag("MNIST+DROPOUT")`` gives the :class:`TrainConfig` the original
``MODEL_TAG_LOOKUP`` / shell scripts used for that tag: dataset, architecture, epochs, pruning
epochs, batch size, dropout (0.5; 0.2 for the CIFAR-10 MLPs and the CIFAR mixes), L1/L2 rate
5e-5 (the VGG's L2 5e-4) and clusterable init with 10 modules for ``+MOD-INIT``.

Tags not covered: the ``+LUCID`` models (they were trained on a pixel-scrambled 3-channel
input, §1.4, that only served the feature-visualisation study; ``harness.feature_vis`` uses
the plain models). ``SMALL-MNIST+CLUSTERABILITY-GRADIENT`` trains with the clusterability
regulariser (§7.4, :mod:`harness.regulariser`) at the original's effective strength. The
seed is 0 for every tag; instances are ``config_for_tag(tag, seed=i)``.

Reproduced quirk (reference §2.2, §11 item 1): the original MLP put an **L1** penalty on its
first Dense layer whenever a regulariser was on, at the active rate, even in L2 runs. The
published ``+L2REG`` rows (Table B) come from those networks, so every MLP tag with ``L2REG``
(``MNIST+L2REG``, ``HALVES-MNIST+MOD-INIT+L2REG``, ``POLY+L2REG``, the ``+L2REG`` mixes, ...)
sets ``first_layer_l1=True``: L1 at the L2 rate on the first layer, L2 on the others. For the
``+L1REG`` tags the quirk changes nothing (L1 is on every layer already), and the CNNs and
the VGG never had it. The clean networks, L2 on every layer, are the harness's own tags
``MNIST+L2REG-ALL`` and ``FASHION+L2REG-ALL`` (no paper numbers).

Where §2.9 leaves epochs open they are inferred and marked below: the ``LINE-CIFAR10`` mixes
follow the other CIFAR-10 mixes (30 + 40 epochs, dropout 0.2), ``HALVES(-SAME)-CIFAR10`` use
the MLP defaults (20 + 20), ``CNN-CIFAR10-FULL`` trains 75 epochs as its training tag says,
then prunes for 10.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.models import ARCHS
from harness.options import check_choice

if TYPE_CHECKING:
    from harness.data import Dataset

__all__ = ["ENSEMBLE_ARCHS", "TAGS", "TRAINERS", "TrainConfig", "config_for_tag", "training_tag"]

#: The training algorithms of :attr:`TrainConfig.trainer`.
TRAINERS = ("single", "ensemble")
#: Architectures the ensemble trainer (:mod:`harness.ensemble`) vectorises.
ENSEMBLE_ARCHS = ("mlp", "cnn")


# ----------------------------------------------------------------------------------------------
# The config


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained network (with the dataset's content).

    Parameters
    ----------
    dataset : str
        A name from ``harness.data.DATASETS``.
    arch : {"mlp", "cnn", "vgg"}
    widths : tuple of int, optional
        MLP hidden widths, or the conv channels of a CNN/VGG. None: the architecture's default
        ((256,)*4, (64, 64, 64), the 13 VGG filters).
    dense_widths : tuple of int, optional
        CNN/VGG hidden dense widths; None: (128,) / (512, 512). Unused by MLPs.
    epochs, pruning_epochs : int
        Epochs of plain training, then of pruning (0 skips pruning: no "pruned" network).
    batch_size : int
    lr : float
        Adam learning rate (Keras default 1e-3).
    dropout : float
        MLP: rate after every hidden layer. CNN: dense rate; > 0 also adds ``conv_dropout``
        after each conv block. VGG: > 0 switches on the per-layer pattern of §2.4 with this
        as the dense rate.
    conv_dropout : float
        CNN conv-block dropout rate when ``dropout > 0``.
    l1, l2 : float
        Penalty rates: ``l1 * sum|w|`` and ``l2 * sum w**2`` over every kernel (not biases).
    first_layer_l1 : bool
        MLPs only: reproduce the original's quirk (§2.2, §11 item 1). The first Linear kernel
        gets ``rate * sum|w|`` with the active rate (``l2`` when > 0, else ``l1``) *instead
        of* its L1/L2 terms; the other kernels are unchanged. A no-op without L2 (L1 is on
        every kernel already), so :meth:`resolved` clears it there. Part of the store key only
        when True: configs without it keep their keys.
    pruning_penalty : bool
        Keep the L1/L2 penalty on in the pruning phase (default, as the original: tfmot's
        pruning wrapper keeps the layers' regularisers). False trains the pruning phase on the
        data loss alone, a variant for studying the L2 rows (``bench/paper_l2.sh``); without
        a penalty it changes nothing, so :meth:`resolved` sets it back to True there. Part of
        the store key only when False.
    cluster_lambda : float
        MLPs only: > 0 adds the clusterability regulariser of §7.4,
        ``cluster_lambda / cluster_eigs`` times the sum of eigenvalues 2..``cluster_eigs``+1
        of the weight graph's normalised Laplacian, to every batch's loss, with the
        function-preserving weight normalisation before every batch
        (:mod:`harness.regulariser`). Part of the store key only when > 0.
    cluster_eigs : int
        How many eigenvalues the regulariser sums (the paper's ``num_cluster_eigs``, 3).
        Without the regulariser :meth:`resolved` sets it back to 3, so it never changes a key.
    init_modules : int
        > 0: clusterable init with this many modules (§2.7).
    seed : int
        Seeds init, example order and dropout (independent streams, see ``harness.seeding.stream_seed``).
    n_train, n_test : int, optional
        Use only the first n examples of each split.
    data_seed : int
        Seed passed to ``harness.data.load_dataset``.
    initial_sparsity, final_sparsity : float
        Pruning schedule end points, 0 <= initial <= final < 1.
    pruning_frequency : int
        Masks are updated every this many steps.
    shuffle : bool
        Reshuffle the training examples every epoch (False keeps the dataset order).
    augment : bool
        Random rotations (+-15 deg), shifts (+-10%) and horizontal flips of image batches, as
        the VGG's Keras ``ImageDataGenerator`` (§2.5).
    snapshots : bool
        Keep the weights after every epoch (learning curves).
    input_shape : tuple of int, optional
        Per-example input shape; filled in by :meth:`resolved`.
    n_out : int, optional
        Number of outputs; filled in by :meth:`resolved`.
    trainer : {"single", "ensemble"}
        The training algorithm. ``"single"``: :func:`harness.training.train`, one network.
        ``"ensemble"``: :mod:`harness.ensemble`, the network as one member of a vectorised
        ensemble (MLP and small CNN, no augmentation): the same schedule, but its own dropout
        random stream and batched kernels, so another realisation of the same training run.
        A member's weights do not depend on the other members of its ensemble. Part of the
        store key only when ``"ensemble"``: the single trainer's keys are unchanged.
    """

    dataset: str
    arch: str = "mlp"
    widths: tuple[int, ...] | None = None
    dense_widths: tuple[int, ...] | None = None
    epochs: int = 20
    pruning_epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    dropout: float = 0.0
    conv_dropout: float = 0.25
    l1: float = 0.0
    l2: float = 0.0
    first_layer_l1: bool = False
    pruning_penalty: bool = True
    cluster_lambda: float = 0.0
    cluster_eigs: int = 3
    init_modules: int = 0
    seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    data_seed: int = 42
    initial_sparsity: float = 0.5
    final_sparsity: float = 0.9
    pruning_frequency: int = 10
    shuffle: bool = True
    augment: bool = False
    snapshots: bool = False
    input_shape: tuple[int, ...] | None = None
    n_out: int | None = None
    trainer: str = "single"

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a dataset name, got {self.dataset!r}")
        check_choice("arch", self.arch, ARCHS)
        for name in ("widths", "dense_widths", "input_shape"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise ValueError(f"{name} must be a sequence of positive ints, got {value!r}")
                value = tuple(_int(name, v) for v in value)
                if any(v <= 0 for v in value) or (name != "dense_widths" and not value):
                    raise ValueError(f"{name} must hold positive ints, got {value}")
                object.__setattr__(self, name, value)
        for name, low in (("epochs", 0), ("pruning_epochs", 0), ("batch_size", 1),
                          ("init_modules", 0), ("seed", 0), ("data_seed", 0),
                          ("pruning_frequency", 1), ("cluster_eigs", 1)):
            value = _int(name, getattr(self, name))
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
            object.__setattr__(self, name, value)
        for name in ("n_train", "n_test", "n_out"):
            value = getattr(self, name)
            if value is not None:
                value = _int(name, value)
                if value < 1:
                    raise ValueError(f"{name} must be a positive int or None, got {value}")
                object.__setattr__(self, name, value)
        for name in ("lr", "dropout", "conv_dropout", "l1", "l2", "initial_sparsity",
                     "final_sparsity", "cluster_lambda"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
            object.__setattr__(self, name, value)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("dropout", "conv_dropout"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.initial_sparsity <= self.final_sparsity < 1:
            raise ValueError(
                "need 0 <= initial_sparsity <= final_sparsity < 1, got "
                f"{self.initial_sparsity} and {self.final_sparsity}"
            )
        for name in ("shuffle", "augment", "snapshots", "first_layer_l1", "pruning_penalty"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        check_choice("trainer", self.trainer, TRAINERS)
        if self.trainer == "ensemble" and (self.arch not in ENSEMBLE_ARCHS or self.augment):
            raise ValueError(
                "trainer='ensemble' trains MLPs and small CNNs without augmentation; "
                f"got arch={self.arch!r}, augment={self.augment}: use trainer='single'"
            )
        if self.first_layer_l1 and self.arch != "mlp":
            raise ValueError(
                "first_layer_l1 reproduces a quirk of the original MLPs (reference §2.2); "
                f"its {self.arch} networks regularise every layer alike, so arch must be 'mlp'"
            )
        if self.cluster_lambda > 0 and self.arch != "mlp":
            raise ValueError(
                "cluster_lambda (the clusterability regulariser, reference §7.4) is defined "
                f"for MLPs; arch is {self.arch!r}"
            )

    # -- conversions ----------------------------------------------------------------------

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """Names of all fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """Builtin-typed dict (tuples as lists), the inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {}
        for name in self.fields():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict such as :meth:`to_dict` wrote; unknown fields are an error."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a TrainConfig needs a JSON object / dict, got {type(data).__name__}")
        _check_fields(data)
        if "dataset" not in data:
            raise ValueError("a TrainConfig needs at least a 'dataset' field")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (unknown fields are an error)."""
        _check_fields(changes)
        return dataclasses.replace(self, **changes)

    def resolved(self, dataset: Dataset) -> TrainConfig:
        """This config with the architecture defaults, input shape and output size filled in.

        Two configs that differ only in spelling out the defaults resolve to the same config
        and therefore share a store key.
        """
        from harness.data import input_shape

        if dataset.name != self.dataset:
            raise ValueError(
                f"config is for dataset {self.dataset!r} but got dataset {dataset.name!r}"
            )
        shape = tuple(int(s) for s in input_shape(dataset))
        if self.arch == "mlp":
            shape = (math.prod(shape),)
            widths = self.widths or (256, 256, 256, 256)
            dense: tuple[int, ...] | None = None
        else:
            if len(shape) != 3:
                raise ValueError(
                    f"arch {self.arch!r} needs image inputs but {dataset.name} examples have "
                    f"shape {shape}; use arch='mlp'"
                )
            from harness.models import VGG_FILTERS

            default = (64, 64, 64) if self.arch == "cnn" else VGG_FILTERS
            widths = self.widths or default
            dense = self.dense_widths if self.dense_widths is not None else (
                (128,) if self.arch == "cnn" else (512, 512))
        if dataset.task == "regression":
            n_out = int(dataset.y_train.shape[1]) if dataset.y_train.ndim == 2 else 1
        else:
            n_out = int(dataset.n_classes)
        if self.input_shape is not None and self.input_shape != shape:
            raise ValueError(f"config input_shape {self.input_shape} != dataset's {shape}")
        if self.n_out is not None and self.n_out != n_out:
            raise ValueError(f"config n_out {self.n_out} != dataset's {n_out}")
        for name, limit in (("n_train", dataset.n_train), ("n_test", dataset.n_test)):
            value = getattr(self, name)
            if value is not None and value > limit:
                raise ValueError(f"{name}={value} exceeds the {limit} examples of {dataset.name}")
        return dataclasses.replace(
            self, widths=widths, dense_widths=dense, input_shape=shape, n_out=n_out,
            first_layer_l1=self.first_layer_l1 and self.l2 > 0,
            pruning_penalty=self.pruning_penalty or (self.l1 == 0 and self.l2 == 0),
            cluster_eigs=self.cluster_eigs if self.cluster_lambda > 0 else _DEFAULT_EIGS,
        )

    def __repr__(self) -> str:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name in self.fields()
            if name != "dataset" and getattr(self, name) != defaults[name]
        ]
        return f"TrainConfig({self.dataset!r}{''.join(', ' + c for c in changed)})"


_DEFAULT_EIGS = 3  # TrainConfig.cluster_eigs' default, the paper's num_cluster_eigs


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_fields(data: Mapping[str, Any]) -> None:
    valid = TrainConfig.fields()
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown TrainConfig field(s) {', '.join(map(repr, unknown))}; "
            f"valid fields: {', '.join(valid)}"
        )


# ----------------------------------------------------------------------------------------------
# The paper's tags

_REG_RATE = 5e-5
_VGG_L2_RATE = 5e-4
_MOD_INIT = 10

_MLP_SUFFIXES = (
    "", "+DROPOUT", "+L1REG", "+L2REG",
    "+MOD-INIT", "+MOD-INIT+DROPOUT", "+MOD-INIT+L1REG", "+MOD-INIT+L2REG",
)
_MIX_SUFFIXES = ("", "+DROPOUT", "+L1REG", "+L2REG")


def _with_suffix(base: TrainConfig, suffix: str, *, dropout: float = 0.5,
                 l1: float = _REG_RATE, l2: float = _REG_RATE) -> TrainConfig:
    changes: dict[str, Any] = {}
    for flag in filter(None, suffix.split("+")):
        if flag == "DROPOUT":
            changes["dropout"] = dropout
        elif flag == "L1REG":
            changes["l1"] = l1
        elif flag == "L2REG":
            changes["l2"] = l2
            # The original MLP's first Dense layer got L1 instead (module docstring).
            changes["first_layer_l1"] = base.arch == "mlp"
        elif flag == "MOD-INIT":
            changes["init_modules"] = _MOD_INIT
        else:  # pragma: no cover - the tables below only use the flags above
            raise AssertionError(flag)
    return base.replace(**changes)


def _build() -> dict[str, TrainConfig]:
    tags: dict[str, TrainConfig] = {}

    def add(tag: str, config: TrainConfig) -> None:
        assert tag not in tags, tag
        tags[tag] = config

    # MLPs on the base datasets and their halves (mlp_config: 20 + 20 epochs, batch 128).
    mlp_bases = {
        "MNIST": "mnist", "FASHION": "fashion", "CIFAR10": "cifar10",
        "HALVES-MNIST": "halves_mnist", "HALVES-FASHION": "halves_fashion",
        "HALVES-CIFAR10": "halves_cifar10",  # epochs inferred
        "HALVES-SAME-MNIST": "halves_same_mnist", "HALVES-SAME-FASHION": "halves_same_fashion",
        "HALVES-SAME-CIFAR10": "halves_same_cifar10",  # epochs inferred
    }
    for tag, dataset in mlp_bases.items():
        for suffix in _MLP_SUFFIXES:
            base = TrainConfig(dataset, arch="mlp")
            rate = 0.5
            if tag == "CIFAR10":
                base = base.replace(pruning_epochs=40)
                if "DROPOUT" in suffix:
                    base, rate = base.replace(epochs=100), 0.2
            if tag == "HALVES-CIFAR10" and suffix in ("+MOD-INIT+L1REG", "+MOD-INIT+L2REG"):
                base = base.replace(epochs=40)  # the two exceptions of §2.9
            add(tag + suffix, _with_suffix(base, suffix, dropout=rate))
    # Not the paper's: its L2 networks without the first-layer L1 quirk (L2 on every layer).
    for tag in ("MNIST", "FASHION"):
        add(f"{tag}+L2REG-ALL", tags[f"{tag}+L2REG"].replace(first_layer_l1=False))

    add("SMALL-MNIST", TrainConfig("small_mnist", widths=(64, 64, 64), epochs=10,
                                   pruning_epochs=10))
    # small_mlp_cluster_config: lambda 0.1 in the original's half-gradient units (§7.4).
    from harness.regulariser import ORIGINAL_EFFECTIVE_STRENGTH, PAPER_EIGS

    add("SMALL-MNIST+CLUSTERABILITY-GRADIENT", tags["SMALL-MNIST"].replace(
        cluster_lambda=ORIGINAL_EFFECTIVE_STRENGTH, cluster_eigs=PAPER_EIGS))
    for suffix in ("", "+L1REG", "+L2REG"):
        add("POLY" + suffix, _with_suffix(TrainConfig("poly"), suffix))

    # Mixed datasets.
    for first in ("MNIST", "FASHION"):
        for sep in ("", "-SEPARATED"):
            dataset = f"{first.lower()}-cifar10{sep.lower()}"
            for suffix in _MIX_SUFFIXES:
                base = TrainConfig(dataset, epochs=30, pruning_epochs=40)
                add(f"{first}-CIFAR10{sep}{suffix}", _with_suffix(base, suffix, dropout=0.2))
    for sep in ("", "-SEPARATED"):
        for suffix in _MIX_SUFFIXES:
            add(f"MNIST-FASHION{sep}{suffix}",
                _with_suffix(TrainConfig(f"mnist-fashion{sep.lower()}"), suffix))
    for tag, dataset in (("LINE", "line"), ("LINE-MNIST", "line-mnist"),
                         ("LINE-MNIST-SEPARATED", "line-mnist-separated")):
        for suffix in ("", "+DROPOUT"):
            add(tag + suffix, _with_suffix(TrainConfig(dataset), suffix))
    for tag, dataset in (("LINE-CIFAR10", "line-cifar10"),
                         ("LINE-CIFAR10-SEPARATED", "line-cifar10-separated")):
        for suffix in ("", "+DROPOUT"):  # epochs inferred from the other CIFAR mixes
            base = TrainConfig(dataset, epochs=30, pruning_epochs=40)
            add(tag + suffix, _with_suffix(base, suffix, dropout=0.2))

    # Random labels and longer training.
    for suffix in ("", "+DROPOUT"):
        add("RANDOM" + suffix, _with_suffix(TrainConfig("random"), suffix))
    for factor, epochs in (("1.5", 30), ("2", 40), ("10", 200)):
        for suffix in ("", "+DROPOUT"):
            add(f"MNIST-x{factor}-EPOCHS{suffix}",
                _with_suffix(TrainConfig("mnist", epochs=epochs), suffix))
    for suffix in ("", "+DROPOUT"):
        add("RANDOM-x50-EPOCHS" + suffix,
            _with_suffix(TrainConfig("random", epochs=1000), suffix))
        add("RANDOM-OVERFITTING" + suffix, _with_suffix(
            TrainConfig("random", epochs=100, pruning_epochs=100, shuffle=False, n_train=3000),
            suffix))

    # Small CNNs (cnn_config: 10 + 10 epochs, batch 64, conv dropout 0.25 / dense 0.5).
    cnn_bases = {"MNIST": "mnist", "FASHION": "fashion", "CIFAR10": "cifar10"}
    for prefix, dataset_prefix in (("CNN-", ""), ("CNN-STACKED-", "stacked_"),
                                   ("CNN-STACKED-SAME-", "stacked_same_")):
        for name, dataset in cnn_bases.items():
            for suffix in _MLP_SUFFIXES:
                base = TrainConfig(dataset_prefix + dataset, arch="cnn", epochs=10,
                                   pruning_epochs=10, batch_size=64)
                add(prefix + name + suffix, _with_suffix(base, suffix))
    for suffix in ("", "+DROPOUT"):
        base = TrainConfig("line", arch="cnn", epochs=10, pruning_epochs=10, batch_size=64)
        add("CNN-LINE" + suffix, _with_suffix(base, suffix))
    for suffix in _MLP_SUFFIXES:  # legacy model; pruning epochs inferred
        base = TrainConfig("cifar10_full", arch="cnn", epochs=75, pruning_epochs=10,
                           batch_size=64)
        add("CNN-CIFAR10-FULL" + suffix, _with_suffix(base, suffix))

    # CIFAR-10 VGG (cnn_vgg_config: 200 + 50 epochs, augmentation, L2 rate 5e-4).
    for suffix in ("", "+L1REG", "+L2REG", "+DROPOUT", "+DROPOUT+L2REG", "+MOD-INIT"):
        base = TrainConfig("cifar10_full", arch="vgg", epochs=200, pruning_epochs=50,
                           augment=True)
        add("CNN-VGG-CIFAR10" + suffix, _with_suffix(base, suffix, l2=_VGG_L2_RATE))
    return tags


#: Every known tag and its config, in the order of §2.9 (read-only).
TAGS: Mapping[str, TrainConfig] = MappingProxyType(_build())
_BY_UPPER = {tag.upper(): tag for tag in TAGS}


def config_for_tag(tag: str, **overrides: Any) -> TrainConfig:
    """The config of a paper model tag, with ``overrides`` applied (e.g. ``seed=3``).

    Tags are matched case-insensitively. Unknown tags raise a ValueError naming the closest
    known ones; the full list is :data:`TAGS` (``python -m harness train --list-tags``).
    """
    if not isinstance(tag, str):
        raise ValueError(f"a model tag is a string such as 'MNIST+DROPOUT', got {tag!r}")
    canonical = _BY_UPPER.get(tag.strip().upper())
    if canonical is None:
        close = difflib.get_close_matches(tag.strip().upper(), list(_BY_UPPER), n=5, cutoff=0.6)
        hint = (f"did you mean {', '.join(repr(_BY_UPPER[c]) for c in close)}? "
                if close else "")
        raise ValueError(
            f"unknown model tag {tag!r}; {hint}all {len(TAGS)} tags are in harness.configs.TAGS "
            "(or run `python -m harness train --list-tags`)"
        )
    config = TAGS[canonical]
    return config.replace(**overrides) if overrides else config


def training_tag(config: TrainConfig) -> str:
    """The original code's training-tag name for a config (§2.9), e.g.
    ``mnist_mlp_20epochs_dropout``; useful to match runs with the paper's tables."""
    if config.arch == "mlp":
        network = "mlp_regression" if config.dataset == "poly" else "mlp"
    else:
        network = "cnn" if config.arch == "cnn" else "cnn_vgg"
    tag = f"{config.dataset}_{network}_{config.epochs}epochs"
    if config.init_modules:
        tag += "_mod_init"
    if config.dropout:
        tag += "_dropout"
    if config.l1:
        tag += "_l1reg"
    if config.l2:
        tag += "_l2reg"
    if config.cluster_lambda:
        tag += "_cluster_gradient"
    return tag
