"""Infinite-width kernels (T7): the kernel map, its iteration and fixed points.

Susceptibilities (T8) and critical points live in :mod:`corrlib.model.criticality`.

Layer index convention: arrays over layers have a leading axis of length L+1 whose
entry l-1 belongs to the pre-activations z^{(l)}, l = 1, ..., L+1 (entry 0 is
K^{(1)} = Sigma^{(0)} of (T2)).
"""

from __future__ import annotations

import numpy as np

from .._util import check_int, check_kwargs, check_real, warn_deprecated
from ..model.activations import Activation, get_activation
from ..model.channels import ChannelLayout, input_kernel, layer_tensors
from ..model.gaussian import normal_expectation
from ..model.network import Network

__all__ = [
    "infinite_width_kernel",
    "kernel_step",
    "kernel_map",
    "iterate_kernel",
    "fixed_point",
]

#: node counts of the former polar rules; accepted (and ignored) for one release
LEGACY_ORDER = ("n_radial", "n_theta", "n_phi", "n_beta")


def legacy_order(order: dict, func: str) -> None:
    """Reject unknown keywords (with a did-you-mean); deprecate the former node counts."""
    check_kwargs(order, LEGACY_ORDER, func)
    for key, value in order.items():  # still validated, so a typo such as 2.7 is not silent
        check_int(value, key, minimum=1)
    if order:
        warn_deprecated(
            f"{func}({', '.join(f'{k}=' for k in order)}) (quadrature node counts)",
            "nothing: the channel engine chooses its rules per input subset (the value is ignored)",
            stacklevel=4,
        )


def nonfinite_error(act: Activation, quantity: str, layer: int, K_prev: np.ndarray, extra=""):
    """The error for a non-finite ``quantity`` at ``layer`` computed from the kernel K_prev:
    a ValueError if the activation itself returns NaN/inf at the arguments that kernel
    produces, else an OverflowError (an exploding phase or huge inputs)."""
    sd = float(np.sqrt(np.max(np.abs(np.diagonal(K_prev))))) if np.all(np.isfinite(K_prev)) else 0.0
    if np.isfinite(sd) and sd > 0:
        z = np.concatenate([-1, 1] * np.geomspace(1e-3, 10.0, 40)[:, None] * sd)
        with np.errstate(all="ignore"):
            bad = ~(np.isfinite(act.f(z)) & np.isfinite(act.df(z)))
        if bad.any():
            zb = float(z[bad][np.argmin(np.abs(z[bad]))])
            return ValueError(
                f"{quantity} is not finite at layer {layer}: activation {act.name!r} returns "
                f"NaN or inf at z = {zb:.6g} (pre-activations of layer {layer - 1} have standard "
                f"deviation up to {sd:.3g}); make sigma and sigma' finite there"
            )
    return OverflowError(
        f"{quantity} overflowed at layer {layer} (largest |K^({layer - 1})| = "
        f"{float(np.nanmax(np.abs(K_prev))):.3g}){extra}: the network is in an exploding "
        "phase or the inputs are too large; reduce the depth, C_W or the input scale"
    )


def kernel_step(
    activation: Activation, K: np.ndarray, layout: ChannelLayout, C_W: float, C_b: float, **order
) -> np.ndarray:
    """One step of (T7): K' = C_b [a,b values] + C_W <phi_a phi_b>_K.

    Parameters
    ----------
    activation : Activation
    K : ndarray, shape (c, c)
    layout : ChannelLayout
    C_W, C_b : float

    Returns
    -------
    ndarray, shape (c, c)

    Notes
    -----
    <phi_a phi_b>_K by :func:`corrlib.model.channels.layer_tensors`: exact for scale-invariant
    activations (the arc-cosine kernels and their derivative-channel forms), quadrature
    calibrated to 2e-15 per level for smooth ones.

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> K2 = kernel_step(corrlib.get_activation("relu"), np.eye(2), ChannelLayout(2, 0), 2.0, 0.0)
    >>> float(K2[0, 0]), round(float(K2[0, 1]), 12)  # K and the arc-cosine kernel 1/pi
    (1.0, 0.318309886184)
    """
    legacy_order(order, "kernel_step")
    G2 = layer_tensors(activation, K, layout, four_point=False, derivatives=False).G2
    return C_b * layout.bias_mask() + C_W * G2


