"""Monte Carlo evaluator, independent of the analytic formulas: PPP layouts, i.i.d. Rayleigh channel
vectors, explicit zero-forcing beamformers with the nulling constraints, SIR_c (eq. 2), SIR_s (eq. 5).

Model (docs/models/sg-nulling.md): every BS serves K users with ZF beams of power 1/K each (total
power 1) and spends KL - 1 + J(Q-1) further ZF constraints: K(L-1) users of the communication
cluster and J(Q-1) sensing receive filters of the sensing cluster (the DoF count of eq. 16a). The
constraint directions are i.i.d. CN(0, I_Mt) channel vectors. An interfering BS's beams lie in the
null space of its own Nc - K nulling constraints (Nc = KL + J(Q-1)), a uniformly random subspace of
dimension M' = Mt - Nc + K; in an orthonormal basis of it, its users' projected channels and the
victim's projected channel are i.i.d. CN(0, I_M') (rotation invariance), so its K-user ZF precoder is
built there, exactly and at lower cost. The nearest `explicit` interferers get explicit beamformers
and fading; the next ones enter with their mean gain (1), and the PPP beyond the simulated points
enters by its mean interference.
"""
from __future__ import annotations

import numpy as np

_CHUNK_ELEMENTS = 1 << 21  # complex entries of constraint matrices held at once (32 MiB)
_FAR_POINTS = 120  # PPP points simulated beyond the explicit ones (mean-gain region)


