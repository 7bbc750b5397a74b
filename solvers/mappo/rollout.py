"""Collect one rollout: whole episodes in all B environments, stage by stage (isacbench.multiagent)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from isacbench.multiagent import MultiAgentEnv

from . import heads as H
from .buffer import RoleRollout
from .policy import ActorCritic, env_actions, pick_actions, to_numpy


@dataclass
class Rollout:
    roles: dict[str, dict]  # role -> stacked RoleRollout tensors, leading (T, B)
    rewards: torch.Tensor  # (T, B) shared reward r_n (eq. 75)
    dones: torch.Tensor  # (T, B)
    metrics: dict[str, float]  # per-frame environment metrics, averaged over frames and environments
    episode_return: float  # mean undiscounted return per episode
    frames: int  # T * B
    # (T, B, S) mode continuations G_s: the frame's reward with the stages before s played as sampled and stage s
    # and after at the policy's mode (`mode_branch`); baseline=greedy: S = 1 (G_0, every stage at the mode),
    # stagewise: S = the frame's stages. None for the other baselines.
    mode_rewards: torch.Tensor | None = None
    role_stage: dict[str, int] | None = None  # role -> index of its stage in env.stages


@torch.no_grad()
def collect(env: MultiAgentEnv, model: ActorCritic, seed: int, device: torch.device,
            baseline: str = "mean") -> Rollout:
    """Play one episode in every environment with the current stochastic policy.

    Observations and states are normalized with the running statistics frozen for the
    rollout (stored normalized, so old and new log-probabilities use the same inputs); the
    statistics are updated afterwards. The state stored for a role is env.state() at the
    moment its stage acts (it reflects the earlier stages' actions), followed by the fraction of the
    episode's frames still to play (1 - n / N_T): the value of a terminal episode depends on it, and
    env.state() does not contain the frame index (see docs/solvers/mappo.md, "time-aware critic").
    baseline="greedy": also record every frame's reward of the policy's mode on the same frame (G_0, the
    self-critical baseline of Rennie et al. 2017, CVPR); "stagewise": before every stage s, the reward of playing
    it and the later stages at the mode, the earlier ones as sampled (G_s; `Rollout.mode_rewards`). Each G_s is
    a `mode_branch` taken before stage s; a frame's branches are scored together at its end (`frame_rewards`)."""
    env.reset(seed=seed)
    store = {r: RoleRollout() for r in model.roles}
    rewards, dones, metrics, mode_rewards = [], [], {}, []
    continued = {"greedy": 1, "stagewise": len(env.stages)}.get(baseline, 0)  # stages with a mode continuation
    raw_obs = {r: [] for r in model.roles}
    raw_state = []
    horizon = max(1, env.frames_per_episode)
    limit = 10 * horizon
    while True:
        remaining = torch.full((env.num_envs, 1), 1.0 - len(rewards) / horizon, device=device)
        frame_modes = []
        for k, stage in enumerate(env.stages):
            o_raw = {role: torch.as_tensor(env.observe(role), dtype=torch.float32, device=device) for role in stage}
            o = {role: model.obs_norm[role](o_raw[role]) for role in stage}
            params = {role: model.actors[role](o[role]) for role in stage}  # the continuation's mode reuses them
            if k < continued:
                frame_modes.append(mode_branch(env, model, device, k, params))
            s_raw = torch.as_tensor(env.state(), dtype=torch.float32, device=device)
            s = torch.cat([model.state_norm(s_raw), remaining], -1)  # critic input: state | time left
            raw_state.append(s_raw)
            acts = {}
            for role in stage:
                heads = env.roles[role].heads
                a = {h.name: H.sample(h, params[role][h.name]) for h in heads}
                logp = torch.cat([H.log_prob(h, params[role][h.name], a[h.name]) for h in heads], -1)
                store[role].add(o[role], s, a, logp)
                raw_obs[role].append(o_raw[role])
                acts[role] = {h.name: to_numpy(h, a[h.name]) for h in heads}
            env.act(acts)
        if continued:  # the continuations scored together (`MultiAgentEnv.frame_rewards`)
            mode_rewards.append(torch.as_tensor(np.stack(env.frame_rewards(frame_modes), -1), dtype=torch.float32,
                                                device=device))
        r, d, m = env.end_frame()
        rewards.append(torch.as_tensor(np.asarray(r), dtype=torch.float32, device=device))
        dones.append(torch.as_tensor(np.asarray(d), dtype=torch.bool, device=device))
        for k, v in m.items():
            metrics.setdefault(k, []).append(float(np.mean(v)))
        if dones[-1].all():
            break
        if dones[-1].any():
            raise RuntimeError("mappo needs episodes that end together in all environments (done is mixed)")
        if len(rewards) >= limit:
            raise RuntimeError(f"episode did not end within {limit} frames")
    for role in model.roles:
        model.obs_norm[role].update(torch.cat(raw_obs[role]))
    model.state_norm.update(torch.stack(raw_state))
    rew = torch.stack(rewards)
    return Rollout(roles={r: store[r].stacked() for r in model.roles}, rewards=rew, dones=torch.stack(dones),
                   metrics={k: float(np.mean(v)) for k, v in metrics.items()},
                   episode_return=float(rew.sum(0).mean()), frames=rew.numel(),
                   mode_rewards=torch.stack(mode_rewards) if continued else None,
                   role_stage={r: k for k, st in enumerate(env.stages) for r in st})


def mode_branch(env: MultiAgentEnv, model: ActorCritic, device: torch.device, stage: int = 0,
                params: dict[str, dict[str, torch.Tensor]] | None = None) -> MultiAgentEnv:
    """A branch of `env` (`MultiAgentEnv.branch`; env stands before stage `stage`, 0: the frame's start) on which
    the agents of `env.stages[stage:]` have played their policy's mode (the action of evaluation): the same
    channels, targets, history and earlier stages' actions, and none of `env`'s random draws. `params`: the
    actors' outputs of that stage's roles on `env`'s observations, when the caller has them (`collect` samples
    from the same outputs), else computed here. Its `frame_reward` is the mode continuation G_stage."""
    twin = env.branch()
    for k, roles in enumerate(twin.stages[stage:]):
        if k == 0 and params is not None:
            twin.act({role: pick_actions(model, role, params[role], H.mode) for role in roles})
        else:
            twin.act({role: env_actions(model, role, twin.observe(role), H.mode, device) for role in roles})
    return twin

