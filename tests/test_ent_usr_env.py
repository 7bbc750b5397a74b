"""ent-usr environment contract, determinism, PettingZoo API, frame problems, task runs and baselines."""
from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from isacbench.api import Budget, Reporter, UserError
from isacbench.multiagent import Head, RoleSpec
from isacbench.solvers.mrt_baselines import CcnMRT, CfnMRT, RandomMRT
from isacbench.solvers.random_search import RandomSearch
from isacbench.tasks.ent_usr import EntUsrTask, model
from isacbench.tasks.ent_usr.pettingzoo_env import EntUsrParallelEnv
from test_ent_usr_model import play_frame, random_raw_actions

SMALL = {"frames_per_episode": 3, "eval_episodes": 2}


def test_contract_shapes_and_heads():
    task = EntUsrTask(SMALL)
    env = task.make_env(5, 0)
    assert env.num_envs == 5 and env.frames_per_episode == 3
    assert env.stages == (("lcp",), ("lpb", "fg"), ("fpb",))
    assert set(env.roles) == {"lcp", "lpb", "fg", "fpb"}
    assert [env.roles[r].n_agents for r in ("lcp", "lpb", "fg", "fpb")] == [4, 4, 1, 2]
    for spec in env.roles.values():
        assert isinstance(spec, RoleSpec) and all(isinstance(h, Head) for h in spec.heads)
        assert all(h.kind in ("bernoulli", "categorical", "continuous") for h in spec.heads)
    assert {h.name: h.size for h in env.roles["lcp"].heads} == {"classify": 8, "power": 3, "bandwidth": 1}
    assert env.roles["fpb"].heads[1].classes == 16 and env.roles["fpb"].heads[1].size == 12 * 32
    rng = np.random.default_rng(0)
    acts = random_raw_actions(env, rng)
    for stage in env.stages:
        for role in stage:
            obs = env.observe(role)
            assert obs.shape == (5, env.roles[role].n_agents, env.roles[role].obs_dim) and obs.dtype == np.float32
            assert np.all(np.isfinite(obs))
        assert env.state().shape == (5, env.state_dim)
        env.act({r: acts[r] for r in stage})
    reward, done, metrics = env.end_frame()
    assert reward.shape == (5,) and done.shape == (5,) and not done.any()
    assert set(metrics) == {"usr", "utility", "signaling", "utility_comm", "utility_sense"}


def test_stage_order_is_enforced():
    env = EntUsrTask(SMALL).make_env(2, 0)
    with pytest.raises(UserError):
        env.observe("fpb")
    with pytest.raises(UserError):
        env.end_frame()


def test_later_stages_see_earlier_actions():
    env = EntUsrTask(SMALL).make_env(2, 0)
    acts = random_raw_actions(env, np.random.default_rng(1))
    env.act({"lcp": acts["lcp"]})
    lpb = env.observe("lpb")
    p = env.p
    np.testing.assert_array_equal(lpb[..., env.lcp_dim:env.lcp_dim + p.K + p.Q], acts["lcp"]["classify"])  # eq. 71
    env.act({"lpb": acts["lpb"], "fg": acts["fg"]})
    fpb = env.observe("fpb")
    g = np.clip(acts["fg"]["group"][:, 0], 0, p.R - 1)
    tail = fpb[:, 0, p.M * env.rep_dim:p.M * env.rep_dim + p.M * p.R].reshape(2, p.M, p.R)
    from isacbench.tasks.ent_usr.actions import repair_groups
    np.testing.assert_array_equal(tail.argmax(-1), repair_groups(g, p))  # eq. 73
    # FPB r sees only the reported states of its own CFN's CCNs
    rep = fpb[:, :, : p.M * env.rep_dim].reshape(2, p.R, p.M, env.rep_dim)
    outside = repair_groups(g, p)[:, None, :] != np.arange(p.R)[None, :, None]
    assert np.all(rep[outside] == 0)


