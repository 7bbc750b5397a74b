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
        return save(fig, rows, png, csv_path)

    return figure


#: default grid of the topology map (`isacbench reproduce ent-usr --figure topology-map`): the two knobs
#: that moved the winner most in the one-at-a-time screening (docs/models/ent-usr.md, "Topology map")
MAP_GRID: dict[str, tuple[float, ...]] = {"overhead_base": (0.7, 3.0, 10.0), "area_m": (600.0, 1500.0)}
MAP_EPISODES = 2  # first frame of this many evaluation episodes per grid point (a few minutes on 2 cores)
#: the three topologies of Sec. VI / Fig. 5: (label, topology setting, solver by registry name)
MAP_ARMS = (("all-local", "ccn-only", "convex"), ("ENT", "ent", "topology-search"),
            ("all-federated", "cfn-only", "convex"))


def topology_map(task, grid: dict[str, tuple[float, ...]] | None = None, episodes: int | None = None
                 ) -> Callable[[Path, Callable[[float, str], None]], list[Path]]:
    """The topology map: over a grid of two config knobs (default `MAP_GRID`) around the task's own
    config, the first frame of each evaluation episode (`episodes` of them, default `MAP_EPISODES`)
    solved per-frame by `convex` within the all-local (ccn-only) and all-federated (cfn-only)
    topologies and by the `topology-search` oracle (ent); each arm at its default budget
    (`EntUsrTask.budget_for`). Writes `topology_map.csv` (per grid point: each arm's mean USR, the
    oracle's shares, the winner, the oracle's margin over the better fixed topology) and
    `topology_map.png` (oracle coop_share as colour, winner and margin as text). Solvers are loaded
    through the registry by name (a task imports no solver module) and run through the runner's
    `solve_problem` (budget, re-evaluation, checks)."""
    from isacbench import registry
    from isacbench.runner import solve_problem

    grid = dict(grid or MAP_GRID)
    (k1, v1s), (k2, v2s) = grid.items()

    def figure(out_dir: Path, progress: Callable[[float, str], None] = lambda f, t: None) -> list[Path]:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        base = task.config.model_dump()
        base.update(frames_per_episode=1, eval_episodes=episodes or MAP_EPISODES)
        rows, points = [], [(a, b) for a in v1s for b in v2s]
        for n, (a, b) in enumerate(points):
            row = {k1: a, k2: b}
            for label, setting, solver_name in MAP_ARMS:
                t = type(task)({**base, k1: a, k2: b, "topology": setting})
                solver = registry.load("solver", solver_name)()
                evs = [solve_problem(pr, solver, t.budget_for(solver_name), np.random.default_rng(0)).evaluation
                       for pr in t.frame_problems(t.evaluation_env())]
                row[f"usr_{label}"] = float(np.mean([e.objective for e in evs]))
                if label == "ENT":
                    for key in ("coop_share", "fed_user_share", "fed_target_share"):
                        row[key] = float(np.mean([e.metrics[key] for e in evs]))
            usr = {label: row[f"usr_{label}"] for label, _, _ in MAP_ARMS}
            row["winner"] = max(usr, key=usr.get)
            row["margin_pct"] = 100.0 * (usr["ENT"] / max(usr["all-local"], usr["all-federated"]) - 1.0)
            row["frames"] = base["eval_episodes"]
            rows.append(row)
            progress((n + 1) / len(points), f"{k1}={a:g}, {k2}={b:g}: {row['winner']}")
        coop = np.array([[r["coop_share"] for r in rows[i * len(v2s):(i + 1) * len(v2s)]] for i in range(len(v1s))])
        fig, ax = plt.subplots(figsize=(1.9 * len(v2s) + 2.5, 1.2 * len(v1s) + 1.8))
        im = ax.imshow(coop, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for i in range(len(v1s)):
            for j in range(len(v2s)):
                r = rows[i * len(v2s) + j]
                ax.text(j, i, f"{r['winner']}\nENT {r['margin_pct']:+.1f}%", ha="center", va="center", fontsize=8,
                        color="w" if r["coop_share"] < 0.5 else "k")
        ax.set_xticks(range(len(v2s)), [f"{v:g}" for v in v2s])
        ax.set_yticks(range(len(v1s)), [f"{v:g}" for v in v1s])
        ax.set_xlabel(k2)
        ax.set_ylabel(k1)
        ax.set_title("oracle coop_share (colour); winner of all-local / ENT / all-federated,\n"
                     f"ENT margin over the better fixed topology (first frame, {base['eval_episodes']} episodes)",
                     fontsize=9)
        fig.colorbar(im, ax=ax, label="coop_share of the oracle")
        fig.tight_layout()
        png, csv_path = out_dir / "topology_map.png", out_dir / "topology_map.csv"
        return save(fig, rows, png, csv_path)

    return figure


def save(fig, rows: list[dict], png, csv_path) -> list:
    """Write a figure as PNG and its data rows as CSV; returns both paths."""
    import matplotlib.pyplot as plt

    fig.savefig(png, dpi=130)
    plt.close(fig)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return [png, csv_path]
