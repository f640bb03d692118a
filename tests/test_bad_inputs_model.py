"""Bad, extreme and user-defined inputs of the model: activations, the network, its inputs.

Every case gets the right answer or a named error whose message names the argument and the
value (issue 13 items 2, 7, 9). Activations are checked once, at construction, so no entry point
downstream (kernels, recursion, exact solver, Monte Carlo) sees a function it cannot use.
"""

from __future__ import annotations

import math
import operator
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import corrlib
from corrlib.model.activations import (
    Activation,
    get_activation,
    leaky_relu,
    scale_invariant,
)
from corrlib.model.channels import input_kernel
from corrlib.model.criticality import critical_point
from corrlib.model.network import Network, validate_inputs


def _tanh_d1(z):
    return 1.0 - np.tanh(z) ** 2


# ================================================================== activations: lookup


@pytest.mark.parametrize("bad", [None, 3, 1.5, ["relu"]])
def test_activation_of_wrong_type(bad):
    with pytest.raises(TypeError, match=r"activation must be a name \(str\) or an Activation; got"):
        get_activation(bad)


def test_unknown_activation_lists_the_known_names_and_suggests_one():
    with pytest.raises(ValueError, match=r"unknown activation 'tahn'; known activations: ") as e:
        get_activation("tahn")
    assert "(did you mean 'tanh'?)" in str(e.value)
    for name in corrlib.available_activations():
        assert name in str(e.value)


def test_parameters_that_an_activation_does_not_take():
    with pytest.raises(TypeError, match=r"'relu' does not take parameters \['slope'\]"):
        get_activation("relu", slope=0.1)
    with pytest.raises(TypeError, match=r"\['slop'\] \(did you mean 'slope'\?\); allowed: slope"):
        get_activation("leaky_relu", slop=0.1)
    with pytest.raises(TypeError, match="parameters cannot be applied to an Activation"):
        get_activation(get_activation("tanh"), slope=0.1)


@pytest.mark.parametrize("slope", [-0.1, 1.0, 2.0, float("nan"), float("inf")])
def test_leaky_relu_slope_out_of_range(slope):
    msg = rf"slope must be a finite real number >= 0 and < 1; got {slope!r}"
    with pytest.raises(ValueError, match=msg):
        get_activation("leaky_relu", slope=slope)
    with pytest.raises(ValueError, match=msg):
        leaky_relu(slope)


@pytest.mark.parametrize("slope", ["0.1", None, True, 1j])
def test_leaky_relu_slope_of_wrong_type(slope):
    with pytest.raises(TypeError, match=r"slope must be a finite real number >= 0 and < 1; got"):
        leaky_relu(slope)


def test_scale_invariant_arguments():
    with pytest.raises(ValueError, match=r"a_plus and a_minus must not both be 0; got a_plus=0.0"):
        scale_invariant(0.0, 0.0)
    with pytest.raises(ValueError, match=r"a_minus must be a finite real number; got nan"):
        scale_invariant(1.0, float("nan"))
    with pytest.raises(TypeError, match=r"a_plus must be a finite real number; got '1'"):
        scale_invariant("1", 0.0)
    with pytest.raises(TypeError, match=r"name must be a non-empty str or None; got 3"):
        scale_invariant(1.0, 0.0, name=3)


# ============================================================ activations: the constructor


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(name=""), ValueError, r"name must be a non-empty str; got ''"),
        (dict(name=3), TypeError, r"name must be a non-empty str; got 3"),
        (dict(f=1.0), TypeError, r"f must be callable; got 1.0"),
        (dict(df="cos"), TypeError, r"df must be callable; got 'cos'"),
        (dict(d2f=0.0), TypeError, r"d2f must be callable or None; got 0.0"),
        (dict(kink="yes"), TypeError, r"kink must be True, False or None \(detect\); got 'yes'"),
        (dict(a_plus=1.0), ValueError, r"give both a_plus and a_minus .* got a_plus=1.0, a_minus"),
        (dict(a_plus=1.0, a_minus="0"), TypeError, r"a_minus must be a finite real number"),
        (
            dict(universality="k*=0"),
            ValueError,
            r"universality must be one of 'scale-invariant', 'K\*=0', 'other' or None; "
            r"got 'k\*=0' \(did you mean 'K\*=0'\?\)",
        ),
        (dict(params=[1]), TypeError, r"params must be a dict; got list"),
        (dict(taylor="0,1"), TypeError, r"taylor must be a sequence of floats"),
        (dict(taylor=()), ValueError, r"taylor must have at least one entry"),
        (dict(taylor=(0.0, float("nan"))), ValueError, r"taylor\[1\] must be a finite real"),
    ],
)
def test_constructor_field_errors(kwargs, exc, match):
    args = dict(name="mine", f=np.sin, df=np.cos)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Activation(**args)


