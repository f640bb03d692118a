"""Companion tooling: parameter sweeps, the notebook runner, the run workspace, figure output.

Modules: ``sweeps`` (grid, seeding, cache, executors, driver), ``reproduce`` (runs the notebooks;
the command line is ``python -m corrlib.reproduce``) with ``notebooks`` (discovery and validated
parameters), ``execute`` (one notebook through papermill, normalised output) and ``record`` (the
deterministic manifest and the run log), ``runs`` (the run workspace: where outputs go),
``checks`` (regime-aware checks for the notebooks' final cells), ``plotting`` (figure and table
output shared by the notebooks), ``io`` (atomic file writes).
"""

from __future__ import annotations

from .sweeps import SweepCacheWarning, sweep

__all__ = ["SweepCacheWarning", "sweep"]
