"""Infinite-width kernels (T7), susceptibilities (T8) and critical points.

Modules: corrlib.theory.kernels, corrlib.model.criticality.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate

from corrlib import chi_parallel, chi_perp, critical_point, infinite_width_kernel
from corrlib.model.activations import get_activation
from corrlib.model.network import Network

# -- closed-form recursions of the value kernel ---------------------------------------------


def relu_step(K, C_W, C_b, a_plus=1.0, a_minus=0.0):
    """(T7) for sigma = a_+ z[z>0] + a_- z[z<0] (arc-cosine kernel, Cho & Saul 2009):

    E[relu(y_a) relu(y_b)] = sqrt(K_aa K_bb) (sin t + (pi - t) cos t) / (2 pi), cos t = rho_ab,
    E[sigma sigma] = (a_+^2 + a_-^2) R(rho) - 2 a_+ a_- R(-rho)
    (write sigma = a_+ relu(z) - a_- relu(-z)).
    """
    s = np.sqrt(np.outer(np.diag(K), np.diag(K)))
    rho = np.clip(K / s, -1.0, 1.0)

    def R(r):
        t = np.arccos(r)
        return s * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi)

    return C_b + C_W * ((a_plus**2 + a_minus**2) * R(rho) - 2 * a_plus * a_minus * R(-rho))


def erf_step(K, C_W, C_b):
    """(T7) for erf (Williams 1997): C_b + C_W (2/pi) arcsin(2K_ab / sqrt((1+2K_aa)(1+2K_bb)))."""
    d = 1 + 2 * np.diag(K)
    return C_b + C_W * 2 / np.pi * np.arcsin(2 * K / np.sqrt(np.outer(d, d)))


def linear_step(K, C_W, C_b):
    return C_b + C_W * K


def assert_kernels_close(got, expect):
    """1e-9 relative entrywise, with an absolute floor of 1e-14 max|K| for entries that are
    exactly 0 (antiparallel inputs at C_b = 0), where the closed form leaves rounding."""
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-14 * np.abs(expect).max())


def closed_form_kernels(step, net, X, **kw):
    K = net.C_b + net.C_W / net.n_in * X @ X.T
    out = [K]
    for _ in range(net.depth):
        out.append(step(out[-1], net.C_W, net.C_b, **kw))
    return np.array(out)


@pytest.mark.parametrize(("C_W", "C_b"), [(2.0, 0.0), (1.5, 0.3), (3.0, 1.0), (0.5, 0.05)])
@pytest.mark.parametrize("depth", [1, 4, 7])
def test_relu_arc_cosine(C_W, C_b, depth, rng):
    X = rng.standard_normal((4, 3))
    X[3] = -X[0]  # antiparallel pair: theta = pi
    net = Network.uniform("relu", width=1, depth=depth, n_in=3, C_W=C_W, C_b=C_b)
    got = infinite_width_kernel(net, X)
    assert_kernels_close(got, closed_form_kernels(relu_step, net, X))


def test_leaky_relu_closed_form(rng):
    X = rng.standard_normal((3, 2))
    net = Network.uniform(get_activation("leaky_relu", slope=0.2), 1, 5, n_in=2, C_W=1.7, C_b=0.1)
    expect = closed_form_kernels(relu_step, net, X, a_plus=1.0, a_minus=0.2)
    assert_kernels_close(infinite_width_kernel(net, X), expect)


@pytest.mark.parametrize(
    ("C_W", "C_b"), [(1.0, 0.0), (2.0, 0.1), (math.pi / 4, 0.0), (4.0, 2.0), (8.0, 2.0)]
)
def test_erf_williams(C_W, C_b, rng):
    X = rng.standard_normal((3, 4)) * 1.5
    net = Network.uniform("erf", width=1, depth=6, n_in=4, C_W=C_W, C_b=C_b)
    got = infinite_width_kernel(net, X)
    assert_kernels_close(got, closed_form_kernels(erf_step, net, X))


def test_linear_kernel(rng):
    X = rng.standard_normal((3, 4))
    U = rng.standard_normal((2, 4))
    net = Network.uniform("linear", width=1, depth=5, n_in=4, C_W=1.3, C_b=0.2)
    got = infinite_width_kernel(net, X, U)
    K1 = got[0]
    mask = np.zeros_like(K1)
    mask[:3, :3] = 1.0  # bias only between value channels
    expect = [K1]
    for _ in range(5):
        expect.append(net.C_b * mask + net.C_W * expect[-1])
    assert_kernels_close(got, np.array(expect))


def test_relu_critical_kernel_is_preserved(rng):
    # scale-invariant criticality (T17): K^{(l)} = K^{(1)} on the diagonal
    X = rng.standard_normal((3, 5))
    K = infinite_width_kernel(Network.uniform("relu", 1, 8, n_in=5, C_W=2.0), X)
    np.testing.assert_allclose(np.diagonal(K, axis1=1, axis2=2), np.diag(K[0])[None].repeat(9, 0))


def test_against_neural_tangents(data_dir):
    """NNGP kernels K^{(L+1)} computed by neural-tangents (tests/data/README.md): 1e-9 relative,
    entrywise (measured agreement: 8e-15)."""
    data = json.loads((data_dir / "nngp_neural_tangents.json").read_text())
    X = np.array(data["inputs"])
    assert X.shape == (3, 5) and len(data["cases"]) == 40
    for case in data["cases"]:
        net = Network.uniform(case["activation"], 1, case["L"], n_in=5, C_W=case["C_W"])
        net = net.with_(C_b=case["C_b"])
        got = infinite_width_kernel(net, X)[-1]
        ref = np.array(case["kernel"])
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=0, err_msg=str(case))


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "sin"])
def test_kernels_symmetric_psd(name, rng):
    X = rng.standard_normal((3, 4))
    X[2] = X[0]  # a repeated input (singular K)
    U = rng.standard_normal((1, 4))
    net = Network.uniform(name, 1, 4, n_in=4, C_W=1.5, C_b=0.2)
    for K in infinite_width_kernel(net, X, U):
        np.testing.assert_array_equal(K, K.T)
        lam = np.linalg.eigvalsh(K)
        assert lam[0] >= -1e-12 * lam[-1]


def test_exploding_kernel_raises():
    """An overflow names the layer and the quantity (OverflowError, not FloatingPointError)."""
    with pytest.raises(OverflowError, match=r"K\^\(11\) overflowed at layer 11"):
        infinite_width_kernel(Network.uniform("relu", 1, 40, C_W=1e30), np.ones((1, 1)))


# -- derivative channels against finite differences of the value kernel ---------------------


def _value_kernel(net, a, b):
    """K^{(l)}(a, b), l = 1..L+1, from the value kernel of the pair of inputs (a, b)."""
    return infinite_width_kernel(net, np.array([a, b]))[:, 0, 1]


def _step(h, x, u):
    """A step t with |t u| = h |x| (the kernel varies on the scale of |x|)."""
    nu = np.linalg.norm(u)
    return h * np.linalg.norm(x) / nu if nu > 0 else h


def _first(net, x, u, y, h=1e-4):
    """d/dt K(x + t u, y) at t = 0 (central difference, relative step: error ~1e-8)."""
    h = _step(h, x, u)
    return (_value_kernel(net, x + h * u, y) - _value_kernel(net, x - h * u, y)) / (2 * h)


def _mixed(net, x, u, y, v, h=1e-3):
    """d/dt d/ds K(x + t u, y + s v) at 0.

    At coinciding inputs a ReLU kernel is only C^2 (J_1(theta) contains |theta|^3 and theta is
    ~|t u - s v|), so the four-point stencil has an O(h) error; three-level Richardson
    extrapolation (h, 2h, 4h) removes the h and h^2 terms (error ~h^3, measured <= 3e-8 with
    the rounding of the kernel magnified by 1/h^2). Steps are relative: |h u| = h |x|.
    """
    h = min(_step(h, x, u), _step(h, y, v))

    def S(k):
        f = lambda t, s: _value_kernel(net, x + t * u, y + s * v)
        return (f(k, k) - f(k, -k) - f(-k, k) + f(-k, -k)) / (4 * k * k)

    s1, s2, s4 = S(h), S(2 * h), S(4 * h)
    r1, r2 = 2 * s1 - s2, 2 * s2 - s4
    return (4 * r1 - r2) / 3


def check_against_fd(net, X, U, tol=1e-7):
    """Every channel entry of K^{(l)} against derivatives of the value kernel.

    Returns the largest error relative to max |K^{(l)}|."""
    K = infinite_width_kernel(net, X, U)
    m, d = len(X), len(U)
    pt = [(X[i], None) for i in range(m)] + [(X[i], U[k]) for k in range(d) for i in range(m)]
    worst = 0.0
    for a, (xa, ua) in enumerate(pt):
        for b, (xb, ub) in enumerate(pt):
            if b < a:
                continue
            if ua is None and ub is None:
                ref = _value_kernel(net, xa, xb)
            elif ua is None:
                ref = _first(net, xb, ub, xa)
            elif ub is None:
                ref = _first(net, xa, ua, xb)
            else:
                ref = _mixed(net, xa, ua, xb, ub)
            scale = np.abs(K).max(axis=(1, 2))
            err = np.abs(K[:, a, b] - ref) / scale
            worst = max(worst, err.max())
            assert np.all(err <= tol), (a, b, err)
    return worst


NETS = {
    "relu-critical": ("relu", 2.0, 0.0),
    "relu-bias": ("relu", 1.5, 0.3),
    "tanh-critical": ("tanh", 1.0, 0.0),
    "tanh-bias": ("tanh", 1.3, 0.2),
}


@pytest.mark.parametrize("key", list(NETS))
def test_derivative_channels_one_input(key, rng):
    name, C_W, C_b = NETS[key]
    net = Network.uniform(name, 1, 2, n_in=3, C_W=C_W, C_b=C_b)
    check_against_fd(net, rng.standard_normal((1, 3)), rng.standard_normal((2, 3)))


@pytest.mark.parametrize("key", ["relu-bias", "tanh-bias"])
def test_derivative_channels_two_inputs(key, rng):
    name, C_W, C_b = NETS[key]
    net = Network.uniform(name, 1, 2, n_in=3, C_W=C_W, C_b=C_b)
    check_against_fd(net, rng.standard_normal((2, 3)), rng.standard_normal((1, 3)))


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_derivative_channels_singular_cases(name, rng):
    x = rng.standard_normal(3)
    u = rng.standard_normal(3)
    net0 = Network.uniform(name, 1, 2, n_in=3, C_W=1.5, C_b=0.0)
    # u parallel to x with C_b = 0: K^{(1)} has rank 1
    check_against_fd(net0, x[None], -0.7 * x[None])
    # two equal inputs (K^{(1)} of rank 2 in 4 channels)
    net = net0.with_(C_b=0.3)
    check_against_fd(net, np.array([x, x]), u[None])
    # a zero direction: its channels vanish identically
    K = infinite_width_kernel(net, np.array([x, -x]), np.array([u, np.zeros(3)]))
    assert np.all(K[:, 4:, :] == 0.0) and np.all(K[:, :, 4:] == 0.0)
    check_against_fd(net, np.array([x, -x]), u[None])


# -- susceptibilities (T8) and critical points ----------------------------------------------


def _gauss1(fn, K):
    """<fn(z)>_K by adaptive quadrature (independent of corrlib.gaussian)."""
    s = math.sqrt(K)
    g = lambda x: fn(s * x) * math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    pieces = [(-40.0, -6.0), (-6.0, 0.0), (0.0, 6.0), (6.0, 40.0)]
    return sum(integrate.quad(g, a, b, epsabs=1e-15, epsrel=1e-13, limit=200)[0] for a, b in pieces)


def _defining_properties(name, C_b, C_W, K):
    """Residuals of K = C_b + C_W g(K), chi_par(K) = 1, chi_perp(K) = 1 by adaptive quadrature."""
    act = get_activation(name)
    f = lambda z: float(act.f(np.array(z)))
    df = lambda z: float(act.df(np.array(z)))
    g = _gauss1(lambda z: f(z) ** 2, K)
    gprime = _gauss1(lambda z: z * f(z) * df(z), K) / K  # d/dK <sigma^2>_K
    return (C_b + C_W * g - K, C_W * gprime - 1.0, C_W * _gauss1(lambda z: df(z) ** 2, K) - 1.0)


def _cp(name):
    cp = critical_point(name)
    return (cp.C_W, cp.C_b, cp.K_star)


def test_critical_points_closed_class():
    assert _cp("relu") == (2.0, 0.0, None)
    assert _cp("linear") == (1.0, 0.0, None)
    assert _cp(get_activation("leaky_relu", slope=0.5)) == (2 / 1.25, 0.0, None)
    assert _cp("tanh") == (1.0, 0.0, 0.0)
    assert _cp("sin") == (1.0, 0.0, 0.0)
    C_W, C_b, K = _cp("erf")
    assert (C_b, K) == (0.0, 0.0) and C_W == pytest.approx(math.pi / 4, rel=1e-15)


def test_critical_point_gelu():
    C_W, C_b, K = _cp("gelu")
    assert C_b == pytest.approx(0.17292239, abs=1e-7)
    assert C_W == pytest.approx(1.98305826, abs=1e-7)
    assert K == pytest.approx(3.5616, abs=1e-4)
    assert K == pytest.approx((3 + math.sqrt(17)) / 2, rel=1e-10)  # observed identity
    np.testing.assert_allclose(_defining_properties("gelu", C_b, C_W, K), 0.0, atol=1e-9)


def test_critical_point_swish():
    """Test the defining properties (fixed point, chi_par = chi_perp = 1) by independent
    quadrature rather than a copied number; the values are (0.5551431707, 1.98800468, 14.3202)."""
    C_W, C_b, K = _cp("swish")
    assert C_b > 0 and C_W > 0 and K > 0
    np.testing.assert_allclose(_defining_properties("swish", C_b, C_W, K), 0.0, atol=1e-9)
    assert _cp("silu") == (C_W, C_b, K)
    assert chi_parallel("swish", K, C_W) == pytest.approx(1.0, abs=1e-9)
    assert chi_perp("swish", K, C_W) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", ["softplus", "sigmoid"])
def test_no_critical_point(name):
    with pytest.raises(ValueError, match=rf"activation '{name}' has no critical point"):
        critical_point(name)
    with pytest.raises(ValueError, match="no critical point"):
        Network.critical(name, width=4, depth=2)


def test_chi_at_scale_invariant_criticality():
    K = np.array([0.0, 1e-3, 0.5, 1.0, 10.0, 1e3])
    np.testing.assert_allclose(chi_parallel("relu", K, 2.0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(chi_perp("relu", K, 2.0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(chi_perp("relu", K, 3.0), 1.5, rtol=1e-12)
    np.testing.assert_allclose(chi_parallel("leaky_relu", K, 2 / 1.0001), 1.0, rtol=1e-12)
    assert chi_parallel("relu", K, 2.0).shape == K.shape
    assert isinstance(chi_perp("relu", 1.0, 2.0), float)


@pytest.mark.parametrize("name", ["tanh", "erf", "sin"])
def test_chi_at_k_star_zero_criticality(name):
    C_W = critical_point(name).C_W
    assert chi_parallel(name, 0.0, C_W) == pytest.approx(1.0, abs=1e-14)
    assert chi_perp(name, 0.0, C_W) == pytest.approx(1.0, abs=1e-14)


def test_chi_tanh_away_from_k_star():
    K = np.array([0.05, 0.3, 1.0, 4.0])
    perp = chi_perp("tanh", K, 1.0)
    par = chi_parallel("tanh", K, 1.0)
    assert np.all(perp < 1.0) and np.all(np.diff(perp) < 0)
    assert np.all(par < perp)  # ordered phase side of tanh: chi_par < chi_perp < 1
    ref = [_gauss1(lambda z: 1.0 / math.cosh(z) ** 4, k) for k in K]
    np.testing.assert_allclose(perp, ref, rtol=1e-11)
    g = lambda k: _gauss1(lambda z: math.tanh(z) ** 2, k)
    h = 1e-4
    fd = [(g(k + h) - g(k - h)) / (2 * h) for k in K]
    np.testing.assert_allclose(par, fd, rtol=1e-7)


# -- bad input -----------------------------------------------------------------------------


@pytest.fixture
def net():
    return Network.uniform("tanh", 1, 2, n_in=3)


@pytest.mark.parametrize(
    ("X", "U", "match"),
    [
        (np.ones(2), None, r"X must have n_0=3 entries"),
        (np.ones((2, 2)), None, r"X must have n_0=3 columns"),
        ([[1.0, np.nan, 0.0]], None, r"X must be finite"),
        ([[1.0, np.inf, 0.0]], None, r"X must be finite"),
        (np.ones((2, 3)), np.ones((1, 2)), r"directions must have n_0=3 columns"),
        (np.ones((2, 3)), np.ones(3), r"directions must be 2-D"),
        (np.ones((2, 3)), [[np.nan, 0.0, 0.0]], r"directions must be finite"),
    ],
)
def test_infinite_width_kernel_bad_inputs(net, X, U, match):
    with pytest.raises(ValueError, match=match):
        infinite_width_kernel(net, X, U)


def test_infinite_width_kernel_needs_a_network():
    with pytest.raises(TypeError, match="net must be a corrlib.Network"):
        infinite_width_kernel("tanh", np.ones((1, 1)))


@pytest.mark.parametrize("fn", [chi_parallel, chi_perp])
def test_chi_bad_inputs(fn):
    for C_W in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"C_W must be a finite real number > 0"):
            fn("tanh", 1.0, C_W)
    with pytest.raises(TypeError, match=r"C_W must be a finite real number"):
        fn("tanh", 1.0, "1")
    for K in (-0.1, float("nan"), [1.0, -1.0], float("inf")):
        with pytest.raises(ValueError, match=r"K must be finite and >= 0"):
            fn("tanh", K, 1.0)
    with pytest.raises(ValueError, match=r"unknown activation 'tahn'; known activations: "):
        fn("tahn", 1.0, 1.0)


def test_critical_point_unknown_activation():
    with pytest.raises(ValueError, match=r"unknown activation 'foo'; known activations: .*tanh"):
        critical_point("foo")


def test_kernel_map_iterate_and_fixed_point():
    """Vectorized single-input map (T7) agrees with infinite_width_kernel and finds K*."""
    import corrlib
    from corrlib.theory.kernels import fixed_point, iterate_kernel, kernel_map

    net = corrlib.Network.uniform("tanh", 1, 12, C_W=1.5, C_b=0.3)
    K_net = corrlib.infinite_width_kernel(net, np.array([[1.2]]))[:, 0, 0]
    K1 = K_net[0]
    np.testing.assert_allclose(iterate_kernel("tanh", K1, 1.5, 0.3, 12), K_net[-1], rtol=1e-12)
    np.testing.assert_allclose(kernel_map("relu", [0.5, 2.0], 2.0, 0.0), [0.5, 2.0], rtol=1e-13)
    # ReLU: K* = C_b / (1 - C_W/2) for C_W < 2
    np.testing.assert_allclose(fixed_point("relu", 1.5, 0.5), 2.0, rtol=1e-8)
    Ks = fixed_point("tanh", np.array([1.2, 1.5]), 0.3)
    np.testing.assert_allclose(kernel_map("tanh", Ks, np.array([1.2, 1.5]), 0.3), Ks, rtol=1e-12)
    # tanh, C_b = 0: K* = 0 up to C_W = 1 (critical), K* > 0 beyond; ReLU at C_W >= 2 explodes
    K0 = fixed_point("tanh", np.array([0.8, 1.0, 1.3]), 0.0)
    assert K0[0] < 1e-12 and K0[1] < 1e-6 and K0[2] > 0.1
    assert fixed_point("relu", 2.5, 0.1) == np.inf
    with pytest.raises(ValueError, match="depth"):
        iterate_kernel("tanh", 1.0, 1.0, 0.0, depth=-1)
    with pytest.raises(ValueError, match="K must be"):
        kernel_map("tanh", -1.0, 1.0)


def test_critical_point_fields_by_name_and_the_deprecated_old_order():
    """CriticalPoint reads (C_W, C_b, K_star) by name; unpacking, iterating and indexing keep
    the previous order (C_b, C_W, K_star) for one release, with a DeprecationWarning that
    points at the caller's line."""
    cp = critical_point("gelu")
    assert cp._asdict() == {"C_W": cp.C_W, "C_b": cp.C_b, "K_star": cp.K_star}
    with pytest.warns(DeprecationWarning, match=r"cp\.C_W, cp\.C_b, cp\.K_star") as rec:
        C_b, C_W, K = cp
    assert (C_b, C_W, K) == (cp.C_b, cp.C_W, cp.K_star)
    assert rec[0].filename == __file__
    with pytest.warns(DeprecationWarning):
        assert cp[0] == cp.C_b and cp[1] == cp.C_W
    with pytest.warns(DeprecationWarning):
        assert tuple(cp) == (cp.C_b, cp.C_W, cp.K_star)
    assert len(cp) == 3
    assert cp == critical_point("gelu") and hash(cp) == hash(critical_point("gelu"))
    assert cp != critical_point("swish")
