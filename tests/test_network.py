"""The network model and the input kernel (corrlib.model.network, .channels), incl. bad input."""

from __future__ import annotations

import numpy as np
import pytest

from corrlib.model.activations import get_activation
from corrlib.model.channels import ChannelLayout, input_kernel
from corrlib.model.network import Network, validate_inputs


def test_network_properties():
    net = Network((5, 7, 8, 3), "tanh", C_W=1.5, C_b=0.2)
    assert net.depth == 2
    assert (net.n_in, net.n_out, net.hidden_widths) == (5, 3, (7, 8))
    assert net.activation == get_activation("tanh")
    assert (net.C_W, net.C_b) == (1.5, 0.2)
    assert Network(np.array([2, 3, 1]), "relu").widths == (2, 3, 1)
    assert Network([2, np.int64(3), 1], "relu").widths == (2, 3, 1)
    assert net.with_(C_W=2.0).C_W == 2.0


def test_uniform_and_critical_constructors():
    net = Network.uniform("relu", width=16, depth=3, n_in=4, n_out=2, C_W=2.0)
    assert net.widths == (4, 16, 16, 16, 2)
    assert Network.uniform("relu", width=16, depth=0).widths == (1, 1)
    crit = Network.critical("tanh", width=8, depth=2)
    assert (crit.C_b, crit.C_W) == (0.0, 1.0)
    assert Network.critical("relu", width=8, depth=2).C_W == 2.0


# -- bad input: every message names the parameter and what is allowed -----------------------


@pytest.mark.parametrize(
    ("widths", "exc", "match"),
    [
        ((5, 2.5, 1), TypeError, r"widths\[1\] must be an integer >= 1"),
        ((5, 3.0, 1), TypeError, r"widths\[1\] must be an integer >= 1"),
        ((5, "3", 1), TypeError, r"widths\[1\] must be an integer >= 1"),
        ((5, True, 1), TypeError, r"widths\[1\] must be an integer >= 1"),
        ((5, 0, 1), ValueError, r"widths\[1\] must be an integer >= 1"),
        ((5, -4, 1), ValueError, r"widths\[1\] must be an integer >= 1"),
        ((0, 4, 1), ValueError, r"widths\[0\] must be an integer >= 1"),
        ((5, 4, 0), ValueError, r"widths\[2\] must be an integer >= 1"),
        ((5,), ValueError, r"widths must have length >= 2"),
        ("531", TypeError, r"widths must be a sequence of integers"),
        (5, TypeError, r"widths must be a sequence of integers"),
    ],
)
def test_bad_widths(widths, exc, match):
    with pytest.raises(exc, match=match):
        Network(widths, "relu")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(width=0, depth=2), r"width must be an integer >= 1"),
        (dict(width=2.5, depth=2), r"width must be an integer >= 1"),
        (dict(width=4, depth=-1), r"depth must be an integer >= 0"),
        (dict(width=4, depth=1.0), r"depth must be an integer >= 0"),
        (dict(width=4, depth=2, n_in=0), r"n_in must be an integer >= 1"),
        (dict(width=4, depth=2, n_out=1.5), r"n_out must be an integer >= 1"),
    ],
)
def test_bad_uniform_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Network.uniform("relu", **kwargs)


