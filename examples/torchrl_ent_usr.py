"""Train on the ent-usr task with TorchRL, through its PettingZoo environment, unchanged.

    pip install torchrl          # 0.14 with torch 2.13: pulls tensordict, not another torch
    python examples/torchrl_ent_usr.py --steps 300

`EntUsrParallelEnv` (isacbench.tasks.ent_usr.pettingzoo_env) is wrapped by TorchRL's
`PettingZooWrapper`, which groups the agents by name (lcp_*, lpb_*, fg, fpb_*) and turns each
agent's Dict action space into a composite spec of Binary / Categorical / BoundedContinuous
heads. A small policy per group (shared by the group's agents) samples every head: Bernoulli for
Binary, Categorical for Categorical, a Beta scaled to [low, high] for BoundedContinuous.
Training is REINFORCE on the shared frame reward (eq. 75): `env.rollout` collects a batch of
whole episodes, the loss weighs each step's log-probability by the reward to go minus its batch
mean. Every agent sends an action at every step (a PettingZoo ParallelEnv contract); only the
acting stage's are used by the environment, the others only add noise to the gradient.

This is an interoperability example, not a tuned learner: isacbench's own MAPPO (`isacbench run
--task ent-usr --solver mappo`) is the benchmark's MARL baseline. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch import distributions as D
from torch import nn


def head_layout(spec) -> tuple[str, int, dict]:
    """(kind, network outputs per agent, parameters) of one action head's TorchRL spec."""
    kind = type(spec).__name__
    size = spec.shape[-1]
    if kind == "Binary":
        return "binary", size, {}
    if kind == "Categorical":
        return "categorical", size * spec.n, {"classes": spec.n}
    if kind in ("BoundedContinuous", "Bounded"):
        return "bounded", 2 * size, {"low": spec.space.low[0], "high": spec.space.high[0]}
    raise TypeError(f"no distribution for a {kind} action head")


class GroupPolicy(nn.Module):
    """One MLP for all agents of a group: observation -> a distribution per action head."""

    def __init__(self, obs_dim: int, heads: dict, hidden: int = 64):
        super().__init__()
        self.heads = {name: head_layout(spec) for name, spec in heads.items()}
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(),
                                 nn.Linear(hidden, sum(w for _, w, _ in self.heads.values())))

    def distributions(self, obs: torch.Tensor) -> dict[str, D.Distribution]:
        out = self.net(obs)
        dists, start = {}, 0
        for name, (kind, width, p) in self.heads.items():
            o, start = out[..., start:start + width], start + width
            if kind == "binary":
                dists[name] = D.Bernoulli(logits=o)
            elif kind == "categorical":
                dists[name] = D.Categorical(logits=o.unflatten(-1, (-1, p["classes"])))
            else:
                a, b = nn.functional.softplus(o).add(1.0).chunk(2, -1)
                dists[name] = D.Beta(a, b)
        return dists

    def sample(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        actions = {}
        for name, d in self.distributions(obs).items():
            kind, _, p = self.heads[name]
            x = d.sample()
            actions[name] = p["low"] + (p["high"] - p["low"]) * x if kind == "bounded" else x
        return actions

    def log_prob(self, obs: torch.Tensor, actions) -> torch.Tensor:
        """Sum of the log-probabilities of all heads of every agent: shape obs.shape[:-2]."""
        total = 0.0
        for name, d in self.distributions(obs).items():
            kind, _, p = self.heads[name]
            a = actions[name].to(torch.float32)
            if kind == "bounded":
                a = ((a - p["low"]) / (p["high"] - p["low"])).clamp(1e-6, 1 - 1e-6)
            elif kind == "categorical":
                a = actions[name].long()
            total = total + d.log_prob(a).flatten(-2).sum(-1)
        return total


def make_env(frames_per_episode: int, seed: int):
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper

    from isacbench.tasks.ent_usr import EntUsrTask
    from isacbench.tasks.ent_usr.pettingzoo_env import EntUsrParallelEnv

    task = EntUsrTask({"frames_per_episode": frames_per_episode})
    return PettingZooWrapper(env=EntUsrParallelEnv(task, seed=seed), categorical_actions=True, use_mask=False,
                             seed=seed)


def train(steps: int, frames_per_episode: int, episodes_per_update: int, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    env = make_env(frames_per_episode, seed)
    policies = nn.ModuleDict({g: GroupPolicy(env.observation_spec[g, "observation"].shape[-1],
                                             dict(env.full_action_spec[g, "action"].items()))
                              for g in env.group_map})
    optimizer = torch.optim.Adam(policies.parameters(), lr=lr)

    @torch.no_grad()
    def act(td):
        for g, policy in policies.items():
            for name, a in policy.sample(td[g, "observation"]).items():
                td[g, "action", name] = a.to(env.full_action_spec[g, "action", name].dtype)
        return td

    probe = env.rollout(10_000, policy=act, break_when_any_done=True)  # one episode
    episode_steps = probe.shape[0]  # one step per stage of every frame, until the episode is truncated
    batch = episode_steps * episodes_per_update
    group = next(iter(env.group_map))
    done_steps, returns, losses, start = episode_steps, [], [], time.perf_counter()
    returns.append(float(probe["next", group, "reward"][..., 0, 0].sum()))
    while done_steps + batch <= steps:
        data = env.rollout(batch, policy=act, auto_reset=True, break_when_any_done=False)
        reward = data["next", group, "reward"][..., 0, 0]  # (T,): shared by all agents
        episodes = reward.view(episodes_per_update, episode_steps)
        to_go = episodes.flip(-1).cumsum(-1).flip(-1).reshape(-1)
        advantage = (to_go - to_go.view(episodes_per_update, episode_steps).mean(0).repeat(episodes_per_update))
        advantage = advantage / (advantage.std() + 1e-8)
        log_prob = sum(policy.log_prob(data[g, "observation"], data[g, "action"]) for g, policy in policies.items())
        loss = -(advantage * log_prob).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done_steps += batch
        losses.append(float(loss.detach()))
        returns.extend(float(r) for r in episodes.sum(-1))
    return {"library": "torchrl", "env_steps": done_steps, "episode_steps": episode_steps, "updates": len(losses),
            "groups": {g: len(a) for g, a in env.group_map.items()}, "episode_return_first": returns[0],
            "episode_return_last": returns[-1], "episode_return_mean": sum(returns) / len(returns),
            "losses": losses, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="environment steps (one per stage of a frame)")
    ap.add_argument("--frames-per-episode", type=int, default=5)
    ap.add_argument("--episodes-per-update", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(json.dumps(train(args.steps, args.frames_per_episode, args.episodes_per_update, args.lr, args.seed)))


if __name__ == "__main__":
    main()
