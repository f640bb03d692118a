"""Bad, extreme and user-defined inputs of the Monte Carlo entry points (issue 13).

Every case asserts the right answer, or the named error/warning with a message that names the
parameter (or the activation) and the value. Monte Carlo comparisons use Z = 4 (two-sided
alpha = 6.3e-5) with the estimator's own standard error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corrlib
from corrlib.model.activations import Activation, get_activation
from corrlib.model.network import Network
from corrlib.montecarlo import HeavyTailWarning, MonteCarloTask, root_seed_sequence
from corrlib.montecarlo.blocks import MAX_DRAWS, block_generator
from corrlib.montecarlo.estimators import estimate_cumulants
from corrlib.montecarlo.samplers import block_size, sample_collective, sample_outputs, scalar_kernel

Z = 4.0


def _lecun_tanh(name: str = "tanh") -> Activation:
    """LeCun's 1.7159 tanh(2z/3), named like the built-in."""
    a, b = 1.7159, 2.0 / 3.0
    return Activation(
        name, f=lambda z: a * np.tanh(b * z), df=lambda z: a * b / np.cosh(b * z) ** 2
    )


def _sin_named_tanh() -> Activation:
    return Activation("tanh", f=lambda z: np.sin(z), df=lambda z: np.cos(z))


# ---------------------------------------------------------------------------------------------
# user activations: sampled as themselves, never by name (issue 13 item 2)


@pytest.mark.parametrize("act", [_lecun_tanh(), _sin_named_tanh()], ids=["lecun", "sin"])
def test_user_activation_named_tanh_is_sampled_as_itself(act):
    """One hidden layer, c = 1: Sigma^(1) = C_W/n sum_j f(sqrt(S0) g_j)^2 with the block's own
    Gaussians, reproduced by hand from the same generator (the collapsed sampler, T3)."""
    n, N, seed = 16, 500, 3
    net = Network((1, n, 1), act, C_W=1.0)
    assert N <= block_size(net, 1)  # one block
    S = sample_collective(net, [[2.0]], N, rng=seed, layers=[2])[:, 0, 0, 0]
    g = block_generator(root_seed_sequence(seed), 0).standard_normal((N, n))
    want = (act.f(2.0 * g) ** 2).sum(axis=1) / n  # S0 = C_W x^2 / n_0 = 4
    np.testing.assert_allclose(S, want, rtol=1e-12)
    tanh_would_give = (np.tanh(2.0 * g) ** 2).sum(axis=1) / n
    assert np.abs(S - tanh_would_give).max() > 0.1  # negative control: np.tanh differs


def test_sin_named_tanh_mean_is_exact():
    """E Sigma^(1) = C_W E sin^2(sqrt(S0) g) = C_W (1 - exp(-2 S0))/2 exactly; the built-in
    tanh's value is rejected by the same z-test (negative control)."""
    net = Network((1, 8, 1), _sin_named_tanh(), C_W=1.0)
    e = estimate_cumulants(net, [[1.5]], 40_000, rng=1)
    exact = (1 - math.exp(-2 * 2.25)) / 2
    assert abs(e.mean[1, 0, 0] - exact) <= Z * e.mean_se[1, 0, 0]
    tanh_net = Network((1, 8, 1), "tanh", C_W=1.0)
    tanh_mean = estimate_cumulants(tanh_net, [[1.5]], 40_000, rng=2).mean[1, 0, 0]
    assert abs(tanh_mean - exact) > Z * e.mean_se[1, 0, 0]


def test_fast_path_is_chosen_by_inspecting_the_object():
    relu, tanh = get_activation("relu"), get_activation("tanh")
    assert scalar_kernel(relu) == ("homogeneous", 1.0, 0.0)
    assert scalar_kernel(get_activation("leaky_relu", slope=0.2)) == ("homogeneous", 1.0, 0.2**2)
    assert scalar_kernel(tanh) == ("ufunc",)
    assert scalar_kernel(get_activation("erf")) == ("ufunc",)
    # the same function under another name takes the same path
    assert scalar_kernel(Activation("my_tanh", f=np.tanh, df=tanh.df)) == ("ufunc",)
    # a name says nothing
    assert scalar_kernel(_lecun_tanh()) == ("general",)
    assert scalar_kernel(_sin_named_tanh()) == ("general",)
    # declared slopes that f does not reproduce cannot even be built: f is the definition (T1)
    with pytest.raises(ValueError, match=r"a_plus, a_minus must describe f"):
        Activation(
            "relu", f=np.tanh, df=tanh.df, a_plus=1.0, a_minus=0.0, universality="scale-invariant"
        )


