"""The channel engine behind (T7), (T10), (T11): corrlib.model.channels.layer_tensors with the
moment engines of corrlib.model.subsets and the exact orthant moments of corrlib.model.orthant.

References are closed forms (arc-cosine kernels and their K-derivatives, Williams' erf kernel,
Sheppard/Plackett orthant probabilities), evaluations independent of the engine (nested
Gauss-Legendre with a closed-form innermost level, tensor Gauss-Hermite in eigen coordinates,
analytic derivatives of tanh products, 40-digit mpmath), and the recursion's own structure
(diagonal blocks = single-input runs, closed sub-blocks = two-input runs).
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from scipy.special import ndtr, roots_legendre
from test_recursion import independent_two_input_tanh

import corrlib
from corrlib.model.channels import ChannelLayout, layer_tensors
from corrlib.model.orthant import OrthantMoments, orthant_probability
from corrlib.model.subsets import pivoted_cholesky, subset_moments
from corrlib.theory.recursion import _recursion

RELU = corrlib.get_activation("relu")
TANH = corrlib.get_activation("tanh")


def _kernel(name, m, d, rng, layer=2, n0=3, C_W=1.3, C_b=0.1):
    """A channel kernel K^(layer+1) of random inputs and directions."""
    X = rng.standard_normal((m, n0))
    U = rng.standard_normal((d, n0)) if d else None
    net = corrlib.Network.uniform(name, 30, layer, n_in=n0, C_W=C_W, C_b=C_b)
    return corrlib.infinite_width_kernel(net, X, U)[-1]


def test_pivoted_cholesky_drops_zero_pivots(rng):
    A = rng.standard_normal((4, 2))
    K = A @ A.T
    L = pivoted_cholesky(K)
    assert L.shape == (4, 2)
    np.testing.assert_allclose(L @ L.T, K, atol=1e-13)


# ------------------------------------------------------------- kinked: two-point closed forms


def _arccos(K):
    """Arc-cosine kernel J = E relu relu, P(u > 0, v > 0) and the angle (Cho & Saul)."""
    s0, s1 = math.sqrt(K[0, 0]), math.sqrt(K[1, 1])
    th = math.acos(max(-1.0, min(1.0, K[0, 1] / (s0 * s1))))
    J = s0 * s1 * (math.sin(th) + (math.pi - th) * math.cos(th)) / (2 * math.pi)
    return J, (math.pi - th) / (2 * math.pi), th


@pytest.mark.parametrize("slope", [0.0, 0.2, -0.5])
def test_kinked_two_point_closed_forms(slope, rng):
    """sigma = a_- z + (1 - a_-) relu(z): G2 from the arc-cosine kernel, the D2 entries
    <sigma' sigma'> and <sigma'' sigma> = (1 - a_-) p_u(0) E[sigma(v) | u = 0], and
    (D2[0,1,0,1] + D2[0,1,1,0]) / 2 = dJ/dK_01 by central differences (relu)."""
    act = RELU if slope == 0.0 else corrlib.scale_invariant(1.0, slope)
    A = rng.standard_normal((2, 2))
    K = A @ A.T + 0.3 * np.eye(2)
    T = layer_tensors(act, K, ChannelLayout(2, 0), four_point=False)
    J, step, th = _arccos(K)
    s0, s1 = math.sqrt(K[0, 0]), math.sqrt(K[1, 1])
    am, dd = slope, 1.0 - slope
    assert T.G2[0, 1] == pytest.approx(am * am * K[0, 1] + am * dd * K[0, 1] + dd * dd * J,
                                       rel=1e-13, abs=1e-15)  # fmt: skip
    assert T.G2[0, 0] == pytest.approx((1.0 + am * am) / 2 * K[0, 0], rel=1e-13)
    assert T.D2[0, 1, 0, 1] == pytest.approx(am * am + am * dd + dd * dd * step, rel=1e-12)
    assert T.D2[0, 1, 0, 0] == pytest.approx(
        dd * dd * s1 * math.sin(th) / (2 * math.pi * s0), rel=1e-12, abs=1e-15
    )
    if slope == 0.0:
        h = 1e-6
        Kp, Km = K.copy(), K.copy()
        Kp[0, 1] = Kp[1, 0] = K[0, 1] + h
        Km[0, 1] = Km[1, 0] = K[0, 1] - h
        fd = (_arccos(Kp)[0] - _arccos(Km)[0]) / (2 * h)
        assert 0.5 * (T.D2[0, 1, 0, 1] + T.D2[0, 1, 1, 0]) == pytest.approx(fd, rel=1e-8)


def test_relu_two_point_nearly_collinear():
    """Inputs eps apart (cond K up to 5e10): the arc-cosine kernel to 2e-15 relative (a 40-digit
    mpmath reference), where a recursion through conditional variances would lose
    eps / theta; <sigma' sigma'> is a Hermite identity, rounding ~1e-16 cond(K)."""
    mp.mp.dps = 40
    for eps in (1e-2, 1e-4, 1e-5):
        x = np.array([1.0, 0.3])
        V = np.stack([x, x + eps * np.array([0.2, 1.0])])
        K = V @ V.T
        T = layer_tensors(RELU, K, ChannelLayout(2, 0), four_point=False)
        Km = [[mp.mpf(float(v)) for v in row] for row in K]
        s = mp.sqrt(Km[0][0] * Km[1][1])
        th = mp.acos(Km[0][1] / s)
        J = s * (mp.sin(th) + (mp.pi - th) * mp.cos(th)) / (2 * mp.pi)
        assert abs(float((T.G2[0, 1] - J) / J)) < 2e-15, eps
        cond = np.linalg.cond(K)
        if cond < 1e11:  # beyond 1e12 the pseudo-inverse convention drops the thin direction
            step = float((mp.pi - th) / (2 * mp.pi))
            assert abs(T.D2[0, 1, 0, 1] / step - 1) < 1e-15 * cond, (eps, cond)


@pytest.mark.parametrize("act", [RELU, TANH], ids=["relu", "tanh"])
def test_D4_is_the_derivative_of_D2(act, rng):
    """d/dt D2(K + t delta) = 1/2 sum_gh delta_gh D4 (ordered pairs), by central differences:
    checks the ordered-pair convention and the D4 blocks, derivative channels included."""
    K = _kernel(act.name, 2, 1, rng)
    lay = ChannelLayout(2, 1)
    D4 = layer_tensors(act, K, lay).D4()
    delta = rng.standard_normal(K.shape)
    delta = 0.5 * (delta + delta.T)
    h = 1e-5
    Dp = layer_tensors(act, K + h * delta, lay, four_point=False).D2
    Dm = layer_tensors(act, K - h * delta, lay, four_point=False).D2
    fd = (Dp - Dm) / (2 * h)
    pred = 0.5 * np.einsum("abefgh,gh->abef", D4, delta)
    np.testing.assert_allclose(pred, fd, atol=2e-7 * np.max(np.abs(fd)))


# --------------------------------------------------------------- kinked: four distinct inputs


def _nested_relu4(K, npan=14, nq=10, R=9.0):
    """E[relu z1 relu z2 relu z3 relu z4], independent of the engine: nested Gauss-Legendre on
    the half-lines z_i > 0 (Cholesky levels 1-3, panels graded towards the kink) and the closed
    form E relu(mu + s xi) = mu Phi(mu/s) + s phi(mu/s) for the innermost level."""
    L = np.linalg.cholesky(K)
    x, w = roots_legendre(nq)
    x, w = (x + 1) / 2, w / 2

    def phi(t):
        return np.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    XI, W = np.zeros((1, 0)), np.ones(1)
    e = np.linspace(0, 1, npan + 1) ** 2
    for lvl in range(3):
        mu = XI @ L[lvl, :lvl]
        t = np.maximum(-mu / L[lvl, lvl], -R)
        a = t[:, None] + (R - t)[:, None] * e[None, :-1]
        b = t[:, None] + (R - t)[:, None] * e[None, 1:]
        nodes = a[..., None] + (b - a)[..., None] * x
        ww = (b - a)[..., None] * w * phi(nodes)
        XI = np.concatenate([np.repeat(XI, npan * nq, 0), nodes.reshape(-1, 1)], 1)
        W = (W[:, None, None] * ww).reshape(-1)
    Z = XI @ L[:3, :3].T
    mu, s = XI @ L[3, :3], L[3, 3]
    inner = mu * ndtr(mu / s) + s * phi(mu / s)
    return float(np.sum(W * Z[:, 0] * Z[:, 1] * Z[:, 2] * inner))


@pytest.mark.parametrize("layer", [1, 12])
def test_relu_four_inputs_against_nested_quadrature(layer, rng):
    """G4 of four distinct ReLU inputs (exact orthant moments) to 1e-12 relative; the previous
    polar rule was 5e-6 off at layer 1 (docs/theory.md section 10)."""
    X = rng.standard_normal((4, 4))
    net = corrlib.Network.critical("relu", 64, layer, n_in=4)
    K = corrlib.infinite_width_kernel(net, X)[-1]
    T = layer_tensors(RELU, K, ChannelLayout(4, 0), derivatives=False)
    val = T.G4[0, 1, 2, 3] + T.G2[0, 1] * T.G2[2, 3]
    assert val == pytest.approx(_nested_relu4(K), rel=1e-12)


def _p4_mpmath(R):
    """4-D orthant probability: Plackett's integral in 40-digit arithmetic (tanh-sinh)."""
    mp.mp.dps = 40
    R = mp.matrix(R.tolist())

    def P2(r):
        return mp.mpf(1) / 4 + mp.asin(r) / (2 * mp.pi)

    R0 = mp.eye(4)
    R0[0, 1] = R0[1, 0] = R[0, 1]
    R0[2, 3] = R0[3, 2] = R[2, 3]

    def f(t):
        Rt = R0 + t * (R - R0)
        tot = 0
        for p in (0, 1):
            for q in (2, 3):
                r, s = (x for x in range(4) if x not in (p, q))
                Si = mp.matrix([[1, Rt[p, q]], [Rt[q, p], 1]]) ** -1
                a = mp.matrix([[Rt[r, p]], [Rt[r, q]]])
                b = mp.matrix([[Rt[s, p]], [Rt[s, q]]])
                crr = 1 - (a.T * Si * a)[0]
                css = 1 - (b.T * Si * b)[0]
                crs = Rt[r, s] - (a.T * Si * b)[0]
                tot += (
                    R[p, q]
                    / (2 * mp.pi * mp.sqrt(1 - Rt[p, q] ** 2))
                    * P2(crs / mp.sqrt(crr * css))
                )
        return tot

    return float(P2(R[0, 1]) * P2(R[2, 3]) + mp.quad(f, [0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1]))


