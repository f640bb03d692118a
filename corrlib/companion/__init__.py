"""Companion tooling: parameter sweeps, the notebook runner, figure output.

Modules: ``sweeps`` (grid, seeding, cache, executors, driver), ``reproduce`` (runs the notebooks
and records provenance; the command line is ``python -m corrlib.reproduce``), ``plotting``
(figure and table output shared by the notebooks), ``io`` (atomic file writes).
"""

from __future__ import annotations

from .sweeps import SweepCacheWarning, sweep

__all__ = ["SweepCacheWarning", "sweep"]
