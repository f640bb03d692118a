"""Activation functions and their analytic data.

An :class:`Activation` bundles the nonlinearity sigma with its first (and, where defined, second)
derivative, its Taylor coefficients at the origin, whether it has a kink at 0 and its
universality class at criticality (docs/theory.md section 7, tags (T17), (T18)).

Built-in activations (:func:`get_activation`, :func:`leaky_relu`, :func:`scale_invariant`) are
tested once in the test suite and trusted at construction. A user activation, built with
``Activation(name, f, df, ...)``, is checked when it is constructed (see :class:`Activation`):
corrlib never integrates or samples a function it has not evaluated.

Identity. Two activations are equal when they compute the same thing by construction:

- a built-in equals another built-in made by the same constructor with the same parameters
  (``get_activation("silu") == get_activation("swish")``; ``leaky_relu(0.3) == leaky_relu(0.3)``);
- a user activation equals only itself, or another user activation built from the *same function
  objects* (``f``, ``df``, ``d2f``) and the same name and data. It never equals a built-in, even
  when it has the same name: identity comes from what is computed, not from what it is called.

Networks compare through their activation, so cached or deduplicated results keyed on networks
follow the same rule.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special

from .._util import check_real, did_you_mean

__all__ = [
    "Activation",
    "get_activation",
    "available_activations",
    "leaky_relu",
    "scale_invariant",
]

ArrayFn = Callable[[np.ndarray], np.ndarray]

SCALE_INVARIANT = "scale-invariant"
K_STAR_ZERO = "K*=0"
OTHER = "other"
_CLASSES = (SCALE_INVARIANT, K_STAR_ZERO, OTHER)

#: user activations must be finite (with their derivatives) for |z| <= this
VALIDATION_RANGE = 100.0
#: relative tolerance of df (d2f) against the numerical derivative of f (df)
DERIVATIVE_RTOL = 1e-6
#: highest Taylor order inferred at 0
TAYLOR_ORDER = 5
#: inferred sigma_k must be accurate to TAYLOR_TOL * k! * max_{|z|<=1} |f|
TAYLOR_TOL = 1e-7


@dataclass(frozen=True, eq=False)
class Activation:
    """A pointwise nonlinearity sigma with its derivatives and analytic data.

    Parameters
    ----------
    name : str
        Short identifier, used in messages and tables (not in comparisons with built-ins).
    f, df : callable
        sigma and sigma': vectorized and elementwise, ``ndarray -> ndarray`` of the same shape
        with float values (numpy functions, or ``np.vectorize(g, otypes=[float])``).
    d2f : callable, optional
        sigma'' where defined (away from a kink).
    taylor : sequence of float, optional
        Derivatives ``(sigma(0), sigma_1, sigma_2, sigma_3, ...)`` at the origin (the sigma_k of
        (T18)). Inferred numerically from ``f`` when omitted and f is smooth at 0.
    kink : bool, optional
        True when sigma' jumps at ``z = 0`` (ReLU-type; quadratures split there,
        docs/theory.md section 10). Detected numerically when omitted.
    a_plus, a_minus : float, optional
        Slopes of a scale-invariant activation ``a_plus z [z>0] + a_minus z [z<0]`` (T14),
        (T17). Inferred when f is of that form.
    universality : str, optional
        ``"scale-invariant"``, ``"K*=0"`` or ``"other"``; inferred when omitted (a given value
        is checked against the inferred one).
    params : dict
        Parameters the activation was built with (e.g. the leaky-ReLU slope); read-only.

    Attributes
    ----------
    taylor_error : tuple of float or None
        Error estimates of numerically inferred Taylor coefficients (None when they were given
        or the activation is built in).

    Raises
    ------
    TypeError
        If ``f``, ``df`` or ``d2f`` is not callable, not vectorized (e.g. ``math.tanh`` or
        ``lambda z: z if z > 0 else 0``), does not return an array of its input's shape
        elementwise, or returns non-float values.
    ValueError
        If a function returns NaN or inf for ``|z| <= 100`` (the message names z), f is
        discontinuous at 0, ``df`` (``d2f``) differs from the numerical derivative of ``f``
        (``df``) by more than the tolerance below, or given data (``taylor``, ``kink``,
        ``a_plus``/``a_minus``, ``universality``) contradict f.

    Notes
    -----
    Checks of a user activation at construction (about a millisecond for numpy functions):

    - f, df, d2f are called on 74 fixed points spanning [-100, 100] (dense on [-8, 8]), as a
      1-D array, as a 2-D array and on a prefix; the results must agree elementwise and be
      finite floats.
    - ``df`` must match a Richardson-extrapolated central difference of f (steps 1e-3, 5e-4) to
      ``1e-6`` relative, plus the difference's own error estimate and rounding
      (``1e-11 |f(z)| + 1e-12 max_{|z|<=1} |f|``); d2f likewise against df. Where f has a kink
      inside the stencil, df must match a one-sided derivative instead.
    - A kink at 0 is a jump of the one-sided slopes of f at 0 beyond ten times their error
      estimate (second-order one-sided differences at steps 1e-3 and 5e-4).
    - f of the form ``a_+ z [z>0] + a_- z [z<0]`` (to 1e-10 relative on the grid) is
      scale-invariant with those slopes.
    - Otherwise, if f is smooth at 0, ``sigma_k`` (k <= 5) are Chebyshev-interpolation
      derivatives at 0 on [-r, r] (r = 1, 1/2, 1/4, 1/8; degree 32), refined by the Cauchy
      integral on circles |z| = r/2 when f accepts complex input and agrees with the real
      estimate; the difference between two radii is the error estimate (``taylor_error``).
      Coefficients below their error are set to 0. The class is K*=0 when sigma(0) = 0,
      sigma_1 != 0 and a_1 < 0 beyond its error (T18), else "other".

    Pickling: built-ins pickle by their constructor and parameters; user activations pickle by
    value through cloudpickle (installed with the ``dask`` extra), so lambdas travel to worker
    processes. The copy is a new activation: equal to the original only if its functions are
    importable (pickled by reference).

    Examples
    --------
    LeCun's scaled tanh, without Taylor data: the class and critical point are inferred.

    >>> import numpy as np
    >>> from corrlib.model.criticality import critical_point
    >>> lecun = Activation("lecun_tanh", f=lambda z: 1.7159 * np.tanh(2 * z / 3),
    ...                    df=lambda z: 1.7159 * 2 / 3 * (1 - np.tanh(2 * z / 3) ** 2))
    >>> lecun.universality, round(lecun.taylor[1], 6)
    ('K*=0', 1.143933)
    >>> C_W = critical_point(lecun).C_W  # 1 / sigma_1^2 (T8), sigma_1 = 1.7159 * 2/3
    >>> round(C_W * (1.7159 * 2 / 3) ** 2, 12)
    1.0
    >>> lecun == get_activation("tanh")
    False

    A derivative that is off is rejected:

    >>> Activation("bad", f=np.sin, df=lambda z: 2 * np.cos(z))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Activation 'bad': df must be the derivative of f ...
    """

    name: str
    f: ArrayFn
    df: ArrayFn
    d2f: ArrayFn | None = None
    taylor: tuple[float, ...] | None = None
    kink: bool | None = None
    a_plus: float | None = None
    a_minus: float | None = None
    universality: str | None = None
    params: dict = field(default_factory=dict)
    taylor_error: tuple[float, ...] | None = field(default=None, init=False, repr=False)
    _registry_key: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)
        for key, value in _inspect(self).items():
            object.__setattr__(self, key, value)

    @classmethod
    def _trusted(cls, registry_key: str, **values: Any) -> Activation:
        """A built-in (or unpickled, already validated) activation, without the checks."""
        act = object.__new__(cls)
        defaults = {
            "d2f": None,
            "taylor": None,
            "kink": False,
            "a_plus": None,
            "a_minus": None,
            "params": {},
            "taylor_error": None,
        }
        for key, value in {**defaults, **values, "_registry_key": registry_key}.items():
            object.__setattr__(act, key, value)
        return act

    # -- analytic data -------------------------------------------------------------------------

    @property
    def is_scale_invariant(self) -> bool:
        """True for ``sigma(z) = a_+ z [z>0] + a_- z [z<0]`` (T14)."""
        return self.universality == SCALE_INVARIANT

    @property
    def a1(self) -> float | None:
        """a_1 = sigma_3/sigma_1 + (3/4)(sigma_2/sigma_1)^2 of (T18), or None.

        Examples
        --------
        >>> get_activation("tanh").a1
        -2.0
        """
        return _a1(self.taylor)

    def moment_ratio(self) -> float | None:
        """3 A_4 / A_2^2 - 1 of (T17) for a scale-invariant activation, else None.

        A_p = (a_+^p + a_-^p) / 2.

        Examples
        --------
        >>> get_activation("relu").moment_ratio(), get_activation("linear").moment_ratio()
        (5.0, 2.0)
        """
        if not self.is_scale_invariant:
            return None
        ap, am = float(self.a_plus), float(self.a_minus)
        A2 = (ap**2 + am**2) / 2
        A4 = (ap**4 + am**4) / 2
        return 3 * A4 / A2**2 - 1

    # -- identity, copying, pickling ------------------------------------------------------------

    def _identity(self) -> tuple:
        if self._registry_key is not None:
            return ("builtin", self._registry_key, self.name, tuple(sorted(self.params.items())))
        return (
            "user",
            self.name,
            id(self.f),
            id(self.df),
            id(self.d2f),
            self.taylor,
            self.kink,
            self.a_plus,
            self.a_minus,
            self.universality,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activation):
            return NotImplemented
        if self is other:
            return True
        if self._identity() != other._identity():
            return False
        return self._registry_key is not None or self.params == other.params

    def __hash__(self) -> int:
        return hash(self._identity())

    def __copy__(self) -> Activation:
        return self  # immutable

    def __deepcopy__(self, memo: dict) -> Activation:
        return self

    def __reduce_ex__(self, protocol: int):
        if self._registry_key is not None:
            return (_rebuild, (self._registry_key, dict(self.params), self.name))
        return (_unpickle_user, (_dump_user(self),))

    # -- evaluation -------------------------------------------------------------------------------

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """sigma(z) for an array z (converted to float64)."""
        return self.f(np.asarray(z, dtype=float))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        if self._registry_key is None:
            extra += ", user-defined"
        return f"Activation({self.name!r}{extra})"


# ------------------------------------------------------------------- user activations: checks


def _prefix(name: str) -> str:
    return f"Activation {name!r}: "


def _check_fields(act: Activation) -> None:
    """Types and ranges of the given fields (before anything is evaluated)."""
    if not isinstance(act.name, str):
        raise TypeError(f"Activation: name must be a non-empty str; got {act.name!r}")
    if not act.name.strip():
        raise ValueError(f"Activation: name must be a non-empty str; got {act.name!r}")
    p = _prefix(act.name)
    for attr in ("f", "df"):
        if not callable(getattr(act, attr)):
            raise TypeError(f"{p}{attr} must be callable; got {getattr(act, attr)!r}")
    if act.d2f is not None and not callable(act.d2f):
        raise TypeError(f"{p}d2f must be callable or None; got {act.d2f!r}")
    if act.kink is not None and not isinstance(act.kink, (bool, np.bool_)):
        raise TypeError(f"{p}kink must be True, False or None (detect); got {act.kink!r}")
    if (act.a_plus is None) != (act.a_minus is None):
        raise ValueError(
            f"{p}give both a_plus and a_minus (scale-invariant) or neither; "
            f"got a_plus={act.a_plus!r}, a_minus={act.a_minus!r}"
        )
    if act.a_plus is not None:
        object.__setattr__(act, "a_plus", check_real(act.a_plus, "a_plus"))
        object.__setattr__(act, "a_minus", check_real(act.a_minus, "a_minus"))
    if act.universality is not None and act.universality not in _CLASSES:
        raise ValueError(
            f"{p}universality must be one of {', '.join(map(repr, _CLASSES))} or None; "
            f"got {act.universality!r}{did_you_mean(str(act.universality), _CLASSES)}"
        )
    if not isinstance(act.params, Mapping):
        raise TypeError(f"{p}params must be a dict; got {type(act.params).__name__}")
    object.__setattr__(act, "params", dict(act.params))
    if act.taylor is not None:
        object.__setattr__(act, "taylor", _check_taylor(act.taylor, p))


def _check_taylor(taylor: Any, p: str) -> tuple[float, ...]:
    if isinstance(taylor, (str, bytes)) or not isinstance(taylor, (Sequence, np.ndarray)):
        raise TypeError(
            f"{p}taylor must be a sequence of floats (sigma(0), sigma_1, ...); got {taylor!r}"
        )
    if len(taylor) < 1:
        raise ValueError(f"{p}taylor must have at least one entry (sigma(0)); got {taylor!r}")
    return tuple(check_real(t, f"taylor[{k}]") for k, t in enumerate(taylor))


def _a1(t: tuple[float, ...] | None) -> float | None:
    if t is None or len(t) < 4 or t[1] == 0.0:
        return None
    return t[3] / t[1] + 0.75 * (t[2] / t[1]) ** 2


# The validation grid: dense on [-8, 8] (where Gaussian mass is), sparse out to 100. The offset
# keeps every point (and every difference stencil) away from 0 and from round numbers, where
# kinks usually sit.
_WIDE = np.array([12.3, 20.7, 35.1, 61.3, VALIDATION_RANGE])
_Z = np.concatenate([-_WIDE[::-1], (np.arange(-32, 32) + 0.5371) * 0.25, _WIDE])
_H = 1e-3  # difference step (and half of it)
_EPS0 = 1e-9  # continuity probe at 0
_PROBE0 = np.array([0.0, _H / 2, _H, 2 * _H, -_H / 2, -_H, -2 * _H, _EPS0, -_EPS0, 1.0, -1.0])
_UNIT = np.abs(_Z) <= 1.0


def _scalar_ok(fn: Callable) -> bool:
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            float(fn(0.5))
    except Exception:
        return False
    return True


def _call(fn: Callable, label: str, z: np.ndarray, p: str) -> np.ndarray:
    """fn(z) as a float array of z's shape, or a TypeError that says how to fix fn."""
    try:
        with np.errstate(all="ignore"):
            out = fn(z.copy())  # a copy: fn may write to its argument
    except Exception as exc:
        what = f"{type(exc).__name__}: {exc}"
        if _scalar_ok(fn):
            raise TypeError(
                f"{p}{label} must be vectorized (take an ndarray of any shape and return one of "
                f"the same shape, elementwise); {label}(z) on an array of shape {z.shape} raised "
                f"{what}. Write it with numpy functions (np.where, np.maximum, np.tanh, ...) or "
                f"wrap it: np.vectorize({label}, otypes=[float])"
            ) from exc
        raise TypeError(f"{p}{label}(z) raised {what} on an array of shape {z.shape}") from exc
    out = np.asarray(out)
    if out.shape != z.shape:
        raise TypeError(
            f"{p}{label} must return an array of its input's shape (elementwise); got shape "
            f"{out.shape} for an input of shape {z.shape}"
        )
    if out.dtype.kind == "c":
        raise TypeError(f"{p}{label} must return real values; got dtype {out.dtype}")
    if out.dtype != np.float64:
        hint = " (with np.vectorize pass otypes=[float])" if out.dtype.kind in "biuO" else ""
        raise TypeError(f"{p}{label} must return float64 values; got dtype {out.dtype}{hint}")
    return out


