"""The sweep cache: one file per finished point, written atomically, verified when read.

File ``<key>.sweep``::

    corrlib-sweep-cache\\n
    {JSON header: format, key, point, fn, rng, corrlib_version, corrlib_source,
     payload_sha256, payload_bytes}\\n
    <pickle of {"frame", "n_samples", "runtime"}>

The key is the SHA-256 of the cache format, the canonical point, the function's identity, the
run's seed identity and the hash of the corrlib source (:func:`corrlib._util.source_hash`), so
a changed library, function or seed never reads an old entry. An entry whose header, length or
checksum does not match is reported (:class:`SweepCacheWarning`) and recomputed, never read.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import atomic_write_bytes
from .grid import canonical_point

__all__ = [
    "CACHE_FORMAT",
    "CACHE_SUFFIX",
    "Entry",
    "SweepCacheWarning",
    "cache_key",
    "cache_path",
    "read_entry",
    "write_entry",
]

_CACHE_MAGIC = b"corrlib-sweep-cache\n"
CACHE_FORMAT = 2  # 2: the key holds the corrlib source hash and the rng identity
CACHE_SUFFIX = ".sweep"


class SweepCacheWarning(UserWarning):
    """A cache entry was unreadable, truncated or did not match its key; it is recomputed."""


@dataclass
class Entry:
    """A finished point: its tidy frame, sample count (NaN if none) and compute seconds."""

    frame: pd.DataFrame
    n_samples: float
    runtime: float


def cache_key(point: Mapping[str, Any], fn_id: str, rng_id: Mapping[str, Any], source: str) -> str:
    """SHA-256 (hex) of everything that determines a point's numbers.

    Parameters
    ----------
    point : the grid point.
    fn_id : :func:`corrlib.companion.sweeps.identity.fn_identity` of the function.
    rng_id : :func:`corrlib.companion.sweeps.seeding.rng_identity` of the run's seed.
    source : :func:`corrlib._util.source_hash` of the corrlib that computes the point.

    Examples
    --------
    >>> k = cache_key({"n": 1}, "m:f|version:1", {"entropy": 7, "spawn_key": []}, "abc")
    >>> len(k), k == cache_key({"n": 1}, "m:f|version:1", {"entropy": 7, "spawn_key": []}, "abd")
    (64, False)
    """
    material = json.dumps(
        {
            "format": CACHE_FORMAT,
            "point": canonical_point(point),
            "fn": fn_id,
            "rng": dict(rng_id),
            "corrlib_source": source,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("ascii")).hexdigest()


def cache_path(cache: Path, key: str) -> Path:
    """The file of ``key`` in the cache folder."""
    return cache / f"{key}{CACHE_SUFFIX}"


def write_entry(path: Path, key: str, header_info: Mapping[str, Any], entry: Entry) -> None:
    """Write one entry atomically (``header_info`` goes into the JSON header, for readers)."""
    payload = pickle.dumps(
        {"frame": entry.frame, "n_samples": entry.n_samples, "runtime": entry.runtime},
        protocol=4,
    )
    header = dict(header_info)
    header.update(
        format=CACHE_FORMAT,
        key=key,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_bytes=len(payload),
    )
    head = json.dumps(header, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, _CACHE_MAGIC + head + b"\n" + payload)


def _header(data: bytes, key: str) -> tuple[dict, int]:
    if not data.startswith(_CACHE_MAGIC):
        raise ValueError("not a corrlib sweep cache entry")
    end = data.find(b"\n", len(_CACHE_MAGIC))
    if end < 0:
        raise ValueError("truncated header")
    try:
        header = json.loads(data[len(_CACHE_MAGIC) : end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("unreadable header") from exc
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
        raise ValueError("unknown cache format")
    if header.get("key") != key:
        raise ValueError("key does not match the file name")
    return header, end


def read_entry(path: Path, key: str) -> Entry:
    """Read and verify one cache entry; raise ValueError(reason) if it is not valid."""
    data = path.read_bytes()
    header, end = _header(data, key)
    payload = data[end + 1 :]
    if len(payload) != header.get("payload_bytes"):
        raise ValueError(
            f"payload has {len(payload)} bytes, header says {header.get('payload_bytes')}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ValueError("payload checksum mismatch")
    try:
        obj = pickle.loads(payload)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means recompute
        raise ValueError(f"payload cannot be unpickled ({exc!r})") from exc
    try:
        if not isinstance(obj["frame"], pd.DataFrame):
            raise TypeError("frame is not a DataFrame")
        return Entry(obj["frame"], float(obj["n_samples"]), float(obj["runtime"]))
    except (TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"payload is not a sweep entry ({exc})") from exc
