"""Monte Carlo evaluator of the cooperative ISAC network, independent of the closed forms.

Each sample is one PPP network in a disk of radius R around the typical user / target (at the
origin). Edge effects: loads (requests per BS) are needed only for the BSs of the typical
cluster; they come from the users / targets within `_load_geometry`'s radius (the only ones whose
K nearest BSs can include a cluster BS, up to a negligible probability). The interference of BSs
beyond R is added as its mean 2 pi lambda_b P^t R^(2-alpha)/(alpha-2); beyond the `FADED` nearest
non-cluster BSs the fading gain is replaced by its mean (E[g_j] = P^t for any unit-norm beams).
Distances are in km (the SIR is scale free) and in metres for the FIM (eq. 5). All randomness
comes from the Generator passed in; batched over samples (chunks of `chunk`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SgClusterConfig

PAD = 1e9  # distance [km] given to padding points: no signal, never among the nearest
FADED = 60  # BSs (beyond the cluster) whose Rayleigh fading and ZF beams are drawn explicitly


def _margin(K: int, lam_b: float) -> float:
    """A radius [km] that the K-th nearest BS of any point practically never exceeds:
    the K-th neighbour distance of a PPP has pi lambda r^2 ~ Gamma(K), so K + 5 sqrt(K) + 5 bounds it."""
    q = K + 5 * np.sqrt(K) + 5
    return float(np.sqrt(q / (np.pi * lam_b)))


@dataclass
class McStat:
    mean: np.ndarray
    se: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> "McStat":
        """Mean and standard error over axis 0 (both +inf where a sample is infinite, e.g. singular FIMs)."""
        n = x.shape[0]
        with np.errstate(invalid="ignore"):
            se = x.std(axis=0, ddof=1) / np.sqrt(n)
        return cls(x.mean(axis=0), np.where(np.isfinite(se), se, np.inf))


def disk_ppp(rng: np.random.Generator, batch: int, lam_km2: float, radius: float):
    """PPP in a disk, padded: returns xy (batch, nmax, 2) [km], padding at distance PAD."""
    counts = rng.poisson(lam_km2 * np.pi * radius ** 2, batch)
    nmax = max(int(counts.max()), 1)
    r = radius * np.sqrt(rng.random((batch, nmax)))
    th = 2 * np.pi * rng.random((batch, nmax))
    r = np.where(np.arange(nmax)[None] < counts[:, None], r, PAD)
    return np.stack([r * np.cos(th), r * np.sin(th)], axis=-1)


def sort_by_range(xy: np.ndarray) -> np.ndarray:
    d = np.hypot(xy[..., 0], xy[..., 1])
    return np.take_along_axis(xy, np.argsort(d, axis=1)[..., None], axis=1)


def cgauss(rng: np.random.Generator, shape) -> np.ndarray:
    """CN(0, 1) entries (Rayleigh fading)."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def steering(theta: np.ndarray, M: int) -> np.ndarray:
    """a(theta) = [1, e^{j pi cos theta}, ..., e^{j pi (M-1) cos theta}] (eq. 4)."""
    return np.exp(1j * np.pi * np.arange(M) * np.cos(theta)[..., None])


def zf_beams(h: np.ndarray, a: np.ndarray):
    """Eq. 2: W = H (H^H H)^-1 with H = [h, a] (..., Mt, 2); returns the unit-norm columns
    (w_c, w_s), with h^H w_s = 0 and a^H w_c = 0."""
    hh, aa = np.sum(np.abs(h) ** 2, -1), np.sum(np.abs(a) ** 2, -1)
    ha = np.sum(h.conj() * a, -1)  # h^H a
    det = hh * aa - np.abs(ha) ** 2
    # (H^H H)^-1 = [[aa, -ha], [-conj(ha), hh]] / det
    wc = (h * aa[..., None] - a * np.conj(ha)[..., None]) / det[..., None]
    ws = (a * hh[..., None] - h * ha[..., None]) / det[..., None]
    return (wc / np.linalg.norm(wc, axis=-1, keepdims=True), ws / np.linalg.norm(ws, axis=-1, keepdims=True))


def _load_geometry(bs_sorted: np.ndarray, cluster: np.ndarray, K: int, lam_b: float, radius: float):
    """Where the requests to `cluster` BSs come from: users / targets within r_u of the origin
    (r_u = farthest cluster BS + margin) and, for their K nearest BSs, the BSs within r_u + margin."""
    m = _margin(K, lam_b)
    r_u = min(float(np.hypot(cluster[..., 0], cluster[..., 1]).max()) + m, radius)
    d = np.hypot(bs_sorted[..., 0], bs_sorted[..., 1])
    n_bs = max(int((d <= r_u + m).sum(axis=1).max()), 1)
    return r_u, bs_sorted[:, :n_bs]


