"""ent-usr per-frame power allocation: the monotonic SINR-space programs of tasks/ent_usr/power.py and
the polyblock / convex solvers on them (cross-checked against exhaustive grids and the model)."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isacbench.api import Budget, BudgetedProblem, UserError
from isacbench.runner import execute, solve_problem
from isacbench.solvers.convex import Convex
from isacbench.solvers.polyblock import Polyblock, polyblock
from isacbench.tasks.ent_usr import EntUsrTask, model
from isacbench.tasks.ent_usr.baselines import RandomMRT
from isacbench.tasks.ent_usr.power import LV_MAX, PowerPrograms

SMALL = {"M": 1, "R": 1, "A": 2, "K": 2, "Q": 1, "frames_per_episode": 2, "eval_episodes": 1}
FULL = {"frames_per_episode": 2, "eval_episodes": 2}  # Table I sizes (M = 4, 76 variables)


def frame(cfg, b=0):
    task = EntUsrTask(cfg)
    return task, task.frame_problems(task.evaluation_env())[b]


def with_levels(x, lv, p):
    nk = p.K + p.Q
    return {**x, **{f"lv_{s // nk}_{s % nk}": float(v) for s, v in enumerate(np.ravel(lv))}}


def topologies(prob, rng):
    p = prob.p
    nk = p.K + p.Q
    return {"ccn": prob.rule(np.zeros((p.M, nk), bool), prob.contiguous_groups()),
            "cfn": prob.rule(np.ones((p.M, nk), bool), prob.contiguous_groups()),
            "mixed": prob.rule(rng.integers(0, 2, (p.M, nk)).astype(bool), prob.contiguous_groups())}


def power_programs(prob, x=None) -> PowerPrograms:
    """The frame problem's power programs at x (default: its reference decision)."""
    return PowerPrograms(prob.p, prob.state, prob.reference()[0] if x is None else x, prob.to_decision)


@functools.cache
def full_frame():
    """The full-size frame problem and its power programs at three topologies (built once)."""
    _, prob = frame(FULL)
    return prob, {k: power_programs(prob, x) for k, x in topologies(prob, np.random.default_rng(5)).items()}


# ------------------------------------------------------------------ the frame problem's power levels
def test_power_levels_are_optional_and_default_to_the_rule():
    task, prob = frame(FULL)
    p = task.params
    x = solve_problem(prob, RandomMRT(), Budget(evaluations=1), np.random.default_rng(1)).decision
    assert len(prob.space.variables) == 76 and not any(k.startswith("lv_") for k in x)
    ones = with_levels(x, np.ones(p.M * (p.K + p.Q)), p)
    assert prob.space.check(ones) == ones
    a, b = prob.to_decision(x), prob.to_decision(ones)
    np.testing.assert_array_equal(a.frac_loc, b.frac_loc)
    np.testing.assert_array_equal(a.frac_fed, b.frac_fed)
    assert prob.evaluate(ones).objective == prob.evaluate(x).objective
    with pytest.raises(UserError, match="lv_0_0"):
        prob.evaluate({**x, "lv_0_0": LV_MAX + 1})
    # halving every level halves every share (budgets then hold with room to spare)
    half = prob.to_decision(with_levels(x, np.full(p.M * (p.K + p.Q), 0.5), p))
    np.testing.assert_allclose(half.frac_loc, 0.5 * a.frac_loc)
    # levels above the budget are scaled back to it, keeping their ratios (eq. 16-17)
    big = prob.to_decision(with_levels(x, np.full(p.M * (p.K + p.Q), 3.0), p))
    np.testing.assert_allclose(big.frac_fed, a.frac_fed, atol=1e-15)


