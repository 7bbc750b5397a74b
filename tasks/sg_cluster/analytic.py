"""Closed-form analysis of Meng et al., "Cooperative ISAC networks: performance analysis,
scaling laws and optimization". Equation numbers refer to that paper.

Units: distances in metres for sensing (CRLB in m^2), densities given per km^2;
rates are computed in nats (eq. 26 uses the natural log) and reported in bits.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special

LN2 = np.log(2.0)


# ------------------------------------------------------------------ sensing geometry
def gdop_prop1(N) -> np.ndarray:
    """Expected GDoP, Prop. 1 (eq. 16): (2N+2)/(N^3-N^2); +inf for N=1 (rank-one FIM)."""
    N = np.asarray(N, float)
    with np.errstate(divide="ignore"):
        return np.where(N > 1, (2 * N + 2) / np.maximum(N ** 3 - N ** 2, 1e-300), np.inf)


def expected_distance(n, lam_m2: float) -> np.ndarray:
    """E[d_n] of the n-th nearest point of a PPP, eq. 20 (exact Gamma form) [m]."""
    n = np.asarray(n, float)
    return np.exp(special.gammaln(n + 0.5) - special.gammaln(n)) / np.sqrt(lam_m2 * np.pi)


def _inv_crlb_or_inf(denom: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(denom > 0, 2.0 / np.where(denom > 0, denom, 1.0), np.inf)


def harmonic(N, s: float) -> np.ndarray:
    """Generalized harmonic number sum_{k=1}^N k^-s, s >= 1, in O(1): digamma for s = 1, Hurwitz zeta else."""
    N = np.asarray(N, float)
    if s == 1.0:
        return special.digamma(N + 1) + np.euler_gamma
    return special.zeta(s, 1) - special.zeta(s, N + 1)


def crlb_eq19(N: int, zeta2, lam_m2: float, beta: float) -> np.ndarray:
    """Prop. 2, eq. 19 with the factor 2 of eq. 21/45 restored:
    2 / (|zeta|^2 (sum_k E[d_k]^-beta)^2) [m^2]."""
    s = np.sum(expected_distance(np.arange(1, N + 1), lam_m2) ** -beta)
    return _inv_crlb_or_inf(np.asarray(zeta2, float) * s ** 2)


def crlb_eq21(N, zeta2, lam_m2: float, beta: float, kappa_s: float = 1.0) -> np.ndarray:
    """Eq. 21 (E[d_n] ~ sqrt(n/(lambda pi))): 2 / (|zeta|^2 (lambda pi)^beta (sum_k k^-beta/2)^2).
    With acceptance (eq. 24) the accepting BSs are a PPP of density kappa_s*lambda, i.e. the
    result is divided by kappa_s^beta (eq. 24 is the beta=2, ln^2 N form of this)."""
    s = harmonic(N, beta / 2)
    return _inv_crlb_or_inf(np.asarray(zeta2, float) * (kappa_s * lam_m2 * np.pi) ** beta * s ** 2)


def crlb_theorem1(N, zeta2: float, lam_m2: float) -> np.ndarray:
    """Theorem 1 (eq. 22, beta=2): CRLB ~ 1/(|zeta|^2 lambda^2 pi^2 ln^2 N) as printed
    (the factor 2 of eq. 21 is lost in Appendix C; see docs)."""
    N = np.asarray(N, float)
    with np.errstate(divide="ignore"):
        return 1.0 / (zeta2 * (lam_m2 * np.pi) ** 2 * np.log(N) ** 2)


# ------------------------------------------------------------------ acceptance (Lemmas 1-2)
def _poisson_mixture(mean: np.ndarray, accept) -> np.ndarray:
    """sum_n Pois(n; mean) * accept(n) (Appendix D, eq. 47 line 1), summed over the window
    mean -+ (12 sd + 40) of each row, outside which the Poisson mass is below 1e-30."""
    mean = np.atleast_1d(np.asarray(mean, float))
    half = 12 * np.sqrt(mean) + 40
    width = int(2 * np.max(half)) + 1
    n = np.maximum(np.floor(mean - half), 0.0)[:, None] + np.arange(width)[None]
    logp = n * np.log(np.maximum(mean[:, None], 1e-300)) - mean[:, None] - special.gammaln(n + 1)
    return np.sum(np.exp(logp) * accept(n), axis=1)


def bar_cluster(K) -> np.ndarray:
    """N-bar / L-bar = Gamma(K+1/2)^2 / Gamma(K)^2 (Lemmas 1-2)."""
    K = np.asarray(K, float)
    return np.exp(2 * (special.gammaln(K + 0.5) - special.gammaln(K)))


def kappa_s(N, mu_s: float, psi: int) -> np.ndarray:
    """Lemma 1 via the derivation of Appendix D: a BS whose request count is Poisson(mu_s N-bar)
    serves psi of its n requests at random: kappa_s = sum_n P(n) min(1, psi/n)."""
    return _poisson_mixture(mu_s * bar_cluster(N), lambda n: np.minimum(1.0, psi / np.maximum(n, 1.0)))


def kappa_c_from_mean(mean, psi: int) -> np.ndarray:
    """Lemma 2 (eq. 25) in mixture form: one block is kept for the BS's own (closest-BS) user,
    the other psi-1 are shared by the n-1 cooperation requests: sum_n P(n) min(1, (psi-1)/(n-1))."""
    return _poisson_mixture(mean, lambda n: np.minimum(1.0, (psi - 1) / np.maximum(n - 1, 1.0)))


def kappa_c(L, mu_c: float, psi: int) -> np.ndarray:
    """Lemma 2, eq. 25, with mean load mu_c * L-bar."""
    return kappa_c_from_mean(mu_c * bar_cluster(L), psi)


def kappa_printed(mean, psi: int, lemma: int) -> np.ndarray:
    """Eqs. 23 / 25 exactly as printed (for comparison only; see docs for their typos)."""
    mean = np.atleast_1d(np.asarray(mean, float))
    first = special.gammaincc(psi, mean)  # Gamma(psi, m)/(psi-1)!
    if lemma == 1:
        tail = _poisson_mixture(mean, lambda n: np.where(n >= psi + 1, psi / np.maximum(n, 1.0), 0.0))
    else:
        tail = _poisson_mixture(mean, lambda n: np.where(n >= psi, (psi - 1) / np.maximum(n - 1, 1.0), 0.0))
    return first + tail


# ------------------------------------------------------------------ rate (Lemma 3, Theorem 2)
def _ibeta(x, a, b):
    """Incomplete Beta B(x, a, b) = int_0^x t^(a-1) (1-t)^(b-1) dt (paper's notation)."""
    return special.betainc(a, b, x) * special.beta(a, b)


def H1(x, K: float, alpha: float, eta) -> np.ndarray:
    """Lemma 3: 2 int_1^{1/eta} t (1 - (1 + x t^-alpha)^-K) dt, closed form with B(.)."""
    xe = x * eta ** alpha
    d = 2.0 / alpha
    return (eta ** -2 * (1 - (1 + xe) ** -K) + (1 + x) ** -K - 1
            + K * x ** d * (_ibeta(x / (x + 1), 1 - d, K + d) - _ibeta(xe / (xe + 1), 1 - d, K + d)))


def H2(x, alpha: float, eta) -> np.ndarray:
    """Lemma 3: 2 int_{1/eta}^inf t (1 - (1 + x t^-alpha)^-1) dt, closed form with B(.)."""
    xe = x * eta ** alpha
    d = 2.0 / alpha
    return x ** d * _ibeta(xe / (xe + 1), 1 - d, 1 + d) + eta ** -2 * (1 / (1 + xe) - 1)


@lru_cache(maxsize=8)
def _z_nodes(n: int = 160, lo: float = -14.0, hi: float = 36.0):
    """Gauss-Legendre nodes in t = ln z (dz/z = dt)."""
    x, w = np.polynomial.legendre.leggauss(n)
    t = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
    return np.exp(t), 0.5 * (hi - lo) * w


@lru_cache(maxsize=64)
def _eta_nodes(L: int, n: int = 16, edges: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0)):
    """Nodes/weights for E over eta_L with pdf 2(L-1) eta (1-eta^2)^(L-2) (eq. 53): composite
    Gauss-Legendre in eta on `edges` (eq. 29's integrand changes on the scale z^(-1/alpha) near
    eta = 0 and is not smooth in u = eta^2); within 1e-6 relative of adaptive quadrature (docs)."""
    x, w = np.polynomial.legendre.leggauss(n)
    lo, hi = np.array(edges[:-1])[:, None], np.array(edges[1:])[:, None]
    eta = (lo + 0.5 * (hi - lo) * (x + 1)).ravel()
    return eta, (0.5 * (hi - lo) * w).ravel() * 2 * (L - 1) * eta * (1 - eta ** 2) ** (L - 2)


