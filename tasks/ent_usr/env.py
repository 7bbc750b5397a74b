"""Batched multi-agent ENT environment (isacbench.multiagent.MultiAgentEnv contract).

A frame is played in three stages: ("lcp",) then ("lpb", "fg") then ("fpb",); `end_frame`
returns the shared reward r_n = log U[n] - log S[n] (eq. 75). Arrays are (B, n_agents, size).

Roles and heads (eq. 56-68); powers are projected onto each AP's budget simplex (eq. 16-17),
services an AP does not serve get zero power, and CFN sizes are repaired to |S_r| <= M_max (eq. 52):
  lcp (M agents, CCN m):  classify  bernoulli   K+Q        1 = federated (eq. 57-58)
                          power     continuous  A          P_a^L / P_max (eq. 59)
                          bandwidth continuous  1          B_m^L / B, rounded (eq. 60)
  lpb (M agents, CCN m):  power     continuous  A(K+Q)     raw shares of P_a^L, [a][users, targets] (eq. 62a, 63a)
                          beam      categorical A(K+Q)     angle in Theta, n_angles classes (eq. 62b, 63b):
                                                           beam_mode=absolute: the Theta index; relative (default):
                                                           offset 0, +1, -1, +2, ... from codebook MRT
  fg  (1 agent, CPU):     group     categorical M          CFN of each CCN, R classes (eq. 64-65)
  fpb (R agents, CFN r):  power     continuous  MA(MK+MQ)  raw shares of P_a^F, [AP a][all users, all targets]
                                                           (eq. 67a, 68a)
                          beam      categorical MA(MK+MQ)  angle in Theta as for lpb (eq. 67b, 68b)
                          (entries of APs outside CFN r are ignored)

Observations (float32), all features scaled to O(1):
  lcp_m (eq. 70): user xy / area (2K) | AP xy / area (2A) | per (a, k) of the cell, Phase-I estimate
        on subband m: [log10(|h_hat|^2 P_max / (B sigma)), h_hat/|h_hat| real (N), imag (N),
        log10(delta P_max / (B sigma))] (A K (2N+2)) | per target: [predicted state G x_hat[n-1]
        (xy / area, v / v_max), log10 diag(J_q[n-1]^{-1})] (8Q) | cell centre / area (2)
  lpb_m (eq. 71): lcp_m | LCP_m's action: classify (K+Q), power (A), bandwidth (1)
  fg (eq. 72): the M reported states s_m^F (eq. 74), each: channel features of federated users
        (A K (2N+2), zero for local ones) | target features of federated targets (8Q) |
        P_a^F / P_max (A) | federation flags (K+Q) | B_m^F / B (1) | cell centre / area (2)
  fpb_r (eq. 73): the M reported states, zeroed for CCNs outside S_r | FG's grouping one-hot (M R) |
        one-hot of r (R)
state(): all lcp observations | the fg observation (zero before LCP acts) | stage one-hot (3).

`reference_actions()`: per acting role and head, the action of the CCN-MRT rule (all local, full
local power and bandwidth, equal shares, MRT beams; with the setting `reference_federate` f, services
federated with probability f and local power and bandwidth 1 - f) or None where the rule has no preference;
learners may start their policies near it (an initialization hint, not part of the paper's model).

Resource split setting (`Params.resource_split`, actions.local_shares): absolute (the paper's eq. 59-60),
the LCP's power and bandwidth actions are the local shares; proportional, they tilt the CCN's share of
local services, so a CCN whose services are all local (all federated) keeps all (none) of its resources.

Topology setting (`Params.topology`, topology.py): under ccn-only / cfn-only the environment plays
the fixed rules of the non-acting roles itself; `roles` and `stages` list only the acting roles
(ccn-only: (("lpb",),); cfn-only: (("fg",), ("fpb",))). Observations, state and the internal stage
index (`stage`, 0..3 over `STAGES`) are those of the full protocol.

`end_frame` metrics (`metrics.METRICS`, each (B,)): usr, utility, signaling, utility_comm,
utility_sense (eq. 39-46) and the topology shares fed_user_share, fed_target_share (eq. 57-58) and
coop_share (federated services of CFNs with >= 2 CCNs, eq. 65).

Misuse (a stage out of order, an unknown role) is a programming error: RuntimeError / ValueError.
"""
from __future__ import annotations

import copy
from dataclasses import fields

import numpy as np

from isacbench.multiagent import Head, MultiAgentEnv, RoleSpec

