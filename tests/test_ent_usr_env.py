"""ent-usr environment contract, determinism, PettingZoo API, frame problems, task runs, baselines and
the topology setting."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test
from pettingzoo.utils.conversions import parallel_to_aec

from isacbench import runner
from isacbench.api import Budget, BudgetedProblem, Reporter, SequentialTask, Solution, Solver, UserError
from isacbench.multiagent import Head, MultiAgentEnv, RoleSpec
from isacbench.tasks.ent_usr import EntUsrTask, actions, model, topology
from isacbench.tasks.ent_usr.baselines import CcnMRT, CfnMRT, RandomMRT
from isacbench.tasks.ent_usr.metrics import METRICS
from isacbench.tasks.ent_usr.pettingzoo_env import EntUsrParallelEnv
from test_ent_usr_model import play_frame, random_raw_actions

SMALL = {"frames_per_episode": 3, "eval_episodes": 2}


class Sampler(Solver):
    """Uniform samples of the frame problem's space until the budget ends; the runner keeps the best."""

    name = "sampler"
    kinds = frozenset({"sequential"})

    def solve(self, problem, budget, rng):
        while problem.remaining:
            problem.evaluate(problem.space.sample(rng))
        return Solution(decision=None)


def run(task, solver, budget=Budget(), seed=0, reporter=None):
    """A sequential run as the runner executes it (evaluation episodes, per-frame checks)."""
    return runner.execute(task, solver, budget, seed, reporter)


def test_contract_shapes_and_heads():
    task = EntUsrTask(SMALL)
    assert isinstance(task, SequentialTask) and task.objective_metric == "usr" and task.setting_keys == ("topology", "reference_federate", "resource_split")
    env = task.make_env(5, 0)
    assert isinstance(env, MultiAgentEnv)
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
    assert tuple(metrics) == METRICS == ("usr", "utility", "signaling", "utility_comm", "utility_sense",
                                         "fed_user_share", "fed_target_share", "coop_share")
    assert all(v.shape == (5,) for v in metrics.values())
    for k in ("fed_user_share", "fed_target_share", "coop_share"):
        assert np.all((metrics[k] >= 0) & (metrics[k] <= 1))


def test_stage_misuse_is_a_programming_error_not_a_user_error():
    env = EntUsrTask(SMALL).make_env(2, 0)
    acts = random_raw_actions(env, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="stage"):
        env.observe("fpb")
    with pytest.raises(RuntimeError, match="every stage"):
        env.end_frame()
    with pytest.raises(ValueError, match="unknown role 'bogus'"):
        env.observe("bogus")
    with pytest.raises(ValueError, match="exactly its roles"):
        env.act({"lpb": acts["lpb"]})  # stage 0 is LCP's
    for stage in env.stages:
        env.act({r: acts[r] for r in stage})
    with pytest.raises(RuntimeError, match="call end_frame"):
        env.act({"lcp": acts["lcp"]})
    for err in (RuntimeError, ValueError):
        assert not issubclass(err, UserError)


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


def test_frame_reward_is_end_frames_reward_and_moves_nothing():
    """EntUsrEnv.frame_reward (no Kalman update, no next-frame draws) and the contract's default
    (end_frame on a copy) give end_frame's reward; the env's state and random stream stay put."""
    from isacbench.multiagent import MultiAgentEnv
    task = EntUsrTask(SMALL)
    env, twin = task.make_env(5, 2), task.make_env(5, 2)
    rng = np.random.default_rng(3)
    for _ in range(2):
        acts = random_raw_actions(env, rng)
        for e in (env, twin):
            for stage in e.stages:
                e.act({r: acts[r] for r in stage})
        fast, default = env.frame_reward(), MultiAgentEnv.frame_reward(env)
        assert env.frame == twin.frame and np.array_equal(env.h, twin.h)
        reward, _, _ = env.end_frame()
        assert np.array_equal(fast, reward) and np.array_equal(default, reward) and np.ptp(reward) > 0
        assert np.array_equal(twin.end_frame()[0], reward) and np.array_equal(env.h, twin.h)  # same stream after
    with pytest.raises(RuntimeError, match="every stage must act first"):
        env.frame_reward()


def _snapshot(env) -> dict:
    """Copies of every array and scalar attribute of an env and of its action dict and random stream."""
    snap = {k: np.copy(v) for k, v in vars(env).items() if isinstance(v, (np.ndarray, int, float))}
    snap["actions"] = {r: {h: np.copy(v) for h, v in a.items()} for r, a in env.actions.items()}
    snap["rng"] = env.rng.bit_generator.state
    return snap


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        _same(a[k], b[k]) if isinstance(a[k], dict) else np.array_equal(a[k], b[k]) for k in a)


