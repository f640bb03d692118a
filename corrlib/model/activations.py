"""Activation functions and their analytic data.

An :class:`Activation` bundles the nonlinearity sigma with its first (and,
where defined, second) derivative, its Taylor coefficients at the origin, the
location of its kinks and its universality class at criticality
(docs/theory.md section 7, tags (T17), (T18)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import special

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


@dataclass(frozen=True, eq=False)
class Activation:
    """A pointwise nonlinearity sigma with its derivatives.

    Parameters
    ----------
    name : str
        Short identifier, used in messages and tables.
    f, df : callable
        sigma and sigma', vectorized (``ndarray -> ndarray`` of the same shape).
    d2f : callable, optional
        sigma'' where defined (``None`` when sigma has a kink).
    taylor : sequence of float, optional
        Derivatives ``(sigma(0), sigma_1, sigma_2, sigma_3, ...)`` at the origin when
        sigma is smooth there (the sigma_k of (T18)).
    kink : bool
        True when sigma' jumps at ``z = 0`` (ReLU-type). Quadratures split the
        integration domain there (docs/theory.md section 10).
    a_plus, a_minus : float, optional
        Slopes of a scale-invariant activation
        ``sigma(z) = a_plus z [z>0] + a_minus z [z<0]`` (T14), (T17).
    universality : str, optional
        ``"scale-invariant"``, ``"K*=0"`` or ``"other"``; inferred when omitted.
    params : dict
        Parameters the activation was built with (e.g. the leaky-ReLU slope).
    """

    name: str
    f: ArrayFn
    df: ArrayFn
    d2f: ArrayFn | None = None
    taylor: tuple[float, ...] | None = None
    kink: bool = False
    a_plus: float | None = None
    a_minus: float | None = None
    universality: str | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError("Activation: name must be a non-empty string")
        for attr in ("f", "df"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"Activation {self.name!r}: {attr} must be callable")
        if self.d2f is not None and not callable(self.d2f):
            raise TypeError(f"Activation {self.name!r}: d2f must be callable or None")
        if (self.a_plus is None) != (self.a_minus is None):
            raise ValueError(
                f"Activation {self.name!r}: give both a_plus and a_minus "
                "(scale-invariant) or neither"
            )
        if self.taylor is not None:
            object.__setattr__(self, "taylor", tuple(float(t) for t in self.taylor))
        if self.universality is None:
            object.__setattr__(self, "universality", self._infer_class())
        if self.universality not in (SCALE_INVARIANT, K_STAR_ZERO, OTHER):
            raise ValueError(
                f"Activation {self.name!r}: universality must be one of "
                f"{SCALE_INVARIANT!r}, {K_STAR_ZERO!r}, {OTHER!r}; got {self.universality!r}"
            )

    def _infer_class(self) -> str:
        if self.a_plus is not None:
            return SCALE_INVARIANT
        t = self.taylor
        if t is not None and len(t) >= 4 and t[0] == 0.0 and t[1] != 0.0:
            if self.a1 is not None and self.a1 < 0:
                return K_STAR_ZERO
        return OTHER

    @property
    def is_scale_invariant(self) -> bool:
        """True for ``sigma(z) = a_+ z [z>0] + a_- z [z<0]``."""
        return self.universality == SCALE_INVARIANT

    @property
    def a1(self) -> float | None:
        """The constant a_1 = sigma_3/sigma_1 + (3/4)(sigma_2/sigma_1)^2 of (T18), or None."""
        t = self.taylor
        if t is None or len(t) < 4 or t[1] == 0.0:
            return None
        return t[3] / t[1] + 0.75 * (t[2] / t[1]) ** 2

    def moment_ratio(self) -> float | None:
        """3 A_4 / A_2^2 - 1 of (T17) for a scale-invariant activation, else None.

        A_p = (a_+^p + a_-^p) / 2. ReLU: 5; linear: 2.
        """
        if not self.is_scale_invariant:
            return None
        ap, am = float(self.a_plus), float(self.a_minus)
        A2 = (ap**2 + am**2) / 2
        A4 = (ap**4 + am**4) / 2
        return 3 * A4 / A2**2 - 1

    def __reduce_ex__(self, protocol):
        # Built-in activations hold local functions; pickle them by name and parameters so
        # that networks travel to worker processes (sweeps, process pools).
        key = getattr(self, "_registry_key", None)
        if key is not None:
            return (_rebuild, (key, dict(self.params)))
        return super().__reduce_ex__(protocol)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.f(np.asarray(z, dtype=float))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Activation({self.name!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activation):
            return NotImplemented
        if self is other:
            return True
        return (
            self.name == other.name
            and self.params == other.params
            and self.name in _BUILTIN
            and other.name in _BUILTIN
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))


def scale_invariant(a_plus: float, a_minus: float, name: str | None = None) -> Activation:
    """The scale-invariant activation ``a_plus z [z>0] + a_minus z [z<0]`` (T14).

    Parameters
    ----------
    a_plus, a_minus : float
        Slopes on the positive and negative half-lines (not both zero).
    name : str, optional
        Name for tables; defaults to ``"scale_invariant"``.
    """
    ap, am = float(a_plus), float(a_minus)
    if not (math.isfinite(ap) and math.isfinite(am)) or (ap == 0.0 and am == 0.0):
        raise ValueError(
            f"scale_invariant: a_plus and a_minus must be finite and not both 0; got {ap}, {am}"
        )
    smooth = ap == am

    def f(z):
        z = np.asarray(z, dtype=float)
        return np.where(z > 0, ap * z, am * z)

    def df(z):
        z = np.asarray(z, dtype=float)
        return np.where(z > 0, ap, am)

    def d2f(z):
        return np.zeros_like(np.asarray(z, dtype=float))

    act = Activation(
        name=name or "scale_invariant",
        f=f,
        df=df,
        d2f=d2f if smooth else None,
        taylor=(0.0, ap, 0.0, 0.0, 0.0) if smooth else None,
        kink=not smooth,
        a_plus=ap,
        a_minus=am,
        universality=SCALE_INVARIANT,
        params={} if name in ("relu", "linear") else {"a_plus": ap, "a_minus": am},
    )
    if name in (None, "scale_invariant"):
        object.__setattr__(act, "_registry_key", "scale_invariant")
    return act


def leaky_relu(slope: float = 0.01) -> Activation:
    """Leaky ReLU ``z [z>0] + slope z [z<0]`` (scale-invariant class, (T17)).

    Parameters
    ----------
    slope : float
        Negative-side slope, ``0 <= slope < 1``.
    """
    s = float(slope)
    if not (0.0 <= s < 1.0):
        raise ValueError(f"leaky_relu: slope must satisfy 0 <= slope < 1; got {slope!r}")
    act = scale_invariant(1.0, s, name="leaky_relu")
    object.__setattr__(act, "params", {"slope": s})
    object.__setattr__(act, "_registry_key", "leaky_relu")
    return act


def _sigmoid(z):
    return special.expit(z)


_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _normal_pdf(z):
    return _INV_SQRT2PI * np.exp(-0.5 * z * z)


def _normal_cdf(z):
    return special.ndtr(z)


def _make_builtins() -> dict[str, Callable[..., Activation]]:
    def relu() -> Activation:
        return scale_invariant(1.0, 0.0, name="relu")

    def linear() -> Activation:
        return scale_invariant(1.0, 1.0, name="linear")

    def tanh() -> Activation:
        return Activation(
            "tanh",
            f=np.tanh,
            df=lambda z: 1.0 - np.tanh(z) ** 2,  # no overflow of cosh at large |z|
            d2f=lambda z: -2.0 * np.tanh(z) * (1.0 - np.tanh(z) ** 2),
            taylor=(0.0, 1.0, 0.0, -2.0, 0.0, 16.0),
            universality=K_STAR_ZERO,
        )

    def erf() -> Activation:
        c = 2.0 / math.sqrt(math.pi)
        return Activation(
            "erf",
            f=special.erf,
            df=lambda z: c * np.exp(-(np.asarray(z) ** 2)),
            d2f=lambda z: -2.0 * c * np.asarray(z) * np.exp(-(np.asarray(z) ** 2)),
            taylor=(0.0, c, 0.0, -2.0 * c, 0.0, 12.0 * c),
            universality=K_STAR_ZERO,
        )

    def sin() -> Activation:
        return Activation(
            "sin",
            f=np.sin,
            df=np.cos,
            d2f=lambda z: -np.sin(z),
            taylor=(0.0, 1.0, 0.0, -1.0, 0.0, 1.0),
            universality=K_STAR_ZERO,
        )

    def gelu() -> Activation:
        p0 = _INV_SQRT2PI
        return Activation(
            "gelu",
            f=lambda z: np.asarray(z) * _normal_cdf(z),
            df=lambda z: _normal_cdf(z) + np.asarray(z) * _normal_pdf(z),
            d2f=lambda z: (2.0 - np.asarray(z) ** 2) * _normal_pdf(z),
            # d^k/dz^k of z Phi(z) at 0: 0, 1/2, 2 phi(0), 0, -4 phi(0)
            taylor=(0.0, 0.5, 2.0 * p0, 0.0, -4.0 * p0),
            universality=OTHER,
        )

    def swish() -> Activation:
        def df(z):
            s = _sigmoid(z)
            return s * (1.0 + np.asarray(z) * (1.0 - s))

        def d2f(z):
            s = _sigmoid(z)
            z = np.asarray(z)
            return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))

        return Activation(
            "swish",
            f=lambda z: np.asarray(z) * _sigmoid(z),
            df=df,
            d2f=d2f,
            # z sigmoid(z) = z/2 + z^2/4 - z^4/48 + ...
            taylor=(0.0, 0.5, 0.5, 0.0, -0.5),
            universality=OTHER,
        )

    def softplus() -> Activation:
        return Activation(
            "softplus",
            f=lambda z: np.logaddexp(0.0, z),
            df=_sigmoid,
            d2f=lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)),
            taylor=(math.log(2.0), 0.5, 0.25, 0.0, -0.125),
            universality=OTHER,
        )

    def sigmoid() -> Activation:
        def df(z):
            s = _sigmoid(z)
            return s * (1.0 - s)

        def d2f(z):
            s = _sigmoid(z)
            return s * (1.0 - s) * (1.0 - 2.0 * s)

        return Activation(
            "sigmoid",
            f=_sigmoid,
            df=df,
            d2f=d2f,
            taylor=(0.5, 0.25, 0.0, -0.125, 0.0),
            universality=OTHER,
        )

    return {
        "relu": relu,
        "leaky_relu": leaky_relu,
        "linear": linear,
        "tanh": tanh,
        "erf": erf,
        "sin": sin,
        "gelu": gelu,
        "swish": swish,
        "silu": swish,
        "softplus": softplus,
        "sigmoid": sigmoid,
    }


_BUILTIN = _make_builtins()


def available_activations() -> list[str]:
    """Names accepted by :func:`get_activation`."""
    return sorted(_BUILTIN)


def get_activation(name: str | Activation, **params) -> Activation:
    """Look up a built-in activation by name.

    Parameters
    ----------
    name : str or Activation
        One of :func:`available_activations` (``"silu"`` is an alias of ``"swish"``).
        An :class:`Activation` is returned unchanged.
    **params
        Parameters of parameterized activations, e.g. ``slope`` for ``"leaky_relu"``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones) or bad parameters.
    """
    if isinstance(name, Activation):
        if params:
            raise TypeError(
                "get_activation: parameters cannot be applied to an Activation instance"
            )
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"activation must be a name (str) or an Activation; got {type(name).__name__}"
        )
    key = name.strip().lower()
    if key not in _BUILTIN:
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(available_activations())}"
        )
    try:
        act = _BUILTIN[key](**params)
    except TypeError as exc:
        raise TypeError(f"activation {name!r} does not take parameters {sorted(params)}") from exc
    object.__setattr__(act, "_registry_key", key)
    return act


def _rebuild(key: str, params: dict) -> Activation:
    """Unpickle a built-in activation (see ``Activation.__reduce_ex__``)."""
    if key == "scale_invariant":
        return scale_invariant(params["a_plus"], params["a_minus"])
    return get_activation(key, **params)