@pytest.mark.parametrize("C_W", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_C_W(C_W):
    with pytest.raises(ValueError, match=r"C_W must be a finite real number > 0"):
        Network((2, 3, 1), "relu", C_W=C_W)


@pytest.mark.parametrize("C_b", [-1e-3, float("nan"), float("inf")])
def test_bad_C_b(C_b):
    with pytest.raises(ValueError, match=r"C_b must be a finite real number >= 0"):
        Network((2, 3, 1), "relu", C_b=C_b)


@pytest.mark.parametrize("name", ["C_W", "C_b"])
@pytest.mark.parametrize("bad", ["1.0", None, True])
def test_non_numeric_variances(name, bad):
    with pytest.raises(TypeError, match=rf"{name} must be a finite real number"):
        Network((2, 3, 1), "relu", **{name: bad})


def test_unknown_activation_in_network_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu'; known activations: .*relu"):
        Network((2, 3, 1), "rleu")


@pytest.fixture
def net():
    return Network((3, 4, 1), "tanh", C_W=1.2, C_b=0.3)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones(3), r"X must be 2-D with shape \(k, n_0=3\); got shape \(3,\)"),
        (np.ones((2, 3, 1)), r"X must be 2-D"),
        (np.float64(1.0), r"X must be 2-D"),
        (np.ones((2, 4)), r"X must have n_0=3 columns"),
        (np.ones((3, 2)), r"X must have n_0=3 columns"),  # transposed input is not accepted
        (np.ones((1, 1)), r"X must have n_0=3 columns"),  # no broadcasting of a scalar row
        (np.ones((0, 3)), r"X must have at least one row"),
        ([[1.0, np.nan, 0.0]], r"X must be finite \(no NaN or inf\)"),
        ([[1.0, np.inf, 0.0]], r"X must be finite"),
        ([[1.0, -np.inf, 0.0]], r"X must be finite"),
    ],
)
def test_bad_X(net, X, match):
    with pytest.raises(ValueError, match=match):
        validate_inputs(net, X)
    with pytest.raises(ValueError, match=match):
        input_kernel(net, X)


def test_non_numeric_X(net):
    with pytest.raises(TypeError, match=r"X must be a real array of shape \(k, n_0=3\)"):
        validate_inputs(net, [["a", "b", "c"]])
    with pytest.raises(TypeError, match=r"X must be a real array"):
        validate_inputs(net, [[1.0, 2.0], [1.0, 2.0, 3.0]])  # ragged


@pytest.mark.parametrize(
    ("U", "match"),
    [
        (np.ones(3), r"directions must be 2-D with shape \(k, n_0=3\)"),  # a single u needs (1, 3)
        (np.ones((1, 2)), r"directions must have n_0=3 columns"),
        (np.ones((2, 4)), r"directions must have n_0=3 columns"),
        (np.ones((0, 3)), r"directions must have at least one row"),
        ([[0.0, np.nan, 1.0]], r"directions must be finite"),
        ([[0.0, np.inf, 1.0]], r"directions must be finite"),
    ],
)
def test_bad_directions(net, U, match):
    X = np.ones((2, 3))
    with pytest.raises(ValueError, match=match):
        validate_inputs(net, X, U)
    with pytest.raises(ValueError, match=match):
        input_kernel(net, X, U)


def test_validate_inputs_needs_a_network():
    with pytest.raises(TypeError, match=r"net must be a corrlib.Network"):
        validate_inputs("relu", np.ones((1, 3)))


def test_validate_inputs_returns_float_copies(net):
    X = np.array([[1, 2, 3]])
    Xv, Uv = validate_inputs(net, X)
    assert Xv.dtype == np.float64 and Uv is None
    Xv[0, 0] = 7.0
    assert X[0, 0] == 1


# -- channels ------------------------------------------------------------------------------


def test_channel_layout_order():
    lay = ChannelLayout(m=3, d=2)
    assert lay.c == 9
    np.testing.assert_array_equal(lay.input, [0, 1, 2] * 3)
    np.testing.assert_array_equal(lay.direction, [-1, -1, -1, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(lay.is_value, [True] * 3 + [False] * 6)
    assert lay.value_channel(7) == 1
    mask = lay.bias_mask()
    assert mask.shape == (9, 9)
    assert mask[:3, :3].all() and not mask[3:].any() and not mask[:, 3:].any()


def test_input_kernel_is_T2(net, rng):
    X = rng.standard_normal((2, 3))
    U = rng.standard_normal((2, 3))
    K1, lay = input_kernel(net, X, U)
    assert (lay.m, lay.d, K1.shape) == (2, 2, (6, 6))
    V = np.vstack([X, U[[0, 0]], U[[1, 1]]])  # vectors of the channels, in channel order
    expect = net.C_W / 3 * V @ V.T
    expect[:2, :2] += net.C_b  # bias only between value channels
    np.testing.assert_allclose(K1, expect, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(K1, K1.T)
    K0, lay0 = input_kernel(net, X)
    assert lay0.c == 2
    np.testing.assert_allclose(K0, expect[:2, :2], rtol=1e-15)
