"""Figs. 3-10 of Meng et al.: each fn(out_dir, progress, cfg=None) writes figN.png and figN.csv
and returns their paths; `cfg` (the task's config, paper defaults if None) is the base that each
figure varies. Analytic series use the closed forms; Monte Carlo series the simulator."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from isacbench.figures import write_figure

from . import analytic as A
from . import montecarlo as M
from . import tradeoff
from .config import SgClusterConfig
from .problem import SgClusterProblem

Progress = Callable[[float, str], None]


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([20240, *key]))


def _with(cfg: SgClusterConfig | None, **update) -> SgClusterConfig:
    """The task's config (paper defaults if None) with a figure's overrides, re-validated."""
    base = (cfg or SgClusterConfig()).model_dump()
    return SgClusterConfig(**{**base, **update})


def fig3(out_dir: Path, progress: Progress, samples: int = 3000, cfg: SgClusterConfig | None = None) -> list[Path]:
    """GDoP vs N: Prop. 1 (eq. 16), Corollary 1 (eq. 17) and simulated angles (mean, median)."""
    cfg, Ns, rows = cfg or SgClusterConfig(), list(range(2, 21)), []
    for k, N in enumerate(Ns):
        g = M.simulate_sensing(cfg, N, samples, _rng(3, N), acceptance=False).gdop
        st = M.McStat.of(g)
        rows.append([N, float(A.gdop_prop1(N)), 2 / N ** 2, st.mean, st.se, float(np.median(g))])
        progress((k + 1) / len(Ns), f"fig 3: N={N}")
    r = np.array(rows)

    def draw(ax):
        ax.semilogy(r[:, 0], r[:, 1], "-", label="Prop. 1 (eq. 16)")
        ax.semilogy(r[:, 0], r[:, 2], ":", label="2/N^2 (eq. 17)")
        ax.errorbar(r[:, 0], r[:, 3], yerr=3 * r[:, 4], fmt="o", ms=3, label="Monte Carlo mean (+-3 SE)")
        ax.semilogy(r[:, 0], r[:, 5], "x", label="Monte Carlo median")
        ax.set(xlabel="N", ylabel="GDoP", title="Fig. 3: GDoP vs N (mean diverges for N <= 3)")
    return write_figure(out_dir, 3, ["N", "prop1", "corollary1", "mc_mean", "mc_se", "mc_median"], rows, draw)


def _sensing_fig(n: int, acceptance: bool, out_dir: Path, progress: Progress, samples: int,
                 cfg: SgClusterConfig | None) -> list[Path]:
    cfg = cfg or SgClusterConfig()
    z, lam, rows = cfg.zeta2_per_watt() * cfg.Pt, cfg.lambda_b_m2, []
    Ns = list(range(2, 31, 2)) if acceptance else list(range(2, 31))
    for k, N in enumerate(Ns):
        ks = float(A.kappa_s(N, cfg.lambda_s / cfg.lambda_b, cfg.psi)[0]) if acceptance else 1.0
        s = M.simulate_sensing(cfg, N, samples, _rng(n, N), acceptance=acceptance).crlb(cfg.Pt)
        rows.append([N, ks, np.sqrt(float(A.crlb_eq19(N, z, lam, cfg.beta))) / ks,
                     np.sqrt(float(A.crlb_eq21(N, z, lam, cfg.beta, ks))),
                     np.sqrt(float(A.crlb_theorem1(N, z, lam))) / ks,
                     np.sqrt(s.mean), s.se / (2 * np.sqrt(s.mean))])
        progress((k + 1) / len(Ns), f"fig {n}: N={N}")
    r = np.array(rows)

    def draw(ax):
        ax.plot(r[:, 0], r[:, 3], "-", label="eq. 24 (eq. 21 with kappa_s)" if acceptance else "eq. 21")
        ax.plot(r[:, 0], r[:, 2], "--", label="eq. 19 (exact E[d_n])")
        ax.plot(r[:, 0], r[:, 4], ":", label="Theorem 1 as printed (eq. 22)")
        ax.errorbar(r[:, 0], r[:, 5], yerr=3 * r[:, 6], fmt="o", ms=3, label="Monte Carlo (+-3 SE)")
        ax.set_yscale("log")
        ax.set(xlabel="N", ylabel="root CRLB [m]", title=f"Fig. {n}: root CRLB vs N "
               + ("(acceptance simulated)" if acceptance else "(kappa_s = 1)"))
    return write_figure(out_dir, n, ["N", "kappa_s", "root_eq19", "root_eq21_24", "root_thm1", "root_mc", "root_mc_se"],
                  rows, draw)


def fig4(out_dir: Path, progress: Progress, samples: int = 2000, cfg: SgClusterConfig | None = None) -> list[Path]:
    """Root CRLB vs N with kappa_s = 1: eqs. 19, 21, 22 and simulation (p^s = P^t)."""
    return _sensing_fig(4, False, out_dir, progress, samples, cfg)


def fig5(out_dir: Path, progress: Progress, samples: int = 400, cfg: SgClusterConfig | None = None) -> list[Path]:
    """Root CRLB vs N with the acceptance of Lemma 1 (eq. 24) and with simulated loads."""
    return _sensing_fig(5, True, out_dir, progress, samples, cfg)


def fig6(out_dir: Path, progress: Progress, samples: int = 400, cfg: SgClusterConfig | None = None) -> list[Path]:
    """R_c vs L for p^c/P^t in {0.25, 0.5, 1} and lambda_u/lambda_b in {1, 5}: eq. 29 and simulation."""
    ratios, rows = [0.25, 0.5, 1.0], []
    mc_L = [1, 2, 3, 4, 6, 8, 12, 16, 20]
    jobs = [(mu, L) for mu in (1.0, 5.0) for L in range(1, 21)]
    for k, (mu, L) in enumerate(jobs):
        c = _with(cfg, lambda_u=mu * (cfg or SgClusterConfig()).lambda_b)
        an = A.rate_bits(L, ratios, c.Mt, c.alpha, mu, c.psi)
        if L in mc_L:
            st = M.simulate_rate(c, L, samples, _rng(6, int(mu), L)).rate(ratios)
            mc, se = st.mean, st.se
        else:
            mc = se = np.full(3, np.nan)
        for j, p in enumerate(ratios):
            rows.append([mu, L, p, an[j], mc[j], se[j]])
        progress((k + 1) / len(jobs), f"fig 6: mu={mu:g} L={L}")
    r = np.array(rows)

    def draw(ax):
        for mu, ls in ((1.0, "-"), (5.0, "--")):
            for p in ratios:
                m = (r[:, 0] == mu) & (r[:, 2] == p)
                line, = ax.plot(r[m, 1], r[m, 3], ls, label=f"eq. 29, mu={mu:g}, pc/Pt={p:g}")
                ok = m & np.isfinite(r[:, 4])
                ax.errorbar(r[ok, 1], r[ok, 4], yerr=3 * r[ok, 5], fmt="o", ms=3, color=line.get_color())
        ax.set(xlabel="L", ylabel="R_c [bits/s/Hz]", title="Fig. 6: rate vs L (markers: Monte Carlo)")
    return write_figure(out_dir, 6, ["mu_c", "L", "pc_ratio", "rate_eq29", "rate_mc", "rate_mc_se"], rows, draw)


def fig7(out_dir: Path, progress: Progress, samples: int = 300, cfg: SgClusterConfig | None = None) -> list[Path]:
    """Optimal L vs psi: approximate search (eqs. 37-38), exhaustive on eq. 29, exhaustive on
    simulation (L within +-3 of the eq. 29 optimum, p^c = P^t/2)."""
    psis, rows = [5, 10, 15, 20, 25, 30], []
    jobs = [(mu, psi) for mu in (1.0, 5.0) for psi in psis]
    for k, (mu, psi) in enumerate(jobs):
        c = _with(cfg, lambda_u=mu * (cfg or SgClusterConfig()).lambda_b, psi=psi)
        an = [A.rate_bits(L, [0.5], c.Mt, c.alpha, mu, psi)[0] for L in range(1, 41)]
        L_an = 1 + int(np.argmax(an))
        Ls = list(range(max(1, L_an - 3), L_an + 4))
        mc = [M.simulate_rate(c, L, samples, _rng(7, int(mu), psi)).rate([0.5]).mean[0] for L in Ls]
        rows.append([mu, psi, A.approx_optimal_L(c.alpha, mu, psi, 40), L_an, Ls[int(np.argmax(mc))]])
        progress((k + 1) / len(jobs), f"fig 7: mu={mu:g} psi={psi}")
    r = np.array(rows)

    def draw(ax):
        for mu, ls in ((1.0, "-"), (5.0, "--")):
            m = r[:, 0] == mu
            ax.plot(r[m, 1], r[m, 2], ls + "o", ms=3, label=f"approx. search, mu={mu:g}")
            ax.plot(r[m, 1], r[m, 3], ls + "s", ms=3, label=f"exhaustive eq. 29, mu={mu:g}")
            ax.plot(r[m, 1], r[m, 4], "x", ms=6, label=f"exhaustive Monte Carlo, mu={mu:g}")
        ax.set(xlabel="psi (resource blocks)", ylabel="optimal L", title="Fig. 7: optimal cluster size")
    return write_figure(out_dir, 7, ["mu_c", "psi", "L_approx", "L_eq29", "L_mc"], rows, draw)


def _region_fig(n: int, variants: list[tuple[str, dict]], out_dir: Path, progress: Progress,
                cfg: SgClusterConfig | None) -> list[Path]:
    rows = []
    for k, (label, over) in enumerate(variants):
        prob = SgClusterProblem(_with(cfg, problem="region", **over))
        g = tradeoff.grid(prob)
        f = np.where(g["feasible"] & np.isfinite(g["crlb"]))[0]
        front = f[tradeoff.pareto(g["rate"][f], np.sqrt(g["crlb"][f]))]
        for i in front:
            rows.append([label, "cooperative", g["L"][i], g["N"][i], g["p_c"][i], g["rate"][i], np.sqrt(g["crlb"][i])])
        a, b = tradeoff.corners(g)
        for tau in np.linspace(0.0, 0.98, 50):
            r, c = tradeoff.time_sharing(g["rate"][a], g["crlb"][b], tau)
            rows.append([label, "time-sharing", -1, -1, tau, float(r), float(np.sqrt(c))])
        progress((k + 1) / len(variants), f"fig {n}: {label}")

    def draw(ax):
        for label, _ in variants:
            for scheme, ls in (("cooperative", "-"), ("time-sharing", "--")):
                pts = [r for r in rows if r[0] == label and r[1] == scheme]
                ax.plot([r[6] for r in pts], [r[5] for r in pts], ls, label=f"{scheme}, {label}")
        ax.set_xscale("log")
        ax.set(xlabel="root CRLB [m]", ylabel="R_c [bits/s/Hz]", title=f"Fig. {n}: rate / root-CRLB boundary (eq. 39)")
    return write_figure(out_dir, n, ["variant", "scheme", "L", "N", "p_c", "rate", "root_crlb"], rows, draw)


def fig8(out_dir: Path, progress: Progress, cfg: SgClusterConfig | None = None) -> list[Path]:
    """Boundary of the rate / root-CRLB region for C_backhaul in {4.3, 8.6} vs time sharing
    (time-sharing rows: L = N = -1 and the p_c column holds the time fraction tau)."""
    return _region_fig(8, [("C=4.3", {"C_backhaul": 4.3}), ("C=8.6", {"C_backhaul": 8.6})], out_dir, progress, cfg)


def fig9(out_dir: Path, progress: Progress, cfg: SgClusterConfig | None = None) -> list[Path]:
    """Boundary for lambda_u/lambda_b in {1, 5} vs time sharing."""
    lam_b = (cfg or SgClusterConfig()).lambda_b
    return _region_fig(9, [("mu=1", {"lambda_u": lam_b}), ("mu=5", {"lambda_u": 5 * lam_b})], out_dir, progress, cfg)


def fig10(out_dir: Path, progress: Progress, cfg: SgClusterConfig | None = None) -> list[Path]:
    """Optimal T^ISAC (P2 on the grid) vs rho, against no cooperation (L = N = 1) and time sharing."""
    rhos = np.concatenate([[0.0], np.logspace(-4, 0, 17)])
    base = SgClusterProblem(_with(cfg, problem="P2"))
    g = tradeoff.grid(base)
    f = g["feasible"]
    nc = f & (g["L"] == 1) & (g["N"] == 1)
    a, b = tradeoff.corners(g)
    rows = []
    for k, rho in enumerate(rhos):
        with np.errstate(divide="ignore"):
            t = rho * g["rate"] + (1 - rho) / np.sqrt(g["crlb"])
        i = int(np.argmax(np.where(f, t, -np.inf)))
        j = int(np.argmax(np.where(nc, t, -np.inf)))
        rows.append([rho, t[i], g["rate"][i], 1 / np.sqrt(g["crlb"][i]), g["L"][i], g["N"][i], g["p_c"][i],
                     t[j], tradeoff.best_time_sharing(g["rate"][a], g["crlb"][b], rho)[1]])
        progress((k + 1) / len(rhos), f"fig 10: rho={rho:.3g}")
    r = np.array(rows, float)

    def draw(ax):
        x = np.maximum(r[:, 0], 1e-5)
        ax.loglog(x, r[:, 1], "-o", ms=3, label="cooperative (P2 optimum)")
        ax.loglog(x, r[:, 8], "--", label="time sharing (best tau)")
        ax.loglog(x, r[:, 7], ":", label="non-cooperative (L = N = 1)")
        ax.set(xlabel="rho (rho = 0 drawn at 1e-5)", ylabel="T^ISAC", title="Fig. 10: weighted S&C performance")
    return write_figure(out_dir, 10, ["rho", "t_isac", "rate", "inv_root_crlb", "L", "N", "p_c", "t_noncoop", "t_timesharing"],
                  rows, draw)


FIGURES: dict[int, Callable[..., list]] = {3: fig3, 4: fig4, 5: fig5, 6: fig6, 7: fig7, 8: fig8, 9: fig9, 10: fig10}