@pytest.mark.parametrize(
    "f",
    [math.tanh, lambda z: z if z > 0 else 0.0, lambda z: max(z, 0.0)],
    ids=["math.tanh", "if-else", "max"],
)
def test_non_vectorized_functions_get_told_to_vectorize(f):
    """Issue 13.7: not numpy's 'truth value ... ambiguous' later, in 8 entry points."""
    with pytest.raises(TypeError, match=r"Activation 'mine': f must be vectorized") as e:
        Activation("mine", f=f, df=np.cos)
    assert "np.vectorize(f, otypes=[float])" in str(e.value)
    with pytest.raises(TypeError, match=r"df must be vectorized"):
        Activation("mine", f=np.sin, df=f)
    with pytest.raises(TypeError, match=r"d2f must be vectorized"):
        Activation("mine", f=np.sin, df=np.cos, d2f=f)


def test_a_function_that_always_raises():
    with pytest.raises(TypeError, match=r"f\(z\) raised ZeroDivisionError: division by zero"):
        Activation("mine", f=lambda z: 1 / 0, df=np.cos)


@pytest.mark.parametrize(
    "f",
    [lambda z: np.sum(np.tanh(z)), lambda z: 1.0, lambda z: np.tanh(z)[:3], lambda z: np.cumsum(z)],
    ids=["sum", "constant", "truncated", "cumsum"],
)
def test_functions_that_do_not_preserve_the_shape(f):
    """A scalar-returning activation was accepted by Monte Carlo (output ~1e-20)."""
    with pytest.raises(TypeError, match=r"f must return an array of its input's shape"):
        Activation("mine", f=f, df=np.cos)


@pytest.mark.parametrize(
    "f",
    [lambda z: z / np.max(np.abs(z)), lambda z: z - np.mean(z) + np.mean(z[:1])],
    ids=["normalized", "centred"],
)
def test_functions_that_are_not_elementwise(f):
    with pytest.raises(TypeError, match=r"f must act elementwise and deterministically; f\(z\) at"):
        Activation("mine", f=f, df=lambda z: np.ones_like(z))


def test_random_functions_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=r"changed with the other entries .* or between calls"):
        Activation(
            "noisy", f=lambda z: np.tanh(z) + 1e-3 * rng.standard_normal(z.shape), df=_tanh_d1
        )


@pytest.mark.parametrize(
    ("f", "match"),
    [
        (np.vectorize(lambda z: z if z > 0 else 0), r"got dtype int64 \(with np.vectorize pass"),
        (lambda z: np.tanh(z).astype(np.float32), r"got dtype float32"),
        (lambda z: z > 0, r"got dtype bool"),
    ],
    ids=["vectorize-int", "float32", "bool"],
)
def test_functions_that_do_not_return_float64(f, match):
    with pytest.raises(TypeError, match=r"f must return float64 values; " + match):
        Activation("mine", f=f, df=np.cos)


def test_complex_valued_functions():
    with pytest.raises(TypeError, match=r"f must return real values; got dtype complex128"):
        Activation("mine", f=lambda z: np.sqrt(z + 0j), df=np.cos)


