"""Infinite-width kernels (T7): the kernel map, its iteration and fixed points.

Susceptibilities (T8) and critical points live in :mod:`corrlib.model.criticality`.

Layer index convention: arrays over layers have a leading axis of length L+1 whose
entry l-1 belongs to the pre-activations z^{(l)}, l = 1, ..., L+1 (entry 0 is
K^{(1)} = Sigma^{(0)} of (T2)).
"""

from __future__ import annotations

import numpy as np

from ..model.activations import Activation, get_activation
from ..model.channels import ChannelExpectation, ChannelLayout, input_kernel
from ..model.gaussian import gaussian_rule
from ..model.network import Network

__all__ = [
    "infinite_width_kernel",
    "kernel_step",
    "kernel_map",
    "iterate_kernel",
    "fixed_point",
]


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
    """
    c = layout.c
    E = ChannelExpectation(activation, K, layout, **order)
    pairs = [(a, b) for a in range(c) for b in range(a, c)]
    # entries with an odd number of derivative channels along some direction vanish
    # only when K has the corresponding symmetry; compute every entry.
    vals = E.expect_many([((a, b), None) for a, b in pairs])
    out = np.empty((c, c))
    for (a, b), v in zip(pairs, vals, strict=True):
        out[a, b] = out[b, a] = v
    return C_b * layout.bias_mask() + C_W * out


def infinite_width_kernel(net: Network, X, directions=None, **order) -> np.ndarray:
    """Infinite-width kernels K^{(l)}, l = 1..L+1, of (T7).

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
        Inputs x_1..x_m (rows).
    directions : array_like, shape (d, n_0), optional
        Directions u_1..u_d of input derivatives.
    **order
        Quadrature node counts (see :func:`corrlib.gaussian.gaussian_rule`).

    Returns
    -------
    ndarray, shape (L+1, c, c)
        Entry l-1 is K^{(l)}; c = m(1+d) channels ordered as in docs/theory.md section 2
        (values at x_1..x_m, then d/du_1 at x_1..x_m, ...).

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> net = corrlib.Network.uniform("relu", width=100, depth=3, n_in=2, C_W=2.0)
    >>> K = corrlib.infinite_width_kernel(net, np.array([[1.0, 0.0], [0.6, 0.8]]))
    >>> K.shape
    (4, 2, 2)
    """
    K1, layout = input_kernel(net, X, directions)
    out = np.empty((net.depth + 1, layout.c, layout.c))
    out[0] = K1
    for ell in range(1, net.depth + 1):
        out[ell] = kernel_step(net.activation, out[ell - 1], layout, net.C_W, net.C_b, **order)
        if not np.all(np.isfinite(out[ell])):
            raise FloatingPointError(
                f"the kernel overflowed at layer {ell + 1} (C_W={net.C_W}, C_b={net.C_b}): "
                "the network is in an exploding phase; reduce depth or C_W"
            )
    return out


def kernel_map(activation: str | Activation, K, C_W, C_b=0.0) -> np.ndarray | float:
    """The single-input map K -> C_b + C_W <sigma(z)^2>_K of (T7), vectorized.

    Parameters
    ----------
    activation : str or Activation
    K, C_W, C_b : float or array_like
        Broadcast together; K >= 0.

    Returns
    -------
    float or ndarray (the broadcast shape)
    """
    act = get_activation(activation)
    K, C_W, C_b = np.broadcast_arrays(
        np.asarray(K, dtype=float), np.asarray(C_W, dtype=float), np.asarray(C_b, dtype=float)
    )
    if np.any(~np.isfinite(K)) or np.any(K < 0):
        raise ValueError("K must be finite and >= 0")
    rule = gaussian_rule(np.array([[1.0]]), "axes")  # standard normal, split at 0
    xi, w = rule.points[:, 0], rule.weights
    g = (act.f(np.sqrt(K)[..., None] * xi) ** 2) @ w
    out = C_b + C_W * g
    return float(out) if out.ndim == 0 else out


def iterate_kernel(
    activation: str | Activation, K1, C_W, C_b=0.0, depth: int = 1
) -> np.ndarray | float:
    """K^{(depth+1)} from K^{(1)} by ``depth`` steps of (T7), vectorized over K1, C_W, C_b.

    With a large ``depth`` this approaches the fixed point K* of the map in the phases where
    it is attracting (the approach is a power law at criticality, docs/theory.md section 7).
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0; got {depth!r}")
    K = np.asarray(K1, dtype=float)
    for _ in range(int(depth)):
        K = np.asarray(kernel_map(activation, K, C_W, C_b))
        if not np.all(np.isfinite(K)):
            raise FloatingPointError("the kernel overflowed: an exploding phase; reduce depth")
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
        Broadcast together.
    K_max : float
        Upper end of the search; entries with f(K_max) > 0 (no fixed point below K_max,
        e.g. ReLU with C_W >= 2: an exploding phase) return inf.
    steps : int
        Bisection steps (200 reach float64 resolution).

    Returns
    -------
    float or ndarray (the broadcast shape)
    """
    C_W, C_b = np.broadcast_arrays(np.asarray(C_W, dtype=float), np.asarray(C_b, dtype=float))
    if np.any(~(C_W > 0)) or np.any(~(C_b >= 0)):
        raise ValueError("C_W must be > 0 and C_b >= 0")
    lo = np.zeros(C_W.shape)
    hi = np.full(C_W.shape, float(K_max))
    f_hi = np.asarray(kernel_map(activation, hi, C_W, C_b)) - hi
    explode = f_hi > 0
    for _ in range(int(steps)):
        mid = 0.5 * (lo + hi)
        up = np.asarray(kernel_map(activation, mid, C_W, C_b)) - mid > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    K = np.where(explode, np.inf, 0.5 * (lo + hi))
    return float(K) if K.ndim == 0 else K
