"""Activations (corrlib.model.activations): derivatives, Taylor data, classes, lookup, identity,
inference for user activations and pickling. Bad input: tests/test_bad_inputs_model.py."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import corrlib
from corrlib.model import activations as activations_module
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
    # f(0) is +0.0, not -0.0, for every scale-invariant built-in
    assert math.copysign(1.0, float(scale_invariant(1.5, -0.5).f(np.zeros(1))[0])) == 1.0


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


def test_unknown_activation_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"unknown activation 'reLu2'.*\(did you mean 'relu'\?\)"):
        get_activation("reLu2")


# -- built-ins are trusted: the user-activation checks pass on them (run once, here) ------------


@pytest.mark.parametrize("name", ALL)
def test_builtins_pass_the_user_activation_checks(name):
    """The construction-time checks, applied to each built-in's functions, accept them and infer
    the built-in's data: class, kink, slopes, and Taylor coefficients within the stated error."""
    b = get_activation(name)
    u = Activation("u_" + name, f=b.f, df=b.df, d2f=b.d2f)
    assert u.universality == b.universality
    assert u.kink == b.kink
    assert (u.a_plus, u.a_minus) == (b.a_plus, b.a_minus)
    if b.taylor is None:
        assert u.taylor is None
        return
    n = min(len(b.taylor), len(u.taylor))
    assert n >= 4  # enough for sigma(0), sigma_1 and a_1 (T18)
    err = u.taylor_error or (0.0,) * n  # None: exact (the linear case)
    for k in range(n):
        assert abs(u.taylor[k] - b.taylor[k]) <= max(err[k], 1e-15), f"{name}: sigma_{k}"
    # and the data given with the built-in pass the consistency checks
    Activation(
        "v_" + name,
        f=b.f,
        df=b.df,
        d2f=b.d2f,
        taylor=b.taylor,
        kink=b.kink,
        universality=b.universality,
    )


def test_builtins_are_not_inspected_at_construction(monkeypatch):
    def boom(act):
        raise AssertionError("built-ins are trusted")

    monkeypatch.setattr(activations_module, "_inspect", boom)
    for name in available_activations():
        get_activation(name)
    leaky_relu(0.2)
    scale_invariant(2.0, 0.5)
    with pytest.raises(AssertionError, match="trusted"):
        Activation("mine", f=np.tanh, df=np.tanh)


# -- identity ------------------------------------------------------------------------------------


def _tanh_d1(z):
    return 1.0 - np.tanh(z) ** 2


def test_a_user_activation_never_equals_a_builtin_by_name():
    """Issue 13.2: a user 'relu' that computes tanh is not the built-in relu, nor are networks."""
    fake = Activation("relu", f=np.tanh, df=_tanh_d1)
    relu = get_activation("relu")
    assert fake != relu and relu != fake
    assert fake.universality == "K*=0"  # it is judged by what it computes
    assert corrlib.Network((1, 4, 1), fake) != corrlib.Network((1, 4, 1), relu)
    assert len({fake, relu}) == 2
    # even built from the built-in's own functions, a user activation is not the built-in
    tanh = get_activation("tanh")
    assert Activation("tanh", f=tanh.f, df=tanh.df, d2f=tanh.d2f) != tanh


def test_user_activations_are_equal_only_when_built_from_the_same_functions():
    a = Activation("t", f=np.tanh, df=_tanh_d1)
    b = Activation("t", f=np.tanh, df=_tanh_d1)
    assert a == b and hash(a) == hash(b)
    assert corrlib.Network((1, 3, 1), a) == corrlib.Network((1, 3, 1), b)
    # same functions, other name or params: different
    assert a != Activation("t2", f=np.tanh, df=_tanh_d1)
    assert a != Activation("t", f=np.tanh, df=_tanh_d1, params={"scale": 1.0})
    # the same formula in a different function object: different (functions compare by identity)
    c = Activation("t", f=lambda z: np.tanh(z), df=_tanh_d1)
    assert a != c and c == c


def test_builtins_are_equal_by_constructor_and_parameters():
    assert get_activation("tanh") == get_activation("tanh")
    assert get_activation("silu") == get_activation("swish")
    assert leaky_relu(0.3) == get_activation("leaky_relu", slope=0.3)
    assert leaky_relu(0.3) != leaky_relu(0.2)
    assert scale_invariant(2.0, 0.5) == scale_invariant(2.0, 0.5)
    # same function, other construction (documented): not equal
    assert leaky_relu(0.0) != get_activation("relu")
    assert scale_invariant(1.0, 0.0) != get_activation("relu")
    assert scale_invariant(1.0, 0.5, name="a") != scale_invariant(1.0, 0.5, name="b")


