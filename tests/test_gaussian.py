"""Gaussian expectations (corrlib.model.gaussian, and the two-point part of
corrlib.model.channels) against closed forms.

Accuracy targets: 1e-10 relative for smooth integrands, piecewise polynomials (ReLU-type kinks)
to rounding when the rule is split at the kinks (d <= 3), singular K; the one-dimensional rule
to 1e-12 at every scale.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import erf

from corrlib._util import psd_sqrt
from corrlib.model.activations import get_activation
from corrlib.model.channels import ChannelLayout, layer_tensors
from corrlib.model.gaussian import (
    MAX_RADIAL,
    QuadratureWarning,
    gaussian_expectation,
    gaussian_rule,
    normal_expectation,
    radial_rule,
)

relu = get_activation("relu").f


# -- closed forms --------------------------------------------------------------------------


def isserlis(K: np.ndarray, idx: list[int]) -> tuple[float, float]:
    """E[prod_j zeta_{idx_j}] for zeta ~ N(0, K) by Wick's theorem.

    Returns (sum over perfect pairings of prod K, sum of the absolute values of the terms).
    """
    if len(idx) % 2:
        return 0.0, 0.0
    if not idx:
        return 1.0, 1.0
    first, rest = idx[0], idx[1:]
    tot = mag = 0.0
    for j in range(len(rest)):
        sub, sub_mag = isserlis(K, rest[:j] + rest[j + 1 :])
        tot += K[first, rest[j]] * sub
        mag += abs(K[first, rest[j]]) * sub_mag
    return tot, mag


def erf_pair(C: np.ndarray) -> float:
    """E[erf(y1) erf(y2)], y ~ N(0, C) (Williams 1997)."""
    return 2 / math.pi * math.asin(2 * C[0, 1] / math.sqrt((1 + 2 * C[0, 0]) * (1 + 2 * C[1, 1])))


def relu_pair(C: np.ndarray) -> float:
    """E[relu(y1) relu(y2)], y ~ N(0, C): the arc-cosine kernel sqrt(C11 C22) J_1(theta)/(2 pi)."""
    s = math.sqrt(C[0, 0] * C[1, 1])
    th = math.acos(min(1.0, max(-1.0, C[0, 1] / s)))
    return s / (2 * math.pi) * (math.sin(th) + (math.pi - th) * math.cos(th))


def _orthant2(C: np.ndarray) -> float:
    """P(y1 > 0, y2 > 0), y ~ N(0, C)."""
    return 0.25 + math.asin(C[0, 1] / math.sqrt(C[0, 0] * C[1, 1])) / (2 * math.pi)


def _given_zero(K: np.ndarray, s: int) -> np.ndarray:
    """Covariance of the other coordinates given zeta_s = 0."""
    o = [i for i in range(len(K)) if i != s]
    return K[np.ix_(o, o)] - np.outer(K[o, s], K[s, o]) / K[s, s]


def relu_triple(K: np.ndarray) -> float:
    """E[relu(z0) relu(z1) relu(z2)], z ~ N(0, K), 3x3 positive definite.

    Gaussian integration by parts E[z_i G] = sum_j K_ij E[d_j G] applied to
    G = 1(z0>0) relu(z1) relu(z2) gives
        K00 p_0(0) E[relu relu | z0 = 0] + K01 T_2 + K02 T_1,
    T_k = E[z_k 1(z0>0)1(z1>0)1(z2>0)] = sum_s K_ks p_s(0) P(others > 0 | z_s = 0),
    with p_s(0) = (2 pi K_ss)^(-1/2) and conditional laws centred at 0.
    """

    def p0(s):
        return 1.0 / math.sqrt(2 * math.pi * K[s, s])

    def T(k):
        return sum(K[k, s] * p0(s) * _orthant2(_given_zero(K, s)) for s in range(3))

    return K[0, 0] * p0(0) * relu_pair(_given_zero(K, 0)) + K[0, 1] * T(2) + K[0, 2] * T(1)


def random_psd(rng, d: int, rank: int, scale: float = 1.0) -> np.ndarray:
    A = rng.standard_normal((d, rank)) * scale
    return A @ A.T


class _DefaultRules:
    """One K per dimension (variances <= 2) and its default rule, built once per module:
    the d = 4 rule has 3.5e6 nodes."""

    def __init__(self):
        self._cache = {}

    def __call__(self, d: int):
        if d not in self._cache:
            K = random_psd(np.random.default_rng(1000 + d), d, d)
            K *= 2.0 / np.max(np.diag(K))
            self._cache[d] = (K, gaussian_rule(K))
        return self._cache[d]


@pytest.fixture(scope="module")
def default_rules():
    return _DefaultRules()


# -- hypothesis: polynomials against Isserlis -----------------------------------------------

# Node counts that integrate every monomial of degree <= 6 exactly (up to rounding) on each
# panel; the default rule is checked on monomials deterministically below.
SMALL = dict(n_radial=8, n_theta=24, n_phi=24, n_beta=16)


@st.composite
def psd_and_monomial(draw):
    d = draw(st.integers(1, 4))
    rank = draw(st.integers(0, d))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.3, 1.0, 3.0]))
    K = random_psd(np.random.default_rng(seed), d, rank, scale)
    idx = draw(st.lists(st.integers(0, d - 1), min_size=0, max_size=6))
    kinks = draw(st.sampled_from([None, "axes", "random"]))
    if kinks == "random":
        kinks = np.random.default_rng(seed + 1).standard_normal((2, d))
    return K, idx, kinks


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(psd_and_monomial())
def test_monomials_match_isserlis(case):
    K, idx, kinks = case
    exact, mag = isserlis(K, list(idx))
    got = gaussian_expectation(lambda z: np.prod(z[:, idx], axis=1), K, kinks, **SMALL)
    # tolerance 1e-10 relative to the sum of |pairing terms|; for odd degree (exact 0) or
    # rank 0 the floor is the natural size of the monomial, max(K_ii)^(deg/2)
    floor = max(np.max(np.diag(K)), 1e-300) ** (len(idx) / 2)
    assert abs(got - exact) <= 1e-10 * max(mag, floor)


def test_default_rule_on_monomials_d4(default_rules, rng):
    """Monomials of degree <= 6 in d = 4 with the default rules (full rank and rank 2)."""
    K, rule = default_rules(4)
    Ks = random_psd(rng, 4, 2)  # rank-deficient (a d = 2 rule on the range of K)
    idxs = [
        [],
        [0, 0],
        [0, 1],
        [2, 3, 3, 3],
        [0, 1, 2, 3],
        [0, 0, 1, 1, 2, 2],
        [0, 1, 1, 2, 3, 3],
        [3, 3, 3, 3, 3, 3],
        [0, 1, 2],
    ]

    def F(z):
        return np.stack([np.prod(z[:, i], axis=1) for i in idxs], axis=1)

    for KK, R in ((K, rule), (Ks, gaussian_rule(Ks))):
        got = R.expect(F)
        for g, i in zip(got, idxs, strict=True):
            exact, mag = isserlis(KK, i)
            assert abs(g - exact) <= 1e-10 * max(mag, 1.0), i


# -- smooth integrands ---------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_erf_products_against_williams(d, default_rules, rng):
    """E[erf(w1.z) erf(w2.z)] = Williams' arcsin formula with C = W K W^T, and the same
    with a Gaussian factor exp(-z^T A z) (tilting: K -> K (1 + 2AK)^-1, weight det^-1/2)."""
    K, rule = default_rules(d)  # variances up to 2
    W = rng.standard_normal((2, d))
    W *= (np.array([1.0, 2.0]) / np.sqrt(np.diag(W @ K @ W.T)))[:, None]  # Var = 1, 4
    a = np.zeros(d)
    a[: min(d, 2)] = [0.7, 0.3][: min(d, 2)]
    M = np.eye(d) + 2 * np.diag(a) @ K
    Kt = K @ np.linalg.inv(M)
    i, j = (0, d - 1) if d < 3 else (d - 2, d - 1)  # erf of coordinates ...
    exact = [
        erf_pair(W @ K @ W.T),
        # ... times exp(-a.z^2) of (other) coordinates
        erf_pair(Kt[np.ix_([i, j], [i, j])]) / math.sqrt(np.linalg.det(M)),
    ]

    def F(z):
        tilt = erf(z[:, i]) * erf(z[:, j]) * np.exp(-(z**2) @ a)
        return np.stack([erf(z @ W[0]) * erf(z @ W[1]), tilt], axis=1)

    np.testing.assert_allclose(rule.expect(F), exact, rtol=1e-10)


@pytest.mark.parametrize("K", [0.5, 4.0, 30.0])
def test_large_variance_1d(K):
    """<erf'(z)^2>_K = (4/pi) / sqrt(1 + 4K) and <erf(z)^2>_K = (2/pi) arcsin(2K/(1+2K))."""
    act = get_activation("erf")
    got = gaussian_expectation(
        lambda z: np.stack([act.df(z[:, 0]) ** 2, act.f(z[:, 0]) ** 2], 1), [[K]]
    )
    exact = [4 / math.pi / math.sqrt(1 + 4 * K), 2 / math.pi * math.asin(2 * K / (1 + 2 * K))]
    np.testing.assert_allclose(got, exact, rtol=1e-10)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_erf_singular_K(d, rng):
    """Rank-1 K (all inputs equal up to scale): E[erf(z_0) erf(z_{d-1})]."""
    v = rng.standard_normal(d)
    K = np.outer(v, v)
    got = gaussian_expectation(lambda z: erf(z[:, 0]) * erf(z[:, -1]), K)
    assert got == pytest.approx(erf_pair(K[np.ix_([0, d - 1], [0, d - 1])]), rel=1e-10)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_tanh_self_convergence(d, default_rules):
    """Products of tanh: default nodes against doubled nodes agree to 1e-10 relative."""
    K, rule = default_rules(d)

    def F(z):
        t = np.tanh(z)
        return np.stack([np.prod(t, axis=1) ** 2, t[:, 0] * t[:, -1], np.prod(1 - t**2, axis=1)], 1)

    got = rule.expect(F)
    if d < 4:
        refs = [dict(n_radial=80, n_theta=56, n_phi=112, n_beta=56)]
    else:
        # doubling everything in d = 4 needs 16x the 3.5e6 default points; double n_theta,
        # the count that limits smooth accuracy (measured: doubling n_radial, n_phi or
        # n_beta instead changes these values by < 4e-13)
        refs = [dict(n_theta=56)]
    for o in refs:
        np.testing.assert_allclose(got, gaussian_rule(K, **o).expect(F), rtol=1e-10)


