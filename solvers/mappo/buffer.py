"""Rollout storage, GAE (eqs. 79-80), return targets (eq. 84) and per-role standardization (eq. 81)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RoleRollout:
    """What one role saw and did, stacked over frames: leading axes (T, B)."""

    obs: list[torch.Tensor] = field(default_factory=list)  # (B, n, obs_dim), normalized
    state: list[torch.Tensor] = field(default_factory=list)  # (B, state_dim), normalized
    actions: list[dict[str, torch.Tensor]] = field(default_factory=list)  # head -> (B, n, size)
    log_prob: list[torch.Tensor] = field(default_factory=list)  # (B, n, D) per action component

    def add(self, obs, state, actions, log_prob) -> None:
        self.obs.append(obs)
        self.state.append(state)
        self.actions.append(actions)
        self.log_prob.append(log_prob)

    def stacked(self) -> dict:
        return {"obs": torch.stack(self.obs), "state": torch.stack(self.state),
                "actions": {k: torch.stack([a[k] for a in self.actions]) for k in self.actions[0]},
                "log_prob": torch.stack(self.log_prob)}


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalized advantage estimates, backward over T frames.

    rewards, dones (T, B); values (T, B, n) -> advantages (T, B, n).
    delta_n = r_n + gamma V(z_{n+1}) - V(z_n)          (eq. 79)
    A_n = delta_n + gamma lambda A_{n+1}               (eq. 80)
    An episode end (done) is terminal: V(z_{n+1}) = A_{n+1} = 0 there, which is the
    paper's boundary condition at the trajectory end (see docs/solvers/mappo.md)."""
    T = rewards.shape[0]
    adv = torch.zeros_like(values)
    next_value = torch.zeros_like(values[0])
    next_adv = torch.zeros_like(values[0])
    for t in reversed(range(T)):
        live = (1.0 - dones[t].to(values.dtype)).unsqueeze(-1)
        delta = rewards[t].unsqueeze(-1) + gamma * next_value * live - values[t]
        next_adv = delta + gamma * lam * live * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv


def standardize(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-role standardization over all frames, environments and agents of the role (eq. 81):
    population mean and standard deviation (1/(N_T |I_u|), eqs. 81b-c)."""
    mu = adv.mean()
    sigma = adv.var(unbiased=False).sqrt()
    return (adv - mu) / (sigma + eps)
