"""The ent-usr sequential task: USR maximization with an elastic network topology."""
from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np

from isacbench.api import Budget, Profile, SequentialTask
from isacbench.multiagent import MultiAgentEnv

from . import layout
from .config import EntUsrConfig, Params, params_of
from .env import EntUsrEnv
from .frame_problem import EntUsrFrameProblem
from .metrics import TOPOLOGY_SHARES, USR_PARTS
from .model import Decision


class EntUsrTask(SequentialTask):
    """Elastic network topology (Chen & Wang): M CCNs classify services as local / federated and
    the CPU groups CCNs into R CFNs; maximize the utility-to-signaling ratio over frames.

    The runner plays the fixed evaluation episodes (`evaluation_env`) and averages every per-frame
    metric of `end_frame` (`metrics.METRICS`); the objective is the mean USR. Budget: `frames` is
    the training budget of learning solvers (environment frames, summed over the batch); for
    per-frame optimizers `evaluations` (and `seconds`) is the budget of each frame problem.
    Setting `topology` (ent / ccn-only / cfn-only) restricts the decision of every solver: the
    environment's acting roles and the frame problems' bounds (topology.py)."""

    name: ClassVar[str] = "ent-usr"
    description: ClassVar[str] = "elastic CCN/CFN topology, multi-agent multi-frame USR maximization (ENT paper)"
    Config = EntUsrConfig
    objective_metric: ClassVar[str] = "usr"
    setting_keys: ClassVar[tuple[str, ...]] = ("topology", "reference_federate", "resource_split")
    # 72k frames (48k until 2026-12-02): `isacbench run --task ent-usr --solver mappo` took 10 min 10 s (594 s in
    # the solver) on the 2-core machine; 96k took 11 min 41 s (688 s) with the continuation worker thread and
    # 10 min 25 s (615 s, AMD EPYC) with numpy's BLAS capped too (f456625): over the ~10 minutes the default aims at
    default_budget: ClassVar[Budget] = Budget(frames=72_000, evaluations=20)
    # per-frame polyblock / convex spend ~5 evaluations on bookkeeping: give them room to optimize
    # topology-search: ~400 screened rule evaluations plus SCA on 6-10 power blocks per frame (docs/models/ent-usr.md)
    solver_budgets: ClassVar[dict[str, Budget]] = {"polyblock": Budget(evaluations=1000),
                                                   "convex": Budget(evaluations=1000),
                                                   "topology-search": Budget(evaluations=600)}
    leaderboard_metrics: ClassVar[tuple[str, ...]] = USR_PARTS + TOPOLOGY_SHARES
    # the per-frame, genie-aided topology oracle: the leaderboard's "gap to topology-search %" (price of decentralization)
    oracle: ClassVar[str | None] = "topology-search"
    # Fig. 5 (a)-(f): MAPPO's per-update training metrics
    leaderboard_curves: ClassVar[tuple[str, ...]] = (tuple(f"train/{m}" for m in ("usr",) + USR_PARTS)
                                                     + ("train/loss",))

    @classmethod
    def profiles(cls) -> dict[str, Profile]:
        """Evaluation: the instance's 4 fixed episodes x 20 frames, on the `paper` (Table I) and
        `cooperative` scenarios. Per-frame optimizers get `evaluations` per frame problem; MAPPO
        variants (the task's topology setting, the critic baseline) and IPPO / HAPPO an equal training-frame
        budget. `convex` within the
        all-local / all-federated topologies and the `topology-search` oracle are the references of
        the Fig. 5 orderings. Solvers that use no randomness (the fixed rules, convex, polyblock) run
        one seed (their seeds are identical runs); the oracle one seed in `quick` (its randomness is
        only the move order of its local search) and three in `paper`. The rule baselines run with
        both beams (solver config `beam`: true MRT, random-mrt's default, and codebook MRT, ccn-mrt's
        and cfn-mrt's default; docs/models/ent-usr.md, Baselines); `convex` and the oracle also at true-MRT
        beams (`beam=mrt`: outside the agents' codebook action space, the references for the true-MRT rules)."""
        # the MARL learners: mappo's default (baseline=stagewise, self-critical per stage, no critic) and its
        # topology variants, the one-advantage self-critical and rollout-mean baselines, mappo with the
        # role-specific centralized critics, ippo, happo (docs/solvers/mappo.md)
        mappo = ("mappo", "mappo[topology=ccn-only]", "mappo[topology=cfn-only]", "mappo[baseline=greedy]",
                 "mappo[baseline=mean]", "mappo[baseline=critic]", "ippo", "happo")
        convex = ("convex", "convex[topology=ccn-only]", "convex[topology=cfn-only]", "convex[beam=mrt]")
        oracles = ("topology-search", "topology-search[beam=mrt]")
        rules = ("random-mrt", "random-mrt[beam=codebook]", "ccn-mrt", "ccn-mrt[beam=mrt]", "cfn-mrt",
                 "cfn-mrt[beam=mrt]")
        solvers = (*rules, "random", "optuna", "polyblock", *convex, *oracles, *mappo)
        deterministic = {s: (0,) for s in (*rules[2:], "polyblock", *convex)}
        instances = ({}, {"scenario": "cooperative"})
        quick = {**cls.solver_budgets, **{m: Budget(frames=6_000) for m in mappo}}
        paper = {**cls.solver_budgets, **{m: Budget(frames=200_000) for m in mappo}}
        return {"quick": Profile(instances=instances, budget=Budget(evaluations=20), budgets=quick, solvers=solvers,
                                 solver_seeds={**deterministic, **{o: (0,) for o in oracles}}),
                "paper": Profile(instances=instances, budget=Budget(evaluations=100), budgets=paper, solvers=solvers,
                                 seeds=tuple(range(10)), solver_seeds={**deterministic, **{o: (0, 1, 2) for o in oracles}})}

    def __init__(self, config=None):
        super().__init__(config)
        self.params: Params = params_of(self.config)
        ss = np.random.SeedSequence([self.config.instance_seed, 0x454E54])
        layout_seq, eval_seq = ss.spawn(2)
        self.layout = layout.base_layout(self.params, np.random.default_rng(layout_seq))
        self.eval_seed = int(eval_seq.generate_state(1)[0])

    def figures(self) -> dict[int | str, Callable[..., list]]:
        from .figures import topology_map, topology_snapshot
        return {4: topology_snapshot(self), "topology-map": topology_map(self)}

    def make_env(self, num_envs: int, seed: int | None = None) -> EntUsrEnv:
        """The batched multi-agent environment (isacbench.multiagent contract) on this instance's layout."""
        return EntUsrEnv(self.params, self.layout, num_envs, seed)

    def evaluation_env(self) -> EntUsrEnv:
        """The fixed evaluation episodes: eval_episodes environments seeded from instance_seed."""
        return self.make_env(self.config.eval_episodes, self.eval_seed)

    def frame_problems(self, env: MultiAgentEnv) -> list[EntUsrFrameProblem]:
        """The current frame's static problem of every environment of the batch."""
        env = _ent_env(env)
        state = env.frame_state()
        return [EntUsrFrameProblem(self.params, state.take(slice(b, b + 1)), label=f"env{b}/frame{env.frame}")
                for b in range(env.num_envs)]

    def apply_frame_decisions(self, env: MultiAgentEnv, problems: list, decisions: list[dict]) -> None:
        """Play the frame with one checked decision per environment; groups beyond M_max are
        repaired (eq. 52) as for the agents' actions."""
        _ent_env(env).set_decision(Decision.stack([pr.to_decision(x) for pr, x in zip(problems, decisions)]))


def _ent_env(env: MultiAgentEnv) -> EntUsrEnv:
    if not isinstance(env, EntUsrEnv):
        raise TypeError(f"ent-usr frame problems need an EntUsrEnv, got {type(env).__name__}")
    return env

