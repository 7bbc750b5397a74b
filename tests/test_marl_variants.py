"""MAPPO / IPPO / HAPPO: honest variant labels, IPPO's local critics, HAPPO's sequential factor,
per-role diagnostics, explained variance, and the algorithm in checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import cli
from isacbench import registry
from isacbench.api import Budget, Reporter, UserError
from isacbench.multiagent import Head, RoleSpec
from isacbench.solvers.mappo import HAPPO, IPPO, MAPPO
from isacbench.solvers.mappo.algorithm import RoleData, explained_variance, joint_log_ratio, prepare, update
from isacbench.solvers.mappo.policy import ActorCritic
from isacbench.solvers.mappo.rollout import Rollout
from isacbench.sweep import parse_variant

from test_mappo_env import ToyEnv


# ------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("solver, cfg, label", [
    (MAPPO, {}, "mappo[baseline=stagewise]"),  # the default preset's baseline is critic-less: never plain `mappo`
    (MAPPO, {"baseline": "greedy"}, "mappo[baseline=greedy]"),
    (MAPPO, {"baseline": "mean"}, "mappo[baseline=mean]"),
    (MAPPO, {"baseline": "critic"}, "mappo[baseline=critic]"),  # not the default: named, so a sweep rebuilds it
    (MAPPO, {"preset": "paper"}, "mappo[preset=paper]"),
    (MAPPO, {"preset": "paper", "baseline": "mean"}, "mappo[baseline=mean,preset=paper]"),
    (MAPPO, {"preset": "paper", "baseline": "critic"}, "mappo[preset=paper]"),
    (MAPPO, {"lr": 1e-3, "threads": 2}, "mappo[baseline=stagewise,lr=0.001]"),
    (MAPPO, {"preset": "paper", "baseline": "greedy"}, "mappo[baseline=greedy,preset=paper]"),
    (IPPO, {}, "ippo"), (IPPO, {"baseline": "critic"}, "ippo"),
    (HAPPO, {}, "happo"), (HAPPO, {"baseline": "mean"}, "happo[baseline=mean]"),
])
def test_variant_label_names_the_resolved_baseline(solver, cfg, label):
    s = solver(cfg)
    assert s.variant == label
    name, settings = parse_variant(label)  # a sweep entry of that label builds the same solver
    assert registry.load("solver", name)(settings).config.hyper() == s.config.hyper()


def test_default_mappo_builds_critics_and_ippo_refuses_the_mean_baseline():
    hyper = MAPPO({}).config.hyper()
    assert (hyper.baseline, hyper.gae_lambda, hyper.algorithm) == ("stagewise", 0.0, "mappo")
    assert MAPPO({"baseline": "mean"}).config.hyper().gae_lambda == 0.0
    critic = MAPPO({"baseline": "critic"}).config.hyper()  # the baseline's own preset values come with it
    assert (critic.gae_lambda, critic.critic_hidden, critic.critic_action) == (0.5, (128, 128), False)
    assert MAPPO({"baseline": "critic", "gae_lambda": 0.9}).config.hyper().gae_lambda == 0.9  # a key still wins
    assert IPPO({}).config.hyper().algorithm == "ippo" and HAPPO({}).config.hyper().baseline == "critic"
    with pytest.raises(UserError, match="solver ippo config baseline='mean'"):
        IPPO({"baseline": "mean"})


# ------------------------------------------------------------------------------------- diagnostics
def test_explained_variance_formula():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # Var(target) = 1.25; residual (0, 0, 0, -1): Var = 0.25 - 0.0625 = 0.1875 -> 1 - 0.1875 / 1.25 = 0.85
    assert explained_variance(target, torch.tensor([1.0, 2.0, 3.0, 5.0])) == pytest.approx(0.85)
    assert explained_variance(target, target) == 1.0
    assert explained_variance(target, torch.full((4,), 2.5)) == pytest.approx(0.0)  # the mean: 0
    assert explained_variance(target, -target) == pytest.approx(1 - 4.0)  # Var(2 t) = 4 Var(t): worse than the mean
    assert np.isnan(explained_variance(torch.ones(4), target))


def toy_rollout(model: ActorCritic, T: int = 4, B: int = 3, seed: int = 0) -> Rollout:
    """A rollout of random observations, states, rewards and the model's own sampled actions."""
    from isacbench.solvers.mappo import heads as H
    g = torch.Generator().manual_seed(seed)
    roles = {}
    with torch.no_grad():
        for r, spec in model.roles.items():
            obs = torch.randn(T, B, spec.n_agents, spec.obs_dim, generator=g)
            params = model.actors[r](obs)
            a = {h.name: H.sample(h, params[h.name]) for h in spec.heads}
            logp = torch.cat([H.log_prob(h, params[h.name], a[h.name]) for h in spec.heads], -1)
            roles[r] = {"obs": obs, "state": torch.randn(T, B, 6, generator=g), "actions": a, "log_prob": logp}
    dones = torch.zeros(T, B, dtype=torch.bool)
    dones[-1] = True
    return Rollout(roles=roles, rewards=torch.randn(T, B, generator=g), dones=dones, metrics={}, episode_return=0.0,
                   frames=T * B)


