"""The MAPPO update (Sec. V-D): advantages per role, then clipped-surrogate epochs.

Per role u:  L^u = L_pi^u + c_V L_V^u, with
  L_pi^u = -mean_{n,i} [ min(xi A, clip(xi, 1 +- eps) A) + eta_H H ]    (eqs. 82, 83a-c)
  L_V^u  =  mean_{n,i} smoothL1( V^u(z) - R_hat )                       (eqs. 84-86)
and the optimizer steps on sum_u L^u (one Adam over all actors and critics).
Value targets are normalized by a running mean/std per role (value normalization, as in the
official MAPPO); the paper's smooth-L1 loss is applied in normalized units.
baseline="mean" builds no critic: GAE runs with V = 0 on rewards centred by the rollout's mean
(with lambda = 0: A_n = r_n - mean r), and L^u = L_pi^u. baseline="greedy" (self-critical, Rennie et
al. 2017) centres each frame's reward on the reward of the policy's mode in the same frame
(`rollout.play_mode` on a `branch()`; with lambda = 0: A_n = r_n - r_n^mode), no critic either;
baseline="stagewise" splits that advantage over the frame's stages (`centred_rewards`).

The critic and the update order are `hyper.algorithm`'s (`policy.critics`):
* mappo: role-specific centralized critics V^u(s, e_i); one step on sum_u L^u per minibatch.
* ippo: per-agent local critics V_i(o_i); the same simultaneous update.
* happo (Kuba et al. 2022, "Trust region policy optimisation in multi-agent reinforcement
  learning", ICLR; Alg. "HAPPO"): one V(s), one shared advantage A; a random permutation of the
  roles is updated one after the other, role i_m on the surrogate with M^{i_1:m} A, M the product
  of the new/old joint ratios of the roles updated before it (`sequential_update`), then V(s).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .buffer import gae, standardize
from .config import Hyper
from .policy import JOINT, ActorCritic
from .rollout import Rollout


@dataclass
class RoleData:
    """Flattened (N = T*B) training samples of one role."""

    obs: torch.Tensor  # (N, n, obs_dim)
    state: torch.Tensor  # (N, state_dim)
    actions: dict[str, torch.Tensor]  # head -> (N, n, size)
    log_prob: torch.Tensor  # (N, n, D) per action component
    advantage: torch.Tensor  # (N, n), standardized (eq. 81)
    critic: str | None = None  # key of the critic trained on these samples (model.critics); None: none
    target: torch.Tensor | None = None  # (N, n) (happo: (N, 1)), normalized return (eq. 84)
    explained_variance: float | None = None  # of that critic on this rollout, before the update


def explained_variance(target: torch.Tensor, value: torch.Tensor) -> float:
    """1 - Var(target - V) / Var(target) over all samples (population variances): 1 for a perfect
    critic, 0 for one no better than the targets' mean, negative for a worse one; nan if the targets
    are constant."""
    var = target.var(unbiased=False)
    return float(1.0 - (target - value).var(unbiased=False) / var) if var > 0 else float("nan")


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)  # (T, B, ...) -> (T*B, ...)


def advantages(model: ActorCritic, key: str | None, r: dict, n: int, rewards: torch.Tensor, dones: torch.Tensor,
               hyper: Hyper):
    """GAE (eqs. 79-80) of n value columns with critic `key` on the role samples r (None: V = 0, the
    mean baseline). Returns the advantages (T, B, n), the normalized targets (N, n) (eq. 84; value
    normalization updated with them) and the critic's explained variance before the update."""
    if key is None:
        return gae(rewards, rewards.new_zeros(*rewards.shape, n), dones, hyper.gamma, hyper.gae_lambda), None, None
    vnorm = model.value_norm[key]
    values = vnorm.denormalize(model.value(key, r["obs"], r["state"], r["actions"]))  # (T, B, n)
    adv = gae(rewards, values, dones, hyper.gamma, hyper.gae_lambda)
    returns = adv + values  # eq. 84
    ev = explained_variance(returns, values)
    vnorm.update(returns)
    return adv, flat(vnorm(returns)), ev