@pytest.mark.parametrize(
    ("f", "df", "label", "value", "z"),
    [
        (np.sqrt, lambda z: 0.5 / np.sqrt(z), "f", "nan", "-1e-09"),
        (np.log1p, lambda z: 1 / (1 + z), "f", "-inf", "-1"),
        (lambda z: np.exp(z**2), lambda z: 2 * z * np.exp(z**2), "f", "inf", "-35.099"),
        (np.tanh, lambda z: np.where(z > 50, np.nan, _tanh_d1(z)), "df", "nan", "61.3"),
    ],
    ids=["sqrt", "log1p", "exp-z2", "df-nan"],
)
def test_non_finite_values_name_the_argument(f, df, label, value, z):
    """A NaN-returning activation was reported as 'exploding phase; reduce depth or C_W'."""
    with pytest.raises(
        ValueError, match=rf"{label}\(z\) must be finite for \|z\| <= 100; got {value} at z = {z} "
    ):
        Activation("mine", f=f, df=df)


@given(c=st.one_of(st.floats(0.25, 1 - 1e-5), st.floats(1 + 1e-5, 4.0)))
def test_a_wrong_df_is_rejected(c):
    """df = c sigma' for c != 1 beyond 10x the stated 1e-6 tolerance (issue 13.7: df off by 2x
    gave chi_perp 1.86 instead of 0.46)."""
    with pytest.raises(ValueError, match=r"'mine': df must be the derivative of f \(to 1e-06 rel"):
        Activation("mine", f=np.tanh, df=lambda z: c * _tanh_d1(z))
    with pytest.raises(ValueError, match=r"d2f must be the derivative of df"):
        Activation("mine", f=np.sin, df=np.cos, d2f=lambda z: -c * np.sin(z))


@pytest.mark.parametrize("c", [1 - 1e-7, 1 + 1e-7])
def test_df_within_the_stated_tolerance_is_accepted(c):
    """The tolerance is 1e-6 relative, as documented, not tighter."""
    act = Activation("mine", f=np.tanh, df=lambda z: c * _tanh_d1(z))
    assert act.universality == "K*=0"


def test_the_derivative_error_names_z_and_both_values():
    import re

    with pytest.raises(ValueError) as e:
        Activation("mine", f=np.sin, df=lambda z: 2 * np.cos(z))
    m = re.search(
        r"at z = (\S+) df\(z\) = (\S+) but the numerical derivative of f is (\S+) ", str(e.value)
    )
    z, claimed, numerical = (float(v) for v in m.groups())
    assert claimed == pytest.approx(2 * math.cos(z), rel=1e-6)
    assert numerical == pytest.approx(math.cos(z), rel=1e-6)
    assert "(wrong at 74 of 74 points checked)" in str(e.value)


def test_a_discontinuous_function_is_rejected():
    with pytest.raises(ValueError, match=r"f must be continuous; it jumps at z = 0"):
        Activation("step", f=lambda z: (z > 0) * 1.0, df=lambda z: 0.0 * z)


def test_declared_data_that_contradict_f():
    # a user 'relu' that computes tanh, declaring relu's slopes
    with pytest.raises(ValueError, match=r"a_plus, a_minus must describe f .* got a_plus=1.0"):
        Activation("relu", f=np.tanh, df=_tanh_d1, a_plus=1.0, a_minus=0.0)
    with pytest.raises(ValueError, match=r"kink=False but f has a kink at 0: one-sided slopes 0"):
        Activation("r", f=lambda z: np.maximum(z, 0.0), df=lambda z: (z > 0) * 1.0, kink=False)
    with pytest.raises(ValueError, match=r"taylor\[3\] must be the derivative of order 3 of f"):
        Activation("t", f=np.tanh, df=_tanh_d1, taylor=(0.0, 1.0, 0.0, -1.0))
    with pytest.raises(ValueError, match=r"taylor must be None for an activation with a kink"):
        Activation("r", f=lambda z: np.maximum(z, 0.0), df=lambda z: (z > 0) * 1.0, taylor=(0,))
    with pytest.raises(ValueError, match=r"universality='other' contradicts f: .* give 'K\*=0'"):
        Activation("t", f=np.tanh, df=_tanh_d1, universality="other")


def test_a_class_that_cannot_be_inferred_must_be_declared():
    """ELU is not three times differentiable at 0: a_1 (T18) does not exist, so say so."""
    f = lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    df = lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))
    with pytest.raises(ValueError, match=r"pass universality='other'"):
        Activation("elu", f=f, df=df)
    elu = Activation("elu", f=f, df=df, universality="other")
    assert elu.universality == "other" and not elu.kink


