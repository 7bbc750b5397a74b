"""sg-cluster: config errors, closed forms against direct quadrature, problem contract,
monotonic structure and the baselines (analytic evaluator; fast)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from isacbench.api import Budget, BudgetedProblem, UserError
from isacbench.runner import solve_problem
from isacbench.solvers.exhaustive import Exhaustive
from isacbench.tasks.sg_cluster import SgClusterTask
from isacbench.tasks.sg_cluster import analytic as A
from isacbench.tasks.sg_cluster.baselines import ApproxSearch, NonCooperative, TimeSharing
from isacbench.tasks.sg_nulling import SgNullingTask

P2 = SgClusterTask({"problem": "P2"}).problem()


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("values, key", [({"psi_blocks": 3}, "psi_blocks"), ({"Mt": 1}, "Mt"),
                                         ({"alpha": 2.0}, "alpha"), ({"problem": "P3"}, "problem"),
                                         ({"rho": 1.5}, "rho"), ({"evaluator": "exact"}, "evaluator")])
def test_bad_config_raises_user_error_naming_the_key(values, key):
    with pytest.raises(UserError, match=key):
        SgClusterTask(values)


def test_default_config_is_the_papers_table():
    c = SgClusterTask().config
    assert (c.Mt, c.Mr, c.Pt, c.lambda_b, c.alpha, c.beta, c.C_backhaul, c.psi) == (4, 5, 1.0, 1.0, 4.0, 2.0, 8.6, 15)
    assert c.noise_w == pytest.approx(1e-8)


# ------------------------------------------------------------------ closed forms
@settings(max_examples=30, deadline=None)
@given(x=st.floats(1e-3, 50), K=st.sampled_from([1.0, 2.0, 3.0, 7.0]), alpha=st.floats(2.5, 6),
       eta=st.floats(0.05, 0.95))
def test_H1_H2_closed_forms_match_the_pgfl_integrals(x, K, alpha, eta):
    """Lemma 3: H1 = 2 int_1^{1/eta} t (1-(1+x t^-a)^-K) dt, H2 = 2 int_{1/eta}^inf t (1-(1+x t^-a)^-1) dt."""
    h1 = 2 * integrate.quad(lambda t: t * (1 - (1 + x * t ** -alpha) ** -K), 1, 1 / eta, epsabs=1e-12)[0]
    # u = 1/t maps the infinite range to (0, eta]: t (1 - 1/(1 + x t^-a)) dt = x u^(a-3)/(1 + x u^a) du
    h2 = 2 * integrate.quad(lambda u: x * u ** (alpha - 3) / (1 + x * u ** alpha), 0, eta, epsabs=1e-13)[0]
    assert A.H1(x, K, alpha, eta) == pytest.approx(h1, rel=1e-6, abs=1e-9)
    assert A.H2(x, alpha, eta) == pytest.approx(h2, rel=1e-6, abs=1e-9)


def _rate_by_quad(L: int, pc: float, Mt: int = 4, alpha: float = 4.0, kc: float = 0.9) -> float:
    """Eq. 29 / 33 by adaptive quadrature (nats), independent of the Gauss nodes."""
    def inner(z):
        sig = (1 + pc * z) ** (1 - Mt)
        if L == 1:
            h0 = 1 + A.H2(z, alpha, 1.0)
            return (1 - sig) / (z * h0)

        def f(eta):
            base = 1 + (1 - kc) * A.H1(z, 1.0, alpha, eta) + A.H2(z, alpha, eta)
            pdf = 2 * (L - 1) * eta * (1 - eta ** 2) ** (L - 2)
            return pdf * (1 / base - sig / (base + kc * A.H1(z * pc, Mt - 1.0, alpha, eta)))
        return integrate.quad(f, 0, 1, epsabs=1e-10, limit=200)[0] / z
    return integrate.quad(inner, 0, np.inf, epsabs=1e-9, limit=400)[0]


@pytest.mark.parametrize("L, pc", [(1, 0.3), (1, 1.0), (2, 0.5), (5, 1.0)])
def test_rate_quadrature_matches_adaptive_integration(L, pc):
    got = A.rate_nats(L, [pc], 4, 4.0, 0.9 if L > 1 else 1.0)[0]
    assert got == pytest.approx(_rate_by_quad(L, pc, kc=0.9 if L > 1 else 1.0), rel=2e-4)


@pytest.mark.parametrize("alpha", [2.5, 4.0])
@pytest.mark.parametrize("L", [2, 3, 4, 5])
def test_theorem2_eta_quadrature_is_within_1e6_of_adaptive_quadrature(L, alpha):
    """The expectation over eta_L (eq. 53) on the same z nodes, by scipy's adaptive quad in eta
    (L = 1 has no eta integral: eq. 33, checked above)."""
    z, wz = A._z_nodes()
    for pc in (0.1, 0.5, 1.0):
        def f(eta):
            base = 1 + 0.1 * A.H1(z, 1.0, alpha, eta) + A.H2(z, alpha, eta)
            pdf = 2 * (L - 1) * eta * (1 - eta ** 2) ** (L - 2)
            return pdf * (wz @ (1 / base - (1 + pc * z) ** -3 / (base + 0.9 * A.H1(z * pc, 3.0, alpha, eta))))
        ref = integrate.quad(f, 0, 1, epsabs=1e-13, epsrel=1e-12, limit=500, points=[1e-3, 1e-2, 0.1])[0]
        assert A.rate_nats(L, [pc], 4, alpha, 0.9)[0] == pytest.approx(ref, rel=1e-6), pc


@settings(max_examples=25, deadline=None)
@given(mean=st.floats(0.0, 60.0), psi=st.integers(2, 40))
def test_lemma2_mixture_equals_eq25_and_is_a_probability(mean, psi):
    k = A.kappa_c_from_mean(mean, psi)[0]
    assert 0.0 <= k <= 1.0 + 1e-12
    assert k == pytest.approx(A.kappa_printed(mean, psi, lemma=2)[0], abs=1e-10)
    assert A.kappa_c_from_mean(mean + 1.0, psi)[0] <= k + 1e-12  # more load, less acceptance


def test_lemma1_printed_eq23_drops_the_n_equals_psi_term():
    """Eq. 23 = Appendix D's sum minus P(n = psi) * (1 - 1) ... i.e. minus the Poisson mass at psi."""
    m, psi = 12.0, 15
    pmf_psi = np.exp(psi * np.log(m) - m - np.sum(np.log(np.arange(1, psi + 1))))
    assert A.kappa_s(1, 1.0, psi) == pytest.approx(1.0, abs=1e-12)
    got = A._poisson_mixture(np.array([m]), lambda n: np.minimum(1.0, psi / np.maximum(n, 1.0)))[0]
    assert got - A.kappa_printed(m, psi, lemma=1)[0] == pytest.approx(pmf_psi, rel=1e-9)


