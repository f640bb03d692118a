"""corrlib.montecarlo.estimators: streaming cumulant estimators, errors, the block contract."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from corrlib.exact import collective_moments
from corrlib.model.activations import get_activation
from corrlib.model.network import Network
from corrlib.montecarlo.blocks import root_seed_sequence
from corrlib.montecarlo.estimators import (
    BlockStats,
    CumulantEstimate,
    HeavyTailWarning,
    MonteCarloTask,
    estimate_cumulants,
)
from corrlib.montecarlo.tails import TAIL_LIMIT, block_tails, merge_tails, tail_shape

Z = 4.0  # z-bound of every single Monte Carlo comparison (two-sided alpha = 6.3e-5)
ALPHA = 1e-3  # family-wise level of every coverage test (Bonferroni over its statistics)


def _chi2_window(R: int, n_tests: int = 1) -> tuple[float, float]:
    """Two-sided window of mean(z^2) over R independent N(0, 1) z's at family level ALPHA."""
    a = ALPHA / n_tests
    lo, hi = stats.chi2.ppf([a / 2, 1 - a / 2], R)
    return lo / R, hi / R


def _z_max(n_values: int) -> float:
    """Bound on max |z| of n_values N(0, 1) z's at family level ALPHA (Bonferroni)."""
    return float(stats.norm.isf(ALPHA / (2 * n_values)))


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

    For each of the 6 unique mean and 21 unique V entries, sum_seeds z^2 over 40 seeds is
    chi^2_40 if the standard errors are right; mean(z^2) must lie in its two-sided window and
    every |z| below the Bonferroni bound, both at family level ALPHA over the 27 entries.
    """
    n, R = 6, 40
    net = Network((2, n, 1), "linear", 1.0, 0.0)
    X = np.array([[1.0, 0.2], [0.4, -0.9]])
    U = np.array([[0.5, 0.5]])
    K = None
    zs_mean, zs_V = [], []
    iu, ju = np.triu_indices(3)
    I, J = np.triu_indices(iu.size)
    for seed in range(R):
        e = estimate_cumulants(net, X, 4000, U, rng=seed)
        if K is None:
            K = e.mean[0]
            Vx = _wishart_cov(K, n)
        zs_mean.append(((e.mean[1] - K) / e.mean_se[1])[iu, ju])
        zV = (e.V[1] - Vx) / e.V_se[1]
        zs_V.append(zV[iu[I], ju[I], iu[J], ju[J]])
    zs = np.hstack([np.array(zs_mean), np.array(zs_V)])
    assert zs.shape == (R, 27)
    lo, hi = _chi2_window(R, zs.shape[1])
    m2 = np.mean(zs**2, axis=0)
    assert np.all((lo < m2) & (m2 < hi)), (lo, hi, m2)
    assert np.abs(zs).max() < _z_max(zs.size)


def test_standard_error_coverage_third_cumulant():
    """se of T and V: chi^2 law of a linear network (c = 1), 60 seeds.

    mean(z^2) of each quantity in its chi^2_60 window, every |z| below the Bonferroni bound,
    at family level ALPHA (2 quantities).
    """
    n, R = 8, 60
    net = Network((1, n, 1), "linear", 1.0, 0.0)
    zs = []
    for seed in range(R):
        e = estimate_cumulants(net, [[1.0]], 5000, rng=1000 + seed)
        zs.append(
            [(e.T[1] - 8 / n**2) / e.T_se[1], (e.V[1, 0, 0, 0, 0] - 2 / n) / e.V_se[1].item()]
        )
    zs = np.array(zs)
    lo, hi = _chi2_window(R, 2)
    m2 = np.mean(zs**2, axis=0)
    assert np.all((lo < m2) & (m2 < hi)), (lo, hi, m2)
    assert np.abs(zs).max() < _z_max(zs.size)


def _nets():
    return [
        (Network((1, 16, 9, 1), "tanh", 1.5, 0.1), [[1.0]], None),
        (Network((2, 8, 8, 1), "gelu", 1.4, 0.2), [[1.0, 0.5], [-0.3, 0.8]], [[1.0, 0.0]]),
    ]


_ALL_FIELDS = (
    "mean",
    "V",
    "T",
    "mean_se",
    "V_se",
    "T_se",
    "mean_tail",
    "V_tail",
    "T_tail",
    "mean_V_cov",
    "mean_T_cov",
)


@pytest.mark.parametrize("case", [0, 1])
@pytest.mark.parametrize("method", ["collapsed", "naive"])
def test_bit_identical_across_chunks_threads_and_splits(case, method):
    net, X, U = _nets()[case]
    N = 20_000 if method == "collapsed" else 12_000
    ref = estimate_cumulants(net, X, N, U, method=method, rng=42, n_jobs=1, chunk_size=1)
    for n_jobs, chunk in [(2, 1), (2, 5), (1, 1000)]:
        e = estimate_cumulants(net, X, N, U, method=method, rng=42, n_jobs=n_jobs, chunk_size=chunk)
        for q in _ALL_FIELDS:
            a, b = getattr(ref, q), getattr(e, q)
            assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True), q
    assert np.isfinite(ref.V_tail[1:]).all()  # the tails were measured
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
    for q in _ALL_FIELDS:
        a, b = getattr(ref, q), getattr(e, q)
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True), q
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
    assert list(df.columns) == "layer quantity a b c d e f value se tail_shape".split()
    for col in "abcdef":
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
    assert row.tail_shape.item() == e.V_tail[2, 0, 1, 2, 3]
    m = df[(df.quantity == "mean") & (df.layer == 2) & (df.a == 1) & (df.b == 3)]
    assert m.tail_shape.item() == e.mean_tail[1, 1, 3]
    df1 = estimate_cumulants(*_nets()[0][:2], 500, rng=0).to_frame()
    t = df1[df1.quantity == "T"]
    assert len(t) == 3 and t.a.isna().all()
    assert np.isnan(t.tail_shape.iloc[0])  # NaN: Sigma^(0) is deterministic, no tail
    with pytest.raises(TypeError):
        estimate_cumulants(*_nets()[0][:2], 500, None, "collapsed", 0, True)  # progress: keyword


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
    """3 Var S/(E S)^2 against (T15) 3((1 + 5/n_1)(1 + 5/n_2) - 1) over 12 seeds.

    Every |z| below the Bonferroni bound and mean(z^2) in the chi^2_12 window, family level
    ALPHA. The negative control drops the covariance term Cov(mean, V) = kappa_3/N of the joint
    delta method: the standard error then comes out larger in every seed.
    """
    import corrlib

    net = Network((1, 16, 24, 1), "relu", C_W=2.0, C_b=0.0)
    exact = 3 * ((1 + 5 / 16) * (1 + 5 / 24) - 1)
    z, R = [], 12
    for seed in range(R):
        est = corrlib.estimate_cumulants(net, np.ones((1, 1)), 4000, rng=seed)
        r, se = est.normalized_kappa4(), est.normalized_kappa4_se()
        assert r.shape == se.shape == (3, 1) and r[0, 0] == 0.0
        z.append((r[-1, 0] - exact) / se[-1, 0])
        m, V = est.mean[-1, 0, 0], est.V[-1, 0, 0, 0, 0]
        sm, sV = est.mean_se[-1, 0, 0], est.V_se[-1, 0, 0, 0, 0]
        no_cov = 3 * np.sqrt(sV**2 / m**4 + 4 * V**2 * sm**2 / m**6)
        assert est.mean_V_cov[-1, 0] > 0 and no_cov > se[-1, 0]  # kappa_3 > 0 for ReLU
    z = np.array(z)
    assert np.abs(z).max() < _z_max(R), z
    lo, hi = _chi2_window(R)
    assert lo < np.mean(z**2) < hi, z


def test_normalized_kappa4_per_channel_relu_exact():
    """c = 2 (an input and a direction): 3 V_aaaa/mean_aa^2 per channel, (T15) for the value
    channel and (T16) for the derivative channel, z <= Z with normalized_kappa4_se."""
    hidden = np.array([12, 9, 16])
    net = Network((2, *hidden, 1), "relu", 2.0, 0.0)
    est = estimate_cumulants(net, [[0.3, 1.0]], 100_000, [[1.0, -2.0]], rng=11)
    r, se = est.normalized_kappa4(), est.normalized_kappa4_se()
    assert r.shape == se.shape == (4, 2)
    exact = 3 * (np.cumprod(1 + 5 / hidden) - 1)
    for a in range(2):
        z = (r[1:, a] - exact) / se[1:, a]
        assert np.abs(z).max() < Z, (a, z)
    with pytest.raises(ValueError, match="c = 1"):
        est.normalized_kappa6()


def test_normalized_kappa6_se_coverage_relu_exact():
    """15 kappa_3(S)/(E S)^3 against the exact ReLU moments (T14), (T15) (collective_moments),
    20 seeds: every |z| below the Bonferroni bound and mean(z^2) in the chi^2_20 window at
    family level ALPHA; no HeavyTailWarning (T's summand has a light tail here). The
    covariance term of the joint delta method is active: without it the error would be larger
    in every seed (its formula is checked in test_estimator_covariances_match_theory)."""
    net = Network.uniform("relu", 32, 2, C_W=2.0)
    cm = collective_moments(net, [[1.0]], 3)[-1]
    k3 = cm[3] - 3 * cm[1] * cm[2] + 2 * cm[1] ** 3
    exact = 15 * k3 / cm[1] ** 3
    z, R = [], 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(R):
            est = estimate_cumulants(net, [[1.0]], 20_000, rng=500 + seed)
            r, se = est.normalized_kappa6(), est.normalized_kappa6_se()
            assert r.shape == se.shape == (3, 1)
            assert est.T_tail[-1] < TAIL_LIMIT
            z.append((r[-1, 0] - exact) / se[-1, 0])
            m, T = est.mean[-1, 0, 0], est.T[-1]
            var = est.T_se[-1] ** 2 / m**6 + 9 * T**2 * est.mean_se[-1, 0, 0] ** 2 / m**8
            assert 15 * np.sqrt(var) > se[-1, 0]
    z = np.array(z)
    assert np.abs(z).max() < _z_max(R), z
    lo, hi = _chi2_window(R)
    assert lo < np.mean(z**2) < hi, z


def test_estimator_covariances_match_theory():
    """Cov(mean, V) = mu_3/N and Cov(mean, T) = (mu_4 - 3 mu_2^2)/N = kappa_4/N, on the exact
    law S = chi^2_n/n of a one-layer linear network (T14), 400 independent estimates:

    * the reported mean_V_cov, mean_T_cov (averaged) equal the exact values within Z se;
    * the correlation of the estimates across replicates equals the first-order theory
      within Z se (Fisher's z, se 1/sqrt(R - 3)); negative control: it is not 0.
    """
    n, N, R = 2, 5000, 400
    k = [0.0, 1.0, 2 / n, 8 / n**2, 48 / n**3, 384 / n**4, 3840 / n**5]  # cumulants of S
    mu2, mu3 = k[2], k[3]
    mu4 = k[4] + 3 * k[2] ** 2
    mu6 = k[6] + 15 * k[4] * k[2] + 10 * k[3] ** 2 + 15 * k[2] ** 3
    var_T = mu6 - mu3**2 - 6 * mu4 * mu2 + 9 * mu2**3
    rho = {"V": mu3 / np.sqrt(mu2 * (mu4 - mu2**2)), "T": k[4] / np.sqrt(mu2 * var_T)}
    net = Network((1, n, 1), "linear", 1.0, 0.0)
    rows = []
    for seed in range(R):
        e = estimate_cumulants(net, [[1.0]], N, rng=seed)
        rows.append(
            [e.mean[1, 0, 0], e.V[1, 0, 0, 0, 0], e.T[1], e.mean_V_cov[1, 0], e.mean_T_cov[1]]
        )
    m, V, T, cV, cT = np.array(rows).T
    for reported, exact in ((cV * N, mu3), (cT * N, k[4])):
        assert abs(reported.mean() - exact) <= Z * reported.std(ddof=1) / np.sqrt(R)
    for est, key in ((V, "V"), (T, "T")):
        r = np.corrcoef(m, est)[0, 1]
        assert abs(np.arctanh(r) - np.arctanh(rho[key])) <= Z / np.sqrt(R - 3), (key, r)
        assert abs(np.arctanh(r)) > Z / np.sqrt(R - 3)


# ---------------------------------------------------------------------------------------------
# heavy tails: the diagnostic against cases with a known answer (T14), (T15)


def test_no_heavy_tail_warning_at_small_depth_to_width_and_z_tests_pass():
    """ReLU n = 32, L = 2 and n = 64, L = 4 (L/n <= 1/16): mean, V and T of Sigma^(L) against
    the exact moments, z <= Z each, every tail bound below 1/2 and no warning at all."""
    for n, L in ((32, 2), (64, 4)):
        net = Network.uniform("relu", n, L, C_W=2.0)
        cm = collective_moments(net, [[1.0]], 3)[-1]
        exact = (cm[1], cm[2] - cm[1] ** 2, cm[3] - 3 * cm[1] * cm[2] + 2 * cm[1] ** 3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            e = estimate_cumulants(net, [[1.0]], 100_000, rng=n)
        got = (e.mean[-1, 0, 0], e.V[-1, 0, 0, 0, 0], e.T[-1])
        se = (e.mean_se[-1, 0, 0], e.V_se[-1, 0, 0, 0, 0], e.T_se[-1])
        for g, x, s in zip(got, exact, se, strict=True):
            assert abs(g - x) <= Z * s, (n, L, g, x, s)
        for tail in (e.mean_tail, e.V_tail, e.T_tail):
            assert np.nanmax(tail) < TAIL_LIMIT


def test_heavy_tail_warning_relu_large_depth_to_width():
    """ReLU n = 4, L = 40 (L/n = 10): E Sigma = 2 exactly, but the sample misses the tail that
    carries it. The warning names the quantity, the layers, the shape and the exact solver;
    the negative control shows why: the z-test against the exact mean fails by far."""
    net = Network.uniform("relu", 4, 40, C_W=2.0)
    with pytest.warns(HeavyTailWarning) as rec:
        e = estimate_cumulants(net, [[1.0]], 100_000, rng=3)
    msgs = [str(w.message) for w in rec if issubclass(w.category, HeavyTailWarning)]
    assert len(msgs) == 3  # mean, V, T
    mean_msg = next(m for m in msgs if m.startswith("Monte Carlo mean"))
    for word in ("layers, l = ", "l = 41", "tail shape", "collective_moments", "single_input"):
        assert word in mean_msg, (word, mean_msg)
    exact = collective_moments(net, [[1.0]], 1)[-1, 1]
    assert exact == pytest.approx(2.0)
    assert abs(e.mean[-1, 0, 0] - exact) > Z * e.mean_se[-1, 0, 0]  # the se is not valid
    assert e.mean_tail[-1, 0, 0] >= TAIL_LIMIT
    assert e.mean_tail[1, 0, 0] < TAIL_LIMIT  # layer 2 (one hidden layer) is fine
    df = e.to_frame()
    assert (df[df.quantity == "mean"].tail_shape >= TAIL_LIMIT).sum() >= 30


def test_heavy_tail_warning_when_every_network_died():
    """ReLU n = 4, L = 400 (L/n = 100): every sampled network is dead at the output, so the
    estimate is 0 +- 0 against an exact E Sigma = 2. The diagnostic is inherited from the
    layers where the tail was still visible (T3): the last layer is flagged, not NaN."""
    net = Network.uniform("relu", 4, 400, C_W=2.0)
    with pytest.warns(HeavyTailWarning) as rec:
        e = estimate_cumulants(net, [[1.0]], 5000, rng=0)
    assert any(str(w.message).startswith("Monte Carlo mean") for w in rec)
    assert e.mean[-1, 0, 0] == 0.0 and e.mean_se[-1, 0, 0] == 0.0
    assert e.mean_tail[-1, 0, 0] >= TAIL_LIMIT


def test_tail_shape_recovers_known_pareto_shapes():
    """tail_shape on samples with a known generalized-Pareto shape xi: within Z asymptotic
    standard errors (1 + xi)/sqrt(M) of the truth; a Gaussian sample has xi = 0. Negative
    control: xi = 1/4 and xi = 1/2 are told apart."""
    g = np.random.default_rng(17)
    N = 200_000
    M = 1000
    est = {}
    for xi in (0.25, 0.5, 1.0):
        x = g.pareto(1 / xi, N)  # P(X > t) = (1 + t)^(-1/xi)
        est[xi] = tail_shape(x)
        assert abs(est[xi] - xi) <= Z * (1 + xi) / np.sqrt(M), (xi, est[xi])
    assert abs(tail_shape(g.standard_normal(N))) <= Z / np.sqrt(M)
    assert abs(est[0.5] - 0.25) > Z * 1.25 / np.sqrt(M)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(1, 60),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_streamed_top_values_are_the_top_values_for_any_split(n, k, cuts, seed):
    """block_tails + merge_tails over any split into blocks give exactly the k largest
    deviations above and below 0 (with ties and signed zeros)."""
    g = np.random.default_rng(seed)
    x = g.integers(-5, 6, (n, 2)).astype(float) * g.choice([1.0, 1e-300, 1e300], (n, 2))
    x[g.random((n, 2)) < 0.1] = -0.0
    pts = sorted({0, n, *(c for c in cuts if c < n)})
    parts = []
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        out = np.empty((2, 2, k))
        block_tails(x[a:b], out)
        parts.append(out)
    merged = merge_tails(*parts) if len(parts) > 1 else parts[0]
    for col in range(2):
        for side, vals in ((0, x[:, col]), (1, -x[:, col])):
            want = np.sort(vals)[::-1][:k]
            got = np.sort(merged[col, side])[::-1][: min(k, n)]
            assert np.array_equal(got, want + 0.0)
            assert not np.signbit(got[got == 0]).any()
