"""Communication channels: path loss (Sec. VI), Rician initialization (eq. 2-3),
Gauss-Markov evolution across frames (eq. 1) and MMSE estimation (eq. 19-22).

Shapes: channels are (B, MA, MK, M, N): batch, AP, user, subband, antenna."""
from __future__ import annotations

import numpy as np

from .config import Params


def pathloss_db(d: np.ndarray, fc: float) -> np.ndarray:
    """PL = 32.4 + 45 log10(d / 1 m) + 20 log10(fc / 1 GHz) [dB] (Sec. VI); d clamped at 1 m."""
    return 32.4 + 45.0 * np.log10(np.maximum(d, 1.0)) + 20.0 * np.log10(fc / 1e9)


def large_scale(ap: np.ndarray, users: np.ndarray, fc: float) -> np.ndarray:
    """lambda^C_ak = 10^(-PL/10) (below eq. 1): ap (B, MA, 2), users (B, MK, 2) -> (B, MA, MK)."""
    d = np.linalg.norm(ap[:, :, None, :] - users[:, None, :, :], axis=-1)
    return 10.0 ** (-pathloss_db(d, fc) / 10.0)


def bearing(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """theta = arctan((y_src - y_dst) / (x_src - x_dst)) in (-pi/2, pi/2] (below eq. 2):
    src (..., S, 2), dst (..., D, 2) -> (..., S, D)."""
    dx = src[..., :, None, 0] - dst[..., None, :, 0]
    dy = src[..., :, None, 1] - dst[..., None, :, 1]
    th = np.arctan2(dy, dx)
    # arctan of the ratio folds the bearing into (-pi/2, pi/2]: a ULA cannot tell front from back
    return np.where(th > np.pi / 2, th - np.pi, np.where(th <= -np.pi / 2, th + np.pi, th))


def steering(theta: np.ndarray, n: int) -> np.ndarray:
    """v(theta) = [1, e^{-j pi sin theta}, ..., e^{-j pi (N-1) sin theta}]^T / sqrt(N) (eq. 3); (..., N)
    complex64."""
    phase = (-np.pi * np.sin(np.asarray(theta, dtype=np.float64))).astype(np.float32)[..., None] * np.arange(
        n, dtype=np.float32)
    out = np.empty(phase.shape, np.complex64)
    out.real = np.cos(phase)
    out.imag = np.sin(phase)
    out *= np.float32(1.0 / np.sqrt(n))
    return out


CHUNK = 8  # environments per block of the channel kernels: a block's tensors stay in cache across passes


def cn(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Standard circularly-symmetric complex Gaussian CN(0, 1) samples (complex64: the channel
    tensors are the bulk of the environment's memory and time). Drawn block by block along the
    first axis (the generator fills sequentially, so the values are those of one draw of `shape`)."""
    out = np.empty((*shape, 2), np.float32)
    scale = np.float32(np.sqrt(0.5))
    blocks = np.array_split(out, max(1, -(-shape[0] // CHUNK)), axis=0) if shape and shape[0] > CHUNK else [out]
    for blk in blocks:
        rng.standard_normal(dtype=np.float32, out=blk)
        blk *= scale
    return out.view(np.complex64)[..., 0]


def _real(x: np.ndarray) -> np.ndarray:
    """float32 view (..., 2N) of a complex64 array (..., N): interleaved real and imaginary parts.
    Multiplying it by a real factor broadcast over the last axis gives exactly the complex product."""
    return x.view(np.float32)


def init_channel(lam: np.ndarray, theta: np.ndarray, p: Params, rng: np.random.Generator) -> np.ndarray:
    """h[0] = sqrt(lam/(kappa+1)) (sqrt(kappa N) h_LoS v(theta) + h_NLoS) (eq. 2), one draw per subband.
    lam, theta: (B, MA, MK) -> (B, MA, MK, M, N). E||h||^2 = lam N."""
    b, ma, mk = lam.shape
    los = cn(rng, (b, ma, mk, p.M, 1)) * steering(theta, p.N)[:, :, :, None, :]
    nlos = cn(rng, (b, ma, mk, p.M, p.N))
    amp = np.sqrt(lam / (p.kappa + 1.0)).astype(np.float32)[..., None, None]
    return amp * (np.float32(np.sqrt(p.kappa * p.N)) * los + nlos)


def evolve(h_prev: np.ndarray, lam: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """h[n] = rho h[n-1] + sqrt(1 - rho^2) eps, eps ~ CN(0, lam I) (eq. 1).
    Block by block along the batch axis (same draws as one `cn(rng, h_prev.shape)`)."""
    amp = np.sqrt((1.0 - rho**2) * lam).astype(np.float32)[..., None, None]  # (B, MA, MK, 1, 1)
    if h_prev.dtype != np.complex64 or not h_prev.flags.c_contiguous or not h_prev.ndim:  # general path
        eps = cn(rng, h_prev.shape)
        eps *= amp
        eps += np.float32(rho) * h_prev
        return eps
    out = np.empty(h_prev.shape, np.complex64)
    half, r = np.float32(np.sqrt(0.5)), np.float32(rho)
    o, hp = _real(out), _real(h_prev)
    b = h_prev.shape[0]
    for lo in range(0, b, CHUNK):
        blk = o[lo:lo + CHUNK]
        rng.standard_normal(dtype=np.float32, out=blk)
        blk *= half  # cn: CN(0, 1)
        blk *= amp[lo:lo + CHUNK]
        blk += r * hp[lo:lo + CHUNK]
    return out


def error_variance(lam_bar: np.ndarray, pilots: np.ndarray, p_ce: float, noise: float) -> np.ndarray:
    """delta = lam_bar [1 - p D lam_bar / (p D lam_bar + sigma)] (eq. 21); D = 0 gives the prior lam_bar."""
    snr = p_ce * pilots * lam_bar
    return lam_bar * noise / (snr + noise)


def pilot_counts(p: Params, b_fed: np.ndarray) -> np.ndarray:
    """D^ce_{aki} (eq. 22) as (B, MA, MK, M): B D~ for the Phase-I estimate (AP a and user k in the
    same cell m, subband i = m); B_i^F D~ for every other (a, k, i), estimated on the shared
    subcarriers of subband i in Phase II. b_fed: (B, M) shared subcarriers B_i^F."""
    cell_a = np.arange(p.MA) // p.A
    cell_k = np.arange(p.MK) // p.K
    home = (cell_a[:, None, None] == cell_k[None, :, None]) & (cell_k[None, :, None] == np.arange(p.M))
    return np.where(home[None], float(p.B * p.D_ce), b_fed[:, None, None, :].astype(float) * p.D_ce)


def mmse_estimate(h: np.ndarray, h_prev: np.ndarray, lam: np.ndarray, pilots: np.ndarray,
                  pilot_noise: np.ndarray, p: Params, out: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """MMSE estimate of h[n] from the prior CN(rho h[n-1], lam_bar I) (eq. 19) and D pilot symbols
    of power p^ce: h_hat = rho h[n-1] + g (h - rho h[n-1] + n / sqrt(p D)), g = p D lam_bar /
    (p D lam_bar + sigma). The error h - h_hat is independent of h_hat with variance delta of eq. 21
    (the paper's eq. 20 writes h_hat = h + e; the MMSE error is orthogonal to the estimate instead).
    h, h_prev, pilot_noise: (..., N); lam and pilots broadcast to (...), e.g. lam (B, MA, MK, 1)
    with pilots (B, MA, MK, M). Returns (h_hat (..., N), delta (...)), written into `out` (h_hat, delta)
    when given (e.g. slices of full-batch arrays, so that blocks of a batch need not be joined)."""
    lam_bar = (1.0 - p.rho**2) * lam  # eq. 19
    shape = np.broadcast_shapes(h.shape, h_prev.shape, pilot_noise.shape)
    if (any(x.dtype != np.complex64 or x.shape != shape for x in (h, h_prev, pilot_noise))
            or np.broadcast_shapes(np.shape(lam_bar), np.shape(pilots)) != shape[:-1]):  # general path
        snr = p.p_ce * pilots * lam_bar
        gain = snr / (snr + p.noise)
        scale = np.where(pilots > 0, np.sqrt(p.noise / np.maximum(p.p_ce * pilots, 1e-300)), 0.0)
        est = h_prev * ((1.0 - gain) * p.rho).astype(np.float32)[..., None]
        est += h * gain.astype(np.float32)[..., None]
        est += pilot_noise * (gain * scale).astype(np.float32)[..., None]
        delta = error_variance(lam_bar, pilots, p.p_ce, p.noise)
        if out is None:
            return est, delta
        np.copyto(out[0], est)
        np.copyto(out[1], delta)
        return out
    # h_hat = (1 - g) rho h[n-1] + g h + g sqrt(sigma / (p D)) n, block by block of CHUNK environments: the
    # gain g, the three float32 factors and delta (eq. 21) of the block first (the same float64 expressions
    # element by element as the general path and error_variance, snr + sigma shared), then three passes
    # over the block's channels (real float32 factors on the interleaved re/im parts: the same products)
    est, delta = out if out is not None else (np.empty(shape, np.complex64), np.empty(shape[:-1]))
    if (est.shape != shape or est.dtype != np.complex64 or not est.flags.c_contiguous
            or delta.shape != shape[:-1] or delta.dtype != np.float64):
        raise ValueError("mmse_estimate: out must be a C-contiguous complex64 array of the channels' shape and a "
                         "float64 array of their shape without the antenna axis")
    o = _real(est)
    hr, pr, nr = (_real(np.ascontiguousarray(x)) for x in (h, h_prev, pilot_noise))
    lb, pil = np.broadcast_to(lam_bar, shape[:-1]), np.broadcast_to(pilots, shape[:-1])
    for lo in range(0, shape[0], CHUNK):
        blk, sl = o[lo:lo + CHUNK], slice(lo, lo + CHUNK)
        pp = p.p_ce * pil[sl]
        snr = pp * lb[sl]
        den = snr + p.noise
        gain = snr / den
        np.divide(lb[sl] * p.noise, den, out=delta[sl])  # error_variance
        scale = np.where(pil[sl] > 0, np.sqrt(p.noise / np.maximum(pp, 1e-300)), 0.0)
        np.multiply(pr[sl], ((1.0 - gain) * p.rho).astype(np.float32)[..., None], out=blk)
        blk += hr[sl] * gain.astype(np.float32)[..., None]
        blk += nr[sl] * (gain * scale).astype(np.float32)[..., None]
    return est, delta
