"""The learnable model (all roles' actors, critics, normalizers) and the decentralized policy."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from isacbench.multiagent import RoleSpec

from . import heads as H
from .config import Hyper
from .networks import LocalCritic, RoleActor, RoleCritic, RunningNorm


TIME_FEATURES = 1  # the critics also see the fraction of the episode left (rollout.collect)
JOINT = "joint"  # HAPPO's one centralized critic V(s), shared by every role


def critics(roles: dict[str, RoleSpec], state_dim: int, hyper: Hyper) -> dict[str, nn.Module]:
    """The critics of `hyper.algorithm` (none with baseline=mean), by key:
    mappo: one per role, V^u(s, e_i) shared by the role's agents (eq. 78);
    ippo: one per role holding an independent V_i(o_i) per agent (`LocalCritic`);
    happo: one V(s) for all roles (`JOINT`; Kuba et al. 2022, the advantage every role shares)."""
    if hyper.baseline != "critic":
        return {}
    if hyper.algorithm == "ippo":
        return {r: LocalCritic(s, hyper.critic_hidden, TIME_FEATURES) for r, s in roles.items()}
    if hyper.algorithm == "happo":
        return {JOINT: RoleCritic(RoleSpec(JOINT, 1, 0, ()), state_dim + TIME_FEATURES, hyper.critic_hidden, False)}
    return {r: RoleCritic(s, state_dim + TIME_FEATURES, hyper.critic_hidden, hyper.critic_action)
            for r, s in roles.items()}


class ActorCritic(nn.Module):
    """Actors and critics of every role of the environment (`env.roles`: the roles that act),
    with their running normalizers."""

    def __init__(self, roles: dict[str, RoleSpec], state_dim: int, hyper: Hyper,
                 reference: dict[str, dict] | None = None):
        """reference: role -> head -> reference action (size,) or None; each actor's output bias
        starts there (`heads.reference_bias`), so the initial policy is centred on it."""
        super().__init__()
        self.roles = dict(roles)
        self.actors = nn.ModuleDict({r: RoleActor(s, hyper.actor_hidden) for r, s in self.roles.items()})
        for r, actor in self.actors.items():
            refs = (reference or {}).get(r, {})
            bias = torch.cat([H.reference_bias(h, refs.get(h.name)) for h in self.roles[r].heads])
            with torch.no_grad():
                actor.out.bias.copy_(bias.expand_as(actor.out.bias))
        self.algorithm, self.local = hyper.algorithm, hyper.algorithm == "ippo"
        self.critics = nn.ModuleDict(critics(self.roles, state_dim, hyper))
        self.obs_norm = nn.ModuleDict({r: RunningNorm((s.n_agents, s.obs_dim)) for r, s in self.roles.items()})
        self.state_norm = RunningNorm((state_dim,))
        self.value_norm = nn.ModuleDict({k: RunningNorm((), clip=float("inf")) for k in self.critics})

    def value(self, key: str, obs: torch.Tensor, state: torch.Tensor, actions: dict[str, torch.Tensor]):
        """Critic `key`'s values (..., n) (HAPPO's `JOINT`: (..., 1)), in normalized units. IPPO's local
        critics read the observations and the state's time-left column only, the others the state."""
        if self.local:
            return self.critics[key](obs, state[..., -TIME_FEATURES:])
        return self.critics[key](state, actions)

    def evaluate(self, role: str, obs: torch.Tensor, actions: dict[str, torch.Tensor]):
        """log pi and entropy of every action component of every agent, (..., n, D), all heads
        concatenated; their sums over D are the agent's log pi(alpha | s) and entropy (eqs. 77, 83b)."""
        params = self.actors[role](obs)
        terms = [H.log_prob_entropy(h, params[h.name], actions[h.name]) for h in self.roles[role].heads]
        return torch.cat([t[0] for t in terms], -1), torch.cat([t[1] for t in terms], -1)


class MAPPOPolicy:
    """Decentralized execution (eq. 77): each agent acts on its own observation only, with its
    role's actor (mode by default, Sec. V-D1 "deterministic policy")."""

    def __init__(self, model: ActorCritic, deterministic: bool = True):
        self.model = model.to("cpu").eval()
        self.deterministic = deterministic

    @torch.no_grad()
    def act(self, role: str, obs: np.ndarray) -> dict[str, np.ndarray]:
        if role not in self.model.roles:
            raise ValueError(f"mappo policy: unknown role {role!r}; trained roles: {', '.join(self.model.roles)}")
        return env_actions(self.model, role, obs, H.mode if self.deterministic else H.sample)


def env_actions(model: ActorCritic, role: str, obs, pick=H.mode, device: torch.device | None = None) -> dict:
    """The role's environment actions (`to_numpy`) for its raw observations: normalized, through the role's
    actor, then `pick` per head (`heads.mode` or `heads.sample`)."""
    params = model.actors[role](model.obs_norm[role](torch.as_tensor(np.asarray(obs), dtype=torch.float32,
                                                                     device=device)))
    return pick_actions(model, role, params, pick)


def pick_actions(model: ActorCritic, role: str, params: dict[str, torch.Tensor], pick=H.mode) -> dict:
    """The role's environment actions (`to_numpy`) from its actor's outputs `params` (head name -> tensor)."""
    return {h.name: to_numpy(h, pick(h, params[h.name])) for h in model.roles[role].heads}


def to_numpy(head, action: torch.Tensor) -> np.ndarray:
    """Environment action (`heads.env_action`) in its dtype: integers for bits and classes, float64
    for continuous values."""
    a = H.env_action(head, action).detach().cpu().numpy()
    return a.astype(np.float64) if head.kind == "continuous" else a.astype(np.int64)
