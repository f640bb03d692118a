"""Input handling shared by the exact laws: one input x, one direction u, (T2)."""

from __future__ import annotations

import numpy as np

from ..model.channels import input_kernel
from ..model.network import Network

__all__ = ["as_single_row", "check_closed_form", "check_k_max", "initial_variance"]


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def as_single_row(arr, name: str, n0: int) -> np.ndarray:
    try:
        a = np.array(arr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array of shape (n_0,) or (1, n_0)") from exc
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] != 1 or a.shape[1] != n0:
        raise ValueError(
            f"{name} must have shape (n_0,) or (1, n_0) with n_0={n0} (one input / one "
            f"direction); got shape {np.shape(arr)}"
        )
    return a


def check_k_max(k_max) -> int:
    if isinstance(k_max, bool) or not isinstance(k_max, (int, np.integer)) or k_max < 0:
        raise ValueError(f"k_max must be an integer >= 0; got {k_max!r}")
    return int(k_max)


def initial_variance(net: Network, x, directions) -> float:
    """Sigma^{(0)} of the requested channel (value or derivative), (T2)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a corrlib.Network; got {type(net).__name__}")
    x = as_single_row(x, "x", net.n_in)
    if directions is None:
        K1, _ = input_kernel(net, x)
        return float(K1[0, 0])
    u = as_single_row(directions, "directions", net.n_in)
    K1, _ = input_kernel(net, x, u)
    return float(K1[1, 1])


def check_closed_form(net: Network, directions, func: str) -> tuple[float, float]:
    act = net.activation
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