def test_user_tanh_has_a_critical_point():
    """Issue 13.7: a user tanh without taylor got 'has no critical point'."""
    mine = Activation("my_tanh", f=lambda z: np.tanh(z), df=_tanh_d1)
    assert critical_point(mine).C_W == pytest.approx(1.0, abs=1e-12)


def test_user_relu_named_relu_that_computes_tanh_is_not_relu():
    """Issue 13.2: equal by name before; now by what is computed."""
    fake = Activation("relu", f=np.tanh, df=_tanh_d1)
    assert fake != get_activation("relu")
    assert Network((1, 2, 1), fake) != Network((1, 2, 1), "relu")
    assert not fake.is_scale_invariant


def test_lambdas_travel_to_worker_processes():
    """Issue 13.7: user activations pickle by value (cloudpickle), so process pools work."""
    lecun = Activation(
        "lecun",
        f=lambda z: 1.7159 * np.tanh(2 * z / 3),
        df=lambda z: 1.1439333 * _tanh_d1(2 * z / 3),
    )
    z = np.array([-1.0, 0.25, 2.0])
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        back = pool.submit(operator.call, lecun, z).result()
        net = pool.submit(pickle.loads, pickle.dumps(Network((1, 3, 1), lecun))).result()
    np.testing.assert_array_equal(back, lecun(z))
    np.testing.assert_array_equal(net.activation(z), lecun(z))
    assert net.activation.universality == "K*=0"


# =================================================================== the network


@pytest.mark.parametrize(
    ("widths", "exc", "match"),
    [
        ((5, 2.5, 1), TypeError, r"widths\[1\] must be an integer >= 1; got 2.5 \(float\)"),
        ((5, 3.0, 1), TypeError, r"widths\[1\] must be an integer >= 1; got 3.0"),
        ((5, "3", 1), TypeError, r"widths\[1\] must be an integer >= 1; got '3'"),
        ((5, True, 1), TypeError, r"widths\[1\] must be an integer >= 1; got True"),
        ((5, 0, 1), ValueError, r"widths\[1\] must be an integer >= 1; got 0"),
        ((5, -4, 1), ValueError, r"widths\[1\] must be an integer >= 1; got -4"),
        ((0, 4, 1), ValueError, r"widths\[0\] must be an integer >= 1; got 0"),
        ((5, 4, 0), ValueError, r"widths\[2\] must be an integer >= 1; got 0"),
        ((5,), ValueError, r"widths must have length >= 2"),
        ("531", TypeError, r"widths must be a sequence of integers"),
        (5, TypeError, r"widths must be a sequence of integers"),
    ],
)
def test_bad_widths(widths, exc, match):
    with pytest.raises(exc, match=match):
        Network(widths, "relu")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(width=0, depth=2), ValueError, r"width must be an integer >= 1; got 0"),
        (dict(width=2.5, depth=2), TypeError, r"width must be an integer >= 1; got 2.5"),
        (dict(width=4, depth=-1), ValueError, r"depth must be an integer >= 0; got -1"),
        (dict(width=4, depth=1.0), TypeError, r"depth must be an integer >= 0; got 1.0"),
        (dict(width=4, depth="2"), TypeError, r"depth must be an integer >= 0; got '2'"),
        (dict(width=4, depth=2, n_in=0), ValueError, r"n_in must be an integer >= 1; got 0"),
        (dict(width=4, depth=2, n_out=1.5), TypeError, r"n_out must be an integer >= 1; got 1.5"),
    ],
)
@pytest.mark.parametrize("build", [Network.uniform, Network.critical])
def test_bad_uniform_and_critical_arguments(build, kwargs, exc, match):
    """TypeError for a wrong type, ValueError for out of range, in both constructors."""
    with pytest.raises(exc, match=match):
        build("relu", **kwargs)