def test_gdop_prop1_and_corollary1():
    assert np.isinf(A.gdop_prop1(1))
    assert A.gdop_prop1(3) == pytest.approx(8 / 18)
    N = np.array([10.0, 100.0, 1e4])
    assert np.all(np.diff(np.abs(A.gdop_prop1(N) * N ** 2 / 2 - 1)) < 0)  # eq. 17: -> 2/N^2
    assert A.gdop_prop1(N) * N ** 2 / 2 == pytest.approx((N + 1) / (N - 1), rel=1e-12)


def test_eq21_tends_to_the_ln2_law_with_the_factor_two():
    """CRLB ln^2 N -> 2/(|zeta|^2 lambda^2 pi^2): Theorem 1 prints half of it (see docs)."""
    z, lam = 250.0, 1e-6
    limit = 2 / (z * (lam * np.pi) ** 2)
    ratios = [float(A.crlb_eq21(N, z, lam, 2.0) * np.log(N) ** 2 / limit) for N in (10, 1e3, 1e6, 1e12)]
    assert np.all(np.diff(ratios) > 0) and ratios[-1] > 0.95 and ratios[-1] < 1
    assert float(A.crlb_theorem1(1e12, z, lam) * np.log(1e12) ** 2) == pytest.approx(limit / 2)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 40), ps=st.floats(0.01, 1.0), kappa=st.floats(0.1, 1.0))
