"""The one seeding rule of the harness: seeds from names, and child streams from a seed.

Two operations, used everywhere a random step needs a seed:

``derive_seed(base, *names)``
    An integer seed for a named thing (a test, a model instance, a null distribution):
    ``(base + crc32(":".join(names))) mod 2**32``. Names are strings or integers; the same
    base and names give the same seed on every machine and in every process (crc32 is
    stable, unlike ``hash``).
``stream(seed, *key)``
    The ``numpy.random.SeedSequence`` of child ``key`` of ``seed``:
    ``SeedSequence(seed, spawn_key=key)``. ``stream(seed, i)`` equals
    ``SeedSequence(seed).spawn(n)[i]``, so sample ``i`` of a null distribution (or trial
    ``i`` of a lesion test) draws the same numbers whatever the number of workers and the
    order they run in, and the streams of one seed never overlap.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = [
    "SEED_MODULUS",
    "SeedLike",
    "check_seed",
    "child_streams",
    "derive_seed",
    "generator",
    "stream",
    "stream_seed",
]

SEED_MODULUS = 2**32
"""Every derived seed lies in ``[0, SEED_MODULUS)``, the range numpy and torch both accept."""

SeedLike = int | np.integer | np.random.SeedSequence | np.random.Generator | None
"""What a ``seed`` argument accepts where it goes to ``numpy.random.default_rng``."""


def check_seed(seed: object, *, name: str = "seed") -> int:
    """``seed`` as an int in ``[0, 2**32)``; ValueError naming ``name`` otherwise.

    The one rule for every seed a user gives (``--harness-seed``, ``--seed``, ``seed=``):
    a larger one would be reduced modulo 2**32 somewhere downstream and silently give
    another seed's results.

    >>> check_seed(7)
    7
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"{name} must be an integer in [0, 2**32), got {seed!r}")
    if not 0 <= int(seed) < SEED_MODULUS:
        raise ValueError(f"{name} must be an integer in [0, 2**32), got {int(seed)}")
    return int(seed)


def derive_seed(base: int, *names: str | int) -> int:
    """Seed of the thing called ``names`` under base seed ``base``.

    ``(base + crc32(":".join(map(str, names)))) mod 2**32``.

    >>> derive_seed(0, "model", "MNIST", 0) == derive_seed(0, "model", "MNIST", 0)
    True
    >>> 0 <= derive_seed(2**40, "x") < 2**32
    True
    """
    text = ":".join(str(n) for n in names)
    return (int(base) + zlib.crc32(text.encode("utf-8"))) % SEED_MODULUS


def stream(seed: int | np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """Child ``key`` of ``seed``: ``SeedSequence(seed, spawn_key=key)``.

    With a ``SeedSequence`` as ``seed`` the key extends its own spawn key (a grandchild).

    >>> a = stream(5, 3).generate_state(2)
    >>> b = np.random.SeedSequence(5).spawn(4)[3].generate_state(2)
    >>> bool((a == b).all())
    True
    """
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *map(int, key)))
    return np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key))


def child_streams(seed: int | np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """Streams ``0 .. n-1`` of ``seed`` (``SeedSequence(seed).spawn(n)``)."""
    return [stream(seed, i) for i in range(int(n))]


def generator(seed: int | np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A PCG64 generator on ``stream(seed, *key)``."""
    return np.random.default_rng(stream(seed, *key))


def stream_seed(seed: int | np.random.SeedSequence, *key: int) -> int:
    """A 32-bit integer seed drawn from ``stream(seed, *key)``, for APIs that take an int.

    torch generators and scikit-learn take integer seeds; this gives each independent stream
    of ``seed`` one, so that (for example) weight init, example order and dropout of one
    training run never share random numbers.
    """
    return int(stream(seed, *key).generate_state(1)[0])