def test_orthant4_near_degenerate_against_mpmath():
    """Deep ReLU kernel of inputs 5 degrees apart (L = 100): correlations ~ 1 - 1e-4, smallest
    eigenvalue of the correlation 6e-4; the Plackett integral to 1e-13 absolute."""
    ang = np.deg2rad([0, 5, 10, 15]) + 0.1
    X = np.c_[np.cos(ang), np.sin(ang)]
    net = corrlib.Network.critical("relu", 64, 100, n_in=2)
    K = corrlib.infinite_width_kernel(net, X)[-1]
    s = np.sqrt(np.diag(K))
    R = K / np.outer(s, s)
    assert np.linalg.eigvalsh(R)[0] < 1e-3
    assert orthant_probability(K) == pytest.approx(_p4_mpmath(R), abs=1e-13)


def test_orthant_moments_low_dimension_closed_forms(rng):
    """E[z_0 1{z > 0}] and E[z_0 z_1 1{z > 0}] in two dimensions against closed forms, for
    y = z and for the standard coordinates y = (z, xi)."""
    A = rng.standard_normal((2, 2))
    K = A @ A.T
    r = K[0, 1] / math.sqrt(K[0, 0] * K[1, 1])
    eng = OrthantMoments(K[None])
    p2 = 0.25 + math.asin(r) / (2 * math.pi)
    assert eng.truncated(3, 0)[0] == pytest.approx(p2, rel=1e-14)
    # E[z_0 1{z_0 > 0, z_1 > 0}] = sqrt(K00) (1 + r) / (2 sqrt(2 pi))
    assert eng.truncated(3, 1)[0, 0] == pytest.approx(
        math.sqrt(K[0, 0]) * (1 + r) / (2 * math.sqrt(2 * math.pi)), rel=1e-13
    )
    L = np.linalg.cholesky(K)
    mixed = OrthantMoments(K[None], L[None]).truncated(3, 2)[0]
    zz = eng.truncated(3, 2)[0]
    np.testing.assert_allclose(mixed[:2, :2], zz, rtol=1e-13)
    np.testing.assert_allclose(L @ mixed[2:, 2:] @ L.T, zz, rtol=1e-12)