ROLES = {"a": RoleSpec("a", 1, 3, (Head("bits", "bernoulli", 2),)),
         "b": RoleSpec("b", 2, 3, (Head("pick", "categorical", 1, classes=3),)),
         "c": RoleSpec("c", 1, 2, (Head("bits", "bernoulli", 1),))}
SMALL = dict(actor_hidden=(8,), critic_hidden=(8,), epochs=2, minibatches=1, lr=0.05, baseline="critic")


def model_of(solver, **over) -> tuple[ActorCritic, object]:
    hyper = solver({**SMALL, **over}).config.hyper()
    torch.manual_seed(0)
    return ActorCritic(ROLES, 5, hyper), hyper


def test_explained_variance_is_logged_per_critic_before_the_update():
    model, hyper = model_of(MAPPO)
    ro = toy_rollout(model)
    r = ro.roles["b"]
    with torch.no_grad():
        values = model.value_norm["b"].denormalize(model.value("b", r["obs"], r["state"], r["actions"]))
    from isacbench.solvers.mappo.buffer import gae
    returns = gae(ro.rewards, values, ro.dones, hyper.gamma, hyper.gae_lambda) + values
    resid = returns - values
    want = 1 - resid.var(unbiased=False) / returns.var(unbiased=False)
    data = prepare(model, ro, hyper)
    assert data["b"].explained_variance == pytest.approx(float(want), rel=1e-5)
    opt = torch.optim.Adam(model.parameters(), lr=hyper.lr)
    stats = update(model, opt, data, hyper, clip=0.2, ent_coef=0.01)
    assert stats["B/explained_variance"] == data["b"].explained_variance
    for role in ("A", "B", "C"):
        for k in ("entropy", "approx_kl", "clip_fraction", "explained_variance", "grad_norm_actor",
                  "grad_norm_critic", "critic_loss", "actor_loss"):
            assert np.isfinite(stats[f"{role}/{k}"]), (role, k)
        assert stats[f"{role}/grad_norm_actor"] > 0
    # the summed names other code reads (curves, leaderboards) stay the totals of the roles
    assert stats["entropy"] == pytest.approx(sum(stats[f"{r}/entropy"] for r in "ABC"))
    assert stats["approx_kl"] == pytest.approx(sum(stats[f"{r}/approx_kl"] for r in "ABC") / 3)
    assert stats["loss"] == pytest.approx(stats["actor_loss"] + hyper.value_coef * stats["critic_loss"])


# -------------------------------------------------------------------------------------------- ippo
def test_ippo_critic_sees_only_its_own_observation():
    model, hyper = model_of(IPPO)
    critic = model.critics["b"]
    assert set(model.critics) == set(ROLES)
    assert critic.trunk[0].weight.shape == (2, 8, 3 + 1)  # per agent: its observation and the time left
    obs = torch.randn(5, 2, 3, requires_grad=True)
    state = torch.randn(5, 6, requires_grad=True)
    v = model.value("b", obs, state, {})
    assert v.shape == (5, 2)
    d0 = torch.autograd.grad(v[:, 0].sum(), (obs, state))
    assert d0[0][:, 1].abs().max() == 0 and d0[0][:, 0].abs().max() > 0  # agent 0: not agent 1's observation
    assert d0[1][:, :-1].abs().max() == 0 and d0[1][:, -1].abs().max() > 0  # no global state, only the time left
    other = obs.detach().clone()
    other[:, 1] += 5.0
    again = model.value("b", other, state, {})
    assert torch.equal(again[:, 0], v[:, 0]) and not torch.allclose(again[:, 1], v[:, 1])
    # independent parameters per agent: the same observation gives each agent its own value
    same = obs.detach()[:, :1].expand(5, 2, 3)
    w = model.value("b", same, state, {})
    assert not torch.allclose(w[:, 0], w[:, 1])


