"""A tiny cooperative staged environment with the isacbench.multiagent contract, for MAPPO tests.

Two roles in two stages. Each frame draws a fresh context per environment:
* "scout" (2 agents, stage 1) sees its own 2 target bits and a target split w_i in the simplex;
  heads: `bits` (bernoulli, 2) and `share` (continuous, 2, in [0, 2], projected onto the simplex).
* "leader" (1 agent, stage 2) sees a class c (one-hot) and the number of 1-bits the scouts
  chose; head `pick` (categorical, 3 classes) should equal (c + #1-bits) mod 3, so it must
  read the earlier stage's actions from its observation.
Reward = bit accuracy + 1[pick correct] - mean L1 split error, in [-2, 2]; the uniform-random
policy scores about 0.5 + 1/3 - 0.5.
`act` rejects any action outside its head's domain, so every test that plays it checks constraints.
"""
from __future__ import annotations

import numpy as np
import pytest

from isacbench.multiagent import Head, MultiAgentEnv, RoleSpec


class ToyEnv(MultiAgentEnv):
    frames_per_episode = 4
    stages = (("scout",), ("leader",))
    roles = {"scout": RoleSpec("scout", 2, 4, (Head("bits", "bernoulli", 2), Head("share", "continuous", 2, low=0.0,
                                                                                   high=2.0))),
             "leader": RoleSpec("leader", 1, 4, (Head("pick", "categorical", 1, classes=3),))}
    state_dim = 4 + 4 + 3 + 4

    def __init__(self, num_envs: int, seed: int = 0):
        self.num_envs = num_envs
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.frame = 0
        self._draw()

    def _draw(self) -> None:
        B = self.num_envs
        self.bits = self.rng.integers(0, 2, (B, 2, 2))
        self.w = self.rng.dirichlet(np.ones(2), (B, 2))
        self.c = self.rng.integers(0, 3, B)
        self.stage = 0
        self.chosen = np.zeros((B, 2, 2))
        self.split = np.zeros((B, 2, 2))
        self.pick = None

    def observe(self, role: str) -> np.ndarray:
        assert role in self.stages[self.stage], f"{role} observed outside its stage"
        if role == "scout":
            return np.concatenate([self.bits, self.w], axis=-1).astype(float)
        ones = self.chosen.sum(axis=(1, 2))
        return np.concatenate([np.eye(3)[self.c], ones[:, None]], axis=-1)[:, None, :]

    def state(self) -> np.ndarray:
        return np.concatenate([self.bits.reshape(-1, 4), self.w.reshape(-1, 4), np.eye(3)[self.c],
                               self.chosen.reshape(-1, 4)], axis=-1)

    def act(self, actions: dict) -> None:
        assert set(actions) == set(self.stages[self.stage])
        for role, acts in actions.items():
            spec = self.roles[role]
            assert set(acts) == {h.name for h in spec.heads}
            for h in spec.heads:
                a = np.asarray(acts[h.name])
                assert a.shape == (self.num_envs, spec.n_agents, h.size), (h.name, a.shape)
                assert np.all(np.isfinite(a))
                if h.kind == "bernoulli":
                    assert np.all((a == 0) | (a == 1)) and np.issubdtype(a.dtype, np.integer)
                elif h.kind == "categorical":
                    assert np.all((a >= 0) & (a < h.classes)) and np.issubdtype(a.dtype, np.integer)
                else:
                    assert np.all((a >= h.low) & (a <= h.high))
        if "scout" in actions:
            self.chosen = actions["scout"]["bits"].astype(float)
            raw = actions["scout"]["share"] + 1e-9
            self.split = raw / raw.sum(-1, keepdims=True)  # projection onto the simplex
        if "leader" in actions:
            self.pick = actions["leader"]["pick"][:, 0, 0]
        self.stage += 1

    def end_frame(self):
        assert self.stage == len(self.stages)
        acc = (self.chosen == self.bits).mean(axis=(1, 2))
        target = (self.c + self.chosen.sum(axis=(1, 2)).astype(int)) % 3
        hit = (self.pick == target).astype(float)
        err = np.abs(self.split - self.w).sum(-1).mean(-1)
        reward = acc + hit - err
        self.frame += 1
        done = np.full(self.num_envs, self.frame >= self.frames_per_episode)
        if not done[0]:
            self._draw()
        return reward, done, {"score": reward, "accuracy": acc, "hit": hit}


def play(env: ToyEnv, act, seeds) -> float:
    """Mean reward per frame of `act(role, obs)` over whole episodes on `seeds`."""
    total, n = 0.0, 0
    for s in seeds:
        env.reset(seed=s)
        while True:
            for stage in env.stages:
                env.act({r: act(r, env.observe(r)) for r in stage})
            r, d, _ = env.end_frame()
            total, n = total + r.sum(), n + r.size
            if d.all():
                break
    return total / n


def random_act(rng: np.random.Generator):
    def act(role, obs):
        return ToyEnv.roles[role].sample(obs.shape[0], rng)
    return act


def test_toy_env_random_policy_scores_its_expected_value():
    # E[acc] = 1/2, E[hit] = 1/3; E|split - w|_1 for U(0,2)^2 normalized vs Dirichlet(1,1): Monte Carlo below.
    rng = np.random.default_rng(1)
    u = rng.uniform(0, 2, (200_000, 2))
    x = u[:, 0] / u.sum(1)
    w = rng.uniform(0, 1, 200_000)
    expected = 0.5 + 1 / 3 - np.mean(2 * np.abs(x - w))
    got = play(ToyEnv(64), random_act(np.random.default_rng(2)), seeds=range(20))  # 5120 frames
    assert got == pytest.approx(expected, abs=4 * 0.6 / np.sqrt(5120))


def test_toy_env_oracle_scores_two():
    env = ToyEnv(8)

    def oracle(role, obs):
        if role == "scout":
            return {"bits": obs[..., :2].astype(int), "share": 2 * obs[..., 2:]}
        c = obs[:, 0, :3].argmax(-1)
        return {"pick": ((c + obs[:, 0, 3].astype(int)) % 3)[:, None, None]}
    assert play(env, oracle, seeds=[0, 1]) == pytest.approx(2.0, abs=1e-6)
