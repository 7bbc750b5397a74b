"""One frame of the ENT protocol, batched: given the frame's state and the full decision
(classification, partitions, grouping, powers, beams), compute Phase-II estimates, SINRs and
rates (eq. 22-26), FIMs / BFIMs / errors (eq. 27-38), utilities, signaling and USR (eq. 39-46).

Index conventions: AP a in [0, MA) belongs to cell a // A (host AP: a % A == 0); user k in
[0, MK) to cell k // K; target q in [0, MQ) to cell q // Q; subband i = the cell's index.
Per AP, local services are its cell's K users then Q targets; federated services are all MK users
then all MQ targets (eq. 61, 66)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from . import channels, mrt, sensing, signaling
from .config import Params


@dataclass
class FrameState:
    """Everything a frame's outcome depends on besides the decision (batched, leading axis B)."""

    ap: np.ndarray  # (B, MA, 2) AP positions [m]
    users: np.ndarray  # (B, MK, 2) user positions [m]
    lam: np.ndarray  # (B, MA, MK) large-scale fading lambda^C
    h: np.ndarray  # (B, MA, MK, M, N) true channel h[n]
    h_prev: np.ndarray  # (B, MA, MK, M, N) h[n-1]
    pilot_noise: np.ndarray  # (B, MA, MK, M, N) CN(0,1) pilot noise draws of this frame
    x_true: np.ndarray  # (B, MQ, 4) target states x^R[n]
    x_pred: np.ndarray  # (B, MQ, 4) predicted states G x_hat[n-1] (Remark 4)
    J_prev: np.ndarray  # (B, MQ, 4, 4) BFIM J_q[n-1]

    def take(self, idx) -> "FrameState":
        """The environments `idx` of this state, with their part of its kept terms."""
        out = FrameState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})
        kept = self.__dict__.get("_terms")
        if kept is not None:
            out.__dict__["_terms"] = (kept[0], kept[1].map(lambda x: x[idx]))
        return out

    @staticmethod
    def stack(items: list["FrameState"]) -> "FrameState":
        return FrameState(**{f.name: np.concatenate([getattr(s, f.name) for s in items]) for f in fields(FrameState)})

    def repeat(self, k: int, p: Params) -> "FrameState":
        """This state k times along the batch axis (`stack([self] * k)`), with its terms for `p` computed once here
        and repeated: every term is per environment, so they equal the stacked state's own (tests)."""
        out = FrameState.stack([self] * k)
        out.__dict__["_terms"] = (p, self.terms(p).map(lambda x: np.concatenate([x] * k)))
        return out

    def terms(self, p: Params) -> "FrameTerms":
        """The frame's decision-independent terms, computed on the first call for `p` and kept on this state (a
        frame problem evaluates hundreds of decisions on one state; the env keeps one state per frame). `take` and
        `repeat` pass their part on; a `stack`ed state computes its own."""
        cached = self.__dict__.get("_terms")
        if cached is None or cached[0] is not p:
            cached = self.__dict__["_terms"] = (p, FrameTerms.of(p, self))
        return cached[1]


@dataclass(frozen=True)
class FrameTerms:
    """What a frame's outcome needs that no decision changes (read-only arrays): the bearings of the predicted
    targets th_q (B, MA, MQ), the sensing geometry (`sensing.geometry`: dist, tau_leg, f_leg; eq. 6), the codebook
    gains |v(theta_aq)^H v(theta_l)|^2 (B, MA, MQ, n_angles) of eq. 32 and the prior information J_pred (eq. 36)."""

    th_q: np.ndarray
    dist: np.ndarray
    tau_leg: np.ndarray
    f_leg: np.ndarray
    code_gain: np.ndarray
    J_pred: np.ndarray

    @staticmethod
    def of(p: Params, s: FrameState) -> "FrameTerms":
        b = s.ap.shape[0]
        th_q = channels.bearing(s.ap, s.x_pred[..., :2])  # at the predicted positions (Remark 4)
        dist, tau_leg, f_leg = sensing.geometry(s.ap, s.x_pred, p.fc)
        vq = channels.steering(th_q, p.N).conj()
        code_gain = np.abs(vq.reshape(-1, p.N) @ channels.steering(p.angles, p.N).T).reshape(
            b, p.MA, p.MQ, p.n_angles) ** 2
        G, E = sensing.transition(p)
        return FrameTerms(th_q, dist, tau_leg, f_leg, code_gain, sensing.prior_information(s.J_prev, G, E))

    def __post_init__(self):
        for f in fields(self):
            getattr(self, f.name).setflags(write=False)

    def map(self, fn) -> "FrameTerms":
        """The terms with fn applied to each array (fn keeps the leading batch axis: a slice, a repetition)."""
        return FrameTerms(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})


