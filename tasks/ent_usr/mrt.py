"""True maximum-ratio transmission (MRT) beams beside the codebook beams (issue 13).

The paper's Random-MRT "performs maximum-ratio transmission (MRT) beamforming with equal power
allocation" (Sec. VI). A decision's beam index `TRUE_MRT` means, for AP a and the service:
  user k:   w_aki = h_hat_aki / ||h_hat_aki||, the estimated channel of each subband i the AP
            serves it on (eq. 13 and 24 index the beam by the subband); h_hat_aki^H w_aki =
            ||h_hat_aki|| is real and positive, so the co-phasing of eq. 62b / 67b is implied;
  target q: w_aq = v(theta_aq) (unit norm, eq. 3) at the bearing of its predicted position
            (Remark 4): the exact angle where codebook MRT takes the nearest Theta angle.
Every other index keeps its codebook vector (model.resolve_mrt). `model.evaluate` takes these
vectors into eq. 24-25 (L regime per cell; F regime coherent joint transmission over the CFN's APs,
as for codebook beams) and into the beampattern of eq. 32, Gamma_a'qi = sum_s p_a's |v(theta_a'q)^H
w_a'si|^2. A federated user's beam, and so Gamma_a'qi, changes with the subband i, so the FIM of
eq. 28-31 is summed per subband (`fim`); with codebook beams that sum is the one of `sensing.fim`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import channels, sensing
from .config import Params

TRUE_MRT = -(1 << 30)  # beam index: true MRT (no codebook angle; agents' indices lie in [-n_angles, n_angles))


@dataclass
class Beams:
    """The unit-norm beam vectors of a decision with true-MRT entries (complex64)."""

    loc: np.ndarray  # (B, M, A, K+Q, N): local services of cell m's APs (subband m)
    fed_users: np.ndarray  # (B, M, MA, MK, N): federated users, per subband i
    fed_targets: np.ndarray  # (B, MA, MQ, N): federated targets (the same on every subband)
    index_loc: np.ndarray  # (B, MA, K+Q): the codebook index, TRUE_MRT where the beam is true MRT
    index_fed: np.ndarray  # (B, MA, MK+MQ)


def uses_true_mrt(d) -> bool:
    """Whether any beam of the Decision d is true MRT."""
    return bool((d.beam_loc == TRUE_MRT).any() or (d.beam_fed == TRUE_MRT).any())


def _unit(h: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """h / ||h|| over the last axis; `fallback` (a unit vector) where h = 0."""
    norm = np.linalg.norm(h, axis=-1, keepdims=True)
    return np.where(norm > 0, h / np.where(norm > 0, norm, 1), fallback).astype(np.complex64)


def beams(p: Params, d, hl: np.ndarray, h_hat: np.ndarray, th_q: np.ndarray, beam_loc: np.ndarray,
          beam_fed: np.ndarray) -> Beams | None:
    """The beam vectors of decision d, or None when it has no true-MRT beam (the codebook path).
    hl (B, M, A, K, N), h_hat (B, MA, MK, M, N): Phase-II estimates; th_q (B, MA, MQ): bearings of
    the predicted targets; beam_loc / beam_fed: model.resolve_mrt's codebook indices."""
    true_loc, true_fed = d.beam_loc == TRUE_MRT, d.beam_fed == TRUE_MRT
    if not (true_loc.any() or true_fed.any()):
        return None
    b = h_hat.shape[0]
    code = channels.steering(p.angles, p.N)
    tgt = channels.steering(th_q, p.N)  # (B, MA, MQ, N)
    own_q = (np.arange(p.MA) // p.A)[:, None] * p.Q + np.arange(p.Q)  # (MA, Q): AP a's own targets
    tgt_own = np.take_along_axis(tgt, np.broadcast_to(own_q[None, :, :, None], (b, p.MA, p.Q, p.N)), axis=2)
    cl, cf = code[beam_loc], code[beam_fed]  # (B, MA, K+Q, N), (B, MA, MK+MQ, N)
    users_loc = _unit(hl.reshape(b, p.MA, p.K, p.N), cl[:, :, : p.K])
    loc = np.where(true_loc[..., None], np.concatenate([users_loc, tgt_own], axis=2), cl)
    fu_code = cf[:, None, :, : p.MK]  # (B, 1, MA, MK, N)
    users_fed = _unit(h_hat.transpose(0, 3, 1, 2, 4), fu_code)  # (B, i, MA, MK, N)
    fed_users = np.where(true_fed[:, None, :, : p.MK, None], users_fed, fu_code)
    fed_targets = np.where(true_fed[..., p.MK:, None], tgt, cf[:, :, p.MK:])
    return Beams(loc=loc.reshape(b, p.M, p.A, p.K + p.Q, p.N).astype(np.complex64),
                 fed_users=fed_users.astype(np.complex64), fed_targets=fed_targets.astype(np.complex64),
                 index_loc=np.where(true_loc, TRUE_MRT, beam_loc), index_fed=np.where(true_fed, TRUE_MRT, beam_fed))


def _pattern(vq: np.ndarray, w: np.ndarray) -> np.ndarray:
    """|v(theta_aq)^H w_as|^2: vq (B, MA, MQ, N) conjugated steering vectors, w (B, MA, S, N) -> (B, MA, MQ, S)."""
    g = np.einsum("baqn,basn->baqs", vq.astype(np.complex128), w.astype(np.complex128))
    return g.real**2 + g.imag**2


def gammas(p: Params, bm: Beams, pw_loc: np.ndarray, pw_fed: np.ndarray,
           th_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gamma_aq of eq. 32 with the actual beams: local (B, MA, MQ) (one subband), federated
    (B, M, MA, MQ) per subband i. pw_*: model.per_subcarrier_powers (zero where a does not serve s)."""
    b = pw_loc.shape[0]
    vq = channels.steering(th_q, p.N).conj()  # (B, MA, MQ, N)
    gam_loc = np.einsum("baqs,bas->baq", _pattern(vq, bm.loc.reshape(b, p.MA, p.K + p.Q, p.N)), pw_loc)
    gam_t = np.einsum("baqs,bas->baq", _pattern(vq, bm.fed_targets), pw_fed[..., p.MK:])
    gam_u = np.stack([np.einsum("baqs,bas->baq", _pattern(vq, bm.fed_users[:, i]), pw_fed[..., : p.MK])
                      for i in range(bm.fed_users.shape[1])], axis=1)
    return gam_loc, gam_u + gam_t[:, None]


def fim(p: Params, d, bm: Beams, pw_loc: np.ndarray, pw_fed: np.ndarray, th_q: np.ndarray,
        tau_leg: np.ndarray, f_leg: np.ndarray, u: np.ndarray, sums_loc: np.ndarray, b_fed_cell: np.ndarray,
        l_fed_r: np.ndarray) -> np.ndarray:
    """F_q (B, MQ, 4, 4) of eq. 28-34 with the per-subband beampattern: sum over subbands i of
    sensing.fim with Gamma_a'qi and the RB sums of subband i alone (eq. 29-31 sum over i with
    Gamma inside). sums_loc (B, MQ, 3): each local target's sums (its cell's subband only);
    b_fed_cell (B, M) = B_m^F; l_fed_r (B, R) = L^F of each CFN (Remark 3)."""
    b = pw_loc.shape[0]
    cq = np.arange(p.MQ) // p.Q
    g_q = d.group[:, cq]
    onehot = (d.group[..., None] == np.arange(p.R)).transpose(0, 2, 1)  # (B, R, M): i in S_r
    gam_loc, gam_fed = gammas(p, bm, pw_loc, pw_fed, th_q)
    scale = sensing.radar_constant(p) / p.noise
    fed = d.fed_targets
    F = np.zeros((b, p.MQ, 4, 4))
    for i in range(p.M):
        sums_fed = sensing.rb_sums(p, np.broadcast_to(b_fed_cell[:, None, :], (b, p.R, p.M)), l_fed_r,
                                   onehot & (np.arange(p.M) == i))  # (B, R, 3)
        sums = np.where(fed[..., None], np.take_along_axis(sums_fed, g_q[..., None], axis=1),
                        sums_loc * (cq == i)[None, :, None])
        gamma = np.where(fed[:, None, :], gam_fed[:, i], gam_loc)
        F += sensing.fim(tau_leg, f_leg, u, u * gamma * scale, sums)
    return F
