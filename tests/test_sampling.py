"""corrlib.montecarlo.samplers: collapsed sampler (T3) vs the full-network reference (T1)."""

from __future__ import annotations

import numpy as np
import pytest

from corrlib.model.network import Network
from corrlib.montecarlo.blocks import root_seed_sequence
from corrlib.montecarlo.estimators import estimate_cumulants
from corrlib.montecarlo.samplers import sample_collective, sample_outputs

Z = 4.0  # z-bound of every Monte Carlo comparison


def _inputs(n0=3, m=2, d=1, seed=0):
    g = np.random.default_rng(seed)
    X = g.standard_normal((m, n0))
    U = g.standard_normal((d, n0)) if d else None
    return X, U


def _k3_and_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased k_3 along axis 0 and its delta-method standard error."""
    N = x.shape[0]
    y = x - x.mean(axis=0)
    m2, m3, m4, m6 = ((y**k).mean(axis=0) for k in (2, 3, 4, 6))
    k3 = m3 * N * N / ((N - 1) * (N - 2))
    return k3, np.sqrt(np.maximum(m6 - m3**2 - 6 * m4 * m2 + 9 * m2**3, 0) / N)


def test_shapes_and_layers():
    net = Network((3, 5, 6, 2), "tanh", 1.0, 0.1)
    X, U = _inputs()
    S = sample_collective(net, X, 10, U, rng=0)
    assert S.shape == (10, 3, 4, 4)
    np.testing.assert_array_equal(S, np.swapaxes(S, 2, 3))
    S2 = sample_collective(net, X, 10, U, rng=0, layers=[3, 1])
    np.testing.assert_array_equal(S2[:, 0], S[:, 2])
    np.testing.assert_array_equal(S2[:, 1], S[:, 0])
    z = sample_outputs(net, X, 7, U, rng=0)
    assert z.shape == (7, 2, 4)
    zn = sample_outputs(net, X, 7, U, method="naive", rng=0)
    assert zn.shape == (7, 2, 4)
    assert np.all(np.isfinite(zn))


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        ({"method": "exact"}, ValueError, "method"),
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"n_samples": 2.5}, TypeError, "n_samples"),
        ({"layers": [0]}, ValueError, "layers"),
        ({"layers": [4]}, ValueError, "layers"),
        ({"rng": "seed"}, TypeError, "rng"),
        ({"rng": -1}, ValueError, "rng"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"X": np.ones((2, 4))}, ValueError, "X"),
        ({"n_jobs": 1.5}, TypeError, "n_jobs"),
        ({"layers": [[1, 2], [3]]}, TypeError, "layers"),
        ({"nsamples": 4}, TypeError, "did you mean 'n_samples'"),
    ],
)
def test_bad_input(kwargs, exc, word):
    net = Network((3, 5, 6, 2), "tanh", 1.0, 0.1)
    args = {"X": np.ones((2, 3)), "n_samples": 4}
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        sample_collective(net, **args)


def test_rng_forms():
    net = Network.uniform("relu", 6, 2, C_W=2.0)
    X = [[1.0]]
    a = sample_collective(net, X, 50, rng=5)
    b = sample_collective(net, X, 50, rng=np.random.SeedSequence(5))
    np.testing.assert_array_equal(a, b)
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    np.testing.assert_array_equal(
        sample_collective(net, X, 50, rng=g1), sample_collective(net, X, 50, rng=g2)
    )
    # the generator was advanced: the next call differs
    assert not np.array_equal(sample_collective(net, X, 50, rng=g1), a)
    assert isinstance(root_seed_sequence(None), np.random.SeedSequence)


@pytest.mark.parametrize("method", ["collapsed", "naive"])
@pytest.mark.parametrize("c_case", ["scalar", "channels"])
def test_reproducible_across_chunks_and_threads(method, c_case):
    net = Network((3, 16, 8, 2), "tanh", 1.3, 0.2)
    X, U = _inputs() if c_case == "channels" else (np.ones((1, 3)), None)
    ref = sample_collective(net, X, 9000, U, method=method, rng=11, n_jobs=1, chunk_size=1)
    for n_jobs, chunk in [(2, 1), (2, 3), (1, 100)]:
        other = sample_collective(
            net, X, 9000, U, method=method, rng=11, n_jobs=n_jobs, chunk_size=chunk
        )
        np.testing.assert_array_equal(ref, other)
    z1 = sample_outputs(net, X, 5000, U, method=method, rng=3, n_jobs=1)
    z2 = sample_outputs(net, X, 5000, U, method=method, rng=3, n_jobs=2, chunk_size=2)
    np.testing.assert_array_equal(z1, z2)


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
def test_collapsed_matches_naive_law(act):
    """Same law (T3): mean, covariance and third cumulant of Sigma, two inputs + a direction."""
    C_W = {"relu": 2.0, "tanh": 1.2, "gelu": 1.5}[act]
    net = Network((3, 8, 6, 1), act, C_W, 0.3)
    X, U = _inputs()
    N = 30000
    ec = estimate_cumulants(net, X, N, U, method="collapsed", rng=1)
    en = estimate_cumulants(net, X, N, U, method="naive", rng=2)
    assert ec.mean.shape == (3, 4, 4) and ec.V.shape == (3, 4, 4, 4, 4) and ec.T is None
    for q in ("mean", "V"):
        a, b = getattr(ec, q)[1:], getattr(en, q)[1:]
        se = np.hypot(getattr(ec, q + "_se")[1:], getattr(en, q + "_se")[1:])
        assert np.all(se > 0)
        z = np.abs(a - b) / se
        assert z.max() < Z, (q, z.max())
    # third cumulants of every entry a <= b of Sigma^{(1)}, Sigma^{(2)}
    iu, ju = np.triu_indices(4)
    Sc = sample_collective(net, X, N, U, method="collapsed", rng=3)[:, 1:, iu, ju]
    Sn = sample_collective(net, X, N, U, method="naive", rng=4)[:, 1:, iu, ju]
    (kc, sc), (kn, sn) = _k3_and_se(Sc), _k3_and_se(Sn)
    z = np.abs(kc - kn) / np.hypot(sc, sn)
    assert z.max() < Z, z.max()
    # and the c = 1 estimator with its own T
    net1 = Network((3, 8, 6, 1), act, C_W, 0.3)
    e1 = estimate_cumulants(net1, X[:1], N, method="collapsed", rng=5)
    e2 = estimate_cumulants(net1, X[:1], N, method="naive", rng=6)
    z = np.abs(e1.T[1:] - e2.T[1:]) / np.hypot(e1.T_se[1:], e2.T_se[1:])
    assert z.max() < Z, z.max()


def test_outputs_collapsed_vs_naive():
    """E z_a z_b = E Sigma^{(L)}_ab and, for i != j, Cov(z_i z_i, z_j z_j) = V (T6)."""
    net = Network((3, 8, 8, 2), "tanh", 1.5, 0.2)
    X, U = _inputs()
    N = 40000
    for method, seed in (("collapsed", 1), ("naive", 2)):
        z = sample_outputs(net, X, N, U, method=method, rng=seed)
        zz = z[:, 0, :, None] * z[:, 0, None, :]
        e = estimate_cumulants(net, X, N, U, method=method, rng=seed + 10)
        se = np.hypot(zz.std(axis=0) / np.sqrt(N), e.mean_se[-1])
        assert (np.abs(zz.mean(axis=0) - e.mean[-1]) / se).max() < Z
        a = z[:, 0, 0] ** 2
        b = z[:, 1, 0] ** 2
        cov = np.cov(a, b)[0, 1]
        se_cov = np.std((a - a.mean()) * (b - b.mean())) / np.sqrt(N)
        assert abs(cov - e.V[-1, 0, 0, 0, 0]) / np.hypot(se_cov, e.V_se[-1, 0, 0, 0, 0]) < Z


def test_singular_input_kernel():
    """Two equal inputs, a direction parallel to them: Sigma^{(0)} singular (eigh square root)."""
    net = Network((2, 8, 8, 1), "tanh", 1.0, 0.0)
    X = np.array([[1.0, 2.0], [1.0, 2.0]])
    U = np.array([[0.5, 1.0]])
    S = sample_collective(net, X, 500, U, rng=0)
    assert np.all(np.isfinite(S))
    np.testing.assert_allclose(S[:, :, 0, 0], S[:, :, 1, 1], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(S[:, :, 0, 1], S[:, :, 0, 0], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("method", ["collapsed", "naive"])
def test_overflow_raises(method):
    # linear: Sigma grows like C_W^depth and never hits 0 (ReLU can die out at small width)
    depth = 400 if method == "collapsed" else 150
    C_W = 8.0 if method == "collapsed" else 400.0
    net = Network.uniform("linear", 4, depth, C_W=C_W)
    with pytest.raises(OverflowError, match="C_W"):
        sample_collective(net, [[1.0]], 8, method=method, rng=0)
    with pytest.raises(OverflowError, match="C_W"):
        sample_outputs(net, [[1.0]], 8, method=method, rng=0)


def test_overflow_in_channels():
    net = Network.uniform("relu", 64, 520, n_in=2, C_W=8.0)
    with pytest.raises(OverflowError, match="depth"):
        sample_collective(net, np.eye(2), 8, rng=0)


def test_no_overflow_for_tanh_deep():
    net = Network.uniform("tanh", 8, 400, C_W=1.0)
    S = sample_collective(net, [[1.0]], 16, rng=0, layers=[401])
    assert np.all(np.isfinite(S)) and np.all(S > 0)


def test_relu_mean_equals_infinite_width_kernel():
    """ReLU, C_b = 0, C_W = 2: E Sigma_aa = K_aa exactly (T15); off the diagonal
    E Sigma_ab = K_ab + Delta_ab (T11), with Delta resolved by the sample.

    Diagonal: exact, z <= Z. Off-diagonal: against K + Delta of the recursion, z <= Z (its
    O(n^-2) remainder is below the standard error here: z stays below 1 with 5x the samples);
    the negative control rejects Delta = 0 (z > Z against K alone) at layers 3 and 4.
    """
    from corrlib import finite_width, infinite_width_kernel

    net = Network((2, 10, 7, 12, 1), "relu", 2.0, 0.0)
    X = np.array([[1.0, 0.3], [-0.4, 1.2]])
    K = infinite_width_kernel(net, X)
    rec = finite_width(net, X)
    e = estimate_cumulants(net, X, 40000, rng=7)
    i = np.arange(2)
    z = np.abs(e.mean - K)[1:, i, i] / e.mean_se[1:, i, i]
    assert z.max() < Z
    z_off = (e.mean - rec.mean)[1:, 0, 1] / e.mean_se[1:, 0, 1]
    assert np.abs(z_off).max() < Z, z_off
    z_no_delta = (e.mean - K)[2:, 0, 1] / e.mean_se[2:, 0, 1]
    assert np.all(np.abs(z_no_delta) > Z), z_no_delta


def test_run_tasks_consumes_in_order_with_bounded_window():
    import threading
    import time

    from corrlib.montecarlo.blocks import run_tasks

    g = np.random.default_rng(0)
    delays = g.uniform(0, 0.004, 40)
    in_flight, peak, seen = [0], [0], []
    lock = threading.Lock()

    def fn(a, b):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(delays[a])
        with lock:
            in_flight[0] -= 1
        return (a, b)

    run_tasks(fn, 0, 40, 1, 2, consume=seen.append)
    assert seen == [(i, i + 1) for i in range(40)]
    assert peak[0] <= 2
    seen.clear()
    run_tasks(fn, 3, 40, 7, 2, consume=seen.append)
    assert seen[0] == (3, 10) and seen[-1] == (38, 40)
