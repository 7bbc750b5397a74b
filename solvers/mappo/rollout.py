"""Collect one rollout: whole episodes in all B environments, stage by stage (isacbench.multiagent)."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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
    # and after at the policy's mode (`play_mode`); baseline=greedy: S = 1 (G_0, every stage at the mode),
    # stagewise: S = the frame's stages. None for the other baselines.
    mode_rewards: torch.Tensor | None = None
    role_stage: dict[str, int] | None = None  # role -> index of its stage in env.stages


@torch.no_grad()
def collect(env: MultiAgentEnv, model: ActorCritic, seed: int, device: torch.device,
            baseline: str = "mean", overlap: bool = False) -> Rollout:
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
    a branch taken before stage s and played at the mode (`play_mode`); a frame's branches are scored together
    (`frame_rewards`), by `Continuations`: on a worker thread while the rollout goes on with overlap=True (the
    same values: a branch is independent of the env it came from)."""
    env.reset(seed=seed)
    store = {r: RoleRollout() for r in model.roles}
    rewards, dones, metrics = [], [], {}
    continued = {"greedy": 1, "stagewise": len(env.stages)}.get(baseline, 0)  # stages with a mode continuation
    raw_obs = {r: [] for r in model.roles}
    raw_state = []
    horizon = max(1, env.frames_per_episode)
    limit = 10 * horizon
    with Continuations(model, device, overlap) as continuations:
        while True:
            remaining = torch.full((env.num_envs, 1), 1.0 - len(rewards) / horizon, device=device)
            branches = []
            for k, stage in enumerate(env.stages):
                o_raw = {role: torch.as_tensor(env.observe(role), dtype=torch.float32, device=device)
                         for role in stage}
                o = {role: model.obs_norm[role](o_raw[role]) for role in stage}
                params = {role: model.actors[role](o[role]) for role in stage}  # the continuation's mode reuses them
                if k < continued:
                    branches.append((env.branch(), k, params))
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
            if continued:
                continuations.add(branches)
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
        mode_rewards = continuations.rewards() if continued else None  # before the normalizers move
    for role in model.roles:
        model.obs_norm[role].update(torch.cat(raw_obs[role]))
    model.state_norm.update(torch.stack(raw_state))
    rew = torch.stack(rewards)
    return Rollout(roles={r: store[r].stacked() for r in model.roles}, rewards=rew, dones=torch.stack(dones),
                   metrics={k: float(np.mean(v)) for k, v in metrics.items()},
                   episode_return=float(rew.sum(0).mean()), frames=rew.numel(), mode_rewards=mode_rewards,
                   role_stage={r: k for k, st in enumerate(env.stages) for r in st})


class Continuations:
    """The mode continuations of a rollout's frames: each frame's branches (taken before its stages) played at
    the policy's mode (`play_mode`) and scored together (`MultiAgentEnv.frame_rewards`, called on the first
    branch: every branch stands on the frame). overlap=True does that on one worker thread while the rollout goes
    on (the actors are only read and the normalizers move after the rollout; numpy and torch release the GIL in
    their kernels), else at once. The values are the same either way: a branch is independent of its env."""

    def __init__(self, model: ActorCritic, device: torch.device, overlap: bool):
        self.model, self.device = model, device
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="continuations") if overlap else None
        self.frames: list[Future | list[np.ndarray]] = []

    def __enter__(self) -> "Continuations":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def add(self, branches: list[tuple[MultiAgentEnv, int, dict]]) -> None:
        """One frame's branches: (branch, the stage it stands before, that stage's actor outputs)."""
        self.frames.append(self._score(branches) if self.pool is None else self.pool.submit(self._score, branches))

    @torch.no_grad()  # grad mode is per thread
    def _score(self, branches: list[tuple[MultiAgentEnv, int, dict]]) -> list[np.ndarray]:
        twins = [play_mode(twin, self.model, self.device, stage, params) for twin, stage, params in branches]
        return twins[0].frame_rewards(twins)

    def rewards(self) -> torch.Tensor:
        """(T, B, S) G_s of every frame, in order (waits for the worker)."""
        scored = [f.result() if isinstance(f, Future) else f for f in self.frames]
        return torch.stack([torch.as_tensor(np.stack(r, -1), dtype=torch.float32, device=self.device)
                            for r in scored])


def play_mode(twin: MultiAgentEnv, model: ActorCritic, device: torch.device, stage: int = 0,
              params: dict[str, dict[str, torch.Tensor]] | None = None) -> MultiAgentEnv:
    """`twin` (standing before stage `stage`) with the agents of `twin.stages[stage:]` played at their policy's
    mode (the action of evaluation): the same channels, targets, history and earlier stages' actions as the env
    it was branched from, and none of its random draws. `params`: the actors' outputs of that stage's roles on
    the twin's observations, when the caller has them (`collect` samples from the same outputs), else computed
    here. Returns twin."""
    for k, roles in enumerate(twin.stages[stage:]):
        if k == 0 and params is not None:
            twin.act({role: pick_actions(model, role, params[role], H.mode) for role in roles})
        else:
            twin.act({role: env_actions(model, role, twin.observe(role), H.mode, device) for role in roles})
    return twin
