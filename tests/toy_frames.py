"""A tiny multi-frame, multi-agent task for the core tests (loaded as `toy_frames:ChannelTask`).

N users share C channels for T frames. Every frame each user sees its own channel gains g_i
(Rayleigh fading, redrawn every frame) and picks a channel c_i and a power p_i in [0, 1]; the
shared reward is the sum rate

    sum_i log2(1 + p_i g_{i c_i} / (noise + sum_{j != i, c_j = c_i} p_j g_{j c_i})).

The frame problem is the same decision made centrally with every gain known (genie-aided).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from isacbench.api import (Budget, Evaluation, Integer, LearningSolver, Problem, Real, SequentialTask, Space,
                           TaskConfig)
from isacbench.multiagent import Head, MultiAgentEnv, RoleSpec


def sum_rate(gains: np.ndarray, channel: np.ndarray, power: np.ndarray, noise: float) -> np.ndarray:
    """gains (B, N, C), channel (B, N) ints, power (B, N) -> (B,) sum rate [bit/s/Hz]."""
    b, n, c = gains.shape
    # g[b, i, j] = gains[b, j, c_i]: user j's gain on user i's channel
    g = np.take_along_axis(np.broadcast_to(gains[:, None], (b, n, n, c)),
                           np.broadcast_to(channel[:, :, None, None], (b, n, n, 1)), -1)[..., 0]
    rx = g * power[:, None, :]  # p_j g_{j c_i}
    signal = np.diagonal(rx, axis1=1, axis2=2)
    interference = ((channel[:, :, None] == channel[:, None, :]) * rx).sum(-1) - signal
    return np.log2(1.0 + signal / (noise + interference)).sum(-1)


class ChannelConfig(TaskConfig):
    users: int = Field(3, ge=1, le=16, description="users N")
    channels: int = Field(2, ge=1, le=8, description="channels C")
    frames: int = Field(4, ge=1, le=100, description="frames per episode T")
    noise: float = Field(0.1, gt=0, le=10, description="noise power")
    eval_episodes: int = Field(4, ge=1, le=64, description="fixed evaluation episodes")


class ChannelEnv(MultiAgentEnv):
    stages = (("user",),)

    def __init__(self, cfg: ChannelConfig, num_envs: int, seed: int | None):
        self.cfg, self.num_envs, self.frames_per_episode = cfg, num_envs, cfg.frames
        self.roles = {"user": RoleSpec("user", cfg.users, cfg.channels, (
            Head("channel", "categorical", 1, classes=cfg.channels), Head("power", "continuous", 1)))}
        self.state_dim = cfg.users * cfg.channels
        self.reset(seed)

    def reset(self, seed=None):
        self.rng, self.frame = np.random.default_rng(seed), 0
        self._draw()

    def _draw(self):
        self.gains = self.rng.exponential(size=(self.num_envs, self.cfg.users, self.cfg.channels))
        self.actions = None

    def observe(self, role):
        return self.gains.astype(np.float32)

    def state(self):
        return self.gains.reshape(self.num_envs, -1).astype(np.float32)

    def act(self, actions):
        self.actions = actions["user"]

    def end_frame(self):
        if self.actions is None:
            raise RuntimeError("end_frame() before the users acted")
        channel = np.asarray(self.actions["channel"], np.int64)[..., 0]
        power = np.clip(np.asarray(self.actions["power"], float)[..., 0], 0.0, 1.0)
        reward = sum_rate(self.gains, channel, power, self.cfg.noise)
        self.frame += 1
        self._draw()
        return reward, np.full(self.num_envs, self.frame >= self.cfg.frames), {"sum_rate": reward}


class ChannelFrameProblem(Problem):
    def __init__(self, gains: np.ndarray, noise: float):
        n, c = gains.shape
        self.gains, self.noise = gains, noise
        self.space = Space(tuple(Integer(f"c{i}", 0, c - 1) for i in range(n))
                           + tuple(Real(f"p{i}", 0.0, 1.0) for i in range(n)))

    def arrays(self, x) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.gains)
        return (np.array([[x[f"c{i}"] for i in range(n)]]), np.array([[float(x[f"p{i}"]) for i in range(n)]]))

    def evaluate(self, x):
        channel, power = self.arrays(x)
        rate = float(sum_rate(self.gains[None], channel, power, self.noise)[0])
        return Evaluation(objective=rate, metrics={"sum_rate": rate})


class ChannelTask(SequentialTask):
    name = "toy-channels"
    description = "multi-frame channel and power selection for tests"
    Config = ChannelConfig
    default_budget = Budget(frames=2_000, evaluations=20)
    objective_metric = "sum_rate"

    def make_env(self, num_envs, seed=None):
        return ChannelEnv(self.config, num_envs, seed)

    def evaluation_env(self):
        return self.make_env(self.config.eval_episodes, self.config.instance_seed + 1_000_003)

    def frame_problems(self, env):
        return [ChannelFrameProblem(g, self.config.noise) for g in env.gains]

    def apply_frame_decisions(self, env, problems, decisions):
        channel, power = map(np.concatenate, zip(*(p.arrays(x) for p, x in zip(problems, decisions))))
        env.act({"user": {"channel": channel[..., None], "power": power[..., None]}})


class ArtifactLearner(LearningSolver):
    """Writes `checkpoint.bin` of $TOY_ARTIFACT_MB megabytes (default 1) into the run's artifact folder,
    sleeps $TOY_SLEEP seconds, then plays channel 0 at full power: to kill or interrupt a run while it
    trains or while it is recorded."""
    name = "artifact-learner"

    def train(self, make_env, budget, rng, reporter):
        import os
        import time

        size = int(float(os.environ.get("TOY_ARTIFACT_MB", "1")) * 2 ** 20)
        Path(reporter.artifact_dir, "checkpoint.bin").write_bytes(b"\1" * size)
        time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
        return FixedPolicy()


class FixedPolicy:
    def act(self, role, obs):
        shape = obs.shape[:2] + (1,)
        return {"channel": np.zeros(shape, np.int64), "power": np.ones(shape)}
