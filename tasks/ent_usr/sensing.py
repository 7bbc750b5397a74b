"""Target mobility (eq. 4-6), cascaded radar channel, FIM (eq. 27-34), Bayesian FIM (eq. 35-36)
and sensing errors (eq. 37-38). States are [x, y, vx, vy]."""
from __future__ import annotations

import numpy as np

from .config import C0, Params


def transition(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """G = [[1, T],[0, 1]] (x) I_2 and E = delta_q [[T^3/3, T^2/2],[T^2/2, T]] (x) I_2 (eq. 5)."""
    t = p.Tbar
    G = np.kron(np.array([[1.0, t], [0.0, 1.0]]), np.eye(2))
    E = p.delta_q * np.kron(np.array([[t**3 / 3, t**2 / 2], [t**2 / 2, t]]), np.eye(2))
    return G, E


def move(x: np.ndarray, G: np.ndarray, E: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x[n] = G x[n-1] + eps, eps ~ N(0, E) (eq. 4); x (..., 4)."""
    noise = rng.standard_normal(x.shape) @ np.linalg.cholesky(E).T
    return x @ G.T + noise


def geometry(ap: np.ndarray, x: np.ndarray, fc: float):
    """Delay / Doppler gradients of the cascaded path AP a' -> target q -> AP a (eq. 6a-6b).

    ap: (B, MA, 2); x: (B, MQ, 4). Returns, for every (a, q): distance d (B, MA, MQ), and the
    per-leg contributions to the gradients w.r.t. [x, y, vx, vy]:
      tau_leg (B, MA, MQ, 4) = d/dx of d_aq / c_o,
      f_leg   (B, MA, MQ, 4) = d/dx of fc v.(x_a - x_q) / (c_o d_aq).
    The gradient of tau_{aa'q} (f_{aa'q}) is tau_leg[a] + tau_leg[a'] (f_leg[a] + f_leg[a']):
    the sum in eq. 6 runs over the two legs, so a monostatic pair a = a' counts its leg twice.
    Computed component by component on contiguous (MA, B, MQ) arrays; tau_leg and f_leg are views of
    component-major buffers (4, MA, B, MQ), the layout `fim` reads (values as the vector form)."""
    ax, ay = (np.ascontiguousarray(ap[..., c].T)[:, :, None] for c in range(2))  # (MA, B, 1)
    xq = np.moveaxis(x, -1, 0)[:, None]  # (4, 1, B, MQ)
    dx, dy = xq[0] - ax, xq[1] - ay  # x_q - x_a
    dist = np.sqrt(dx * dx + dy * dy)  # the norm of (dx, dy)
    np.maximum(dist, 1.0, out=dist)
    ux, uy = dx / dist, dy / dist  # unit vector AP -> target
    vx, vy = xq[2], xq[3]
    tau = np.zeros((4,) + dist.shape)
    np.divide(ux, C0, out=tau[0])
    np.divide(uy, C0, out=tau[1])
    vu = vx * ux + vy * uy
    c = -(fc / C0)
    f = np.empty_like(tau)
    np.divide(c * (vx - vu * ux), dist, out=f[0])  # d f / d position
    np.divide(c * (vy - vu * uy), dist, out=f[1])
    np.multiply(c, ux, out=f[2])  # d f / d velocity
    np.multiply(c, uy, out=f[3])
    legs = (np.moveaxis(a, (0, 1), (3, 1)) for a in (tau, f))  # (B, MA, MQ, 4) views
    return (np.moveaxis(dist, 0, 1), *legs)


def radar_constant(p: Params) -> float:
    """lambda^R_{aa'q} = radar_constant / (d_aq^2 d_a'q^2), radar_constant = G_R N^2 c^2 sigma_RCS /
    ((4 pi)^3 fc^2) (below eq. 27). The paper's product of squared squared-distances (d^4 d'^4) is
    not the bistatic radar equation; we use d^2 d'^2."""
    return p.G_R * p.N**2 * C0**2 * p.rcs / ((4 * np.pi) ** 3 * p.fc**2)