# ------------------------------------------------------------------------------------------- happo
def hand_ratio(model: ActorCritic, role: str, d: RoleData, old: torch.Tensor) -> torch.Tensor:
    """pi_new / pi_old of the role's whole action per sample, from the actor's logits by hand:
    Bernoulli p = sigmoid(x) (bit 1) or 1 - p, categorical softmax(x)[class]; times over agents and components."""
    with torch.no_grad():
        (head,) = ROLES[role].heads
        x = model.actors[role](d.obs)[head.name]
        a = d.actions[head.name]
        if head.kind == "bernoulli":
            p = torch.where(a > 0.5, torch.sigmoid(x), 1 - torch.sigmoid(x))  # (N, n, size)
        else:
            p = torch.softmax(x.view(*x.shape[:-1], head.size, head.classes), -1).gather(-1, a.long().unsqueeze(-1))
        return p.flatten(1).prod(-1) / old.flatten(1).exp().prod(-1)


def test_happo_factor_is_the_product_of_the_earlier_roles_new_old_ratios():
    model, hyper = model_of(HAPPO)
    ro = toy_rollout(model, seed=3)
    data = prepare(model, ro, hyper)
    first = next(iter(ROLES))
    assert data[first].critic == "joint" and all(data[r].critic is None for r in ROLES if r != first)
    adv = data["a"].advantage
    assert all(torch.equal(data[r].advantage, adv[:, :1].expand(-1, ROLES[r].n_agents)) for r in ROLES)  # shared A
    old = {r: data[r].log_prob.clone() for r in ROLES}
    opt = torch.optim.Adam(model.parameters(), lr=hyper.lr)
    torch.manual_seed(11)
    order = [list(ROLES)[i] for i in torch.randperm(3).tolist()]
    torch.manual_seed(11)
    stats = update(model, opt, data, hyper, clip=0.2, ent_coef=0.0)
    # every role's actor is final once its turn is over (later steps touch other parameters only)
    ratios = [hand_ratio(model, r, data[r], old[r]) for r in order]
    assert torch.allclose(ratios[0], joint_log_ratio(model, order[0], data[order[0]]).exp(), rtol=1e-5)
    assert ((ratios[0] > 0.5) & (ratios[0] < 2)).all()  # inside the truncation [1/b, b] = [1/2, 2]
    assert not torch.allclose(ratios[0], torch.ones_like(ratios[0]))  # the update moved the first role
    assert stats[f"{order[0].upper()}/happo_factor"] == 1.0
    assert stats[f"{order[1].upper()}/happo_factor"] == pytest.approx(float(ratios[0].mean()), rel=1e-5)
    both = ratios[0] * ratios[1]
    assert (both > 2).any()  # some samples are truncated: M = min(max(product, 1/2), 2)
    assert stats[f"{order[2].upper()}/happo_factor"] == pytest.approx(float(both.clamp(0.5, 2).mean()), rel=1e-5)
    assert np.isfinite(stats["JOINT/explained_variance"]) and stats["JOINT/grad_norm_critic"] > 0


def test_happo_factor_is_truncated_in_log_space_and_stays_finite():
    """M = exp(clamp(sum of the earlier roles' log ratios, +-log b)): with old log-probabilities below
    the new ones by 3 per agent action (a joint ratio near e^3 = 20 per earlier role) the later roles
    are updated with M = b = 2 exactly, and the weights stay finite."""
    model, hyper = model_of(HAPPO)
    data = prepare(model, toy_rollout(model, seed=3), hyper)
    for d in data.values():
        d.log_prob -= 3.0 / d.log_prob[0].numel()  # every role's joint log ratio is +3 before any step
    torch.manual_seed(5)
    order = [list(ROLES)[i] for i in torch.randperm(3).tolist()]
    torch.manual_seed(5)
    stats = update(model, torch.optim.Adam(model.parameters(), lr=hyper.lr), data, hyper, clip=0.2, ent_coef=0.0)
    assert stats[f"{order[0].upper()}/happo_factor"] == 1.0
    assert stats[f"{order[1].upper()}/happo_factor"] == pytest.approx(hyper.factor_bound, rel=1e-6)
    assert stats[f"{order[2].upper()}/happo_factor"] == pytest.approx(hyper.factor_bound, rel=1e-6)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_happo_update_order_comes_from_the_seeded_generator():
    """The permutation is torch's (seeded per update by the solver): the role drawn first is updated
    with M = 1, the others with the earlier roles' ratios; the same seed gives the same weights."""
    def run(seed):
        model, hyper = model_of(HAPPO)
        data = prepare(model, toy_rollout(model, seed=3), hyper)
        torch.manual_seed(seed)
        stats = update(model, torch.optim.Adam(model.parameters(), lr=hyper.lr), data, hyper, 0.2, 0.0)
        return stats, torch.cat([p.detach().flatten() for p in model.parameters()])
    firsts = set()
    for seed in range(4):
        torch.manual_seed(seed)
        first = list(ROLES)[int(torch.randperm(3)[0])].upper()
        stats, weights = run(seed)
        assert [r for r in "ABC" if stats[f"{r}/happo_factor"] == 1.0] == [first]
        firsts.add(first)
    assert len(firsts) > 1  # the order changes with the seed
    assert torch.equal(run(0)[1], run(0)[1])