_ORDER_PROBES = (
    (slice(None), lambda z: z.reshape(-1, 2)),  # as a 2-D array
    (slice(None, None, -1), lambda z: z),  # reversed
    (slice(30, 36), lambda z: z),  # a part of small |z|
)


def _call_checked(fn: Callable, label: str, p: str) -> np.ndarray:
    """fn on the grid, checked to be vectorized, shape-preserving and elementwise."""
    out = _call(fn, label, _Z, p)
    for part, shape in _ORDER_PROBES:
        other = _call(fn, label, shape(_Z[part]), p).ravel()
        ref, z = out[part], _Z[part]
        close = np.isclose(other, ref, rtol=1e-12, atol=0.0, equal_nan=True)
        if not close.all():
            i = int(np.argmin(close))
            raise TypeError(
                f"{p}{label} must act elementwise and deterministically; {label}(z) at z = "
                f"{z[i]:.6g} changed with the other entries of the array or between calls "
                f"({float(other[i])!r} vs {float(ref[i])!r})"
            )
    return out


def _check_finite(values: np.ndarray, z: np.ndarray, label: str, p: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        i = np.flatnonzero(bad)
        j = i[np.argmin(np.abs(z[i]))]
        raise ValueError(
            f"{p}{label}(z) must be finite for |z| <= {VALIDATION_RANGE:g}; got "
            f"{float(values[j])!r} at z = {z[j]:.6g} ({bad.sum()} of {bad.size} points checked)"
        )


def _stencil(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z, z + _H, z - _H, z + _H / 2, z - _H / 2])