def rb_sums(p: Params, n_sub: np.ndarray, n_sym: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (b, l, i) sums of eq. 29-31 without lambda^R Gamma (which do not depend on b, l, i):
    S_tt = sum_i sum_b sum_l 8 (pi b Delta_f)^2,
    S_ff = sum_i sum_b sum_l 8 (pi (f_c^i/f_c) l T)^2,
    S_tf = sum_i sum_b sum_l 8 pi^2 b l T Delta_f (f_c^i/f_c)   (the f_c^i/f_c factor of the Doppler
    phase in eq. 27 is kept in the cross term too; eq. 31 drops it).
    n_sub (..., M): subcarriers B_i^X per subband; n_sym (...): symbols L^X of the regime (the same
    on each of its subbands, Remark 3); mask (..., M): i in S_d^X. Returns (..., 3)."""
    nb = np.where(mask, n_sub, 0).astype(float)
    nl = np.where(mask, np.asarray(n_sym, float)[..., None], 0.0)
    s1b, s2b = nb * (nb - 1) / 2, (nb - 1) * nb * (2 * nb - 1) / 6
    s1l, s2l = nl * (nl - 1) / 2, (nl - 1) * nl * (2 * nl - 1) / 6
    ratio = p.subband_fc / p.fc
    tt = 8 * np.pi**2 * p.df**2 * np.sum(s2b * nl, axis=-1)
    ff = 8 * np.pi**2 * p.T**2 * np.sum(ratio**2 * nb * s2l, axis=-1)
    tf = 8 * np.pi**2 * p.T * p.df * np.sum(ratio * s1b * s1l, axis=-1)
    return np.stack([tt, ff, tf], axis=-1)


def fim(tau_leg: np.ndarray, f_leg: np.ndarray, u: np.ndarray, v: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """F_q = sum_{a,a'} (1/sigma) [[F^P, F^PV], [F^PV^T, F^V]] (eq. 28, 33, 34) in the compact form
    W_tt t t^T + W_ff g g^T - W_tf (g t^T + t g^T) with t = grad tau_{aa'q}, g = grad f_{aa'q}
    over [x, y, vx, vy] (d tau / d v = 0). This equals eq. 34a-d; for the velocity block it gives
    g_v g_v^T W^ff: eq. 33 writes W^{tau f} there, but the Doppler phase (eq. 27) makes it W^ff.
    W_xx = sums[xx] lambda^R_{aa'q} Gamma_{a'q} / sigma (eq. 29-31), and lambda^R_{aa'q} Gamma_{a'q}
    / sigma = u_aq v_a'q factorizes (lambda^R is proportional to 1/(d_aq^2 d_a'q^2), Gamma depends on
    the transmitter a' only), so the double sum over AP pairs costs O(MA) per target.

    tau_leg, f_leg: (..., MA, MQ, 4); u, v: (..., MA, MQ), zero for APs that do not serve q's
    CCN / CFN; sums (..., MQ, 3) per target's regime. Returns (..., MQ, 4, 4), symmetric.

    With the stacked legs X = [t | g] (8 components) the pair sums are
    P_ij = sum_{a,a'} u_a v_a' (X_ai + X_a'i)(X_aj + X_a'j) = sum_a w_a X_ai X_aj + uX_i vX_j + vX_i uX_j,
    w_a = sv u_a + su v_a (the a = a' terms and the cross terms), uX = sum_a u_a X_a, su = sum_a u_a.
    Computed entry by entry (upper triangle, mirrored) on contiguous (MA, targets) arrays, skipping the
    components that are zero everywhere (d tau / d v)."""
    shape = np.broadcast_shapes(tau_leg.shape[:-1], f_leg.shape[:-1], np.shape(u), np.shape(v))
    ma, lead = shape[-2], shape[:-2] + shape[-1:]  # lead: the output's (..., MQ)

    def per_ap(x):  # (..., MA, MQ) -> contiguous (MA, n)
        return np.ascontiguousarray(np.moveaxis(np.broadcast_to(x, shape), -2, 0)).reshape(ma, -1)

    def comps(x):  # (..., MA, MQ, 4) -> four (MA, n) arrays, None for a component zero everywhere
        y = np.ascontiguousarray(np.moveaxis(np.broadcast_to(x, shape + (4,)), (-1, -3), (0, 1))).reshape(4, ma, -1)
        return [c if c.any() else None for c in y]

    uq, vq = per_ap(u), per_ap(v)
    w = vq.sum(0) * uq
    w += uq.sum(0) * vq
    X = comps(tau_leg) + comps(f_leg)  # t_0..t_3, g_0..g_3
    wX = [None if c is None else w * c for c in X]
    uX = [None if c is None else np.einsum("an,an->n", uq, c) for c in X]
    vX = [None if c is None else np.einsum("an,an->n", vq, c) for c in X]

    done = {}

    def pair(i, j):  # P_ij, None where X_i or X_j is zero
        if (i, j) not in done:
            out = None
            if X[i] is not None and X[j] is not None:
                out = np.einsum("an,an->n", wX[i], X[j])
                out += uX[i] * vX[j]
                out += vX[i] * uX[j]
            done[i, j] = out
        return done[i, j]

    wtt, wff, wtf = (np.broadcast_to(sums[..., k], lead).reshape(-1) for k in range(3))
    F = np.empty((wtt.size, 4, 4))
    for i in range(4):
        for j in range(i, 4):
            tt, gg, gt, tg = pair(i, j), pair(4 + i, 4 + j), pair(4 + i, j), pair(4 + j, i)
            val = np.zeros(wtt.size)
            if tt is not None:
                val += wtt * tt
            if gg is not None:
                val += wff * gg
            if gt is not None or tg is not None:
                val -= wtf * (gt if tg is None else tg if gt is None else gt + tg)
            F[:, i, j] = val
            F[:, j, i] = val
    return F.reshape(lead + (4, 4))


def inv_spd4(J: np.ndarray) -> np.ndarray:
    """Inverse of symmetric positive-definite 4x4 matrices (..., 4, 4) in closed form by 2x2 blocks
    [[A, B], [B^T, D]]: S = D - B^T A^-1 B, inverse [[A^-1 + X S^-1 X^T, -X S^-1], [-S^-1 X^T, S^-1]]
    with X = A^-1 B (A and S are SPD 2x2 when J is). About 2x faster than batched LAPACK on the
    small matrices of a frame; equal to np.linalg.inv to rounding (tests/test_ent_usr_speed.py)."""
    J = np.asarray(J, dtype=float)
    a00, a01, a11 = J[..., 0, 0], J[..., 0, 1], J[..., 1, 1]
    b00, b01, b10, b11 = J[..., 0, 2], J[..., 0, 3], J[..., 1, 2], J[..., 1, 3]
    d00, d01, d11 = J[..., 2, 2], J[..., 2, 3], J[..., 3, 3]
    det = a00 * a11 - a01 * a01
    i00, i01, i11 = a11 / det, -a01 / det, a00 / det  # A^-1
    x00, x01 = i00 * b00 + i01 * b10, i00 * b01 + i01 * b11  # X = A^-1 B
    x10, x11 = i01 * b00 + i11 * b10, i01 * b01 + i11 * b11
    s00 = d00 - (b00 * x00 + b10 * x10)  # S = D - B^T X
    s01 = d01 - (b00 * x01 + b10 * x11)
    s11 = d11 - (b01 * x01 + b11 * x11)
    sd = s00 * s11 - s01 * s01
    t00, t01, t11 = s11 / sd, -s01 / sd, s00 / sd  # S^-1
    y00, y01 = t00 * x00 + t01 * x01, t00 * x10 + t01 * x11  # Y = S^-1 X^T
    y10, y11 = t01 * x00 + t11 * x01, t01 * x10 + t11 * x11
    u00, u01, u11 = i00 + x00 * y00 + x01 * y10, i01 + x00 * y01 + x01 * y11, i11 + x10 * y01 + x11 * y11
    return np.stack([u00, u01, -y00, -y10, u01, u11, -y01, -y11,
                     -y00, -y01, t00, t01, -y10, -y11, t01, t11], axis=-1).reshape(J.shape)


def prior_information(J_prev: np.ndarray, G: np.ndarray, E: np.ndarray) -> np.ndarray:
    """[E + G J^{-1}[n-1] G^T]^{-1}, the prior term of eq. 36 (the paper omits the transpose).
    The BFIM is J[n] = this + F[n] (eq. 36), with the full FIM of eq. 28 as the measurement's
    information (eq. 35 approximates its covariance by diag(F)^{-1}, dropping the position-velocity
    coupling the measurement carries)."""
    return inv_spd4(E + G @ inv_spd4(J_prev) @ G.T)


def errors(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U^RP = [J^{-1}]_11 + [J^{-1}]_22, U^RV = [J^{-1}]_33 + [J^{-1}]_44 (eq. 37-38)."""
    d = np.diagonal(inv_spd4(J), axis1=-2, axis2=-1)
    return d[..., 0] + d[..., 1], d[..., 2] + d[..., 3]


def kalman_update(x_pred: np.ndarray, J_pred: np.ndarray, J: np.ndarray, F: np.ndarray, x_true: np.ndarray,
                  z: np.ndarray) -> np.ndarray:
    """Posterior mean of the Bayesian model eq. 35 in information form:
    x_hat = J^{-1} (J_pred x_pred + F x + w), w ~ N(0, F), i.e. a measurement x + eps with
    Cov(eps) = F^{-1} (also when F is singular). z: (..., 4) standard normal draws."""
    evals, evecs = np.linalg.eigh(F)
    w = np.einsum("...ij,...j->...i", evecs, np.sqrt(np.maximum(evals, 0.0)) * z)
    rhs = np.einsum("...ij,...j->...i", J_pred, x_pred) + np.einsum("...ij,...j->...i", F, x_true) + w
    return np.linalg.solve(J, rhs[..., None])[..., 0]