def infinite_width_kernel(net: Network, X, directions=None, **order) -> np.ndarray:
    """Infinite-width kernels K^{(l)}, l = 1..L+1, of (T7).

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
        Inputs x_1..x_m (rows); a 1-D array is one input.
    directions : array_like, shape (d, n_0), optional
        Directions u_1..u_d of input derivatives.

    Returns
    -------
    ndarray, shape (L+1, c, c)
        Entry l-1 is K^{(l)}; c = m(1+d) channels ordered as in docs/theory.md section 2
        (values at x_1..x_m, then d/du_1 at x_1..x_m, ...).

    Raises
    ------
    OverflowError
        If a kernel overflows (naming the layer): an exploding phase or huge inputs.
    ValueError
        If the activation returns NaN/inf at the arguments a layer produces.

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> net = corrlib.Network.uniform("relu", width=100, depth=3, n_in=2, C_W=2.0)
    >>> K = corrlib.infinite_width_kernel(net, np.array([[1.0, 0.0], [0.6, 0.8]]))
    >>> K.shape
    (4, 2, 2)
    """
    legacy_order(order, "infinite_width_kernel")
    K1, layout = input_kernel(net, X, directions)
    out = np.empty((net.depth + 1, layout.c, layout.c))
    out[0] = K1
    for ell in range(1, net.depth + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            out[ell] = kernel_step(net.activation, out[ell - 1], layout, net.C_W, net.C_b)
        if not np.all(np.isfinite(out[ell])):
            raise nonfinite_error(
                net.activation, f"the kernel K^({ell + 1})", ell + 1, out[ell - 1],
                f" (C_W={net.C_W}, C_b={net.C_b})",
            )  # fmt: skip
    return out


def _check_params(C_W: np.ndarray, C_b: np.ndarray) -> None:
    for name, arr, strict in (("C_W", C_W, True), ("C_b", C_b, False)):
        bad = ~np.isfinite(arr) | ((arr <= 0) if strict else (arr < 0))
        if np.any(bad):
            allowed = "> 0" if strict else ">= 0"
            raise ValueError(
                f"{name} must be a finite real number {allowed}; got {float(arr[bad].ravel()[0])!r}"
            )


def kernel_map(activation: str | Activation, K, C_W, C_b=0.0) -> np.ndarray | float:
    """The single-input map K -> C_b + C_W <sigma(z)^2>_K of (T7), vectorized.

    Parameters
    ----------
    activation : str or Activation
    K, C_W, C_b : float or array_like
        Broadcast together; K >= 0, C_W > 0, C_b >= 0.

    Returns
    -------
    float or ndarray (the broadcast shape)

    Raises
    ------
    ValueError
        K < 0, C_W <= 0, C_b < 0 or non-finite (naming the parameter), or an activation that
        returns NaN/inf at the arguments of K.
    OverflowError
        If the result exceeds float64.

    Notes
    -----
    <sigma^2>_K by :func:`corrlib.model.gaussian.normal_expectation`: 1e-13 relative at every K
    (e.g. tanh at K = 1e8: 1 - sqrt(2 / (pi K)) to 8e-9 relative, not 1).

    Examples
    --------
    >>> round(kernel_map("relu", 3.0, 2.0), 12)  # C_W K / 2 * 2
    3.0
    >>> import numpy as np
    >>> K = 1e8  # <tanh^2>_K = 1 - <sech^2>_K = 1 - (2 - pi^2 / (12 K)) / sqrt(2 pi K) + O(K^-5/2)
    >>> ref = 1 - (2 - np.pi**2 / (12 * K)) / np.sqrt(2 * np.pi * K)
    >>> bool(abs(kernel_map("tanh", K, 1.0) - ref) < 1e-15)
    True
    """
    act = get_activation(activation)
    K, C_W, C_b = np.broadcast_arrays(
        np.asarray(K, dtype=float), np.asarray(C_W, dtype=float), np.asarray(C_b, dtype=float)
    )
    if np.any(~np.isfinite(K)) or np.any(K < 0):
        raise ValueError(
            f"K must be finite and >= 0; got {float(K[~(K >= 0) | ~np.isfinite(K)].ravel()[0])!r}"
        )
    _check_params(C_W, C_b)
    sdu, inv = np.unique(np.sqrt(K), return_inverse=True)
    g = normal_expectation([lambda z: act.f(z) ** 2], sdu, name="kernel_map")[0][inv]
    with np.errstate(over="ignore"):
        out = C_b + C_W * g.reshape(K.shape)
    if not np.all(np.isfinite(out)):
        raise OverflowError(
            f"kernel_map overflows float64: C_b + C_W <sigma^2>_K at K = "
            f"{float(K[~np.isfinite(out)].ravel()[0]):.6g} exceeds 1.8e308"
        )
    return float(out) if out.ndim == 0 else out


def iterate_kernel(
    activation: str | Activation, K1, C_W, C_b=0.0, depth: int = 1
) -> np.ndarray | float:
    """K^{(depth+1)} from K^{(1)} by ``depth`` steps of (T7), vectorized over K1, C_W, C_b.

    With a large ``depth`` this approaches the fixed point K* of the map in the phases where
    it is attracting (the approach is a power law at criticality, docs/theory.md section 7).

    Parameters
    ----------
    activation : str or Activation
    K1, C_W, C_b : float or array_like
        Broadcast together (K1 >= 0, C_W > 0, C_b >= 0).
    depth : int
        Number of steps >= 0.

    Returns
    -------
    float or ndarray

    Raises
    ------
    OverflowError
        If the kernel overflows (naming the step): an exploding phase.

    Examples
    --------
    >>> round(iterate_kernel("relu", 1.5, 2.0, 0.0, depth=10), 12)  # critical: K is preserved
    1.5
    """
    depth = check_int(depth, "depth", minimum=0)
    K = np.asarray(K1, dtype=float)
    for step in range(depth):
        try:
            K = np.asarray(kernel_map(activation, K, C_W, C_b))
        except OverflowError as exc:
            raise OverflowError(
                f"the kernel overflowed at layer {step + 2} (step {step + 1} of {depth}; largest "
                f"K before it {float(np.max(K)):.3g}): an exploding phase; reduce depth or C_W"
            ) from exc
    return float(K) if K.ndim == 0 else K


def fixed_point(
    activation: str | Activation,
    C_W,
    C_b=0.0,
    *,
    K_max: float = 1e6,
    steps: int = 200,
) -> np.ndarray | float:
    """The largest fixed point K* = C_b + C_W <sigma^2>_{K*} of (T7), vectorized.

    The map is iterated downward from large K in any phase with a finite fixed point, so the
    largest root of f(K) = C_b + C_W g(K) - K is the one a deep network's kernel reaches
    from large inputs (for tanh-like activations g is concave and it is the attracting one;
    at C_b = 0 it is K* = 0 exactly when C_W <= 1/sigma_1^2). Found by bisection on
    [0, K_max], so it is reliable also at criticality where iteration converges only as a
    power law.

    Parameters
    ----------
    activation : str or Activation
    C_W, C_b : float or array_like
        Broadcast together; C_W > 0, C_b >= 0.
    K_max : float
        Upper end of the search (> 0); entries with f(K_max) > 0 (no fixed point below K_max,
        e.g. ReLU with C_W >= 2: an exploding phase) return inf.
    steps : int
        Bisection steps (200 reach float64 resolution).

    Returns
    -------
    float or ndarray (the broadcast shape)

    Examples
    --------
    >>> round(fixed_point("relu", 1.5, 0.5), 8)  # C_b / (1 - C_W / 2)
    2.0
    """
    C_W, C_b = np.broadcast_arrays(np.asarray(C_W, dtype=float), np.asarray(C_b, dtype=float))
    _check_params(C_W, C_b)
    K_max = check_real(K_max, "K_max", minimum=0.0, strict_min=True)
    steps = check_int(steps, "steps", minimum=1)
    lo = np.zeros(C_W.shape)
    hi = np.full(C_W.shape, K_max)
    f_hi = np.asarray(kernel_map(activation, hi, C_W, C_b)) - hi
    explode = f_hi > 0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        up = np.asarray(kernel_map(activation, mid, C_W, C_b)) - mid > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    K = np.where(explode, np.inf, 0.5 * (lo + hi))
    return float(K) if K.ndim == 0 else K
