"""sg-nulling analytic evaluator: quadrature accuracy, the corrected formulas against simulations of
the very model they assume (so only the quadrature is under test), Prop. 1 and Prop. 3."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import integrate

from isacbench.tasks.sg_nulling import analytic as A
from isacbench.tasks.sg_nulling.config import SgNullingConfig
from isacbench.tasks.sg_nulling.problem import analytic_metrics, feasible_points, sensing_rates

DEFAULT = SgNullingConfig()


def default_rates():
    return sensing_rates(DEFAULT.sensing_gain, 4.0, 2.0, 1.0, DEFAULT.Mt - 1)


# ------------------------------------------------------------------ quadrature


@pytest.mark.parametrize("alpha", [2.5, 4.0, 8.0])
@pytest.mark.parametrize("y", [0.02, 1.0, 300.0])
def test_rate_integral_matches_adaptive_quadrature(alpha, y):
    f = lambda z: -np.expm1(-z * y) / (z * A.F(np.array(z), alpha))
    ref = integrate.quad(f, 0, 1, limit=400, epsabs=1e-13)[0] + integrate.quad(f, 1, np.inf, limit=400,
                                                                               epsabs=1e-13)[0]
    assert A.rate_from_y(y, alpha) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("alpha", [3.0, 4.0, 6.0])
def test_F_is_the_interference_laplace_of_the_nearest_bs_ppp(alpha):
    # 1/F(z) = E[exp(-z I)] with I = sum_{i>=2} (r_1/r_i)^alpha, so F(0) = 1 and F'(0) = E[I] = 2/(alpha-2)
    h = 1e-6
    assert A.F(np.array(0.0), alpha) == pytest.approx(1.0)
    assert (A.F(np.array(h), alpha) - 1.0) / h == pytest.approx(2.0 / (alpha - 2.0), rel=1e-3)


def test_hole_integral_limits_and_quadrature():
    # H(inf) = area of the unit hole = pi; H at finite w against adaptive quadrature
    assert A.hole_integral(np.array(1e12), 3, 4.0) == pytest.approx(np.pi, rel=1e-9)
    for w, K in ((0.01, 1), (1.0, 4), (30.0, 2)):
        ref = integrate.quad(lambda u: 2 * np.arccos(u / 2) * u * -np.expm1(-K * np.log1p(w * u**-4.0)), 0, 2,
                             limit=200, epsabs=1e-13)[0]
        assert A.hole_integral(np.array(w), K, 4.0) == pytest.approx(ref, rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("K", [1, 6])
def test_prop2_closed_form_equals_the_general_quadrature(K):
    # alpha = 2 beta makes the R-average closed form; the general 2-D path must agree
    s = A.SensingRates(1.0, 4.0, 2.0, 1.0, 3)
    assert s.q1(K, force_general=True) == pytest.approx(s.q1(K), rel=1e-8)


# ------------------------------------------------------------------ model-exact simulations

N_SIM, N_PTS = 60_000, 120


@pytest.fixture
def rng():
    """A fresh generator per test: a test's samples do not depend on which tests ran before."""
    return np.random.default_rng(20240601)


def _ppp(rng, n, m):
    return np.sqrt(rng.standard_exponential((n, m)).cumsum(axis=1) / np.pi)


def _check(sample, expected):
    mean, se = sample.mean(), sample.std(ddof=1) / np.sqrt(sample.size)
    assert abs(mean - expected) < 4 * se + 2e-3 * expected, (mean, se, expected)


@pytest.mark.parametrize("K,D", [(1, 20), (12, 9)])
def test_theorem1_at_L1_matches_mean_gain_model(rng, K, D):
    # eq. (20) with L = 1, M_t = 20: SIR = (D/K) r_1^-4 / sum_{i>=2} r_i^-4 (gains replaced by their
    # means, D = M_t + 1 - K); PPP beyond the last point by its mean, pi r^-2
    r = _ppp(rng, N_SIM, N_PTS)
    interf = (r[:, 1:] ** -4.0).sum(axis=1) + np.pi * r[:, -1] ** -2.0
    sample = np.log1p(D / K * r[:, 0] ** -4.0 / interf)
    _check(sample, A.rate_from_y(D / K, 4.0))


@pytest.mark.parametrize("K", [1, 4])
def test_prop2_matches_gamma_gain_model_with_hole(rng, K):
    # target at origin, nearest BS serves, all others interfere at their distance to the serving BS
    r = _ppp(rng, N_SIM, N_PTS)
    pos = r * np.exp(2j * np.pi * rng.random(r.shape))
    rho = np.abs(pos[:, 1:] - pos[:, :1])
    interf = (rng.gamma(K, size=rho.shape) * rho**-4.0).sum(axis=1) + K * np.pi * r[:, -1] ** -2.0
    sample = np.log1p(DEFAULT.sensing_gain * rng.gamma(K, size=N_SIM) * r[:, 0] ** -4.0 / interf)
    _check(sample, default_rates()(K, 1))


