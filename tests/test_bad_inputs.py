"""The bad, extreme and user-defined inputs that once gave silent wrong answers, replayed.

Each test is one reproducer of the audit of every public entry point (numbered as in that audit:
1 the exact solver at large L/n, 2 identity by name, 3 heavy-tailed Monte Carlo, 4 the output
law's atom, 5 quadrature limits, 6 NaN/inf, 7 user activations, 8 unbounded cost, 9 smaller
validation gaps, 10 interrupting a paper run) and asserts the behaviour that replaced it: the
right answer, or a named error or warning. Every call is bounded by a 60 s alarm (no hang).

The broader, property-based suites per area are ``tests/test_bad_inputs_<area>.py``.
"""

from __future__ import annotations

import math
import pickle
import signal

import numpy as np
import pytest

import corrlib
from corrlib import Activation, Network, exact

TANH = corrlib.get_activation("tanh")


@pytest.fixture(autouse=True)
def _no_hang():
    """A case that runs past 60 s fails instead of hanging the suite."""

    def _timeout(signum, frame):
        raise TimeoutError("a bad-input case ran past 60 s")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _lecun() -> Activation:
    """LeCun's scaled tanh, 1.7159 tanh(2z/3), under the name of the built-in tanh."""
    a, b = 1.7159, 2.0 / 3.0
    return Activation(
        "tanh", f=lambda z: a * np.tanh(b * z), df=lambda z: a * b / np.cosh(b * z) ** 2
    )


# ------------------------------------------------------------ 1. exact solver at large L/n


@pytest.mark.parametrize(
    "n, L, C_W, expected",
    [
        (64, 1280, 2.0, 2.0),  # was 0.22
        (4, 400, 2.0, 2.0),  # was 1e-24
        (16, 300, 4.0, 4.0 * 2.0**300),  # was 9.0e88; (T14): E Sigma_L = Sigma_0 (C_W/2)^L
    ],
)
def test_1_relu_mean_at_large_depth_over_width_is_exact(n, L, C_W, expected):
    res = exact.single_input(Network.uniform("relu", n, L, C_W=C_W), [[1.0]])
    assert res.cumulants(1)[-1] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------- 2. identity by name


def test_2_a_user_activation_named_tanh_is_not_the_builtin():
    lecun = _lecun()
    assert lecun != TANH
    assert Network.uniform(lecun, 8, 2) != Network.uniform("tanh", 8, 2)
    user_relu_computing_tanh = Activation("relu", f=np.tanh, df=TANH.df)
    assert user_relu_computing_tanh != corrlib.get_activation("relu")


def test_2_a_user_activation_named_tanh_is_sampled_as_itself():
    """One hidden layer: E Sigma^(2) = C_W E[f(z)^2], z ~ N(0, K1), against quadrature (z <= 4)."""
    lecun = _lecun()
    net = Network.uniform(lecun, 16, 1)
    est = corrlib.estimate_cumulants(net, [[1.0]], 20_000, rng=3)
    K1 = net.C_b + net.C_W * 1.0
    exact_mean = net.C_b + net.C_W * corrlib.gaussian_expectation(
        lambda z: lecun.f(z[..., 0]) ** 2, [[K1]]
    )
    z = (est.mean[-1, 0, 0] - exact_mean) / est.mean_se[-1, 0, 0]
    assert abs(z) < 4, f"E Sigma^(2) off by {z:.1f} standard errors"
    np_tanh_mean = net.C_W * corrlib.gaussian_expectation(lambda t: np.tanh(t[..., 0]) ** 2, [[K1]])
    assert abs(exact_mean - np_tanh_mean) > 100 * est.mean_se[-1, 0, 0]  # the test can tell


# ------------------------------------------------------------- 3. heavy-tailed Monte Carlo


@pytest.mark.parametrize("n, L", [(4, 40), (2, 200)])
def test_3_heavy_tailed_monte_carlo_warns_and_names_the_exact_solver(n, L):
    with pytest.warns(corrlib.HeavyTailWarning, match="exact"):
        corrlib.estimate_cumulants(Network.uniform("relu", n, L, C_W=2.0), [[1.0]], 4000, rng=0)


# -------------------------------------------------------------------- 4. the law's atom


def test_4_survival_function_at_the_atom_and_non_integer_moments():
    # ReLU, n = 4, one hidden layer: z = 0 exactly when all four units are off (mass 1/16)
    law = exact.output_distribution(Network.uniform("relu", 4, 1), [[1.0]])
    assert law.sf(0.0) == pytest.approx((1 - 1 / 16) / 2, rel=1e-12)  # was 0.96875
    with pytest.raises(ValueError, match="abs_moment"):
        law.moment(2.5)  # was moment(2)


# ------------------------------------------------------------------ 5. quadrature limits


def test_5_tanh_susceptibilities_at_large_kernel_match_their_asymptotic_forms():
    """At large K, E[tanh'(z)^2] -> (int sech^4) / sqrt(2 pi K) = (4/3) / sqrt(2 pi K), up to a
    relative O(1/K); was 0 from K = 1e8."""
    K = 1e8
    expected = (4.0 / 3.0) / math.sqrt(2.0 * math.pi * K)
    assert corrlib.chi_perp("tanh", K, 1.0) == pytest.approx(expected, rel=1e-6)


def test_5_saturated_tanh_input_is_refused_by_the_exact_solver_naming_the_cause():
    # was: 1.7% off at layer 1 with a warning blaming the width (x = 10), MemoryError (x >= 1e3)
    for x in (10.0, 1e3):
        with pytest.raises(exact.AccuracyError, match="saturat"):
            exact.single_input(Network.uniform("tanh", 64, 2), [[x]])


