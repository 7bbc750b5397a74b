"""sg-nulling validation: the analytic evaluator (Theorems 1-2, Prop. 2) against the explicit
ZF Monte Carlo over a grid of (M_t, K, L, J, Q).

Where the paper's approximations are tight the two agree within 4 standard errors plus a stated
relative tolerance; where they are loose (MISR gain for L >= 2, hole neglected for Q >= 2) the test
pins the gap measured once with 20,000 networks (seed 123, `montecarlo.evaluate`), see
docs/models/sg-nulling.md."""
import numpy as np
import pytest

from isacbench.tasks.sg_nulling import analytic as A
from isacbench.tasks.sg_nulling import montecarlo as M
from isacbench.tasks.sg_nulling.problem import sensing_rates

N, EXPLICIT, SEED = 3000, 8, 7
TIGHT = 0.035  # relative model error allowed where the paper's approximation is tight


def run(Mt, K, L, J, Q):
    m = M.evaluate(SEED, K, L, J, Q, Mt, 4.0, 2.0, 1.0, 1.0, N, EXPLICIT)
    rc = float(A.rate_comm(K, L, J, Q, Mt, 4.0))
    rs = float(sensing_rates(1.0, 4.0, 2.0, 1.0, Mt - 1)(K, Q))
    return m, rc, rs


@pytest.mark.parametrize("Mt,K,L,J,Q", [(20, 1, 1, 1, 1), (10, 6, 1, 1, 1), (5, 3, 1, 1, 1), (20, 2, 1, 1, 10)])
def test_theorem1_and_prop2_agree_with_monte_carlo(Mt, K, L, J, Q):
    m, rc, rs = run(Mt, K, L, J, Q)
    assert abs(rc - m["rate_comm"]) < 4 * m["rate_comm_se"] + TIGHT * rc
    if Q == 1:  # Prop. 2 (exact up to the Gamma(K, 1) gain model)
        assert abs(rs - m["rate_sense"]) < 4 * m["rate_sense_se"] + TIGHT * rs


# (M_t, K, L, J, Q) -> measured relative gap (analysis - MC) / MC and its standard error (N = 20,000)
PINNED_COMM = {(20, 4, 2, 1, 1): (-0.0961, 0.0050), (20, 3, 3, 1, 1): (-0.1209, 0.0044),
               (10, 2, 2, 1, 1): (-0.0847, 0.0050)}
PINNED_SENSE = {(20, 1, 1, 1, 2): (-0.1015, 0.0077), (10, 1, 1, 2, 3): (-0.0784, 0.0070),
                (20, 1, 1, 2, 6): (-0.0349, 0.0060)}


@pytest.mark.parametrize("point", sorted(PINNED_COMM))
def test_misr_gain_underestimates_the_rate_with_nulling(point):
    # Theorem 1 for L >= 2 rests on the MISR-gain shift P_L(g) = P_1(g / G_L): it loses ~8-12%
    m, rc, _ = run(*point)
    gap, gap_se = PINNED_COMM[point]
    se = np.hypot(m["rate_comm_se"] / m["rate_comm"], gap_se)
    assert rc < m["rate_comm"] - 3 * m["rate_comm_se"]
    assert abs((rc - m["rate_comm"]) / m["rate_comm"] - gap) < 4 * se


@pytest.mark.parametrize("point", sorted(PINNED_SENSE))
def test_theorem2_neglecting_the_hole_underestimates_the_sensing_rate(point):
    # Theorem 2 (Q >= 2) lets interferers sit inside the empty disk around the target: pessimistic
    m, _, rs = run(*point)
    gap, gap_se = PINNED_SENSE[point]
    se = np.hypot(m["rate_sense_se"] / m["rate_sense"], gap_se)
    assert rs < m["rate_sense"]
    assert abs((rs - m["rate_sense"]) / m["rate_sense"] - gap) < 4 * se


def test_monte_carlo_is_seeded_and_reports_standard_errors():
    a = M.evaluate(3, 2, 1, 1, 2, 10, 4.0, 2.0, 1.0, 1.0, 400, 4)
    b = M.evaluate(3, 2, 1, 1, 2, 10, 4.0, 2.0, 1.0, 1.0, 400, 4)
    c = M.evaluate(4, 2, 1, 1, 2, 10, 4.0, 2.0, 1.0, 1.0, 400, 4)
    assert a == b and a["rate_comm"] != c["rate_comm"]
    assert 0 < a["rate_comm_se"] < 0.2 and 0 < a["rate_sense_se"] < 0.2
    assert a["ase_comm"] == pytest.approx(2 * a["rate_comm"]) and a["ase_sense"] == pytest.approx(a["rate_sense"])


def test_zf_beamformer_nulls_and_normalizes():
    # explicit check of the ZF construction: unit total power, own-user gain 1/(K [(AA^H)^-1]_00),
    # zero leakage to every constrained row except the own users
    rng = np.random.default_rng(0)
    K, Nc, Mt = 3, 7, 10
    A_ = (rng.standard_normal((Nc, Mt)) + 1j * rng.standard_normal((Nc, Mt))) / np.sqrt(2)
    W = np.conj(A_.T) @ np.linalg.inv(A_ @ np.conj(A_.T))[:, :K]
    W /= np.linalg.norm(W, axis=0) * np.sqrt(K)
    leak = np.abs(A_ @ W) ** 2
    assert np.allclose(leak[K:], 0, atol=1e-20) and np.allclose(leak[:K][~np.eye(K, dtype=bool)], 0, atol=1e-20)
    x = rng.standard_normal(Mt) + 1j * rng.standard_normal(Mt)
    probe, own = M.zf_gains(A_, x, K)
    assert probe == pytest.approx((np.abs(np.conj(x) @ W) ** 2).sum())
    assert own == pytest.approx(leak[0, 0])
