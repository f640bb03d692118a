"""Perturbation theory in 1/n (docs/theory.md sections 3-5, 7).

Modules: ``kernels`` (the infinite-width kernel (T7)), ``recursion`` (the order-1/n recursions
(T10)-(T13)), ``asymptotics`` (large-depth forms at criticality (T17), (T18)).
"""

from __future__ import annotations

from . import asymptotics
from .kernels import fixed_point, infinite_width_kernel, iterate_kernel, kernel_map
from .recursion import FiniteWidthResult, finite_width

__all__ = [
    "FiniteWidthResult",
    "asymptotics",
    "finite_width",
    "fixed_point",
    "infinite_width_kernel",
    "iterate_kernel",
    "kernel_map",
]