# ------------------------------------------------------------------------- 6. NaN / inf


@pytest.mark.parametrize("x", [1e155, 1e200])
def test_6_an_overflowing_input_kernel_names_the_layer(x):
    with pytest.raises(OverflowError, match="layer 1"):
        corrlib.infinite_width_kernel(Network.uniform("relu", 64, 0), [[x]])


def test_6_an_overflowing_four_point_function_names_the_layer():
    # was: K = 2e200 with V = Delta = NaN
    with pytest.raises(OverflowError, match="layer 2"):
        corrlib.finite_width(Network.uniform("relu", 64, 3, C_W=2.0), [[1e100]])


def test_6_a_nan_activation_is_named_at_construction():
    with pytest.raises(ValueError, match="finite"):
        Activation("nanact", f=lambda z: np.where(z > 5, np.nan, np.tanh(z)), df=TANH.df)


def test_6_susceptibility_of_a_nan_kernel_is_an_error():
    with pytest.raises(ValueError, match="K must be finite"):
        corrlib.chi_perp("tanh", np.nan, 1.0)


# ---------------------------------------------------------- 7. user-defined activations


@pytest.mark.parametrize("f", [math.tanh, lambda z: z if z > 0 else 0.0])
def test_7_non_vectorized_functions_are_refused_with_the_fix(f):
    with pytest.raises(TypeError, match="vectorized"):
        Activation("user", f=f, df=TANH.df)


def test_7_a_scalar_returning_function_is_refused():
    with pytest.raises((TypeError, ValueError), match="shape"):
        Activation("const", f=lambda z: 1.0, df=lambda z: 0.0 * z)


def test_7_a_wrong_derivative_is_refused_with_the_measured_values():
    with pytest.raises(ValueError, match="df must be the derivative of f"):
        Activation("t2", f=np.tanh, df=lambda z: 2.0 / np.cosh(z) ** 2)


def test_7_a_user_tanh_without_taylor_has_the_tanh_critical_point():
    user = Activation("my_tanh", f=np.tanh, df=lambda z: 1.0 / np.cosh(z) ** 2)
    cp = corrlib.critical_point(user)
    assert (cp.C_W, cp.C_b) == pytest.approx((1.0, 0.0), abs=1e-9)


def test_7_lambdas_pickle():
    act = Activation("sq", f=lambda z: np.tanh(z) + 0.1 * z, df=lambda z: 1.1 - np.tanh(z) ** 2)
    again = pickle.loads(pickle.dumps(act))
    z = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(again.f(z), act.f(z))


# ------------------------------------------------------------------- 8. unbounded cost


def test_8_five_inputs_fit_in_memory():
    # was: 6 GiB exhausted
    res = corrlib.finite_width(Network.uniform("tanh", 64, 3, n_in=5), np.eye(5))
    assert res.V.shape == (4, 5, 5, 5, 5)
    assert np.isfinite(res.V).all()


def test_8_moment_order_is_capped_with_its_cost():
    with pytest.raises(ValueError, match="k_max"):
        exact.log_output_moments(Network.uniform("relu", 64, 4), [[1.0]], k_max=10**6)


def test_8_a_huge_monte_carlo_is_refused_at_once_with_its_cost():
    with pytest.raises(ValueError, match="n_samples"):
        corrlib.estimate_cumulants(Network.uniform("relu", 8, 2), [[1.0]], 10**13)


# ---------------------------------------------------------------- 9. smaller validation


def test_9_complex_and_ragged_X_are_named():
    net = Network.uniform("relu", 8, 2)
    with pytest.raises(TypeError, match="X must be a real array"):
        corrlib.estimate_cumulants(net, [[1 + 1j]], 100)
    with pytest.raises(ValueError, match="ragged"):
        corrlib.estimate_cumulants(Network.uniform("relu", 8, 2, n_in=2), [[1.0], [1.0, 2.0]], 100)


def test_9_quadrature_and_range_arguments_are_named():
    net = Network.uniform("tanh", 64, 3)
    with pytest.raises(TypeError, match="n_radial must be an integer"):
        corrlib.finite_width(net, [[1.0]], n_radial=2.7)
    with pytest.raises(TypeError, match="did you mean 'n_radial'"):
        corrlib.finite_width(net, [[1.0]], nradial=5)
    with pytest.raises(ValueError, match="C_b must be"):
        corrlib.theory.kernel_map("tanh", 1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="width must be"):
        corrlib.theory.asymptotics.leading_order("tanh", [1, 2], 0)


def test_9_rvs_arguments_are_named():
    law = exact.output_distribution(Network.uniform("relu", 4, 1), [[1.0]])
    with pytest.raises(ValueError, match="size must be"):
        law.rvs(size=-1)
    with pytest.raises(TypeError, match="rng must be"), pytest.warns(DeprecationWarning):
        law.rvs(size=3, random_state="x")


# ----------------------------------------------------------------- 10. interrupted runs


def test_10_interrupting_a_paper_run_is_covered_by_the_reproduce_tests():
    """The SIGINT reproducer runs in tests/test_reproduce.py (it needs a project copy)."""
    from pathlib import Path

    source = (Path(__file__).parent / "test_reproduce.py").read_text(encoding="utf-8")
    assert "def test_sigint_stops_the_run_promptly_and_replaces_nothing(" in source
