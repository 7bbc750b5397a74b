"""The MAPPO update (Sec. V-D): advantages per role, then clipped-surrogate epochs.

Per role u:  L^u = L_pi^u + c_V L_V^u, with
  L_pi^u = -mean_{n,i} [ min(xi A, clip(xi, 1 +- eps) A) + eta_H H ]    (eqs. 82, 83a-c)
  L_V^u  =  mean_{n,i} smoothL1( V^u(z) - R_hat )                       (eqs. 84-86)
and the optimizer steps on sum_u L^u (one Adam over all actors and critics).
Value targets are normalized by a running mean/std per role (value normalization, as in the
official MAPPO); the paper's smooth-L1 loss is applied in normalized units.
baseline="mean" (default preset) builds no critic: GAE runs with V = 0 on rewards centred by
the rollout's mean (with lambda = 0: A_n = r_n - mean r), and L^u = L_pi^u.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .buffer import gae, standardize
from .config import Hyper
from .policy import ActorCritic
from .rollout import Rollout


@dataclass
class RoleData:
    """Flattened (N = T*B) training samples of one role."""

    obs: torch.Tensor  # (N, n, obs_dim)
    state: torch.Tensor  # (N, state_dim)
    actions: dict[str, torch.Tensor]  # head -> (N, n, size)
    log_prob: torch.Tensor  # (N, n, D) per action component
    advantage: torch.Tensor  # (N, n), standardized (eq. 81)
    target: torch.Tensor | None  # (N, n), normalized return (eq. 84); None without a critic


@torch.no_grad()
def prepare(model: ActorCritic, rollout: Rollout, hyper: Hyper) -> dict[str, RoleData]:
    """GAE (eqs. 79-80) with each role's critic (or the mean baseline), targets (eq. 84),
    standardization (eq. 81)."""
    data = {}
    critic = hyper.baseline == "critic"
    rewards = rollout.rewards if critic else rollout.rewards - rollout.rewards.mean()
    flat = lambda x: x.flatten(0, 1)  # noqa: E731  (T, B, ...) -> (T*B, ...)
    for role, r in rollout.roles.items():
        n = r["log_prob"].shape[2]
        if critic:
            vnorm = model.value_norm[role]
            values = vnorm.denormalize(model.critics[role](r["state"], r["actions"]))  # (T, B, n)
        else:  # baseline "mean": V = 0 on centred rewards, i.e. delta_n = r_n - mean(r)
            values = rollout.rewards.new_zeros(*rollout.rewards.shape, n)
        adv = gae(rewards, values, rollout.dones, hyper.gamma, hyper.gae_lambda)
        target = None
        if critic:
            returns = adv + values  # eq. 84
            vnorm.update(returns)
            target = flat(vnorm(returns))
        data[role] = RoleData(obs=flat(r["obs"]), state=flat(r["state"]),
                              actions={k: flat(v) for k, v in r["actions"].items()},
                              log_prob=flat(r["log_prob"]), advantage=flat(standardize(adv)), target=target)
    return data


def role_loss(model: ActorCritic, role: str, d: RoleData, idx: torch.Tensor, clip: float, ent_coef: float,
              hyper: Hyper) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_pi^u + c_V L_V^u on the samples `idx`, and diagnostics.

    ratio="joint": xi is the agent's whole-action probability ratio (eq. 83c) and H its summed
    entropy (eq. 83b). ratio="component": every action component gets its own clipped ratio and
    the surrogate and entropy are averaged over the D components (dimension-wise clipping,
    Han & Sung 2019): with D in the hundreds (FPB) the joint ratio leaves the clip range after
    one step and almost every sample is clipped (see docs/solvers/mappo.md)."""
    actions = {k: v[idx] for k, v in d.actions.items()}
    logp, ent = model.evaluate(role, d.obs[idx], actions)  # (N, n, D)
    log_ratio = logp - d.log_prob[idx]
    adv = d.advantage[idx]
    if hyper.ratio == "joint":
        log_ratio, ent = log_ratio.sum(-1), ent.sum(-1)
    else:
        adv, ent = adv.unsqueeze(-1), ent.mean(-1)
    ratio = log_ratio.exp()  # xi (eq. 83c)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)  # G (eq. 83a)
    if hyper.ratio == "component":
        surrogate = surrogate.mean(-1)
    actor = -(surrogate + ent_coef * ent).mean()  # eq. 82
    with torch.no_grad():
        stats = {"actor_loss": actor.detach(), "entropy": ent.mean(),
                 "clip_fraction": ((ratio - 1).abs() > clip).float().mean(),
                 "approx_kl": ((ratio - 1) - log_ratio).mean()}
    if d.target is None:  # baseline "mean": no critic
        return actor, stats
    value = model.critics[role](d.state[idx], actions)
    critic = F.smooth_l1_loss(value, d.target[idx], beta=1.0)  # eqs. 85-86
    stats["critic_loss"] = critic.detach()
    return actor + hyper.value_coef * critic, stats


def make_optimizer(model: ActorCritic, hyper: Hyper) -> torch.optim.Optimizer:
    """One Adam over all actors and critics (eps 1e-5, as the official MAPPO). The fused kernel (one
    pass over each parameter; CPU and CUDA since torch 2.4) computes the same update as the default
    per-tensor loop (tests/test_mappo_math.py) about 3x faster; where it is missing, the default."""
    try:
        return torch.optim.Adam(model.parameters(), lr=hyper.lr, eps=1e-5, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch or a device without the fused kernel
        return torch.optim.Adam(model.parameters(), lr=hyper.lr, eps=1e-5)


def update(model: ActorCritic, optimizer: torch.optim.Optimizer, data: dict[str, RoleData], hyper: Hyper,
           clip: float, ent_coef: float) -> dict[str, float]:
    """`hyper.epochs` passes over the rollout in `hyper.minibatches` shuffled minibatches.
    Returns the last epoch's means of the loss terms (summed over roles) and diagnostics."""
    n = next(iter(data.values())).log_prob.shape[0]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for epoch in range(hyper.epochs):
        sums: dict[str, float] = {}
        steps = 0
        perm = torch.randperm(n, device=next(iter(data.values())).log_prob.device)
        for idx in torch.tensor_split(perm, min(hyper.minibatches, n)):
            total = 0.0
            for role, d in data.items():
                loss, stats = role_loss(model, role, d, idx, clip, ent_coef, hyper)
                total = total + loss
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v) / (len(data) if k in ("clip_fraction", "approx_kl") else 1)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, hyper.max_grad_norm)
            optimizer.step()
            sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
            steps += 1
    return {k: v / steps for k, v in sums.items()}
