"""Perturbation theory in 1/n (docs/theory.md sections 3-5, 7).

Modules: ``kernels`` (the infinite-width kernel (T7)), ``recursion`` (the order-1/n recursions
(T10)-(T13)), ``expansion`` (:func:`hierarchy`: every cumulant to any order in 1/n,
(T19)-(T27)), ``asymptotics`` (large-depth forms at criticality (T17), (T18)).
"""

from __future__ import annotations

from . import asymptotics
from .expansion import (
    HierarchyResult,
    HierarchyWarning,
    hierarchy,
    hierarchy_convergence,
    series_stops,
)
from .kernels import fixed_point, infinite_width_kernel, iterate_kernel, kernel_map
from .recursion import FiniteWidthResult, finite_width

__all__ = [
    "FiniteWidthResult",
    "HierarchyResult",
    "HierarchyWarning",
    "asymptotics",
    "finite_width",
    "fixed_point",
    "hierarchy",
    "hierarchy_convergence",
    "infinite_width_kernel",
    "iterate_kernel",
    "kernel_map",
    "series_stops",
]
