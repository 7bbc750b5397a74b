"""Black-box search with Optuna samplers (TPE, CMA-ES, GP, random, NSGA-II), any Optuna storage.

The problem's space maps onto Optuna distributions (Integer -> IntDistribution, Real ->
FloatDistribution, Categorical -> CategoricalDistribution over choice indices, so any
choice type works). Each trial is one `problem.evaluate`; all objectives are maximized.
Infeasible evaluations reach the samplers that support constraints (TPE, GP, NSGA-II)
through `Trial.set_constraint` (Optuna >= 5; `constraints_func` before) as one aggregated
value: 0 when feasible, else the sum of the positive violations (1 if the task gave
none); <= 0 means feasible (the random sampler ignores it).
CMA-ES has no constraint support: an infeasible trial reports a value below every
objective seen so far (min - 1 - violation), so it ranks after all feasible trials.

Several `isacbench run` workers share one study through `storage` (an RDB URL such as
sqlite:///study.db or postgresql://..., or a journal file: journal:PATH or a path ending
in .log / .journal) and `study_name`; every worker evaluates its own budget, and its result is
the best of its own feasible trials (the runner's incumbent).
"""
from __future__ import annotations

import math
import time
import warnings
from typing import ClassVar, Literal

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import Field

from isacbench.api import (Budget, BudgetedProblem, BudgetExhausted, Categorical, Config, Evaluation, Integer, Real,
                           Solution, Solver, Space, UserError)

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no per-trial log lines
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

Sampler = Literal["tpe", "cmaes", "gp", "random", "nsga2"]


class OptunaConfig(Config):
    sampler: Sampler = Field("tpe", description="tpe, cmaes, gp, random or nsga2 (multi-objective)")
    storage: str | None = Field(None, description="Optuna storage: RDB URL, or journal:PATH / *.log file")
    study_name: str | None = Field(None, description="study to create or join (load_if_exists)")
    n_startup_trials: int = Field(10, ge=1, description="random trials before TPE/GP model the space")
    population_size: int = Field(20, ge=2, description="NSGA-II population")


def distributions(space: Space) -> dict[str, optuna.distributions.BaseDistribution]:
    out = {}
    for v in space.variables:
        if isinstance(v, Integer):
            out[v.name] = IntDistribution(v.low, v.high)
        elif isinstance(v, Real):
            out[v.name] = FloatDistribution(v.low, v.high)
        else:
            out[v.name] = CategoricalDistribution(tuple(range(len(v.choices))))
    return out


def decision(space: Space, params: dict) -> dict:
    """Trial parameters -> a decision of the space (categorical indices -> choices)."""
    return {v.name: v.choices[params[v.name]] if isinstance(v, Categorical) else params[v.name]
            for v in space.variables}


def violation(ev: Evaluation) -> float:
    """The aggregated constraint for `constraints_func`: <= 0 iff feasible."""
    if ev.feasible:
        return 0.0
    total = sum(max(float(val), 0.0) for val in ev.violations.values())
    return total if total > 0 else 1.0


def _constraints(trial: optuna.trial.FrozenTrial) -> tuple[float]:
    return (trial.user_attrs.get("violation", 0.0),)


# Optuna >= 5 takes constraints from Trial.set_constraint; older releases from constraints_func
_SET_CONSTRAINT = hasattr(optuna.trial.Trial, "set_constraint")
_CONSTRAINED = {} if _SET_CONSTRAINT else {"constraints_func": _constraints}


def make_sampler(cfg: OptunaConfig, seed: int, multi: bool) -> optuna.samplers.BaseSampler:
    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials,
                                          multivariate=True, **_CONSTRAINED)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=cfg.population_size, **_CONSTRAINED)
    if cfg.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials,
                                         warn_independent_sampling=False, **_CONSTRAINED)
    if multi:
        raise UserError("solver optuna: sampler=cmaes is single-objective; use sampler=nsga2, tpe or gp "
                        "for this multi-objective problem")
    try:
        import cmaes  # noqa: F401  (optuna's CMA-ES backend)
    except ImportError:
        raise UserError("solver optuna: sampler=cmaes needs the 'cmaes' package (pip install cmaes)") from None
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=1, warn_independent_sampling=False)


