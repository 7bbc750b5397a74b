"""From agents' raw actions (eq. 56-68) to a feasible `Decision`: power projection onto the
budget-feasible simplex (zero for non-members), CFN-size repair (eq. 52), rounding (eq. 60)."""
from __future__ import annotations

import numpy as np

from .config import Params
from .model import Decision, service_masks
from .mrt import TRUE_MRT  # noqa: F401  (beam index meaning true MRT, w = h_hat / ||h_hat||: mrt.py)

MRT = -1  # beam index meaning "codebook MRT": the Theta angle of largest estimated gain / target bearing


def beam_index(p: Params, cls: np.ndarray) -> np.ndarray:
    """Agents' beam classes -> Decision beam indices. Absolute mode: the Theta index itself (eq. 61).
    Relative mode: class c encodes MRT - c (negative indices are resolved in model.resolve_mrt as the
    c-th Theta angle around the service's codebook-MRT angle, c = 0 being MRT itself)."""
    c = np.clip(np.asarray(cls), 0, p.n_angles - 1).astype(np.int64)
    return MRT - c if p.beam_relative else c


def _entries(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The entries `project_simplex` works on: NaN -> 0, clipped to [-1e6, 1e6] (+-inf to the bounds),
    -1e9 where not mask; written in place on one copy of x."""
    z = np.clip(x, -1e6, 1e6)
    nan = np.isnan(z)
    if nan.any():
        z[nan] = 0.0
    if np.shape(mask) == z.shape:
        np.copyto(z, -1e9, where=np.logical_not(mask))
    else:
        z = np.where(mask, z, -1e9)
    return z


def project_simplex(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Euclidean projection of x (..., n) onto {y >= 0, sum y <= 1, y_i = 0 where not mask}."""
    z = _entries(x, mask)
    y = np.maximum(z, 0.0)
    inside = y.sum(-1, keepdims=True) <= 1.0
    u = -np.sort(-z, axis=-1)
    css = np.cumsum(u, axis=-1)
    j = np.arange(1, z.shape[-1] + 1)
    cond = u - (css - 1.0) / j > 0
    rho = np.maximum(np.sum(cond, axis=-1, keepdims=True), 1)
    theta = (np.take_along_axis(css, rho - 1, axis=-1) - 1.0) / rho
    return np.where(inside, y, np.maximum(z - theta, 0.0))


def repair_groups(group: np.ndarray, p: Params) -> np.ndarray:
    """Enforce |S_r| <= M_max (eq. 52): the CCNs beyond the M_max-th of an over-full CFN (in CCN
    order) move, in order, to the free places of the CFNs with room (lowest r first)."""
    g = np.clip(np.asarray(group, dtype=np.int64), 0, p.R - 1)
    onehot = g[..., None] == np.arange(p.R)  # (B, M, R)
    rank = np.take_along_axis(np.cumsum(onehot, axis=1), g[..., None], axis=-1)[..., 0] - 1
    over = rank >= p.M_max
    if not over.any():
        return g
    kept = (onehot & ~over[..., None]).sum(axis=1)  # (B, R)
    cum_free = np.cumsum(p.M_max - kept, axis=1)  # (B, R)
    slot = np.cumsum(over, axis=1) - 1  # j-th overflowing CCN of the environment
    target = np.sum(cum_free[:, None, :] <= slot[..., None], axis=-1)
    return np.where(over, target, g)


def proportional_tilt(prop: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The share whose log-odds are logit(prop) + logit(u): prop u / (prop u + (1 - prop)(1 - u)).
    u = 1/2 gives prop, u -> 0 / 1 gives 0 / 1 for 0 < prop < 1 (a bijection of [0, 1]), and prop = 0 / 1
    stays 0 / 1 for every u (no resources left to a regime without services)."""
    num = prop * u
    den = num + (1.0 - prop) * (1.0 - u)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), prop)


def local_shares(p: Params, cls: np.ndarray, power, bandwidth) -> tuple[np.ndarray, np.ndarray]:
    """LCP's local power share P_a^L / P_max (B, M, A) and local bandwidth share B_m^L / B before
    rounding (B, M, 1), from its classification cls (B, M, K+Q) bool (1 = federated) and its power and
    bandwidth actions clipped to [0, 1]. Setting `resource_split`: absolute, the actions are the shares
    (eq. 59-60); proportional, the actions tilt the cell's share of local services (`proportional_tilt`)."""
    b = cls.shape[0]
    pw = np.clip(np.asarray(power, float).reshape(b, p.M, p.A), 0, 1)
    bw = np.clip(np.asarray(bandwidth, float).reshape(b, p.M, 1), 0, 1)
    if p.resource_split == "absolute":
        return pw, bw
    prop = 1.0 - cls.mean(axis=-1, keepdims=True)  # (B, M, 1): local services / all services of the cell
    return proportional_tilt(prop, pw), proportional_tilt(prop, bw)


def decode(p: Params, actions: dict[str, dict[str, np.ndarray]]) -> Decision:
    """Build the Decision from the four roles' actions, each head (B, n_agents, size):
    lcp: classify {0,1}^(K+Q), power [0,1]^A (P_a^L / P_max), bandwidth [0,1] (B_m^L / B, rounded), both
         as read by `local_shares`;
    lpb: power [0,1]^(A(K+Q)) raw shares, beam {0..n_angles-1}^(A(K+Q)) (see `beam_index`);
    fg:  group {0..R-1}^M;
    fpb: power [0,1]^(MA(MK+MQ)) raw shares, beam {0..n_angles-1}^(MA(MK+MQ))."""
    lcp, lpb, fg, fpb = (actions[r] for r in ("lcp", "lpb", "fg", "fpb"))
    b = lcp["classify"].shape[0]
    cls = np.asarray(lcp["classify"]).reshape(b, p.M, p.K + p.Q) > 0.5
    fed_users = cls[..., : p.K].reshape(b, p.MK)  # eq. 57: a = 1 is federated
    fed_targets = cls[..., p.K:].reshape(b, p.MQ)  # eq. 58
    p_share, b_share = local_shares(p, cls, lcp["power"], lcp["bandwidth"])
    p_loc = p_share.reshape(b, p.MA) * p.P_max  # eq. 59
    b_loc = np.rint(b_share.reshape(b, p.M) * p.B).astype(np.int64)  # eq. 60
    group = repair_groups(np.asarray(fg["group"]).reshape(b, p.M), p)  # eq. 64-65
    ca = np.arange(p.MA) // p.A
    fpb_of_ap = group[:, ca]  # the FPB agent of AP a's CFN
    nq = p.MK + p.MQ
    fpow = np.asarray(fpb["power"], float).reshape(b * p.R * p.MA, nq)
    fbeam = np.asarray(fpb["beam"]).reshape(b * p.R * p.MA, nq)
    pick = (np.arange(b)[:, None] * p.R + fpb_of_ap) * p.MA + np.arange(p.MA)  # (B, MA): row (b, r(a), a) of fpb
    d = Decision(
        fed_users=fed_users, fed_targets=fed_targets, b_loc=b_loc, p_loc=p_loc, group=group,
        frac_loc=np.asarray(lpb["power"], float).reshape(b, p.MA, p.K + p.Q),
        beam_loc=beam_index(p, np.asarray(lpb["beam"]).reshape(b, p.MA, p.K + p.Q)),
        frac_fed=np.take(fpow, pick, axis=0),
        beam_fed=beam_index(p, np.take(fbeam, pick, axis=0)),
    )
    return project(p, d)


def project(p: Params, d: Decision) -> Decision:
    """Project the raw power shares onto the simplex of each AP's budget (eq. 16-17), zero for
    services the AP does not serve (Sec. V-A)."""
    loc_mask, fed_mask = service_masks(p, d)
    d.frac_loc = project_simplex(d.frac_loc, loc_mask)
    d.frac_fed = project_simplex(d.frac_fed, fed_mask)
    return d


def rule_decision(p: Params, fed_users: np.ndarray, fed_targets: np.ndarray, b_loc: np.ndarray,
                  p_loc: np.ndarray, group: np.ndarray, sense_loc: np.ndarray, sense_fed: np.ndarray,
                  repair: bool = True, beam: int = MRT) -> Decision:
    """A structured decision: MRT beams (beam = MRT: codebook MRT; TRUE_MRT: true MRT, mrt.py), and
    per AP and regime equal shares within each service type, comm services weighted (1 - w), sensing
    services w (w = 0.5: equal power to every service the AP serves); the AP's whole budget is used.
    sense_*: (B, MA) weights w. repair=False keeps an over-full grouping (the frame problem reports
    it as infeasible)."""
    b = fed_users.shape[0]
    d = Decision(fed_users=fed_users.astype(bool), fed_targets=fed_targets.astype(bool),
                 b_loc=np.asarray(b_loc, np.int64), p_loc=np.asarray(p_loc, float),
                 group=repair_groups(group, p) if repair else np.asarray(group, np.int64),
                 frac_loc=np.zeros((b, p.MA, p.K + p.Q)), beam_loc=np.full((b, p.MA, p.K + p.Q), beam),
                 frac_fed=np.zeros((b, p.MA, p.MK + p.MQ)), beam_fed=np.full((b, p.MA, p.MK + p.MQ), beam))
    loc_mask, fed_mask = service_masks(p, d)
    for mask, w, n_comm, name in ((loc_mask, sense_loc, p.K, "frac_loc"), (fed_mask, sense_fed, p.MK, "frac_fed")):
        weight = np.concatenate([np.broadcast_to((1.0 - w)[..., None], (b, p.MA, n_comm)),
                                 np.broadcast_to(w[..., None], (b, p.MA, mask.shape[-1] - n_comm))], axis=-1)
        weight = weight * mask
        total = weight.sum(-1, keepdims=True)
        setattr(d, name, np.where(total > 0, weight / np.where(total > 0, total, 1.0), 0.0))
    return d