def _cn(rng: np.random.Generator, shape) -> np.ndarray:
    """i.i.d. CN(0, 1) entries."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * np.sqrt(0.5)


def zf_gains(A: np.ndarray, x: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """ZF beamformer W (M_t x K, columns of power 1/K) nulling every row of A except its own user:
    W ~ A^H (A A^H)^{-1}[:, :K], rows of A = conjugated channels h_i^H, rows 0..K-1 = own users.
    Returns (sum_k |x^H w_k|^2, |h_0^H w_0|^2): the gain towards a probe channel x and user 0's gain.
    A: (..., Nc, Mt), x: (..., Mt)."""
    minv = np.linalg.inv(A @ np.conj(np.swapaxes(A, -1, -2)))
    diag = np.real(np.diagonal(minv, axis1=-2, axis2=-1))[..., :K]
    y = (minv @ (A @ x[..., None]))[..., :K, 0]  # conj(x^H W_unnormalized)
    probe = (np.abs(y) ** 2 / diag).sum(axis=-1) / K
    return probe, 1.0 / (K * diag[..., 0])


def _interferer_gains(rng: np.random.Generator, shape: tuple[int, ...], n_rows: int, Mt: int, K: int) -> np.ndarray:
    """Gains sum_k |h^H w_k^i|^2 of interfering BSs (own independent ZF beamformers with n_rows
    constraints) towards a receiver they do not null, h ~ CN(0, I_Mt); built in the M' = Mt - n_rows + K
    dimensional null space of the BS's nulling constraints. Processed in chunks."""
    flat = int(np.prod(shape))
    out = np.empty(flat)
    dim = Mt - n_rows + K
    step = max(1, _CHUNK_ELEMENTS // (K * dim))
    for s in range(0, flat, step):
        n = min(step, flat - s)
        out[s:s + n] = zf_gains(_cn(rng, (n, K, dim)), _cn(rng, (n, dim)), K)[0]
    return out.reshape(shape)


def _mean_tail(r_edge: np.ndarray, alpha: float, lam: float) -> np.ndarray:
    """Mean interference (unit mean gains) of a PPP beyond distance r_edge: 2 pi lam r^{2-alpha}/(alpha-2)."""
    return 2 * np.pi * lam * r_edge ** (2 - alpha) / (alpha - 2)


def _ppp_nearest(rng: np.random.Generator, n: int, m: int, lam: float) -> np.ndarray:
    """Distances of the m nearest points of a PPP(lam) to the origin, sorted, shape (n, m)."""
    return np.sqrt(rng.standard_exponential((n, m)).cumsum(axis=1) / (np.pi * lam))


def _mean_and_se(v: np.ndarray) -> tuple[float, float]:
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


def simulate_comm(rng: np.random.Generator, K: int, L: int, J: int, Q: int, Mt: int, alpha: float,
                  lam: float, n: int, explicit: int) -> np.ndarray:
    """log(1 + SIR_c) of eq. (2) for n typical users (user at the origin, served by the nearest BS;
    BSs 2..L of its cluster null it, BSs L+1, ... interfere)."""
    n_rows = K * L + J * (Q - 1)
    r = _ppp_nearest(rng, n, L + explicit + _FAR_POINTS, lam)
    _, signal = zf_gains(_cn(rng, (n, n_rows, Mt)), _cn(rng, (n, Mt)), K)
    g = _interferer_gains(rng, (n, explicit), n_rows, Mt, K)
    pl = r ** -alpha
    interf = ((g * pl[:, L:L + explicit]).sum(axis=1) + pl[:, L + explicit:].sum(axis=1)
              + _mean_tail(r[:, -1], alpha, lam))
    return np.log1p(signal * pl[:, 0] / interf)


def simulate_sense(rng: np.random.Generator, K: int, L: int, J: int, Q: int, Mt: int, alpha: float,
                   beta: float, lam: float, c: float, n: int, explicit: int) -> np.ndarray:
    """log(1 + SIR_s) of eq. (5) for n typical targets (target at the origin, sensed by the nearest
    BS at distance R; its Q-1 nearest neighbouring BSs null their interference towards it)."""
    n_rows = K * L + J * (Q - 1)
    m = Q + explicit + _FAR_POINTS
    r = _ppp_nearest(rng, n, m, lam)
    pos = r * np.exp(2j * np.pi * rng.random((n, m)))
    rho = np.sort(np.abs(pos[:, 1:] - pos[:, :1]), axis=1)  # BS-to-serving-BS distances
    # echo gain h^t = sum_k |a^H(theta) w_k|^2 of the serving BS's own ZF beams, ULA steering vector
    theta = np.pi * rng.random(n)
    a = np.exp(1j * np.pi * np.multiply.outer(np.cos(theta), np.arange(Mt)))
    h_t, _ = zf_gains(_cn(rng, (n, n_rows, Mt)), a, K)
    # cross-link v^H G_q^H / sqrt(M_r) ~ CN(0, I_Mt) exactly for G_q with i.i.d. CN(0,1) entries
    g = _interferer_gains(rng, (n, explicit), n_rows, Mt, K)
    pl = rho ** -alpha
    q0 = Q - 1
    interf = ((g * pl[:, q0:q0 + explicit]).sum(axis=1) + pl[:, q0 + explicit:].sum(axis=1)
              + _mean_tail(r[:, -1], alpha, lam))
    return np.log1p(c * h_t * r[:, 0] ** (-2 * beta) / interf)


def evaluate(seed: int, K: int, L: int, J: int, Q: int, Mt: int, alpha: float, beta: float, lam: float,
             c: float, n: int, explicit: int) -> dict[str, float]:
    """Rates and ASEs with their standard errors; deterministic in (seed, K, L, J, Q)."""
    rc, rs = (np.random.default_rng(s) for s in
              np.random.SeedSequence(seed, spawn_key=(K, L, J, Q)).spawn(2))
    m_c, se_c = _mean_and_se(simulate_comm(rc, K, L, J, Q, Mt, alpha, lam, n, explicit))
    m_s, se_s = _mean_and_se(simulate_sense(rs, K, L, J, Q, Mt, alpha, beta, lam, c, n, explicit))
    return {"rate_comm": m_c, "rate_comm_se": se_c, "rate_sense": m_s, "rate_sense_se": se_s,
            "ase_comm": lam * K * m_c, "ase_comm_se": lam * K * se_c,
            "ase_sense": lam * J * m_s, "ase_sense_se": lam * J * se_s}
