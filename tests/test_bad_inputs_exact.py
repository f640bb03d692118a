"""Bad, extreme and user-defined inputs of the exact laws (corrlib.exact).

Each case asserts the right answer (against an exact reference: (T14)-(T16), one-dimensional
quadrature of the first layer, closed-form Gamma moments) or the named error: the message names
the parameter, the value and the allowed range, or the quantity, the layer, the measured error
and what to use instead. Reproducers of issue 13 (items 1, 4, 5, 8, 9) come first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

import corrlib
from corrlib.exact import (
    AccuracyError,
    collective_log_moments,
    collective_moments,
    log_output_moments,
    output_distribution,
    output_moments,
    single_input,
)


def _exact_cumulants(net, X, directions=None):
    m = collective_moments(net, X, 3, directions=directions)
    m1, m2, m3 = m[:, 1], m[:, 2], m[:, 3]
    return m1, m2 - m1**2, m3 - 3 * m1 * m2 + 2 * m1**3


def _first_layer(act, C_W, C_b, S0, n):
    """E and Var of Sigma^(1) = C_b + (C_W/n) sum_i sigma(sqrt(S0) xi_i)^2 by 1-D quadrature."""
    f = corrlib.get_activation(act).f if isinstance(act, str) else act.f

    def moment(k):
        def integrand(t):
            return float(np.asarray(f(np.array([math.sqrt(S0) * t])))[0]) ** (2 * k) * math.exp(
                -t * t / 2
            )

        val, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=0, epsrel=1e-13, limit=400)
        return val / math.sqrt(2 * math.pi)

    e1, e2 = moment(1), moment(2)
    return C_b + C_W * e1, C_W**2 * (e2 - e1 * e1) / n


# ---------------------------------------------------------------------------------------------
# issue 13, item 1: single_input at large L/n
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, L, C_W", [(64, 1280, 2.0), (4, 400, 2.0), (16, 300, 4.0)])
def test_relu_large_depth_over_width_is_exact(n, L, C_W):
    """Was E Sigma = 0.22 (exactly 2), 1e-24 (exactly 2), 9.0e88 (exactly 8.15e90) with
    mass = 1: now the moments are the exact recursion (T14) in log space, at every layer."""
    net = corrlib.Network.uniform("relu", n, L, C_W=C_W)
    r = single_input(net, [[1.0]])
    lm = collective_log_moments(net, [[1.0]], 3)
    np.testing.assert_allclose(r.log_moments[:, 1:], lm[:, 1:], rtol=1e-12)
    np.testing.assert_allclose(r.cumulants(1), np.exp(lm[:, 1]), rtol=1e-12)
    assert r.cumulants(1)[-1] == pytest.approx(C_W * (C_W / 2) ** L, rel=1e-12)
    assert abs(r.mass[-1] - 1.0) < 1e-9 and r.law_error < 1e-6
    assert np.all(r.error <= 1e-6)


def test_relu_moments_beyond_float64_raise_on_access():
    """n = 4, L = 400: E Sigma^3 = 8 * 7.5^400 = e^808 does not fit in float64."""
    net = corrlib.Network.uniform("relu", 4, 400, C_W=2.0)
    r = single_input(net, [[1.0]])
    assert r.cumulants(1)[-1] == pytest.approx(2.0, rel=1e-12)
    mean, var, _ = _exact_cumulants(corrlib.Network.uniform("relu", 4, 200, C_W=2.0), [[1.0]])
    np.testing.assert_allclose(r.cumulants(2)[:201], var, rtol=1e-10)
    with pytest.raises(
        OverflowError, match=r"T \(kappa_3 of Sigma\).*layer index 352.*log_moments"
    ):
        r.T  # noqa: B018
    with pytest.raises(OverflowError, match="layer index 352"):
        r.to_frame()
    assert r.log_moments[-1, 3] == pytest.approx(math.log(8) + 400 * math.log(7.5), rel=1e-12)


def test_relu_with_bias_at_large_depth_uses_the_exact_recursion():
    """C_b > 0 (c > 0, not a product law): E S_l = C_b + E S_{l-1} exactly for ReLU at C_W = 2."""
    net = corrlib.Network.uniform("relu", 16, 320, C_W=2.0, C_b=0.1)
    r = single_input(net, [[1.0]])
    np.testing.assert_allclose(r.cumulants(1), 2.1 + 0.1 * np.arange(321), rtol=1e-12)
    assert r.law_error < 1e-6


@given(
    n=st.integers(1, 64),
    L=st.integers(0, 300),
    C_W=st.floats(0.5, 4.0),
    slope=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    x=st.floats(1e-3, 1e3),
)
@settings(max_examples=25)
def test_scale_invariant_single_input_matches_closed_form(n, L, C_W, slope, x):
    act = corrlib.leaky_relu(slope) if 0 < slope < 1 else ("relu" if slope == 0 else "linear")
    net = corrlib.Network.uniform(act, n, L, C_W=C_W)
    r = single_input(net, [[x]])
    lm = collective_log_moments(net, [[x]], 3)
    np.testing.assert_allclose(r.log_moments[:, 1:], lm[:, 1:], rtol=1e-12, atol=1e-12)
    assert abs(r.mass[-1] - 1.0) < 1e-9
    assert r.law_error < 1e-6


# ---------------------------------------------------------------------------------------------
# issue 13, item 5: saturating activations at large inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, n", [(1.0, 16), (2.0, 16), (3.0, 64), (5.0, 64)])
def test_tanh_moderate_inputs_are_accurate_at_layer_one(x, n):
    """The law of Sigma^(1) reaches the hard upper bound C_W sup tanh^2 = 1: the logit lattice
    keeps it; E and Var of Sigma^(1) against 1-D quadrature."""
    net = corrlib.Network.uniform("tanh", n, 1)
    r = single_input(net, [[x]])
    mean, var = _first_layer("tanh", 1.0, 0.0, x * x, n)
    assert r.cumulants(1)[1] == pytest.approx(mean, rel=1e-9)
    assert r.cumulants(2)[1] == pytest.approx(var, rel=1e-8)
    assert r.error.max() < 1e-8


@pytest.mark.parametrize("x", [10.0, 100.0, 1e3, 1e4])
def test_tanh_saturated_input_raises_naming_saturation(x):
    """Was 1.7% off at x = 10 (blaming the width), above the bound C_W at x = 100 and a
    MemoryError from x = 1e3: now an AccuracyError that names saturation."""
    net = corrlib.Network.uniform("tanh", 16, 2)
    with pytest.raises(AccuracyError, match=r"Sigma\^\(1\).*tanh saturates.*estimate_cumulants"):
        single_input(net, [[x]])


@given(x=st.floats(-2.0, 2.0), n=st.sampled_from([32, 64]))
@settings(max_examples=10)
def test_tanh_first_layer_matches_quadrature(x, n):
    r = single_input(corrlib.Network.uniform("tanh", n, 1), [[x]])
    mean, var = _first_layer("tanh", 1.0, 0.0, x * x, n)
    assert r.cumulants(1)[1] == pytest.approx(mean, rel=1e-9, abs=1e-300)
    assert r.cumulants(2)[1] == pytest.approx(var, rel=1e-8, abs=1e-300)
    assert 0.0 <= r.cumulants(1)[1] <= 1.0


# ---------------------------------------------------------------------------------------------
# issue 13, item 4: the output law
# ---------------------------------------------------------------------------------------------


def test_sf_at_zero_excludes_the_atom():
    """Four ReLU layers of width 1: P(z = 0) = 15/16; sf(0) = 1/32 (was 0.96875)."""
    d = output_distribution(corrlib.Network((1, 1, 1, 1, 1, 1), "relu", C_W=2.0), [[1.0]])
    assert d.atom == pytest.approx(15 / 16, rel=1e-12)
    assert d.sf(0.0) == pytest.approx(1 / 32, rel=1e-9)
    assert d.cdf(0.0) + d.sf(0.0) == pytest.approx(1.0, abs=1e-12)


def test_moment_needs_an_integer_order_and_abs_moment_is_exact():
    net = corrlib.Network((1, 1, 1, 1), "relu", C_W=2.0)
    d = output_distribution(net, [[1.0]])
    with pytest.raises(ValueError, match=r"order must be an integer >= 0.*got 2.5.*abs_moment"):
        d.moment(2.5)
    with pytest.raises(ValueError, match="order must be an integer >= 0; got -1"):
        d.moment(-1)
    # E|z|^p = E|xi|^p S0^q prod E X^q, q = p/2, X = 2 chi2_B, B ~ Bin(1, 1/2)
    p = 2.5
    q = p / 2
    exi = 2 ** (p / 2) * special.gamma((p + 1) / 2) / math.sqrt(math.pi)
    ex = 0.5 * 2**q * 2**q * special.gamma(0.5 + q) / special.gamma(0.5)
    assert d.abs_moment(p) == pytest.approx(exi * 2.0**q * ex**2, rel=1e-13)
    assert d.abs_moment(4.0) == pytest.approx(d.moment(4), rel=1e-12)
    with pytest.raises(ValueError, match=r"infinite for p = -0.5 < 0: z has an atom at 0"):
        d.abs_moment(-0.5)
    with pytest.raises(ValueError, match=r"p must be a finite real number > -1; got -1"):
        d.abs_moment(-1)


# ---------------------------------------------------------------------------------------------
# issue 13, items 8 and 9: cost caps, rvs arguments
# ---------------------------------------------------------------------------------------------


def test_log_output_moments_k_max_is_capped_with_its_cost():
    net = corrlib.Network.uniform(corrlib.leaky_relu(0.1), 64, 3)
    with pytest.raises(ValueError, match=r"k_max=500000 costs about 8.1e\+12 terms.*cap"):
        log_output_moments(net, [[1.0]], 10**6)
    wide = corrlib.Network.uniform("relu", 4096, 3, C_W=2.0)
    with pytest.raises(ValueError, match="costs about"):
        log_output_moments(wide, [[1.0]], 10**6)
    # one-sided and moderate: computed (linear cost), exact
    lm = log_output_moments(corrlib.Network.uniform("relu", 8, 3, C_W=2.0), [[1.0]], 10**4)
    assert np.all(np.isfinite(lm[0::2])) and np.all(np.isneginf(lm[1::2]))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"size": -1}, ValueError, r"size must be None, an integer >= 0.*got -1"),
        ({"size": 2.5}, TypeError, "size must be"),
        ({"size": (2, -1)}, ValueError, r"got \(2, -1\)"),
        ({"size": "3"}, TypeError, "size must be"),
        ({"size": 10**10}, MemoryError, "in batches"),
        ({"rng": "x"}, TypeError, r"rng must be None, an int >= 0.*got 'x'"),
        ({"rng": -1}, ValueError, "rng must be"),
        ({"rng": True}, TypeError, "rng must be"),
        ({"rng": np.random.RandomState(0)}, TypeError, "rng must be"),
        ({"rgn": 1}, TypeError, "did you mean 'rng'"),
    ],
)
def test_rvs_bad_arguments(kwargs, exc, match):
    d = output_distribution(corrlib.Network((1, 3, 1), "relu", C_W=2.0), [[1.0]])
    with pytest.raises(exc, match=match):
        d.rvs(**kwargs)


def test_rvs_random_state_is_deprecated_and_checked():
    d = output_distribution(corrlib.Network((1, 3, 1), "relu", C_W=2.0), [[1.0]])
    with (
        pytest.warns(DeprecationWarning, match="random_state"),
        pytest.raises(TypeError, match="rng"),
    ):
        d.rvs(3, random_state="x")
    assert d.rvs(0).shape == (0,)
    assert isinstance(d.rvs(None, rng=1), float)
    assert d.rvs((2, 3), rng=np.random.SeedSequence(4)).shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# bad inputs X, directions, networks and knobs
# ---------------------------------------------------------------------------------------------

_RELU = corrlib.Network.uniform("relu", 8, 3, C_W=2.0)

BAD_X = [
    ([[np.nan]], ValueError, r"X must be finite \(no NaN or inf\); got \[nan\]"),
    ([[np.inf]], ValueError, r"X must be finite"),
    ([[1 + 1j]], TypeError, "X must be a real array.*complex"),
    ("abc", TypeError, "X must be a real array"),
    ([[True]], TypeError, "X must be a real array.*boolean"),
    (np.array([[object()]]), TypeError, "X must be a real array.*object"),
    (np.zeros((1, 0)), ValueError, r"X must have shape \(1, n_0\).*got shape \(1, 0\)"),
    ([[1.0], [2.0]], ValueError, r"got shape \(2, 1\).*one input.*finite_width"),
    (np.ones((1, 1, 1)), ValueError, r"got shape \(1, 1, 1\)"),
    (1.0, ValueError, r"got shape \(\)"),
    ([[1.0], [1.0, 2.0]], ValueError, "ragged"),
    ([[1.0, 2.0]], ValueError, r"n_0=1; got shape \(1, 2\)"),
    (None, TypeError, "missing required argument 'X'"),
]


@pytest.mark.parametrize("X, exc, match", BAD_X)
@pytest.mark.parametrize(
    "func",
    [
        lambda X: collective_moments(_RELU, X, 2),
        lambda X: log_output_moments(_RELU, X, 2),
        lambda X: single_input(_RELU, X),
        lambda X: output_distribution(_RELU, X),
        lambda X: single_input(corrlib.Network.uniform("tanh", 8, 2), X),
    ],
    ids=["collective_moments", "log_output_moments", "single_input", "output_distribution", "tanh"],
)
def test_bad_X(func, X, exc, match):
    with pytest.raises(exc, match=match):
        func(X)


@pytest.mark.parametrize(
    "u, exc, match",
    [
        ([[np.nan]], ValueError, "directions must be finite"),
        ([[1j]], TypeError, "directions must be a real array"),
        ([[1.0], [1.0]], ValueError, r"directions must have shape \(1, n_0\)"),
        ([[1.0, 2.0, 3.0]], ValueError, "directions must have shape"),
    ],
)
def test_bad_directions(u, exc, match):
    with pytest.raises(exc, match=match):
        collective_moments(_RELU, [[1.0]], 2, directions=u)
    with pytest.raises(exc, match=match):
        single_input(_RELU, [[1.0]], directions=u)


def test_zero_direction_is_a_point_mass_at_zero():
    r = single_input(_RELU, [[1.0]], directions=[[0.0]])
    np.testing.assert_array_equal(r.cumulants(1), 0.0)
    np.testing.assert_array_equal(
        collective_moments(_RELU, [[1.0]], 2, directions=[[0.0]])[:, 1:], 0
    )


@pytest.mark.parametrize(
    "k_max, exc, match",
    [
        (-1, ValueError, "k_max must be an integer >= 0; got -1"),
        (2.5, TypeError, r"k_max must be an integer >= 0; got 2.5 \(float\)"),
        ("3", TypeError, "k_max must be an integer"),
        (True, TypeError, r"got True \(bool\)"),
        (None, TypeError, "missing required argument 'k_max'"),
    ],
)
@pytest.mark.parametrize("func", [output_moments, log_output_moments, collective_moments])
def test_bad_k_max(func, k_max, exc, match):
    with pytest.raises(exc, match=match):
        func(_RELU, [[1.0]], k_max)


@pytest.mark.parametrize("net", [None, "relu", {}])
@pytest.mark.parametrize("func", [single_input, output_distribution, collective_log_moments])
def test_bad_network(func, net):
    args = (3,) if func is collective_log_moments else ()
    with pytest.raises(TypeError, match="net must be a corrlib.Network; got"):
        func(net, [[1.0]], *args)


@pytest.mark.parametrize(
    "knob, value, exc",
    [
        ("h_factor", 0, ValueError),
        ("h_factor", 0.1, ValueError),
        ("h_factor", np.nan, ValueError),
        ("h_factor", np.inf, ValueError),
        ("h_factor", 11, ValueError),
        ("h_factor", "2", TypeError),
        ("h_factor", True, TypeError),
        ("tol", 0, ValueError),
        ("tol", 1e-2, ValueError),
        ("tol", "x", TypeError),
        ("rtol", 0, ValueError),
        ("rtol", 1, ValueError),
        ("rtol", np.nan, ValueError),
        ("quad_panels", 2.7, TypeError),
        ("quad_panels", 1, ValueError),
        ("quad_panels", 401, ValueError),
        ("quad_order", 2.0, TypeError),
        ("z_band", 1, ValueError),
        ("z_band", 100, ValueError),
    ],
)
def test_bad_solver_knobs(knob, value, exc):
    with pytest.raises(exc, match=rf"{knob} must be .*; got {value!r}"):
        single_input(corrlib.Network.uniform("tanh", 16, 2), [[1.0]], **{knob: value})


def test_unknown_keyword_and_deprecated_x():
    net = corrlib.Network.uniform("tanh", 16, 2)
    with pytest.raises(
        TypeError, match="unexpected keyword argument 'hfactor'.*did you mean 'h_factor'"
    ):
        single_input(net, [[1.0]], hfactor=1.0)
    with pytest.raises(TypeError, match="both X and the deprecated x"):
        single_input(net, [[1.0]], x=[[1.0]])
    with pytest.warns(DeprecationWarning, match=r"output_distribution\(x=...\)"):
        output_distribution(_RELU, x=[1.0])


def test_tighter_rtol_than_the_solver_reaches_raises_with_the_measured_error():
    with pytest.raises(
        AccuracyError, match=r"estimated relative error .* > rtol = 1.0e-12"
    ) as info:
        single_input(corrlib.Network.uniform("tanh", 16, 2), [[1.0]], rtol=1e-12)
    assert info.value.error > 1e-12 and info.value.layer >= 1


# ---------------------------------------------------------------------------------------------
# extreme but valid inputs
# ---------------------------------------------------------------------------------------------


def test_no_hidden_layer():
    r = single_input(corrlib.Network((1, 1), "tanh"), [[2.0]])
    assert r.mean.shape == (1, 1, 1) and r.mean[0, 0, 0] == 4.0 and r.V[0].item() == 0.0


@pytest.mark.parametrize("act", ["tanh", "relu", "linear", "gelu"])
def test_zero_input_without_bias_stays_at_zero(act):
    r = single_input(corrlib.Network.uniform(act, 8, 3), [[0.0]])
    np.testing.assert_array_equal(r.cumulants(1), 0.0)
    assert np.all(np.isneginf(r.log_moments[:, 1:]))


def test_zero_input_first_layer_is_deterministic():
    """Sigma^(0) = 0: every neuron sees z = 0, so Sigma^(1) = C_b + C_W sigma(0)^2 surely."""
    r = single_input(corrlib.Network.uniform("sigmoid", 16, 3, C_W=2.0), [[0.0]])
    assert r.cumulants(1)[0] == 0.0
    assert r.cumulants(1)[1] == pytest.approx(2.0 * 0.25, rel=1e-15)
    assert r.cumulants(2)[1] == 0.0 and r.cumulants(2)[2] > 0.0
    rb = single_input(corrlib.Network.uniform("relu", 8, 3, C_W=2.0, C_b=0.5), [[0.0]])
    np.testing.assert_allclose(rb.cumulants(1), [0.5, 1.0, 1.5, 2.0], rtol=1e-12)


def test_huge_and_tiny_inputs():
    lm = log_output_moments(_RELU, [[1e200]], 2)
    assert lm[2] == pytest.approx(math.log(2.0) + 400 * math.log(10.0), rel=1e-14)
    with pytest.raises(OverflowError, match="log_output_moments"):
        output_moments(_RELU, [[1e200]], 2)
    r = single_input(_RELU, [[1e200]])
    np.testing.assert_allclose(r.log_moments[:, 1], lm[2], rtol=1e-14)
    with pytest.raises(OverflowError, match=r"mean \(E Sigma\).*layer index 0"):
        r.mean  # noqa: B018
    with pytest.raises(OverflowError, match="read log_S0"):
        r.S0  # noqa: B018
    assert np.isfinite(r.output_pdf(np.array([1e200]))).all()
    with pytest.raises(OverflowError, match="quantile of Sigma"):
        r.quantile(0.5)
    with pytest.raises(OverflowError, match="rescale X"):
        single_input(corrlib.Network.uniform("tanh", 8, 2), [[1e155]])
    tiny = single_input(_RELU, [[1e-150]])
    np.testing.assert_allclose(tiny.cumulants(1), 2e-300, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_relu_width_one_to_three_is_exact(n):
    net = corrlib.Network.uniform("relu", n, 50, C_W=2.0)
    r = single_input(net, [[1.0]])
    np.testing.assert_allclose(r.cumulants(1), 2.0, rtol=1e-12)
    np.testing.assert_allclose(r.log_moments, collective_log_moments(net, [[1.0]], 3), rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tanh_tiny_width_raises_naming_the_width(n):
    with pytest.raises(AccuracyError, match=rf"width n = {n} is small.*estimate_cumulants"):
        single_input(corrlib.Network.uniform("tanh", n, 2), [[1.0]])


def test_huge_width():
    r = single_input(corrlib.Network.uniform("relu", 10**6, 2, C_W=2.0), [[1.0]])
    np.testing.assert_allclose(r.cumulants(2), 4 * ((1 + 5e-6) ** np.arange(3) - 1), rtol=1e-9)
    with pytest.raises(AccuracyError, match=r"width n = 1000000 is large.*finite_width"):
        single_input(corrlib.Network.uniform("tanh", 10**6, 2), [[1.0]])


def test_very_deep_relu_is_fast_and_exact():
    net = corrlib.Network.uniform("relu", 64, 10**5, C_W=2.0)
    r = single_input(net, [[1.0]])
    assert r.log_moments[-1, 2] == pytest.approx(
        math.log(4.0) + 10**5 * math.log1p(5 / 64), rel=1e-12
    )


def test_deep_output_law_is_an_atom():
    d = output_distribution(corrlib.Network.uniform("relu", 1, 3000, C_W=2.0), [[1.0]])
    assert d.atom == 1.0
    np.testing.assert_array_equal(d.pdf([0.5, 1.0]), 0.0)
    assert np.all(d.rvs(100, rng=1) == 0.0)
    with pytest.raises(OverflowError, match="log_output_moments"):
        d.moment(4)


# ---------------------------------------------------------------------------------------------
# user-defined activations
# ---------------------------------------------------------------------------------------------

_TANH = corrlib.get_activation("tanh")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"f": math.tanh, "df": _TANH.df}, TypeError, r"'mt': f must be vectorized"),
        ({"f": lambda z: np.full_like(z, np.nan), "df": _TANH.df}, ValueError, r"finite.*nan"),
        ({"f": lambda z: 1.0, "df": lambda z: 0.0}, TypeError, r"must return an array"),
        ({"f": lambda z: 1 / 0, "df": _TANH.df}, TypeError, r"ZeroDivisionError"),
    ],
)
def test_broken_user_activation_is_refused_before_the_solver(kwargs, exc, match):
    """Non-vectorized, NaN, scalar or raising activations cannot even be built (the model
    checks them at construction), so the solver never sees them."""
    with pytest.raises(exc, match=match):
        corrlib.Activation("mt", **kwargs)


def test_too_fast_growing_activation_is_named_by_the_solver():
    """exp is a valid activation, but its Gaussian integrals leave the solver's range."""
    act = corrlib.Activation("expact", f=np.exp, df=np.exp)
    with pytest.raises(ValueError, match=r"'expact' grows too fast.*polynomially"):
        single_input(corrlib.Network.uniform(act, 16, 3), [[1.0]])


