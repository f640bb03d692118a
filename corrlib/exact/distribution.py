"""Exact law of one output neuron for the scale-invariant class (T3), (T14)-(T16)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from .._util import binom_logpmf, check_kwargs, check_real, warn_deprecated
from ..model.network import Network
from ._chain import leaky_mixture
from .closed_form import output_moments
from .inputs import check_closed_form, initial_log_variance, resolve_X, single_row
from .lattice import SingleInputResult, single_input

__all__ = ["output_distribution", "OutputDistribution"]

_LOG_FMAX = math.log(np.finfo(float).max)


def _check_rng(rng: Any) -> np.random.Generator:
    """``numpy.random.default_rng(rng)`` with a clear error for anything else."""
    allowed = (
        "rng must be None, an int >= 0, a numpy.random.Generator or a numpy.random.SeedSequence"
    )
    if isinstance(rng, (bool, np.bool_)) or not (
        rng is None
        or isinstance(rng, (numbers.Integral, np.random.Generator, np.random.SeedSequence))
    ):
        raise TypeError(f"{allowed}; got {rng!r} ({type(rng).__name__})")
    if isinstance(rng, numbers.Integral) and int(rng) < 0:
        raise ValueError(f"{allowed}; got {rng!r}")
    return np.random.default_rng(rng)


#: largest number of samples rvs draws at once (~2 GiB of temporaries)
MAX_SAMPLES = 2**26


def _check_size(size: Any) -> tuple[int, ...] | None:
    if size is None:
        return None
    if isinstance(size, (str, bytes, float, np.floating)):
        raise TypeError(
            f"size must be None, an integer >= 0 or a tuple of integers >= 0; got {size!r}"
        )
    shape = (size,) if isinstance(size, numbers.Integral) else size
    try:
        shape = tuple(shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or any(
            isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) for s in shape
        )
        or any(int(s) < 0 for s in shape)
    ):
        raise (ValueError if shape is not None else TypeError)(
            f"size must be None, an integer >= 0 or a tuple of integers >= 0; got {size!r}"
        )
    return tuple(int(s) for s in shape)


class OutputDistribution:
    """Frozen law of one output neuron (scipy.stats style): pdf, cdf, sf, moment, rvs.

    A Gaussian scale mixture ``z = sqrt(S) xi`` over the exact law of S = Sigma^{(L)} (T3),
    (T14). For one-sided activations (ReLU) with C_b = 0 the law has an atom at 0 of mass
    :attr:`atom` (every neuron of some layer off); :meth:`pdf` is the density of the continuous
    part, :meth:`cdf` and :meth:`sf` include the atom. Built by :func:`output_distribution`.

    Examples
    --------
    One ReLU layer of width 1 (C_W = 2, x = 1, so Sigma^{(0)} = 2): Sigma^{(1)} = 4 xi'^2
    [xi' > 0], so z = 0 with probability 1/2, E z^2 = 2 (T15) and E|z| = 2 E|xi'| E|xi| / 2
    = 2/pi.

    >>> import math, corrlib
    >>> from corrlib.exact import output_distribution
    >>> d = output_distribution(corrlib.Network((1, 1, 1), "relu", C_W=2.0), [[1.0]])
    >>> d.atom, d.moment(2), float(d.sf(0.0))
    (0.5, 2.0, 0.25)
    >>> round(d.abs_moment(1.0), 12) == round(2 / math.pi, 12)
    True
    >>> d.rvs((2, 3), rng=0).shape
    (2, 3)
    """

    def __init__(self, net: Network, X: np.ndarray, directions, law: SingleInputResult):
        self._net = net
        self._X = X
        self._dirs = directions
        self._law = law

    @property
    def law(self) -> SingleInputResult:
        """The lattice law of Sigma^{(L)} behind the density (from :func:`single_input`)."""
        return self._law

    @property
    def atom(self) -> float:
        """P(z = 0)."""
        return self._law.atom if self._law.c == 0.0 else 0.0

    def pdf(self, z: ArrayLike) -> np.ndarray:
        """Density at z (continuous part); shape of z."""
        return self._law.output_pdf(z)

    def cdf(self, z: ArrayLike) -> np.ndarray:
        """P(Z <= z), the atom at 0 included for z >= 0; shape of z."""
        return self._law.output_cdf(z)

    def sf(self, z: ArrayLike) -> np.ndarray:
        """P(Z > z); shape of z.

        By symmetry of the continuous part, P(Z > z) = P(Z < -z) = cdf(-z) minus the atom
        when z = 0 (the atom at 0 is not above 0).
        """
        z = np.asarray(z, dtype=float)
        return self._law.output_cdf(-z) - self.atom * (z == 0)

    def moment(self, order: int) -> float:
        """E z^order exactly (T4), (T14), for an integer order >= 0; 0 for odd orders.

        Raises
        ------
        ValueError
            For a non-integer or negative order: E z^p is defined for integers only (z takes
            negative values); E|z|^p for real p is :meth:`abs_moment`.
        OverflowError
            When the moment exceeds float64 (use :func:`corrlib.exact.log_output_moments`).
        """
        if isinstance(order, (bool, np.bool_)) or not isinstance(order, numbers.Integral):
            raise ValueError(
                f"order must be an integer >= 0 (E z^order); got {order!r}. For E|z|^p with "
                "real p use abs_moment(p)"
            )
        if order < 0:
            raise ValueError(f"order must be an integer >= 0; got {order!r}")
        if order % 2:
            return 0.0
        return float(output_moments(self._net, self._X, int(order), self._dirs)[int(order)])

    def abs_moment(self, p: float) -> float:
        """E|z|^p for real p > -1, exactly: E|xi|^p E[S^{p/2}] with the factor law (T14).

        Raises
        ------
        ValueError
            For p <= -1, or p < 0 when z has an atom at 0 (then E|z|^p is infinite).
        OverflowError
            When the moment exceeds float64.
        """
        p = check_real(p, "p", minimum=-1.0, strict_min=True)
        if p < 0 and self.atom > 0:
            raise ValueError(
                f"E|z|^p is infinite for p = {p} < 0: z has an atom at 0 of mass {self.atom:.3g}"
            )
        q = p / 2.0
        act = self._net.activation
        ap2, am2 = float(act.a_plus) ** 2, float(act.a_minus) ** 2
        log_m = 0.5 * p * _LOG2 + special.gammaln(0.5 * (p + 1.0)) - 0.5 * math.log(math.pi)
        log_m += q * self._law.log_S0 if q != 0 else 0.0
        for n in self._net.hidden_widths:
            log_m += q * math.log(self._net.C_W / n) + _log_factor_power(n, q, ap2, am2)
        if log_m > _LOG_FMAX:
            raise OverflowError(f"E|z|^{p} exceeds the float64 range (log = {log_m:.1f})")
        return math.exp(log_m)

    def mean(self) -> float:
        """E z = 0."""
        return 0.0

    def var(self) -> float:
        """E z^2 = E Sigma^{(L)} (T4)."""
        return self.moment(2)

    def std(self) -> float:
        """sqrt(E z^2)."""
        return math.sqrt(self.var())

    def rvs(self, size: Any = 1, rng: Any = None, **kwargs: Any) -> np.ndarray:
        """Exact samples: S = Sigma^{(0)} prod_l X_l by (T14), then z = sqrt(S) xi.

        Parameters
        ----------
        size : int or tuple of int, optional
            Output shape (None: one scalar sample).
        rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
            The random source (``random_state=`` is a deprecated alias).

        Returns
        -------
        ndarray of shape ``size`` (a float for ``size=None``)

        Raises
        ------
        OverflowError
            When a sample exceeds float64 (extreme L/n): use the exact moments or the law.
        """
        if "random_state" in kwargs:
            if rng is not None:
                raise TypeError("rvs() got both rng and the deprecated random_state; pass rng")
            warn_deprecated("OutputDistribution.rvs(random_state=...)", "rvs(rng=...)")
            rng = kwargs.pop("random_state")
        check_kwargs(kwargs, ("size", "rng"), "rvs")
        shape = _check_size(size)
        gen = _check_rng(rng)
        m = 1 if shape is None else math.prod(shape)
        if m > MAX_SAMPLES:
            raise MemoryError(
                f"rvs: size={size!r} asks for {m:.3g} samples (~{32 * m / 2**30:.0f} GiB of "
                f"temporaries); draw at most {MAX_SAMPLES} at a time, in batches"
            )
        act = self._net.activation
        ap2, am2 = float(act.a_plus) ** 2, float(act.a_minus) ** 2
        logS = np.full(m, self._law.log_S0)
        for n in self._net.hidden_widths:
            B = gen.binomial(n, 0.5, size=m)
            X = ap2 * gen.gamma(B / 2.0, 2.0) + am2 * gen.gamma((n - B) / 2.0, 2.0)
            with np.errstate(divide="ignore"):
                logS += np.log(self._net.C_W / n * X)
        if np.any(logS > 2.0 * _LOG_FMAX - 20.0):
            raise OverflowError(
                f"rvs: a sample of z exceeds the float64 range (log|z| up to "
                f"{0.5 * float(logS.max()):.0f}); use exact moments (log_output_moments) or the "
                "law (quantiles of Sigma) instead"
            )
        out = np.exp(0.5 * logS) * gen.standard_normal(m)
        return float(out[0]) if shape is None else out.reshape(shape)


_LOG2 = math.log(2.0)


def _log_factor_power(n: int, q: float, ap2: float, am2: float) -> float:
    """log E[W^q] for W = a_+^2 chi2_B + a_-^2 chi2'_{n-B} (T14), real q > -1/2."""
    if q == 0.0:
        return 0.0
    if ap2 == am2:
        return q * (math.log(ap2) + _LOG2) + special.gammaln(n / 2 + q) - special.gammaln(n / 2)
    if ap2 == 0.0 or am2 == 0.0:
        B = np.arange(1, n + 1, dtype=float)
        t = binom_logpmf(B, n) + special.gammaln(B / 2 + q) - special.gammaln(B / 2)
        return q * (math.log(max(ap2, am2)) + _LOG2) + float(special.logsumexp(t))
    mix = leaky_mixture(int(n), ap2, am2)
    if mix is None:
        raise ValueError(
            f"abs_moment with non-even p is not available for this leaky activation at width "
            f"n = {n} (the exact mixture is too long); use moment(k) for even integers k"
        )
    bs, k, logP = mix
    a = 0.5 * n + k
    return q * math.log(bs) + float(
        special.logsumexp(logP + special.gammaln(a + q) - special.gammaln(a))
    )


# Deliberate parallel: the signature has the shape of lattice.single_input's (net, X,
# directions, then keyword-only accuracy controls); each public function keeps its own typed
# signature and defaults.
def output_distribution(
    net: Network,
    X: Any = None,
    directions: Any = None,
    *,
    h_factor: float = 1.0,
    tol: float = 1e-16,
    **kwargs: Any,
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
    X : array_like, shape (1, n_0) or (n_0,)
    directions : array_like, shape (1, n_0) or (n_0,), optional
    h_factor, tol : float
        Lattice controls as in :func:`single_input`.

    Returns
    -------
    OutputDistribution

    Examples
    --------
    ReLU, C_W = 2: the output has an atom at 0 (some layer entirely off) and
    E z^4/(E z^2)^2 = 3 prod (1 + 5/n_l) (T15).

    >>> import corrlib
    >>> from corrlib.exact import output_distribution
    >>> d = output_distribution(corrlib.Network((1, 3, 2, 1), "relu", C_W=2.0), [[1.0]])
    >>> round(d.atom, 12) == round(1 - (1 - 1 / 8) * (1 - 1 / 4), 12)
    True
    >>> round(d.moment(4) / d.moment(2) ** 2, 12) == round(3 * (1 + 5 / 3) * (1 + 5 / 2), 12)
    True
    >>> round(float(d.sf(0.0)), 12) == round((1 - d.atom) / 2, 12)
    True
    """
    X = resolve_X(X, kwargs, "output_distribution", ("X", "directions", "h_factor", "tol"))
    check_closed_form(net, directions, "output_distribution")
    X = single_row(X, "X", net.n_in)
    if directions is not None:
        directions = single_row(directions, "directions", net.n_in)
    initial_log_variance(net, X, directions)
    law = single_input(net, X, directions, h_factor=h_factor, tol=tol)
    return OutputDistribution(net, X, directions, law)
