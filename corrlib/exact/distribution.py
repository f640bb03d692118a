"""Exact law of one output neuron for the scale-invariant class (T3), (T14)-(T16)."""

from __future__ import annotations

import math

import numpy as np

from ..model.network import Network
from .closed_form import output_moments
from .inputs import check_closed_form, initial_variance
from .lattice import SingleInputResult, single_input

__all__ = ["output_distribution", "OutputDistribution"]


# --------------------------------------------------------------------------------------------
# output law of the scale-invariant class
# --------------------------------------------------------------------------------------------


class OutputDistribution:
    """Frozen law of one output neuron (scipy.stats style): pdf, cdf, moment, rvs.

    A Gaussian scale mixture ``z = sqrt(S) xi`` over the exact law of S = Sigma^{(L)} (T3),
    (T14). For one-sided activations (ReLU) with C_b = 0 the law has an atom at 0 of mass
    :attr:`atom` (every neuron of some layer off); :meth:`pdf` is the density of the continuous
    part, :meth:`cdf` includes the atom.
    """

    def __init__(self, net: Network, x, directions, law: SingleInputResult, S0: float):
        self._net = net
        self._x = x
        self._dirs = directions
        self._law = law
        self._S0 = S0

    @property
    def atom(self) -> float:
        """P(z = 0)."""
        return self._law.atom if self._law.c == 0.0 else 0.0

    def pdf(self, z) -> np.ndarray:
        """Density at z (continuous part); shape of z."""
        return self._law.output_pdf(z)

    def cdf(self, z) -> np.ndarray:
        """P(Z <= z); shape of z."""
        return self._law.output_cdf(z)

    def sf(self, z) -> np.ndarray:
        """P(Z > z) = cdf(-z) by symmetry; shape of z."""
        return self._law.output_cdf(-np.asarray(z, dtype=float))

    def moment(self, k: int) -> float:
        """E z^k exactly (T4), (T14); 0 for odd k."""
        return float(output_moments(self._net, self._x, int(k), self._dirs)[int(k)])

    def mean(self) -> float:
        return 0.0

    def var(self) -> float:
        return self.moment(2)

    def std(self) -> float:
        return math.sqrt(self.var())

    def rvs(self, size=1, random_state=None) -> np.ndarray:
        """Exact samples: S = Sigma^{(0)} prod_l X_l by (T14), then z = sqrt(S) xi."""
        rng = np.random.default_rng(random_state)
        shape = (size,) if np.isscalar(size) else tuple(size)
        m = int(np.prod(shape))
        act = self._net.activation
        ap2, am2 = float(act.a_plus) ** 2, float(act.a_minus) ** 2
        logS = np.full(m, math.log(self._S0) if self._S0 > 0 else -np.inf)
        for n in self._net.hidden_widths:
            B = rng.binomial(n, 0.5, size=m)
            X = ap2 * rng.gamma(B / 2.0, 2.0) + am2 * rng.gamma((n - B) / 2.0, 2.0)
            with np.errstate(divide="ignore"):
                logS += np.log(self._net.C_W / n * X)
        return (np.exp(0.5 * logS) * rng.standard_normal(m)).reshape(shape)


def output_distribution(
    net: Network, x, directions=None, *, h_factor: float = 1.0, tol: float = 1e-16
) -> OutputDistribution:
    """Exact law of one output neuron (or of ∂_u z) for the scale-invariant class (T14)-(T16).

    The density is the Gaussian scale mixture over the law of Sigma^{(L)}, computed on the
    lattice of :func:`single_input` with exact (Binomial mixture of chi-square) columns; the
    trapezoid sum in u = log Sigma is spectrally accurate (checked against the Meijer
    G-function of the linear network, Zavatone-Veth & Pehlevan 2021, to 1e-6 relative where the
    density exceeds 1e-8 of its peak).

    Parameters
    ----------
    net : Network
        Scale-invariant activation; C_b = 0 unless ``directions`` is given.
    x : array_like, shape (n_0,) or (1, n_0)
    directions : array_like, shape (n_0,) or (1, n_0), optional
    h_factor, tol : float
        Lattice controls as in :func:`single_input`.

    Returns
    -------
    OutputDistribution
    """
    check_closed_form(net, directions, "output_distribution")
    S0 = initial_variance(net, x, directions)
    law = single_input(net, x, directions, h_factor=h_factor, tol=tol)
    return OutputDistribution(net, x, directions, law, S0)