def _dist2(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pairwise squared distances (batch, n, 2) x (batch, m, 2) -> (batch, n, m)."""
    dx = p[:, :, None, 0] - q[:, None, :, 0]
    dy = p[:, :, None, 1] - q[:, None, :, 1]
    return dx * dx + dy * dy


def _requests(points: np.ndarray, bs: np.ndarray, cluster: np.ndarray, K: int, skip_nearest: bool) -> np.ndarray:
    """Requests received by the BSs `cluster` (batch, m, 2) from points that each ask their K
    nearest BSs (without their nearest one if skip_nearest): (batch, m)."""
    d2 = _dist2(points, bs)
    hi = np.partition(d2, K - 1, axis=-1)[..., K - 1]
    lo = d2.min(axis=-1) if skip_nearest else np.full(hi.shape, -1.0)
    dc = _dist2(points, cluster)
    return np.sum((dc > lo[..., None]) & (dc <= hi[..., None]), axis=1)


# ------------------------------------------------------------------------ communication
@dataclass
class RateSample:
    """Per-network received powers of one cluster size L (unit p^c, unit P^t): any power split
    is evaluated on the same networks (common random numbers)."""

    S: np.ndarray  # sum over serving BSs of |h^H w_c|^2 d^-alpha
    Ic: np.ndarray  # interferers' communication beams
    Is: np.ndarray  # interferers' sensing beams
    tail: float  # mean interference of BSs beyond the disk, at P^t
    kappa_c: np.ndarray | None  # fraction of the typical user's L-1 requests granted

    def rate(self, pc_ratio) -> McStat:
        """Rate [bits/s/Hz] (eqs. 11-12) per p^c/P^t; interferers split P^t the same way."""
        p = np.atleast_1d(np.asarray(pc_ratio, float))[None, :]
        sir = p * self.S[:, None] / (p * self.Ic[:, None] + (1 - p) * self.Is[:, None] + self.tail)
        return McStat.of(np.log2(1 + sir))


def simulate_rate(cfg: SgClusterConfig, L: int, samples: int, rng: np.random.Generator,
                  chunk: int = 100) -> RateSample:
    """Networks seen by the typical user (eqs. 10-11) with cluster size L, with simulated
    acceptance of its L-1 cooperation requests. Loads: every user requests its L nearest BSs;
    a BS keeps one block for the user it serves as closest BS and grants psi-1 blocks to its
    cooperation requests at random (Lemma 2's rule)."""
    R, lam, Mt, a = cfg.mc_radius_km, cfg.lambda_b, cfg.Mt, cfg.alpha
    parts: dict[str, list] = {"S": [], "Ic": [], "Is": [], "acc": []}
    for start in range(0, samples, chunk):
        b = min(chunk, samples - start)
        bs = sort_by_range(disk_ppp(rng, b, lam, R))
        nb = bs.shape[1]
        d = np.hypot(bs[..., 0], bs[..., 1])
        nf = min(nb, L + FADED)
        h_typ = cgauss(rng, (b, nf, Mt))  # channels BS -> typical user
        a_own = steering(2 * np.pi * rng.random((b, nf)), Mt)  # each BS's own target
        h_own = cgauss(rng, (b, nf, Mt))  # each BS's own user (when not serving us)
        wc, _ = zf_beams(h_typ, a_own)
        sig = np.ones((b, nb))
        sig[:, :nf] = np.abs(np.sum(h_typ.conj() * wc, -1)) ** 2  # |h^H w_c|^2 ~ Gamma(Mt-1, 1)
        wc_o, ws_o = zf_beams(h_own, a_own)
        ic, is_ = np.ones((b, nb)), np.ones((b, nb))  # mean gains beyond the FADED nearest
        ic[:, :nf] = np.abs(np.sum(h_typ.conj() * wc_o, -1)) ** 2
        is_[:, :nf] = np.abs(np.sum(h_typ.conj() * ws_o, -1)) ** 2
        serving = np.zeros((b, nb), bool)
        serving[:, 0] = True
        if L > 1:
            coop = bs[:, 1:L]
            r_u, near = _load_geometry(bs, coop, L, lam, R)
            users = disk_ppp(rng, b, cfg.lambda_u, r_u)
            load = _requests(users, near, coop, L, skip_nearest=True) + 1  # + the typical user's own request
            grant = rng.random((b, L - 1)) < np.minimum(1.0, (cfg.psi - 1) / load)
            serving[:, 1:L] = grant
            parts["acc"].append(grant.mean(axis=1))
        pl = np.where(d < PAD, d, np.inf) ** -a
        parts["S"].append(np.sum(np.where(serving, sig * pl, 0.0), axis=1))
        parts["Ic"].append(np.sum(np.where(serving, 0.0, ic * pl), axis=1))
        parts["Is"].append(np.sum(np.where(serving, 0.0, is_ * pl), axis=1))
    tail = 2 * np.pi * lam * R ** (2 - a) / (a - 2)
    return RateSample(np.concatenate(parts["S"]), np.concatenate(parts["Ic"]), np.concatenate(parts["Is"]),
                      tail, np.concatenate(parts["acc"]) if parts["acc"] else None)




# ------------------------------------------------------------------------ sensing
def fim_trace_inverse(theta: np.ndarray, w_tx: np.ndarray, w_rx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """tr(F^-1) of F = sum_ij w_tx,i w_rx,j u_ij u_ij^T, u_ij = (a_ij, b_ij) of eqs. 5-7,
    from O(N) sums: sum_ij w_i v_j (x_i + x_j)(y_i + y_j) = V sum w x y + W sum v x y
    + (sum w x)(sum v y) + (sum w y)(sum v x). Singular F gives +inf."""
    c, s = np.cos(theta), np.sin(theta)
    w, v = np.where(valid, w_tx, 0.0), np.where(valid, w_rx, 0.0)
    W, V = w.sum(-1), v.sum(-1)

    def pair(x, y):
        return (V * (w * x * y).sum(-1) + W * (v * x * y).sum(-1)
                + (w * x).sum(-1) * (v * y).sum(-1) + (w * y).sum(-1) * (v * x).sum(-1))

    f11, f22, f12 = pair(c, c), pair(s, s), pair(c, s)
    det = f11 * f22 - f12 ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(det > 1e-12 * (f11 + f22) ** 2, (f11 + f22) / det, np.inf)


@dataclass
class SensingSample:
    """Per-network tr(F^-1) at p^s = 1 W (F is linear in p^s), GDoP, and acceptance."""

    crlb_1w: np.ndarray  # [m^2 W]
    gdop: np.ndarray
    kappa_s: np.ndarray | None

    def crlb(self, ps: float) -> McStat:
        with np.errstate(divide="ignore"):
            return McStat.of(self.crlb_1w / ps)


def simulate_sensing(cfg: SgClusterConfig, N: int, samples: int, rng: np.random.Generator,
                     acceptance: bool = True, chunk: int = 100) -> SensingSample:
    """CRLB tr(F^-1) [m^2 W] of eq. 5 for the typical target with real angles and distances,
    the GDoP tr(F~^-1) of eq. 14 of the same cluster, and the simulated acceptance.
    Each target requests its N nearest BSs; a BS serves psi of its requests at random; the
    cluster of the typical target is its N nearest accepting BSs (the thinning behind eq. 24).
    Transmit gains G_t,i = |a^H w_s|^2 come from ZF beams against each BS's own user (mean Mt-1)."""
    R, Mt = cfg.mc_radius_km, cfg.Mt
    # candidates: enough BSs that N accept even when a BS serves only psi of ~N mu_s requests
    share = min(1.0, cfg.psi / (N * cfg.lambda_s / cfg.lambda_b + 1))
    n_cand = N if not acceptance else int(np.ceil(1.5 * N / share)) + 10
    zeta2 = cfg.zeta2_per_watt() / (Mt - 1)  # per unit transmit gain, at p^s = 1 W
    crlb, gdop, acc = [], [], []
    for start in range(0, samples, chunk):
        b = min(chunk, samples - start)
        bs = sort_by_range(disk_ppp(rng, b, cfg.lambda_b, R))
        cand = bs[:, :n_cand]
        m = cand.shape[1]
        if acceptance:
            r_t, near = _load_geometry(bs, cand, N, cfg.lambda_b, R)
            targets = disk_ppp(rng, b, cfg.lambda_s, r_t)
            load = _requests(targets, near, cand, N, skip_nearest=False) + 1  # + the typical target's
            ok = rng.random((b, m)) < np.minimum(1.0, cfg.psi / load)
            acc.append(ok[:, :N].mean(axis=1))  # the N requests a target sends
        else:
            ok = np.ones((b, m), bool)
        order = np.argsort(~ok, axis=1, kind="stable")[:, :N]  # first N accepting, by distance
        sel = np.take_along_axis(cand, order[..., None], axis=1)
        valid = np.take_along_axis(ok, order, axis=1) & (np.hypot(sel[..., 0], sel[..., 1]) < PAD)
        d_m = 1e3 * np.hypot(sel[..., 0], sel[..., 1])
        theta = np.arctan2(sel[..., 1], sel[..., 0])  # bearing of each BS seen from the target
        a_t = steering(theta + np.pi, Mt)  # BS -> target
        _, ws = zf_beams(cgauss(rng, (b, N, Mt)), a_t)
        g_t = np.abs(np.sum(a_t.conj() * ws, -1)) ** 2
        pl = d_m ** -cfg.beta
        crlb.append(fim_trace_inverse(theta, zeta2 * g_t * pl, pl, valid))
        ones = np.ones_like(pl)
        gdop.append(fim_trace_inverse(theta, ones, ones, valid))
    return SensingSample(np.concatenate(crlb), np.concatenate(gdop), np.concatenate(acc) if acc else None)