def _derivative_mismatch(F: np.ndarray, g: np.ndarray, scale: float) -> np.ndarray:
    """Indices where g is neither the central nor a one-sided derivative (at a kink) of F.

    F holds F on ``_stencil(_Z)``; g the claimed derivative on _Z.
    """
    F0, Fp, Fm, Fp2, Fm2 = F.reshape(5, -1)
    roundoff = 1e-11 * np.abs(F0) + 1e-12 * scale

    def ok(est, err):
        return np.abs(g - est) <= DERIVATIVE_RTOL * np.abs(est) + 2 * err + roundoff

    D1, D2 = (Fp - Fm) / (2 * _H), (Fp2 - Fm2) / _H
    good = ok((4 * D2 - D1) / 3, np.abs(D2 - D1))
    if good.all():
        return np.flatnonzero(~good)
    # a kink inside the stencil: g must be a (stable) one-sided derivative there
    fw1, fw2 = (Fp - F0) / _H, (Fp2 - F0) / (_H / 2)
    bw1, bw2 = (F0 - Fm) / _H, (F0 - Fm2) / (_H / 2)
    fw, efw = 2 * fw2 - fw1, np.abs(fw2 - fw1)
    bw, ebw = 2 * bw2 - bw1, np.abs(bw2 - bw1)
    tol = DERIVATIVE_RTOL * (np.abs(fw) + np.abs(bw)) + 2 * (efw + ebw) + 2 * roundoff
    kinked = np.abs(fw - bw) > tol
    good |= kinked & (ok(fw, efw) | ok(bw, ebw))
    return np.flatnonzero(~good)


