"""The ent-usr sequential task: USR maximization with an elastic network topology."""
from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np

from isacbench.api import (Budget, BudgetedProblem, BudgetExhausted, Evaluation, LearningSolver, Outcome, Policy,
                           Profile, Reporter, SequentialTask, Solver, best_or_sample)

from . import layout
from .config import EntUsrConfig, Params, params_of
from .env import EntUsrEnv
from .frame_problem import EntUsrFrameProblem
from .model import Decision

METRICS = ("usr", "utility", "signaling", "utility_comm", "utility_sense")


class EntUsrTask(SequentialTask):
    """Elastic network topology (Chen & Wang): M CCNs classify services as local / federated and
    the CPU groups CCNs into R CFNs; maximize the utility-to-signaling ratio over frames.

    Budget: `frames` is the training budget of learning solvers (environment frames, summed over
    the batch); for per-frame optimizers `evaluations` (and `seconds`) is the budget of each
    frame problem, and Outcome.evaluations counts all frame-problem evaluations."""

    name: ClassVar[str] = "ent-usr"
    description: ClassVar[str] = "elastic CCN/CFN topology, multi-agent multi-frame USR maximization (ENT paper)"
    Config = EntUsrConfig
    # 48k frames: `isacbench run --task ent-usr --solver mappo` took 6-7 min (training + evaluation)
    # on the shared 2-core machine with a second run beside it (measured, default preset)
    default_budget: ClassVar[Budget] = Budget(frames=48_000, evaluations=20)
    # per-frame polyblock / convex spend ~5 evaluations on bookkeeping: give them room to optimize
    solver_budgets: ClassVar[dict[str, Budget]] = {"polyblock": Budget(evaluations=1000),
                                                   "convex": Budget(evaluations=1000)}
    leaderboard_metrics: ClassVar[tuple[str, ...]] = METRICS[1:]
    # Fig. 5 (a)-(f): MAPPO's per-update training metrics
    leaderboard_curves: ClassVar[tuple[str, ...]] = tuple(f"train/{m}" for m in METRICS) + ("train/loss",)

    @classmethod
    def profiles(cls) -> dict[str, Profile]:
        """Evaluation: the instance's 4 fixed episodes x 20 frames. Per-frame optimizers get
        `evaluations` per frame problem; MAPPO variants an equal training-frame budget."""
        mappo = ("mappo", "mappo[topology=ccn-only]", "mappo[topology=cfn-only]")
        solvers = ("random-mrt", "ccn-mrt", "cfn-mrt", "random", "optuna", "polyblock", "convex", *mappo)
        quick = {**cls.solver_budgets, **{m: Budget(frames=6_000) for m in mappo}}
        paper = {**cls.solver_budgets, **{m: Budget(frames=200_000) for m in mappo}}
        return {"quick": Profile(budget=Budget(evaluations=20), budgets=quick, solvers=solvers),
                "paper": Profile(budget=Budget(evaluations=100), budgets=paper, solvers=solvers,
                                 seeds=tuple(range(10)))}

    def __init__(self, config=None):
        super().__init__(config)
        self.params: Params = params_of(self.config)
        ss = np.random.SeedSequence([self.config.instance_seed, 0x454E54])
        layout_seq, eval_seq = ss.spawn(2)
        self.layout = layout.base_layout(self.params, np.random.default_rng(layout_seq))
        self.eval_seed = int(eval_seq.generate_state(1)[0])

    def figures(self) -> dict[int, Callable[..., list]]:
        from .figures import topology_snapshot
        return {4: topology_snapshot(self)}

    def make_env(self, num_envs: int | None = None, seed: int | None = None) -> EntUsrEnv:
        """The batched multi-agent environment (isacbench.multiagent contract) on this instance's layout."""
        return EntUsrEnv(self.params, self.layout, num_envs or self.config.num_envs, seed)

    def eval_env(self) -> EntUsrEnv:
        """The fixed evaluation episodes: eval_episodes environments seeded from instance_seed."""
        return self.make_env(self.config.eval_episodes, self.eval_seed)

    def frame_problems(self, env: EntUsrEnv) -> list[EntUsrFrameProblem]:
        """The current frame's static problem of every environment of the batch."""
        state = env.frame_state()
        return [EntUsrFrameProblem(self.params, state.take(slice(b, b + 1)), label=f"env{b}/frame{env.frame}")
                for b in range(env.num_envs)]

    # ---------------------------------------------------------------- running
    def run_solver(self, solver: Solver, budget: Budget, rng: np.random.Generator, reporter: Reporter) -> Outcome:
        if isinstance(solver, LearningSolver):
            policy = solver.train(self, budget, rng, reporter)
            return self.evaluate_policy(policy, reporter.progress)
        return self.evaluate_per_frame(solver, budget, rng, reporter.progress)

    def evaluate_policy(self, policy: Policy, progress: Callable[[float, str], None] = lambda f, t: None) -> Outcome:
        """Roll out a decentralized policy (policy.act per stage) on the evaluation episodes."""
        env = self.eval_env()
        return self._rollout(env, lambda: self._policy_step(env, policy), progress)

    @staticmethod
    def _policy_step(env: EntUsrEnv, policy: Policy) -> None:
        for stage in env.stages:
            env.act({role: policy.act(role, env.observe(role)) for role in stage})

    def evaluate_per_frame(self, solver: Solver, budget: Budget, rng: np.random.Generator,
                           progress: Callable[[float, str], None] = lambda f, t: None) -> Outcome:
        """Every frame of every evaluation episode: solve its frame problem within the per-frame
        budget, then apply the decision (groups beyond M_max are repaired by the environment)."""
        env = self.eval_env()
        n_problems = self.config.frames_per_episode * env.num_envs
        per_frame = Budget(evaluations=budget.evaluations,
                           seconds=None if budget.seconds is None else budget.seconds / n_problems)
        counter = {"evaluations": 0, "infeasible": 0}
        report: dict[str, dict] = {}

        def step():
            decisions = []
            for prob in self.frame_problems(env):
                bp = BudgetedProblem(prob, per_frame)
                try:
                    sol = solver.solve(bp, per_frame, rng)
                    x = prob.space.check(sol.decision)
                    tally(report, sol.info)
                except BudgetExhausted:  # a solver that ran past its budget keeps its incumbent
                    x = prob.space.check(best_or_sample(bp, rng))
                    tally(report, {"stop": "exceeded budget"})
                counter["evaluations"] += bp.evaluations
                counter["infeasible"] += int(prob.cfn_excess(x) > 0)
                decisions.append(prob.to_decision(x))
            env.set_decision(Decision.stack(decisions))

        out = self._rollout(env, step, progress)
        out.evaluations = counter["evaluations"]
        out.evaluation.metrics["infeasible_frames"] = float(counter["infeasible"])
        out.decision["frame_solver"] = report
        return out

    def _rollout(self, env: EntUsrEnv, step: Callable[[], None], progress: Callable[[float, str], None]) -> Outcome:
        """Play the evaluation episodes: `step` sets the frame's actions, then the frame ends."""
        p = self.params
        per_frame = {k: [] for k in METRICS + ("reward",)}
        per_env = {k: [] for k in METRICS}
        fed_share, group_sizes = [], []
        for n in range(p.frames):
            step()
            reward, _, metrics = env.end_frame()
            d = env.last_decision
            fed_share.append([d.fed_users.mean(), d.fed_targets.mean()])
            group_sizes.append(np.mean([np.bincount(g, minlength=p.R) for g in d.group], axis=0))
            for k in METRICS:
                per_frame[k].append(float(metrics[k].mean()))
                per_env[k].append(metrics[k])
            per_frame["reward"].append(float(reward.mean()))
            progress((n + 1) / p.frames, f"frame {n + 1}/{p.frames}: USR {per_frame['usr'][-1]:.3f}")
        means = {k: float(np.mean(v)) for k, v in per_frame.items()}
        decision = {"fed_user_share": float(np.mean(fed_share, axis=0)[0]),
                    "fed_target_share": float(np.mean(fed_share, axis=0)[1]),
                    "mean_cfn_sizes": [float(v) for v in np.mean(group_sizes, axis=0)],
                    "episode_means": {k: [float(v) for v in np.mean(per_env[k], axis=0)] for k in METRICS},
                    "episodes": env.num_envs, "frames_per_episode": p.frames, "eval_seed": self.eval_seed}
        return Outcome(evaluation=Evaluation(objective=means["usr"], metrics=means), decision=decision,
                       frames=p.frames * env.num_envs,
                       curves={k: v for k, v in per_frame.items()})


def tally(report: dict[str, dict], info: dict) -> None:
    """Add one frame's Solution.info to the run's per-frame solver report: subproblem `statuses`
    are summed, and `stop` / `kept` / `feasible_found` and per-block `stop` values counted (e.g.
    {"block_stop": {"done": 310, "budget": 10}}), so a failed or inaccurate solve in any frame shows in the run record."""
    for status, n in info.get("statuses", {}).items():
        report.setdefault("statuses", {})
        report["statuses"][status] = report["statuses"].get(status, 0) + int(n)
    values = [(key, info[key]) for key in ("stop", "kept", "feasible_found") if key in info]
    values += [("block_stop", b["stop"]) for b in info.get("blocks", []) if "stop" in b]
    for key, value in values:
        counts = report.setdefault(key, {})
        counts[str(value)] = counts.get(str(value), 0) + 1