def test_crlb_scales_with_power_and_acceptance(N, ps, kappa):
    z, lam = P2.cfg.zeta2_per_watt(), P2.cfg.lambda_b_m2
    base = float(A.crlb_eq21(N, z, lam, 2.0))
    assert float(A.crlb_eq21(N, z * ps, lam, 2.0, kappa)) == pytest.approx(base / ps / kappa ** 2, rel=1e-10)
    assert float(A.crlb_eq21(N + 1, z, lam, 2.0)) < base
    assert float(A.crlb_eq19(N, z, lam, 2.0)) < base  # exact E[d_n] < sqrt(n/(lambda pi))


@settings(max_examples=15, deadline=None)
@given(L=st.integers(1, 20), p=st.floats(0.0, 0.95))
def test_rate_increases_with_communication_power(L, p):
    r = A.rate_bits(L, [p, p + 0.05], 4, 4.0, 1.0, 15)
    assert r[1] > r[0] >= 0.0


def test_optimal_L_shrinks_as_user_density_grows():
    """Sec. VI-B: L* decreases with lambda_u/lambda_b (analytic eq. 29 and eq. 37-38 approximation)."""
    best = {mu: 1 + int(np.argmax([A.rate_bits(L, [0.5], 4, 4.0, mu, 15)[0] for L in range(1, 31)])) for mu in (1, 5)}
    approx = {mu: A.approx_optimal_L(4.0, mu, 15, 30) for mu in (1, 5)}
    assert best[1] >= 3 * best[5] and approx[1] >= 2 * approx[5]
    assert abs(approx[1] - best[1]) <= 4 and abs(approx[5] - best[5]) <= 1


# ------------------------------------------------------------------ problem contract
def test_violations_are_reported_not_clipped():
    ev = P2.evaluate({"L": 12, "N": 10, "p_c": 0.9, "p_s": 0.5})
    assert not ev.feasible
    c = P2.cfg
    assert ev.violations["backhaul"] == pytest.approx(ev.metrics["rate"] + c.e_backhaul * 10 - c.C_backhaul)
    assert ev.violations["power"] == pytest.approx(0.4)
    ok = P2.evaluate({"L": 12, "N": 10, "p_c": 0.6, "p_s": 0.4})
    assert ok.metrics["crlb"] == pytest.approx(ev.metrics["crlb"] * 0.5 / 0.4)  # p_s used as given


def test_metrics_and_objectives_per_problem():
    x = {"L": 4, "N": 5, "p_c": 0.6, "p_s": 0.4}
    ev = P2.evaluate(x)
    assert set(ev.metrics) >= {"rate", "crlb", "root_crlb", "gdop", "kappa_c", "kappa_s", "t_isac"}
    assert ev.objective == pytest.approx(0.01 * ev.metrics["rate"] + 0.99 / ev.metrics["root_crlb"])
    region = SgClusterTask({"problem": "region"}).problem()
    evr = region.evaluate(x)
    assert region.objective_names == ("rate", "neg_root_crlb")
    assert evr.objectives == pytest.approx((ev.metrics["rate"], -ev.metrics["root_crlb"]))
    p1 = SgClusterTask({"problem": "P1"}).problem()
    assert p1.space.names == ["L"]
    assert p1.evaluate({"L": 4}).objective == pytest.approx(A.rate_bits(4, [1.0], 4, 4.0, 1.0, 15)[0])


@settings(max_examples=20, deadline=None)
@given(k=st.integers(0, 10_000), y=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2))
def test_monotonic_programs_agree_with_evaluate(k, y):
    progs = P2.structure().monotonic
    prog = progs[k % len(progs)]
    y = np.array([y])
    ev = P2.evaluate(prog.to_decision(y[0]))
    assert prog.objective(y)[0] == pytest.approx(ev.objective, rel=1e-9)
    assert (prog.constraint(y)[0] <= 0) == ev.feasible
    up = y + np.array([[0.02, 0.0]]), y + np.array([[0.0, 0.02]])
    for u in up:  # increasing in each coordinate
        assert prog.objective(u)[0] >= prog.objective(y)[0] and prog.constraint(u)[0] >= prog.constraint(y)[0]


