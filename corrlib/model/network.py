"""The random fully connected network model (T1) and validation of its inputs."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._util import check_real
from .activations import Activation, get_activation

__all__ = ["Network", "validate_inputs"]


@dataclass(frozen=True)
class Network:
    """A random fully connected network (T1).

    ``W^{(l)}_{ij} ~ N(0, C_W / n_{l-1})``, ``b^{(l)}_i ~ N(0, C_b)``,
    ``z^{(l+1)} = b^{(l+1)} + W^{(l+1)} sigma(z^{(l)})``.

    Parameters
    ----------
    widths : sequence of int
        ``[n_0, n_1, ..., n_L, n_{L+1}]``: input dimension, the L hidden widths and the
        output width. Length >= 2, every entry an integer >= 1.
    activation : str or Activation
        The nonlinearity sigma (a name from :func:`corrlib.available_activations`).
    C_W : float
        Weight variance scale, > 0.
    C_b : float
        Bias variance, >= 0.

    Attributes
    ----------
    depth : int
        L, the number of hidden layers.
    """

    widths: tuple[int, ...]
    activation: Activation
    C_W: float = 1.0
    C_b: float = 0.0

    def __post_init__(self) -> None:
        widths = self.widths
        if isinstance(widths, (str, bytes)) or not isinstance(widths, (Sequence, np.ndarray)):
            raise TypeError(
                f"widths must be a sequence of integers [n_0, ..., n_L, n_(L+1)]; got {widths!r}"
            )
        ws = []
        for i, w in enumerate(widths):
            if isinstance(w, bool) or not isinstance(w, numbers.Integral):
                raise TypeError(f"widths[{i}] must be an integer >= 1; got {w!r}")
            if int(w) < 1:
                raise ValueError(f"widths[{i}] must be an integer >= 1; got {w!r}")
            ws.append(int(w))
        if len(ws) < 2:
            raise ValueError(
                f"widths must have length >= 2 ([n_0, ..., n_(L+1)]); got {len(ws)} entries"
            )
        object.__setattr__(self, "widths", tuple(ws))
        object.__setattr__(self, "activation", get_activation(self.activation))
        object.__setattr__(self, "C_W", check_real(self.C_W, "C_W", minimum=0.0, strict_min=True))
        object.__setattr__(self, "C_b", check_real(self.C_b, "C_b", minimum=0.0))

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return len(self.widths) - 2

    @property
    def n_in(self) -> int:
        """n_0, the input dimension."""
        return self.widths[0]

    @property
    def n_out(self) -> int:
        """n_{L+1}, the output width."""
        return self.widths[-1]

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """(n_1, ..., n_L)."""
        return self.widths[1:-1]

    @classmethod
    def uniform(
        cls,
        activation: str | Activation,
        width: int,
        depth: int,
        n_in: int = 1,
        n_out: int = 1,
        C_W: float = 1.0,
        C_b: float = 0.0,
    ) -> Network:
        """L = ``depth`` hidden layers of equal ``width``.

        Parameters
        ----------
        activation : str or Activation
        width : int
            n_1 = ... = n_L >= 1.
        depth : int
            L >= 0.
        n_in, n_out : int
            n_0 and n_{L+1}.
        C_W, C_b : float
            Weight and bias variances.
        """
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 0:
            raise ValueError(f"depth must be an integer >= 0; got {depth!r}")
        for name, val in (("width", width), ("n_in", n_in), ("n_out", n_out)):
            if isinstance(val, bool) or not isinstance(val, numbers.Integral):
                raise TypeError(f"{name} must be an integer >= 1; got {val!r}")
            if val < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {val!r}")
        return cls((n_in, *([width] * int(depth)), n_out), activation, C_W, C_b)

    @classmethod
    def critical(
        cls,
        activation: str | Activation,
        width: int,
        depth: int,
        n_in: int = 1,
        n_out: int = 1,
    ) -> Network:
        """Like :meth:`uniform` at the critical (C_b, C_W) of the activation (T8).

        Raises
        ------
        ValueError
            When the activation has no critical point.
        """
        from .criticality import critical_point

        act = get_activation(activation)
        C_b, C_W, _ = critical_point(act)
        return cls.uniform(act, width, depth, n_in=n_in, n_out=n_out, C_W=C_W, C_b=C_b)

    def with_(self, **changes) -> Network:
        """A copy with some fields replaced (``widths``, ``activation``, ``C_W``, ``C_b``)."""
        from dataclasses import replace

        return replace(self, **changes)


def validate_inputs(net: Network, X, directions=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Check and convert the inputs X (m, n_0) and directions (d, n_0) of ``net``.

    Returns float64 copies. Raises ValueError/TypeError naming the parameter on a
    wrong shape, an empty array or non-finite entries. No broadcasting is done.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a corrlib.Network; got {type(net).__name__}")
    X = _as_matrix(X, "X", net.n_in)
    if directions is not None:
        directions = _as_matrix(directions, "directions", net.n_in)
    return X, directions


def _as_matrix(A, name: str, n0: int) -> np.ndarray:
    try:
        arr = np.array(A, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array of shape (k, n_0={n0})") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (k, n_0={n0}); got shape {arr.shape}")
    if arr.shape[1] != n0:
        raise ValueError(
            f"{name} must have n_0={n0} columns (the network's input width); got shape {arr.shape}"
        )
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr
