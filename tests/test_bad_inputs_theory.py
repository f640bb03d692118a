"""Bad, extreme and user-defined inputs of the theory: kernels, the 1/n recursion, asymptotics.

Every case gets the right answer or a named error whose message names the argument and the
value, or the layer and the quantity for an overflow (issue 13 items 5, 6, 8, 9).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import corrlib
from corrlib.model.activations import Activation
from corrlib.theory import asymptotics, kernels, recursion


def _tanh_nan_beyond(limit):
    """tanh that is NaN beyond |z| = limit (> 100, so the construction check accepts it)."""
    return Activation(
        f"nan_beyond_{limit:g}",
        lambda z: np.where(np.abs(z) > limit, np.nan, np.tanh(z)),
        lambda z: np.where(np.abs(z) > limit, np.nan, 1.0 - np.tanh(z) ** 2),
    )


# ------------------------------------------------------------------ NaN/inf never leaks out


@pytest.mark.parametrize("m", [1, 2])
def test_finite_width_at_huge_inputs_names_the_layer(m):
    """Issue 13 item 6: X = 1e100 gave K = 2e200 with V = Delta = NaN. ReLU is homogeneous,
    so every moment of layer 2 scales like K^(1) = 1e200 and its square overflows: an
    OverflowError naming layer 2."""
    net = corrlib.Network.critical("relu", 64, 3, n_in=2)
    X = 1e100 * np.array([[1.0, 0.0], [0.6, 0.8]])[:m]
    with pytest.raises(
        OverflowError, match=r"overflowed at layer 2 \(largest \|K\^\(1\)\| = 1e\+200"
    ):
        corrlib.finite_width(net, X)


def test_tanh_at_huge_inputs_is_finite_and_right():
    """tanh saturates: at K^(1) = 1e200 it acts as sign(z), so K^(2) = C_W (1 - O(K^-1/2)) and
    V^(2) = C_W^2 Var(tanh^2)/n is 0 up to O(K^-1/2) = 1e-100."""
    net = corrlib.Network.critical("tanh", 64, 3, n_in=2)
    rec = corrlib.finite_width(net, 1e100 * np.ones((1, 2)))
    assert np.all(np.isfinite(rec.V)) and np.all(np.isfinite(rec.Delta))
    assert rec.K[1, 0, 0] == pytest.approx(1.0, rel=1e-15)
    assert abs(rec.V[1, 0, 0, 0, 0]) < 1e-90


@pytest.mark.parametrize("entry", ["infinite_width_kernel", "finite_width"])
def test_depth_zero_with_overflowing_inputs(entry):
    """Issue 13 item 6: infinite_width_kernel at depth 0 with X = 1e155 returned inf."""
    net = corrlib.Network.critical("relu", 64, 0, n_in=2)
    with pytest.raises(OverflowError, match=r"input kernel K\^\(1\) overflowed at layer 1"):
        getattr(corrlib, entry)(net, 1e155 * np.ones((1, 2)))


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("entry", ["infinite_width_kernel", "finite_width"])
def test_nan_returning_activation_is_blamed_not_the_phase(entry, m):
    """Issue 13 item 6: a NaN-returning activation was reported as 'exploding phase; reduce
    depth or C_W'. Now a ValueError naming the activation and the z where it is NaN."""
    net = corrlib.Network.uniform(_tanh_nan_beyond(150.0), 64, 3, n_in=1, C_W=1.0)
    X = 1e3 * np.array([[1.0], [0.5]])[:m]
    with pytest.raises(ValueError, match=r"activation 'nan_beyond_150' returns NaN or inf at z"):
        getattr(corrlib, entry)(net, X)


def test_kernel_map_of_a_nan_returning_activation():
    with pytest.raises(ValueError, match=r"kernel_map: the integrand is NaN at z = -?1[5-9]\d"):
        kernels.kernel_map(_tanh_nan_beyond(150.0), 1e6, 1.0)


