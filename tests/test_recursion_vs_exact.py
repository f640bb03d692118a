"""The 1/n recursion (T12), (T13) against the non-perturbative single-input solver.

The recursion keeps the leading order in 1/n; the exact law of Sigma^{(L)} (corrlib.exact)
differs from it by O(n^-2) in E Sigma and Var Sigma (relative to K, K^2) and by O(n^-3) in
kappa_3. At fixed L the gap must therefore shrink like n^-2 (n^-3 for kappa_3): the fitted
log-log slopes observed here (L = 4) are, for (mean, V, kappa_3): tanh (-2.02, -2.00, -3.00)
over n = 64..512 and gelu (-1.93, -2.02, -3.04) over n = 128..512. The tolerances (0.1 for the
mean and V, 0.15 for kappa_3) cover the next-order drift of a fitted slope, O(L/n) here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import corrlib
from corrlib import exact


def _gaps(name, ns, L):
    rows = []
    for n in ns:
        net = corrlib.Network.critical(name, int(n), L)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the solver must be in its accurate regime here
            sol = exact.single_input(net, np.ones((1, 1)))
        rec = corrlib.finite_width(net, np.ones((1, 1)))
        K = rec.K[-1, 0, 0]
        rows.append(
            (
                (sol.cumulants(1)[-1] - rec.mean[-1, 0, 0]) / K,
                (sol.cumulants(2)[-1] - rec.V[-1, 0, 0, 0, 0]) / K**2,
                (sol.cumulants(3)[-1] - rec.T[-1]) / K**3,
            )
        )
    return np.abs(np.array(rows))


@pytest.mark.parametrize("name, ns", [("tanh", [64, 128, 256, 512]), ("gelu", [128, 256, 512])])
def test_gap_to_exact_shrinks_like_n_minus_2(name, ns):
    L = 4
    gaps = _gaps(name, ns, L)
    logn = np.log(ns)
    slope_mean, slope_V, slope_T = (np.polyfit(logn, np.log(gaps[:, j]), 1)[0] for j in range(3))
    assert abs(slope_V + 2.0) <= 0.1, slope_V
    assert abs(slope_mean + 2.0) <= 0.1, slope_mean
    assert abs(slope_T + 3.0) <= 0.15, slope_T
    # and the gap is small where the series is meant to hold (L/n <= 1/16 here)
    assert gaps[-1, 1] < 1e-3


def test_relu_recursion_is_the_first_order_of_the_exact_law():
    """ReLU, unequal widths: exact Var S/K^2 = prod(1 + 5/n_l) - 1 (T15) and the recursion's
    5 sum 1/n_l differ by exactly the second-order terms 25 sum_{i<j} 1/(n_i n_j)."""
    widths = (1, 40, 70, 55, 1)
    net = corrlib.Network(widths, "relu", C_W=2.0, C_b=0.0)
    sol = exact.single_input(net, np.ones((1, 1)))
    rec = corrlib.finite_width(net, np.ones((1, 1)))
    K = rec.K[-1, 0, 0]
    a = 1 / np.array(widths[1:-1], dtype=float)
    second = 25 * (a.sum() ** 2 - (a**2).sum()) / 2 + 125 * np.prod(a)
    gap = sol.cumulants(2)[-1] / K**2 - rec.V[-1, 0, 0, 0, 0] / K**2
    assert gap == pytest.approx(second, rel=1e-8)