def test_rank_deficient_relu_four_inputs():
    """Four inputs in R^2 with C_b = 0: K^(1) has rank 2 and the split rule is used;
    E[prod relu(x_i . g)] for g ~ N(0, I_2) is (E rho^4 = 8) times a circular average."""
    ang = np.array([0.1, 0.9, 2.0, 3.5])
    X = np.c_[np.cos(ang), np.sin(ang)]
    K = X @ X.T
    T = layer_tensors(RELU, K, ChannelLayout(4, 0), derivatives=False)
    val = T.G4[0, 1, 2, 3] + T.G2[0, 1] * T.G2[2, 3]
    th = np.linspace(0, 2 * np.pi, 200001)[:-1]
    Y = np.c_[np.cos(th), np.sin(th)]
    ref = 8.0 * np.prod(np.maximum(Y @ X.T, 0.0), axis=1).mean()
    assert val == pytest.approx(ref, rel=1e-9)


# -------------------------------------------------------- kinked activations other than ReLU


def _shifted_relu():
    return corrlib.Activation("relu_plus_one", f=lambda z: np.maximum(z, 0.0) + 1.0,
                              df=lambda z: (z > 0).astype(float))  # fmt: skip


def test_kinked_not_scale_invariant_split_rule(rng):
    """sigma = relu + 1 (kink at 0, not scale-invariant: nested split rules). Against the
    exact ReLU moments: E prod (relu(z_i) + 1) = sum over subsets T of E prod_T relu(z_i)."""
    act = _shifted_relu()
    assert act.kink and not act.is_scale_invariant
    K = _kernel("relu", 3, 0, rng)
    T = layer_tensors(act, K, ChannelLayout(3, 0))

    r01 = subset_moments(RELU, K[:2, :2]).tensors(((1, 0), (1, 0)), 0)[0][0]
    r0 = math.sqrt(K[0, 0] / (2 * math.pi))
    r1 = math.sqrt(K[1, 1] / (2 * math.pi))
    assert T.G2[0, 1] == pytest.approx(r01 + r0 + r1 + 1.0, rel=1e-12)
    U4 = T.G4[0, 1, 2, 2] + T.G2[0, 1] * T.G2[2, 2]
    assert U4 == pytest.approx(_shifted_with_square(K), rel=1e-11)
    # <sigma' sigma'> does not see the shift; <sigma'' sigma> = p_u(0) E[relu(v) + 1 | u = 0]
    J, step, th = _arccos(K[:2, :2])
    assert T.D2[0, 1, 0, 1] == pytest.approx(step, rel=1e-11)
    s0, s1 = math.sqrt(K[0, 0]), math.sqrt(K[1, 1])
    p0 = 1 / math.sqrt(2 * math.pi * K[0, 0])
    assert T.D2[0, 1, 0, 0] == pytest.approx(s1 * math.sin(th) / (2 * math.pi * s0) + p0, rel=1e-11)


