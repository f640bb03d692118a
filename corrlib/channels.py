"""Channel bookkeeping (docs/theory.md section 2).

With m inputs x_1..x_m and d directions u_1..u_d there are c = m(1+d) channels, ordered
[values at x_1..x_m, then d/du_1 at x_1..x_m, ..., then d/du_d at x_1..x_m].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import Network, validate_inputs

__all__ = ["ChannelLayout", "input_kernel"]


@dataclass(frozen=True)
class ChannelLayout:
    """Which input and which direction each channel belongs to.

    Attributes
    ----------
    m, d : int
        Number of inputs and of directions.
    input : ndarray of int, shape (c,)
        Input index alpha of each channel.
    direction : ndarray of int, shape (c,)
        Direction index k of a derivative channel, -1 for a value channel.
    """

    m: int
    d: int

    @property
    def c(self) -> int:
        return self.m * (1 + self.d)

    @property
    def input(self) -> np.ndarray:
        return np.tile(np.arange(self.m), 1 + self.d)

    @property
    def direction(self) -> np.ndarray:
        return np.repeat(np.arange(-1, self.d), self.m)

    @property
    def is_value(self) -> np.ndarray:
        return self.direction < 0

    def value_channel(self, a: int) -> int:
        """Index of the value channel of the input of channel ``a``."""
        return int(self.input[a])

    def bias_mask(self) -> np.ndarray:
        """(c, c) indicator [a, b both value channels] (where C_b enters (T2), (T7))."""
        v = self.is_value.astype(float)
        return np.outer(v, v)


def input_kernel(net: Network, X, directions=None) -> tuple[np.ndarray, ChannelLayout]:
    """Sigma^{(0)} = K^{(1)} of (T2): C_b [a,b values] + (C_W/n_0) <v_a, v_b>.

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
    directions : array_like, shape (d, n_0), optional

    Returns
    -------
    K1 : ndarray, shape (c, c)
    layout : ChannelLayout
    """
    X, U = validate_inputs(net, X, directions)
    d = 0 if U is None else U.shape[0]
    layout = ChannelLayout(X.shape[0], d)
    V = (
        X
        if U is None
        else np.vstack([X] + [np.repeat(U[k : k + 1], X.shape[0], axis=0) for k in range(d)])
    )
    K1 = net.C_b * layout.bias_mask() + (net.C_W / net.n_in) * (V @ V.T)
    return 0.5 * (K1 + K1.T), layout
