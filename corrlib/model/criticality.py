"""Susceptibilities (T8) and critical initializations of an activation (docs/theory.md section 7).

chi_parallel, chi_perp and the critical (C_W, C_b, K*) are properties of the activation alone
(one-dimensional Gaussian integrals, :func:`corrlib.model.gaussian.normal_expectation`, accurate
at every K), so they belong to the model: a critical network is built from them
(:meth:`corrlib.Network.critical`).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
from scipy import optimize

from .._util import check_real, warn_deprecated
from .activations import K_STAR_ZERO, Activation, get_activation
from .gaussian import normal_expectation

__all__ = ["CriticalPoint", "chi_parallel", "chi_perp", "critical_point"]


def _as_K(K) -> np.ndarray:
    K = np.asarray(K, dtype=float)
    if np.any(~np.isfinite(K)) or np.any(K < 0):
        bad = K[~(np.isfinite(K) & (K >= 0))].ravel()[0] if K.ndim else K
        raise ValueError(f"K must be finite and >= 0 (a single-input variance); got {float(bad)!r}")
    return K


def _one_sided_slopes(act: Activation) -> tuple[float, float]:
    """sigma'(+0) and sigma'(-0)."""
    with np.errstate(all="ignore"):
        d = np.asarray(act.df(np.array([1e-12, -1e-12])), dtype=float)
    return float(d[0]), float(d[1])


def _g_prime_at_zero(act: Activation) -> float:
    """g'(0) for g(K) = <sigma^2>_K: sigma_1^2 + sigma_0 sigma_2 (smooth), or the mean of the
    squared one-sided slopes (a kink at 0 with sigma(0) = 0)."""
    if act.kink:
        f0 = float(np.asarray(act.f(np.zeros(1)))[0])
        right, left = _one_sided_slopes(act)
        if f0 != 0.0 and right != left:
            raise ValueError(
                f"chi_parallel of activation {act.name!r} diverges at K = 0 (a kink at 0 with "
                f"sigma(0) = {f0:.6g}: g'(K) ~ K^(-1/2)); evaluate it at K > 0"
            )
        return (right**2 + left**2) / 2.0
    if act.taylor is None or len(act.taylor) < 3:
        raise ValueError(
            f"chi_parallel at K = 0 needs sigma(0), sigma_1, sigma_2 of activation {act.name!r} "
            "(Taylor data could not be inferred); evaluate it at K > 0"
        )
    t = act.taylor
    return t[1] ** 2 + t[0] * t[2]


def _dsig2_at_zero(act: Activation) -> float:
    """<sigma'(z)^2>_K at K -> 0: sigma'(0)^2, or (sigma'(+0)^2 + sigma'(-0)^2)/2 at a kink."""
    right, left = _one_sided_slopes(act)
    if act.kink:
        return (right**2 + left**2) / 2.0
    with np.errstate(all="ignore"):
        return float(np.asarray(act.df(np.zeros(1)), dtype=float)[0]) ** 2


def _susceptibility(kind: str, activation, K, C_W) -> float | np.ndarray:
    """C_W g'(K) (kind "parallel", g'(K) = <z sigma sigma'>_K / K) or C_W <sigma'^2>_K."""
    act = get_activation(activation)
    C_W = check_real(C_W, "C_W", minimum=0.0, strict_min=True)
    K = _as_K(K)
    out = np.empty(K.shape)
    pos = K > 0
    if kind == "parallel":
        fns = [lambda z: z * act.f(z) * act.df(z)]
        out[~pos] = _g_prime_at_zero(act) if np.any(~pos) else 0.0
        if np.any(pos):
            out[pos] = normal_expectation(fns, np.sqrt(K[pos]), name="chi_parallel")[0] / K[pos]
    else:
        fns = [lambda z: act.df(z) ** 2]
        out[~pos] = _dsig2_at_zero(act) if np.any(~pos) else 0.0
        if np.any(pos):
            out[pos] = normal_expectation(fns, np.sqrt(K[pos]), name="chi_perp")[0]
    out = C_W * out
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"chi_{kind} of activation {act.name!r} is not finite at K = "
            f"{float(K[~np.isfinite(out)].ravel()[0]):.6g}: the activation or its derivative "
            "returns NaN/inf at the arguments of that variance"
        )
    return float(out) if out.ndim == 0 else out


# Deliberate parallel: the docstring's Parameters/Returns match chi_perp's below; each public
# function documents its own arguments (help() shows one at a time); the shared code is
# _susceptibility.
def chi_parallel(activation: str | Activation, K, C_W: float):
    """Parallel susceptibility chi_par(K) = C_W g'(K), g(K) = <sigma(z)^2>_K (T8).

    Parameters
    ----------
    activation : str or Activation
    K : float or array_like
        Single-input kernel value(s) K >= 0.
    C_W : float
        Weight variance > 0.

    Returns
    -------
    float or ndarray (shape of K)

    Notes
    -----
    g'(K) = <z sigma(z) sigma'(z)>_K / K (Gaussian integration by parts, valid with kinks), by
    :func:`corrlib.model.gaussian.normal_expectation` (1e-13 relative at any K > 0). At K = 0:
    sigma_1^2 + sigma_0 sigma_2, or the mean of the squared one-sided slopes at a kink.

    Examples
    --------
    >>> round(chi_parallel("relu", 3.0, 2.0), 12)  # scale-invariant criticality
    1.0
    >>> round(chi_parallel("tanh", 0.0, 1.0), 12)  # sigma_1 = 1
    1.0
    """
    return _susceptibility("parallel", activation, K, C_W)


# Deliberate parallel: the docstring's Parameters/Returns match chi_parallel's above; each
# public function documents its own arguments (help() shows one at a time); the shared code is
# _susceptibility.
def chi_perp(activation: str | Activation, K, C_W: float):
    """Perpendicular susceptibility chi_perp(K) = C_W <sigma'(z)^2>_K (T8).

    Parameters
    ----------
    activation : str or Activation
    K : float or array_like
        Single-input kernel value(s) K >= 0.
    C_W : float
        Weight variance > 0.

    Returns
    -------
    float or ndarray (shape of K)

    Notes
    -----
    By :func:`corrlib.model.gaussian.normal_expectation` (1e-13 relative at any K > 0; e.g. tanh
    at K = 1e8 gives C_W sqrt(2 / pi) (4/3) / 1e4, where a fixed rule in z / sqrt(K) returns 0).
    At K = 0: sigma'(0)^2, or (sigma'(+0)^2 + sigma'(-0)^2) / 2 at a kink.

    Examples
    --------
    >>> import numpy as np
    >>> round(chi_perp("relu", 1.0, 2.0), 12)
    1.0
    >>> K = 1e8  # <sech^4> = (4/3) / sqrt(2 pi K) for large K
    >>> bool(abs(chi_perp("tanh", K, 1.0) * np.sqrt(2 * np.pi * K) - 4 / 3) < 1e-7)
    True
    """
    return _susceptibility("perp", activation, K, C_W)


@dataclass(frozen=True, eq=False)
class CriticalPoint:
    """Critical initialization (C_W, C_b) and fixed point K_star of an activation (T8).

    K_star is None for the scale-invariant class, where every K is a fixed point. Read the fields
    by name. Iterating, unpacking or indexing a CriticalPoint gives the previous order
    (C_b, C_W, K_star) for one more release, with a DeprecationWarning.

    Examples
    --------
    >>> cp = CriticalPoint(C_W=2.0, C_b=0.0, K_star=None)
    >>> cp.C_W, cp.C_b, cp.K_star
    (2.0, 0.0, None)
    """

    C_W: float
    C_b: float
    K_star: float | None

    def _old_order(self) -> tuple:
        warn_deprecated(
            "iterating, unpacking or indexing a CriticalPoint (order C_b, C_W, K_star)",
            "its fields by name (cp.C_W, cp.C_b, cp.K_star)",
            stacklevel=4,
        )
        return (self.C_b, self.C_W, self.K_star)

    def __iter__(self):
        return iter(self._old_order())

    def __getitem__(self, i):
        return self._old_order()[i]

    def __len__(self) -> int:
        return 3

    def __eq__(self, other) -> bool:
        if isinstance(other, CriticalPoint):
            return astuple(self) == astuple(other)
        if isinstance(other, tuple):
            return self._old_order() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(astuple(self))

    def _asdict(self) -> dict:
        return {"C_W": self.C_W, "C_b": self.C_b, "K_star": self.K_star}


def _general_critical_point(act: Activation) -> CriticalPoint:
    """K* > 0 with g'(K*) = <sigma'^2>_{K*} (equivalently <sigma sigma''>_{K*} = 0)."""
    fns = [lambda z: z * act.f(z) * act.df(z), lambda z: act.df(z) ** 2, lambda z: act.f(z) ** 2]

    def parts(K):
        return normal_expectation(fns, np.sqrt(K), name="critical_point")

    def h(K):
        gp, d2, _ = parts(K)
        return gp / K - d2

    grid = np.geomspace(1e-3, 1e3, 121)
    gp, d2, _ = parts(grid)
    vals = gp / grid - d2
    for i in range(len(grid) - 1):
        if np.sign(vals[i]) != np.sign(vals[i + 1]) and np.isfinite(vals[i : i + 2]).all():
            K_star = optimize.brentq(h, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14)
            _, d2, g = parts(K_star)
            C_W = 1.0 / float(d2)
            C_b = K_star - C_W * float(g)
            if C_b >= -1e-12:
                return CriticalPoint(C_W=C_W, C_b=max(C_b, 0.0), K_star=float(K_star))
    raise ValueError(
        f"activation {act.name!r} has no critical point: there is no K* > 0 with "
        "chi_parallel = chi_perp = 1 and C_b >= 0"
    )


def critical_point(activation: str | Activation) -> CriticalPoint:
    """The critical (C_W, C_b, K*) of an activation (T8), docs/theory.md section 7.

    A fixed point K* of K -> C_b + C_W g(K) with chi_par(K*) = chi_perp(K*) = 1.

    - scale-invariant class: C_W = 2/(a_+^2 + a_-^2), C_b = 0, K* None (any K is a fixed point);
    - K* = 0 class (tanh, erf, sin): C_W = 1/sigma_1^2, C_b = 0, K* = 0;
    - otherwise K* > 0 solves <sigma sigma''>_K = 0 (equivalently g'(K) = <sigma'^2>_K),
      C_W = 1/<sigma'^2>_{K*} and C_b = K* - C_W g(K*) >= 0.

    Parameters
    ----------
    activation : str or Activation

    Returns
    -------
    CriticalPoint
        Fields ``C_W``, ``C_b``, ``K_star``.

    Raises
    ------
    ValueError
        Naming the activation when it has no critical point.

    Examples
    --------
    >>> cp = critical_point("relu")
    >>> cp.C_W, cp.C_b, cp.K_star
    (2.0, 0.0, None)
    >>> round(critical_point("gelu").K_star, 4)
    3.5616
    """
    act = get_activation(activation)
    if act.is_scale_invariant:
        return CriticalPoint(C_W=2.0 / (act.a_plus**2 + act.a_minus**2), C_b=0.0, K_star=None)
    if act.universality == K_STAR_ZERO:
        return CriticalPoint(C_W=1.0 / act.taylor[1] ** 2, C_b=0.0, K_star=0.0)
    return _general_critical_point(act)