def _play_on(env, acts: dict, rng: np.random.Generator) -> None:
    """env (whose first stage has acted) plays its other stages with `acts`, ends the frame, plays one more frame
    of random actions and resets."""
    for stage in env.stages[1:]:
        env.act({r: acts[r] for r in stage})
    env.end_frame()
    play_frame(env, random_raw_actions(env, rng))
    env.reset(9)


@pytest.mark.parametrize("topology_name", ["ent", "cfn-only"])
def test_branch_plays_on_without_moving_the_env(topology_name):
    """EntUsrEnv.branch (a shallow copy) is independent: a branch taken mid-frame plays other actions, ends
    its frame, plays a further frame and even resets, and the env keeps every array, action and its random
    stream; it then continues exactly as an env that was never branched. A deep copy (the contract's default)
    playing the other actions scores otherwise (a branch scores as a deep copy:
    `test_env_moving_on_leaves_a_branch_as_it_was`)."""
    task = EntUsrTask({**SMALL, "topology": topology_name})
    env, control = task.make_env(4, 5), task.make_env(4, 5)
    rng = np.random.default_rng(1)
    acts, other = random_raw_actions(env, rng), random_raw_actions(env, rng)
    for e in (env, control):
        e.act({r: acts[r] for r in e.stages[0]})
    before = _snapshot(env)
    branch, deep = env.branch(), MultiAgentEnv.branch(env)
    for stage in deep.stages[1:]:
        deep.act({r: other[r] for r in stage})
    _play_on(branch, other, rng)
    assert _same(_snapshot(env), before)
    for e in (env, control):
        for stage in e.stages[1:]:
            e.act({r: acts[r] for r in stage})
    reward, control_reward = env.end_frame()[0], control.end_frame()[0]
    assert np.array_equal(reward, control_reward) and np.array_equal(env.h, control.h)
    assert not np.array_equal(reward, deep.frame_reward())  # the branch's other actions scored otherwise


@pytest.mark.parametrize("topology_name", ["ent", "cfn-only"])
def test_env_moving_on_leaves_a_branch_as_it_was(topology_name):
    """The other direction of branch independence (mappo plays and scores its continuations on a worker thread
    while the rollout goes on): a branch taken mid-frame, played only after its env has ended the frame, played
    the next one and reset, has every array, action and random stream it had, and plays the frame as a deep copy
    taken at the same moment."""
    task = EntUsrTask({**SMALL, "topology": topology_name})
    env = task.make_env(4, 5)
    rng = np.random.default_rng(2)
    acts, other = random_raw_actions(env, rng), random_raw_actions(env, rng)
    env.act({r: acts[r] for r in env.stages[0]})
    branch, deep = env.branch(), MultiAgentEnv.branch(env)
    before = _snapshot(branch)
    _play_on(env, acts, rng)
    assert _same(_snapshot(branch), before)
    for b in (branch, deep):
        for stage in b.stages[1:]:
            b.act({r: other[r] for r in stage})
    assert np.array_equal(branch.frame_reward(), deep.frame_reward())
    assert np.array_equal(branch.end_frame()[0], deep.end_frame()[0]) and np.array_equal(branch.h, deep.h)


@pytest.mark.parametrize("topology_name", ["ent", "ccn-only"])
def test_frame_rewards_scores_branches_together_as_each_alone(topology_name):
    """EntUsrEnv.frame_rewards (one evaluation of the stacked decisions) equals each branch's own
    frame_reward bit for bit, for branches taken at different stages, in any number (a batch of 3 x 50 runs
    in blocks); a branch that has moved to another frame is scored on its own frame, an unfinished one raises."""
    task = EntUsrTask({**SMALL, "topology": topology_name})
    env = task.make_env(50, 3)
    rng = np.random.default_rng(4)
    branches = []
    for k, stage in enumerate(env.stages):
        twin, acts = env.branch(), random_raw_actions(env, rng)
        for later in twin.stages[k:]:
            twin.act({r: acts[r] for r in later})
        branches.append(twin)
        env.act({r: random_raw_actions(env, rng)[r] for r in stage})
    branches.append(env.branch())
    together, alone = env.frame_rewards(branches), [b.frame_reward() for b in branches]
    assert len(together) == len(branches)
    assert all(np.array_equal(t, a) for t, a in zip(together, alone))
    assert all(np.array_equal(t, a) for t, a in zip(MultiAgentEnv.frame_rewards(env, branches), alone))
    assert len({a.tobytes() for a in alone}) == len(alone)  # the branches' actions differ, so do their rewards
    moved = branches[0]
    moved.end_frame()
    for stage in moved.stages:
        moved.act({r: random_raw_actions(moved, rng)[r] for r in stage})
    mixed = env.frame_rewards([moved, branches[1]])
    assert np.array_equal(mixed[0], moved.frame_reward()) and np.array_equal(mixed[1], alone[1])
    unfinished = env.branch()
    unfinished.end_frame()
    with pytest.raises(RuntimeError, match="every stage must act first"):
        env.frame_rewards([branches[1], unfinished])


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


