"""corrlib.input_with_kernel: inputs with a prescribed first-layer kernel (T2)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import corrlib
from corrlib import Network, input_kernel, input_with_kernel


@given(
    K1=st.floats(0.0, 50.0),
    C_W=st.floats(0.1, 5.0),
    C_b=st.floats(0.0, 1.0),
    n_in=st.integers(1, 6),
)
def test_one_input_has_the_prescribed_kernel(K1, C_W, C_b, n_in):
    K1 = K1 + C_b
    net = Network.uniform("tanh", width=4, depth=1, n_in=n_in, C_W=C_W, C_b=C_b)
    X = input_with_kernel(K1, n_in, C_W=C_W, C_b=C_b)
    assert X.shape == (1, n_in)
    assert input_kernel(net, X)[0][0, 0] == pytest.approx(K1, rel=1e-12, abs=1e-12)


@given(theta=st.floats(0.0, np.pi), K1=st.floats(0.3, 5.0), C_b=st.floats(0.0, 0.2))
def test_two_inputs_at_an_angle(theta, K1, C_b):
    X = input_with_kernel(K1, C_W=1.5, C_b=C_b, angle=theta)
    assert X.shape == (2, 2)
    # the inputs themselves are at that angle, with equal norms
    n0, n1 = np.linalg.norm(X, axis=1)
    assert n0 == pytest.approx(n1, rel=1e-12)
    cos = X[0] @ X[1] / (n0 * n1)
    assert np.arccos(np.clip(cos, -1, 1)) == pytest.approx(theta, abs=1e-6)
    net = Network.uniform("relu", width=4, depth=1, n_in=2, C_W=1.5, C_b=C_b)
    K = input_kernel(net, X)[0]
    expected = C_b + (K1 - C_b) * np.array([[1, np.cos(theta)], [np.cos(theta), 1]])
    np.testing.assert_allclose(K, expected, rtol=1e-12, atol=1e-12)


def test_kernel_matrix_of_inputs_on_a_circle():
    phis = np.linspace(0, np.pi, 5)
    K1 = np.cos(phis[:, None] - phis[None, :])  # rank 2: a circle in a plane
    X = input_with_kernel(K1, n_in=3)
    assert X.shape == (5, 3)
    net = Network.uniform("tanh", width=4, depth=1, n_in=3)
    np.testing.assert_allclose(input_kernel(net, X)[0], K1, atol=1e-12)
    # the default n_in is the number of inputs
    assert input_with_kernel(np.eye(3) + 0.5).shape == (3, 3)


def test_top_level_export():
    assert corrlib.input_with_kernel is input_with_kernel
    assert corrlib.model.input_with_kernel is input_with_kernel


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"K1": 0.5, "C_b": 1.0}, ValueError, "K1 must be"),
        ({"K1": "1"}, TypeError, "K1 must be a real"),
        ({"K1": 1.0, "C_W": 0.0}, ValueError, "C_W must be"),
        ({"K1": 1.0, "n_in": 0}, ValueError, "n_in must be"),
        ({"K1": 1.0, "n_in": 1.5}, TypeError, "n_in must be"),
        ({"K1": 1.0, "angle": 4.0}, ValueError, "angle must be"),
        ({"K1": np.eye(2), "angle": 1.0}, ValueError, "angle must be None"),
        ({"K1": np.ones((2, 3))}, ValueError, "square"),
        ({"K1": [[1.0, 2.0], [2.0, 1.0]]}, ValueError, "positive semi-definite"),
        ({"K1": np.eye(3), "n_in": 2}, ValueError, "rank 3"),
        ({"K1": [[1.0, 0.0], [0.5, 1.0]]}, ValueError, "symmetric"),
    ],
)
def test_bad_inputs_name_the_parameter(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        input_with_kernel(**kwargs)