def _shifted_with_square(K):
    """E[(r0 + 1)(r1 + 1)(r2 + 1)^2], r = relu(z): (r2 + 1)^2 = r2^2 + 2 r2 + 1 and
    E[r0^a r1^b r2^2 ...] from the exact engine with the square as a gspec power."""

    def m(alpha):  # E prod relu(z_i)^alpha_i over the inputs with alpha_i > 0
        S = [i for i in range(3) if alpha[i]]
        if not S:
            return 1.0
        sm = subset_moments(RELU, K[np.ix_(S, S)])
        return float(sm.tensors(tuple((alpha[i], 0) for i in S), 0)[0][0])

    tot = 0.0
    for a0 in (0, 1):
        for a1 in (0, 1):
            for a2, c in ((2, 1.0), (1, 2.0), (0, 1.0)):
                tot += c * m((a0, a1, a2))
    return tot


# ------------------------------------------------------------------------------- smooth


def _reference(K, fn, digits=37):
    """E fn(z) for z ~ N(0, K) (d <= 4), independent of the engine: a tensor trapezoid rule in
    eigen coordinates z = A xi on [-9, 9], with the step of each xi_j set by the analyticity
    strip of tanh there, h_j = pi^2 / (digits max_i |A_ij|) (error ~ exp(-digits) times the
    growth of fn near the poles, so high derivatives need more ``digits``), at most 0.5."""
    lam, Q = np.linalg.eigh(K)
    A = Q * np.sqrt(np.maximum(lam, 0.0))
    axes = []
    for j in range(K.shape[0]):
        h = min(0.5, math.pi**2 / (digits * max(np.max(np.abs(A[:, j])), 1e-300)))
        x = h * np.arange(-int(9 / h), int(9 / h) + 1)
        axes.append((x, h * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)))
    inner = np.stack(np.meshgrid(*[x for x, _ in axes[1:]], indexing="ij"), -1)
    inner = inner.reshape(-1, K.shape[0] - 1)
    winner = np.ones(1)
    for _, w in axes[1:]:
        winner = np.multiply.outer(winner, w).ravel()
    tot = 0.0
    for xl, wl in zip(*axes[0], strict=True):
        xi = np.concatenate([np.full((len(inner), 1), xl), inner], 1)
        tot += wl * (winner @ fn(xi @ A.T))
    return tot


