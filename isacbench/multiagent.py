"""Contract of batched multi-agent environments (sequential tasks such as ent-usr).

Every array has a leading batch dimension B (number of parallel environments).
A frame is played in *stages*: the roles of one stage act together on observations
that already reflect the actions of earlier stages (e.g. ent-usr: LCP first, then
LPB and FG, then FPB). `end_frame` computes the frame's shared reward.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Head:
    """One part of a role's action. Arrays are shaped (B, n_agents, size).

    kind: 'bernoulli' (values in {0, 1}), 'categorical' (integers in [0, classes)),
    or 'continuous' (reals in [low, high]; the environment projects them onto its
    feasible set, e.g. a power simplex)."""

    name: str
    kind: str
    size: int
    classes: int = 2
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class RoleSpec:
    name: str
    n_agents: int
    obs_dim: int
    heads: tuple[Head, ...]

    def sample(self, num_envs: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniformly random action of every head, each shaped (num_envs, n_agents, size)."""
        out = {}
        for h in self.heads:
            shape = (num_envs, self.n_agents, h.size)
            if h.kind == "bernoulli":
                out[h.name] = rng.integers(0, 2, shape)
            elif h.kind == "categorical":
                out[h.name] = rng.integers(0, h.classes, shape)
            else:
                out[h.name] = rng.uniform(h.low, h.high, shape)
        return out


class MultiAgentEnv(ABC):
    """Base of batched multi-agent environments (PettingZoo-like, with a leading batch axis).

    Attributes a subclass sets: `num_envs` (B), `roles` (name -> RoleSpec), `stages` (the roles
    acting together, in order), `state_dim` (global state size for centralized critics) and
    `frames_per_episode` (all B episodes end together after this many frames)."""

    num_envs: int
    roles: dict[str, RoleSpec]
    stages: tuple[tuple[str, ...], ...]
    state_dim: int
    frames_per_episode: int

    @abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Start new episodes in all B environments (first frame, stage 0)."""

    @abstractmethod
    def observe(self, role: str) -> np.ndarray:
        """(B, n_agents, obs_dim) observations of `role` at the current stage."""

    @abstractmethod
    def state(self) -> np.ndarray:
        """(B, state_dim) global state for centralized critics."""

    @abstractmethod
    def act(self, actions: dict[str, dict[str, np.ndarray]]) -> None:
        """Apply the current stage's actions: role -> head name -> (B, n_agents, size)."""

    @abstractmethod
    def end_frame(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Finish the frame: (reward (B,), done (B,), per-frame metrics name -> (B,)).
        When done, the next call to `reset` starts new episodes."""

    def reference_actions(self) -> dict[str, dict[str, np.ndarray | None]]:
        """Optional hint for learners: per role and head, one agent-independent action (size,) of
        a sensible rule, or None where the rule has no preference. Empty: no hint."""
        return {}

    def frame_reward(self) -> np.ndarray:
        """(B,) the reward `end_frame` would return for the actions played so far (every stage has
        acted), without ending the frame. Default: `end_frame` on a `branch`, so no state or random
        stream of this env moves; an env may override it with a cheaper computation of the same value."""
        return np.asarray(self.branch().end_frame()[0])

    def frame_rewards(self, branches: Sequence["MultiAgentEnv"]) -> list[np.ndarray]:
        """`frame_reward` of each of several `branch`es of this env's current frame, each played to the
        frame's end, in order. Default: one call per branch; an env may score them together (one batched
        computation) when that gives the same values."""
        return [np.asarray(b.frame_reward()) for b in branches]

    def branch(self) -> "MultiAgentEnv":
        """An independent copy standing at the same point of the same frame: playing it on (`act`,
        `frame_reward`, `end_frame`, even `reset`) leaves this env, its state and its random stream as they
        were, and this env playing on leaves the copy as it was (learners use it to score alternative actions
        on the same frame, possibly later or on another thread). Default: a deep copy; an env may override it
        with a cheaper copy that shares the arrays neither modifies in place."""
        return copy.deepcopy(self)