# ------------------------------------------------------------------ the programs reproduce the model
@pytest.mark.parametrize("topo", ["ccn", "cfn", "mixed"])
def test_block_terms_reproduce_the_model(topo):
    progs, p = full_frame()[1][topo], full_frame()[0].p
    rng = np.random.default_rng(2)
    nk = p.K + p.Q
    for _ in range(4):
        lv = rng.uniform(0, 1.2, p.M * nk)
        x = with_levels(progs.x_ref, lv, p)
        out = model.evaluate(p, full_frame()[0].state, full_frame()[0].to_decision(x))
        for k, b in enumerate(progs.blocks):
            lb = lv[np.concatenate([b.users, b.targets])][None]
            if (lb @ b.load.T).max() > 1:  # the frame problem scales over-budget APs; the program does not
                continue
            sinr = b.sinr(lb)[0]  # (I, U): eq. 24-25
            if b.label.startswith("ccn"):
                m = int(b.label[3:])
                want = out["sinr_loc"][0, m, b.users % nk][None]
            else:
                cells = np.flatnonzero(progs.d_unit.group[0] == int(b.label[3:]))
                users = (b.users // nk) * p.K + b.users % nk
                want = out["sinr_fed"][0][users][:, cells].T
            np.testing.assert_allclose(sinr, want, rtol=2e-4)  # the model runs in complex64
            # same formulas; the beam gains go through complex64 steering vectors (relative error ~1e-7)
            assert progs.sense_utility(k, lb)[0] == pytest.approx(out["u_sense"][0, b.target_q].sum(), rel=1e-6)


def test_ccn_blocks_sum_to_the_usr():
    """CCN blocks (one subband): the program at y = (SINR(lv), lv_t) gives back the levels lv and
    the sum of the block objectives is the frame's USR (eq. 42)."""
    progs, p = full_frame()[1]["ccn"], full_frame()[0].p
    rng = np.random.default_rng(3)
    for _ in range(3):
        lv = rng.uniform(0.2, 1.0, p.M * (p.K + p.Q))
        usr = full_frame()[0].evaluate(with_levels(progs.x_ref, lv, p)).objective
        total = 0.0
        for k, b in enumerate(progs.blocks):
            lb = lv[np.concatenate([b.users, b.targets])][None]
            y = np.concatenate([b.sinr(lb)[0, 0], lb[0, len(b.users):]])[None]
            np.testing.assert_allclose(progs.levels(k, y), lb, rtol=1e-9)
            assert progs.constraint(k, y)[0] <= 0
            total += progs.objective(k, y)[0]
        assert total == pytest.approx(usr, rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["ccn", "cfn", "mixed"]), st.integers(0, 10**6), st.floats(0.0, 1.0))
def test_objective_and_constraint_are_increasing(topo, seed, scale):
    progs = full_frame()[1][topo]
    rng = np.random.default_rng(seed)
    k = int(rng.integers(len(progs.blocks)))
    pr = progs.programs[k]
    y = pr.high * rng.uniform(0, scale, size=(8, len(pr.high)))
    z = y + (pr.high - y) * rng.uniform(0, 1, y.shape) * (rng.uniform(size=y.shape) < 0.5)
    f_y, f_z, g_y, g_z = pr.objective(y), pr.objective(z), pr.constraint(y), pr.constraint(z)
    assert np.all(f_z >= f_y - 1e-12 * np.abs(f_y)) and np.all(g_z >= g_y - 1e-12 * np.abs(g_y))


# ------------------------------------------------------------------ polyblock and convex vs exhaustive
def grid_max(pr, points=41):
    axes = [np.linspace(lo, hi, points) for lo, hi in zip(pr.low, pr.high)]
    y = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(pr.low))
    ok = pr.constraint(y) <= 0
    return pr.objective(y[ok]).max()


def test_polyblock_matches_the_exhaustive_grid_on_a_small_frame():
    _, prob = frame(SMALL)
    pr = prob.structure().monotonic_blocks.programs[0]
    assert len(pr.high) == 3  # 2 users' SINR targets and 1 target's level
    res = polyblock([pr], max_evaluations=20000, rel_eps=1e-4)
    best_grid = grid_max(pr)
    assert res.stop == "gap" and res.best >= best_grid - 1e-9 and res.bound >= best_grid
    # the grid's spacing is 1/40 of the box; the certified gap says how far its best can be
    assert res.bound - res.best <= 1e-4 * res.best
    assert res.best - best_grid <= 0.01 * best_grid
    # convex works on the exact power-level program, of which the SINR-space one is a restriction; on
    # this small frame the bound still holds for it (as for exhaustive search over the levels, below)
    cvx = Convex().solve(BudgetedProblem(prob, Budget(evaluations=3000)), Budget(evaluations=3000),
                         np.random.default_rng(0))
    assert best_grid - 0.01 * best_grid <= cvx.info["program_value"] <= res.bound


def test_power_space_exhaustive_never_beats_the_polyblock_bound():
    """Exhaustive over the frame problem's own power levels (lv of both users and the target,
    evaluated by EntUsrFrameProblem.evaluate): no budget-feasible point beats polyblock's bound."""
    _, prob = frame(SMALL)
    p = prob.p
    sol = Polyblock({"rel_eps": 1e-4}).solve(BudgetedProblem(prob, Budget(evaluations=20000)),
                                             Budget(evaluations=20000), np.random.default_rng(0))
    progs = power_programs(prob)
    b = progs.blocks[0]
    axes = np.linspace(0, 1.0 / b.load.max(axis=0), 9)  # (9, 3) levels up to each service's cap
    best = -np.inf
    for i in range(9):
        for j in range(9):
            for t in range(9):
                lv = np.array([axes[i, 0], axes[j, 1], axes[t, 2]])
                if (b.load @ lv).max() > 1:
                    continue
                full = np.zeros(p.K + p.Q)
                full[np.concatenate([b.users, b.targets])] = lv
                x = with_levels(progs.x_ref, full, p)
                best = max(best, prob.evaluate(x).objective)
    assert best <= sol.info["program_bound"] + 1e-9
    assert sol.info["verified_objective"] >= best - 1e-6 * best
    assert sol.info["verified_objective"] == pytest.approx(sol.info["program_value"], rel=1e-6)


