"""Input handling shared by the exact laws: one input X, one direction u, Sigma^{(0)} (T2).

Every entry point of :mod:`corrlib.exact` takes the input as ``X`` of shape ``(1, n_0)`` (a 1-D
array of length ``n_0`` is accepted as one input), like the rest of corrlib. The old keyword
``x=`` keeps working for one release with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._util import check_int, check_kwargs, warn_deprecated
from ..model.network import Network

__all__ = [
    "check_closed_form",
    "check_closed_form_cost",
    "check_k_max",
    "check_network",
    "initial_log_variance",
    "resolve_X",
    "single_row",
]

#: caps on the closed forms' work: log-sum-exp terms for leaky activations (about 2-4 s of
#: CPU), array elements otherwise (k_max+1 by n+1 float64 entries, ~160 MB)
MAX_CLOSED_FORM_TERMS = 2.0e8
MAX_CLOSED_FORM_ELEMENTS = 2.0e7


def check_network(net: Any) -> Network:
    """``net`` if it is a :class:`corrlib.Network`, else a TypeError."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a corrlib.Network; got {net!r} ({type(net).__name__})")
    return net


def resolve_X(
    X: Any, kwargs: dict, func: str, params: Iterable[str], *, stacklevel: int = 4
) -> Any:
    """The input ``X``, honouring the deprecated keyword ``x=``; unknown keywords are rejected.

    Parameters
    ----------
    X : array_like or None
        What the caller passed as ``X``.
    kwargs : dict
        The remaining keyword arguments of ``func`` (``x`` is popped from it).
    func : str
        Name of the calling function, for messages.
    params : iterable of str
        The keyword parameters ``func`` accepts (for the did-you-mean of unknown ones).
    stacklevel : int
        Of the DeprecationWarning (4: the caller of a public function calling this directly).
    """
    if "x" in kwargs:
        old = kwargs.pop("x")
        if X is not None:
            raise TypeError(f"{func}() got both X and the deprecated x; pass X only")
        warn_deprecated(f"{func}(x=...)", f"{func}(X=...)", stacklevel=stacklevel)
        X = old
    check_kwargs(kwargs, tuple(params), func)
    if X is None:
        raise TypeError(
            f"{func}() missing required argument 'X' (one input, shape (1, n_0) or (n_0,))"
        )
    return X


def single_row(arr: Any, name: str, n0: int) -> np.ndarray:
    """``arr`` as a float64 array of shape ``(1, n0)``: one input or one direction.

    Raises
    ------
    TypeError
        For complex, boolean, string or object data.
    ValueError
        For a wrong shape, several rows, or non-finite entries.
    """
    try:
        a = np.asarray(arr)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"{name} must be a real array of shape (1, n_0) or (n_0,) with n_0={n0}; got a "
            f"ragged sequence"
        ) from exc
    if a.dtype.kind not in "iuf":
        kind = {"c": "complex", "b": "boolean"}.get(a.dtype.kind, a.dtype.name)
        raise TypeError(
            f"{name} must be a real array of shape (1, n_0) or (n_0,) with n_0={n0}; got "
            f"{kind} data"
        )
    a = a.astype(float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != n0 or a.shape[0] != 1:
        hint = ""
        if a.ndim == 2 and a.shape[1] == n0 and a.shape[0] > 1:
            hint = (
                " (the exact laws follow one input; for several inputs use "
                "corrlib.finite_width or corrlib.estimate_cumulants)"
            )
        raise ValueError(
            f"{name} must have shape (1, n_0) or (n_0,) with n_0={n0}; got shape "
            f"{np.shape(arr)}{hint}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN or inf); got {a[0].tolist()!r}")
    return a


def check_k_max(k_max: Any, name: str = "k_max") -> int:
    """``k_max`` as an int >= 0 (TypeError for non-integers, ValueError below 0)."""
    return check_int(k_max, name, minimum=0)


def check_closed_form_cost(net: Network, k_max: int, func: str) -> None:
    """Refuse a closed-form evaluation whose cost would explode (k_max = 10^6 used to hang).

    (T14) costs about ``(k_max+1)(k_max+2)/2 (n+1)`` log-sum-exp terms per distinct hidden
    width n for leaky activations (both slopes nonzero and different) and ``(k_max+1)(n+1)``
    array entries otherwise (one slope 0, or equal slopes).
    """
    act = net.activation
    quadratic = 0.0 != float(act.a_minus) ** 2 != float(act.a_plus) ** 2 != 0.0
    per_k = (k_max + 2) / 2.0 if quadratic else 1.0
    cost = sum((k_max + 1) * per_k * (n + 1) for n in set(net.hidden_widths))
    cap = MAX_CLOSED_FORM_TERMS if quadratic else MAX_CLOSED_FORM_ELEMENTS
    if cost > cap:
        formula = "(k_max+1)(k_max+2)/2 (n+1)" if quadratic else "(k_max+1)(n+1)"
        raise ValueError(
            f"{func}: k_max={k_max} costs about {cost:.1e} terms ({formula} per distinct "
            f"hidden width n); the cap is {cap:.0e} (a few seconds, ~160 MB). Ask for fewer "
            "moments: the k-th moment of Sigma is carried by paths of probability about "
            "exp(-k^2 L/n), so very high moments say little about the network"
        )


def initial_log_variance(net: Network, X: Any, directions: Any = None) -> float:
    """log Sigma^{(0)} of the value channel, or of the derivative channel along ``directions``.

    Sigma^{(0)} = C_b + C_W |x|^2 / n_0 for the value channel and C_W |u|^2 / n_0 for a
    derivative channel (T2), evaluated without overflow for any finite input (``-inf`` when it
    is 0).
    """
    check_network(net)
    x = single_row(X, "X", net.n_in)[0]
    if directions is None:
        v, C_b = x, net.C_b
    else:
        v, C_b = single_row(directions, "directions", net.n_in)[0], 0.0
    scale = float(np.max(np.abs(v)))
    if 1e-150 < scale < 1e150:  # the plain formula of input_kernel, bit for bit
        s0 = C_b + (net.C_W / net.n_in) * float(v @ v)
        return math.log(s0) if s0 > 0 else -math.inf
    if scale == 0.0:
        return math.log(C_b) if C_b > 0 else -math.inf
    w = v / scale
    log_part = 2.0 * math.log(scale) + math.log((net.C_W / net.n_in) * float(w @ w))
    if C_b > 0:
        return float(np.logaddexp(math.log(C_b), log_part))
    return log_part


def check_closed_form(net: Network, directions: Any, func: str) -> tuple[float, float]:
    """(a_+, a_-) of a scale-invariant activation; the closed form's preconditions enforced."""
    act = check_network(net).activation
    if not act.is_scale_invariant:
        raise ValueError(
            f"{func}: the closed form (T14) needs a scale-invariant activation "
            f"a_+ z [z>0] + a_- z [z<0]; got {act.name!r}. Use corrlib.exact.single_input "
            "for any activation."
        )
    if directions is None and net.C_b != 0.0:
        raise ValueError(
            f"{func}: the closed form (T14) for the value channel needs C_b = 0; got "
            f"C_b={net.C_b!r}. Use corrlib.exact.single_input for C_b > 0 (derivative channels, "
            "given via `directions`, accept any C_b by (T16))."
        )
    return float(act.a_plus), float(act.a_minus)