@dataclass
class Decision:
    """The full decision of one frame (batched). Fractions are already projected on the simplex."""

    fed_users: np.ndarray  # (B, MK) bool: user in K^F (eq. 57)
    fed_targets: np.ndarray  # (B, MQ) bool: target in Q^F (eq. 58)
    b_loc: np.ndarray  # (B, M) int: B_m^L (eq. 60); B_m^F = B - B_m^L (eq. 10)
    p_loc: np.ndarray  # (B, MA) W: P_a^L (eq. 59); P_a^F = P_max - P_a^L (eq. 10)
    group: np.ndarray  # (B, M) int in [0, R): CFN of each CCN (eq. 65), |S_r| <= M_max
    frac_loc: np.ndarray  # (B, MA, K+Q): share of P_a^L per local service (eq. 62a, 63a)
    beam_loc: np.ndarray  # (B, MA, K+Q) int: Theta index per local service (eq. 62b, 63b); -1 - c: the
    #                       c-th angle around codebook MRT (-1 = MRT itself, see resolve_mrt / around);
    #                       mrt.TRUE_MRT: true MRT, no codebook angle (w = h_hat / ||h_hat||, see mrt.py)
    frac_fed: np.ndarray  # (B, MA, MK+MQ): share of P_a^F per federated service (eq. 67a, 68a)
    beam_fed: np.ndarray  # (B, MA, MK+MQ) int: beam-angle index (eq. 67b, 68b)

    def take(self, idx) -> "Decision":
        return Decision(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def stack(items: list["Decision"]) -> "Decision":
        return Decision(**{f.name: np.concatenate([getattr(d, f.name) for d in items]) for f in fields(Decision)})


def cells(p: Params):
    """Cell of every AP, user and target."""
    return np.arange(p.MA) // p.A, np.arange(p.MK) // p.K, np.arange(p.MQ) // p.Q


def service_masks(p: Params, d: Decision) -> tuple[np.ndarray, np.ndarray]:
    """Which (AP, service) pairs may carry power: local (B, MA, K+Q) and federated (B, MA, MK+MQ)."""
    ca, ck, cq = cells(p)
    b = d.fed_users.shape[0]
    fk = d.fed_users.reshape(b, p.M, p.K)[:, ca]  # (B, MA, K): own cell's users
    fq = d.fed_targets.reshape(b, p.M, p.Q)[:, ca]
    loc = ~np.concatenate([fk, fq], axis=-1)
    g_ap = d.group[:, ca]  # (B, MA)
    g_srv = np.concatenate([d.group[:, ck], d.group[:, cq]], axis=1)  # (B, MK+MQ)
    fed_srv = np.concatenate([d.fed_users, d.fed_targets], axis=1)
    fed = fed_srv[:, None, :] & (g_ap[:, :, None] == g_srv[:, None, :])
    return loc, fed


def per_subcarrier_powers(p: Params, d: Decision):
    """Per-subcarrier powers p^{X,Y}: B_m^L sum p^L = P_a^L (eq. 16) and
    sum_{m in S_r} B_m^F sum p^F = P_a^F (eq. 17), from the projected fractions."""
    ca, _, _ = cells(p)
    loc_mask, fed_mask = service_masks(p, d)
    b_loc = d.b_loc[:, ca].astype(float)  # (B, MA)
    b_fed_cell = (p.B - d.b_loc).astype(float)  # (B, M)
    onehot = d.group[..., None] == np.arange(p.R)
    b_fed_r = np.einsum("bm,bmr->br", b_fed_cell, onehot)  # sum_{m in S_r} B_m^F
    b_fed = np.take_along_axis(b_fed_r, d.group[:, ca], axis=1)  # (B, MA)
    p_fed_budget = p.P_max - d.p_loc
    with np.errstate(divide="ignore", invalid="ignore"):
        per_l = np.where(b_loc > 0, d.p_loc / b_loc, 0.0)
        per_f = np.where(b_fed > 0, p_fed_budget / b_fed, 0.0)
    pw_loc = d.frac_loc * loc_mask * per_l[..., None]
    pw_fed = d.frac_fed * fed_mask * per_f[..., None]
    return pw_loc, pw_fed, b_fed_r


def _diag_blocks(x: np.ndarray, p: Params) -> np.ndarray:
    """(B, MA, MK, M, ...) -> (B, M, A, K, ...): AP and user of cell m on subband m."""
    b = x.shape[0]
    r = x.reshape(b, p.M, p.A, p.M, p.K, p.M, *x.shape[4:])
    m = np.arange(p.M)
    out = r[:, m, :, m, :, m]  # advanced indices first: (M, B, A, K, ...)
    return np.moveaxis(out, 0, 1)


def evaluate(p: Params, s: FrameState, d: Decision, estimate_out: tuple[np.ndarray, np.ndarray] | None = None
             ) -> dict:
    """Outcome of one frame for every environment of the batch (see the module docstring).
    estimate_out: buffers (h_hat, delta) the Phase-II estimates are written into (channels.mmse_estimate)."""
    b = s.h.shape[0]
    ca, ck, cq = cells(p)
    angles = p.angles
    pw_loc, pw_fed, b_fed_r = per_subcarrier_powers(p, d)
    b_fed_cell = p.B - d.b_loc  # (B, M)

    # ---- channel estimation (eq. 19-22): Phase-I entries do not depend on the decision
    pilots = channels.pilot_counts(p, b_fed_cell)
    h_hat, delta = channels.mmse_estimate(s.h, s.h_prev, s.lam[..., None], pilots, s.pilot_noise, p,
                                          out=estimate_out)

    hl = _diag_blocks(h_hat, p)  # (B, M, A, K, N)
    dl = _diag_blocks(delta, p)  # (B, M, A, K)
    sub_ap = d.group[:, ca][:, :, None] == d.group[:, None, :]  # (B, MA, M): i in S_{r(a)}
    t = s.terms(p)
    th_q = t.th_q  # (B, MA, MQ) at the predicted positions
    beam_loc, beam_fed = resolve_mrt(p, d, hl, h_hat, sub_ap, th_q)
    exact = mrt.beams(p, d, hl, h_hat, th_q, beam_loc, beam_fed)  # None: codebook beams only (mrt.TRUE_MRT)

    # ---- L-regime SINR and rate (eq. 24-26), cell m on subband m with its A APs
    code = channels.steering(angles, p.N)  # v(theta), theta in Theta
    vl = code[beam_loc].reshape(b, p.M, p.A, p.K + p.Q, p.N) if exact is None else exact.loc
    pl = pw_loc.reshape(b, p.M, p.A, p.K + p.Q)
    phase = _coherent_phase(np.einsum("...n,...n->...", hl.conj(), vl[..., : p.K, :]))  # e^{-j phi_ak} (eq. 62b)
    tx = (np.sqrt(pl[..., : p.K]).astype(np.float32) * phase)[..., None] * vl[..., : p.K, :]  # (B, M, A, k', N)
    hc = hl.conj().transpose(0, 1, 3, 2, 4).reshape(b, p.M, p.K, p.A * p.N)
    gain = hc @ tx.transpose(0, 1, 2, 4, 3).reshape(b, p.M, p.A * p.N, p.K)  # (B, M, k, k'), eq. 24
    power = (gain.real**2 + gain.imag**2).astype(float)
    sig = np.diagonal(power, axis1=-2, axis2=-1)
    noise = p.noise + np.einsum("bmak,bma->bmk", dl, pl.sum(-1))  # eq. 25
    sinr_loc = sig / (power.sum(-1) - sig + noise)
    l_loc = max(p.L - p.K * p.D_ce, 0)  # Remark 3
    rate_loc = (d.b_loc[..., None] * l_loc / (p.M * p.B * p.L)) * np.log1p(sinr_loc)  # eq. 26
    rate_loc = rate_loc.reshape(b, p.MK)

    # ---- F-regime SINR and rate: CFN r on the shared subcarriers of its subbands
    onehot = d.group[..., None] == np.arange(p.R)  # (B, M, R)
    # conj(h_hat) written once in the layout of the gain product (B, i, k, MA, N)
    hc = np.empty((b, p.M, p.MK, p.MA, p.N), np.complex64)
    np.conjugate(h_hat.transpose(0, 3, 2, 1, 4), out=hc)
    # h_hat^H v per (i, a, k') (eq. 67b), summed in hc's layout (B, i, k', MA, N) with the beams vft transposed
    # to it (the same products and order over n as on the (B, i, MA, k') view: tests/test_ent_usr_speed.py);
    # codebook beams are gathered in that layout, vfu (B, 1 or M, MA, MK, N) is a view
    if exact is None:
        vft = code[np.swapaxes(beam_fed[..., : p.MK], 1, 2)][:, None]  # (B, 1, MK, MA, N)
        vfu = np.swapaxes(vft, 2, 3)
    else:
        vfu = exact.fed_users
        vft = np.ascontiguousarray(np.swapaxes(vfu, 2, 3))
    inner_f = np.einsum("...n,...n->...", hc, np.broadcast_to(vft, hc.shape))  # (B, i, k', MA)
    phase_f = _coherent_phase(inner_f).transpose(0, 1, 3, 2)  # (B, i, MA, k')
    amp = np.sqrt(pw_fed[:, :, : p.MK]).astype(np.float32)[:, None] * sub_ap.transpose(0, 2, 1)[..., None]
    coef = amp * phase_f  # complex64
    tx_f = np.empty((b, p.M, p.MA, p.N, p.MK), np.complex64)  # (B, i, MA, N, k'), zero outside S_{r(a)}
    np.multiply(coef[:, :, :, None, :], np.swapaxes(vfu, -1, -2), out=tx_f)  # written in the product's layout
    gain_f = hc.reshape(b, p.M, p.MK, p.MA * p.N) @ tx_f.reshape(b, p.M, p.MA * p.N, p.MK)  # (B, i, k, k')
    power_f = (gain_f.real**2 + gain_f.imag**2).astype(float)
    sig_f = np.diagonal(power_f, axis1=2, axis2=3).transpose(0, 2, 1)  # (B, k, i)
    tot_f = pw_fed.sum(-1)[:, :, None] * sub_ap  # (B, MA, i) power of AP a on subband i
    noise_f = p.noise + np.einsum("baki,bai->bki", delta, tot_f)
    sinr_fed = sig_f / (power_f.sum(axis=3).transpose(0, 2, 1) - sig_f + noise_f)
    n_fed_users = d.fed_users.reshape(b, p.M, p.K).sum(-1)  # |K_m^F|
    users_r = np.einsum("bm,bmr->br", n_fed_users, onehot)
    gap = np.where(onehot, users_r[:, None, :] - n_fed_users[..., None], -1).max(axis=1)  # max_m |K_r \ K_m|
    l_fed_r = np.maximum(p.L - p.D_ce * (np.maximum(gap, 0) + p.K), 0)  # Remark 3, (B, R)
    g_user = d.group[:, ck]  # (B, MK)
    own_sub = g_user[:, :, None] == d.group[:, None, :]  # (B, MK, M): i in S_{r(k)}
    l_user = np.take_along_axis(l_fed_r, g_user, axis=1)
    w_fed = own_sub * b_fed_cell[:, None, :] * l_user[..., None] / (p.M * p.B * p.L)
    rate_fed = np.sum(w_fed * np.log1p(sinr_fed), axis=-1)  # eq. 26
    rate = np.where(d.fed_users, rate_fed, rate_loc)

    # ---- sensing (eq. 27-38) at the predicted target states (Remark 4)
    dist, tau_leg, f_leg = t.dist, t.tau_leg, t.f_leg
    # eq. 32: Gamma_aq = sum_s p_as |v(theta_aq)^H w_as|^2; the beams lie on the codebook, so sum the
    # powers per codebook angle first, then weight by the codebook gains |v(theta_aq)^H v(theta_l)|^2
    code_gain = t.code_gain
    gam_loc = (code_gain @ _power_per_angle(pw_loc, beam_loc, p.n_angles)[..., None])[..., 0]
    gam_fed = (code_gain @ _power_per_angle(pw_fed, beam_fed, p.n_angles)[..., None])[..., 0]
    gamma = np.where(d.fed_targets[:, None, :], gam_fed, gam_loc)
    g_ap, g_q = d.group[:, ca], d.group[:, cq]
    member = np.where(d.fed_targets[:, None, :], g_ap[:, :, None] == g_q[:, None, :],
                      (ca[:, None] == cq[None, :])[None])  # (B, MA, MQ): a serves q's CCN / CFN
    sums_loc = sensing.rb_sums(p, d.b_loc[..., None] * np.eye(p.M, dtype=int), l_loc,
                               np.broadcast_to(np.eye(p.M, dtype=bool), (b, p.M, p.M)))  # (B, M, 3)
    sums_fed = sensing.rb_sums(p, np.broadcast_to(b_fed_cell[:, None, :], (b, p.R, p.M)), l_fed_r,
                               onehot.transpose(0, 2, 1))  # (B, R, 3)
    sums = np.where(d.fed_targets[..., None], np.take_along_axis(sums_fed, g_q[..., None], axis=1),
                    sums_loc[:, cq])
    u = member / dist**2  # lambda^R Gamma / sigma = u_aq v_a'q (see sensing.fim)
    if exact is None:
        F = sensing.fim(tau_leg, f_leg, u, u * gamma * (sensing.radar_constant(p) / p.noise), sums)
    else:  # true-MRT beams: eq. 32 with the actual vectors, per subband (a federated user's beam depends on it)
        F = mrt.fim(p, d, exact, pw_loc, pw_fed, th_q, tau_leg, f_leg, u, sums_loc[:, cq], b_fed_cell, l_fed_r)
    J_pred = t.J_pred
    J = J_pred + F  # eq. 36
    err_pos, err_vel = sensing.errors(J)

    # ---- utilities, signaling, USR (eq. 42-46)
    u_comm = signaling.comm_utility(rate, p)
    u_sense = signaling.sense_utility(err_pos, err_vel, p)
    n_fed_targets = d.fed_targets.reshape(b, p.M, p.Q).sum(-1)
    ovh = signaling.overhead(p, n_fed_users, n_fed_targets, d.group)
    util = u_comm.sum(-1) + u_sense.sum(-1)  # eq. 43
    return {
        "rate": rate, "sinr_loc": sinr_loc, "sinr_fed": sinr_fed, "F": F, "J": J, "J_pred": J_pred,
        "err_pos": err_pos, "err_vel": err_vel, "u_comm": u_comm, "u_sense": u_sense,
        "utility": util, "utility_comm": u_comm.sum(-1), "utility_sense": u_sense.sum(-1),
        "signaling": ovh["signaling"], "overhead": ovh, "usr": signaling.usr(util, ovh["signaling"]),
        "reward": signaling.reward(util, ovh["signaling"], p.utility_floor),
        "h_hat": h_hat, "delta": delta, "beam_loc": beam_loc if exact is None else exact.index_loc,
        "beam_fed": beam_fed if exact is None else exact.index_fed,
    }


def _power_per_angle(power: np.ndarray, beam: np.ndarray, n_angles: int) -> np.ndarray:
    """(B, MA, S) powers and beam indices -> (B, MA, n_angles): total power on each codebook angle."""
    b, ma, _ = power.shape
    flat = (np.arange(b * ma).reshape(b, ma, 1) * n_angles + beam).ravel()
    return np.bincount(flat, weights=power.ravel(), minlength=b * ma * n_angles).reshape(b, ma, n_angles)


def _coherent_phase(inner: np.ndarray) -> np.ndarray:
    """e^{-j angle(inner)} (eq. 62b, 67b); 1 where inner = 0.

    The quotient conj(inner) / |inner| of `_coherent_phase_general` divides by a real, which numpy's
    complex division does as (x + y 0) s and (y - x 0) s with s = 1 / |inner| (float32), x, y the parts of
    conj(inner): where both parts of inner are nonzero and finite (and s finite), that is x s and y s, the
    parts of conj(inner) * s (a product by a real, whose zero cross terms leave the rounding alone). The
    fast path computes that product for complex64 arrays without a zero or non-finite part, and checks
    that no part of the result is zero (an underflow, where the sign of zero could differ); any other
    input takes the general formula. Bit-identical to it (tests/test_ent_usr_speed.py)."""
    inner = np.asarray(inner)
    if inner.dtype == np.complex64 and inner.flags.c_contiguous and inner.ndim:
        mag = np.abs(inner)
        if inner.view(np.float32).all() and np.isfinite(mag).all():
            scale = np.divide(np.float32(1), mag, out=mag)
            if np.isfinite(scale).all():
                out = np.conjugate(inner)
                out *= scale
                if out.view(np.float32).all():
                    return out
    return _coherent_phase_general(inner)


def _coherent_phase_general(inner: np.ndarray) -> np.ndarray:
    """e^{-j angle(inner)}, 1 where inner = 0: the formula for any input (see `_coherent_phase`)."""
    mag = np.abs(inner)
    return np.where(mag > 0, inner.conj() / np.where(mag > 0, mag, 1), 1).astype(np.complex64)


def nearest_angle(theta: np.ndarray, p: Params) -> np.ndarray:
    """Index of the Theta angle (eq. 61) closest to theta; on a tie the lower index (as argmin over
    |theta - Theta|: Theta is sorted, so only the two neighbours of theta can be closest)."""
    angles = p.angles
    hi = np.clip(np.searchsorted(angles, theta), 1, len(angles) - 1)
    lo = hi - 1
    return np.where(np.abs(theta - angles[hi]) < np.abs(theta - angles[lo]), hi, lo)


def resolve_mrt(p: Params, d: Decision, hl: np.ndarray, h_hat: np.ndarray, sub_ap: np.ndarray,
                th_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace beam index -1 - c by the c-th angle `around` codebook MRT (-1: MRT itself). Codebook
    MRT: for a user, the Theta angle maximizing the estimated gain sum_i |h_hat_aki^H v(theta)|^2 over the subbands the AP serves it on (the phase of eq. 62b /
    67b then makes it coherent); for a target, the Theta angle closest to its predicted bearing.
    hl (the diagonal blocks of h_hat) is implied by h_hat: the local gains are read off the full ones."""
    b = h_hat.shape[0]
    if not ((d.beam_loc < 0).any() or (d.beam_fed < 0).any()):
        return d.beam_loc, d.beam_fed
    mrt_uc, mrt_fc = _mrt_users(p, h_hat, sub_ap)
    mrt_fr = nearest_angle(th_q, p)  # (B, MA, MQ)
    ca = np.arange(p.MA) // p.A
    own_q = ca[:, None] * p.Q + np.arange(p.Q)  # (MA, Q): the targets of AP a's own cell
    mrt_ur = np.take_along_axis(mrt_fr, np.broadcast_to(own_q, (b, p.MA, p.Q)), axis=2)
    beam_loc = np.where(d.beam_loc < 0, around(np.concatenate([mrt_uc, mrt_ur], axis=-1), -1 - d.beam_loc, p),
                        d.beam_loc)
    beam_fed = np.where(d.beam_fed < 0, around(np.concatenate([mrt_fc, mrt_fr], axis=-1), -1 - d.beam_fed, p),
                        d.beam_fed)
    return beam_loc, beam_fed


CHUNK = 16  # environments per block of the codebook-gain kernels (their intermediates stay in cache)


def _gain_matrix(p: Params) -> np.ndarray:
    """Real (2N, 2 n_angles) matrix W with [x0, y0, x1, y1, ...] @ W = [Re h^H v_l | Im h^H v_l] for
    h = x + j y and v_l = c + j s the codebook vectors: h^H v = (x.c + y.s) + j (x.s - y.c)."""
    code = channels.steering(p.angles, p.N)  # (L, N)
    n_ang, n = code.shape
    w = np.empty((n, 2, 2, n_ang), np.float32)  # (antenna, re/im of h, re/im of the product, angle)
    w[:, 0, 0], w[:, 1, 0] = code.real.T, code.imag.T
    w[:, 0, 1], w[:, 1, 1] = code.imag.T, -code.real.T
    return w.reshape(2 * n, 2 * n_ang)


def _gains_into(rows: np.ndarray, w_re: np.ndarray, w_im: np.ndarray, out: np.ndarray) -> None:
    """out = |h^H v_l|^2 for rows (..., 2N) float32 (interleaved re/im of h), out (..., n_angles) C-contiguous;
    rows may be a view with one stride between rows (a subband of the channels: it reshapes to a strided 2-D
    view, which BLAS reads in place, the same gains as from a copy: tests/test_ent_usr_speed.py). w_re, w_im: the two halves of `_gain_matrix` (contiguous), multiplied as 2-D matrices
    (a stacked matmul would loop over tiny products); each product element is the same dot product as
    with the whole W (tests/test_ent_usr_speed.py), and re^2 + im^2 is added on contiguous arrays."""
    flat = rows.reshape(-1, rows.shape[-1])
    re = flat @ w_re  # (rows, L)
    im = flat @ w_im
    np.square(re, out=re)
    np.square(im, out=im)
    np.add(re, im, out=out.reshape(re.shape))


def _mrt_users(p: Params, h_hat: np.ndarray, sub_ap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codebook MRT of the users: local (B, MA, K), argmax_l |h_hat_akm^H v_l|^2 on the cell's subband
    m; federated (B, MA, MK), argmax_l sum_i [i in S_r(a)] |h_hat_aki^H v_l|^2 (sum in the order of i).
    Computed per block of CHUNK environments and per subband i, so that the gains (B, MA, MK, M,
    n_angles) never exist in full; the passes after the product run over contiguous memory."""
    b = h_hat.shape[0]
    w = _gain_matrix(p)
    w_re, w_im = np.ascontiguousarray(w[:, : p.n_angles]), np.ascontiguousarray(w[:, p.n_angles:])
    sub = sub_ap.astype(np.float32)  # (B, MA, M) 0/1
    mrt_uc = np.empty((b, p.M, p.A, p.K), np.int64)
    mrt_fc = np.empty((b, p.MA, p.MK), np.int64)
    rows = np.ascontiguousarray(h_hat, np.complex64).view(np.float32)  # (B, MA, MK, M, 2N)
    for lo in range(0, b, CHUNK):
        hi = min(b, lo + CHUNK)
        g = np.empty((hi - lo, p.MA, p.MK, p.n_angles), np.float32)  # gains on one subband
        g_fed = np.empty_like(g)
        g_loc = np.empty((hi - lo, p.M, p.A, p.K, p.n_angles), np.float32)  # the diagonal blocks, one argmax
        for i in range(p.M):
            _gains_into(rows[lo:hi, :, :, i], w_re, w_im, g)  # a strided view: BLAS reads it in place
            g_loc[:, i] = g[:, i * p.A:(i + 1) * p.A, i * p.K:(i + 1) * p.K]  # cell i's APs and users
            wt = sub[lo:hi, :, i, None, None]
            if i == 0:
                np.multiply(g, wt, out=g_fed)
            else:
                g *= wt
                g_fed += g
        np.argmax(g_loc, axis=-1, out=mrt_uc[lo:hi])
        np.argmax(g_fed, axis=-1, out=mrt_fc[lo:hi])
    return mrt_uc.reshape(b, p.MA, p.K), mrt_fc


def around(mrt: np.ndarray, c: np.ndarray, p: Params) -> np.ndarray:
    """The c-th Theta angle around index `mrt`: offsets 0, +1, -1, +2, -2, ... (cyclic on the
    n_angles indices), so c = 0..n_angles-1 is a permutation of Theta for every mrt (c is clipped
    to that range). The offsets come from a table of the n_angles values of c."""
    k = np.arange(p.n_angles)
    table = np.where(k % 2 == 1, (k + 1) // 2, -(k // 2))
    out = np.add(mrt, np.take(table, c, mode="clip"))
    out %= p.n_angles
    return out