@pytest.mark.parametrize("C_W", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_C_W(C_W):
    with pytest.raises(ValueError, match=rf"C_W must be a finite real number > 0; got {C_W}"):
        Network((2, 3, 1), "relu", C_W=C_W)


@pytest.mark.parametrize("C_b", [-1e-3, float("nan"), float("inf")])
def test_bad_C_b(C_b):
    with pytest.raises(ValueError, match=rf"C_b must be a finite real number >= 0; got {C_b}"):
        Network((2, 3, 1), "relu", C_b=C_b)


@pytest.mark.parametrize("name", ["C_W", "C_b"])
@pytest.mark.parametrize("bad", ["1.0", None, True, 1 + 0j])
def test_non_numeric_variances(name, bad):
    with pytest.raises(TypeError, match=rf"{name} must be a finite real number"):
        Network((2, 3, 1), "relu", **{name: bad})


def test_unknown_activation_in_network_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu'; known activations: .*relu"):
        Network((2, 3, 1), "rleu")


def test_with_unknown_field_suggests_the_right_one():
    net = Network((2, 3, 1), "relu")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'CW' \(did you mean 'C_W'"):
        net.with_(CW=2.0)


def test_no_critical_point_is_a_named_error():
    with pytest.raises(ValueError, match=r"activation 'softplus' has no critical point"):
        Network.critical("softplus", width=4, depth=2)


# ================================================================= inputs X, directions


@pytest.fixture
def net():
    return Network((3, 4, 1), "tanh", C_W=1.2, C_b=0.3)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones(2), r"X must have n_0=3 entries \(a 1-D X is one input\); got shape \(2,\)"),
        (np.ones((2, 3, 1)), r"X must be 2-D with shape \(k, n_0=3\) or \(n_0=3,\) for one input"),
        (np.float64(1.0), r"X must be 2-D .*; got shape \(\)"),
        (np.ones((2, 4)), r"X must have n_0=3 columns .*; got shape \(2, 4\)"),
        (np.ones((3, 2)), r"X must have n_0=3 columns"),  # a transposed input is not accepted
        (np.ones((1, 1)), r"X must have n_0=3 columns"),  # no broadcasting of a scalar row
        (np.ones((0, 3)), r"X must have at least one row; got shape \(0, 3\)"),
        ([[1.0, np.nan, 0.0]], r"X must be finite \(no NaN or inf\); got nan at X\[0, 1\]"),
        ([[1.0, 0.0, 0.0], [1.0, np.inf, 0.0]], r"X must be finite .*; got inf at X\[1, 1\]"),
        ([1.0, -np.inf, 0.0], r"X must be finite .*; got -inf at X\[0, 1\]"),
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], r"X must be a rectangular array .*; got a ragged sequence"),
    ],
)
def test_bad_X(net, X, match):
    with pytest.raises(ValueError, match=match):
        validate_inputs(net, X)
    with pytest.raises(ValueError, match=match):
        input_kernel(net, X)


@pytest.mark.parametrize(
    ("X", "what"),
    [
        ([[1 + 2j, 0.0, 0.0]], "complex"),
        (np.array([[1.0, 0.0, 0.0]], dtype=complex), "complex"),  # imaginary part 0: still no
        ([[True, False, True]], "boolean"),
        ([["a", "b", "c"]], "dtype <U1"),
        ([[1.0, None, 2.0]], "entries that are not real numbers"),
    ],
)
def test_non_real_X(net, X, what):
    """Complex X had its imaginary part dropped silently (issue 13.9)."""
    with pytest.raises(
        TypeError, match=rf"X must be a real array of shape \(k, n_0=3\); got {what}"
    ):
        validate_inputs(net, X)


@pytest.mark.parametrize(
    ("U", "match"),
    [
        (np.ones(3), r"directions must be 2-D with shape \(k, n_0=3\) \(one row: shape \(1, 3\)\)"),
        (np.ones((1, 2)), r"directions must have n_0=3 columns"),
        (np.ones((2, 4)), r"directions must have n_0=3 columns"),
        (np.ones((0, 3)), r"directions must have at least one row"),
        ([[0.0, np.nan, 1.0]], r"directions must be finite .*; got nan at directions\[0, 1\]"),
        ([[0.0, np.inf, 1.0]], r"directions must be finite"),
    ],
)
def test_bad_directions(net, U, match):
    X = np.ones((2, 3))
    with pytest.raises(ValueError, match=match):
        validate_inputs(net, X, U)
    with pytest.raises(ValueError, match=match):
        input_kernel(net, X, U)


