"""Per-frame power allocation of ent-usr for a fixed topology and fixed beams, as monotonic
programs in SINR space (MAPEL-style; Qian, Zhang, Huang, IEEE TWC 2009).

Power model. Every service s (user or target of CCN m, index j) has one power level lv_s >= 0
(frame-problem variable `lv_{m}_{j}`, default 1): AP a gives it the per-subcarrier power
p_as = c_as lv_s, where c_as = share_as P_a^X / B_a^X is the reference decision's per-subcarrier
power (eq. 14-17, 62a, 63a, 67a, 68a; share_as from the sensing weights w). AP a's budget (eq. 16 /
17) reads sum_s share_as lv_s <= 1. Beams (codebook MRT, eq. 62b, 67b, or true MRT, mrt.py) and the
topology (eq. 7-12) stay those of the reference. True-MRT beams enter through mrt.py's vectors
(`mrt.beams`) and beampattern (`mrt._pattern`): a federated user's beam changes with the subband, so a
CFN block's gains G_ikk' use the subband-i beams and its sensing terms keep one beampattern per subband
(the FIM of eq. 28-31 summed per subband, as `mrt.fim`).

Separability. CCNs and CFNs use disjoint subcarriers and disjoint budgets (P^L / P^F, eq. 10), and
U (eq. 43) is a sum over services, so the problem splits into one block per CCN (its local
services) and one per CFN (its federated services); the signaling S (eq. 39-41, 46) does not
depend on the powers, so maximizing sum_blocks U_block / S maximizes the USR (eq. 42).

Monotonic reformulation of a block. y = (gamma_k for its users, lv_t for its targets).
  * user k's SINR on subband i (eq. 24-25) with powers lv: lv_k G_ikk / (sum_{k' != k} lv_k' G_ikk'
    + sigma + sum_s E_iks lv_s), G_ikk' = |sum_a sqrt(c_ak') h_hat_aki^H w_ak'i|^2 (eq. 24),
    E_iks = sum_a delta_aki c_as (eq. 25: estimation error times the AP's total power);
  * the smallest user powers meeting SINR >= gamma_k on every subband the user is served on
    (eq. 26 weights > 0), given the targets' lv_t, are the fixed point of Yates' standard interference
    function, reached from 0 by increasing iterates: each iterate is increasing in y;
  * g(y) = max(max_a sum_s share_as lv_s - 1, max_k lv_k / LV_MAX - 1) (eq. 16-17), increasing;
  * f(y) = (sum_k U^C(sum_i W_ki log(1 + gamma_k)) + sum_t U^R_t(lv)) / S (eq. 26, 42-45), increasing:
    eq. 44-45 clip monotonically, Gamma (eq. 32) is linear with non-negative coefficients in lv, the
    FIM (eq. 28-34) grows with Gamma in the PSD order, so the errors (eq. 37-38) shrink; the user
    powers grow with y.
The program is a restriction of the power program over the block's lv: users sit at their smallest
levels for their SINR targets, although a user's beam also illuminates the targets (eq. 32 sums
over every service's power), and for a CFN block a user's SINR target must hold on each of its
subbands (one power per service for all of them, decision 5). Polyblock's bound certifies this
restricted program; the exact power program in lv is `power_convex` (SCA, no bound)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from isacbench.api import MonotonicProgram, SeparablePrograms

from . import channels, model, mrt, sensing, signaling
from .config import Params

LV_MAX = 100.0  # upper end of every power level lv_s (frame-problem variable bound)
YATES_ITERATIONS = 300
YATES_RTOL = 1e-10


def apply_levels(p: Params, d: model.Decision, lv: np.ndarray) -> model.Decision:
    """Scale each (AP, service) share by the service's level lv (B, M, K+Q), then, per AP and regime,
    scale all shares down by the same factor where they sum above 1 (budget of eq. 16-17)."""
    b = lv.shape[0]
    ca = np.arange(p.MA) // p.A
    loc = d.frac_loc * lv[:, ca]  # (B, MA, K+Q): own cell's services
    users, targets = lv[..., : p.K].reshape(b, p.MK), lv[..., p.K:].reshape(b, p.MQ)
    fed = d.frac_fed * np.concatenate([users, targets], axis=1)[:, None, :]
    d.frac_loc = loc / np.maximum(loc.sum(-1, keepdims=True), 1.0)
    d.frac_fed = fed / np.maximum(fed.sum(-1, keepdims=True), 1.0)
    return d


@dataclass
class Block:
    """One CCN (regime L) or CFN (regime F) power block; arrays per unit power level."""

    label: str
    users: np.ndarray  # (U,) service ids m*(K+Q)+j of the block's users
    targets: np.ndarray  # (T,) service ids of its targets
    target_q: np.ndarray  # (T,) global target indices (for U^R)
    gain: np.ndarray  # (I, U, U) G_ikk'
    err: np.ndarray  # (I, U, U+T) E_iks
    weight: np.ndarray  # (U, I) rate weights of eq. 26 (0: subband not used)
    load: np.ndarray  # (A_b, U+T) share_as
    noise: float
    sense: dict  # per target: tau / f legs, u, Gamma coefficients, RB sums, J_pred (see _sensing)

    @property
    def dim(self) -> int:
        return len(self.users) + len(self.targets)

    def key(self) -> tuple[str, str]:
        """The block's identity (`SeparablePrograms.keys`): its label and a digest of every array
        that defines its power program; equal keys mean the same program (the signaling S, a
        positive factor of the objective, is left out)."""
        h = hashlib.sha1()
        arrays = [self.users, self.targets, self.target_q, self.gain, self.err, self.weight, self.load,
                  np.array([self.noise])] + [np.asarray(self.sense[k]) for k in sorted(self.sense)]
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype, a.shape)).encode())
            h.update(a.tobytes())
        return self.label, h.hexdigest()

    def sinr(self, lv: np.ndarray) -> np.ndarray:
        """(n, U+T) levels -> (n, I, U) SINR of eq. 24-25."""
        lu = lv[:, : len(self.users)]
        rx = np.einsum("ikj,nj->nik", self.gain, lu)
        sig = np.einsum("ikk,nk->nik", self.gain, lu)
        return sig / (rx - sig + self.noise + np.einsum("iks,ns->nik", self.err, lv))

    def min_user_levels(self, gamma: np.ndarray, lv_t: np.ndarray) -> np.ndarray:
        """The smallest user levels with SINR >= gamma on every used subband, given the targets'
        levels (n, U); 2 LV_MAX where none exist. Per subband the condition is the linear system
        (I - D_i B_i) q = D_i c_i (D_i = gamma / G_ikk, B_i the off-diagonal gains plus error terms,
        c_i = sigma + target error terms): its solution q_i is the smallest one iff it is >= 0 (D B
        non-negative: Perron-Frobenius), and is increasing in (gamma, lv_t). With several subbands
        (CFN) Yates' standard-interference iteration q <- max_i D_i (B_i q + c_i) runs from
        max_i q_i <= q*, increasing to the smallest common solution q*; every iterate is increasing
        in (gamma, lv_t), so a truncated run under-estimates q* monotonically (g stays increasing and
        the feasible set is over-approximated: bounds stay valid)."""
        n, nu = gamma.shape
        used = self.weight.T > 0  # (I, U)
        diag = np.einsum("ikk->ik", self.gain)
        ok = used & (diag > 0)
        active = ok[None] & (gamma[:, None, :] > 0)  # (n, I, U) rows with a constraint
        scale = np.where(active, gamma[:, None, :] / np.where(ok, diag, 1.0)[None], 0.0)
        base = self.noise + np.einsum("ikt,nt->nik", self.err[:, :, nu:], lv_t)  # c_i (n, I, U)
        mat = self.gain - np.einsum("ik,kj->ikj", diag, np.eye(nu)) + self.err[:, :, :nu]  # B_i
        system = np.eye(nu) - scale[..., None] * mat[None]
        q_i = np.linalg.solve(system, (scale * base)[..., None])[..., 0]  # (n, I, U)
        bad = np.any(q_i < -1e-12 * np.abs(q_i).max(axis=(1, 2), initial=0.0)[:, None, None], axis=(1, 2))
        bad |= np.any(np.any(used & (diag <= 0), axis=0)[None] & (gamma > 0), axis=1)
        q = np.minimum(np.maximum(q_i, 0.0).max(axis=1), 2 * LV_MAX)
        if len(self.weight[0]) > 1:
            for _ in range(YATES_ITERATIONS):
                req = np.einsum("nik,nik->nik", scale, base + np.einsum("ikj,nj->nik", mat, q)).max(axis=1)
                req = np.minimum(req, 2 * LV_MAX)
                done = np.all(req - q <= YATES_RTOL * np.maximum(req, 1e-300))
                q = req
                if done:
                    break
        return np.where(bad[:, None], 2 * LV_MAX, q)

    @property
    def caps(self) -> np.ndarray:
        """(U+T,) the largest level each service can get alone: min(LV_MAX, 1 / max_a share_as)."""
        top = np.max(self.load, axis=0, initial=0.0)
        return np.where(top > 0, np.minimum(LV_MAX, 1.0 / np.where(top > 0, top, 1.0)), 0.0)

    def high(self, p: Params) -> np.ndarray:
        """Box: gamma_k up to min(saturation of eq. 44, SINR alone at full power); lv_t up to the
        largest level any of its APs can give it."""
        cap = self.caps
        nu = len(self.users)
        w = self.weight.sum(axis=1)
        sat = np.where(w > 0, np.expm1(p.rate_max / np.where(w > 0, w, 1.0)), 0.0)
        used = self.weight.T > 0
        alone = np.where(used, np.einsum("ikk->ik", self.gain) * cap[None, :nu] / self.noise, np.inf).min(axis=0)
        return np.concatenate([np.minimum(sat, np.where(np.isfinite(alone), alone, 0.0)), cap[nu:]])


class PowerPrograms:
    """The blocks of one frame problem at a reference decision: as MonotonicPrograms in SINR space
    (`separable`, objectives add up to the USR; `joint`, all blocks in one program, f = sum,
    g = max) and as ConvexPrograms in the power levels (`convex`, `power_convex`)."""

    def __init__(self, p: Params, state: model.FrameState, x_ref: dict, to_decision: Callable[[dict], model.Decision]):
        self.p, self.state, self.x_ref = p, state, dict(x_ref)
        nk = p.K + p.Q
        self.lv_ref = np.array([[float(x_ref.get(f"lv_{m}_{j}", 1.0)) for j in range(nk)] for m in range(p.M)])
        unit = {**x_ref, **{f"lv_{m}_{j}": 1.0 for m in range(p.M) for j in range(nk)}}
        self.d_unit = to_decision(unit)  # shares at lv = 1 (sum <= 1 per AP and regime)
        out = model.evaluate(p, state, self.d_unit)
        self.signaling = float(out["signaling"][0])
        self.blocks = _blocks(p, self.d_unit, out, state, _true_mrt_beams(p, state, self.d_unit, out["h_hat"]))
        self.programs = [self._program(k) for k in range(len(self.blocks))]
        self.reference = [self._reference_point(b) for b in self.blocks]

    # ------------------------------------------------------------------ maps
    def levels(self, k: int, y: np.ndarray) -> np.ndarray:
        """(n, d) block points -> (n, U+T) levels (users at their smallest levels)."""
        b = self.blocks[k]
        nu = len(b.users)
        return np.concatenate([b.min_user_levels(y[:, :nu], y[:, nu:]), y[:, nu:]], axis=1)

    def sense_utility(self, k: int, lv: np.ndarray) -> np.ndarray:
        """(n, U+T) block levels -> (n,) sum of U^R (eq. 45) over the block's targets: Gamma (eq. 32)
        linear in lv, FIM (eq. 28-34), BFIM (eq. 36), errors (eq. 37-38), as in model.evaluate."""
        b = self.blocks[k]
        n = len(lv)
        if not len(b.targets):
            return np.zeros(n)
        s = b.sense
        shape = (n,) + s["tau"].shape
        F = sum(sensing.fim(np.broadcast_to(s["tau"], shape), np.broadcast_to(s["f"], shape),
                            np.broadcast_to(s["u"], (n,) + s["u"].shape),
                            s["u"][None] * np.einsum("tas,ns->nat", coef, lv),  # lambda^R Gamma / sigma (model)
                            np.broadcast_to(sums, (n,) + sums.shape)) for coef, sums in subbands(s))
        err_pos, err_vel = sensing.errors(s["J_pred"][None] + F)  # eq. 36-38
        return signaling.sense_utility(err_pos, err_vel, self.p).sum(axis=1)

    def objective(self, k: int, y: np.ndarray) -> np.ndarray:
        b = self.blocks[k]
        nu = len(b.users)
        rate = b.weight.sum(axis=1)[None] * np.log1p(y[:, :nu])  # eq. 26 at SINR = gamma
        # levels capped at what each service can get alone: no change where g <= 0 (every AP load
        # <= 1), still increasing, and a much tighter f at infeasible points (polyblock's vertices)
        lv = np.minimum(self.levels(k, y), b.caps)
        u = signaling.comm_utility(rate, self.p).sum(axis=1) + self.sense_utility(k, lv)
        return u / self.signaling  # eq. 42-43

    def constraint(self, k: int, y: np.ndarray) -> np.ndarray:
        b = self.blocks[k]
        lv = self.levels(k, y)
        return np.maximum((lv @ b.load.T).max(axis=1, initial=0.0) - 1.0,
                          lv[:, : len(b.users)].max(axis=1, initial=0.0) / LV_MAX - 1.0)

    def combine(self, ys: list[np.ndarray]) -> dict:
        """One point per block -> a frame decision with those power levels."""
        return self.combine_levels([self.levels(k, np.asarray(y, float)[None])[0] for k, y in enumerate(ys)])

    def combine_levels(self, lvs: list[np.ndarray]) -> dict:
        """Power levels (users, then targets) per block -> a frame decision."""
        lv = self.lv_ref.ravel().copy()
        for b, x in zip(self.blocks, lvs):
            lv[np.concatenate([b.users, b.targets])] = np.clip(x, 0, LV_MAX)
        nk = self.p.K + self.p.Q
        return {**self.x_ref, **{f"lv_{s // nk}_{s % nk}": float(v) for s, v in enumerate(lv)}}

    def reference_levels(self, k: int) -> np.ndarray:
        """The reference decision's levels of block k, scaled down to its APs' budgets (eq. 16-17)."""
        b = self.blocks[k]
        lv = self.lv_ref.ravel()[np.concatenate([b.users, b.targets])]
        return lv / max(1.0, float((b.load @ lv).max(initial=0.0)))

    def separable(self, reference_evaluations: int = 0) -> SeparablePrograms:
        """The blocks as MonotonicPrograms from the reference decision's points; choosing the
        reference took `reference_evaluations` problem evaluations."""
        return SeparablePrograms(self.programs, self.reference, self.x_ref, self.combine, reference_evaluations)

    def convex(self, reference_evaluations: int = 0) -> SeparablePrograms:
        """The blocks as ConvexPrograms in the power levels (`power_convex`) from the reference
        decision's levels, scaled into the APs' budgets."""
        from .power_convex import PowerBlockProgram

        def program(k: int) -> PowerBlockProgram:
            def to_decision(lv):
                lvs = [self.reference_levels(j) for j in range(len(self.blocks))]
                lvs[k] = lv
                return self.combine_levels(lvs)
            return PowerBlockProgram(self.p, self.blocks[k], self.signaling, self.reference_levels(k), to_decision)

        programs = [program(k) for k in range(len(self.blocks))]
        return SeparablePrograms(programs, [pr.start for pr in programs], self.x_ref, self.combine_levels,
                                 reference_evaluations, keys=[b.key() for b in self.blocks])

    def _program(self, k: int) -> MonotonicProgram:
        b = self.blocks[k]

        def to_decision(y):
            ys = list(self.reference)
            ys[k] = y
            return self.combine(ys)

        return MonotonicProgram(low=np.zeros(b.dim), high=b.high(self.p), objective=lambda y: self.objective(k, y),
                                constraint=lambda y: self.constraint(k, y), to_decision=to_decision, label=b.label)

    def _reference_point(self, b: Block) -> np.ndarray:
        """The reference decision's point: each user's worst SINR over its subbands, targets' levels
        (levels of a reference above some AP's budget are first scaled down to it)."""
        lv = self.lv_ref.ravel()[np.concatenate([b.users, b.targets])][None]
        lv = lv / max(1.0, float((lv @ b.load.T).max(initial=0.0)))
        s = np.where((b.weight.T > 0)[None], b.sinr(lv), np.inf).min(axis=1)[0]
        y = np.concatenate([np.where(np.isfinite(s), s, 0.0), lv[0, len(b.users):]])
        return np.minimum(y, b.high(self.p)) * (1 - 1e-9)  # a full-budget AP reads 1 + 1e-16 otherwise

    def joint(self) -> MonotonicProgram:
        """All blocks in one program (f = sum of the block objectives, g = max of the constraints)."""
        cuts = np.cumsum([0] + [b.dim for b in self.blocks])
        parts = lambda y: [y[:, cuts[k]:cuts[k + 1]] for k in range(len(self.blocks))]  # noqa: E731
        return MonotonicProgram(
            low=np.zeros(cuts[-1]), high=np.concatenate([pr.high for pr in self.programs]),
            objective=lambda y: sum(self.objective(k, z) for k, z in enumerate(parts(y))),
            constraint=lambda y: np.max([self.constraint(k, z) for k, z in enumerate(parts(y))], axis=0),
            to_decision=lambda y: self.combine([z[0] for z in parts(np.asarray(y, float)[None])]),
            label="joint")


def subbands(sense: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """A block's sensing terms per beampattern: [(coef (T, A, S), sums (T, 3))], one pair for codebook
    beams and local blocks, one per subband of a CFN block with true-MRT beams (coef (I, T, A, S),
    sums (I, T, 3)): the block's FIM is the sum of sensing.fim over the pairs (eq. 28-31, `mrt.fim`)."""
    coef, sums = sense["coef"], sense["sums"]
    return [(coef, sums)] if coef.ndim == 3 else list(zip(coef, sums))


def _true_mrt_beams(p: Params, state: model.FrameState, d: model.Decision, h_hat: np.ndarray) -> mrt.Beams | None:
    """The beam vectors model.evaluate uses for the (batch-1) decision d (`mrt.beams`), None for codebook beams."""
    if not mrt.uses_true_mrt(d):
        return None
    hl = model._diag_blocks(h_hat, p)
    sub_ap = d.group[:, np.arange(p.MA) // p.A][:, :, None] == d.group[:, None, :]
    th_q = channels.bearing(state.ap, state.x_pred[..., :2])
    return mrt.beams(p, d, hl, h_hat, th_q, *model.resolve_mrt(p, d, hl, h_hat, sub_ap, th_q))


def _sensing(p: Params, state: model.FrameState) -> tuple[Callable, Callable, Callable]:
    """Sensing terms of a block at the predicted target states (Remark 4), as in model.evaluate:
    legs of eq. 6, u_aq = 1 / d_aq^2, coef[(i,) t, a, s] = c_as |v(theta_aq)^H w_as(i)|^2 lambda-constant /
    sigma (eq. 32 per unit level, below eq. 27), the block regime's RB sums (eq. 29-31, per subband i
    for true-MRT CFN blocks), J_pred (eq. 36). Returns geo(aps, q, c, pattern, sums) and the beampatterns
    |v(theta_aq)^H w|^2 (A_b, T, S) of codebook indices, code(aps, q, beams), and of beam vectors (..., A_b, S, N),
    exact(aps, q, w) (mrt.py's)."""
    dist, tau_leg, f_leg = sensing.geometry(state.ap, state.x_pred, p.fc)
    th_q = channels.bearing(state.ap, state.x_pred[..., :2])[0]  # (MA, MQ)
    vq = channels.steering(th_q, p.N).conj()
    code_gain = np.abs(vq @ channels.steering(p.angles, p.N).T) ** 2  # (MA, MQ, n_angles)
    G, E = sensing.transition(p)
    J_pred = sensing.prior_information(state.J_prev, G, E)[0]
    scale = sensing.radar_constant(p) / p.noise

    def code(aps, q, beams):
        cg = code_gain[aps][:, q]  # (A_b, T, n_angles)
        return np.take_along_axis(cg, np.broadcast_to(beams[:, None, :], (len(aps), len(q), beams.shape[1])), axis=2)

    def exact(aps, q, w):
        w = w.reshape((-1,) + w.shape[-3:])
        return mrt._pattern(np.broadcast_to(vq[aps][:, q], (len(w), len(aps), len(q), p.N)), w)

    def geo(aps, q, c, pattern, sums):
        sums = np.asarray(sums)
        return {"tau": tau_leg[0][aps][:, q], "f": f_leg[0][aps][:, q], "u": 1.0 / dist[0][aps][:, q] ** 2,
                "coef": np.swapaxes(pattern * c[:, None, :] * scale, -3, -2),
                "sums": np.broadcast_to(sums[..., None, :], sums.shape[:-1] + (len(q), 3)), "J_pred": J_pred[q]}
    return geo, code, exact


def _blocks(p: Params, d: model.Decision, out: dict, state: model.FrameState, bm: mrt.Beams | None = None
            ) -> list[Block]:
    """Gains (eq. 24), error terms (eq. 25), rate weights (eq. 26), budget rows (eq. 16-17) and sensing
    terms (eq. 27-36) of every non-empty CCN and CFN block of the (batch-1) decision d, from the
    model's estimates and beams (bm: the true-MRT beam vectors, `_true_mrt_beams`; None: codebook)."""
    nk = p.K + p.Q
    pw_loc, pw_fed, _ = model.per_subcarrier_powers(p, d)
    pw_loc, pw_fed = pw_loc[0], pw_fed[0]
    h_hat, delta = out["h_hat"][0], out["delta"][0]  # (MA, MK, M, N), (MA, MK, M)
    code = channels.steering(p.angles, p.N)
    fed_u, fed_t, group, b_loc = d.fed_users[0], d.fed_targets[0], d.group[0], d.b_loc[0]
    ca = np.arange(p.MA) // p.A
    l_loc = max(p.L - p.K * p.D_ce, 0)  # Remark 3
    geo, code_pattern, exact_pattern = _sensing(p, state)
    blocks = []
    # ---- CCN blocks: cell m's APs, its local services, subband m
    for m in range(p.M):
        aps = np.flatnonzero(ca == m)
        uj = np.flatnonzero(~fed_u[m * p.K:(m + 1) * p.K])
        tj = np.flatnonzero(~fed_t[m * p.Q:(m + 1) * p.Q])
        if not len(uj) + len(tj):
            continue
        cols = np.concatenate([uj, p.K + tj])  # local service index j
        c = pw_loc[aps][:, cols]  # (A, S) per-subcarrier power per unit level
        h = h_hat[aps][:, m * p.K + uj, m]  # (A, U, N)
        if bm is None:
            v = code[out["beam_loc"][0][aps][:, uj]]  # (A, U, N)
            pattern = code_pattern(aps, m * p.Q + tj, out["beam_loc"][0][aps][:, cols])
        else:
            v = bm.loc[0, m][:, uj]  # aps are cell m's A APs, in order
            pattern = exact_pattern(aps, m * p.Q + tj, bm.loc[0, m][:, cols])[0]
        gain = _gains(h[None], v, c[:, : len(uj)])  # (1, U, U)
        err = np.einsum("ak,as->ks", delta[aps][:, m * p.K + uj, m], c)[None]
        w = np.full((len(uj), 1), b_loc[m] * l_loc / (p.M * p.B * p.L))  # eq. 26
        share = d.frac_loc[0][aps][:, cols]
        sums = sensing.rb_sums(p, b_loc[m] * np.eye(p.M, dtype=int)[m], l_loc, np.eye(p.M, dtype=bool)[m])
        sense = geo(aps, m * p.Q + tj, c, pattern, sums)
        blocks.append(Block(f"ccn{m}", m * nk + uj, m * nk + p.K + tj, m * p.Q + tj, gain, err, w, share, p.noise,
                            sense))
    # ---- CFN blocks: APs of the CFN's cells, its federated services, its subbands
    b_fed = p.B - b_loc
    for r in range(p.R):
        cells_r = np.flatnonzero(group == r)
        ku = np.flatnonzero(fed_u & np.isin(np.arange(p.MK) // p.K, cells_r))
        tq = np.flatnonzero(fed_t & np.isin(np.arange(p.MQ) // p.Q, cells_r))
        if not len(ku) + len(tq) or not len(cells_r):
            continue
        aps = np.flatnonzero(np.isin(ca, cells_r))
        cols = np.concatenate([ku, p.MK + tq])
        c = pw_fed[aps][:, cols]
        h = h_hat[aps][:, ku][:, :, cells_r].transpose(2, 0, 1, 3)  # (I, A, U, N)
        if bm is None:
            v = code[out["beam_fed"][0][aps][:, ku]]
        else:  # the beams of subband i (I, A, U, N)
            v = bm.fed_users[0][cells_r][:, aps][:, :, ku]
        gain = _gains(h, v, c[:, : len(ku)])
        err = np.einsum("aki,as->iks", delta[aps][:, ku][:, :, cells_r], c)
        n_fed = fed_u.reshape(p.M, p.K).sum(-1)
        gap = max(int(n_fed[cells_r].sum() - n_fed[m]) for m in cells_r)  # max_m |K_r \ K_m| (Remark 3)
        l_fed = max(p.L - p.D_ce * (max(gap, 0) + p.K), 0)
        w = np.broadcast_to(b_fed[cells_r] * l_fed / (p.M * p.B * p.L), (len(ku), len(cells_r))).copy()
        share = d.frac_fed[0][aps][:, cols]
        if bm is None:
            sums = sensing.rb_sums(p, b_fed, l_fed, group == r)
            pattern = code_pattern(aps, tq, out["beam_fed"][0][aps][:, cols])
        else:  # one beampattern and one set of RB sums per subband i of the CFN (mrt.fim)
            sums = np.stack([sensing.rb_sums(p, b_fed, l_fed, (group == r) & (np.arange(p.M) == i)) for i in cells_r])
            wt = bm.fed_targets[0][aps][:, tq]  # the targets' beams, the same on every subband
            pattern = exact_pattern(aps, tq, np.concatenate([v, np.broadcast_to(wt, (len(cells_r),) + wt.shape)],
                                                            axis=2))  # beams (I, A, S, N)
        sense = geo(aps, tq, c, pattern, sums)
        sid = lambda g, n, off: (g // n) * nk + off + g % n  # noqa: E731
        blocks.append(Block(f"cfn{r}", sid(ku, p.K, 0), sid(tq, p.Q, p.K), tq, gain, err, w, share, p.noise, sense))
    return blocks


def _gains(h: np.ndarray, v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """G_ikk' = |sum_a sqrt(c_ak') e^{-j phi_ak'i} h_aki^H v_ak'|^2 (eq. 24 with the co-phasing of
    eq. 62b / 67b). h: (I, A, U, N), v: (A, U, N), or (I, A, U, N) per subband (true MRT), c: (A, U)."""
    inner = np.einsum("iakn,ajn->iakj" if v.ndim == 3 else "iakn,iajn->iakj", h.conj(), v)  # h_aki^H v_ak'
    own = np.einsum("iakk->iak", inner)
    mag = np.abs(own)
    phase = np.where(mag > 0, own.conj() / np.where(mag > 0, mag, 1), 1)  # e^{-j phi_ak'i}
    amp = np.sqrt(c)[None] * phase  # (I, A, k')
    return np.abs(np.einsum("iakj,iaj->ikj", inner, amp)) ** 2