def rate_nats(L: int, pc_ratio, Mt: int, alpha: float, kc: float) -> np.ndarray:
    """Theorem 2, eq. 29 (L >= 2) and eq. 33 (L = 1), in nats; vectorized over pc_ratio.
    Typos fixed (see docs): U uses H1(z p^c, Mt-1) as in Lemma 3 (eq. 29 prints z P^t), and
    eq. 33's numerator is 1 - (1+p^c z)^(1-Mt). Pt cancels: z is scaled by P^t = 1."""
    pc = np.atleast_1d(np.asarray(pc_ratio, float))
    z, wz = _z_nodes()
    sig = (1 + pc[:, None] * z[None]) ** (1 - Mt)  # Laplace transform of g_1, eq. 28
    if L == 1:
        h0 = 1 + H2(z, alpha, 1.0)  # = H0 of eq. 33
        return np.sum(wz[None] * (1 - sig) / h0[None], axis=1)
    eta, we = _eta_nodes(L)
    zz, ee = z[:, None], eta[None, :]
    base = _rate_base(L, alpha, kc)
    out = np.empty(len(pc))
    for k, p in enumerate(pc):  # a handful of powers per call; each is one (nz, ne) quadrature
        coop = kc * H1(zz * p, Mt - 1.0, alpha, ee) if p > 0 else 0.0
        integrand = 1 / base - sig[k][:, None] / (base + coop)
        out[k] = wz @ (integrand @ we)
    return out