@pytest.mark.parametrize("name", ["tanh", "gelu"])
def test_smooth_four_inputs_with_directions_against_trapezoid(name, rng):
    """m = 4 inputs, d = 1 direction: G4 entries with four distinct inputs, value and
    derivative channels, against a tensor trapezoid rule in eigen coordinates with the
    derivative coordinates integrated out by their conditional law (computed here with numpy's
    pinv)."""
    act = corrlib.get_activation(name)
    K = _kernel(name, 4, 1, rng, n0=5)
    T = layer_tensors(act, K, ChannelLayout(4, 1), derivatives=False)
    Kz = K[:4, :4]
    B = K[4:, :4] @ np.linalg.pinv(Kz)
    C = K[4:, 4:] - B @ K[:4, 4:]
    f, df = act.f, act.df
    for chans in [(0, 1, 2, 3), (4, 1, 2, 3), (0, 5, 2, 7), (4, 5, 6, 7)]:
        der = [a - 4 for a in chans if a >= 4]

        def fn(z, chans=chans, der=der):
            g = np.ones(len(z))
            for a in chans:
                g = g * (f(z[:, a]) if a < 4 else df(z[:, a - 4]))
            mu = z @ B.T  # conditional means of the derivative channels
            if len(der) == 0:
                return g
            if len(der) == 1:
                return g * mu[:, der[0]]
            if len(der) == 2:
                i, j = der
                return g * (mu[:, i] * mu[:, j] + C[i, j])
            q = mu[:, der[0]] * mu[:, der[1]] * mu[:, der[2]] * mu[:, der[3]]
            for (p1, p2), (p3, p4) in [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]:
                a1, a2, a3, a4 = der[p1], der[p2], der[p3], der[p4]
                q = q + C[a1, a2] * mu[:, a3] * mu[:, a4] + C[a3, a4] * mu[:, a1] * mu[:, a2]
                q = q + C[a1, a2] * C[a3, a4]
            return g * q

        a, b, c, d = chans
        val = T.G4[a, b, c, d] + T.G2[a, b] * T.G2[c, d]
        ref = _reference(Kz, fn)
        assert val == pytest.approx(ref, rel=1e-11, abs=1e-13), chans


def _tanh_deriv(k):
    """d^k/dz^k tanh(z) via the polynomial in t = tanh z (t' = 1 - t^2)."""
    from numpy.polynomial import polynomial as P

    p = np.array([0.0, 1.0])
    for _ in range(k):
        p = P.polymul(P.polyder(p), [1.0, 0.0, -1.0])
    return lambda z: P.polyval(np.tanh(z), p)