def test_pettingzoo_wrappers_find_render_mode_none():
    """Wrappers (PettingZoo's conversions, SuperSuit) read `render_mode` at once: None, and
    `metadata` lists no render modes."""
    env = EntUsrParallelEnv(EntUsrTask({"frames_per_episode": 2}))
    assert env.render_mode is None and env.metadata["render_modes"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "... does not have a `render_mode` defined."
        aec = parallel_to_aec(env)
    assert aec.render_mode is None
    with pytest.raises(ValueError, match="render_mode 'human'"):
        EntUsrParallelEnv(EntUsrTask({"frames_per_episode": 2}), render_mode="human")


def test_frame_problem_agrees_with_the_environment():
    task = EntUsrTask(SMALL)
    env = task.evaluation_env()
    probs = task.frame_problems(env)
    rng = np.random.default_rng(0)
    xs = [RandomMRT().solve(pr, Budget(), rng).decision for pr in probs]
    evs = [pr.evaluate(x) for pr, x in zip(probs, xs)]
    task.apply_frame_decisions(env, probs, xs)
    _, _, metrics = env.end_frame()
    assert any(ev.feasible for ev in evs)
    for b, ev in enumerate(evs):
        assert tuple(ev.metrics) == METRICS
        if ev.feasible:
            assert ev.objective == pytest.approx(metrics["usr"][b], rel=1e-9)
            assert ev.metrics["signaling"] == pytest.approx(metrics["signaling"][b], rel=1e-12)
            for k in ("fed_user_share", "fed_target_share", "coop_share"):
                assert ev.metrics[k] == metrics[k][b]


def test_topology_shares_count_federated_and_cooperative_services():
    """fed_*_share: eq. 57-58; coop_share: federated services whose CFN (eq. 65) has >= 2 CCNs."""
    task = EntUsrTask(SMALL)
    p = task.params
    env = task.make_env(3, 0)
    n = env.num_envs
    fed_u = np.zeros((n, p.MK), bool)
    fed_q = np.zeros((n, p.MQ), bool)
    fed_u[0] = fed_q[0] = True  # env 0: all federated, CFN 0 = {CCN 0}, CFN 1 = {1, 2, 3}
    fed_u[1, :p.K] = True  # env 1: the users of CCN 0 and the first target of CCN 2, CFNs {0, 1}, {2, 3}
    fed_q[1, 2 * p.Q] = True
    group = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]])  # env 2: nothing federated
    half = np.full((n, p.MA), 0.5)
    env.set_decision(actions.rule_decision(p, fed_u, fed_q, np.full((n, p.M), p.B // 2),
                                           np.full((n, p.MA), p.P_max / 2), group, half, half))
    _, _, m = env.end_frame()
    services = p.M * (p.K + p.Q)
    np.testing.assert_array_equal(m["fed_user_share"], [1.0, p.K / p.MK, 0.0])
    np.testing.assert_array_equal(m["fed_target_share"], [1.0, 1 / p.MQ, 0.0])
    np.testing.assert_array_equal(m["coop_share"], [3 * (p.K + p.Q) / services, (p.K + 1) / services, 0.0])


def test_frame_problem_space_and_infeasible_grouping():
    task = EntUsrTask(SMALL)
    prob = task.frame_problems(task.evaluation_env())[0]
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
    out = run(task, solver(), task.default_budget, reporter=Reporter(progress=lambda f, t: seen.append(f)))
    m = out.evaluation.metrics
    assert out.evaluation.objective == m["usr"] > 0
    assert set(m) >= set(METRICS)
    assert out.evaluations == 0 and out.info["frames"] == 3 * 2 and seen[-1] == 1.0
    assert len(out.info["curve:usr"]) == 3
    assert (m["infeasible_frames"] == 0) == (solver is not RandomMRT)  # random groups may exceed M_max (eq. 52)
    episodes = out.decision["episode_means"]["usr"]  # per-episode means average to the objective
    assert len(episodes) == 2 and np.mean(episodes) == pytest.approx(out.evaluation.objective)
    assert np.mean(out.info["curve:usr"]) == pytest.approx(out.evaluation.objective)
    if solver is CcnMRT:
        assert m["signaling"] == pytest.approx(4 * (716.8 + 32) / 1024)
        assert m["fed_user_share"] == m["fed_target_share"] == m["coop_share"] == 0
    if solver is CfnMRT:  # R = 2 contiguous CFNs of 2 CCNs each: every service cooperative
        assert m["fed_user_share"] == m["fed_target_share"] == m["coop_share"] == 1
    if solver is RandomMRT:
        assert 0 < m["coop_share"] < 1


def test_baseline_ordering_matches_the_paper_tradeoff():
    """Sec. VI: CFN-only has the most utility and the most signaling, CCN-only the least signaling."""
    task = EntUsrTask({"frames_per_episode": 5, "eval_episodes": 4})
    res = {s.name: run(task, s()).evaluation.metrics for s in (CcnMRT, CfnMRT, RandomMRT)}
    assert res["cfn-mrt"]["signaling"] > res["random-mrt"]["signaling"] > res["ccn-mrt"]["signaling"]
    assert res["cfn-mrt"]["utility"] > res["ccn-mrt"]["utility"]


def test_per_frame_optimizer_counts_evaluations():
    task = EntUsrTask(SMALL)
    out = run(task, Sampler(), Budget(evaluations=3))
    assert out.evaluations == 3 * 3 * 2 and out.evaluation.objective > 0


def test_baselines_unwrap_only_ent_usr_frame_problems():
    task = EntUsrTask(SMALL)
    prob = task.frame_problems(task.evaluation_env())[0]
    rng = np.random.default_rng(0)
    wrapped = CfnMRT().solve(BudgetedProblem(prob, Budget(evaluations=1)), Budget(evaluations=1), rng)
    assert wrapped.decision == CfnMRT().solve(prob, Budget(), rng).decision


def test_evaluation_seeds_are_fixed_per_instance():
    a = run(EntUsrTask(SMALL), CcnMRT(), seed=0)
    b = run(EntUsrTask(SMALL), CcnMRT(), seed=9)
    c = run(EntUsrTask({**SMALL, "instance_seed": 1}), CcnMRT(), seed=0)
    assert a.evaluation.objective == b.evaluation.objective != c.evaluation.objective


def test_other_grid_sizes_work():
    task = EntUsrTask({"M": 9, "R": 3, "frames_per_episode": 2, "eval_episodes": 1})
    out = run(task, CfnMRT())
    assert out.evaluation.objective > 0 and out.evaluation.metrics["coop_share"] == 1
    env = task.evaluation_env()
    probs = task.frame_problems(env)
    task.apply_frame_decisions(env, probs, [CfnMRT().solve(pr, Budget(), None).decision for pr in probs])
    env.end_frame()
    np.testing.assert_array_equal(np.bincount(env.last_decision.group[0]), [3, 3, 3])
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


# ------------------------------------------------------------------ topology setting (Sec. VI variants)
@pytest.mark.parametrize("topo, roles, stages", [
    ("ent", ("lcp", "lpb", "fg", "fpb"), (("lcp",), ("lpb", "fg"), ("fpb",))),
    ("ccn-only", ("lpb",), (("lpb",),)),
    ("cfn-only", ("fg", "fpb"), (("fg",), ("fpb",)))])
def test_topology_setting_restricts_the_acting_roles(topo, roles, stages):
    task = EntUsrTask({**SMALL, "topology": topo})
    env = task.make_env(2, 0)
    assert tuple(env.roles) == roles and env.stages == stages
    assert set(env.reference_actions()) == set(roles)
    full = EntUsrTask(SMALL).make_env(2, 0)
    assert env.state_dim == full.state_dim
    assert all(env.roles[r] == full.roles[r] for r in roles)


@pytest.mark.parametrize("topo", ["ccn-only", "cfn-only"])
def test_restricted_env_plays_the_fixed_rules_as_the_full_env_would(topo):
    """A restricted environment equals the full one whose non-acting roles play topology.fixed_actions:
    the same observations, states and per-frame metrics; LCP's rule fixes the classification and the
    local resources (ccn-only: all local, full local power and bandwidth; cfn-only: the opposite)."""
    task = EntUsrTask({**SMALL, "topology": topo})
    env, full = task.make_env(2, 5), EntUsrTask(SMALL).make_env(2, 5)
    rng = np.random.default_rng(5)
    p = task.params
    for _ in range(2):
        acts = random_raw_actions(full, rng)
        for r in full.roles:
            if r not in env.roles:
                acts[r] = topology.fixed_actions(topo, r, full.roles[r], 2)
        for stage in full.stages:
            mine = tuple(r for r in stage if r in env.roles)
            for r in mine:
                np.testing.assert_array_equal(env.observe(r), full.observe(r))
            if mine:
                np.testing.assert_array_equal(env.state(), full.state())
                env.act({r: acts[r] for r in mine})
            full.act({r: acts[r] for r in stage})
        _, _, m = env.end_frame()
        _, _, m_full = full.end_frame()
        for k in METRICS:
            np.testing.assert_array_equal(m[k], m_full[k])
        d, federated = env.last_decision, topo == "cfn-only"
        assert np.all(d.fed_users == federated) and np.all(d.fed_targets == federated)
        assert np.all(d.b_loc == (0 if federated else p.B)) and np.allclose(d.p_loc, 0.0 if federated else p.P_max)
        assert np.all(m["fed_user_share"] == float(federated))


@pytest.mark.parametrize("topo", ["ccn-only", "cfn-only"])
def test_restricted_topology_fixes_the_frame_problem_bounds(topo):
    task = EntUsrTask({**SMALL, "topology": topo})
    prob = task.frame_problems(task.evaluation_env())[0]
    p, fed = task.params, topo == "cfn-only"
    sp = prob.space
    assert all((sp[f"fed_{m}_{j}"].low, sp[f"fed_{m}_{j}"].high) == (int(fed), int(fed))
               for m in range(p.M) for j in range(p.K + p.Q))
    assert all((sp[f"bl_{m}"].low, sp[f"bl_{m}"].high) == ((0, 0) if fed else (p.B, p.B)) for m in range(p.M))
    assert all((sp[f"pl_{a}"].low, sp[f"pl_{a}"].high) == ((0.0, 0.0) if fed else (1.0, 1.0)) for a in range(p.MA))
    assert (sp["grp_0"].low, sp["grp_0"].high) == (0, p.R - 1)
    x = sp.sample(np.random.default_rng(0))
    assert sp.check(x) == x and all(x[f"fed_{m}_{j}"] == int(fed) for m in range(p.M) for j in range(p.K + p.Q))
    with pytest.raises(UserError, match="fed_0_0"):
        sp.check({**x, "fed_0_0": 1 - int(fed)})
    # every rule honours the setting: the rule of the other topology becomes this one's
    ccn, cfn = (prob.rule(np.full((p.M, p.K + p.Q), f), prob.contiguous_groups()) for f in (False, True))
    assert ccn == cfn == sp.check(ccn)
    assert topology.reference_federations(topo) == (fed,)
    assert topology.reference_federations("ent") == (False, True)


@pytest.mark.parametrize("topo, solver", [("ccn-only", CcnMRT), ("cfn-only", CfnMRT)])
def test_restricted_topology_runs_give_the_matching_rule_and_keep_the_instance(topo, solver):
    """ccn-mrt on ent equals both fixed rules on ccn-only (one topology, the same rule); random
    classifications follow the setting too. The setting is left out of the instance id and shown in
    the variant label."""
    ent, restricted = EntUsrTask(SMALL), EntUsrTask({**SMALL, "topology": topo})
    want = run(ent, solver()).evaluation.metrics
    for other in (CcnMRT, CfnMRT):
        assert run(restricted, other(), seed=3).evaluation.metrics == want, other.name
    share = float(topo == "cfn-only")
    for other, budget in ((RandomMRT(), Budget()), (Sampler(), Budget(evaluations=2))):
        m = run(restricted, other, budget, seed=1).evaluation.metrics
        assert m["fed_user_share"] == m["fed_target_share"] == share, other.name
    spec = runner.RunSpec("ent-usr", "sampler", task_config={**SMALL, "topology": topo})
    _, tags = runner.run_tags(spec, restricted, Sampler(), Budget())
    _, ent_tags = runner.run_tags(runner.RunSpec("ent-usr", "sampler", task_config=SMALL), ent, Sampler(), Budget())
    assert tags["isacbench.instance"] == ent_tags["isacbench.instance"]
    assert tags["isacbench.variant"] == f"sampler[topology={topo}]"


def test_topology_setting_is_validated():
    with pytest.raises(UserError, match="topology"):
        EntUsrTask({"topology": "mesh"})


@pytest.mark.parametrize("topo", ["ccn-only", "cfn-only"])
def test_pettingzoo_api_under_a_restricted_topology(topo):
    task = EntUsrTask({"frames_per_episode": 2, "topology": topo})
    parallel_api_test(EntUsrParallelEnv(task), num_cycles=6)
    env = EntUsrParallelEnv(task)
    assert {env.members[a][0] for a in env.possible_agents} == set(topology.acting_roles(topo))
