"""Leading large-depth forms at criticality for the universality classes (T17), (T18).

docs/theory.md section 7. These are the curves notebooks draw beside the full recursion
(:func:`corrlib.finite_width`); they are leading order in 1/n and, for the K* = 0 class,
in 1/l (convergence is logarithmically slow).
"""

from __future__ import annotations

import numpy as np

from ..model.activations import K_STAR_ZERO, Activation, get_activation
from ..model.criticality import critical_point
from .recursion import single_input_coefficients

__all__ = ["a1", "moment_ratio", "leading_order"]


def a1(activation: str | Activation) -> float:
    """a_1 = sigma_3/sigma_1 + (3/4)(sigma_2/sigma_1)^2 from the Taylor coefficients (T18).

    tanh and erf: -2 (erf after rescaling sigma_1 out); sin: -1.

    Raises
    ------
    ValueError
        If the activation has no Taylor data at 0 (a kink) or sigma_1 = 0.
    """
    act = get_activation(activation)
    val = act.a1
    if val is None:
        raise ValueError(
            f"activation {act.name!r} has no Taylor coefficients sigma_1..sigma_3 at 0 "
            "(a_1 is defined only for activations smooth at 0 with sigma_1 != 0)"
        )
    return float(val)


def moment_ratio(activation: str | Activation) -> float:
    """3 A_4 / A_2^2 - 1 of (T17), A_p = (a_+^p + a_-^p)/2 (ReLU: 5, linear: 2).

    Raises
    ------
    ValueError
        If the activation is not scale-invariant.
    """
    act = get_activation(activation)
    val = act.moment_ratio()
    if val is None:
        raise ValueError(f"activation {act.name!r} is not in the scale-invariant class")
    return float(val)


def leading_order(
    activation: str | Activation,
    layers,
    width,
    K1: float = 1.0,
) -> dict[str, np.ndarray]:
    """Leading large-depth forms of K, V/K^2 and kappa_4/kappa_2^2 at criticality.

    Parameters
    ----------
    activation : str or Activation
        Scale-invariant, K* = 0 class, or an activation with a critical point K* > 0.
    layers : array_like of int
        Layer indices l >= 1 (the pre-activation z^{(l)}; the output is l = L+1).
    width : int or array_like
        n (equal widths) or the hidden widths (n_1, n_2, ...) for the scale-invariant class,
        where V^{(l)}/K^2 = r * sum_{l' < l} 1/n_{l'} (T17).
    K1 : float
        K^{(1)} (scale-invariant class: the kernel is constant, K^{(l)} = K^{(1)}).

    Returns
    -------
    dict with arrays (len(layers),): "K", "V_over_K2", "normalized_kappa4" (= 3 V/K^2).

    Notes
    -----
    Scale-invariant (T17): K = K1, V/K^2 = (3 A_4/A_2^2 - 1) sum_{l'<l} 1/n_{l'}.
    K* = 0 class (T18): K ~ 1/(-a_1 l), V/K^2 ~ (2/3) l/n.
    K* != 0 (gelu, swish), started at K^{(1)} = K* (``K1`` is ignored): K = K*,
    V/K^2 = (l - 1) C_W^2 (<sigma^4> - <sigma^2>^2)_{K*} / (K*^2 n), from (T12) with
    chi_par = 1. The fixed point is only marginally stable (docs/theory.md section 7).
    """
    act = get_activation(activation)
    ell = np.asarray(layers, dtype=float)
    if (
        ell.size == 0
        or np.any(~np.isfinite(ell))
        or np.any(ell < 1)
        or np.any(ell != np.round(ell))
    ):
        raise ValueError(f"layers must be integers >= 1; got {layers!r}")
    w = np.atleast_1d(np.asarray(width, dtype=float))
    if w.ndim != 1 or w.size == 0 or np.any(~np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(
            f"width must be a positive number or a list of positive widths; got {width!r}"
        )
    if not act.is_scale_invariant and w.size != 1:
        raise ValueError(
            f"width must be one number for activation {act.name!r} (per-layer widths are "
            f"supported for the scale-invariant class only); got {width!r}"
        )
    if act.is_scale_invariant:
        r = act.moment_ratio()
        if w.size == 1:
            s = (ell - 1.0) / w[0]
        else:
            cums = np.concatenate([[0.0], np.cumsum(1.0 / w)])
            li = ell.astype(int) - 1
            if np.any(li >= len(cums)):
                raise ValueError("width lists fewer hidden layers than requested by layers")
            s = cums[li]
        K = np.full_like(ell, float(K1))
        V = r * s
    elif act.universality == K_STAR_ZERO:
        n = float(w[0])
        K = 1.0 / (-act.a1 * ell)
        V = (2.0 / 3.0) * ell / n
    else:
        # K* != 0 (gelu, swish): started at its critical K*, the kernel stays there and, with
        # chi_par = 1, (T12) gives V^{(l)} = (l - 1) v(K*)/n, v = C_W^2 (<sigma^4> - <sigma^2>^2).
        try:
            cp = critical_point(act)
        except ValueError as exc:
            raise ValueError(
                f"activation {act.name!r} has no critical point, so no large-depth form; "
                "use corrlib.finite_width for its finite-width statistics"
            ) from exc
        n = float(w[0])
        co = single_input_coefficients(act, cp.K_star, cp.C_W, cp.C_b)
        K = np.full_like(ell, cp.K_star)
        V = co["v"] / cp.K_star**2 * (ell - 1.0) / n
    return {"K": K, "V_over_K2": V, "normalized_kappa4": 3.0 * V}