def _check_derivative(F: np.ndarray, g: np.ndarray, labels: tuple[str, str], scale, p) -> None:
    bad = _derivative_mismatch(F, g, scale)
    if bad.size:
        F0, Fp, Fm, Fp2, Fm2 = F.reshape(5, -1)
        num = (4 * (Fp2 - Fm2) / _H - (Fp - Fm) / (2 * _H)) / 3
        j = bad[np.argmax(np.abs(g[bad] - num[bad]) / (np.abs(num[bad]) + 1e-300))]
        fn, dfn = labels
        raise ValueError(
            f"{p}{dfn} must be the derivative of {fn} (to {DERIVATIVE_RTOL:g} relative); at "
            f"z = {_Z[j]:.10g} {dfn}(z) = {g[j]:.10g} but the numerical derivative of {fn} is "
            f"{num[j]:.10g} (wrong at {bad.size} of {_Z.size} points checked)"
        )


@dataclass
class _Kink0:
    """One-sided slopes of f at 0 and whether they differ (a kink)."""

    right: float
    left: float
    kink: bool


def _kink_at_zero(f0: dict[float, float], scale: float, p: str) -> _Kink0:
    h = _H

    def fwd(s):  # second-order one-sided difference with step s (s < 0: from the left)
        return (-3 * f0[0.0] + 4 * f0[s] - f0[2 * s]) / (2 * s)

    R, R2 = fwd(h), fwd(h / 2)
    L, L2 = fwd(-h), fwd(-h / 2)
    err = abs(R - R2) + abs(L - L2)
    jump = abs(f0[_EPS0] - f0[-_EPS0])
    if jump > 1e-6 * scale + 4 * _EPS0 * (abs(R2) + abs(L2)):
        raise ValueError(
            f"{p}f must be continuous; it jumps at z = 0 (f({_EPS0:g}) - f(-{_EPS0:g}) = "
            f"{f0[_EPS0] - f0[-_EPS0]:.6g})"
        )
    kink = abs(R2 - L2) > 10 * err + 1e-7 * (abs(R2) + abs(L2)) + 1e-12 * scale
    return _Kink0(R2, L2, bool(kink))


def _piecewise_linear(fz: np.ndarray, f0: dict[float, float], scale: float):
    """(a_+, a_-) if f = a_+ z [z>0] + a_- z [z<0] on the grid, else None."""
    if abs(f0[0.0]) > 1e-14 * scale:
        return None
    ap, am = f0[1.0] + 0.0, 0.0 - f0[-1.0]  # no negative zeros
    if ap == 0.0 and am == 0.0:
        return None
    model = np.where(_Z > 0, ap * _Z, am * _Z)
    if np.all(np.abs(fz - model) <= 1e-10 * (np.abs(model) + scale)):
        return ap, am
    return None


# -- Taylor coefficients at 0 --------------------------------------------------------------------

