"""Susceptibilities (T8) and critical initializations of an activation (docs/theory.md section 7).

chi_parallel, chi_perp and the critical (C_W, C_b, K*) are properties of the activation alone
(one-dimensional Gaussian integrals), so they belong to the model: a critical network is built
from them (:meth:`corrlib.Network.critical`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize

from .._util import check_real
from .activations import K_STAR_ZERO, Activation, get_activation
from .gaussian import gaussian_rule

__all__ = ["CriticalPoint", "chi_parallel", "chi_perp", "critical_point"]


def _as_K(K) -> np.ndarray:
    K = np.asarray(K, dtype=float)
    if np.any(~np.isfinite(K)) or np.any(K < 0):
        raise ValueError("K must be finite and >= 0 (a single-input variance)")
    return K


def _one_d(act: Activation, K: float, fn) -> float:
    rule = gaussian_rule(np.array([[K]]), "axes")
    return float(rule.expect(lambda z: fn(z[:, 0])))


def _g_prime(act: Activation, K: float) -> float:
    """g'(K) for g(K) = <sigma^2>_K, via g'(K) = <z sigma sigma'>_K / K (kinks allowed)."""
    if K == 0.0:
        if act.taylor is None:
            if act.is_scale_invariant:
                return (act.a_plus**2 + act.a_minus**2) / 2.0
            raise ValueError(f"chi_parallel at K=0 needs Taylor data for activation {act.name!r}")
        t = act.taylor
        return t[1] ** 2 + t[0] * t[2]
    return _one_d(act, K, lambda z: z * act.f(z) * act.df(z)) / K


def _dsig2(act: Activation, K: float) -> float:
    if K == 0.0:
        d0 = act.df(np.zeros(1))[0]
        if act.kink:
            return (act.a_plus**2 + act.a_minus**2) / 2.0
        return float(d0) ** 2
    return _one_d(act, K, lambda z: act.df(z) ** 2)


def _vectorize(fn, K):
    K = _as_K(K)
    out = np.vectorize(fn, otypes=[float])(K)
    return float(out) if out.ndim == 0 else out


def chi_parallel(activation: str | Activation, K, C_W: float):
    """Parallel susceptibility chi_par(K) = C_W g'(K), g(K) = <sigma(z)^2>_K (T8).

    Parameters
    ----------
    activation : str or Activation
    K : float or array_like
        Single-input kernel value(s) K >= 0.
    C_W : float
        Weight variance.

    Returns
    -------
    float or ndarray (shape of K)
    """
    act = get_activation(activation)
    C_W = check_real(C_W, "C_W", minimum=0.0, strict_min=True)
    return _vectorize(lambda k: C_W * _g_prime(act, float(k)), K)


def chi_perp(activation: str | Activation, K, C_W: float):
    """Perpendicular susceptibility chi_perp(K) = C_W <sigma'(z)^2>_K (T8).

    Parameters
    ----------
    activation : str or Activation
    K : float or array_like
        Single-input kernel value(s) K >= 0.
    C_W : float

    Returns
    -------
    float or ndarray (shape of K)
    """
    act = get_activation(activation)
    C_W = check_real(C_W, "C_W", minimum=0.0, strict_min=True)
    return _vectorize(lambda k: C_W * _dsig2(act, float(k)), K)


class CriticalPoint(NamedTuple):
    """Critical initialization (C_b, C_W) and fixed point K_star (T8).

    K_star is None for the scale-invariant class, where every K is a fixed point.
    """

    C_b: float
    C_W: float
    K_star: float | None


def critical_point(activation: str | Activation) -> CriticalPoint:
    """The critical (C_b, C_W, K*) of an activation (T8), docs/theory.md section 7.

    A fixed point K* of K -> C_b + C_W g(K) with chi_par(K*) = chi_perp(K*) = 1.

    - scale-invariant class: (0, 2/(a_+^2 + a_-^2), None) (any K is a fixed point);
    - K* = 0 class (tanh, erf, sin): (0, 1/sigma_1^2, 0);
    - otherwise K* > 0 solves <sigma sigma''>_K = 0 (equivalently g'(K) = <sigma'^2>_K),
      C_W = 1/<sigma'^2>_{K*} and C_b = K* - C_W g(K*) >= 0.

    Raises
    ------
    ValueError
        Naming the activation when it has no critical point.
    """
    act = get_activation(activation)
    if act.is_scale_invariant:
        return CriticalPoint(0.0, 2.0 / (act.a_plus**2 + act.a_minus**2), None)
    if act.universality == K_STAR_ZERO:
        return CriticalPoint(0.0, 1.0 / act.taylor[1] ** 2, 0.0)

    def h(K):
        return _g_prime(act, K) - _dsig2(act, K)

    grid = np.geomspace(1e-3, 1e3, 121)
    vals = np.array([h(k) for k in grid])
    for i in range(len(grid) - 1):
        if np.sign(vals[i]) != np.sign(vals[i + 1]) and np.isfinite(vals[i : i + 2]).all():
            K_star = optimize.brentq(h, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14)
            C_W = 1.0 / _dsig2(act, K_star)
            g = _one_d(act, K_star, lambda z: act.f(z) ** 2)
            C_b = K_star - C_W * g
            if C_b >= -1e-12:
                return CriticalPoint(max(C_b, 0.0), C_W, K_star)
    raise ValueError(
        f"activation {act.name!r} has no critical point: there is no K* > 0 with "
        "chi_parallel = chi_perp = 1 and C_b >= 0"
    )
