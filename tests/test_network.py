"""The network model and the input kernel (corrlib.model.network, .channels).

Bad input: tests/test_bad_inputs_model.py."""

from __future__ import annotations

import numpy as np
import pytest

from corrlib.model.activations import Activation, get_activation
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


@pytest.fixture
def net():
    return Network((3, 4, 1), "tanh", C_W=1.2, C_b=0.3)


def test_networks_compare_and_hash_by_their_fields():
    a = Network((3, 4, 1), "tanh", C_W=1.2)
    assert a == Network([3, 4, 1], get_activation("tanh"), C_W=1.2)
    assert hash(a) == hash(Network([3, 4, 1], "tanh", C_W=1.2))
    assert a != a.with_(C_W=1.3) and a != a.with_(activation="erf")
    assert len({a, a.with_(widths=(3, 4, 1)), a.with_(C_b=0.1)}) == 2


def test_one_d_X_is_one_input(net):
    """API protocol: a 1-D X of length n_0 is read as one input, shape (1, n_0)."""
    X, U = validate_inputs(net, [0.5, -1.0, 2.0])
    assert X.shape == (1, 3) and U is None
    np.testing.assert_array_equal(X, [[0.5, -1.0, 2.0]])
    K_1d, _ = input_kernel(net, np.array([0.5, -1.0, 2.0]))
    K_2d, _ = input_kernel(net, np.array([[0.5, -1.0, 2.0]]))
    np.testing.assert_array_equal(K_1d, K_2d)


def test_integer_and_object_arrays_of_reals_are_accepted(net):
    from fractions import Fraction

    X, _ = validate_inputs(net, [[1, 2, 3]])
    assert X.dtype == np.float64
    X, _ = validate_inputs(net, np.array([[Fraction(1, 2), 2, 3.0]], dtype=object))
    np.testing.assert_array_equal(X, [[0.5, 2.0, 3.0]])


def test_network_from_a_user_activation():
    """A user activation works like a built-in: critical point inferred, networks compare by it."""
    lecun = Activation(
        "lecun_tanh",
        f=lambda z: 1.7159 * np.tanh(2 * z / 3),
        df=lambda z: 1.7159 * 2 / 3 * (1 - np.tanh(2 * z / 3) ** 2),
    )
    net = Network.critical(lecun, width=8, depth=3)
    assert net.C_W == pytest.approx(1 / (1.7159 * 2 / 3) ** 2, rel=1e-12)  # 1/sigma_1^2 (T8)
    assert net.C_b == 0.0 and net.activation is lecun
    assert net == Network.uniform(lecun, 8, 3, C_W=net.C_W)
    assert net != Network.critical("tanh", width=8, depth=3)


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