@lru_cache(maxsize=256)
def _rate_base(L: int, alpha: float, kc: float) -> np.ndarray:
    """The power-independent part of eq. 29's denominator on the (z, eta) grid (cached per L)."""
    z, _ = _z_nodes()
    eta, _ = _eta_nodes(L)
    zz, ee = z[:, None], eta[None, :]
    return 1 + (1 - kc) * H1(zz, 1.0, alpha, ee) + H2(zz, alpha, ee)  # (nz, ne)


def rate_bits(L: int, pc_ratio, Mt: int, alpha: float, mu_c: float, psi: int) -> np.ndarray:
    """R_c of Theorem 2 in bits/s/Hz with kappa_c of Lemma 2."""
    kc = float(kappa_c(L, mu_c, psi)[0]) if L > 1 else 1.0
    return rate_nats(L, pc_ratio, Mt, alpha, kc) / LN2


# ------------------------------------------------------------------ approximate optimal L (eqs. 37-38)
def expected_eta(L) -> np.ndarray:
    """E[r / r_L] = Gamma(3/2) Gamma(L) / Gamma(L+1/2) under eq. 53 (1 for L=1)."""
    L = np.asarray(L, float)
    return np.exp(special.gammaln(1.5) + special.gammaln(L) - special.gammaln(L + 0.5))


@lru_cache(maxsize=64)
def eta_star(alpha: float, mu_c: float, psi: int, grid: int = 2000) -> float:
    """argmax_eta kappa~_c(eta) (1 - eta^(alpha-2)) (eq. 38, with eq. 37's exponent alpha-2),
    where kappa~_c uses the mean load mu_c eta^-2 (L ~ eta^-2)."""
    eta = np.linspace(min(0.5, np.sqrt(mu_c / (50.0 * psi))), 1 - 1e-6, grid)  # below: kappa~ ~ psi eta^2/mu
    f = kappa_c_from_mean(mu_c * eta ** -2.0, psi) * (1 - eta ** (alpha - 2))
    return float(eta[np.argmax(f)])


def approx_optimal_L(alpha: float, mu_c: float, psi: int, L_max: int) -> int:
    """Sec. IV-B: the L whose E[r/r_L] is closest to eta*."""
    L = np.arange(1, L_max + 1)
    return int(L[np.argmin(np.abs(expected_eta(L) - eta_star(alpha, mu_c, psi)))])


# ------------------------------------------------------------------ joint metric
def t_isac(rate_bits_, crlb_m2, rho: float):
    """Eq. 40: rho R_c + (1 - rho) / sqrt(CRLB), R_c in bits/s/Hz, CRLB in m^2."""
    with np.errstate(divide="ignore"):
        return rho * np.asarray(rate_bits_) + (1 - rho) / np.sqrt(crlb_m2)
