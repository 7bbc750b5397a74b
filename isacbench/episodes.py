"""The runner's loops over a sequential task's fixed evaluation episodes.

Every solver of a sequential task is scored the same way: the task's `evaluation_env()` is
played frame by frame and the per-frame metrics of `end_frame` are averaged over frames and
episodes; the objective is the mean of `task.objective_metric`. A learned policy acts stage by
stage on decentralized observations (`play_policy`); a per-frame optimizer solves every frame's
static problem through the runner's `solve_problem` (budget, re-evaluation, feasibility and bound
checks) and the task applies the decisions (`play_per_frame`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from .api import Budget, Evaluation, Policy, Problem, SequentialTask
from .multiagent import MultiAgentEnv

if TYPE_CHECKING:
    from .runner import Solved

Progress = Callable[[float, str], None]


def play(task: SequentialTask, env: MultiAgentEnv, step: Callable[[MultiAgentEnv], None],
         progress: Progress) -> "Solved":
    """Play one episode in every environment of `env`: `step(env)` acts for the frame, then the
    frame ends. Returns the episode-mean evaluation; `info` holds the per-frame curves."""
    from .runner import Solved

    frames = env.frames_per_episode
    per_frame: dict[str, list[np.ndarray]] = {}
    for n in range(frames):
        step(env)
        reward, _, metrics = env.end_frame()
        for k, v in {**metrics, "reward": reward}.items():
            per_frame.setdefault(k, []).append(np.asarray(v, dtype=float))
        if task.objective_metric not in per_frame:
            raise RuntimeError(f"task {task.name!r}: end_frame() returned no metric "
                               f"{task.objective_metric!r} (its objective_metric)")
        progress((n + 1) / frames, f"frame {n + 1}/{frames}: {task.objective_metric} "
                                   f"{per_frame[task.objective_metric][-1].mean():.4g}")
    means = {k: float(np.mean(v)) for k, v in per_frame.items()}
    decision = {"episode_means": {k: [float(x) for x in np.mean(v, axis=0)] for k, v in per_frame.items()},
                "episodes": env.num_envs, "frames_per_episode": frames}
    info = {"frames": frames * env.num_envs,
            **{f"curve:{k}": [float(np.mean(x)) for x in v] for k, v in per_frame.items()}}
    return Solved(Evaluation(objective=means[task.objective_metric], metrics=means), decision, 0, None, [], info)


def play_policy(task: SequentialTask, policy: Policy, progress: Progress = lambda f, t: None) -> "Solved":
    """A decentralized policy on the evaluation episodes: each stage's roles act on their own
    observations."""
    def step(env: MultiAgentEnv) -> None:
        for stage in env.stages:
            env.act({role: policy.act(role, env.observe(role)) for role in stage})

    return play(task, task.evaluation_env(), step, progress)


def policy_means(task: SequentialTask, policy: Policy, progress: Progress = lambda f, t: None) -> dict[str, float]:
    """The per-frame metric means of `policy` on the evaluation episodes (`play_policy`), the
    objective metric first: what `Reporter.evaluate` returns to a learning solver during training."""
    means = play_policy(task, policy, progress).evaluation.metrics
    return {task.objective_metric: means[task.objective_metric], **means}


def play_per_frame(task: SequentialTask, solve: Callable[[Problem, Budget], "Solved"], budget: Budget,
                   progress: Progress = lambda f, t: None) -> "Solved":
    """Every frame of every evaluation episode: solve its frame problem within the per-frame budget
    (`budget.evaluations` each; `budget.seconds` split evenly over all frame problems), then the task
    applies the checked decisions. `evaluations` is the total over all frame problems; the solvers'
    reports are tallied in `decision["frame_solver"]`."""
    env = task.evaluation_env()
    n_problems = env.frames_per_episode * env.num_envs
    per_frame = Budget(evaluations=budget.evaluations,
                       seconds=None if budget.seconds is None else budget.seconds / n_problems)
    totals = {"evaluations": 0, "infeasible": 0}
    report: dict[str, dict] = {}

    def step(env: MultiAgentEnv) -> None:
        problems = task.frame_problems(env)
        solved = [solve(problem, per_frame) for problem in problems]
        for s in solved:
            tally(report, s.info)
            totals["evaluations"] += s.evaluations
            totals["infeasible"] += int(not s.evaluation.feasible)
        task.apply_frame_decisions(env, problems, [s.decision for s in solved])

    out = play(task, env, step, progress)
    out.evaluations = totals["evaluations"]
    out.evaluation.metrics["infeasible_frames"] = float(totals["infeasible"])
    out.decision["frame_solver"] = report
    return out


def tally(report: dict[str, dict], info: dict) -> None:
    """Add one frame's Solution.info to the run's per-frame solver report: subproblem `statuses`
    are summed, and `stop` / `kept` / `feasible_found` and per-block `stop` values counted (e.g.
    {"block_stop": {"done": 310, "budget": 10}}), so a failed or inaccurate solve in any frame
    shows in the run record."""
    for status, n in info.get("statuses", {}).items():
        report.setdefault("statuses", {})
        report["statuses"][status] = report["statuses"].get(status, 0) + int(n)
    values = [(key, info[key]) for key in ("stop", "kept", "feasible_found") if key in info]
    values += [("block_stop", b["stop"]) for b in info.get("blocks", []) if "stop" in b]
    for key, value in values:
        counts = report.setdefault(key, {})
        counts[str(value)] = counts.get(str(value), 0) + 1