# ------------------------------------------------------------------------ training and checkpoints
@pytest.mark.parametrize("solver", [IPPO, HAPPO])
def test_ippo_and_happo_train_on_the_staged_toy_and_log_per_role_names(tmp_path, solver):
    s = solver({"num_envs": 8, "actor_hidden": (16,), "critic_hidden": (16,), "epochs": 2, "minibatches": 2})
    s.train(ToyEnv, Budget(frames=2 * 8 * ToyEnv.frames_per_episode), np.random.default_rng(0),
            Reporter(artifact_dir=str(tmp_path)))
    last = s.history[-1]
    critic = "JOINT" if solver is HAPPO else "SCOUT"
    assert {"SCOUT/entropy", "LEADER/approx_kl", "LEADER/clip_fraction", f"{critic}/explained_variance",
            "SCOUT/grad_norm_actor", f"{critic}/grad_norm_critic", "critic_loss", "loss"} <= set(last)
    assert (tmp_path / "mappo" / "checkpoint.safetensors").is_file()


def test_a_checkpoint_is_refused_by_another_algorithm_with_one_clear_error(tmp_path):
    budget = Budget(frames=8 * ToyEnv.frames_per_episode)
    cfg = {"num_envs": 8, "actor_hidden": (16,), "critic_hidden": (16,), "epochs": 1, "minibatches": 1}
    HAPPO(cfg).train(ToyEnv, budget, np.random.default_rng(0), Reporter(artifact_dir=str(tmp_path)))
    for other in (MAPPO({**cfg, "baseline": "critic", "resume": str(tmp_path)}),
                  IPPO({**cfg, "resume": str(tmp_path)})):
        with pytest.raises(UserError) as e:
            other.train(ToyEnv, budget, np.random.default_rng(0), Reporter())
        assert str(e.value) == (f"solver {other.name} resume={str(tmp_path)!r}: the checkpoint was trained by happo, "
                                f"not {other.name}; resume it with --solver happo")
    damaged = tmp_path / "mappo" / "checkpoint.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-8])
    missing = str(tmp_path / "nowhere")
    for source, needle in ((str(tmp_path), "the checkpoint checkpoint.safetensors is damaged"), (missing, "not a checkpoint file")):
        with pytest.raises(UserError, match=f"^solver ippo resume={source!r}: {needle}"):
            IPPO({**cfg, "resume": source}).train(ToyEnv, budget, np.random.default_rng(0), Reporter())


def test_happo_runs_end_to_end_on_ent_usr_from_the_cli(workdir):
    """One rollout (2 environments x 20 frames) with tiny nets, recorded; then `mappo` refuses to
    resume the happo run's checkpoint, before anything is recorded."""
    pytest.importorskip("isacbench.tasks.ent_usr")
    small = ["run", "--task", "ent-usr", "-S", "num_envs=2", "-S", "actor_hidden=[16]", "-S", "critic_hidden=[16]",
             "--budget-frames", "40", "--json"]
    p = cli([*small, "--solver", "happo"], workdir)
    assert p.returncode == 0, p.stderr
    (result,) = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert result["feasible"] and result["objective"] > 0 and result["solver"] == "happo"
    refused = cli([*small, "--solver", "mappo", "-S", "baseline=critic", "-S", f"resume={result['run_id']}"], workdir)
    lines = [line for line in refused.stderr.strip().splitlines() if not line.startswith("Downloading artifacts")]
    assert refused.returncode == 2 and lines == [  # (MLflow's download bar aside) one line
        f"error: solver mappo resume={result['run_id']!r}: the checkpoint was trained by happo, not mappo; resume it "
        f"with --solver happo"]
