"""The random fully connected network model (T1) and validation of its inputs."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._util import check_int, check_kwargs, check_real
from .activations import Activation, get_activation
from .criticality import critical_point

__all__ = ["Network", "validate_inputs"]

_FIELDS = ("widths", "activation", "C_W", "C_b")


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
        The nonlinearity sigma (a name from :func:`corrlib.available_activations`, or an
        :class:`~corrlib.Activation`).
    C_W : float
        Weight variance scale, > 0.
    C_b : float
        Bias variance, >= 0.

    Attributes
    ----------
    depth : int
        L, the number of hidden layers.

    Raises
    ------
    TypeError
        For a value of the wrong type (a non-integer width, a non-real variance).
    ValueError
        For a value out of range (a width < 1, C_W <= 0, C_b < 0, fewer than 2 widths).

    Notes
    -----
    Networks are immutable and compare (and hash) by their fields; the activation compares by
    what it computes (see :mod:`corrlib.model.activations`), not by its name.

    Examples
    --------
    >>> net = Network((3, 16, 16, 1), "tanh", C_W=1.0)
    >>> net.depth, net.n_in, net.hidden_widths
    (2, 3, (16, 16))
    >>> net == Network([3, 16, 16, 1], "TANH")
    True
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
        ws = tuple(check_int(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths))
        if len(ws) < 2:
            raise ValueError(
                f"widths must have length >= 2 ([n_0, ..., n_(L+1)]); got {len(ws)} entries"
            )
        object.__setattr__(self, "widths", ws)
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
        """L = ``depth`` hidden layers of equal ``width`` (T1).

        Parameters
        ----------
        activation : str or Activation
        width : int
            n_1 = ... = n_L >= 1.
        depth : int
            L >= 0.
        n_in, n_out : int
            n_0 >= 1 and n_{L+1} >= 1.
        C_W, C_b : float
            Weight (> 0) and bias (>= 0) variances.

        Returns
        -------
        Network
            With ``widths = (n_in, width, ..., width, n_out)`` (L + 2 entries).

        Raises
        ------
        TypeError, ValueError
            As :class:`Network`, naming the argument (``width``, ``depth``, ``n_in``, ...).

        Examples
        --------
        >>> Network.uniform("relu", width=16, depth=3, n_in=4, C_W=2.0).widths
        (4, 16, 16, 16, 1)
        """
        width, depth, n_in, n_out = _check_shape_args(width, depth, n_in, n_out)
        return cls((n_in, *([width] * depth), n_out), activation, C_W, C_b)

    @classmethod
    def critical(
        cls,
        activation: str | Activation,
        width: int,
        depth: int,
        n_in: int = 1,
        n_out: int = 1,
    ) -> Network:
        """Like :meth:`uniform` at the critical (C_W, C_b) of the activation (T8).

        Parameters
        ----------
        activation : str or Activation
            Built in, or a user :class:`~corrlib.Activation` (its class is inferred from f).
        width, depth, n_in, n_out : int
            As in :meth:`uniform`.

        Returns
        -------
        Network

        Raises
        ------
        ValueError
            When the activation has no critical point (e.g. softplus, sigmoid).

        Examples
        --------
        >>> net = Network.critical("tanh", width=8, depth=2)
        >>> net.C_W, net.C_b
        (1.0, 0.0)
        >>> Network.critical("relu", width=8, depth=2).C_W
        2.0
        """
        width, depth, n_in, n_out = _check_shape_args(width, depth, n_in, n_out)
        act = get_activation(activation)
        point = critical_point(act)
        return cls.uniform(act, width, depth, n_in=n_in, n_out=n_out, C_W=point.C_W, C_b=point.C_b)

    def with_(self, **changes: Any) -> Network:
        """A copy with some fields replaced (``widths``, ``activation``, ``C_W``, ``C_b``).

        Examples
        --------
        >>> Network((2, 4, 1), "relu").with_(C_W=2.0).C_W
        2.0
        """
        check_kwargs(changes, _FIELDS, "Network.with_")
        return replace(self, **changes)


def _check_shape_args(width: Any, depth: Any, n_in: Any, n_out: Any) -> tuple[int, ...]:
    return (
        check_int(width, "width", minimum=1),
        check_int(depth, "depth", minimum=0),
        check_int(n_in, "n_in", minimum=1),
        check_int(n_out, "n_out", minimum=1),
    )


def validate_inputs(
    net: Network, X: Any, directions: Any = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check and convert the inputs X (m, n_0) and directions (d, n_0) of ``net``.

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0) or (n_0,)
        Real inputs, one per row; a 1-D array is one input.
    directions : array_like, shape (d, n_0), optional
        Real input-space directions u, one per row (2-D: a single u has shape (1, n_0)).

    Returns
    -------
    X : ndarray, shape (m, n_0)
    directions : ndarray, shape (d, n_0), or None
        float64 copies; no broadcasting is done.

    Raises
    ------
    TypeError
        If ``net`` is not a Network, or an array is complex, boolean or not numeric.
    ValueError
        Naming the argument, on a ragged sequence, a wrong shape, no rows, or NaN/inf
        (with the index of the first bad entry).

    Examples
    --------
    >>> net = Network((3, 8, 1), "tanh")
    >>> validate_inputs(net, [1.0, 0.0, 2.0])[0]
    array([[1., 0., 2.]])
    >>> validate_inputs(net, [[1.0, 0.0]])
    Traceback (most recent call last):
    ...
    ValueError: X must have n_0=3 columns (the network's input width); got shape (1, 2)
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a corrlib.Network; got {type(net).__name__}")
    X = _as_matrix(X, "X", net.n_in, one_d=True)
    if directions is not None:
        directions = _as_matrix(directions, "directions", net.n_in, one_d=False)
    return X, directions


def _as_real_array(A: Any, name: str, shape: str) -> np.ndarray:
    try:
        arr = np.asarray(A)
    except ValueError as exc:  # a ragged nested sequence
        raise ValueError(
            f"{name} must be a rectangular array of shape {shape}; got a ragged sequence "
            "(rows of different lengths)"
        ) from exc
    kind = arr.dtype.kind
    if kind == "O":  # e.g. Fractions, Decimals, or None mixed in
        bad = [v for v in arr.ravel() if isinstance(v, bool) or not isinstance(v, numbers.Real)]
        if bad:
            raise TypeError(
                f"{name} must be a real array of shape {shape}; got entries that are not real "
                f"numbers ({bad[0]!r})"
            )
    elif kind not in "iuf":
        what = {"c": "complex", "b": "boolean"}.get(kind, f"dtype {arr.dtype}")
        raise TypeError(f"{name} must be a real array of shape {shape}; got {what} values")
    return np.array(arr, dtype=float)


def _as_matrix(A: Any, name: str, n0: int, *, one_d: bool) -> np.ndarray:
    shape = f"(k, n_0={n0})"
    arr = _as_real_array(A, name, shape)
    if one_d and arr.ndim == 1:
        arr = arr.reshape(1, -1)
        if arr.shape[1] != n0:
            raise ValueError(
                f"{name} must have n_0={n0} entries (a 1-D {name} is one input); got shape "
                f"({arr.shape[1]},)"
            )
    if arr.ndim != 2:
        alt = f" or (n_0={n0},) for one input" if one_d else f" (one row: shape (1, {n0}))"
        raise ValueError(f"{name} must be 2-D with shape {shape}{alt}; got shape {arr.shape}")
    if arr.shape[1] != n0:
        raise ValueError(
            f"{name} must have n_0={n0} columns (the network's input width); got shape {arr.shape}"
        )
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row; got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must be finite (no NaN or inf); got {float(arr[i, j])!r} at {name}[{i}, {j}]"
        )
    return arr