# -- kinks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [2, 1])
def test_relu_pair_arc_cosine(rank, rng):
    K = random_psd(rng, 2, rank)
    got = gaussian_expectation(lambda z: relu(z[:, 0]) * relu(z[:, 1]), K, "axes")
    assert got == pytest.approx(relu_pair(K), rel=1e-12)


def test_relu_pair_embedded_in_rank_3(rng):
    """relu(w1.z) relu(w2.z) with z in R^3 (full rank): kinks given as normals."""
    K = random_psd(rng, 3, 3)
    W = rng.standard_normal((2, 3))
    got = gaussian_expectation(lambda z: relu(z @ W[0]) * relu(z @ W[1]), K, W)
    assert got == pytest.approx(relu_pair(W @ K @ W.T), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_relu_triple_product_d3(seed):
    """E[relu(z0) relu(z1) relu(z2)] (three kink planes in d = 3) against the closed form."""
    K = random_psd(np.random.default_rng(seed), 3, 3)
    got = gaussian_expectation(lambda z: np.prod(relu(z), axis=1), K, "axes")
    assert got == pytest.approx(relu_triple(K), rel=1e-11)


def test_relu_products_d4_known_limit(rng):
    """d = 4 with kinks: the omega sphere is not split at kink intersections, so ReLU
    products converge slowly (documented limit: 1e-6 to 1.3e-5 relative measured with the
    default nodes, 2e-8 to 1e-6 with n_phi and n_beta doubled). Checked on
    E[relu(z0) relu(z1) relu(z2) z3] = sum_j K_3j E[d_j(relu relu relu)] (Stein), where
    E[1(z0>0) relu(z1) relu(z2)] is a 3-d closed form (relu_triple after Stein)."""
    K = random_psd(rng, 4, 4)
    # E[1(z_j>0) relu(z_k) relu(z_l)] on the d = 3 rule, exact to rounding (see above)
    exact = 0.0
    for j in range(3):
        others = [i for i in range(3) if i != j]
        sub = K[np.ix_([j, *others], [j, *others])]
        exact += K[3, j] * gaussian_expectation(
            lambda z: (z[:, 0] > 0) * relu(z[:, 1]) * relu(z[:, 2]), sub, "axes"
        )
    got = gaussian_expectation(
        # degree 4 along each ray: 4 radial nodes are exact; the error is the omega rule's
        lambda z: np.prod(relu(z[:, :3]), axis=1) * z[:, 3],
        K,
        np.eye(4)[:3],
        n_radial=4,
    )
    assert got == pytest.approx(exact, rel=5e-5)


# -- singular K ----------------------------------------------------------------------------


def test_zero_direction_and_zero_matrix():
    K = np.diag([1.5, 0.0])
    got = gaussian_expectation(
        lambda z: np.stack([z[:, 0] ** 2, z[:, 1] ** 2, relu(z[:, 0])], 1), K
    )
    np.testing.assert_allclose(got, [1.5, 0.0, math.sqrt(1.5 / (2 * math.pi))], rtol=1e-13, atol=0)
    got0 = gaussian_expectation(lambda z: np.cos(z[:, 0]) + z[:, 1], np.zeros((2, 2)))
    assert got0 == 1.0


def test_two_equal_inputs():
    K = np.full((2, 2), 0.8)
    got = gaussian_expectation(lambda z: relu(z[:, 0]) * relu(z[:, 1]), K, "axes")
    assert got == pytest.approx(0.4, rel=1e-13)  # E relu(z)^2 = K/2
    got = gaussian_expectation(lambda z: erf(z[:, 0]) * erf(z[:, 1]), K)
    assert got == pytest.approx(erf_pair(K), rel=1e-12)


def test_psd_sqrt_of_singular_matrix(rng):
    K = random_psd(rng, 4, 2)
    A = psd_sqrt(K)
    assert A.shape == (4, 2)
    np.testing.assert_allclose(A @ A.T, K, atol=1e-13 * np.abs(K).max())


@pytest.mark.parametrize("name", ["tanh", "relu"])
@pytest.mark.parametrize(("m", "d"), [(2, 1), (1, 2)])
def test_channel_two_point_derivative_channels_analytic(name, m, d, rng):
    """Derivative coordinates integrated out analytically (the channel engine) agree with
    brute-force quadrature over all coordinates. (m, d) = (2, 1): channels (z(x1), z(x2),
    dz(x1), dz(x2)), entries not involving dz(x2) (a 3-d brute force); (1, 2): (z, d_1 z, d_2 z).
    """
    act = get_activation(name)
    lay = ChannelLayout(m, d)
    K = random_psd(rng, lay.c, lay.c)
    K *= 2.0 / np.max(np.diag(K))
    G2 = layer_tensors(act, K, lay, four_point=False, derivatives=False).G2
    if m == 2:
        phi = [
            lambda z: act.f(z[:, 0]),
            lambda z: act.f(z[:, 1]),
            lambda z: act.df(z[:, 0]) * z[:, 2],
        ]
        kinks = np.eye(3)[:2]
    else:
        phi = [
            lambda z: act.f(z[:, 0]),
            lambda z: act.df(z[:, 0]) * z[:, 1],
            lambda z: act.df(z[:, 0]) * z[:, 2],
        ]
        kinks = np.eye(3)[:1]
    rule = gaussian_rule(K[:3, :3], kinks)
    pairs = [(a, b) for a in range(3) for b in range(a, 3)]
    brute = [rule.expect(lambda z, a=a, b=b: phi[a](z) * phi[b](z)) for a, b in pairs]
    got = [G2[a, b] for a, b in pairs]
    np.testing.assert_allclose(got, brute, rtol=1e-10, atol=1e-13)


# -- the radial rule and the one-dimensional rule at every scale ---------------------------


@pytest.mark.parametrize("k", [0, 1, 3])
def test_radial_rule_moments_up_to_the_cap(k):
    """Gauss rule of rho^k e^(-rho^2/2): the moments 2^((k+j-1)/2) Gamma((k+j+1)/2) to 1e-13
    for j <= 8 at every order up to MAX_RADIAL (beyond ~300 nodes the construction loses
    digits: 2e-4 in the mass at 340, so the order is capped)."""
    for n in (6, 40, 160, MAX_RADIAL):
        x, w = radial_rule(k, n)
        for j in (0, 2, 4, 8):
            exact = 2 ** ((k + j - 1) / 2) * math.gamma((k + j + 1) / 2)
            assert abs(w @ x**j / exact - 1) < 1e-13, (n, j)


def _erf_kernel(K):
    return 2 / math.pi * math.asin(2 * K / (1 + 2 * K)), 4 / math.pi / math.sqrt(1 + 4 * K)


@pytest.mark.parametrize("K", [1e-12, 1e-4, 0.3, 4.0, 1e3, 1e8, 1e30, 1e120])
def test_normal_expectation_every_scale(K):
    """<erf^2>_K, <erf'^2>_K (closed forms), <relu^2>_K = K/2 and <tanh'^2>_K against
    (4/3) / sqrt(2 pi K) at large K: 1e-12 relative at every scale. A fixed rule in z / sqrt(K)
    gives <tanh'^2> 3e-5 off at K = 1e3 and 0 from 1e8 on."""
    erf_act, tanh = get_activation("erf"), get_activation("tanh")
    out = normal_expectation(
        [lambda z: erf_act.f(z) ** 2, lambda z: erf_act.df(z) ** 2,
         lambda z: np.maximum(z, 0.0) ** 2, lambda z: tanh.df(z) ** 2],
        math.sqrt(K),
    )  # fmt: skip
    e2, d2 = _erf_kernel(K)
    np.testing.assert_allclose(out[:3], [e2, d2, K / 2], rtol=1e-12)
    if K >= 1e8:
        assert out[3] * math.sqrt(2 * math.pi * K) == pytest.approx(4 / 3, rel=1e-7)


def test_normal_expectation_vectorized_and_zero_variance():
    sd = np.array([[0.0, 1.0], [2.0, 3.0]])
    out = normal_expectation([lambda z: z**2, lambda z: np.cos(z)], sd)
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose(out[0], sd**2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(out[1], np.exp(-(sd**2) / 2), rtol=1e-12)


def test_normal_expectation_warns_when_it_cannot_resolve():
    """An integrand oscillating on a scale far below sd (sin(z)^2 at sd = 1e8): a
    QuadratureWarning with the measured discrepancy, never a silent number."""
    with pytest.warns(QuadratureWarning, match=r"did not converge .*discrepancy"):
        normal_expectation([lambda z: np.sin(z) ** 2], 1e8)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("K", "match"),
    [
        (np.ones(3), r"K must be a square \(d, d\) matrix"),
        (np.ones((2, 3)), r"K must be a square \(d, d\) matrix"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), r"K must be finite"),
        (np.array([[1.0, 0.5], [0.4, 1.0]]), r"K must be symmetric"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), r"K must be positive semi-definite"),
        (np.eye(5), r"K must be at most 4x4"),
    ],
)
def test_bad_K(K, match):
    with pytest.raises(ValueError, match=match):
        gaussian_expectation(lambda z: z[:, 0], K)


def test_bad_arguments():
    with pytest.raises(TypeError, match="F must be callable"):
        gaussian_expectation(1.0, np.eye(2))
    with pytest.raises(ValueError, match="kinks must be None, 'axes' or an array"):
        gaussian_expectation(lambda z: z[:, 0], np.eye(2), kinks="diag")
    for bad in (np.ones((2, 3)), np.ones(4), np.ones((1, 1, 2)), [[np.nan, 1.0]]):
        # no silent reshaping of normals of the wrong dimension
        with pytest.raises(ValueError, match=r"kinks must be .* of shape \(k, d=2\)"):
            gaussian_expectation(lambda z: z[:, 0], np.eye(2), kinks=bad)
    with pytest.raises(ValueError, match=r"n_theta must be an integer in \[1, 4096\]; got 0"):
        gaussian_expectation(lambda z: z[:, 0], np.eye(2), n_theta=0)
    with pytest.raises(ValueError, match="F must return an array whose first axis"):
        gaussian_expectation(lambda z: np.ones(3), np.eye(2))