from . import actions as act
from . import channels, layout, model, sensing, topology
from .config import Params
from .metrics import frame_metrics

STAGES = (("lcp",), ("lpb", "fg"), ("fpb",))
EVAL_BLOCK = 128  # environments per model.evaluate call in end_frame: a block's intermediates stay in cache


def evaluate_blocks(p: Params, s: model.FrameState, d: model.Decision, block: int | None = None) -> dict:
    """model.evaluate on blocks of about `block` (default EVAL_BLOCK) environments, outputs concatenated
    along the batch axis. Every quantity of evaluate is computed per environment, so the outputs equal
    those of one call (tests/test_ent_usr_speed.py); the blocks only keep the large intermediates
    (B, MA, MK, M, ...) in cache. Blocks are near-equal (array_split), never of a single environment
    unless B = 1. The Phase-II estimates (h_hat, delta) are written by each block straight into full-batch
    arrays (complex64 channels), the other outputs are joined."""
    b = s.h.shape[0]
    parts = -(-b // (block or EVAL_BLOCK))
    if parts <= 1:
        return model.evaluate(p, s, d)
    bounds = np.cumsum([0] + [len(x) for x in np.array_split(np.arange(b), parts)])
    if any(x.dtype != np.complex64 or x.shape != s.h.shape for x in (s.h, s.h_prev, s.pilot_noise)):  # general
        return _concat([model.evaluate(p, s.take(slice(lo, hi)), d.take(slice(lo, hi)))
                        for lo, hi in zip(bounds[:-1], bounds[1:])])
    est = {"h_hat": np.empty(s.h.shape, np.complex64), "delta": np.empty(s.h.shape[:-1])}  # the blocks write here
    outs = [model.evaluate(p, s.take(slice(lo, hi)), d.take(slice(lo, hi)),
                           estimate_out=(est["h_hat"][lo:hi], est["delta"][lo:hi]))
            for lo, hi in zip(bounds[:-1], bounds[1:])]
    joined = _concat([{k: v for k, v in o.items() if k not in est} for o in outs])
    return {k: est[k] if k in est else joined[k] for k in outs[0]}


def _concat(outs: list):
    """Concatenate per-block outputs along the batch axis (dicts recursively)."""
    if isinstance(outs[0], dict):
        return {k: _concat([o[k] for o in outs]) for k in outs[0]}
    return np.concatenate(outs, axis=0)


class EntUsrEnv(MultiAgentEnv):
    """Batched ENT environment; randomness comes from one numpy Generator per `reset(seed)` and
    its draws do not depend on the actions, so every policy sees the same channels and targets."""

    def __init__(self, p: Params, base: layout.Layout, num_envs: int, seed: int | None = None):
        self.p, self.base, self.num_envs = p, base, int(num_envs)
        self.frames_per_episode = p.frames
        self.G, self.E = sensing.transition(p)
        nk, nq = p.K + p.Q, p.MK + p.MQ
        self.ch_dim = p.A * p.K * (2 * p.N + 2)
        self.lcp_dim = 2 * p.K + 2 * p.A + self.ch_dim + 8 * p.Q + 2
        self.rep_dim = self.ch_dim + 8 * p.Q + p.A + nk + 1 + 2
        angle = dict(classes=p.n_angles)
        self.specs = {  # every role of the protocol; `roles` are the ones that act under the topology
            "lcp": RoleSpec("lcp", p.M, self.lcp_dim, (Head("classify", "bernoulli", nk),
                                                       Head("power", "continuous", p.A),
                                                       Head("bandwidth", "continuous", 1))),
            "lpb": RoleSpec("lpb", p.M, self.lcp_dim + nk + p.A + 1,
                            (Head("power", "continuous", p.A * nk), Head("beam", "categorical", p.A * nk, **angle))),
            "fg": RoleSpec("fg", 1, p.M * self.rep_dim, (Head("group", "categorical", p.M, classes=p.R),)),
            "fpb": RoleSpec("fpb", p.R, p.M * self.rep_dim + p.M * p.R + p.R,
                            (Head("power", "continuous", p.MA * nq), Head("beam", "categorical", p.MA * nq, **angle))),
        }
        acting = topology.acting_roles(p.topology)
        self.roles = {r: self.specs[r] for r in acting}
        self.stages = tuple(tuple(r for r in st if r in acting) for st in STAGES if any(r in acting for r in st))
        self.state_dim = p.M * self.lcp_dim + p.M * self.rep_dim + len(STAGES)
        self.reset(seed)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> None:
        p, n = self.p, self.num_envs
        self.rng = np.random.default_rng(np.random.SeedSequence(seed))
        self.ap = layout.perturb(self.base.ap, p, n, self.rng)
        self.users = layout.perturb(self.base.users, p, n, self.rng)
        self.lam = channels.large_scale(self.ap, self.users, p.fc)
        theta = channels.bearing(self.ap, self.users)
        self.h_prev = channels.init_channel(self.lam, theta, p, self.rng)  # eq. 2
        pos = layout.perturb(self.base.targets, p, n, self.rng)
        speed = self.rng.uniform(p.v_min, p.v_max, size=(n, p.MQ))
        heading = self.rng.uniform(-np.pi, np.pi, size=(n, p.MQ))
        self.x = np.concatenate([pos, (speed[..., None] * np.stack([np.cos(heading), np.sin(heading)], -1))], -1)
        std = np.array([p.prior_pos_std] * 2 + [p.prior_vel_std] * 2)
        self.J = np.broadcast_to(np.diag(1.0 / std**2), (n, p.MQ, 4, 4)).copy()  # J_q[0]
        self.x_hat = self.x + self.rng.standard_normal(self.x.shape) * std
        self.frame = 0
        self._begin_frame()

    def _begin_frame(self) -> None:
        p, n = self.p, self.num_envs
        self.h = channels.evolve(self.h_prev, self.lam, p.rho, self.rng)  # eq. 1
        self.x = sensing.move(self.x, self.G, self.E, self.rng)  # eq. 4
        self.pilot_noise = channels.cn(self.rng, self.h.shape)
        self.z = self.rng.standard_normal((n, p.MQ, 4))
        self.x_pred = self.x_hat @ self.G.T  # Remark 4
        self.stage = 0  # index into STAGES (all roles)
        self.played = 0  # stages of `self.stages` (acting roles) played this frame
        self.actions: dict[str, dict[str, np.ndarray]] = {}
        self.decision: model.Decision | None = None
        blk = model._diag_blocks  # Phase-I estimates: users of cell m at its APs on subband m, D = B D~
        lam = blk(self.lam[..., None].repeat(p.M, -1), p)
        h_hat, delta = channels.mmse_estimate(blk(self.h, p), blk(self.h_prev, p), lam, float(p.B * p.D_ce),
                                              blk(self.pilot_noise, p), p)
        self._obs_lcp = self._lcp_features(h_hat, delta)
        self._play_fixed()

    def _play_fixed(self) -> None:
        """Apply the topology's fixed rules to the non-acting roles of the current stage, and skip
        the stages where no role acts."""
        while self.stage < len(STAGES):
            for role in STAGES[self.stage]:
                if role not in self.roles:
                    self.actions[role] = topology.fixed_actions(self.p.topology, role, self.specs[role],
                                                                self.num_envs)
            if any(role in self.roles for role in STAGES[self.stage]):
                return
            self.stage += 1

    def frame_state(self) -> model.FrameState:
        """The current frame's state: one object while the frame's arrays are the same (they are replaced, never
        written in place), so its kept terms (`FrameState.terms`) serve every evaluation of the frame, the
        branches' included (a branch shares the object until its own arrays change)."""
        arrays = (self.ap, self.users, self.lam, self.h, self.h_prev, self.pilot_noise, self.x, self.x_pred, self.J)
        s = self.__dict__.get("_frame_state")
        if s is None or any(a is not getattr(s, f.name) for a, f in zip(arrays, fields(s))):
            s = self._frame_state = model.FrameState(*arrays)
        return s

    # ------------------------------------------------------------- observations
    def _lcp_features(self, hl: np.ndarray, dl: np.ndarray) -> np.ndarray:
        p, n = self.p, self.num_envs
        scale = p.P_max / (p.B * p.noise)
        norm = np.linalg.norm(hl, axis=-1)
        unit = hl / np.maximum(norm, 1e-300)[..., None]
        ch = np.concatenate([np.log10(np.maximum(norm**2 * scale, 1e-30))[..., None], unit.real, unit.imag,
                             np.log10(np.maximum(dl * scale, 1e-30))[..., None]], axis=-1)  # (n, M, A, K, 2N+2)
        self._ch = ch
        self._tgt = self._target_features()  # (n, M, Q, 8)
        return np.concatenate([
            self.users.reshape(n, p.M, 2 * p.K) / p.area, self.ap.reshape(n, p.M, 2 * p.A) / p.area,
            ch.reshape(n, p.M, -1), self._tgt.reshape(n, p.M, -1),
            np.broadcast_to(self.base.centers / p.area, (n, p.M, 2))], axis=-1).astype(np.float32)

    def _target_features(self) -> np.ndarray:
        p, n = self.p, self.num_envs
        xp = self.x_pred / np.array([p.area, p.area, p.v_max, p.v_max])
        var = np.diagonal(np.linalg.inv(self.J), axis1=-2, axis2=-1)
        return np.concatenate([xp, np.log10(np.maximum(var, 1e-30))], -1).reshape(n, p.M, p.Q, 8)

    def _reported(self) -> np.ndarray:
        """s_m^F of eq. 74, (n, M, rep_dim); needs LCP's action."""
        p, n = self.p, self.num_envs
        lcp = self.actions["lcp"]
        cls = np.asarray(lcp["classify"]).reshape(n, p.M, p.K + p.Q) > 0.5
        ch = self._ch * cls[:, :, None, : p.K, None]
        tgt = self._tgt * cls[:, :, p.K:, None]
        p_loc, b_loc = act.local_shares(p, cls, lcp["power"], lcp["bandwidth"])
        p_fed, b_fed = 1.0 - p_loc, 1.0 - np.rint(b_loc * p.B) / p.B
        return np.concatenate([ch.reshape(n, p.M, -1), tgt.reshape(n, p.M, -1), p_fed, cls.astype(float), b_fed,
                               np.broadcast_to(self.base.centers / p.area, (n, p.M, 2))], axis=-1).astype(np.float32)

    def _require(self, stage: int, role: str) -> None:
        if self.stage < stage:
            raise RuntimeError(f"role {role!r} observes at stage {stage} of {STAGES}, the frame is at stage "
                               f"{self.stage}: act the earlier stages first")

    def observe(self, role: str) -> np.ndarray:
        p, n = self.p, self.num_envs
        if role == "lcp":
            return self._obs_lcp
        if role == "lpb":
            self._require(1, role)
            lcp = self.actions["lcp"]
            cls = np.asarray(lcp["classify"], float).reshape(n, p.M, -1)
            p_loc, b_loc = act.local_shares(p, cls > 0.5, lcp["power"], lcp["bandwidth"])
            extra = np.concatenate([cls, p_loc, b_loc], -1)
            return np.concatenate([self._obs_lcp, extra.astype(np.float32)], -1)
        if role == "fg":
            self._require(1, role)
            return self._reported().reshape(n, 1, -1)
        if role == "fpb":
            self._require(2, role)
            group = act.repair_groups(np.asarray(self.actions["fg"]["group"]).reshape(n, p.M), p)
            onehot = group[..., None] == np.arange(p.R)  # (n, M, R)
            rep = self._reported()[:, None] * onehot.transpose(0, 2, 1)[..., None]  # (n, R, M, rep)
            tail = np.concatenate([np.broadcast_to(onehot.reshape(n, 1, -1), (n, p.R, p.M * p.R)),
                                   np.broadcast_to(np.eye(p.R), (n, p.R, p.R))], -1)
            return np.concatenate([rep.reshape(n, p.R, -1), tail], -1).astype(np.float32)
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(self.specs)}")

    def state(self) -> np.ndarray:
        p, n = self.p, self.num_envs
        fg = self._reported().reshape(n, -1) if self.stage >= 1 else np.zeros((n, p.M * self.rep_dim), np.float32)
        stage = np.broadcast_to(np.eye(len(STAGES), dtype=np.float32)[min(self.stage, 2)], (n, len(STAGES)))
        return np.concatenate([self._obs_lcp.reshape(n, -1), fg, stage], -1)

    def reference_actions(self) -> dict[str, dict[str, np.ndarray | None]]:
        """Per acting role and head, one agent-independent action (size,) of the CCN-MRT rule, None
        where it has no preference (grouping; absolute beams, whose MRT class depends on the channel).
        With `Params.reference_federate` f > 0 the LCP reference is a mixed rule: every classification
        bit federated with probability f (a fractional bit reference), local power and bandwidth shares
        1 - f, the rest left to the federated regime (eq. 10). With `resource_split=proportional` the
        power and bandwidth reference is 1/2: each CCN splits its resources by its share of local services."""
        p = self.p
        nk, nq, f = p.K + p.Q, p.MK + p.MQ, p.reference_federate
        mrt = (lambda n: np.zeros(n, np.int64)) if p.beam_relative else (lambda n: None)
        share = 0.5 if p.resource_split == "proportional" else 1.0 - f  # proportional: u = 1/2 splits by services
        rule = {"lcp": {"classify": np.full(nk, f), "power": np.full(p.A, share), "bandwidth": np.full(1, share)},
                "lpb": {"power": np.ones(p.A * nk), "beam": mrt(p.A * nk)},
                "fg": {"group": None},
                "fpb": {"power": np.ones(p.MA * nq), "beam": mrt(p.MA * nq)}}
        return {r: rule[r] for r in self.roles}

    # ------------------------------------------------------------------ actions
    def act(self, actions: dict[str, dict[str, np.ndarray]]) -> None:
        if self.played >= len(self.stages):
            raise RuntimeError("all stages of this frame have acted; call end_frame()")
        stage = self.stages[self.played]
        if set(actions) != set(stage):
            raise ValueError(f"stage {self.played} {stage} needs actions of exactly its roles, got {sorted(actions)}")
        for role in stage:
            self.actions[role] = {h: np.asarray(v) for h, v in actions[role].items()}
        self.played += 1
        self.stage += 1
        self._play_fixed()

    def set_decision(self, decision: model.Decision) -> None:
        """Apply a full decision for this frame (per-frame optimizers), bypassing the stages."""
        if self.played:
            raise RuntimeError(f"set_decision() after {self.played} stage(s) of this frame acted")
        self.decision = decision
        self.stage, self.played = len(STAGES), len(self.stages)

    def branch(self) -> "EntUsrEnv":
        """The contract's independent copy without copying the channels: a shallow copy with its own action
        dict and random generator. Every other attribute is replaced, never written in place, by `act`,
        `end_frame` and `reset` (tests/test_ent_usr_env.py plays a branch on and checks this env unmoved)."""
        twin = copy.copy(self)
        twin.actions = dict(self.actions)
        twin.rng = copy.deepcopy(self.rng)
        return twin

    def _decision(self, caller: str) -> model.Decision:
        """The frame's full decision (set_decision's, or the stages' actions decoded); every stage must have acted."""
        if self.stage < len(STAGES):
            raise RuntimeError(f"{caller}() at stage {self.played} of {self.stages}: every stage must act first")
        return self.decision if self.decision is not None else act.decode(self.p, self.actions)

    def frame_reward(self) -> np.ndarray:
        """The frame's reward r_n (eq. 75) for the actions played, without the Kalman update and the next
        frame's draws of `end_frame` (equal to its reward: tests/test_ent_usr_env.py)."""
        return evaluate_blocks(self.p, self.frame_state(), self._decision("frame_reward"))["reward"]

    def _same_frame(self, other: "EntUsrEnv") -> bool:
        """`other` stands on this env's frame: the same parameters and the very same frame-state arrays."""
        mine, theirs = self.frame_state(), other.frame_state()
        return other.p is self.p and all(getattr(mine, f.name) is getattr(theirs, f.name) for f in fields(mine))

    def frame_rewards(self, branches) -> list[np.ndarray]:
        """The contract's `frame_rewards` in one evaluation: the branches' decisions stacked along the batch
        axis over this frame's state repeated. Every quantity of model.evaluate is per environment, so each
        reward equals the branch's own `frame_reward` (tests/test_ent_usr_env.py). Branches that do not
        stand on this env's frame (or are not ent-usr envs) are scored one by one."""
        if len(branches) < 2 or not all(isinstance(b, EntUsrEnv) and self._same_frame(b) for b in branches):
            return super().frame_rewards(branches)
        d = model.Decision.stack([b._decision("frame_reward") for b in branches])
        reward = evaluate_blocks(self.p, self.frame_state().repeat(len(branches), self.p), d)["reward"]
        return list(reward.reshape(len(branches), self.num_envs))

    def end_frame(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        d = self._decision("end_frame")
        out = evaluate_blocks(self.p, self.frame_state(), d)
        self.last = out
        self.last_decision = d
        self.x_hat = sensing.kalman_update(self.x_pred, out["J_pred"], out["J"], out["F"], self.x, self.z)
        self.J = out["J"]
        self.h_prev = self.h
        self.frame += 1
        done = self.frame >= self.frames_per_episode
        if not done:
            self._begin_frame()
        return out["reward"], np.full(self.num_envs, done), frame_metrics(self.p, out, d)
