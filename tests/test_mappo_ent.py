"""MAPPO on the real ent-usr environment: action domains, topology settings, a tiny end-to-end run."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from isacbench import episodes
from isacbench.api import Budget, Reporter
from isacbench.solvers.mappo import MAPPO
from isacbench.solvers.mappo import heads as H
from isacbench.solvers.mappo.policy import ActorCritic, MAPPOPolicy

ent_usr = pytest.importorskip("isacbench.tasks.ent_usr")

SMALL = {"frames_per_episode": 2, "eval_episodes": 2}
TINY = dict(num_envs=2, actor_hidden=(16,), critic_hidden=(16,), epochs=1, minibatches=1)


def untrained_policy(task, seed: int, deterministic: bool) -> tuple:
    env = task.make_env(3, seed)
    hyper = MAPPO(TINY).config.hyper()
    torch.manual_seed(seed)
    model = ActorCritic(env.roles, env.state_dim, hyper)
    for p in model.parameters():  # spread the outputs so that extreme logits/concentrations occur
        p.data.mul_(50.0)
    return env, MAPPOPolicy(model, deterministic)


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(["ent", "ccn-only", "cfn-only"]), st.integers(0, 2 ** 31 - 1), st.booleans())
def test_actions_respect_every_head_domain_of_the_environment(topology, seed, deterministic):
    env, policy = untrained_policy(ent_usr.EntUsrTask({**SMALL, "topology": topology}), seed, deterministic)
    env.reset(seed)
    for _ in range(env.frames_per_episode):
        for stage in env.stages:
            acts = {}
            for role in stage:
                spec = env.roles[role]
                acts[role] = a = policy.act(role, env.observe(role))
                assert set(a) == {h.name for h in spec.heads}
                for h in spec.heads:
                    x = a[h.name]
                    assert x.shape == (env.num_envs, spec.n_agents, h.size) and np.all(np.isfinite(x))
                    if h.kind == "bernoulli":
                        assert np.issubdtype(x.dtype, np.integer) and np.isin(x, (0, 1)).all()
                    elif h.kind == "categorical":
                        assert np.issubdtype(x.dtype, np.integer) and ((x >= 0) & (x < h.classes)).all()
                    else:
                        assert ((x >= h.low) & (x <= h.high)).all()
            env.act(acts)
        reward, _, metrics = env.end_frame()
        assert np.all(np.isfinite(reward)) and np.all(metrics["usr"] > 0)


@pytest.mark.parametrize("topology, federated", [("ccn-only", False), ("cfn-only", True)])
def test_topology_setting_fixes_the_lcp_the_policy_does_not_learn(topology, federated):
    task = ent_usr.EntUsrTask({**SMALL, "topology": topology})
    env, policy = untrained_policy(task, 0, True)
    assert "lcp" not in policy.model.roles
    env.reset(1)
    for stage in env.stages:
        env.act({r: policy.act(r, env.observe(r)) for r in stage})
    env.end_frame()
    d, p = env.last_decision, task.params
    assert np.all(d.fed_users == federated) and np.all(d.fed_targets == federated)
    assert np.all(d.b_loc == (0 if federated else p.B))
    assert np.allclose(d.p_loc, 0.0 if federated else p.P_max)
    with pytest.raises(ValueError, match="unknown role 'lcp'"):
        policy.act("lcp", env.observe("lcp"))


@pytest.mark.parametrize("baseline", ["mean", "critic"])
def test_tiny_training_run_on_ent_usr_is_evaluated_by_the_runner(tmp_path, baseline):
    task = ent_usr.EntUsrTask(SMALL)
    solver = MAPPO({**TINY, "baseline": baseline})
    seen = []
    policy = solver.train(task.make_env, Budget(frames=3 * 2 * 2), np.random.default_rng(0),
                          Reporter(progress=lambda f, t: seen.append((f, t)), artifact_dir=str(tmp_path)))
    assert [h["frames"] for h in solver.history] == [4, 8, 12]
    keys = set(ent_usr.metrics.METRICS) | {"return", "loss", "actor_loss", "entropy", "clip_fraction", "approx_kl",
                                           "fps"}
    assert keys <= set(solver.history[-1]) and ("critic_loss" in solver.history[-1]) == (baseline == "critic")
    assert (len(policy.model.critics) > 0) == (baseline == "critic")
    assert seen[-1][0] == 1.0 and "frames/s" in seen[-1][1] and "return" in seen[-1][1]
    assert "usr" not in seen[-1][1].lower()  # MAPPO names no task metric
    out = episodes.play_policy(task, policy)
    assert np.isfinite(out.evaluation.objective) and out.evaluation.objective > 0
    assert set(out.evaluation.metrics) >= set(ent_usr.metrics.METRICS)
    assert (tmp_path / "mappo" / "checkpoint.safetensors").is_file()
    assert (tmp_path / "mappo" / "training_curve.png").stat().st_size > 10_000


@pytest.mark.parametrize("over, topology", [({"preset": "paper", "num_envs": 2, "epochs": 1}, "ent"),
                                            (TINY, "ccn-only"), (TINY, "cfn-only")])
def test_paper_preset_and_topologies_train_one_update(over, topology):
    task = ent_usr.EntUsrTask({**SMALL, "topology": topology})
    solver = MAPPO(over)
    policy = solver.train(task.make_env, Budget(frames=4), np.random.default_rng(1), Reporter())
    assert len(solver.history) == 1 and np.isfinite(solver.history[0]["loss"])
    assert tuple(policy.model.roles) == {"ent": ("lcp", "lpb", "fg", "fpb"), "ccn-only": ("lpb",),
                                         "cfn-only": ("fg", "fpb")}[topology]


def test_mappo_supports_any_sequential_task_and_has_no_topology_key():
    assert MAPPO.tasks is None and MAPPO.supports(ent_usr.EntUsrTask)
    assert "topology" not in MAPPO.Config.model_fields


# ---------------------------------------------------------------- relative beams and reference init
def play(task, seed: int, beams_loc, beams_fed, fed: bool = False):
    """One frame with fixed LCP/FG/power actions and the given beam actions (B, n_agents, size)."""
    env, p = task.make_env(2, seed), task.params
    nk, nq = p.K + p.Q, p.MK + p.MQ
    cls = np.zeros((2, p.M, nk), np.int64)
    cls[:, :, 0] = cls[:, :, p.K] = int(fed)  # federate the first user and target of each cell
    env.act({"lcp": {"classify": cls, "power": np.full((2, p.M, p.A), 0.6), "bandwidth": np.full((2, p.M, 1), 0.5)}})
    env.act({"lpb": {"power": np.linspace(0.2, 1, 2 * p.M * p.A * nk).reshape(2, p.M, -1), "beam": beams_loc},
             "fg": {"group": np.arange(p.M).reshape(1, p.M, 1).repeat(2, 0).reshape(2, 1, p.M) % p.R}})
    env.act({"fpb": {"power": np.linspace(1, 0.1, 2 * p.R * p.MA * nq).reshape(2, p.R, -1), "beam": beams_fed}})
    env.end_frame()
    return env


@pytest.mark.parametrize("fed", [False, True])
def test_relative_beams_are_offsets_from_codebook_mrt_and_reproduce_absolute_ones(fed):
    rel = ent_usr.EntUsrTask({**SMALL, "beam_mode": "relative"})
    ab = ent_usr.EntUsrTask({**SMALL, "beam_mode": "absolute"})
    p = rel.params
    rng = np.random.default_rng(3)
    shape_l, shape_f = (2, p.M, p.A * (p.K + p.Q)), (2, p.R, p.MA * (p.MK + p.MQ))
    zero = play(rel, 7, np.zeros(shape_l, np.int64), np.zeros(shape_f, np.int64), fed)
    assert np.all(zero.last_decision.beam_loc == -1) and np.all(zero.last_decision.beam_fed == -1)  # MRT
    c_l, c_f = rng.integers(0, p.n_angles, shape_l), rng.integers(0, p.n_angles, shape_f)
    env = play(rel, 7, c_l, c_f, fed)
    want = ent_usr.model.around(zero.last["beam_loc"], c_l.reshape(2, p.MA, -1), p)
    assert np.array_equal(env.last["beam_loc"], want)
    # the same angles given as absolute Theta indices (every FPB agent sends all APs' beams) give the same frame
    same = play(ab, 7, env.last["beam_loc"].reshape(shape_l), np.repeat(env.last["beam_fed"].reshape(2, 1, -1),
                                                                       p.R, axis=1), fed)
    assert np.array_equal(same.last["beam_fed"], env.last["beam_fed"])
    assert same.last["usr"] == pytest.approx(env.last["usr"], rel=1e-12)
    assert not np.allclose(zero.last["usr"], env.last["usr"])  # random offsets are not MRT


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.data())
def test_relative_classes_permute_the_codebook_for_every_mrt_angle(n, data):
    p = ent_usr.config.params_of(ent_usr.config.EntUsrConfig(n_angles=n))
    mrt = data.draw(st.integers(0, n - 1))
    got = ent_usr.model.around(np.full(n, mrt), np.arange(n), p)
    assert got[0] == mrt and sorted(got.tolist()) == list(range(n))
    assert (got[1] - mrt) % n == 1 and (n == 2 or (mrt - got[2]) % n == 1)  # offsets 0, +1, -1, ...


def test_reference_init_starts_mappo_at_ccn_mrt():
    task = ent_usr.EntUsrTask(SMALL)
    env = task.make_env(64, 0)
    hyper = MAPPO(TINY).config.hyper()
    torch.manual_seed(0)
    model = ActorCritic(env.roles, env.state_dim, hyper, env.reference_actions())
    greedy = MAPPOPolicy(model, deterministic=True)
    for stage in env.stages:
        env.act({r: greedy.act(r, env.observe(r)) for r in stage})
    env.end_frame()
    d, p = env.last_decision, task.params
    assert not d.fed_users.any() and not d.fed_targets.any() and np.all(d.b_loc == p.B)
    # full power is an interior mode of the widened Beta, clipped: P_max itself up to the 0.01-gain output weights
    assert np.all(d.beam_loc == -1) and np.all(d.p_loc >= 0.99 * p.P_max) and np.mean(d.p_loc == p.P_max) > 0.25
    # sampled beams keep exploring: P(class 0) = e^c / (e^c + 15) per component, c = REF_LOGIT_CLASS
    sampler = MAPPOPolicy(model, deterministic=False)
    env.reset(1)
    env.act({"lcp": sampler.act("lcp", env.observe("lcp"))})
    beams = sampler.act("lpb", env.observe("lpb"))["beam"]
    e = np.exp(H.REF_LOGIT_CLASS)
    prob = e / (e + 15)
    share, se = (beams == 0).mean(), np.sqrt(prob * (1 - prob) / beams.size)
    assert abs(share - prob) < 4 * se



@pytest.mark.parametrize("share", [0.3, 1.0])
def test_reference_federate_starts_a_mixed_rule_with_the_resources_split_accordingly(share):
    task = ent_usr.EntUsrTask({**SMALL, "reference_federate": share})
    env, plain = task.make_env(256, 0), ent_usr.EntUsrTask(SMALL).make_env(256, 0)
    ref, base = env.reference_actions(), plain.reference_actions()
    assert ref["lcp"]["classify"].tolist() == [share] * 8 and ref["lcp"]["power"].tolist() == [1 - share] * 3
    assert ref["lcp"]["bandwidth"].tolist() == [1 - share]
    assert all(np.array_equal(ref[r][h], base[r][h]) for r in ("lpb", "fpb") for h in ("power", "beam"))
    torch.manual_seed(0)
    model = ActorCritic(env.roles, env.state_dim, MAPPO(TINY).config.hyper(), ref)
    bits = MAPPOPolicy(model, deterministic=False).act("lcp", env.observe("lcp"))["classify"]
    b = H.REF_LOGIT_BIT
    want = share if share < 1 else 1 / (1 + math.exp(-b))  # a whole bit keeps the reference logit +4
    assert abs(bits.mean() - want) < 0.02 + 4 * np.sqrt(want * (1 - want) / bits.size)  # output weights 0.01
    greedy = MAPPOPolicy(model, deterministic=True)
    for stage in env.stages:
        env.act({r: greedy.act(r, env.observe(r)) for r in stage})
    env.end_frame()
    d, p = env.last_decision, task.params
    if share == 1.0:  # the CFN-MRT rule's resources: everything federated, no local power or bandwidth
        assert d.fed_users.all() and d.fed_targets.all() and np.all(d.b_loc == 0) and np.all(d.p_loc <= 0.01 * p.P_max)
    else:  # greedy bits stay local below 1/2; half-way shares of B and P_max up to the 0.01-gain weights
        assert not d.fed_users.any() and np.all(np.abs(d.b_loc - 0.7 * p.B) <= 1)
        assert np.all(np.abs(d.p_loc / p.P_max - 0.7) < 0.02)


def test_greedy_baseline_is_the_mode_policy_reward_on_the_same_frame_and_leaves_the_stream_alone():
    from isacbench.solvers.mappo.algorithm import prepare
    from isacbench.solvers.mappo.rollout import collect, play_mode
    task = ent_usr.EntUsrTask({**SMALL, "scenario": "cooperative"})
    hyper = MAPPO({**TINY, "baseline": "greedy"}).config.hyper()
    env = task.make_env(3, 0)
    torch.manual_seed(0)
    model = ActorCritic(env.roles, env.state_dim, hyper, env.reference_actions())
    env.reset(seed=5)
    baseline = play_mode(env.branch(), model, torch.device("cpu")).frame_reward()
    greedy = MAPPOPolicy(model, deterministic=True)  # the same mode actions played on the env itself
    for stage in env.stages:
        env.act({r: greedy.act(r, env.observe(r)) for r in stage})
    reward, _, _ = env.end_frame()
    assert np.allclose(baseline, reward, rtol=1e-6) and np.ptp(reward) > 0
    twin = copy.deepcopy(model)  # collect updates the running normalizers: each rollout gets the same start
    torch.manual_seed(1)
    plain = collect(task.make_env(3, 0), twin, 7, torch.device("cpu"))
    torch.manual_seed(1)
    both = collect(task.make_env(3, 0), model, 7, torch.device("cpu"), "greedy")
    assert torch.equal(plain.rewards, both.rewards) and plain.mode_rewards is None  # same sampled rollout
    greedy_rewards = both.mode_rewards[..., 0]
    assert both.mode_rewards.shape == (*both.rewards.shape, 1)
    assert not torch.equal(both.rewards, greedy_rewards)  # sampled actions differ from the mode
    data = prepare(model, both, hyper)  # lambda 0: A = standardized r - r^mode, per role (eq. 81)
    diff = (both.rewards - greedy_rewards).flatten()
    want = (diff - diff.mean()) / diff.std(unbiased=False)
    for role, d in data.items():
        assert torch.allclose(d.advantage[:, 0], want, atol=1e-5), role


def test_stagewise_baseline_credits_each_stage_with_its_own_actions_and_telescopes_to_greedy():
    """G_s: the frame played as sampled before stage s and at the mode from s on; stage s's reward
    G_{s+1} - G_s (G_S = r), recomputed here by replaying the stored samples on a copy of the env."""
    from isacbench.solvers.mappo.algorithm import centred_rewards
    from isacbench.solvers.mappo.policy import to_numpy
    from isacbench.solvers.mappo.rollout import collect, play_mode
    task = ent_usr.EntUsrTask({**SMALL, "scenario": "cooperative", "reference_federate": 0.5})
    hyper = MAPPO({**TINY, "baseline": "stagewise"}).config.hyper()
    env = task.make_env(3, 0)
    torch.manual_seed(0)
    model = ActorCritic(env.roles, env.state_dim, hyper, env.reference_actions())
    start = copy.deepcopy(model)  # collect updates the running normalizers after the rollout
    torch.manual_seed(1)
    greedy = collect(task.make_env(3, 0), copy.deepcopy(model), 7, torch.device("cpu"), "greedy")
    torch.manual_seed(1)
    staged = collect(task.make_env(3, 0), model, 7, torch.device("cpu"), "stagewise")
    assert staged.role_stage == {"lcp": 0, "lpb": 1, "fg": 1, "fpb": 2}
    assert staged.mode_rewards.shape == (*staged.rewards.shape, 3)
    assert torch.equal(staged.rewards, greedy.rewards)  # the continuations leave the sampled rollout alone
    assert torch.equal(staged.mode_rewards[..., 0], greedy.mode_rewards[..., 0])  # G_0 is greedy's baseline
    # replay the first frame: stored samples for the stages before s, then the mode (model as at the rollout)
    replay = task.make_env(3, 0)
    replay.reset(seed=7)
    for s, stage in enumerate(replay.stages):
        g = torch.as_tensor(play_mode(replay.branch(), start, torch.device("cpu"), s).frame_reward(),
                            dtype=torch.float32)
        assert torch.allclose(g, staged.mode_rewards[0, :, s], rtol=1e-6, atol=1e-6), s
        replay.act({r: {h.name: to_numpy(h, staged.roles[r]["actions"][h.name][0]) for h in replay.roles[r].heads}
                    for r in stage})
    assert torch.allclose(torch.as_tensor(replay.frame_reward(), dtype=torch.float32), staged.rewards[0], atol=1e-6)
    credited = {r: centred_rewards(staged, "stagewise", r) for r in staged.role_stage}
    g = staged.mode_rewards
    assert torch.equal(credited["lcp"], g[..., 1] - g[..., 0]) and torch.equal(credited["fg"], credited["lpb"])
    assert torch.equal(credited["fpb"], staged.rewards - g[..., 2])
    total = credited["lcp"] + credited["lpb"] + credited["fpb"]
    assert torch.allclose(total, centred_rewards(staged, "greedy", "lcp"), atol=1e-5)  # telescopes
    assert all(c.abs().max() > 0 for c in credited.values())  # every stage's samples differ from its mode


@pytest.mark.parametrize("baseline", ["greedy", "stagewise"])
def test_continuations_on_a_worker_thread_give_the_same_rollout(baseline):
    """collect(overlap=True) plays and scores the mode continuations on a worker thread while the rollout goes
    on: the rollout (samples, log-probabilities, rewards, every G_s) and the normalizers after it are bit-equal
    to the inline run's, on an episode of several frames (the worker lags the env by up to a frame)."""
    from isacbench.solvers.mappo.rollout import collect
    task = ent_usr.EntUsrTask({"frames_per_episode": 4, "eval_episodes": 2, "scenario": "cooperative",
                               "reference_federate": 0.5})
    hyper = MAPPO({**TINY, "baseline": baseline}).config.hyper()
    env = task.make_env(3, 0)
    torch.manual_seed(0)
    model = ActorCritic(env.roles, env.state_dim, hyper, env.reference_actions())
    out = {}
    for overlap in (False, True):
        torch.manual_seed(1)
        twin = copy.deepcopy(model)
        out[overlap] = (collect(task.make_env(3, 0), twin, 7, torch.device("cpu"), baseline, overlap), twin)
    (inline, m0), (worker, m1) = out[False], out[True]
    assert inline.mode_rewards.shape == (4, 3, 1 if baseline == "greedy" else 3)
    assert torch.equal(inline.mode_rewards, worker.mode_rewards) and torch.equal(inline.rewards, worker.rewards)
    assert not torch.equal(inline.mode_rewards[..., 0], inline.rewards)
    for role in inline.roles:
        for key in ("obs", "log_prob", "state"):
            assert torch.equal(inline.roles[role][key], worker.roles[role][key]), (role, key)
    assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values()))