@pytest.mark.parametrize("topo", ["ccn", "mixed"])
def test_bounds_dominate_every_value_on_full_frames(topo):
    """Full-size frames: polyblock's bound (each block stopped early) is above the reference point and
    random feasible points of every block; convex (on the exact power-level program) only improves
    on its start."""
    progs = full_frame()[1][topo]
    convex = full_frame()[0].structure(progs.x_ref).convex_blocks
    rng = np.random.default_rng(4)
    pb, cvx = Polyblock(), Convex()
    for k, pr in enumerate(progs.programs):
        res = pb._block(pr, progs.reference[k], 600, None)
        y = pr.high * rng.uniform(0, 0.3, size=(300, len(pr.high)))
        f = pr.objective(y)[pr.constraint(y) <= 0]
        top = max([pr.objective(progs.reference[k][None])[0], *f])
        assert res.bound >= top
        c = cvx._block(convex.programs[k], convex.reference[k], 600, None)
        assert c.value >= convex.programs[k].objective(convex.reference[k][None])[0]  # SCA only improves
        assert all(s.split(" (")[0] in ("optimal", "optimal_inaccurate") for s in c.info["statuses"])


# ------------------------------------------------------------------ per frame, end to end
@pytest.mark.parametrize("solver", [Polyblock, Convex])
def test_solvers_act_per_frame_and_never_lose_to_the_reference(solver):
    task = EntUsrTask(FULL)
    for prob in task.frame_problems(task.evaluation_env()):
        bp = BudgetedProblem(prob, Budget(evaluations=300))
        sol = solver().solve(bp, Budget(evaluations=300), np.random.default_rng(0))
        assert bp.evaluations <= 300
        ev = prob.evaluate(sol.decision)
        rules = topologies(prob, np.random.default_rng(0))  # the default reference: best of CCN / CFN rules
        assert sol.info["reference_objective"] == max(prob.evaluate(rules[k]).objective for k in ("ccn", "cfn"))
        assert ev.feasible and ev.objective >= sol.info["reference_objective"]
    out = execute(task, solver(), Budget(evaluations=300), seed=0)
    assert out.evaluations <= 300 * task.params.frames * task.config.eval_episodes
    assert out.evaluation.metrics["infeasible_frames"] == 0 and out.evaluation.objective > 0


@pytest.mark.parametrize("solver, seconds", [(Polyblock, 0.5), (Convex, 1.0)])
def test_time_budget_stops_feasible_and_never_below_the_reference(solver, seconds):
    """What a time budget guarantees, however fast the machine: the solve stops, and the result is
    feasible and no worse than the reference decision (evaluated first, so the runner keeps it even
    when the time ends inside a block)."""
    _, prob = frame(FULL)
    solved = solve_problem(prob, solver(), Budget(seconds=seconds), np.random.default_rng(0))
    reference = prob.evaluate(prob.reference()[0]).objective
    assert solved.evaluation.feasible and solved.evaluation.objective >= reference


def test_convex_reports_the_statuses_of_its_subproblems():
    task = EntUsrTask(FULL)
    probs = task.frame_problems(task.evaluation_env())
    sols = [Convex().solve(BudgetedProblem(pr, Budget(evaluations=400)), Budget(evaluations=400),
                           np.random.default_rng(0)) for pr in probs]
    for sol in sols:
        assert sol.info["solver"] == "CLARABEL"
        assert sum(sol.info["statuses"].values()) == sum(b["subproblems"] for b in sol.info["blocks"]) > 0
        assert {s.split(" (")[0] for s in sol.info["statuses"]} <= {"optimal", "optimal_inaccurate"}


def test_joint_program_is_the_sum_of_the_blocks():
    progs = full_frame()[1]["mixed"]
    joint = full_frame()[0].structure(progs.x_ref).monotonic[0]
    y = np.concatenate(progs.reference)[None]
    assert joint.objective(y)[0] == pytest.approx(sum(pr.objective(r[None])[0]
                                                      for pr, r in zip(progs.programs, progs.reference)), rel=1e-12)
    assert joint.constraint(y)[0] <= 0 and joint.constraint(joint.high[None])[0] > 0
    assert full_frame()[0].space.check(joint.to_decision(y[0])) == progs.combine(progs.reference)