def centred_rewards(rollout: Rollout, baseline: str, role: str) -> torch.Tensor:
    """(T, B) the rewards GAE credits to `role`: r_n for the critic; r_n - mean r (mean); r_n - G_0 with G_0 the
    frame's reward at the policy's mode (greedy, self-critical); stagewise, for the role's stage s of S:
    G_{s+1} - G_s, with G_s the reward of the frame played as sampled before stage s and at the mode from s
    on (`rollout.collect`) and G_S = r_n. The stages' terms telescope to greedy's r_n - G_0; each stage is
    credited with what its own sampled actions changed, the later stages held at their mode, so the later
    stages' exploration is not in its advantage (the baseline G_s does not depend on stage s's actions)."""
    if baseline == "critic":
        return rollout.rewards
    if baseline == "mean":
        return rollout.rewards - rollout.rewards.mean()
    g = rollout.mode_rewards
    if baseline == "greedy":
        return rollout.rewards - g[..., 0]
    s = rollout.role_stage[role]
    return (g[..., s + 1] if s + 1 < g.shape[-1] else rollout.rewards) - g[..., s]


@torch.no_grad()
def prepare(model: ActorCritic, rollout: Rollout, hyper: Hyper) -> dict[str, RoleData]:
    """GAE (eqs. 79-80) with each role's critic (or the mean baseline), targets (eq. 84),
    standardization (eq. 81). happo: one advantage from V(s) on the state of the first role
    (`env.roles` order: the frame's first stage), shared by every role; that role's data carries V's target."""
    data = {}
    critic = hyper.baseline == "critic"
    shared = None
    if hyper.algorithm == "happo":
        owner = next(iter(rollout.roles))
        shared = advantages(model, JOINT if critic else None, rollout.roles[owner], 1,
                            centred_rewards(rollout, hyper.baseline, owner), rollout.dones, hyper)
    for role, r in rollout.roles.items():
        n = r["log_prob"].shape[2]
        if shared is None:
            key = role if critic else None
            adv, target, ev = advantages(model, key, r, n, centred_rewards(rollout, hyper.baseline, role),
                                         rollout.dones, hyper)
        else:
            key = JOINT if critic and role == owner else None
            adv, target, ev = shared if key else (shared[0], None, None)
        data[role] = RoleData(obs=flat(r["obs"]), state=flat(r["state"]),
                              actions={k: flat(v) for k, v in r["actions"].items()}, log_prob=flat(r["log_prob"]),
                              advantage=flat(standardize(adv)).expand(-1, n), critic=key, target=target,
                              explained_variance=ev)
    return data