def test_a_failing_continuation_on_the_worker_thread_fails_the_rollout(monkeypatch):
    """An error raised while the worker thread scores the continuations reaches collect's caller unchanged."""
    from isacbench.solvers.mappo.rollout import collect
    from isacbench.tasks.ent_usr.env import EntUsrEnv
    task = ent_usr.EntUsrTask({**SMALL, "scenario": "cooperative"})
    hyper = MAPPO({**TINY, "baseline": "stagewise"}).config.hyper()
    env = task.make_env(2, 0)
    model = ActorCritic(env.roles, env.state_dim, hyper, env.reference_actions())

    def broken(self, branches):
        raise FloatingPointError("scoring failed")
    monkeypatch.setattr(EntUsrEnv, "frame_rewards", broken)
    with pytest.raises(FloatingPointError, match="scoring failed"):
        collect(env, model, 7, torch.device("cpu"), "stagewise", overlap=True)


@pytest.mark.parametrize("baseline", ["stagewise", "critic"])
def test_learner_products_on_one_or_two_threads_train_the_same_on_ent_usr(baseline):
    """`product_threads` (2 by default with 2+ CPUs): the default preset's network sizes (the 6,912-wide FPB output
    layer) and critics, two updates: the same curve and weights as with every product on one thread."""
    task = ent_usr.EntUsrTask(SMALL)
    runs = []
    for threads in (1, 2):
        solver = MAPPO({"num_envs": 16, "baseline": baseline, "product_threads": threads})
        policy = solver.train(task.make_env, Budget(frames=2 * 16 * SMALL["frames_per_episode"]),
                              np.random.default_rng(3), Reporter())
        runs.append(([{k: v for k, v in h.items() if k != "fps"} for h in solver.history], policy.model.state_dict()))
    (curve_one, one), (curve_two, two) = runs
    assert len(curve_one) == 2 and curve_one == curve_two
    assert all(torch.equal(v, two[k]) for k, v in one.items())