def test_determinism_per_seed_and_action_independent_randomness():
    task = EntUsrTask(SMALL)
    runs = []
    for seed, act_seed in ((7, 0), (7, 0), (7, 1), (8, 0)):
        env = task.make_env(3, seed)
        rng = np.random.default_rng(act_seed)
        rewards = [play_frame(env, random_raw_actions(env, rng))[0] for _ in range(2)]
        runs.append((np.array(rewards), env.h.copy(), env.x.copy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert not np.allclose(runs[0][0], runs[3][0])
    # other actions, same seed: same channels and target trajectories
    np.testing.assert_array_equal(runs[0][1], runs[2][1])
    np.testing.assert_array_equal(runs[0][2], runs[2][2])
    assert not np.allclose(runs[0][0], runs[2][0])


def test_episode_ends_after_frames_per_episode():
    env = EntUsrTask(SMALL).make_env(2, 0)
    rng = np.random.default_rng(0)
    dones = [play_frame(env, random_raw_actions(env, rng))[1].all() for _ in range(3)]
    assert dones == [False, False, True]
    env.reset(1)
    assert env.frame == 0 and env.stage == 0


def test_pettingzoo_parallel_api_and_seed():
    task = EntUsrTask({"frames_per_episode": 2})
    parallel_api_test(EntUsrParallelEnv(task), num_cycles=10)
    parallel_seed_test(lambda: EntUsrParallelEnv(task))
    env = EntUsrParallelEnv(task)
    obs, _ = env.reset(seed=3)
    assert env.observation_space("lcp_0") is env.observation_space("lcp_0")
    assert all(env.observation_space(a).contains(o) for a, o in obs.items())
    assert set(env.possible_agents) == {"lcp_0", "lcp_1", "lcp_2", "lcp_3", "lpb_0", "lpb_1", "lpb_2", "lpb_3",
                                        "fg", "fpb_0", "fpb_1"}


def test_frame_problem_agrees_with_the_environment():
    task = EntUsrTask(SMALL)
    env = task.eval_env()
    probs = task.frame_problems(env)
    rng = np.random.default_rng(0)
    xs = [RandomMRT().solve(pr, Budget(), rng).decision for pr in probs]
    evs = [pr.evaluate(x) for pr, x in zip(probs, xs)]
    env.set_decision(model.Decision.stack([pr.to_decision(x) for pr, x in zip(probs, xs)]))
    _, _, metrics = env.end_frame()
    for b, ev in enumerate(evs):
        if ev.feasible:
            assert ev.objective == pytest.approx(metrics["usr"][b], rel=1e-9)
            assert ev.metrics["signaling"] == pytest.approx(metrics["signaling"][b], rel=1e-12)


def test_frame_problem_space_and_infeasible_grouping():
    task = EntUsrTask(SMALL)
    prob = task.frame_problems(task.eval_env())[0]
    p = task.params
    assert len(prob.space.variables) == p.M * (p.K + p.Q) + 2 * p.M + 3 * p.MA
    x = prob.rule(np.ones((p.M, p.K + p.Q), bool), np.zeros(p.M, int))  # all CCNs in one CFN > M_max = 3
    ev = prob.evaluate(x)
    assert not ev.feasible and ev.violations["cfn_size"] == 1.0
    x = prob.rule(np.zeros((p.M, p.K + p.Q), bool), prob.contiguous_groups())
    ev = prob.evaluate(x)
    assert ev.feasible and ev.metrics["signaling"] == pytest.approx(4 * (716.8 + 32) / 1024)
    with pytest.raises(UserError):
        prob.evaluate({**x, "bl_0": 99})


@pytest.mark.parametrize("solver", [RandomMRT, CcnMRT, CfnMRT])
def test_baselines_run_and_report(solver):
    task = EntUsrTask(SMALL)
    seen = []
    out = task.run_solver(solver(), task.default_budget, np.random.default_rng(0),
                          Reporter(progress=lambda f, t: seen.append(f)))
    m = out.evaluation.metrics
    assert out.evaluation.objective == m["usr"] > 0
    assert set(m) >= {"usr", "utility", "signaling", "utility_comm", "utility_sense"}
    assert out.evaluations == 0 and out.frames == 3 * 2 and seen[-1] == 1.0
    assert len(out.curves["usr"]) == 3
    episodes = out.decision["episode_means"]["usr"]  # per-episode means average to the objective
    assert len(episodes) == 2 and np.mean(episodes) == pytest.approx(out.evaluation.objective)
    assert np.mean(out.curves["usr"]) == pytest.approx(out.evaluation.objective)
    if solver is CcnMRT:
        assert m["signaling"] == pytest.approx(4 * (716.8 + 32) / 1024) and out.decision["fed_user_share"] == 0
    if solver is CfnMRT:
        assert out.decision["fed_user_share"] == 1 and out.decision["mean_cfn_sizes"] == [2.0, 2.0]


def test_baseline_ordering_matches_the_paper_tradeoff():
    """Sec. VI: CFN-only has the most utility and the most signaling, CCN-only the least signaling."""
    task = EntUsrTask({"frames_per_episode": 5, "eval_episodes": 4})
    res = {s.name: task.run_solver(s(), Budget(), np.random.default_rng(0), Reporter()).evaluation.metrics
           for s in (CcnMRT, CfnMRT, RandomMRT)}
    assert res["cfn-mrt"]["signaling"] > res["random-mrt"]["signaling"] > res["ccn-mrt"]["signaling"]
    assert res["cfn-mrt"]["utility"] > res["ccn-mrt"]["utility"]


def test_per_frame_optimizer_counts_evaluations():
    task = EntUsrTask(SMALL)
    out = task.run_solver(RandomSearch(), Budget(evaluations=3), np.random.default_rng(0), Reporter())
    assert out.evaluations == 3 * 3 * 2 and out.evaluation.objective > 0


def test_evaluation_seeds_are_fixed_per_instance():
    a = EntUsrTask(SMALL).run_solver(CcnMRT(), Budget(), np.random.default_rng(0), Reporter())
    b = EntUsrTask(SMALL).run_solver(CcnMRT(), Budget(), np.random.default_rng(9), Reporter())
    c = EntUsrTask({**SMALL, "instance_seed": 1}).run_solver(CcnMRT(), Budget(), np.random.default_rng(0), Reporter())
    assert a.evaluation.objective == b.evaluation.objective != c.evaluation.objective


def test_other_grid_sizes_work():
    task = EntUsrTask({"M": 9, "R": 3, "frames_per_episode": 2, "eval_episodes": 1})
    out = task.run_solver(CfnMRT(), Budget(), np.random.default_rng(0), Reporter())
    assert out.evaluation.objective > 0 and out.decision["mean_cfn_sizes"] == [3.0, 3.0, 3.0]
    env = task.make_env(2, 0)
    reward, _, _ = play_frame(env, random_raw_actions(env, np.random.default_rng(0)))
    assert np.all(np.isfinite(reward))


@pytest.mark.parametrize("cfg, word", [({"M": 5}, "square"), ({"R": 5}, "R=5"), ({"M_max": 1}, "M_max"),
                                       ({"rho": 1.5}, "rho"), ({"bogus": 1}, "bogus")])
def test_bad_config_is_a_user_error(cfg, word):
    with pytest.raises(UserError, match=word):
        EntUsrTask(cfg)


def test_mrt_solver_refuses_other_problems():
    from toy import ToyProblem  # tests/toy.py
    with pytest.raises(UserError, match="ent-usr"):
        CcnMRT().solve(ToyProblem(3.5), Budget(), np.random.default_rng(0))


def test_figure4_writes_png_and_csv(tmp_path):
    import csv
    task = EntUsrTask(SMALL)
    paths = task.figures()[4](tmp_path, lambda f, t: None)
    png, csv_path = paths
    assert png.stat().st_size > 10_000 and png.suffix == ".png"
    rows = list(csv.DictReader(open(csv_path)))
    p = task.params
    for panel in "ab":
        kinds = [r["node"] for r in rows if r["panel"] == panel]
        assert kinds.count("ap") == p.MA and kinds.count("user") == p.MK and kinds.count("target") == p.MQ
    assert all(r["regime"] == "local" for r in rows if r["panel"] == "a" and r["node"] != "ap")


def test_lcp_observation_carries_the_phase1_estimate_the_model_uses():
    task = EntUsrTask(SMALL)
    env = task.make_env(2, 4)
    p = task.params
    obs = env.observe("lcp")  # before any action: Phase-I CSI only (eq. 70)
    acts = random_raw_actions(env, np.random.default_rng(4))
    for stage in env.stages:
        env.act({r: acts[r] for r in stage})
    from isacbench.tasks.ent_usr.actions import decode
    out = model.evaluate(p, env.frame_state(), decode(p, acts))
    hl = model._diag_blocks(out["h_hat"], p)  # (B, M, A, K, N)
    ch = obs[..., 2 * p.K + 2 * p.A: 2 * p.K + 2 * p.A + env.ch_dim].reshape(2, p.M, p.A, p.K, 2 * p.N + 2)
    unit = hl / np.linalg.norm(hl, axis=-1, keepdims=True)
    np.testing.assert_allclose(ch[..., 1:1 + p.N], unit.real, atol=1e-5)
    np.testing.assert_allclose(ch[..., 1 + p.N:1 + 2 * p.N], unit.imag, atol=1e-5)
    gain = np.log10(np.linalg.norm(hl, axis=-1) ** 2 * p.P_max / (p.B * p.noise))
    np.testing.assert_allclose(ch[..., 0], gain, atol=1e-4)
