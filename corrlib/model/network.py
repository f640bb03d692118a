"""The random fully connected network model (T1) and validation of its inputs."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._util import check_int, check_kwargs, check_real, psd_sqrt
from .activations import Activation, get_activation
from .criticality import critical_point

__all__ = ["Network", "input_with_kernel", "validate_inputs"]

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

    # Deliberate parallel: the signature and docstring opening of critical below are the same;
    # each public constructor keeps its own typed signature (help() shows one at a time); the
    # shared checks are _check_shape_args.
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

    # Deliberate parallel: the signature and docstring opening of uniform above are the same;
    # each public constructor keeps its own typed signature (help() shows one at a time); the
    # shared checks are _check_shape_args.
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


def input_with_kernel(
    K1: Any,
    n_in: int | None = None,
    *,
    C_W: float = 1.0,
    C_b: float = 0.0,
    angle: float | None = None,
) -> np.ndarray:
    """Inputs X whose first-layer kernel (T2) is a prescribed ``K1``.

    Solves ``C_b + (C_W / n_0) X X^T = K1`` for ``X`` of shape ``(m, n_0)``, so that
    ``input_kernel(net, X)`` of a network with these ``C_W``, ``C_b`` and ``n_0 = n_in`` is
    ``K1`` (to rounding). Use it wherever an experiment is stated in terms of ``K^{(1)}``
    rather than of the inputs themselves.

    Parameters
    ----------
    K1 : float or array_like, shape (m, m)
        A number: one input with ``K^{(1)} = K1`` (``K1 >= C_b``); every coordinate of it is
        ``sqrt((K1 - C_b) / C_W)``. A symmetric matrix: m inputs with the kernel matrix ``K1``
        (``K1 - C_b`` must be positive semi-definite, of rank at most ``n_in``).
    n_in : int, optional
        The input dimension n_0 >= 1. Default: 1 for one input, 2 with ``angle``, m for a
        matrix.
    C_W, C_b : float
        The network's weight variance (> 0) and bias variance (>= 0).
    angle : float, optional
        With a number ``K1``: two inputs of kernel ``K1`` each at this angle (radians, in
        [0, pi]) in input space; their kernel is ``C_b + (K1 - C_b) cos(angle)``.

    Returns
    -------
    X : ndarray, shape (m, n_in)
        float64; m = 1 for a number, 2 with ``angle``.

    Raises
    ------
    TypeError
        For a non-real ``K1`` or wrong-typed parameters.
    ValueError
        Naming the parameter and its value: ``K1 < C_b``, a matrix that is not square,
        symmetric or with ``K1 - C_b`` positive semi-definite, a rank above ``n_in``, an angle
        outside [0, pi], or ``angle`` given with a matrix.

    Examples
    --------
    >>> X = input_with_kernel(2.0, C_W=2.0)
    >>> X
    array([[1.]])
    >>> net = Network.uniform("relu", width=8, depth=2, n_in=3, C_W=2.0, C_b=0.5)
    >>> X = input_with_kernel([[1.0, 0.7], [0.7, 1.5]], n_in=3, C_W=2.0, C_b=0.5)
    >>> X.shape
    (2, 3)
    >>> from corrlib.model.channels import input_kernel
    >>> np.allclose(input_kernel(net, X)[0], [[1.0, 0.7], [0.7, 1.5]])
    True
    >>> np.round(input_kernel(net.with_(widths=(2, 8, 8, 1)),
    ...                       input_with_kernel(1.0, C_W=2.0, C_b=0.5, angle=np.pi / 2))[0], 12)
    array([[1. , 0.5],
           [0.5, 1. ]])
    """
    C_W = check_real(C_W, "C_W", minimum=0.0, strict_min=True)
    C_b = check_real(C_b, "C_b", minimum=0.0)
    arr = np.asarray(K1)
    if arr.dtype.kind not in "iuf" or arr.dtype == bool:
        raise TypeError(f"K1 must be a real number or a real (m, m) matrix; got {K1!r}")
    if arr.ndim == 0:
        k = check_real(float(arr), "K1", minimum=C_b)
        if angle is None:
            n = check_int(1 if n_in is None else n_in, "n_in", minimum=1)
            return np.full((1, n), np.sqrt((k - C_b) / C_W))
        theta = check_real(angle, "angle", minimum=0.0, maximum=np.pi)
        cross = C_b + (k - C_b) * np.cos(theta)
        arr = np.array([[k, cross], [cross, k]])
        n_in = 2 if n_in is None else n_in
    elif angle is not None:
        raise ValueError(f"angle must be None when K1 is a matrix; got angle={angle!r}")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"K1 must be a number or a square (m, m) matrix; got shape {arr.shape}")
    m = arr.shape[0]
    n = check_int(m if n_in is None else n_in, "n_in", minimum=1)
    G = (np.asarray(arr, dtype=float) - C_b) * (n / C_W)  # = X X^T
    A = psd_sqrt(G, name="(K1 - C_b) (the inner-product part of K1)")
    if A.shape[1] > n:
        raise ValueError(
            f"n_in must be at least the rank {A.shape[1]} of K1 - C_b (the inputs span that many "
            f"dimensions); got n_in={n}"
        )
    X = np.zeros((m, n))
    X[:, : A.shape[1]] = A
    return X


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