def test_complex_directions(net):
    with pytest.raises(TypeError, match=r"directions must be a real array .*; got complex"):
        validate_inputs(net, np.ones((1, 3)), [[1j, 0, 0]])


def test_validate_inputs_needs_a_network():
    with pytest.raises(TypeError, match=r"net must be a corrlib.Network; got str"):
        validate_inputs("relu", np.ones((1, 3)))


@given(
    X=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 4)),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    ),
    data=st.data(),
)
def test_finite_X_round_trips_and_one_bad_entry_is_located(X, data):
    net = Network((X.shape[1], 2, 1), "relu")
    out, _ = validate_inputs(net, X)
    np.testing.assert_array_equal(out, X)
    i = data.draw(st.integers(0, X.shape[0] - 1))
    j = data.draw(st.integers(0, X.shape[1] - 1))
    bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    Y = X.copy()
    Y[i, j] = bad
    with pytest.raises(ValueError, match=rf"got {bad!r} at X\[{i}, {j}\]"):
        validate_inputs(net, Y)


# ================================================================== Gaussian expectations
# issue 13 items 5, 6, 9 in corrlib.model.gaussian and corrlib.model.criticality

from scipy import integrate  # noqa: E402

from corrlib.model import gaussian  # noqa: E402


def _tanh_nan_beyond(limit):
    """tanh that is NaN beyond |z| = limit (> 100, so the construction check accepts it)."""
    return Activation(
        f"nan_beyond_{limit}",
        lambda z: np.where(np.abs(z) > limit, np.nan, np.tanh(z)),
        lambda z: np.where(np.abs(z) > limit, np.nan, _tanh_d1(z)),
    )


@pytest.mark.parametrize("n", [257, 340, 400, 1000])
def test_radial_rule_above_its_accurate_range_is_refused(n):
    """The discretized Stieltjes rule lost mass silently above ~340 nodes (E z^2 = 0.876 at
    1000): it now refuses n > MAX_RADIAL = 256 with the range in the message."""
    with pytest.raises(ValueError, match=rf"n must be an integer in \[1, 256\]; got {n}"):
        gaussian.radial_rule(0, n)
    with pytest.raises(ValueError, match=rf"n_radial must be an integer in \[1, 256\]; got {n}"):
        gaussian.gaussian_rule(np.eye(2), n_radial=n)


def test_the_largest_radial_rule_is_accurate():
    """At the cap the rule still integrates E z^2 and E relu(z)^2 (ReLU kernel) to 1e-13."""
    assert gaussian.gaussian_expectation(
        lambda z: z[:, 0] ** 2, np.eye(1), n_radial=256
    ) == pytest.approx(1.0, rel=1e-13)
    K = np.array([[2.0, 1.0], [1.0, 2.0]])
    val = gaussian.gaussian_expectation(
        lambda z: np.maximum(z[:, 0], 0) * np.maximum(z[:, 1], 0), K, "axes", n_radial=256
    )
    theta = np.arccos(0.5)  # arc-cosine kernel sqrt(K11 K22)(sin t + (pi - t) cos t) / (2 pi)
    assert val == pytest.approx(
        2.0 * (np.sin(theta) + (np.pi - theta) * 0.5) / (2 * np.pi), rel=1e-12
    )


@pytest.mark.parametrize("bad", [2.7, "40", True])
def test_node_counts_are_not_rounded(bad):
    with pytest.raises(TypeError, match=rf"n_radial must be an integer .*; got {bad!r}"):
        gaussian.gaussian_rule(np.eye(2), n_radial=bad)


@pytest.mark.parametrize("entry", ["gaussian_rule", "gaussian_expectation"])
def test_unknown_node_count_keyword_gets_a_did_you_mean(entry):
    call = {
        "gaussian_rule": lambda: gaussian.gaussian_rule(np.eye(2), nradial=5),
        "gaussian_expectation": lambda: gaussian.gaussian_expectation(
            lambda z: z[:, 0], np.eye(2), nradial=5
        ),
    }[entry]
    with pytest.raises(TypeError, match=r"'nradial' \(did you mean 'n_radial'\?\)"):
        call()