_CHEB_DEG = 32
_RADII = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)
_CAUCHY_N = 32
_ORDERS = np.arange(TAYLOR_ORDER + 1)
_FACT = np.array([math.factorial(k) for k in _ORDERS], dtype=float)


def _best_pair(T: np.ndarray, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The estimate (row of T) whose difference to the previous radius is smallest vs tol."""
    err = np.abs(np.diff(T, axis=0))
    i = int(np.argmin(np.max(err / tol, axis=1)))
    return T[i + 1], 2 * err[i]  # factor 2: the difference can underestimate rounding


@lru_cache(maxsize=1)
def _cheb_rule() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chebyshev points x (first kind), the map A from f(x) to the interpolant's Chebyshev
    coefficients, and M[k, n] = T_n^(k)(0). Two steps, not one fused matrix: the coefficients
    of a smooth f decay, which keeps the rounding of the high derivatives small."""
    cheb = np.polynomial.chebyshev
    x = cheb.chebpts1(_CHEB_DEG + 1)
    A = cheb.chebfit(x, np.eye(x.size), _CHEB_DEG)  # column j: coefficients for e_j
    unit = np.eye(_CHEB_DEG + 1)
    M = np.array([cheb.chebval(0.0, cheb.chebder(unit, k) if k else unit) for k in _ORDERS])
    return x, A, M


def _taylor_chebyshev(f: Callable, p: str, tol: np.ndarray):
    """Derivatives at 0 of Chebyshev interpolants of f on [-r, r] (None if f is not finite)."""
    x, A, M = _cheb_rule()
    r = np.array(_RADII)
    vals = _call(f, "f", (r[:, None] * x).ravel(), p).reshape(r.size, -1)
    if not np.all(np.isfinite(vals)):
        return None
    T = ((vals @ A.T) @ M.T) / r[:, None] ** _ORDERS
    return _best_pair(T, tol)


def _taylor_cauchy(f: Callable, tol: np.ndarray):
    """Cauchy-integral derivatives when f takes complex input (None otherwise)."""
    radii = np.array(_RADII) / 2
    w = np.exp(2j * np.pi * np.arange(_CAUCHY_N) / _CAUCHY_N)
    z = (radii[:, None] * w).ravel()
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("error")
            vals = np.asarray(f(z))
    except Exception:
        return None
    if vals.shape != z.shape or vals.dtype.kind != "c" or not np.all(np.isfinite(vals)):
        return None
    c = np.fft.fft(vals.reshape(len(radii), -1), axis=1)[:, : TAYLOR_ORDER + 1] / _CAUCHY_N
    c = c / radii[:, None] ** _ORDERS * _FACT
    if np.any(np.abs(c.imag) > tol):
        return None  # f is not real on the real axis, or not holomorphic
    return _best_pair(c.real, tol)


def _infer_taylor(f: Callable, f_zero: float, scale: float, p: str):
    """(taylor, error) at 0, up to the highest order that is accurate; or (None, None)."""
    tol = TAYLOR_TOL * _FACT * scale
    real = _taylor_chebyshev(f, p, tol)
    if real is None:
        return None, None
    t, e = real
    cplx = _taylor_cauchy(f, tol)
    if cplx is not None and np.all(np.abs(cplx[0] - t) <= np.maximum(3 * e, tol)):
        t, e = cplx  # holomorphic and consistent with the real function: more accurate
    e = np.maximum(e, 1e-15 * _FACT * scale / _RADII[-1] ** _ORDERS)
    t = t.copy()
    t[0], e[0] = f_zero, 0.0
    t[np.abs(t) <= np.maximum(2 * e, 1e-14 * _FACT * scale)] = 0.0
    good = e <= tol
    n = int(np.argmin(good)) if not good.all() else good.size
    if n == 0:
        return None, None
    return tuple(float(v) for v in t[:n]), tuple(float(v) for v in e[:n])


def _a1_error(t: tuple[float, ...], e: tuple[float, ...]) -> float:
    """First-order error of a_1 (T18) from the errors of sigma_1..sigma_3."""
    t1, t2, t3 = (abs(v) for v in t[1:4])
    e1, e2, e3 = e[1:4]
    return e3 / t1 + (t3 / t1**2 + 1.5 * t2**2 / t1**3) * e1 + 1.5 * t2 / t1**2 * e2


def _classify(a_plus, taylor, error) -> str | None:
    """The universality class from the slopes or the Taylor data; None if undecidable."""
    if a_plus is not None:
        return SCALE_INVARIANT
    if taylor is None or taylor[0] != 0.0 or (len(taylor) >= 2 and taylor[1] == 0.0):
        return OTHER
    if len(taylor) < 4:
        return None  # sigma(0) = 0: the class hangs on sigma_1 and a_1, which needs sigma_3
    margin = 0.0 if error is None else 10 * _a1_error(taylor, error)
    return K_STAR_ZERO if _a1(taylor) < -margin else OTHER


# -- the pipeline ---------------------------------------------------------------------------------


def _evaluate(act: Activation, p: str) -> dict[str, Any]:
    """f, df (and d2f) on the grid and its stencils, checked for form and finiteness."""
    _call_checked(act.f, "f", p)
    _call_checked(act.df, "df", p)
    pts = np.concatenate([_stencil(_Z), _PROBE0])
    fv = _call(act.f, "f", pts, p)
    _check_finite(fv, pts, "f", p)
    dpts = _stencil(_Z) if act.d2f is not None else _Z
    dfv = _call(act.df, "df", dpts, p)
    _check_finite(dfv, dpts, "df", p)
    out = {
        "F": fv[: 5 * _Z.size],
        "f0": dict(zip(_PROBE0.tolist(), fv[5 * _Z.size :], strict=True)),
    }
    out["DF"] = dfv
    if act.d2f is not None:
        _call_checked(act.d2f, "d2f", p)
        d2 = _call(act.d2f, "d2f", _Z, p)
        _check_finite(d2, _Z, "d2f", p)
        out["D2F"] = d2
    fz = out["F"][: _Z.size]
    out["scale"] = max(float(np.max(np.abs(fz[_UNIT]))), abs(out["f0"][1.0]), 1e-300)
    return out


def _check_slopes(act: Activation, ev: dict, p: str) -> tuple[float, float] | None:
    """Declared or inferred (a_+, a_-), checked against f."""
    found = _piecewise_linear(ev["F"][: _Z.size], ev["f0"], ev["scale"])
    if act.a_plus is None:
        return found
    ap, am = act.a_plus, act.a_minus
    if found is None or not np.allclose(found, (ap, am), rtol=1e-10, atol=0.0):
        fz = ev["F"][: _Z.size]
        j = int(np.argmax(np.abs(fz - np.where(_Z > 0, ap * _Z, am * _Z))))
        raise ValueError(
            f"{p}a_plus, a_minus must describe f = a_plus z [z>0] + a_minus z [z<0]; got "
            f"a_plus={ap!r}, a_minus={am!r} but f({_Z[j]:.6g}) = {float(fz[j])!r}"
        )
    return ap, am


def _check_given_taylor(act: Activation, t, e, scale: float, p: str) -> None:
    for k, given in enumerate(act.taylor):
        if t is None or k >= len(t):
            return
        if abs(given - t[k]) > max(100 * e[k], TAYLOR_TOL * _FACT[k] * scale):
            raise ValueError(
                f"{p}taylor[{k}] must be the derivative of order {k} of f at 0; got {given!r} "
                f"but f gives {t[k]:.12g} (numerical error {e[k]:.2g})"
            )


def _smooth_data(act: Activation, ev: dict, kink: bool, slopes, p: str):
    """(taylor, taylor_error) of an activation: given (checked), exact, inferred or None."""
    if slopes is not None and slopes[0] == slopes[1]:
        return (0.0, float(slopes[0]), 0.0, 0.0, 0.0, 0.0), None
    if kink:
        if act.taylor is not None:
            raise ValueError(f"{p}taylor must be None for an activation with a kink at 0")
        return None, None
    t, e = _infer_taylor(act.f, ev["f0"][0.0], ev["scale"], p)
    if act.taylor is None:
        return t, e
    _check_given_taylor(act, t, e, ev["scale"], p)
    return act.taylor, None


def _inspect(act: Activation) -> dict[str, Any]:
    """Check a user activation against its data and infer what was not given."""
    p = _prefix(act.name)
    ev = _evaluate(act, p)
    _check_derivative(ev["F"], ev["DF"][: _Z.size], ("f", "df"), ev["scale"], p)
    if act.d2f is not None:
        dscale = max(float(np.max(np.abs(ev["DF"][: _Z.size][_UNIT]))), 1e-300)
        _check_derivative(ev["DF"], ev["D2F"], ("df", "d2f"), dscale, p)
    k0 = _kink_at_zero(ev["f0"], ev["scale"], p)
    slopes = _check_slopes(act, ev, p)
    kink = (slopes[0] != slopes[1]) if slopes is not None else k0.kink
    if act.kink is False and kink:
        raise ValueError(
            f"{p}kink=False but f has a kink at 0: one-sided slopes {k0.left + 0.0:.6g} (left) "
            f"and {k0.right + 0.0:.6g} (right); pass kink=True or omit it"
        )
    kink = bool(kink or act.kink)
    taylor, error = _smooth_data(act, ev, kink, slopes, p)
    found = {
        "kink": kink,
        "taylor": taylor,
        "taylor_error": error,
        "a_plus": None if slopes is None else float(slopes[0]),
        "a_minus": None if slopes is None else float(slopes[1]),
    }
    found["universality"] = _check_class(
        act.universality, _classify(found["a_plus"], taylor, error), found, p
    )
    return found


def _check_class(declared: str | None, inferred: str | None, found: dict, p: str) -> str:
    if inferred is None:
        if declared == OTHER:
            return OTHER  # cannot be checked; the user's word
        raise ValueError(
            f"{p}sigma(0) = 0, so the universality class depends on sigma_1 and a_1 (T18), "
            f"but only {len(found['taylor'])} Taylor coefficient(s) at 0 could be found to "
            f"{TAYLOR_TOL:g} relative; if f is smooth at 0 pass taylor=(sigma(0), sigma_1, "
            "sigma_2, sigma_3, ...); if f is not three times differentiable at 0 (e.g. ELU) "
            "pass universality='other'"
        )
    if declared is not None and declared != inferred:
        raise ValueError(
            f"{p}universality={declared!r} contradicts f: its data give {inferred!r} "
            f"(a_plus={found['a_plus']}, a_minus={found['a_minus']}, taylor={found['taylor']})"
        )
    return inferred


# --------------------------------------------------------------------------------- pickling


def _dump_user(act: Activation) -> bytes:
    state = {
        "name": act.name,
        "f": act.f,
        "df": act.df,
        "d2f": act.d2f,
        "taylor": act.taylor,
        "kink": act.kink,
        "a_plus": act.a_plus,
        "a_minus": act.a_minus,
        "universality": act.universality,
        "params": dict(act.params),
        "taylor_error": act.taylor_error,
    }
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with the dask extra
        try:
            return pickle.dumps(state)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise pickle.PicklingError(
                f"user activation {act.name!r} cannot be pickled ({exc}); install cloudpickle "
                "(pip install cloudpickle, or corrlib[dask]) to pickle lambdas and local "
                "functions by value, or define f, df, d2f with module-level def"
            ) from exc
    return cloudpickle.dumps(state)


def _unpickle_user(payload: bytes) -> Activation:
    """Rebuild a pickled user activation (it was checked when it was first constructed)."""
    state = pickle.loads(payload)
    return Activation._trusted(None, **state)


def _rebuild(key: str, params: dict, name: str | None = None) -> Activation:
    """Unpickle a built-in activation (see ``Activation.__reduce_ex__``)."""
    if key == "scale_invariant":
        return scale_invariant(params["a_plus"], params["a_minus"], name=name)
    return get_activation(key, **params)


# -------------------------------------------------------------------------------- built-ins


def _builtin(key: str, name: str, params: dict | None = None, **fields: Any) -> Activation:
    return Activation._trusted(key, name=name, params=dict(params or {}), **fields)


def _si_builtin(key: str, name: str, ap: float, am: float, params: dict) -> Activation:
    """A built-in of the scale-invariant class (T14), (T17)."""
    smooth = ap == am

    def f(z):
        z = np.asarray(z, dtype=float)
        return np.where(z > 0, ap * z, am * z) + 0.0  # + 0.0: no negative zeros

    def df(z):
        z = np.asarray(z, dtype=float)
        return np.where(z > 0, ap, am)

    return _builtin(
        key,
        name,
        params,
        f=f,
        df=df,
        d2f=_zeros if smooth else None,
        taylor=(0.0, ap, 0.0, 0.0, 0.0) if smooth else None,
        kink=not smooth,
        a_plus=ap,
        a_minus=am,
        universality=SCALE_INVARIANT,
    )


def _zeros(z):
    return np.zeros_like(np.asarray(z, dtype=float))


def scale_invariant(a_plus: float, a_minus: float, name: str | None = None) -> Activation:
    """The scale-invariant activation ``a_plus z [z>0] + a_minus z [z<0]`` (T14), (T17).

    Parameters
    ----------
    a_plus, a_minus : float
        Slopes on the positive and negative half-lines (finite, not both zero).
    name : str, optional
        Name for tables; defaults to ``"scale_invariant"``.

    Returns
    -------
    Activation
        Of the scale-invariant class, with a kink at 0 unless ``a_plus == a_minus``.

    Examples
    --------
    >>> import numpy as np
    >>> act = scale_invariant(1.5, -0.5)
    >>> act(np.array([-2.0, 0.0, 3.0]))
    array([1. , 0. , 4.5])
    >>> act.kink, act.moment_ratio()
    (True, 3.92)
    """
    ap = check_real(a_plus, "a_plus")
    am = check_real(a_minus, "a_minus")
    if ap == 0.0 and am == 0.0:
        raise ValueError(f"a_plus and a_minus must not both be 0; got a_plus={ap}, a_minus={am}")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise TypeError(f"name must be a non-empty str or None; got {name!r}")
    return _si_builtin(
        "scale_invariant", name or "scale_invariant", ap, am, {"a_plus": ap, "a_minus": am}
    )


def leaky_relu(slope: float = 0.01) -> Activation:
    """Leaky ReLU ``z [z>0] + slope z [z<0]`` (scale-invariant class, (T17)).

    Parameters
    ----------
    slope : float
        Negative-side slope, ``0 <= slope < 1``.

    Returns
    -------
    Activation

    Examples
    --------
    >>> act = leaky_relu(0.2)
    >>> act.a_plus, act.a_minus, act.params
    (1.0, 0.2, {'slope': 0.2})
    >>> act == get_activation("leaky_relu", slope=0.2)
    True
    """
    s = check_real(slope, "slope", minimum=0.0, maximum=1.0, strict_max=True)
    return _si_builtin("leaky_relu", "leaky_relu", 1.0, s, {"slope": s})


def _relu() -> Activation:
    return _si_builtin("relu", "relu", 1.0, 0.0, {})


def _linear() -> Activation:
    return _si_builtin("linear", "linear", 1.0, 1.0, {})


_SQRT_PI_2 = 2.0 / math.sqrt(math.pi)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _tanh_d1(z):
    return 1.0 - np.tanh(z) ** 2  # no overflow of cosh at large |z|


def _tanh_d2(z):
    t = np.tanh(z)
    return -2.0 * t * (1.0 - t * t)


def _tanh() -> Activation:
    return _builtin(
        "tanh", "tanh", f=np.tanh, df=_tanh_d1, d2f=_tanh_d2,
        taylor=(0.0, 1.0, 0.0, -2.0, 0.0, 16.0), universality=K_STAR_ZERO,
    )  # fmt: skip


def _erf_d1(z):
    return _SQRT_PI_2 * np.exp(-(np.asarray(z) ** 2))


def _erf_d2(z):
    z = np.asarray(z)
    return -2.0 * _SQRT_PI_2 * z * np.exp(-(z**2))


def _erf() -> Activation:
    c = _SQRT_PI_2
    return _builtin(
        "erf", "erf", f=special.erf, df=_erf_d1, d2f=_erf_d2,
        taylor=(0.0, c, 0.0, -2.0 * c, 0.0, 12.0 * c), universality=K_STAR_ZERO,
    )  # fmt: skip


def _neg_sin(z):
    return -np.sin(z)


def _sin() -> Activation:
    return _builtin(
        "sin", "sin", f=np.sin, df=np.cos, d2f=_neg_sin,
        taylor=(0.0, 1.0, 0.0, -1.0, 0.0, 1.0), universality=K_STAR_ZERO,
    )  # fmt: skip


def _normal_pdf(z):
    return _INV_SQRT2PI * np.exp(-0.5 * z * z)


def _gelu_f(z):
    return np.asarray(z) * special.ndtr(z)


def _gelu_d1(z):
    return special.ndtr(z) + np.asarray(z) * _normal_pdf(z)


def _gelu_d2(z):
    return (2.0 - np.asarray(z) ** 2) * _normal_pdf(z)


def _gelu() -> Activation:
    p0 = _INV_SQRT2PI
    # d^k/dz^k of z Phi(z) at 0: 0, 1/2, 2 phi(0), 0, -4 phi(0)
    return _builtin(
        "gelu", "gelu", f=_gelu_f, df=_gelu_d1, d2f=_gelu_d2,
        taylor=(0.0, 0.5, 2.0 * p0, 0.0, -4.0 * p0), universality=OTHER,
    )  # fmt: skip


def _swish_f(z):
    return np.asarray(z) * special.expit(z)


def _swish_d1(z):
    s = special.expit(z)
    return s * (1.0 + np.asarray(z) * (1.0 - s))


def _swish_d2(z):
    s = special.expit(z)
    return s * (1.0 - s) * (2.0 + np.asarray(z) * (1.0 - 2.0 * s))


def _swish() -> Activation:
    # z sigmoid(z) = z/2 + z^2/4 - z^4/48 + ...
    return _builtin(
        "swish", "swish", f=_swish_f, df=_swish_d1, d2f=_swish_d2,
        taylor=(0.0, 0.5, 0.5, 0.0, -0.5), universality=OTHER,
    )  # fmt: skip


def _softplus_f(z):
    return np.logaddexp(0.0, z)


def _sigmoid_d1(z):
    s = special.expit(z)
    return s * (1.0 - s)


def _sigmoid_d2(z):
    s = special.expit(z)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _softplus() -> Activation:
    return _builtin(
        "softplus", "softplus", f=_softplus_f, df=special.expit, d2f=_sigmoid_d1,
        taylor=(math.log(2.0), 0.5, 0.25, 0.0, -0.125), universality=OTHER,
    )  # fmt: skip


def _sigmoid() -> Activation:
    return _builtin(
        "sigmoid", "sigmoid", f=special.expit, df=_sigmoid_d1, d2f=_sigmoid_d2,
        taylor=(0.5, 0.25, 0.0, -0.125, 0.0), universality=OTHER,
    )  # fmt: skip


#: get_activation keys -> constructors (their keyword arguments are the activation's parameters)
_BUILTIN: dict[str, Callable[..., Activation]] = {
    "relu": _relu,
    "leaky_relu": leaky_relu,
    "linear": _linear,
    "tanh": _tanh,
    "erf": _erf,
    "sin": _sin,
    "gelu": _gelu,
    "swish": _swish,
    "softplus": _softplus,
    "sigmoid": _sigmoid,
}
_ALIASES = {"silu": "swish"}
_PARAMS = {"leaky_relu": ("slope",)}


def available_activations() -> list[str]:
    """Names accepted by :func:`get_activation`, sorted.

    Examples
    --------
    >>> available_activations()[:4]
    ['erf', 'gelu', 'leaky_relu', 'linear']
    """
    return sorted([*_BUILTIN, *_ALIASES])


def get_activation(name: str | Activation, **params: Any) -> Activation:
    """Look up a built-in activation by name.

    Parameters
    ----------
    name : str or Activation
        One of :func:`available_activations` (case-insensitive; ``"silu"`` is an alias of
        ``"swish"``). An :class:`Activation` is returned unchanged.
    **params
        Parameters of parameterized activations: ``slope`` for ``"leaky_relu"``.

    Returns
    -------
    Activation

    Raises
    ------
    TypeError
        For a name that is not a str or Activation, or parameters the activation does not take
        (with a did-you-mean).
    ValueError
        For an unknown name (the message lists the known ones) or a parameter out of range.

    Examples
    --------
    >>> get_activation("TanH")
    Activation('tanh')
    >>> get_activation("leaky_relu", slope=0.1)
    Activation('leaky_relu', slope=0.1)
    >>> get_activation("silu") == get_activation("swish")
    True
    """
    if isinstance(name, Activation):
        if params:
            raise TypeError(
                "get_activation: parameters cannot be applied to an Activation instance; got "
                f"{sorted(params)}"
            )
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"activation must be a name (str) or an Activation; got {type(name).__name__} {name!r}"
        )
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _BUILTIN:
        known = available_activations()
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(known)}"
            f"{did_you_mean(key, known)}"
        )
    allowed = _PARAMS.get(key, ())
    for p in params:
        if p not in allowed:
            raise TypeError(
                f"activation {key!r} does not take parameters {sorted(params)}"
                f"{did_you_mean(p, allowed)}; allowed: {', '.join(allowed) or '(none)'}"
            )
    return _BUILTIN[key](**params)