def test_user_relu_is_recognised_as_scale_invariant_and_solved_exactly():
    """A user ReLU without declared slopes: the model infers a_+ = 1, a_- = 0 from f, so the
    solver uses the exact (T14) column and E Sigma stays at 2 (ReLU, C_W = 2)."""
    act = corrlib.Activation("myrelu", f=lambda z: np.maximum(z, 0.0), df=lambda z: (z > 0) * 1.0)
    assert act.is_scale_invariant
    same = single_input(corrlib.Network.uniform(act, 16, 3, C_W=2.0), [[1.0]])
    np.testing.assert_allclose(same.cumulants(1), 2.0, rtol=1e-12)


@pytest.mark.parametrize(
    "act",
    [
        # LeCun's tanh, named "tanh": the solver uses the function, not the name
        corrlib.Activation(
            "tanh",
            f=lambda z: 1.7159 * np.tanh(2 * z / 3),
            df=lambda z: 1.7159 * 2 / 3 / np.cosh(2 * z / 3) ** 2,
        ),
        corrlib.get_activation("sin"),
        corrlib.Activation("twosin", f=lambda z: 2 + np.sin(z), df=np.cos),  # inf sigma^2 = 1 > 0
    ],
)
def test_user_activation_first_layer_against_quadrature(act):
    n = 32
    r = single_input(corrlib.Network.uniform(act, n, 2), [[1.0]])
    mean, var = _first_layer(act, 1.0, 0.0, 1.0, n)
    assert r.cumulants(1)[1] == pytest.approx(mean, rel=1e-9)
    assert r.cumulants(2)[1] == pytest.approx(var, rel=1e-8)