@pytest.mark.parametrize("theta", [None, 0.1])
def test_smooth_derivative_tensors_against_analytic_derivatives(theta, rng):
    """tanh, two value channels: D2 and D4 entries are <tanh^(p)(z_0) tanh^(q)(z_1)>; against
    analytic derivatives and a trapezoid rule. A Hermite identity for D_q amplifies the
    quadrature and rounding errors (~1e-15 of the integrand's scale) by cond(K)^(q/2): the
    bounds are 1e-14 cond(K) max|D2| and max(1e-15 cond(K)^2, 1e-13) max|D4| (measured here:
    about a third of that)."""
    if theta is None:
        K = _kernel("tanh", 2, 0, rng)
    else:  # two inputs theta apart: cond(K) = cot(theta / 2)^2 ~ 400
        K = 0.6 * np.array([[1.0, math.cos(theta)], [math.cos(theta), 1.0]])
    T = layer_tensors(TANH, K, ChannelLayout(2, 0))
    D4 = T.D4()
    cond = np.linalg.cond(K)
    scale2, scale4 = np.max(np.abs(T.D2)), np.max(np.abs(D4))
    for p, q in [(2, 0), (1, 1), (0, 2)]:
        ref = _reference(
            K, lambda z, p=p, q=q: _tanh_deriv(p)(z[:, 0]) * _tanh_deriv(q)(z[:, 1]), 80
        )
        e = [0] * p + [1] * q
        assert abs(T.D2[0, 1, e[0], e[1]] - ref) < 1e-14 * cond * scale2
    for p, q in [(4, 0), (3, 1), (2, 2), (1, 3), (0, 4)]:
        ref = _reference(
            K, lambda z, p=p, q=q: _tanh_deriv(p)(z[:, 0]) * _tanh_deriv(q)(z[:, 1]), 80
        )
        e = [0] * p + [1] * q
        assert abs(D4[0, 1, e[0], e[1], e[2], e[3]] - ref) < max(1e-15 * cond**2, 1e-13) * scale4


def test_erf_beyond_the_calibrated_variances():
    """Variances ~100 (sd 10, beyond the calibrated rules: graded split rules): Williams'
    kernel E erf erf = (2/pi) asin(2 K01 / sqrt((1 + 2 K00)(1 + 2 K11))) and
    E erf' erf' = (4/pi) / sqrt(det(I + 2K))."""
    act = corrlib.get_activation("erf")
    K = np.array([[100.0, 60.0], [60.0, 81.0]])
    T = layer_tensors(act, K, ChannelLayout(2, 0), four_point=False)
    G01 = 2 / math.pi * math.asin(2 * K[0, 1] / math.sqrt((1 + 2 * K[0, 0]) * (1 + 2 * K[1, 1])))
    assert T.G2[0, 1] == pytest.approx(G01, rel=1e-12)
    assert T.D2[0, 1, 0, 1] == pytest.approx(
        4 / math.pi / math.sqrt(np.linalg.det(np.eye(2) + 2 * K)), rel=1e-10
    )


@pytest.mark.parametrize("act", [RELU, TANH], ids=["relu", "tanh"])
def test_tensor_symmetries(act, rng):
    K = _kernel(act.name, 2, 1, rng)
    T = layer_tensors(act, K, ChannelLayout(2, 1))
    np.testing.assert_array_equal(T.G2, T.G2.T)
    for perm in [(1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)]:  # V's symmetries
        np.testing.assert_array_equal(T.G4, T.G4.transpose(perm))
    U4 = T.G4 + np.multiply.outer(T.G2, T.G2)  # the uncentered moment: fully symmetric
    for perm in [(1, 0, 2, 3), (0, 2, 1, 3), (3, 1, 2, 0)]:
        np.testing.assert_allclose(U4, U4.transpose(perm), rtol=1e-15, atol=1e-16)
    D2, D4 = T.D2, T.D4()
    np.testing.assert_array_equal(D2, D2.transpose(1, 0, 2, 3))
    np.testing.assert_allclose(D2, D2.transpose(0, 1, 3, 2), atol=1e-12 * np.abs(D2).max())
    np.testing.assert_allclose(D4, D4.transpose(0, 1, 3, 2, 5, 4), atol=1e-12 * np.abs(D4).max())
    np.testing.assert_allclose(D4, D4.transpose(0, 1, 4, 5, 2, 3), atol=1e-12 * np.abs(D4).max())


# --------------------------------------------------- the recursion with c = 4 and c = 6 channels