def actor_loss(model: ActorCritic, role: str, d: RoleData, idx: torch.Tensor, clip: float, ent_coef: float,
               hyper: Hyper, factor: torch.Tensor | None = None,
               diagnostics: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_pi^u on the samples `idx`, and diagnostics (none with diagnostics=False: an empty dict; the
    loss is the same). `factor` (N,): HAPPO's M, the advantage of sample k becomes M_k A_k (the clip
    stays on the role's own ratio).

    ratio="joint": xi is the agent's whole-action probability ratio (eq. 83c) and H its summed
    entropy (eq. 83b). ratio="component": every action component gets its own clipped ratio and
    the surrogate and entropy are averaged over the D components (dimension-wise clipping,
    Han & Sung 2019): with D in the hundreds (FPB) the joint ratio leaves the clip range after
    one step and almost every sample is clipped (see docs/solvers/mappo.md)."""
    logp, ent = model.evaluate(role, d.obs[idx], {k: v[idx] for k, v in d.actions.items()})  # (N, n, D)
    log_ratio = logp - d.log_prob[idx]
    adv = d.advantage[idx]
    if factor is not None:
        adv = adv * factor[idx].unsqueeze(-1)
    if hyper.ratio == "joint":
        log_ratio, ent = log_ratio.sum(-1), ent.sum(-1)
    else:
        adv, ent = adv.unsqueeze(-1), ent.mean(-1)
    ratio = log_ratio.exp()  # xi (eq. 83c)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)  # G (eq. 83a)
    if hyper.ratio == "component":
        surrogate = surrogate.mean(-1)
    actor = -(surrogate + ent_coef * ent).mean()  # eq. 82
    if not diagnostics:
        return actor, {}
    with torch.no_grad():
        stats = {"actor_loss": actor.detach(), "entropy": ent.mean(),
                 "clip_fraction": ((ratio - 1).abs() > clip).float().mean(),
                 "approx_kl": ((ratio - 1) - log_ratio).mean()}
    return actor, stats


def critic_loss(model: ActorCritic, d: RoleData, idx: torch.Tensor) -> torch.Tensor:
    """L_V of critic `d.critic` on the samples `idx`: smooth L1 in normalized units (eqs. 85-86)."""
    value = model.value(d.critic, d.obs[idx], d.state[idx], {k: v[idx] for k, v in d.actions.items()})
    return F.smooth_l1_loss(value, d.target[idx], beta=1.0)


def make_optimizer(model: ActorCritic, hyper: Hyper) -> torch.optim.Optimizer:
    """One Adam over all actors and critics (eps 1e-5, as the official MAPPO). The fused kernel (one
    pass over each parameter; CPU and CUDA since torch 2.4) computes the same update as the default
    per-tensor loop (tests/test_mappo_math.py) about 3x faster; where it is missing, the default."""
    try:
        return torch.optim.Adam(model.parameters(), lr=hyper.lr, eps=1e-5, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch or a device without the fused kernel
        return torch.optim.Adam(model.parameters(), lr=hyper.lr, eps=1e-5)


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    """L2 norm of the module's gradients (before clipping): the norm of the per-tensor norms, as
    torch.nn.utils.clip_grad_norm_ forms its total."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


def epochs(model: ActorCritic, optimizer: torch.optim.Optimizer, data: dict[str, RoleData], actors: list[str],
           critics: list[str], hyper: Hyper, clip: float, ent_coef: float,
           factor: torch.Tensor | None = None) -> dict[str, float]:
    """`hyper.epochs` passes over the rollout in `hyper.minibatches` shuffled minibatches, one
    optimizer step each on sum over `actors` of L_pi^u + c_V sum over `critics` of the critic loss of
    that role's data. Returns the last epoch's means per role, named `ROLE/<name>` (`CRITIC/` for the
    critic's loss and gradient norm), gradient norms before clipping.
    The diagnostics (losses, entropy, clip fraction, approx KL, gradient norms) are computed in the
    last epoch only, the one they are reported for, in every minibatch of it: the earlier epochs
    skip them (the per-role gradient norms are one more pass over the gradients per step). They are
    read off the same tensors and never enter the update, which is bit-identical with or without
    them (tests/test_marl_variants.py)."""
    n = next(iter(data.values())).log_prob.shape[0]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sums: dict[str, float] = {}
    steps = 0
    for epoch in range(hyper.epochs):
        last = epoch == hyper.epochs - 1
        perm = torch.randperm(n, device=next(iter(data.values())).log_prob.device)
        for idx in torch.tensor_split(perm, min(hyper.minibatches, n)):
            total, stats = 0.0, {}
            for role in actors:
                loss, st = actor_loss(model, role, data[role], idx, clip, ent_coef, hyper, factor, diagnostics=last)
                total = total + loss
                stats.update({f"{role.upper()}/{k}": v for k, v in st.items()})
            for role in critics:
                loss = critic_loss(model, data[role], idx)
                total = total + hyper.value_coef * loss
                if last:
                    stats[f"{data[role].critic.upper()}/critic_loss"] = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if last:
                for role in actors:
                    stats[f"{role.upper()}/grad_norm_actor"] = grad_norm(model.actors[role])
                for role in critics:
                    stats[f"{data[role].critic.upper()}/grad_norm_critic"] = \
                        grad_norm(model.critics[data[role].critic])
            torch.nn.utils.clip_grad_norm_(params, hyper.max_grad_norm)
            optimizer.step()
            if last:
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                steps += 1
    return {k: v / steps for k, v in sums.items()}


def joint_log_ratio(model: ActorCritic, role: str, d: RoleData) -> torch.Tensor:
    """log pi_new(a^u | o^u) - log pi_old(a^u | o^u) per sample (N,): the sum over the role's agents
    and action components of their log probability ratios (the log of HAPPO's factor of one role)."""
    with torch.no_grad():
        logp, _ = model.evaluate(role, d.obs, d.actions)
        return (logp - d.log_prob).sum((1, 2))


def sequential_update(model: ActorCritic, optimizer: torch.optim.Optimizer, data: dict[str, RoleData], hyper: Hyper,
                      clip: float, ent_coef: float) -> dict[str, float]:
    """HAPPO (Kuba et al. 2022, Sec. 4, Alg. 1 "HAPPO"): draw a permutation i_1..i_m of the roles
    (the heterogeneous agents; torch's generator, seeded per update); role i_m maximizes
        E[ min( r^{i_m} M^{i_1:m} A,  clip(r^{i_m}, 1 +- eps) M^{i_1:m} A ) ]           (HAPPO objective)
    with r^{i_m} its own new/old ratio and M^{i_1:m} = prod_{j<m} pi_new^{i_j}(a^{i_j}) / pi_old^{i_j}(a^{i_j}),
    the joint ratios of the roles updated before it, recomputed on the same samples after their update
    and detached (M = 1 for the first). Then the critic V(s) on its own epochs. `ROLE/happo_factor`
    logs the mean M a role was updated with.
    M is accumulated in log space and truncated to [1/b, b] (b = `hyper.factor_bound`), as V-trace
    truncates its importance weights (Espeholt et al. 2018): a role's joint ratio is a product over
    hundreds of action components on ent-usr (FPB: 2 agents x 768), so untruncated M reached ~100 after
    one step and overflowed to inf (NaN weights) within a 6k-frame run (docs/solvers/mappo.md)."""
    roles = list(data)
    order = [roles[i] for i in torch.randperm(len(roles)).tolist()]
    log_m = torch.zeros(next(iter(data.values())).log_prob.shape[0], device=next(iter(data.values())).log_prob.device)
    bound = math.log(hyper.factor_bound)
    stats: dict[str, float] = {}
    for role in order:
        factor = log_m.clamp(-bound, bound).exp()
        stats.update(epochs(model, optimizer, data, [role], [], hyper, clip, ent_coef, factor))
        stats[f"{role.upper()}/happo_factor"] = float(factor.mean())
        log_m = log_m + joint_log_ratio(model, role, data[role])
    stats.update(epochs(model, optimizer, data, [], [r for r in roles if data[r].critic], hyper, clip, ent_coef))
    return stats


def update(model: ActorCritic, optimizer: torch.optim.Optimizer, data: dict[str, RoleData], hyper: Hyper,
           clip: float, ent_coef: float) -> dict[str, float]:
    """The PPO epochs of `hyper.algorithm` (happo: `sequential_update`; else every role and critic in
    every step). Returns the last epoch's per-role diagnostics (`ROLE/<name>`: entropy, approx_kl,
    clip_fraction, actor_loss, grad_norm_actor; critic_loss, grad_norm_critic, explained_variance per
    critic) and their totals under the plain names: actor_loss, entropy, critic_loss summed over roles,
    clip_fraction and approx_kl averaged, loss = actor_loss + c_V critic_loss."""
    if hyper.algorithm == "happo":
        stats = sequential_update(model, optimizer, data, hyper, clip, ent_coef)
    else:
        stats = epochs(model, optimizer, data, list(data), [r for r in data if data[r].critic], hyper, clip, ent_coef)
    for d in data.values():
        if d.explained_variance is not None:
            stats[f"{d.critic.upper()}/explained_variance"] = d.explained_variance
    roles = [r.upper() for r in data]
    total = {k: sum(stats[f"{r}/{k}"] for r in roles) for k in ("actor_loss", "entropy")}
    total.update({k: sum(stats[f"{r}/{k}"] for r in roles) / len(roles) for k in ("clip_fraction", "approx_kl")})
    critic = [v for k, v in stats.items() if k.endswith("/critic_loss")]
    if critic:
        total["critic_loss"] = sum(critic)
    total["loss"] = total["actor_loss"] + hyper.value_coef * total.get("critic_loss", 0.0)
    return {**total, **stats}
