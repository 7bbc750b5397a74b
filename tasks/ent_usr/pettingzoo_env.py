"""PettingZoo ParallelEnv view of one ENT environment (batch 1), for interoperability.

Agents: lcp_m, lpb_m (m < M), fg, fpb_r (r < R), of the roles that act under the task's topology
setting (`env.roles`). Every `step` plays one stage of the frame (`env.stages`; under ent: LCP; then
LPB and FG; then FPB): all live agents send an action, only the current stage's are used. An
agent's observation is its role's observation (zeros while its stage has not come yet) followed by
a one-hot of the stage. The frame reward (eq. 75) goes to every agent on the step
that ends a frame; episodes are truncated after `frames_per_episode` frames."""
from __future__ import annotations

import functools

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from .env import EntUsrEnv


class EntUsrParallelEnv(ParallelEnv):
    metadata = {"name": "ent_usr_v0", "render_modes": []}

    def __init__(self, task, seed: int | None = None, render_mode: None = None):
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r}: this environment has no rendering (render_modes: [])")
        self.render_mode = render_mode
        self.task = task
        self.env: EntUsrEnv = task.make_env(1, seed)
        self.stages = self.env.stages
        self.stage_of = {role: i for i, stage in enumerate(self.stages) for role in stage}
        self.members = {}  # agent -> (role, index)
        for role, spec in self.env.roles.items():
            for i in range(spec.n_agents):
                self.members[role if spec.n_agents == 1 and role == "fg" else f"{role}_{i}"] = (role, i)
        self.possible_agents = list(self.members)
        self.agents: list[str] = []
        self._obs_spaces = {a: spaces.Box(-np.inf, np.inf, (self.env.roles[r].obs_dim + len(self.stages),),
                                          np.float32) for a, (r, _) in self.members.items()}
        self._act_spaces = {a: self._action_space(r) for a, (r, _) in self.members.items()}

    def _action_space(self, role: str) -> spaces.Dict:
        heads = {}
        for h in self.env.roles[role].heads:
            if h.kind == "bernoulli":
                heads[h.name] = spaces.MultiBinary(h.size)
            elif h.kind == "categorical":
                heads[h.name] = spaces.MultiDiscrete(np.full(h.size, h.classes))
            else:
                heads[h.name] = spaces.Box(h.low, h.high, (h.size,), np.float32)
        return spaces.Dict(heads)

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent):
        return self._obs_spaces[agent]

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent):
        return self._act_spaces[agent]

    def _observations(self) -> dict:
        n = len(self.stages)
        stage = np.eye(n, dtype=np.float32)[min(self.env.played, n - 1)]
        cache, out = {}, {}
        for agent, (role, i) in self.members.items():
            if self.stage_of[role] <= self.env.played:
                if role not in cache:
                    cache[role] = self.env.observe(role)[0]
                ob = cache[role][i]
            else:
                ob = np.zeros(self.env.roles[role].obs_dim, np.float32)
            out[agent] = np.concatenate([ob, stage]).astype(np.float32)
        return out

    def reset(self, seed=None, options=None):
        self.env.reset(seed)
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions):
        roles = self.stages[self.env.played]
        batch = {}
        for role in roles:
            spec = self.env.roles[role]
            names = [a for a, (r, _) in self.members.items() if r == role]
            batch[role] = {h.name: np.stack([np.asarray(actions[a][h.name]) for a in names])[None]
                           for h in spec.heads}
        self.env.act(batch)
        rewards = dict.fromkeys(self.agents, 0.0)
        truncated = dict.fromkeys(self.agents, False)
        infos = {a: {} for a in self.agents}
        if self.env.played == len(self.stages):
            reward, done, metrics = self.env.end_frame()
            rewards = dict.fromkeys(self.agents, float(reward[0]))
            infos = {a: {k: float(v[0]) for k, v in metrics.items()} for a in self.agents}
            if done[0]:
                truncated = dict.fromkeys(self.agents, True)
        obs = self._observations()
        terminated = dict.fromkeys(self.agents, False)
        if all(truncated.values()) and truncated:
            self.agents = []
        return obs, rewards, terminated, truncated, infos