CASES = {
    "4 inputs": (4, 0),
    "2 inputs x 1 direction": (2, 1),
    "3 inputs x 1 direction": (3, 1),
    "2 inputs x 2 directions": (2, 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_diagonal_blocks_equal_single_input_runs(name, case, rng):
    """Each input's value channel equals the single-input scalar path (T12) and its block
    (value + directions) the run with that input alone: the recursion of a block only involves
    that block (docs/theory.md section 4)."""
    m, d = CASES[case]
    net = corrlib.Network.uniform(name, 30, 4, n_in=3, C_W=1.5, C_b=0.2)
    X = rng.standard_normal((m, 3))
    U = rng.standard_normal((d, 3)) if d else None
    rec = corrlib.finite_width(net, X, U)
    for a in range(m):
        one = corrlib.finite_width(net, X[a])
        np.testing.assert_allclose(rec.K[:, a, a], one.K[:, 0, 0], rtol=1e-12)
        np.testing.assert_allclose(rec.V[:, a, a, a, a], one.V[:, 0, 0, 0, 0], rtol=1e-10)
        np.testing.assert_allclose(rec.Delta[:, a, a], one.Delta[:, 0, 0], rtol=1e-9,
                                   atol=1e-12 * np.abs(one.V).max())  # fmt: skip
        if d:
            blk = [a + m * j for j in range(d + 1)]
            sub = corrlib.finite_width(net, X[a], U)
            ix = np.ix_(range(net.depth + 1), blk, blk, blk, blk)
            np.testing.assert_allclose(
                rec.V[ix], sub.V, rtol=1e-9, atol=1e-13 * np.abs(sub.V).max()
            )


@pytest.mark.parametrize("m,d", [(4, 0), (2, 1), (3, 1)])
def test_two_input_value_block_against_independent_implementation(m, d, rng):
    """tanh, c = 4 or 6: the value channels of inputs 0 and 1 form a closed sub-system; they
    equal the independent two-input implementation of tests/test_recursion.py (analytic tanh
    derivatives, trapezoid rule, no Hermite identities) to 1e-8 relative."""
    widths = (3, 40, 25, 60, 1)
    net = corrlib.Network(widths, "tanh", C_W=1.2, C_b=0.1)
    X = rng.standard_normal((m, 3))
    U = rng.standard_normal((d, 3)) if d else None
    rec = corrlib.finite_width(net, X, U)
    ref = independent_two_input_tanh(widths, 1.2, 0.1, rec.K[0][:2, :2])
    for ell in range(1, net.depth + 1):
        K, V, D = ref[ell]
        np.testing.assert_allclose(rec.K[ell][:2, :2], K, rtol=1e-12)
        np.testing.assert_allclose(rec.V[ell][:2, :2, :2, :2], V, rtol=1e-8, atol=1e-16)
        np.testing.assert_allclose(rec.Delta[ell][:2, :2], D, rtol=1e-8, atol=1e-16)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_identical_inputs_with_directions(name, rng):
    """Two equal inputs and a direction (K singular): every entry equals the one-input run."""
    net = corrlib.Network.uniform(name, 30, 3, n_in=2, C_W=1.8, C_b=0.1)
    x = np.array([[0.4, -0.9]])
    u = np.array([[0.3, 0.5]])
    r1 = corrlib.finite_width(net, x, u)
    r2 = corrlib.finite_width(net, np.vstack([x, x]), u)
    idx = np.array([0, 0, 1, 1])  # channels of r2 -> channels of r1
    V1 = r1.V[:, idx][:, :, idx][:, :, :, idx][:, :, :, :, idx]
    np.testing.assert_allclose(r2.V, V1, rtol=1e-8, atol=1e-14 * np.abs(V1).max())


def test_relu_derivative_channel_exact_T16():
    """(T16)/(T17) on the general path with c = 2: V/K^2 = 5 sum 1/n for both channels."""
    widths = (2, 30, 50, 40, 1)
    net = corrlib.Network(widths, "relu", C_W=2.0, C_b=0.3)
    rec = _recursion(net, np.array([[1.0, 0.5]]), np.array([[0.3, -1.0]]), general=True)
    ps = np.concatenate([[0.0], np.cumsum(1.0 / np.array(widths[1:-1]))])
    np.testing.assert_allclose(rec.V[:, 1, 1, 1, 1] / rec.K[:, 1, 1] ** 2, 5 * ps, rtol=1e-12)


def test_layer_tensor_stats_count_subsets():
    K = np.eye(5) + 0.2
    T = layer_tensors(TANH, K, ChannelLayout(5, 0), derivatives=False)
    assert T.stats["subsets"] == {1: 5, 2: 10, 3: 10, 4: 5}
    assert T.stats["nodes"] > 0
