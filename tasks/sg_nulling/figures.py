"""Figs. 2-6 of the paper: each writes figN.png and figN.csv (series, x, y, y_se) into out_dir.

Monte Carlo series use the config's mc_samples / mc_explicit and instance_seed; everything else
(alpha, beta, xi, ...) comes from the config too, with M_t set per figure as in Sec. V.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from isacbench.figures import write_figure

from . import montecarlo
from .config import SgNullingConfig
from .problem import analytic_metrics, feasible_points

Progress = Callable[[float, str], None]


def _mc_rng(cfg: SgNullingConfig, fig: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(cfg.instance_seed, spawn_key=(1000 + fig, *key)))


def _mc_comm(cfg: SgNullingConfig, fig: int, Mt: int, K: int, L: int, J: int, Q: int) -> tuple[float, float]:
    v = montecarlo.simulate_comm(_mc_rng(cfg, fig, Mt, K, L, J, Q), K, L, J, Q, Mt, cfg.alpha, cfg.lambda_b,
                                 cfg.mc_samples, cfg.mc_explicit)
    return cfg.lambda_b * K * v.mean(), cfg.lambda_b * K * v.std(ddof=1) / np.sqrt(v.size)


def _mc_sense(cfg: SgNullingConfig, fig: int, Mt: int, K: int, L: int, J: int, Q: int) -> tuple[float, float]:
    v = montecarlo.simulate_sense(_mc_rng(cfg, fig, Mt, K, L, J, Q), K, L, J, Q, Mt, cfg.alpha, cfg.beta,
                                  cfg.lambda_b, cfg.sensing_gain, cfg.mc_samples, cfg.mc_explicit)
    return cfg.lambda_b * J * v.mean(), cfg.lambda_b * J * v.std(ddof=1) / np.sqrt(v.size)


def _write(out_dir: Path, n: int, rows: list[tuple], plot: Callable) -> list[Path]:
    return write_figure(out_dir, n, ["series", "x", "y", "y_se"], rows, plot)


def _series(rows: list[tuple], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sel = [r for r in rows if r[0] == name]
    return tuple(np.array([r[i] for r in sel], dtype=float) for i in (1, 2, 3))


def _plot_pairs(ax, rows: list[tuple], names: list[tuple[str, str | None, str]]):
    for i, (an, mc, label) in enumerate(names):
        x, y, _ = _series(rows, an)
        ax.plot(x, y, "-", color=f"C{i}", label=f"{label} (analysis)")
        if mc:
            x, y, se = _series(rows, mc)
            ax.errorbar(x, y, yerr=2 * se, fmt="o", color=f"C{i}", ms=4, label=f"{label} (Monte Carlo)")


def fig2(cfg: SgNullingConfig, out_dir: Path, progress: Progress) -> list[Path]:
    """Communication ASE versus K with L = 1 (and J = 1, Q = 1), M_t = 5, 10, 20 (Theorem 1)."""
    rows, names = [], []
    mts = (5, 10, 20)
    for i, Mt in enumerate(mts):
        K = np.arange(1, Mt)
        tc = analytic_metrics(cfg.model_copy(update={"Mt": Mt}), K, 1, 1, 1)["ase_comm"]
        rows += [(f"Mt={Mt} analysis", k, t, 0.0) for k, t in zip(K, tc)]
        mc_k = np.unique(np.linspace(1, Mt - 1, min(Mt - 1, 6)).round().astype(int))
        for j, k in enumerate(mc_k):
            progress((i + j / len(mc_k)) / len(mts), f"Fig. 2: M_t={Mt}, K={k} (Monte Carlo)")
            rows.append((f"Mt={Mt} Monte Carlo", k, *_mc_comm(cfg, 2, Mt, int(k), 1, 1, 1)))
        names.append((f"Mt={Mt} analysis", f"Mt={Mt} Monte Carlo", f"$M_t$={Mt}"))

    def plot(ax):
        _plot_pairs(ax, rows, names)
        ax.set(xlabel="number of users per BS $K$", ylabel=r"$T_c^{ASE}$ [nats/s/Hz/km$^2$]",
               title="Fig. 2: communication ASE, $L=1$")
    progress(1.0, "Fig. 2 done")
    return _write(out_dir, 2, rows, plot)


def fig3(cfg: SgNullingConfig, out_dir: Path, progress: Progress) -> list[Path]:
    """Communication ASE versus K for L = 1..4, M_t = 20: the maximum is at L = 1 (Prop. 1)."""
    Mt, rows, names = 20, [], []
    c = cfg.model_copy(update={"Mt": Mt})
    for L in (1, 2, 3, 4):
        K = np.arange(1, (Mt - 1) // L + 1)
        tc = analytic_metrics(c, K, L, 1, 1)["ase_comm"]
        rows += [(f"L={L} analysis", k, t, 0.0) for k, t in zip(K, tc)]
        for j, k in enumerate(sorted({1, int(K[np.argmax(tc)]), int(K[-1])})):
            progress((L - 1 + j / 3) / 4, f"Fig. 3: L={L}, K={k} (Monte Carlo)")
            rows.append((f"L={L} Monte Carlo", k, *_mc_comm(cfg, 3, Mt, k, L, 1, 1)))
        names.append((f"L={L} analysis", f"L={L} Monte Carlo", f"$L$={L}"))

    def plot(ax):
        _plot_pairs(ax, rows, names)
        ax.set(xlabel="number of users per BS $K$", ylabel=r"$T_c^{ASE}$ [nats/s/Hz/km$^2$]",
               title="Fig. 3: communication ASE versus $K$ and $L$, $M_t=20$")
    progress(1.0, "Fig. 3 done")
    return _write(out_dir, 3, rows, plot)


def fig4(cfg: SgNullingConfig, out_dir: Path, progress: Progress) -> list[Path]:
    """Sensing ASE versus Q with K = L = 1 and the largest J the DoF allow (eq. 16a), M_t = 10, 20."""
    rows, names = [], []
    mts = (10, 20)
    for i, Mt in enumerate(mts):
        Q = np.arange(1, Mt)
        J = np.where(Q == 1, cfg.J_max, np.minimum(cfg.J_max, (Mt - 2) // np.maximum(Q - 1, 1)))
        ts = analytic_metrics(cfg.model_copy(update={"Mt": Mt}), 1, 1, J, Q)["ase_sense"]
        rows += [(f"Mt={Mt} analysis", q, t, 0.0) for q, t in zip(Q, ts)]
        for j, (q, jj) in enumerate(zip(Q, J)):
            progress((i + j / len(Q)) / len(mts), f"Fig. 4: M_t={Mt}, Q={q} (Monte Carlo)")
            rows.append((f"Mt={Mt} Monte Carlo", q, *_mc_sense(cfg, 4, Mt, 1, 1, int(jj), int(q))))
        names.append((f"Mt={Mt} analysis", f"Mt={Mt} Monte Carlo", f"$M_t$={Mt}"))

    def plot(ax):
        _plot_pairs(ax, rows, names)
        ax.set(xlabel="sensing cluster size $Q$", ylabel=r"$T_s^{ASE}$ [nats/s/Hz/km$^2$]",
               title="Fig. 4: sensing ASE, $K=L=1$, $J=\\min(J_{max}, \\lfloor (M_t-2)/(Q-1) \\rfloor)$")
    progress(1.0, "Fig. 4 done")
    return _write(out_dir, 4, rows, plot)


def pareto_front(ts: np.ndarray, tc: np.ndarray) -> np.ndarray:
    """Indices of the (T_s, T_c) points on the upper-right boundary, by increasing T_s."""
    order = np.lexsort((-tc, -ts))  # T_s descending, ties by T_c descending
    best = np.maximum.accumulate(tc[order])
    keep = np.concatenate([[True], tc[order][1:] > best[:-1]])
    return order[keep][::-1]


def fig5(cfg: SgNullingConfig, out_dir: Path, progress: Progress) -> list[Path]:
    """S&C ASE boundary (P2 swept over T_s^th) under cluster floors L >= L^th, Q >= Q^th, M_t = 30."""
    c = cfg.model_copy(update={"Mt": 30})
    progress(0.05, "Fig. 5: analytic rates over the feasible box (M_t = 30)")
    pts = feasible_points(c)
    m = analytic_metrics(c, **pts)
    rows, floors = [], ((1, 1), (2, 2), (3, 3), (4, 4))
    for i, (lt, qt) in enumerate(floors):
        ok = np.flatnonzero((pts["L"] >= lt) & (pts["Q"] >= qt))
        front = ok[pareto_front(m["ase_sense"][ok], m["ase_comm"][ok])]
        rows += [(f"L>={lt}, Q>={qt}", m["ase_sense"][j], m["ase_comm"][j], 0.0) for j in front]
        progress(0.3 + 0.7 * (i + 1) / len(floors), f"Fig. 5: boundary for L>={lt}, Q>={qt}")

    def plot(ax):
        for i, (lt, qt) in enumerate(floors):
            x, y, _ = _series(rows, f"L>={lt}, Q>={qt}")
            ax.step(x, y, where="post", color=f"C{i}", label=f"$L\\geq{lt}$, $Q\\geq{qt}$")
        ax.set(xlabel=r"$T_s^{ASE}$ [nats/s/Hz/km$^2$]", ylabel=r"$T_c^{ASE}$ [nats/s/Hz/km$^2$]",
               title="Fig. 5: S&C ASE boundary, $M_t=30$ (analysis)")
    return _write(out_dir, 5, rows, plot)


def fig6(cfg: SgNullingConfig, out_dir: Path, progress: Progress) -> list[Path]:
    """Optimal weighted-sum ASE of P1 (eq. 16) versus rho, with its S&C parts (M_t from the config)."""
    progress(0.05, "Fig. 6: analytic rates over the feasible box")
    pts = feasible_points(cfg)
    m = analytic_metrics(cfg, **pts)
    rows = []
    for rho in np.linspace(0, 1, 21):
        i = int(np.argmax(rho * m["ase_comm"] + (1 - rho) * m["ase_sense"]))
        rows += [("T_ASE", rho, rho * m["ase_comm"][i] + (1 - rho) * m["ase_sense"][i], 0.0),
                 ("T_c_ASE", rho, m["ase_comm"][i], 0.0), ("T_s_ASE", rho, m["ase_sense"][i], 0.0)]
        rows += [(f"opt_{v}", rho, float(pts[v][i]), 0.0) for v in ("K", "L", "J", "Q")]
    progress(1.0, "Fig. 6 done")

    def plot(ax):
        for name, label in (("T_ASE", r"$T^{ASE}$ (eq. 15)"), ("T_c_ASE", r"$T_c^{ASE}$"),
                            ("T_s_ASE", r"$T_s^{ASE}$")):
            x, y, _ = _series(rows, name)
            ax.plot(x, y, "-o", ms=3, label=label)
        ax.set(xlabel=r"weight of communication $\rho$", ylabel="ASE [nats/s/Hz/km$^2$]",
               title=f"Fig. 6: P1 optimum versus $\\rho$, $M_t={cfg.Mt}$ (analysis)")
    return _write(out_dir, 6, rows, plot)


FIGURES = {2: fig2, 3: fig3, 4: fig4, 5: fig5, 6: fig6}
