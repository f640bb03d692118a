"""Activations (corrlib.model.activations): derivatives, Taylor data, classes, lookup."""

from __future__ import annotations

import math

import numpy as np
import pytest

from corrlib.model.activations import (
    Activation,
    available_activations,
    get_activation,
    leaky_relu,
    scale_invariant,
)

ALL = ["relu", "leaky_relu", "linear", "tanh", "erf", "sin", "gelu", "swish", "softplus", "sigmoid"]
# points away from the kink at 0
Z = np.array([-3.1, -1.7, -0.9, -0.35, -0.04, 0.05, 0.3, 0.8, 1.3, 2.2, 3.7])


def test_available_activations_lists_the_builtins():
    names = available_activations()
    assert names == sorted(names)
    assert set(ALL) | {"silu"} == set(names)


@pytest.mark.parametrize("name", ALL)
def test_df_matches_central_difference_of_f(name):
    act = get_activation(name)
    h = 1e-5
    fd = (act.f(Z + h) - act.f(Z - h)) / (2 * h)
    # central-difference error ~ h^2 |f'''| / 6 + eps |f| / h  < 1e-9 here
    np.testing.assert_allclose(act.df(Z), fd, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ALL)
def test_d2f_matches_central_difference_of_df(name):
    act = get_activation(name)
    if act.d2f is None:
        assert act.kink  # only kinked activations lack sigma''
        return
    h = 1e-5
    fd = (act.df(Z + h) - act.df(Z - h)) / (2 * h)
    np.testing.assert_allclose(act.d2f(Z), fd, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ALL)
def test_taylor_coefficients_match_derivatives_at_zero(name):
    act = get_activation(name)
    if act.taylor is None:
        assert act.kink
        return
    # Chebyshev interpolant of the analytic f on [-1, 1]: its derivatives at 0 are
    # accurate to ~2e-8 relative for the orders stored (<= 5)
    cheb = np.polynomial.Chebyshev.interpolate(act.f, deg=30, domain=[-1.0, 1.0])
    for k, coef in enumerate(act.taylor):
        fd = float(cheb.deriv(k)(0.0)) if k else float(cheb(0.0))
        assert fd == pytest.approx(coef, rel=1e-7, abs=1e-7), f"{name}: derivative {k} at 0"


def test_kinked_activations_have_no_second_derivative_or_taylor_data():
    for name in ("relu", "leaky_relu"):
        act = get_activation(name)
        assert act.kink and act.d2f is None and act.taylor is None
    lin = get_activation("linear")
    assert not lin.kink and lin.taylor == (0.0, 1.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("relu", "scale-invariant"),
        ("leaky_relu", "scale-invariant"),
        ("linear", "scale-invariant"),
        ("tanh", "K*=0"),
        ("erf", "K*=0"),
        ("sin", "K*=0"),
        ("gelu", "other"),
        ("swish", "other"),
        ("softplus", "other"),
        ("sigmoid", "other"),
    ],
)
def test_universality_classes(name, cls):
    act = get_activation(name)
    assert act.universality == cls
    assert act.is_scale_invariant == (cls == "scale-invariant")


def test_a1_of_the_k_star_zero_class():
    # a_1 = sigma_3/sigma_1 + (3/4)(sigma_2/sigma_1)^2 (T18): tanh -2, erf -2, sin -1
    assert get_activation("tanh").a1 == pytest.approx(-2.0, abs=1e-15)
    assert get_activation("erf").a1 == pytest.approx(-2.0, abs=1e-15)
    assert get_activation("sin").a1 == pytest.approx(-1.0, abs=1e-15)
    assert get_activation("relu").a1 is None


def test_moment_ratio():
    # 3 A_4 / A_2^2 - 1 (T17)
    assert get_activation("relu").moment_ratio() == pytest.approx(5.0, abs=1e-14)
    assert get_activation("linear").moment_ratio() == pytest.approx(2.0, abs=1e-14)
    s = 0.3
    A2, A4 = (1 + s**2) / 2, (1 + s**4) / 2
    assert leaky_relu(s).moment_ratio() == pytest.approx(3 * A4 / A2**2 - 1, rel=1e-14)
    assert get_activation("tanh").moment_ratio() is None