def _pool():
    tanh = get_activation("tanh")
    u1 = Activation("relu", f=np.tanh, df=_tanh_d1)
    return [
        get_activation("relu"),
        get_activation("relu"),
        get_activation("tanh"),
        get_activation("silu"),
        get_activation("swish"),
        leaky_relu(0.1),
        leaky_relu(0.1),
        leaky_relu(0.2),
        scale_invariant(1.0, 0.0),
        u1,
        u1,
        Activation("relu", f=np.tanh, df=_tanh_d1),
        Activation("tanh", f=tanh.f, df=tanh.df),
    ]


POOL = _pool()


@given(st.integers(0, len(POOL) - 1), st.integers(0, len(POOL) - 1))
def test_eq_is_an_equivalence_consistent_with_hash(i, j):
    a, b = POOL[i], POOL[j]
    assert a == a
    assert (a == b) == (b == a)
    if a == b:
        assert hash(a) == hash(b)
        assert corrlib.Network((2, 3, 1), a) == corrlib.Network((2, 3, 1), b)


def test_copies_are_the_same_object():
    import copy

    act = Activation("t", f=lambda z: np.tanh(z), df=_tanh_d1)
    assert copy.copy(act) is act and copy.deepcopy(act) is act
    net = corrlib.Network((1, 2, 1), act)
    assert copy.deepcopy(net) == net


# -- inference for user activations ---------------------------------------------------------------


def test_user_tanh_without_taylor_is_k_star_zero_with_a_critical_point():
    """Issue 13.7: the class comes from f, so a user tanh gets the K*=0 critical point (T8)."""
    from corrlib.model.criticality import critical_point

    mine = Activation("my_tanh", f=lambda z: np.tanh(z), df=_tanh_d1)
    assert mine.universality == "K*=0" and not mine.kink
    assert mine.a1 == pytest.approx(-2.0, abs=1e-9)  # (T18)
    cp = critical_point(mine)
    assert (cp.C_W, cp.C_b, cp.K_star) == (pytest.approx(1.0, abs=1e-12), 0.0, 0.0)
    assert corrlib.Network.critical(mine, 4, 2).C_W == pytest.approx(1.0, abs=1e-12)


@given(
    a=st.floats(0.2, 3.0),
    b=st.floats(0.2, 2.0),
)
def test_scaled_tanh_taylor_data_are_inferred(a, b):
    """sigma = a tanh(b z): sigma_1 = a b, sigma_3 = -2 a b^3, a_1 = -2 b^2 (T18)."""
    act = Activation(
        "st", f=lambda z: a * np.tanh(b * z), df=lambda z: a * b * (1 - np.tanh(b * z) ** 2)
    )
    assert act.universality == "K*=0"
    t, e = act.taylor, act.taylor_error
    assert t[0] == 0.0 and t[2] == 0.0
    assert abs(t[1] - a * b) <= e[1] + 1e-15 * a * b
    assert abs(t[3] + 2 * a * b**3) <= e[3] + 1e-14 * a * b**3
    assert act.a1 == pytest.approx(-2 * b**2, rel=1e-9)


@given(
    ap=st.floats(-3.0, 3.0).filter(lambda v: abs(v) > 1e-3),
    am=st.floats(-3.0, 3.0),
)
def test_piecewise_linear_user_activations_are_scale_invariant(ap, am):
    act = Activation(
        "pl",
        f=lambda z: np.where(z > 0, ap * z, am * z),
        df=lambda z: np.where(z > 0, ap, am) + 0.0 * z,
    )
    assert act.is_scale_invariant
    assert (act.a_plus, act.a_minus) == (pytest.approx(ap, rel=1e-12), pytest.approx(am, rel=1e-12))
    assert act.kink == (act.a_plus != act.a_minus)
    A2, A4 = (ap**2 + am**2) / 2, (ap**4 + am**4) / 2
    assert act.moment_ratio() == pytest.approx(3 * A4 / A2**2 - 1, rel=1e-9)  # (T17)


def test_user_relu_gets_the_scale_invariant_critical_point():
    from corrlib.model.criticality import critical_point

    relu = Activation("my_relu", f=lambda z: np.maximum(z, 0.0), df=lambda z: (z > 0) * 1.0)
    assert relu.is_scale_invariant and relu.kink and (relu.a_plus, relu.a_minus) == (1.0, 0.0)
    assert relu.taylor is None
    assert critical_point(relu).C_W == 2.0


