"""corrlib.montecarlo.estimators: streaming cumulant estimators, errors, the block contract."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corrlib.model.activations import get_activation
from corrlib.model.network import Network
from corrlib.montecarlo.blocks import root_seed_sequence
from corrlib.montecarlo.estimators import (
    BlockStats,
    CumulantEstimate,
    MonteCarloTask,
    estimate_cumulants,
)

Z = 4.0  # z-bound of every Monte Carlo comparison


def _moments_to_cumulants(m1, m2, m3):
    return m1, m2 - m1**2, m3 - 3 * m1 * m2 + 2 * m1**3


def _product_law(S0, EX, EX2, EX3):
    """Mean, variance and kappa_3 of S = S0 prod X_l for independent factors (T14)."""
    m1 = S0 * np.cumprod(EX)
    m2 = S0**2 * np.cumprod(EX2)
    m3 = S0**3 * np.cumprod(EX3)
    return _moments_to_cumulants(m1, m2, m3)


def test_relu_exact_unequal_widths():
    """(T15): ReLU, C_W = 2, C_b = 0, hidden widths 6, 11, 8: E S^k exactly."""
    hidden = np.array([6, 11, 8])
    net = Network((2, *hidden, 3), "relu", 2.0, 0.0)
    x = np.array([[0.7, -1.1]])
    S0 = 2.0 * (x @ x.T)[0, 0] / 2
    e = estimate_cumulants(net, x, 200_000, rng=123)
    mean, var, k3 = _product_law(S0, np.ones(3), 1 + 5 / hidden, 1 + 15 / hidden + 44 / hidden**2)
    assert e.mean[0, 0, 0] == pytest.approx(S0) and e.V[0].item() == 0.0
    for est, se, exact in (
        (e.mean[1:, 0, 0], e.mean_se[1:, 0, 0], mean),
        (e.V[1:, 0, 0, 0, 0], e.V_se[1:, 0, 0, 0, 0], var),
        (e.T[1:], e.T_se[1:], k3),
    ):
        assert np.all(np.abs(est - exact) <= Z * se), (est, exact, se)
    # the check can fail: a one-layer shift of the widths (n_(l+1) instead of n_l) is rejected
    wrong = _product_law(S0, np.ones(3), 1 + 5 / np.roll(hidden, 1), np.ones(3))[1]
    assert np.any(np.abs(e.V[1:, 0, 0, 0, 0] - wrong) > Z * e.V_se[1:, 0, 0, 0, 0])


def test_relu_derivative_channel_exact():
    """(T16): the derivative channel of ReLU has the same moment ratio for any C_b."""
    hidden = np.array([9, 5, 12])
    net = Network((2, *hidden, 1), "relu", 2.0, 0.7)
    x = np.array([[0.3, 1.0]])
    u = np.array([[1.0, -2.0]])
    e = estimate_cumulants(net, x, 200_000, u, rng=5)
    D0 = 2.0 * (u @ u.T)[0, 0] / 2
    mean, var, _ = _product_law(D0, np.ones(3), 1 + 5 / hidden, np.ones(3))
    assert e.T is None and e.mean.shape == (4, 2, 2)
    z_mean = np.abs(e.mean[1:, 1, 1] - mean) / e.mean_se[1:, 1, 1]
    z_var = np.abs(e.V[1:, 1, 1, 1, 1] - var) / e.V_se[1:, 1, 1, 1, 1]
    assert z_mean.max() < Z and z_var.max() < Z


def test_linear_exact_chi_square():
    """Linear, C_W = 1, C_b = 0: X_l = chi^2_{n_l} / n_l (T14), moments of chi^2 exactly."""
    hidden = np.array([3, 7, 4, 10])
    net = Network((1, *hidden, 1), "linear", 1.0, 0.0)
    e = estimate_cumulants(net, [[1.5]], 100_000, rng=77)
    n = hidden.astype(float)
    mean, var, k3 = _product_law(2.25, np.ones(4), (n + 2) / n, (n + 2) * (n + 4) / n**2)
    for est, se, exact in (
        (e.mean[1:, 0, 0], e.mean_se[1:, 0, 0], mean),
        (e.V[1:, 0, 0, 0, 0], e.V_se[1:, 0, 0, 0, 0], var),
        (e.T[1:], e.T_se[1:], k3),
    ):
        assert np.all(np.abs(est - exact) <= Z * se), (est, exact, se)


def _wishart_cov(K, n):
    """Cov(Sigma_ab, Sigma_cd) = (K_ac K_bd + K_ad K_bc) / n for Sigma = (1/n) sum of n rows."""
    return (np.einsum("ac,bd->abcd", K, K) + np.einsum("ad,bc->abcd", K, K)) / n


def test_standard_error_coverage_channels():
    """Delta-method errors cover the truth: Wishart law of a one-layer linear network (c = 3).

    z-statistics of all unique mean and V entries over 20 seeds: mean of z^2 near 1, no outliers.
    """
    n = 6
    net = Network((2, n, 1), "linear", 1.0, 0.0)
    X = np.array([[1.0, 0.2], [0.4, -0.9]])
    U = np.array([[0.5, 0.5]])
    K = None
    zs_mean, zs_V = [], []
    iu, ju = np.triu_indices(3)
    for seed in range(20):
        e = estimate_cumulants(net, X, 4000, U, rng=seed)
        if K is None:
            K = e.mean[0]
            Vx = _wishart_cov(K, n)
        zs_mean.append(((e.mean[1] - K) / e.mean_se[1])[iu, ju])
        zs_V.append(((e.V[1] - Vx) / e.V_se[1])[iu, ju][:, iu, ju].ravel())
    for zs in (np.concatenate(zs_mean), np.concatenate(zs_V)):
        assert 0.6 < np.mean(zs**2) < 1.5, np.mean(zs**2)
        assert np.abs(zs).max() < 4.5


def test_standard_error_coverage_third_cumulant():
    """se of T: chi^2 law of a linear network over 30 seeds (c = 1)."""
    n = 8
    net = Network((1, n, 1), "linear", 1.0, 0.0)
    zs = []
    for seed in range(30):
        e = estimate_cumulants(net, [[1.0]], 5000, rng=1000 + seed)
        zs.append(
            [(e.T[1] - 8 / n**2) / e.T_se[1], (e.V[1, 0, 0, 0, 0] - 2 / n) / e.V_se[1].item()]
        )
    zs = np.array(zs)
    assert np.all(0.5 < np.mean(zs**2, axis=0)) and np.all(np.mean(zs**2, axis=0) < 1.7)
    assert np.abs(zs).max() < 4.5


def _nets():
    return [
        (Network((1, 16, 9, 1), "tanh", 1.5, 0.1), [[1.0]], None),
        (Network((2, 8, 8, 1), "gelu", 1.4, 0.2), [[1.0, 0.5], [-0.3, 0.8]], [[1.0, 0.0]]),
    ]


@pytest.mark.parametrize("case", [0, 1])
@pytest.mark.parametrize("method", ["collapsed", "naive"])
def test_bit_identical_across_chunks_threads_and_splits(case, method):
    net, X, U = _nets()[case]
    N = 20_000 if method == "collapsed" else 12_000
    ref = estimate_cumulants(net, X, N, U, method=method, rng=42, n_jobs=1, chunk_size=1)
    for n_jobs, chunk in [(2, 1), (2, 5), (1, 1000)]:
        e = estimate_cumulants(net, X, N, U, method=method, rng=42, n_jobs=n_jobs, chunk_size=chunk)
        for q in ("mean", "V", "T", "mean_se", "V_se", "T_se"):
            a, b = getattr(ref, q), getattr(e, q)
            assert (a is None and b is None) or np.array_equal(a, b), q
    task = MonteCarloTask(net, np.asarray(X), N, None if U is None else np.asarray(U), method)
    nb = task.n_blocks
    assert nb >= 3
    root = root_seed_sequence(42)
    cuts = [0, 1, nb // 2 + 1, nb - 1, nb]
    parts = [task.run_blocks(root, a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    parts = [pickle.loads(pickle.dumps(p)) for p in parts]  # as if computed elsewhere
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    e = merged.result()
    assert np.array_equal(e.mean, ref.mean) and np.array_equal(e.V_se, ref.V_se)
    assert e.n_samples == N


def test_block_contract_errors():
    net, X, U = _nets()[0]
    task = MonteCarloTask(net, np.asarray(X), 20_000)
    root = root_seed_sequence(1)
    a = task.run_blocks(root, 0, 2)
    b = task.run_blocks(root, 3, 4)
    assert isinstance(a, BlockStats) and (a.start, a.stop) == (0, 2)
    with pytest.raises(ValueError, match="start"):
        a.merge(b)
    with pytest.raises(ValueError, match="full block range"):
        a.result()
    with pytest.raises(ValueError, match="n_blocks"):
        task.run_blocks(root, 0, task.n_blocks + 1)
    with pytest.raises(TypeError, match="root"):
        task.run_blocks(1, 0, 1)
    with pytest.raises(ValueError, match="n_samples"):
        MonteCarloTask(net, np.asarray(X), 2)
    with pytest.raises(ValueError, match="method"):
        MonteCarloTask(net, np.asarray(X), 10, method="fast")
    t2 = pickle.loads(pickle.dumps(task))
    assert t2.n_blocks == task.n_blocks and t2.net == task.net
    e_remote = t2.run_blocks(root, 0, t2.n_blocks).result()
    assert np.array_equal(e_remote.V, task.run_blocks(root, 0, task.n_blocks).result().V)
    leaky = Network((1, 5, 1), get_activation("leaky_relu", slope=0.2), 2.0, 0.0)
    t3 = pickle.loads(pickle.dumps(MonteCarloTask(leaky, np.ones((1, 1)), 10)))
    assert t3.net.activation.a_minus == 0.2


def test_generator_seed_is_deterministic():
    net, X, _ = _nets()[0]
    e1 = estimate_cumulants(net, X, 3000, rng=np.random.default_rng(3))
    e2 = estimate_cumulants(net, X, 3000, rng=np.random.default_rng(3))
    assert np.array_equal(e1.V, e2.V)


def test_to_frame_and_progress():
    net, X, U = _nets()[1]
    e = estimate_cumulants(net, X, 500, U, rng=0, progress=True)
    assert isinstance(e, CumulantEstimate)
    df = e.to_frame()
    assert list(df.columns) == ["layer", "quantity", "a", "b", "c", "d", "value", "se"]
    for col in "abcd":
        assert df[col].dtype == pd.Int64Dtype()
    c, L1 = 4, 3
    p = c * (c + 1) // 2
    assert (df.quantity == "mean").sum() == L1 * p
    assert (df.quantity == "V").sum() == L1 * p * (p + 1) // 2
    assert set(df.layer) == {1, 2, 3}
    v = df[(df.quantity == "V") & (df.layer == 3)]
    assert np.all((v.a <= v.b) & (v.c <= v.d))
    assert np.all((v.a < v.c) | ((v.a == v.c) & (v.b <= v.d)))
    row = v[(v.a == 0) & (v.b == 1) & (v.c == 2) & (v.d == 3)]
    assert row.value.item() == e.V[2, 0, 1, 2, 3] and row.se.item() == e.V_se[2, 1, 0, 3, 2]
    df1 = estimate_cumulants(*_nets()[0][:2], 500, rng=0).to_frame()
    t = df1[df1.quantity == "T"]
    assert len(t) == 3 and t.a.isna().all()


def test_overflow_in_power_sums():
    """Sigma finite but its 6th power sums overflow: raise rather than return inf/NaN."""
    net = Network.uniform("linear", 8, 200, C_W=8.0)  # Sigma ~ 8^200 ~ 1e180
    with pytest.raises(OverflowError, match="C_W"):
        estimate_cumulants(net, [[1.0]], 100, rng=0)


@settings(max_examples=60, deadline=None)
@given(
    n_blocks=st.integers(1, 300),
    cuts=st.lists(st.floats(0, 1), max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_dyadic_merge_is_split_invariant(n_blocks, cuts, seed):
    """Any split into ranges, merged in order, folds to the same bits (non-associative floats)."""
    from corrlib.montecarlo.estimators import _combine

    g = np.random.default_rng(seed)
    leaves = g.standard_normal((n_blocks, 1, 3)) * 10.0 ** g.integers(-8, 9, (n_blocks, 1, 3))

    def stats(a, b):
        nodes = _combine([(0, i, leaves[i]) for i in range(a, b)])
        return BlockStats(a, b, n_blocks, 1, 1, "collapsed", np.zeros((1, 1)), nodes)

    def fold(bs):
        total = bs.nodes[0][2]
        for node in bs.nodes[1:]:
            total = total + node[2]
        return total

    ref = fold(stats(0, n_blocks))
    pts = sorted({0, n_blocks, *(int(c * n_blocks) for c in cuts)})
    merged = stats(pts[0], pts[1])
    for a, b in zip(pts[1:-1], pts[2:], strict=True):
        merged = merged.merge(stats(a, b))
    assert np.array_equal(fold(merged), ref)
    assert len(merged.nodes) <= 2 * max(1, n_blocks).bit_length()


def test_normalized_kappa4_matches_relu_exact_and_its_se_covers():
    """3 Var S/(E S)^2 against (T15) 3((1 + 5/n_1)(1 + 5/n_2) - 1): every seed within z <= 4
    of the joint delta-method se, and the mean z^2 over 12 seeds is near 1 (0.3 .. 2.5)."""
    import corrlib

    net = Network((1, 16, 24, 1), "relu", C_W=2.0, C_b=0.0)
    exact = 3 * ((1 + 5 / 16) * (1 + 5 / 24) - 1)
    z = []
    for seed in range(12):
        est = corrlib.estimate_cumulants(net, np.ones((1, 1)), 4000, rng=seed)
        r, se = est.normalized_kappa4()
        assert r.shape == (3,) and r[0] == 0.0
        z.append((r[-1] - exact) / se[-1])
    z = np.array(z)
    assert np.all(np.abs(z) <= 4), z
    assert 0.3 < np.mean(z**2) < 2.5, z
    two = corrlib.estimate_cumulants(
        Network.uniform("relu", 8, 2, n_in=2, C_W=2.0), np.eye(2), 100, rng=0
    )
    with pytest.raises(ValueError, match="c = 1"):
        two.normalized_kappa4()