@settings(max_examples=25, deadline=None)
@given(
    a_plus=st.floats(0.1, 3.0),
    a_minus=st.floats(-2.0, 2.0),
    x=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**16),
)
def test_homogeneous_fast_path_equals_the_general_path(a_plus, a_minus, x, seed):
    """A user scale-invariant activation (slopes inferred from f: the fast path) samples the
    same Sigma as the general path that applies f itself, to rounding."""
    import dataclasses

    from corrlib.montecarlo.blocks import block_generator, root_seed_sequence
    from corrlib.montecarlo.samplers import make_plan, run_block

    def f(z):
        return np.where(z > 0, a_plus * z, a_minus * z)

    def df(z):
        return np.where(z > 0, a_plus, a_minus)

    act = Activation("user", f=f, df=df)
    assert scalar_kernel(act)[0] == "homogeneous"
    net = Network((1, 6, 5, 1), act, 2.0 / (a_plus**2 + a_minus**2))
    fast = make_plan(net, [[x]])
    slow = dataclasses.replace(fast, kernel=("general",))
    out = {}
    for name, plan in (("fast", fast), ("slow", slow)):
        layers = []
        gen = block_generator(root_seed_sequence(seed), 0)
        run_block(plan, gen, 64, lambda k, S, layers=layers: layers.append(np.array(S)))
        out[name] = np.array(layers)
    np.testing.assert_allclose(out["fast"], out["slow"], rtol=1e-10, atol=1e-300)  # underflow


def test_scalar_returning_activation_is_refused():
    """Issue 13 item 7: an activation returning a scalar was broadcast (output ~1e-20)."""
    with pytest.raises((TypeError, ValueError), match=r"(?i)activation.*(shape|vectori)"):
        act = Activation("flat", f=lambda z: 0.5, df=lambda z: 0.0)
        sample_collective(Network((1, 4, 1), act), [[1.0]], 8, rng=0)


def test_non_vectorized_activation_gets_a_clear_error():
    """math.tanh fails on arrays: the error names the activation and asks for vectorization."""
    with pytest.raises((TypeError, ValueError), match=r"(?i)activation.*vectori"):
        act = Activation("mtanh", f=math.tanh, df=lambda z: 1 - math.tanh(z) ** 2)
        estimate_cumulants(Network((1, 4, 1), act), [[1.0]], 100, rng=0)


def test_nan_returning_activation_is_named():
    """NaN for |z| > 50 only: the error names the activation and NaN, not an exploding phase."""

    def f(z):
        return np.where(np.abs(z) > 50, np.nan, np.tanh(z))

    def df(z):
        return np.where(np.abs(z) > 50, np.nan, 1 - np.tanh(z) ** 2)

    with pytest.raises(ValueError, match=r"(?i)nan") as info:
        act = Activation("holey", f=f, df=df)
        sample_collective(Network((1, 64, 2, 1), act), [[100.0]], 256, rng=0)
    assert "holey" in str(info.value)


# ---------------------------------------------------------------------------------------------
# inputs, keywords and resource guards (issue 13 items 8, 9)


@pytest.mark.parametrize(
    "func", [estimate_cumulants, sample_collective, sample_outputs], ids=lambda f: f.__name__
)
def test_ragged_X_names_X(func):
    net = Network((2, 4, 1), "tanh")
    with pytest.raises((TypeError, ValueError), match="X"):
        func(net, [[1.0, 2.0], [3.0]], 10, rng=0)


def test_ragged_X_in_task_names_X():
    with pytest.raises((TypeError, ValueError), match="X"):
        MonteCarloTask(Network((2, 4, 1), "tanh"), [[1.0, 2.0], [3.0]], 10)


def test_task_unknown_keyword_did_you_mean():
    with pytest.raises(TypeError, match="did you mean 'method'"):
        MonteCarloTask(Network((1, 4, 1), "tanh"), [[1.0]], 10, methd="naive")


def test_complex_X_is_refused():
    with pytest.raises(TypeError, match="X"):
        estimate_cumulants(Network((1, 4, 1), "tanh"), [[1.0 + 2.0j]], 10, rng=0)


def test_inputs_are_validated_before_anything_else():
    """A bad X is reported even when other arguments are bad too."""
    with pytest.raises((TypeError, ValueError), match="X"):
        estimate_cumulants(Network((2, 4, 1), "tanh"), [[1.0]], -5, method="?", rng="?")


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"nsamples": 10}, TypeError, ["nsamples", "did you mean 'n_samples'"]),
        ({"progres": True}, TypeError, ["progres", "did you mean 'progress'"]),
        ({"n_job": 2}, TypeError, ["n_job", "did you mean 'n_jobs'"]),
        ({"method": "colapsed"}, ValueError, ["method", "'colapsed'", "did you mean 'collapsed'"]),
        ({"n_jobs": 2.5}, TypeError, ["n_jobs", "2.5"]),
        ({"chunk_size": 0}, ValueError, ["chunk_size", "0"]),
        ({"rng": "x"}, TypeError, ["rng", "'x'"]),
        ({"rng": -3}, ValueError, ["rng", "-3"]),
        ({"progress": "yes"}, TypeError, ["progress", "'yes'"]),
    ],
)
def test_estimate_cumulants_keywords(kwargs, exc, words):
    args = {"n_samples": 10, **kwargs}
    with pytest.raises(exc) as info:
        estimate_cumulants(Network((1, 4, 1), "tanh"), [[1.0]], **args)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_sample_outputs_refuses_layers():
    """sample_outputs has no ``layers`` (it returns the outputs only): the keyword is refused,
    not silently ignored, and the allowed list is its own signature."""
    with pytest.raises(TypeError) as info:
        sample_outputs(Network((1, 4, 1), "tanh"), [[1.0]], 4, rng=0, layers=[1])
    message = str(info.value)
    assert "sample_outputs() got an unexpected keyword argument 'layers'" in message
    assert message.endswith(
        "allowed: net, X, n_samples, directions, method, rng, n_jobs, chunk_size"
    ), message


