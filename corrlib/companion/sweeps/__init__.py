"""Parameter sweeps locally or on a Dask cluster (see :func:`sweep` and docs/sweeps.md)."""

from __future__ import annotations

from .driver import SweepCacheWarning, normalize_grid, point_seed_sequence, sweep

__all__ = ["SweepCacheWarning", "normalize_grid", "point_seed_sequence", "sweep"]