def test_kernel_map_overflow_is_an_overflow_error():
    """The result, or already the integrand relu(z)^2 at 10 sd, exceeds float64."""
    with pytest.raises(
        OverflowError, match=r"kernel_map overflows float64: .* at K = 1e\+300 exceeds"
    ):
        kernels.kernel_map("relu", 1e300, 1e10)
    with pytest.raises(OverflowError, match=r"kernel_map: the integrand is inf at z = 1.*e\+154"):
        kernels.kernel_map("relu", 1e308, 1.0)


def test_iterate_kernel_names_the_layer_where_it_overflows():
    """ReLU with C_W = 1000 multiplies K by 500 per layer: 1e300, 5e302, 2.5e305, 1.25e308,
    so the fourth step (to layer 5) overflows."""
    with pytest.raises(OverflowError, match=r"overflowed at layer 5 \(step 4 of 20"):
        kernels.iterate_kernel("relu", 1e300, 1e3, 0.0, depth=20)


# ------------------------------------------------------------------ arguments out of range


@given(C_b=st.floats(max_value=-1e-300, allow_infinity=False) | st.just(math.nan))
def test_kernel_map_rejects_negative_or_nan_C_b(C_b):
    with pytest.raises(ValueError, match=r"C_b must be a finite real number >= 0; got"):
        kernels.kernel_map("relu", 1.0, 1.0, C_b)


@pytest.mark.parametrize("K", [-1.0, math.nan, math.inf])
def test_kernel_map_rejects_bad_K(K):
    with pytest.raises(ValueError, match=r"K must be finite and >= 0; got"):
        kernels.kernel_map("tanh", K, 1.0)


@pytest.mark.parametrize("width", [0, -64, math.nan, [64, 0]])
def test_leading_order_rejects_non_positive_widths(width):
    with pytest.raises(ValueError, match=r"width must be a positive number .*; got"):
        asymptotics.leading_order("relu", [1, 2, 3], width)


@pytest.mark.parametrize("entry", ["finite_width", "infinite_width_kernel"])
def test_former_node_counts_are_validated_then_deprecated(entry):
    """Issue 13 item 9: n_radial=2.7 was rounded down. The node counts are ignored by the
    channel engine (deprecated), but a non-integer is still a TypeError, not silence."""
    net = corrlib.Network.critical("relu", 16, 2)
    with pytest.raises(TypeError, match=r"n_radial must be an integer >= 1; got 2.7"):
        getattr(corrlib, entry)(net, np.ones((1, 1)), n_radial=2.7)
    with pytest.warns(DeprecationWarning, match=r"n_radial=\) \(quadrature node counts\)"):
        getattr(corrlib, entry)(net, np.ones((1, 1)), n_radial=40)


@pytest.mark.parametrize("entry", ["finite_width", "infinite_width_kernel"])
def test_unknown_keyword_gets_a_did_you_mean(entry):
    net = corrlib.Network.critical("relu", 16, 2)
    with pytest.raises(TypeError, match=r"'nradial' \(did you mean 'n_radial'\?\)"):
        getattr(corrlib, entry)(net, np.ones((1, 1)), nradial=5)


# ------------------------------------------------------------------ resource guard


def test_memory_guard_refuses_before_allocating():
    """Issue 13 item 8: finite_width with many inputs exhausted 6 GiB. 80 inputs at depth 10
    need (L+1) c^4 floats for V alone (3.6 GB): refused at once with the estimate."""
    net = corrlib.Network.critical("relu", 64, 10, n_in=2)
    t = np.linspace(0, np.pi, 80, endpoint=False)
    with pytest.raises(MemoryError, match=r"c = 80 channels \(80 inputs x 1\) and depth 10 needs"):
        corrlib.finite_width(net, np.c_[np.cos(t), np.sin(t)])
    assert recursion.MAX_MEMORY == 2 * 1024**3
