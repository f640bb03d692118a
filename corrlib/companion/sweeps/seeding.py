"""Seeding of a sweep: the run's root seed sequence and one generator per grid point.

A sweep is identified by its ``rng``: an int seed or a :class:`numpy.random.SeedSequence`
(``rng=7`` and ``rng=SeedSequence(7)`` are the same run). A :class:`numpy.random.Generator` or
``None`` would not identify the run reproducibly (the cache could never be reused), so they are
refused. Point ``p`` draws from ``SeedSequence(entropy=root.entropy, spawn_key=root.spawn_key +
w(p))`` with ``w(p)`` the eight big-endian 32-bit words of the SHA-256 of the canonical point:
neither ``fn``, the backend nor the other points of the grid enter.
"""

from __future__ import annotations

import hashlib
import numbers
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from .grid import canonical_point

__all__ = ["point_seed_sequence", "rng_identity", "run_seed_sequence"]


def run_seed_sequence(rng: Any) -> np.random.SeedSequence:
    """The root seed sequence of a sweep from its ``rng`` argument.

    Parameters
    ----------
    rng : int or numpy.random.SeedSequence
        An int ``>= 0`` means ``SeedSequence(rng)``; a SeedSequence is used as it is.

    Raises
    ------
    TypeError
        For a Generator, None or anything else: they cannot identify the run reproducibly.
    ValueError
        For a negative int.

    Examples
    --------
    >>> run_seed_sequence(7).entropy
    7
    """
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if int(rng) < 0:
            raise ValueError(f"rng must be an int >= 0 or a numpy.random.SeedSequence; got {rng!r}")
        return np.random.SeedSequence(int(rng))
    why = (
        "a Generator's state cannot identify the run (its numbers, and the cache, could not be "
        "reproduced)"
        if isinstance(rng, np.random.Generator)
        else "the sweep needs a seed that identifies the run"
    )
    raise TypeError(
        f"rng must be an int >= 0 or a numpy.random.SeedSequence; got {type(rng).__name__} "
        f"{rng!r}: {why}"
    )


def rng_identity(root: np.random.SeedSequence) -> dict[str, Any]:
    """JSON-able identity of a root seed sequence (part of every cache key).

    Examples
    --------
    >>> rng_identity(np.random.SeedSequence(7))
    {'entropy': 7, 'spawn_key': [], 'pool_size': 4}
    """
    entropy = root.entropy
    if isinstance(entropy, numbers.Integral):
        entropy = int(entropy)
    else:  # a sequence of ints
        entropy = [int(e) for e in entropy]
    return {
        "entropy": entropy,
        "spawn_key": [int(k) for k in root.spawn_key],
        "pool_size": int(root.pool_size),
    }


def point_seed_sequence(rng: Any, point: Mapping[str, Any]) -> np.random.SeedSequence:
    """The seed sequence of one grid point: depends only on the run's ``rng`` and the point.

    ``SeedSequence(entropy=root.entropy, spawn_key=root.spawn_key + w)`` with ``root =
    run_seed_sequence(rng)`` and ``w`` the eight big-endian 32-bit words of the SHA-256 of
    :func:`canonical_point`. For an int ``rng`` this is ``SeedSequence(entropy=rng,
    spawn_key=w)``, as with the ``seed=`` of earlier releases.

    Examples
    --------
    >>> point_seed_sequence(5, {"n": 64}).entropy
    5
    """
    root = run_seed_sequence(rng)
    digest = hashlib.sha256(canonical_point(point).encode("ascii")).digest()
    return np.random.SeedSequence(
        entropy=root.entropy,
        spawn_key=tuple(root.spawn_key) + struct.unpack(">8I", digest),
        pool_size=root.pool_size,
    )