def _sech_moment(p, K):
    """<sech(z)^p>_K by scipy's adaptive quadrature, split at 0 and at the activation's scale."""
    sd = math.sqrt(K)

    def f(z):
        sech = 2 * math.exp(-z) / (1 + math.exp(-2 * z))  # z >= 0; sech^2 < 1e-34 beyond 40
        return sech**p * math.exp(-0.5 * (z / sd) ** 2) / (sd * math.sqrt(2 * math.pi))

    pieces = [0.0, 1.0, 5.0, 40.0]
    return 2 * sum(
        integrate.quad(f, a, b, epsabs=0, epsrel=1e-13, limit=200)[0]
        for a, b in zip(pieces[:-1], pieces[1:], strict=False)
    )


@pytest.mark.parametrize("K", [1e3, 1e4, 1e8, 1e200])
def test_tanh_single_input_quantities_at_large_K(K):
    """Issue 13 item 5: chi_perp, chi_parallel and kernel_map of tanh lost accuracy at large K
    (3e-5 at 1e3, 3e-3 at 1e4, 0 from 1e8). References: scipy quad (K <= 1e4) and the
    asymptotic forms <sech^2> = (2 - pi^2/(12 K))/sqrt(2 pi K) (next term O(K^-2)),
    <sech^4> ~ (4/3)/sqrt(2 pi K) (relative correction O(1/K), below 1e-8 from K = 1e8)."""
    if K <= 1e4:
        s2, s4 = _sech_moment(2, K), _sech_moment(4, K)
        # chi_par = <z tanh sech^2>/K = (Stein) <sech^2 (sech^2 - 2 tanh^2)> = <3 sech^4 - 2 sech^2>
        ref_par, tol = 3 * s4 - 2 * s2, 1e-11
    else:
        # int sech^2 = 2, int z^2 sech^2 = pi^2/6: <sech^2> = (2 - pi^2/(12 K)) / sqrt(2 pi K)
        s2 = (2 - math.pi**2 / (12 * K)) / math.sqrt(2 * math.pi * K)
        s4 = (4 / 3) / math.sqrt(2 * math.pi * K)
        ref_par, tol = None, 1e-7
    assert corrlib.chi_perp("tanh", K, 1.0) == pytest.approx(s4, rel=tol, abs=0)
    assert corrlib.theory.kernel_map("tanh", K, 1.0) == pytest.approx(1.0 - s2, rel=2e-15, abs=0)
    chi_par = corrlib.chi_parallel("tanh", K, 1.0)
    if ref_par is not None:
        assert chi_par == pytest.approx(ref_par, rel=1e-8, abs=1e-14 * s2)  # ref_par ~ -s2/K
    else:
        assert 0.0 < chi_par < 1e-10  # ~ 2 <delta> / K ... positive and tiny, never NaN


def test_normal_expectation_names_a_nan_integrand():
    with pytest.raises(ValueError, match=r"my quantity: the integrand is NaN at z = .*"):
        gaussian.normal_expectation(
            [lambda z: np.where(np.abs(z) > 150, np.nan, z)], 1e3, name="my quantity"
        )


def test_normal_expectation_names_an_overflow():
    with pytest.raises(OverflowError, match=r"E relu\^6: the integrand is inf at z"):
        gaussian.normal_expectation([lambda z: np.maximum(z, 0) ** 6], 1e100, name="E relu^6")


@pytest.mark.parametrize("fn", ["chi_perp", "chi_parallel"])
def test_susceptibilities_of_an_activation_that_returns_nan(fn):
    """Issue 13 item 6: chi_* returned NaN; now a ValueError naming z."""
    act = _tanh_nan_beyond(150.0)
    with pytest.raises(ValueError, match=rf"{fn}: the integrand is NaN at z = -?1[5-9]\d"):
        getattr(corrlib, fn)(act, 1e6, 1.0)