@pytest.mark.parametrize(
    "func, typo, hint",
    [(sample_collective, "layer", "layers"), (estimate_cumulants, "chunksize", "chunk_size")],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_unknown_keyword_lists_the_signature(func, typo, hint):
    with pytest.raises(TypeError, match=f"{typo}.*did you mean '{hint}'") as info:
        func(Network((1, 4, 1), "tanh"), [[1.0]], 4, rng=0, **{typo: 1})
    assert "allowed: net, X, n_samples, directions, method, rng, " in str(info.value)


@pytest.mark.parametrize("n_samples, exc", [(2, ValueError), (2.5, TypeError), (True, TypeError)])
def test_n_samples_out_of_range(n_samples, exc):
    with pytest.raises(exc, match="n_samples"):
        estimate_cumulants(Network((1, 4, 1), "tanh"), [[1.0]], n_samples, rng=0)


def test_progress_is_keyword_only():
    with pytest.raises(TypeError):
        estimate_cumulants(Network((1, 4, 1), "tanh"), [[1.0]], 10, None, "collapsed", 0, True)


def test_huge_n_samples_is_refused_at_once_with_the_cost():
    """Issue 13 item 8: n_samples = 1e13 built a list of 2.4e9 block ranges (MemoryError after
    40 s). Now the cost is checked before anything runs, and the message names the cap."""
    net = Network.uniform("relu", 64, 4, C_W=2.0)
    with pytest.raises(ValueError, match="n_samples") as info:
        estimate_cumulants(net, [[1.0]], 10**13, rng=0)
    msg = str(info.value)
    assert "MAX_DRAWS" in msg and "hours" in msg and "run_blocks" in msg
    assert 10**13 * 256 > MAX_DRAWS


def test_task_streams_a_huge_range_lazily():
    """A task of 1e13 samples has 2.4e9 blocks; its block bookkeeping is O(1): a range near the
    end runs without building the ranges before it."""
    task = MonteCarloTask(Network.uniform("tanh", 4, 1), np.ones((1, 1)), 10**13)
    nb = task.n_blocks
    assert nb > 10**9
    stats = task.run_blocks(root_seed_sequence(0), nb - 2, nb)
    assert (stats.start, stats.stop) == (nb - 2, nb)


def test_sample_collective_refuses_an_output_larger_than_memory():
    net = Network.uniform("relu", 4, 1, C_W=2.0)
    with pytest.raises(MemoryError, match=r"n_samples=100000000000.*GiB.*estimate_cumulants"):
        sample_collective(net, [[1.0]], 10**11, rng=0)


def test_layers_must_be_integers_in_range():
    net = Network.uniform("tanh", 4, 2)
    for layers, exc in (([0], ValueError), ([1.5], ValueError), ([[1], [2, 3]], TypeError)):
        with pytest.raises(exc, match=r"layers must be .*1\.\.L\+1 = 1\.\.3"):
            sample_collective(net, [[1.0]], 4, rng=0, layers=layers)


# ---------------------------------------------------------------------------------------------
# heavy tails (issue 13 item 3): replay of the reported cases


def test_relu_n4_L40_warns():
    """The issue's case: mean 0.00104 +- 0.00086 against an exact 2, without a word."""
    net = Network.uniform("relu", 4, 40, C_W=2.0)
    with pytest.warns(HeavyTailWarning) as rec:
        e = estimate_cumulants(net, [[1.0]], 20_000, rng=0)
    (msg,) = [str(w.message) for w in rec if str(w.message).startswith("Monte Carlo mean")]
    assert "l = 41" in msg and "collective_moments" in msg and "tail shape" in msg
    assert e.mean_tail[-1, 0, 0] >= 0.5


def test_relu_L_over_n_100_warns():
    """L/n = 100: every sampled network is dead (0 +- 0); the warning still fires."""
    net = Network.uniform("relu", 4, 400, C_W=2.0)
    with pytest.warns(HeavyTailWarning) as rec:
        e = estimate_cumulants(net, [[1.0]], 2000, rng=0)
    assert any(str(w.message).startswith("Monte Carlo mean") for w in rec)
    assert e.mean_se[-1, 0, 0] == 0.0 and e.mean_tail[-1, 0, 0] >= 0.5


def test_heavy_tail_warning_is_exported():
    assert issubclass(HeavyTailWarning, UserWarning)
    assert corrlib.montecarlo.HeavyTailWarning is HeavyTailWarning
