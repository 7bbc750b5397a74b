"""Analytic evaluator: Theorem 1 (eq. 8), Prop. 2 (eqs. 10-13), Theorem 2 (eq. 14), eqs. (3), (6),
(15) and Prop. 3 (eqs. 17-18), with the paper's typos corrected as listed in docs/models/sg-nulling.md.

Quadrature: every semi-infinite integral is a trapezoid rule in a logarithmic variable (z = e^t),
where the integrands are smooth and decay exponentially at both ends, so the rule converges
geometrically; the truncation points keep the neglected tails below ~1e-10. Finite integrals over
the interference hole use Gauss-Legendre after the substitution u = 2 cos(phi), which removes the
square-root singularity of arccos at u = 2. Measured errors are in the docs and pinned by tests.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special

# ------------------------------------------------------------------ quadrature grids


def _loggrid(lo: float, hi: float, h: float) -> tuple[np.ndarray, float]:
    """Nodes t of the trapezoid rule on [lo, hi] with step h (the integrand vanishes at both ends)."""
    n = int(np.ceil((hi - lo) / h))
    return np.linspace(lo, hi, n + 1), (hi - lo) / n


_GL_PHI_X, _GL_PHI_W = np.polynomial.legendre.leggauss(48)
PHI_NODES = (_GL_PHI_X + 1.0) * np.pi / 4.0  # Gauss-Legendre on [0, pi/2]
PHI_WEIGHTS = _GL_PHI_W * np.pi / 4.0


def one_minus_gamma_laplace(x: np.ndarray, K) -> np.ndarray:
    """1 - (1 + x)^(-K): one minus the Laplace transform of a Gamma(K, 1) gain, without cancellation."""
    return -np.expm1(-K * np.log1p(x))


# ------------------------------------------------------------------ communication: Theorem 1


def F(z: np.ndarray, alpha: float) -> np.ndarray:
    """F(z, alpha) = e^{-z} + z^{2/alpha} gamma(1 - 2/alpha, z), with gamma the LOWER incomplete
    gamma function (App. A, eq. 21: E_r[exp(-pi lambda r^2 (F - 1))] = 1/F). Theorem 1 prints
    '(e^{-z} - 1)' and Gamma(.,.) (upper); both make eq. (8) diverge (see docs)."""
    d = 2.0 / alpha
    return np.exp(-z) + z**d * special.gammainc(1.0 - d, z) * special.gamma(1.0 - d)


@lru_cache(maxsize=16)
def _comm_grid(alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    """z = e^t nodes, 1/F(z) and the step for the eq. (8) integral in t = ln z.
    The integrand (1 - e^{-zY})/F decays like Y e^t at t -> -inf and like e^{-2t/alpha} at +inf."""
    t, h = _loggrid(-45.0, 25.0 * alpha + 10.0, 0.1)
    z = np.exp(t)
    return z, 1.0 / F(z, alpha), h


def misr_gain(L, alpha: float):
    """G_L = Gamma(L + alpha/2) / (Gamma(L + 1) Gamma(1 + alpha/2)) (App. A; Haenggi's MISR gain)."""
    L = np.asarray(L, dtype=float)
    return np.exp(special.gammaln(L + alpha / 2) - special.gammaln(L + 1) - special.gammaln(1 + alpha / 2))


def Y(K, L, J, Q, Mt: int, alpha: float):
    """Y(K, L, J, Q) = G_L (M_t - J(Q-1) + 1 - KL) / K (Theorem 1)."""
    K, L, J, Q = (np.asarray(v, dtype=float) for v in (K, L, J, Q))
    return misr_gain(L, alpha) * (Mt - J * (Q - 1) + 1 - K * L) / K


def rate_from_y(y, alpha: float) -> np.ndarray:
    """Phi(Y) = int_0^inf (1 - e^{-zY}) / (z F(z, alpha)) dz: the rate of eq. (22) [nats/s/Hz]."""
    z, inv_f, h = _comm_grid(alpha)
    y = np.asarray(y, dtype=float)
    return h * (-np.expm1(-np.multiply.outer(y, z)) * inv_f).sum(axis=-1)


def rate_comm(K, L, J, Q, Mt: int, alpha: float) -> np.ndarray:
    """R_c of eq. (22) (Theorem 1 divided by lambda_b K); requires KL + J(Q-1) + 1 <= M_t."""
    return rate_from_y(Y(K, L, J, Q, Mt, alpha), alpha)


def ase_comm(K, L, J, Q, Mt: int, alpha: float, lambda_b: float) -> np.ndarray:
    """T_c^ASE = lambda_b K R_c (eqs. 3, 8) [nats/s/Hz/km^2]."""
    return lambda_b * np.asarray(K, dtype=float) * rate_comm(K, L, J, Q, Mt, alpha)


# ------------------------------------------------------------------ Prop. 3: relaxed K


def dtc_dv(v, L: int, alpha: float) -> np.ndarray:
    """d/dv [v Phi(G_L (1/v - L))] = int (1 - e^{-zY} - z G_L e^{-zY} / v) / (z F) dz, Y = G_L (1/v - L).
    This is G'(v) of Prop. 3 (eq. 18) with the MISR gain G_L kept (the paper drops it; G_1 = 1)."""
    z, inv_f, h = _comm_grid(alpha)
    v = np.asarray(v, dtype=float)
    g = float(misr_gain(L, alpha))
    y = g * (1.0 / v - L)
    e = np.exp(-np.multiply.outer(y, z))
    return h * (((1.0 - e) - np.multiply.outer(g / v, z) * e) * inv_f).sum(axis=-1)


@lru_cache(maxsize=256)
def v_star(L: int, alpha: float, tol: float = 1e-12) -> float:
    """The unique root of eq. (18) in (0, 1/L), by bisection (Prop. 3). T_c = lambda_b N v Phi(...)
    with N = M_t - J(Q-1) + 1 is concave in v, so the root maximizes the relaxed T_c^ASE (eq. 17)."""
    lo, hi = 1e-9 / L, (1.0 - 1e-9) / L
    if not (dtc_dv(lo, L, alpha) > 0 > dtc_dv(hi, L, alpha)):
        raise ArithmeticError(f"eq. (18) has no sign change on (0, 1/L) for L={L}, alpha={alpha}")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if dtc_dv(mid, L, alpha) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------ sensing: Prop. 2 and Theorem 2


def hole_integral(w: np.ndarray, K: int, alpha: float) -> np.ndarray:
    """H(w) = int_0^2 2 arccos(u/2) u (1 - (1 + w u^{-alpha})^{-K}) du (eq. 11's hole term, upper
    limit 2, not the printed 2/pi), computed as int_0^{pi/2} 4 phi sin(2 phi) (...) dphi with u = 2 cos(phi).
    lambda_b R^2 H(z R^{2 beta - alpha}) is the interference the hole of radius R around the target
    would have produced. H(inf) = pi (the hole area in units of R^2)."""
    u = 2.0 * np.cos(PHI_NODES)
    kern = PHI_WEIGHTS * 4.0 * PHI_NODES * np.sin(2.0 * PHI_NODES)
    return (one_minus_gamma_laplace(np.multiply.outer(w, u**-alpha), K) * kern).sum(axis=-1)


class SensingRates:
    """R_s(K, Q) for Q = 1..Q_max (eqs. 10-14), cached per K. The constants of one config:
    c = xi Delta T kappa M_r, alpha, beta, lambda_b."""

    def __init__(self, c: float, alpha: float, beta: float, lambda_b: float, Q_max: int):
        self.c, self.alpha, self.beta, self.lambda_b, self.Q_max = c, alpha, beta, lambda_b, Q_max
        self.delta = 2.0 / alpha
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, K, Q) -> np.ndarray:
        """R_s [nats/s/Hz] for arrays K, Q (broadcast)."""
        K, Q = np.broadcast_arrays(np.asarray(K, dtype=int), np.asarray(Q, dtype=int))
        out = np.empty(K.shape)
        for k in np.unique(K):
            sel = K == k
            out[sel] = self.table(int(k))[Q[sel] - 1]
        return out

    def table(self, K: int) -> np.ndarray:
        if K not in self._cache:
            self._cache[K] = np.concatenate([[self.q1(K)], self.q_ge2(K)])
        return self._cache[K]

    # ---- Q = 1: Prop. 2, exact up to the Gamma(K, 1) gain approximations
    def q1(self, K: int, force_general: bool = False) -> float:
        """R_s of eq. (13) for Q = 1 with the hole of radius R around the target (eqs. 10-12)."""
        a_, b_, c, d = self.alpha, self.beta, self.c, self.delta
        kb = K * special.beta(1 - d, K + d)  # K B(1 - 2/alpha, K + 2/alpha): eq. (11), 2/beta -> 2/alpha
        shift = max(0.0, -np.log(c))
        if abs(a_ - 2 * b_) < 1e-12 and not force_general:
            # alpha = 2 beta: the hole argument z R^{2beta-alpha} = z and the R-average is closed form,
            # E_R[exp(-pi lambda R^2 (K B z^d - H(z)/pi))] = 1 / (1 + K B z^d - H(z)/pi) (eq. 12)
            t, h = _loggrid(-30.0 - np.log(K * c), 25.0 / d + shift, 0.1)
            z = np.exp(t)
            lap = 1.0 / (1.0 + kb * z**d - hole_integral(z, K, a_) / np.pi)
            return float(h * (one_minus_gamma_laplace(c * z, K) * lap).sum())
        # general alpha, beta: average over a = pi lambda R^2 ~ Exp(1) numerically (log grid in a)
        t, h = _loggrid(-30.0 - np.log(K * c), 25.0 / d * max(1.0, 2 * b_ / a_) + shift, 0.2)
        ua, ha = _loggrid(-40.0, np.log(60.0), 0.2)
        a = np.exp(ua)
        wa = ha * a * np.exp(-a)
        z = np.exp(t)[:, None]
        pl = np.pi * self.lambda_b
        r2 = a / pl  # R^2
        w = z * r2 ** (b_ - a_ / 2)  # z R^{2 beta - alpha}
        expo = -pl * kb * z**d * r2 ** (2 * b_ / a_) + self.lambda_b * r2 * hole_integral(w, K, a_)
        lap = (np.exp(expo) * wa).sum(axis=1)
        return float(h * (one_minus_gamma_laplace(c * z[:, 0], K) * lap).sum())

    # ---- Q >= 2: Theorem 2 (hole neglected, App. C)
    def q_ge2(self, K: int) -> np.ndarray:
        """R_s of eq. (14) for Q = 2..Q_max. With the hole neglected the interference I (beyond the
        (Q-1)-th nearest neighbour of the serving BS, at distance r_Q) is independent of the target
        distance R, so with s = z R^{2 beta} the double integral of eq. (14) separates:
        R_s = int ds/s (1 - E_R[(1 + c s R^{-2 beta})^{-K}]) E_r[L_I(s | r_Q)], with (eq. 24)
        L_I(s | r) = exp(-pi lambda (r^2 ((1 + s r^{-alpha})^{-K} - 1) + K s^d B(x; 1 - d, K + d))),
        x = s r^{-alpha} / (1 + s r^{-alpha}), d = 2/alpha. In sigma = s (pi lambda)^{alpha/2},
        a = pi lambda R^2 ~ Exp(1), b = pi lambda r_Q^2 ~ Gamma(Q - 1, 1) nothing depends on lambda
        except c' = c (pi lambda)^{beta - alpha/2}."""
        if self.Q_max < 2:
            return np.empty(0)
        a_, b_, d = self.alpha, self.beta, self.delta
        cp = self.c * (np.pi * self.lambda_b) ** (b_ - a_ / 2)
        t, h = _loggrid(-27.6 * b_ - np.log(K * cp), (a_ / 2) * np.log(60.0 * (self.Q_max + 10)), 0.1)
        sigma = np.exp(t)
        # 1 - L_S(sigma) = E_a[1 - (1 + c' sigma a^{-beta})^{-K}]
        ua, ha = _loggrid(-40.0, np.log(60.0), 0.1)
        a = np.exp(ua)
        wa = ha * a * np.exp(-a)
        sig_term = one_minus_gamma_laplace(cp * np.multiply.outer(sigma, a**-b_), K) @ wa
        # L_I(sigma) for every Q at once: one exponent matrix over (sigma, b), Gamma(Q-1) weights per Q
        ub, hb = _loggrid(-40.0, np.log(self.Q_max + 80.0), 0.1)
        b = np.exp(ub)
        w = np.multiply.outer(sigma, b ** (-a_ / 2))
        x = w / (1.0 + w)
        bfun = special.betainc(1 - d, K + d, x) * special.beta(1 - d, K + d)
        expo = b * one_minus_gamma_laplace(w, K) - K * sigma[:, None] ** d * bfun
        q = np.arange(2, self.Q_max + 1)
        wb = hb * np.exp(np.multiply.outer(ub, q - 1) - b[:, None] - special.gammaln(q - 1))
        lap = np.exp(expo) @ wb  # (sigma, Q)
        return h * (sig_term @ lap)


def ase_sense(J, rate_s, lambda_b: float):
    """T_s^ASE = lambda_b J R_s (eq. 6) [nats/s/Hz/km^2]."""
    return lambda_b * np.asarray(J, dtype=float) * rate_s