def test_constant_activation_is_deterministic():
    act = corrlib.Activation("const", f=lambda z: np.full_like(z, 1.5), df=np.zeros_like)
    r = single_input(corrlib.Network.uniform(act, 16, 3, C_W=2.0, C_b=0.2), [[1.0]])
    np.testing.assert_allclose(r.cumulants(1)[1:], 0.2 + 2.0 * 2.25, rtol=1e-15)
    np.testing.assert_array_equal(r.cumulants(2), 0.0)


# ---------------------------------------------------------------------------------------------
# result objects
# ---------------------------------------------------------------------------------------------


def test_single_input_result_bad_arguments():
    r = single_input(_RELU, [[1.0]])
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\]; got 0"):
        r.cumulants(0)
    with pytest.raises(TypeError, match=r"got 2.0 \(float\)"):
        r.cumulants(2.0)
    for q in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match=r"q must be probabilities in \[0, 1\]"):
            r.quantile(q)
    with pytest.raises(ValueError, match="beyond the lattice's trimmed upper tail"):
        r.quantile(1.0)
    with pytest.raises(TypeError, match="z must be real numbers"):
        r.output_pdf("a")
    assert np.isnan(r.cdf(np.nan)) and np.isnan(r.output_pdf(np.nan))
    assert r.quantile([[0.2, 0.5]]).shape == (1, 2)


def test_output_distribution_non_finite_and_non_real_arguments():
    d = output_distribution(corrlib.Network((1, 3, 2, 1), "relu", C_W=2.0), [[1.0]])
    assert d.pdf(np.inf) == 0.0 and d.cdf(np.inf) == 1.0 and d.cdf(-np.inf) == 0.0
    assert np.isnan(d.pdf(np.nan)) and np.isnan(d.cdf(np.nan))
    with pytest.raises(TypeError, match="z must be real numbers"):
        d.pdf("a")
    with pytest.raises(ValueError, match=r"order must be an integer >= 0 \(E z\^order\); got 2.0"):
        d.moment(2.0)