@pytest.mark.parametrize("K,Q", [(1, 2), (1, 6), (5, 3)])
def test_theorem2_matches_gamma_gain_model_without_hole(rng, K, Q):
    # App. C: neighbours of the serving BS form a PPP (hole ignored), independent of R
    R = np.sqrt(rng.standard_exponential(N_SIM) / np.pi)
    rho = _ppp(rng, N_SIM, N_PTS)[:, Q - 1:]
    interf = (rng.gamma(K, size=rho.shape) * rho**-4.0).sum(axis=1) + K * np.pi * rho[:, -1] ** -2.0
    sample = np.log1p(DEFAULT.sensing_gain * rng.gamma(K, size=N_SIM) * R**-4.0 / interf)
    _check(sample, default_rates()(K, Q))


# ------------------------------------------------------------------ Prop. 1, Prop. 3 and monotonicity


def test_misr_gain_at_alpha4_is_half_of_L_plus_one():
    L = np.arange(1, 30)
    np.testing.assert_allclose(A.misr_gain(L, 4.0), (L + 1) / 2, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(Mt=st.integers(3, 48), J=st.integers(1, 10), Q=st.integers(1, 6))
def test_prop1_alpha4_optimal_L_is_one(Mt, J, Q):
    K, L = np.meshgrid(np.arange(1, Mt), np.arange(1, Mt), indexing="ij")
    ok = K * L + J * (Q - 1) + 1 <= Mt
    if not ok.any():
        return
    tc = A.ase_comm(K[ok], L[ok], J, Q, Mt, 4.0, 1.0)
    assert L[ok][np.argmax(tc)] == 1


@pytest.mark.parametrize("alpha", [2.5, 3.0, 6.0, 8.0])
def test_prop1_extends_to_other_pathloss_exponents(alpha):
    # the paper proves L* = 1 for alpha = 4 only (and claims alpha -> 2); measured: it holds on 2.5..8
    for Mt in (10, 20, 40):
        K, L = np.meshgrid(np.arange(1, Mt), np.arange(1, Mt), indexing="ij")
        ok = K * L + 1 <= Mt
        assert L[ok][np.argmax(A.ase_comm(K[ok], L[ok], 1, 1, Mt, alpha, 1.0))] == 1


@pytest.mark.parametrize("L", [1, 2, 4])
@pytest.mark.parametrize("alpha", [3.0, 4.0])
def test_prop3_unique_root_is_the_relaxed_maximizer(L, alpha):
    v = np.linspace(1e-3, 1 / L - 1e-3, 400)
    d = A.dtc_dv(v, L, alpha)
    assert np.all(np.diff(d) < 0)  # strictly decreasing: the relaxed T_c is concave in v
    assert np.count_nonzero(np.diff(np.sign(d))) == 1  # one sign change: unique root
    vs = A.v_star(L, alpha)
    assert abs(A.dtc_dv(vs, L, alpha)) < 1e-8
    obj = v * A.rate_from_y(A.misr_gain(L, alpha) * (1 / v - L), alpha)
    assert abs(v[np.argmax(obj)] - vs) <= v[1] - v[0]


def test_prop3_user_ratio_is_about_sixty_percent():
    # Sec. V: K*/M_t stays near 60%; in eq. (17) terms K* = v* (M_t + 1) with v* = 0.592 at alpha = 4
    assert A.v_star(1, 4.0) == pytest.approx(0.5920, abs=1e-4)
    for Mt in (5, 10, 20, 30, 40):
        K = np.arange(1, Mt)
        k_best = K[np.argmax(A.ase_comm(K, 1, 1, 1, Mt, 4.0, 1.0))]
        assert k_best in (np.floor(A.v_star(1, 4.0) * (Mt + 1)), np.ceil(A.v_star(1, 4.0) * (Mt + 1)))


@settings(max_examples=30, deadline=None)
@given(K=st.integers(1, 9), L=st.integers(1, 3), jq=st.integers(0, 8))
def test_comm_ase_decreases_with_sensing_nulling_dof(K, L, jq):
    # Sec. IV: T_c^ASE decreases monotonically in J(Q-1) (Theorem 1: Y decreases)
    Mt = 40
    a = A.ase_comm(K, L, jq, 2, Mt, 4.0, 1.0)  # J(Q-1) = jq
    b = A.ase_comm(K, L, jq + 1, 2, Mt, 4.0, 1.0)
    assert b < a


def test_sensing_rate_increases_with_nulling_cluster_for_Q_at_least_2():
    for K in (1, 3, 8):
        tab = default_rates().table(K)
        assert np.all(np.diff(tab[1:]) > 0)


def test_analytic_metrics_are_consistent_over_the_feasible_box():
    cfg = DEFAULT
    pts = feasible_points(cfg)
    m = analytic_metrics(cfg, **pts)
    assert np.all(pts["K"] * pts["L"] + pts["J"] * (pts["Q"] - 1) + 1 <= cfg.Mt)
    np.testing.assert_allclose(m["ase_comm"], cfg.lambda_b * pts["K"] * m["rate_comm"])  # eq. (3)
    np.testing.assert_allclose(m["ase_sense"], cfg.lambda_b * pts["J"] * m["rate_sense"])  # eq. (6)
    assert np.all(m["rate_comm"] > 0) and np.all(m["rate_sense"] > 0)