def make_storage(url: str | None) -> optuna.storages.BaseStorage | str | None:
    if url is None:
        return None
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if "://" not in url:
        raise UserError(f"solver optuna: storage={url!r} is neither an RDB URL (sqlite:///FILE, "
                        "postgresql://..., mysql://...) nor a journal file (journal:PATH or *.log)")
    # SQLite: wait for the lock instead of failing when several workers write at once
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as e:  # bad URL, missing driver, unreachable server
            # workers starting together race to create the schema ("table ... already exists"): retry
            if ("already exists" in str(e) or "UNIQUE constraint failed" in str(e)) and attempt < 4:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise UserError(f"solver optuna: cannot open storage {url!r}: {e}") from None


class OptunaSolver(Solver):
    name = "optuna"
    description = "Optuna samplers (TPE, CMA-ES, GP, random, NSGA-II); any Optuna storage for parallel workers"
    Config = OptunaConfig
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})
    operational_keys: ClassVar[frozenset[str]] = frozenset({"storage", "study_name"})

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        if budget.evaluations is None and budget.seconds is None:
            raise UserError("solver 'optuna' needs an evaluation or time budget")
        cfg, space = self.config, problem.space
        names = problem.objective_names
        multi = names is not None and len(names) > 1
        sampler = make_sampler(cfg, int(rng.integers(2**31)), multi)
        directions = ["maximize"] * (len(names) if multi else 1)
        try:
            study = optuna.create_study(storage=make_storage(cfg.storage), sampler=sampler,
                                        study_name=cfg.study_name, directions=directions,
                                        load_if_exists=cfg.study_name is not None)
        except ValueError as e:  # e.g. an existing study with other directions
            raise UserError(f"solver optuna: study {cfg.study_name!r}: {e}") from None
        dists = distributions(space)
        worst = math.inf  # smallest objective seen (CMA-ES penalty for infeasible trials)
        own = []
        while not problem.exhausted:
            trial = study.ask(dists)
            x = decision(space, trial.params)
            try:
                ev = problem.evaluate(x)
            except BudgetExhausted:  # a time budget ran out between the check and the call
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                break
            viol = violation(ev)
            trial.set_user_attr("violation", viol)
            if _SET_CONSTRAINT and cfg.sampler != "cmaes":
                trial.set_constraint("violation", viol)
            trial.set_user_attr("objective", float(ev.objective))
            own.append(trial.number)
            if multi:
                if ev.objectives is None or len(ev.objectives) != len(names):
                    raise ValueError(f"problem declares objectives {names} but returned {ev.objectives}")
                study.tell(trial, [float(v) for v in ev.objectives])
            elif cfg.sampler == "cmaes":
                worst = min(worst, float(ev.objective))
                study.tell(trial, float(ev.objective) if ev.feasible else worst - 1.0 - viol)
            else:
                study.tell(trial, float(ev.objective))
        info = {"sampler": cfg.sampler, "trials": len(own), "study_trials": len(study.trials),
                "study_name": study.study_name}
        if multi:
            info["pareto_front"] = self._front(study, space, set(own))
        if problem.best is None:
            info["feasible_found"] = False
        return Solution(info=info)  # the runner keeps the best feasible trial

    @staticmethod
    def _front(study: optuna.Study, space: Space, own: set[int]) -> list[dict]:
        """This worker's feasible Pareto-optimal trials: decision and objective vector."""
        return [{"decision": decision(space, t.params), "objectives": list(t.values)}
                for t in study.best_trials if t.number in own and t.user_attrs.get("violation", 0.0) <= 0]