def test_scale_invariant_values_and_slopes():
    act = scale_invariant(1.5, -0.5)
    np.testing.assert_array_equal(act.f(np.array([-2.0, 0.0, 3.0])), [1.0, 0.0, 4.5])
    np.testing.assert_array_equal(act.df(np.array([-2.0, 3.0])), [-0.5, 1.5])
    assert act.is_scale_invariant and act.kink
    lrelu = get_activation("leaky_relu", slope=0.2)
    assert (lrelu.a_plus, lrelu.a_minus) == (1.0, 0.2)
    assert lrelu.params == {"slope": 0.2}


def test_silu_is_swish():
    silu, swish = get_activation("silu"), get_activation("swish")
    assert silu == swish
    assert silu.name == "swish"
    np.testing.assert_allclose(silu.f(Z), Z / (1 + np.exp(-Z)), rtol=1e-15)


def test_lookup_is_case_insensitive_and_passes_instances_through():
    act = get_activation("tanh")
    assert get_activation(" TANH ") == act
    assert get_activation(act) is act
    assert act(np.array([0.5]))[0] == pytest.approx(math.tanh(0.5), abs=1e-16)


def test_unknown_activation_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown activation 'reLu2'.*known activations:") as e:
        get_activation("reLu2")
    for name in available_activations():
        assert name in str(e.value)


@pytest.mark.parametrize("bad", [None, 3, 1.5, ["relu"]])
def test_activation_of_wrong_type(bad):
    with pytest.raises(TypeError, match="activation must be a name"):
        get_activation(bad)


@pytest.mark.parametrize("slope", [-0.1, 1.0, 2.0, float("nan"), float("inf")])
def test_leaky_relu_slope_validation(slope):
    with pytest.raises(ValueError, match=r"slope must satisfy 0 <= slope < 1"):
        get_activation("leaky_relu", slope=slope)
    with pytest.raises(ValueError, match="slope"):
        leaky_relu(slope)


def test_parameters_that_an_activation_does_not_take():
    with pytest.raises(TypeError, match=r"'relu' does not take parameters \['slope'\]"):
        get_activation("relu", slope=0.1)
    with pytest.raises(TypeError, match="parameters cannot be applied"):
        get_activation(get_activation("tanh"), slope=0.1)


def test_activation_constructor_validation():
    with pytest.raises(TypeError, match="name"):
        Activation("", f=np.tanh, df=np.tanh)
    with pytest.raises(TypeError, match="df must be callable"):
        Activation("x", f=np.tanh, df=1.0)
    with pytest.raises(ValueError, match="a_plus and a_minus"):
        Activation("x", f=np.tanh, df=np.tanh, a_plus=1.0)
    with pytest.raises(ValueError, match="universality must be one of"):
        Activation("x", f=np.tanh, df=np.tanh, universality="critical")
    with pytest.raises(ValueError, match="a_plus and a_minus must be finite and not both 0"):
        scale_invariant(0.0, 0.0)


@pytest.mark.parametrize("name", ["relu", "linear", "tanh", "erf", "sin", "gelu", "swish", "silu"])
def test_builtin_activations_pickle_by_name(name):
    """Networks must travel to worker processes (sweeps): built-ins pickle by name."""
    import pickle

    import corrlib

    act = corrlib.get_activation(name)
    back = pickle.loads(pickle.dumps(act))
    assert back == act
    z = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(back.f(z), act.f(z))
    leaky = pickle.loads(pickle.dumps(corrlib.leaky_relu(0.3)))
    assert leaky.params == {"slope": 0.3} and leaky.a_minus == 0.3
    net = corrlib.Network.critical("tanh", 10, 3)
    assert pickle.loads(pickle.dumps(net)) == net
