"""Fig. 4: topology snapshots of the ENT (first evaluation episode, first frame), drawn with
baseline policies: (a) CCN-MRT (localized regime), (b) Random-MRT (mixed local / federated)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np

from isacbench.api import Budget


def _snapshot(task, solver) -> tuple:
    env = task.evaluation_env()
    probs = task.frame_problems(env)
    rng = np.random.default_rng(0)
    xs = [solver.solve(pr, Budget(), rng).decision for pr in probs]
    ap, users, targets = env.ap[0].copy(), env.users[0].copy(), env.x_pred[0, :, :2].copy()
    task.apply_frame_decisions(env, probs, xs)
    _, _, metrics = env.end_frame()
    return env.last_decision.take(slice(0, 1)), ap, users, targets, {k: float(v[0]) for k, v in metrics.items()}


def topology_snapshot(task) -> Callable[[Path, Callable[[float, str], None]], list[Path]]:
    def figure(out_dir: Path, progress: Callable[[float, str], None] = lambda f, t: None) -> list[Path]:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .baselines import CcnMRT, RandomMRT

        p = task.params
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.4))
        rows = []
        colors = plt.cm.tab10(np.arange(10))
        for n, (ax, solver, title) in enumerate(zip(axes, (CcnMRT(), RandomMRT()),
                                                    ("(a) CCN-MRT: localized regime", "(b) Random-MRT: elastic"))):
            d, ap, users, targets, metrics = _snapshot(task, solver)
            for m in range(p.M):  # cell borders, shaded by the CFN of the CCN
                x0, y0 = task.layout.centers[m] - p.cell / 2
                if d.fed_users.any() or d.fed_targets.any():
                    ax.add_patch(plt.Rectangle((x0, y0), p.cell, p.cell, fill=True, alpha=0.08,
                                               color=colors[d.group[0, m] % 10], lw=0))
                ax.add_patch(plt.Rectangle((x0, y0), p.cell, p.cell, fill=False, ec="0.6", lw=0.8))
            ax.scatter(*ap.T, marker="^", c="k", s=45, label="AP")
            for kind, pos, fed, marker, cell_size in (("user", users, d.fed_users[0], "o", p.K),
                                                      ("target", targets, d.fed_targets[0], "D", p.Q)):
                cfn = d.group[0, np.arange(len(pos)) // cell_size]
                ax.scatter(*pos[~fed].T, marker=marker, facecolors="none", edgecolors="0.3", s=40,
                           label=f"local {kind}")
                ax.scatter(*pos[fed].T, marker=marker, c=[colors[c % 10] for c in cfn[fed]], s=40,
                           label=f"federated {kind}")
                for i, (xy, f) in enumerate(zip(pos, fed)):
                    rows.append({"panel": "ab"[n], "solver": solver.name, "node": kind, "index": i,
                                 "cell": i // cell_size, "x_m": xy[0], "y_m": xy[1],
                                 "regime": "federated" if f else "local", "cfn": int(cfn[i]) if f else ""})
            for i, xy in enumerate(ap):
                rows.append({"panel": "ab"[n], "solver": solver.name, "node": "ap", "index": i, "cell": i // p.A,
                             "x_m": xy[0], "y_m": xy[1], "regime": "", "cfn": int(d.group[0, i // p.A])})
            ax.set_title(f"{title}\nUSR {metrics['usr']:.2f}, U {metrics['utility']:.1f}, "
                         f"S {metrics['signaling']:.2f}", fontsize=10)
            ax.set_xlim(0, p.area)
            ax.set_ylim(0, p.area)
            ax.set_aspect("equal")
            ax.set_xlabel("x [m]")
            ax.set_ylabel("y [m]")
            progress((n + 1) / 2, f"panel {'ab'[n]}")
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8,
                   title="federated nodes and cell shading are coloured by CFN", title_fontsize=8)
        fig.tight_layout(rect=(0, 0.11, 1, 1))
        png, csv_path = out_dir / "fig4_topology.png", out_dir / "fig4_topology.csv"
        fig.savefig(png, dpi=130)
        plt.close(fig)
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return [png, csv_path]

    return figure