def test_kinks_away_from_zero_are_allowed():
    """relu6 has kinks at 0 and 6: df is checked by one-sided differences there."""
    relu6 = Activation(
        "relu6", f=lambda z: np.clip(z, 0.0, 6.0), df=lambda z: ((z > 0) & (z < 6)) * 1.0
    )
    assert relu6.kink and relu6.universality == "other"
    hard = Activation(
        "hardtanh", f=lambda z: np.clip(z, -1.0, 1.0), df=lambda z: (np.abs(z) < 1) * 1.0
    )
    assert not hard.kink and hard.taylor[:4] == (0.0, 1.0, 0.0, 0.0)


def test_inferred_coefficients_below_their_error_are_zero():
    act = Activation("odd", f=lambda z: np.sin(z + np.pi) * -1.0, df=lambda z: -np.cos(z + np.pi))
    assert act.taylor[0] == 0.0 and act.taylor[2] == 0.0 and act.taylor[4] == 0.0
    assert act.universality == "K*=0"


def test_functions_without_complex_support_use_the_real_expansion():
    """softplus through np.logaddexp takes no complex input: Chebyshev derivatives are used."""
    b = get_activation("softplus")
    u = Activation("sp", f=lambda z: np.logaddexp(0.0, z), df=b.df)
    for k in range(4):
        assert abs(u.taylor[k] - b.taylor[k]) <= u.taylor_error[k] + 1e-15
    assert u.universality == "other"


def test_a_nearby_complex_singularity_is_resolved_on_a_smaller_radius():
    """z / (1 + 25 z^2) has poles at +-0.2i: sigma_3 = -150, sigma_5 = 75000."""
    act = Activation(
        "runge",
        f=lambda z: z / (1 + 25 * z**2),
        df=lambda z: (1 - 25 * z**2) / (1 + 25 * z**2) ** 2,
    )
    assert act.taylor[3] == pytest.approx(-150.0, rel=1e-9)
    assert act.taylor[5] == pytest.approx(75000.0, rel=1e-6)
    assert act.universality == "K*=0"


def test_np_vectorize_wrapped_scalar_functions_are_accepted():
    act = Activation(
        "vtanh",
        f=np.vectorize(math.tanh, otypes=[float]),
        df=np.vectorize(lambda z: 1.0 - math.tanh(z) ** 2, otypes=[float]),
    )
    assert act.universality == "K*=0"
    assert act.a1 == pytest.approx(-2.0, rel=1e-8)


def test_given_data_that_agree_with_f_are_kept():
    act = Activation("t", f=np.tanh, df=_tanh_d1, taylor=[0, 1, 0, -2], universality="K*=0")
    assert act.taylor == (0.0, 1.0, 0.0, -2.0) and act.taylor_error is None
    si = Activation(
        "si",
        f=lambda z: np.where(z > 0, 2.0 * z, 0.5 * z),
        df=lambda z: np.where(z > 0, 2.0, 0.5),
        a_plus=2.0,
        a_minus=0.5,
    )
    assert si.is_scale_invariant and si.kink


# -- pickling --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["relu", "linear", "tanh", "erf", "sin", "gelu", "swish", "silu"])
def test_builtin_activations_pickle_by_name(name):
    """Networks must travel to worker processes (sweeps): built-ins pickle by name."""
    act = corrlib.get_activation(name)
    back = pickle.loads(pickle.dumps(act))
    assert back == act
    z = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(back.f(z), act.f(z))
    leaky = pickle.loads(pickle.dumps(corrlib.leaky_relu(0.3)))
    assert leaky.params == {"slope": 0.3} and leaky.a_minus == 0.3
    si = scale_invariant(1.5, 0.25, name="mine")
    assert pickle.loads(pickle.dumps(si)) == si
    net = corrlib.Network.critical("tanh", 10, 3)
    assert pickle.loads(pickle.dumps(net)) == net


def test_user_activations_pickle_by_value():
    lam = Activation(
        "lecun",
        f=lambda z: 1.7159 * np.tanh(2 * z / 3),
        df=lambda z: 1.7159 * 2 / 3 * (1 - np.tanh(2 * z / 3) ** 2),
    )
    back = pickle.loads(pickle.dumps(lam))
    z = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(back.f(z), lam.f(z))
    assert (back.universality, back.taylor, back.kink) == (lam.universality, lam.taylor, lam.kink)
    assert back != lam  # new function objects (documented)
    # importable functions pickle by reference, so the copy is equal
    mod = Activation("m", f=np.tanh, df=_tanh_d1)
    assert pickle.loads(pickle.dumps(mod)) == mod