# ------------------------------------------------------------------ baselines
def _run(solver, problem_name, evals=400):
    """(the runner's result, its evaluation, evaluations spent) of `solver` on the problem."""
    solved = solve_problem(SgClusterTask({"problem": problem_name}).problem(), solver, Budget(evaluations=evals),
                           np.random.default_rng(0))
    return solved, solved.evaluation, solved.evaluations


def test_baselines_ordering_on_P2():
    """Sec. VI-C: the cooperative search beats time sharing, which beats no cooperation."""
    s_a, e_a, n_a = _run(ApproxSearch(), "P2")
    s_t, e_t, _ = _run(TimeSharing(), "P2")
    s_n, e_n, _ = _run(NonCooperative(), "P2")
    assert e_a.feasible and e_t.feasible and e_n.feasible and n_a <= 400
    assert e_a.objective > e_t.objective > e_n.objective
    ts = s_t.info["time_sharing"]  # the best time-shared mix (not a decision): still below cooperation
    assert e_a.objective > ts["t_isac"] >= e_t.objective and 0 <= ts["tau"] <= 1
    assert s_n.decision["L"] == s_n.decision["N"] == 1
    assert set(s_t.info["corners"]) == {"communication", "sensing"}
    assert s_t.decision in s_t.info["corners"].values()


def test_approx_search_on_P1_is_close_to_exhaustive():
    sol_a, ev_a, n = _run(ApproxSearch(), "P1")
    sol_x, ev_x, _ = _run(Exhaustive(), "P1")
    assert n == 1 and sol_a.decision["L"] == A.approx_optimal_L(4.0, 1.0, 15, 20)
    assert ev_x.objective == max(A.rate_bits(L, [1.0], 4, 4.0, 1.0, 15)[0] for L in range(1, 21))
    assert ev_a.objective >= 0.95 * ev_x.objective


@pytest.mark.parametrize("solver, evals, decision, objective", [
    # the best feasible point among the first `evals` each baseline evaluates (measured before the move)
    (ApproxSearch(), 5, {"L": 1, "N": 10, "p_c": 0.8, "p_s": 0.2}, 0.046445233280513865),
    (TimeSharing(), 3, {"L": 3, "N": 1, "p_c": 1.0, "p_s": 0.0}, 0.054996676315915725),  # eta rule of issue 16
    (NonCooperative(), 4, {"L": 1, "N": 1, "p_c": 0.15000000000000002, "p_s": 0.85}, 0.02732605400203586)])
def test_baselines_stop_at_a_tiny_budget_with_their_best_point(solver, evals, decision, objective):
    sol, ev, used = _run(solver, "P2", evals=evals)
    assert used == evals and sol.decision == decision and ev.feasible and ev.objective == objective


@pytest.mark.parametrize("solver", [ApproxSearch(), TimeSharing(), NonCooperative()])
def test_baselines_refuse_another_tasks_problem(solver):
    problem = SgNullingTask().problem()
    with pytest.raises(UserError, match=f"solver '{solver.name}' needs an sg-cluster problem"):
        solver.solve(BudgetedProblem(problem, Budget(evaluations=10)), Budget(evaluations=10), np.random.default_rng(0))


def test_figures_registered():
    assert sorted(SgClusterTask().figures()) == list(range(3, 11))


def test_figure_writes_png_and_csv_and_reports_progress(tmp_path):
    calls = []
    paths = SgClusterTask().figures()[3](tmp_path, lambda f, s: calls.append(f), samples=200)
    assert sorted(p.name for p in paths) == ["fig3.csv", "fig3.png"] and all(p.stat().st_size > 0 for p in paths)
    rows = (tmp_path / "fig3.csv").read_text().splitlines()
    assert rows[0].startswith("N,prop1") and len(rows) == 20 and calls[-1] == 1.0
