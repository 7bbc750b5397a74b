"""Topology search: a discrete search over a problem's declared discrete part (`Structure.discrete`)
with the continuous rest optimized by SCA on the convex blocks of `problem.structure(at=decision)`.

Built for ent-usr's frame problems (a per-frame, genie-aided topology oracle: classification of every
service, CFN grouping within M_max, per-CCN bandwidth / power split; the power levels are the convex
blocks), but it uses declared contracts only (`isacbench.api`), so any problem offering them works.

What it assumes of the problem:
  * `structure()` offers `discrete` (a `DiscreteSearch`: search space of Integer / Categorical
    variables, `complete` to a full decision, start points) and, for every completed decision x,
    `structure(at=x)` offers `convex_blocks` (`SeparablePrograms` of `ConvexProgram`s whose block
    objectives add up to the problem's objective at `combine(points)`), ideally with block `keys`;
  * `evaluate(complete(z))` is cheap (one evaluation of the problem's rule, e.g. MRT beams with equal
    power) and ranks discrete points roughly as their power-optimized values do (screening);
  * equal block keys mean the same block program up to a positive factor (`SeparablePrograms.keys`),
    so a solved block is reused, with one evaluation of its objective, by every later topology that
    contains it.

Algorithm (per problem, i.e. per ent-usr frame). "Screen" = one `problem.evaluate(complete(z))` per
distinct completed decision (cached; infeasible points score -inf); "polish" = SCA
(`convex.sca_program`) on every block of `structure(at=complete(z)).convex_blocks`, block solutions
cached by key (a cached block costs one evaluation of its objective) and warm-started from the last
solution of a block with the same label and dimension when that is feasible and better than the
program's own start; the combined decision is verified with `problem.evaluate`.
  1. Starts: screen them; the best, then the others within `polish_gap` of it, are polished with
     `max_iterations` SCA iterations per block (as `convex`: ent-usr's best start is the rule layout
     `convex` optimizes, so with enough budget the result is at least `convex`'s).
  2. Climb on polished values: screen every neighbour of the incumbent (`discrete.neighbours`,
     default: every single-variable change), polish the `polish` best screened ones not polished yet
     with `quick_iterations` per block, move to the best if it improves, repeat.
  3. With what is left (a share `screen_share`): iterated first-improvement local search on screened
     values from the starts, then from random perturbations (`perturb` variables) of the best point;
     at a local optimum up to `plateau` neighbours of equal value but another decision are swept from
     once (ent-usr: regrouping CCNs that federate nothing changes nothing until a service is
     federated); its `polish` best points are polished quickly.
  4. The best point is polished with the full `max_iterations` (quick blocks continue from their points).
What it does not do: no bound (local search plus local SCA: the result is a lower bound on the
optimum of the discrete-plus-power problem); only the best screened neighbours are polished, and
with a few SCA iterations, so a topology whose equal-power value is poor but whose power-optimized
value is high is missed, and so is a move whose gain shows only after many SCA iterations.

Evaluation accounting as in `convex`: every `problem.evaluate` plus every point passed to a block
objective (`structured.Meter`), charged with `BudgetedProblem.charge`.
"""
from __future__ import annotations

import time
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from isacbench.api import Budget, BudgetedProblem, BudgetExhausted, Config, DiscreteSearch, Solution, Solver, UserError

from .convex import ConvexConfig, ScaResult, beam_structure, sca_program
from .structured import Meter

UNBUDGETED_SCREEN = 1000  # screening evaluations when the budget has neither evaluations nor seconds
STALE_RESTARTS = 20  # stop restarting after this many restarts that found no new point (small spaces)


class TopologySearchConfig(Config):
    screen_share: float = Field(0.5, gt=0, lt=1, description="share of the evaluations (and time) left after the "
                                                              "climb for the screened local search (phase 3)")
    polish: int = Field(2, ge=0, description="best screened neighbours polished per climb step; best screened points "
                                             "polished after phase 3")
    perturb: int = Field(3, ge=1, description="variables changed by a random restart of the local search")
    plateau: int = Field(8, ge=0, description="at a local optimum, equal-valued neighbours swept from (lookahead)")
    polish_gap: float = Field(0.1, ge=0, description="polish a screened point (or a start other than the best) only if "
                                                     "its screened value is within this fraction of the best screened")
    max_iterations: int = Field(50, ge=1, description="SCA iterations per block of the starts and of the final "
                                                      "point (convex's default)")
    quick_iterations: int = Field(8, ge=1, description="SCA iterations per block of the other polished points")
    solver: Literal["CLARABEL", "SCS"] = Field("CLARABEL", description="cvxpy solver of the SCA subproblems")
    beam: Literal["codebook", "mrt"] = Field("codebook", description="ent-usr: the beams of the starts and of every "
                                             "completed layout, codebook MRT or true MRT (structure option beam)")


class TopologySearch(Solver):
    name = "topology-search"
    description = ("per-frame topology oracle: local search over the declared discrete part (ent-usr: classification, "
                   "grouping, split) screened by the rule, power levels by SCA on the convex blocks (cached)")
    Config = TopologySearchConfig
    # the tasks whose problems declare `Structure.discrete` (the CLI refuses others up front)
    tasks: ClassVar[frozenset[str] | None] = frozenset({"ent-usr"})
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        cfg = self.config
        base = beam_structure(problem, cfg.beam)  # completed layouts carry the beams
        ds = base.discrete
        if ds is None:
            raise UserError("solver 'topology-search' needs a problem whose structure() declares its discrete part "
                            "(Structure.discrete, e.g. ent-usr frame problems); this problem declares none")
        if base.convex_blocks is not None:
            problem.charge(base.convex_blocks.reference_evaluations)
        screen = _Screen(problem, ds, None if problem.remaining is not None or problem.deadline is not None
                         else UNBUDGETED_SCREEN, None)
        polish = _Polish(problem, ConvexConfig(solver=cfg.solver, max_iterations=cfg.max_iterations),
                         cfg.quick_iterations)
        done: dict[tuple, tuple[float, bool]] = {}  # polished points: (verified objective, fully polished)
        best: list = [-np.inf, None, None, False]  # value, point, decision, fully polished
        info: dict = {"climb_steps": 0, "stop": "done"}

        def run(z: dict, full: bool = False) -> float:
            k = _key(ds, z)
            if k not in done or (full and not done[k][1]):
                value, decision = polish.run(ds.complete(z), full)
                done[k] = (value, full)
                if value > best[0] or _key(ds, z) == _key(ds, best[1] or z):
                    best[:] = [value, dict(z), decision, full]
            return done[k][0]

        try:
            # 1. the starts: the best by its screened value, then the others within polish_gap of it
            starts = sorted((dict(z) for z in ds.starts), key=lambda z: -screen.value(z))
            top = screen.value(starts[0]) if starts else -np.inf
            for z in starts:
                if z is starts[0] or screen.value(z) >= top - cfg.polish_gap * abs(top):
                    run(z, full=True)
            # 2. climb on polished values: screen the neighbours of the incumbent, polish the best few
            while best[1] is not None:
                current = best[0]
                ranked = sorted(((screen.value(n), i, n) for i, n in enumerate(screen.neighbours(best[1]))),
                                key=lambda t: (-t[0], t[1]))
                todo = [n for v, _, n in ranked if np.isfinite(v) and _key(ds, n) not in done][: cfg.polish]
                for n in todo:
                    run(n)
                info["climb_steps"] += 1
                if best[0] <= current:
                    break
            # 3. what is left: iterated local search on screened values, polishing its best points
            screen.meter = Meter(None if problem.remaining is None else int(cfg.screen_share * problem.remaining),
                                 None if problem.deadline is None else
                                 time.perf_counter() + cfg.screen_share * (problem.deadline - time.perf_counter()))
            try:
                screen.search(rng, cfg.perturb, cfg.plateau)
            except BudgetExhausted:
                pass
            for z in [z for z, v in screen.ranked() if np.isfinite(v) and _key(ds, z) not in done][: cfg.polish]:
                run(z)
        except BudgetExhausted:
            info["stop"] = "budget"
        try:  # 4. the best point with the full SCA iteration count
            while best[1] is not None and not best[3]:
                run(best[1], full=True)
        except BudgetExhausted:
            info["stop"] = "budget"
        info.update(screened=len(screen.decisions), local_optima=screen.local_optima, screen_best=screen.best_value,
                    polished=len(done), block_solves=polish.solves, block_reuses=polish.reuses,
                    statuses=polish.res.statuses)
        if best[2] is not None:
            info.update(best_topology={k: v.item() if isinstance(v, np.generic) else v for k, v in best[1].items()},
                        verified_objective=best[0])
            if problem.best is None or best[0] >= problem.best.objective:
                return Solution(decision=best[2], info=info)
        return Solution(info=info)  # the runner keeps the best evaluated point (a screened one)


def _key(ds: DiscreteSearch, z: dict) -> tuple:
    return tuple(z[n] for n in ds.space.names)


class _Screen:
    """Iterated first-improvement local search over single-variable moves; one problem evaluation
    of the completed decision per distinct point."""

    def __init__(self, problem: BudgetedProblem, ds: DiscreteSearch, cap: int | None, deadline: float | None):
        self.problem, self.ds = problem, ds
        self.meter = Meter(cap, deadline)
        self.values: dict[tuple, float] = {}
        self.decisions: dict[tuple, float] = {}
        self.dkeys: dict[tuple, tuple] = {}
        self.points: dict[tuple, dict] = {}
        self.best_value, self.best = -np.inf, None
        self.local_optima = 0

    def value(self, z: dict) -> float:
        k = _key(self.ds, z)
        if k not in self.values:
            x = self.ds.complete(z)
            dk = tuple(sorted(x.items()))  # points completing to the same decision share one evaluation
            if dk not in self.decisions:
                self.meter.charge(1)
                ev = self.problem.evaluate(x)
                self.decisions[dk] = float(ev.objective) if ev.feasible and np.isfinite(ev.objective) else -np.inf
            v = self.decisions[dk]
            self.values[k], self.points[k], self.dkeys[k] = v, dict(z), dk
            if v > self.best_value:
                self.best_value, self.best = v, dict(z)
        return self.values[k]

    def same_decision(self, a: dict, b: dict) -> bool:
        return self.dkeys[_key(self.ds, a)] == self.dkeys[_key(self.ds, b)]  # both evaluated before

    def neighbours(self, z: dict) -> list[dict]:
        if self.ds.neighbours is not None:
            return self.ds.neighbours(z)
        return [{**z, v.name: val} for v in self.ds.space.variables for val in v.values() if val != z[v.name]]

    def ranked(self) -> list[tuple[dict, float]]:
        return sorted(((self.points[k], v) for k, v in self.values.items()), key=lambda t: -t[1])

    def sweep(self, z: dict, fz: float, rng: np.random.Generator) -> tuple[dict, float, list[dict]]:
        """One pass over the moves of z (`neighbours`) in random order, taking every improvement:
        (point, value, the plateau: neighbours of the start with its value and another decision)."""
        moves = self.neighbours(z)  # from the start: later improvements keep these moves as changes
        changes = [{k: v for k, v in m.items() if v != z[k]} for m in moves]
        start, f0, plateau = z, fz, []
        for i in rng.permutation(len(moves)):
            cand = {**z, **changes[i]}
            fc = self.value(cand)
            if fc > fz:
                z, fz = cand, fc
            elif z is start and fc == f0 and np.isfinite(fc) and not self.same_decision(cand, start):
                plateau.append(cand)
        return z, fz, plateau

    def climb(self, z: dict, rng: np.random.Generator, plateau_steps: int) -> dict:
        """First-improvement ascent from z; at a local optimum, up to `plateau_steps` neighbours of
        equal value (another decision, e.g. a regrouping of CCNs without federated services) are
        swept from once (a two-move lookahead through plateaus)."""
        fz = self.value(z)
        while True:
            nz, nf, plateau = self.sweep(z, fz, rng)
            if nf > fz:
                z, fz = nz, nf
                continue
            for j in rng.permutation(len(plateau))[:plateau_steps]:
                nz, nf, _ = self.sweep(plateau[j], fz, rng)
                if nf > fz:
                    break
            if nf <= fz:
                break
            z, fz = nz, nf
        self.local_optima += 1
        return z

    def search(self, rng: np.random.Generator, perturb: int, plateau_steps: int) -> None:
        for z in self.ds.starts:
            self.climb(dict(z), rng, plateau_steps)
        variables = list(self.ds.space.variables)
        stale = 0
        while stale < STALE_RESTARTS:  # (or the meter stops it) restarts from perturbations of the best point
            seen = len(self.values)
            z = dict(self.best if self.best is not None else self.ds.space.sample(rng))
            for i in rng.choice(len(variables), size=min(perturb, len(variables)), replace=False):
                z[variables[i].name] = variables[i].sample(rng)
            self.climb(z, rng, plateau_steps)
            stale = stale + 1 if len(self.values) == seen else 0


class _Polish:
    """SCA on the convex blocks of `structure(at=decision)`, block solutions cached by key."""

    def __init__(self, problem: BudgetedProblem, cfg: ConvexConfig, quick_iterations: int | None = None):
        self.problem, self.cfg = problem, cfg
        self.quick = cfg.model_copy(update={"max_iterations": min(quick_iterations or cfg.max_iterations,
                                                                  cfg.max_iterations)})
        self.res = ScaResult()
        self.cache: dict = {}  # block key -> (point, solved with the full iteration count)
        self.last: dict = {}  # (label, dim) -> point (warm starts)
        self.solves = self.reuses = 0

    def run(self, decision: dict, full: bool = True) -> tuple[float, dict]:
        """(verified objective, decision) of the decision with its blocks' power optimized: SCA with
        the full iteration count, or (full=False) the quick one; a block solved quickly before is
        continued from its point when the full count is asked for."""
        problem = self.problem
        blocks = problem.structure(at=decision).convex_blocks
        if blocks is None:
            raise UserError("solver 'topology-search' needs convex blocks in structure(at=decision)")
        keys = blocks.keys or [None] * len(blocks.programs)
        points = []
        for prog, key in zip(blocks.programs, keys):
            meter = Meter(problem.remaining, problem.deadline)
            try:
                cached = self.cache.get(key) if key is not None else None
                if cached is not None and (cached[1] or not full):
                    x = cached[0]
                    self.reuses += 1
                else:
                    if cached is not None:  # continue a quick solve
                        start, value = cached[0], meter.f(prog, cached[0][None])[0]
                    else:
                        start, value = prog.start, meter.f(prog, prog.start[None])[0]
                        warm = self.last.get((prog.label, len(prog.start)))
                        if warm is not None:
                            fw = meter.f(prog, warm[None])[0]
                            if fw > value:
                                start, value = warm, fw
                    x, fx = sca_program(prog, self.cfg if full else self.quick, meter, self.res, start=start,
                                        value=value)
                    if self.res.stop == "budget":
                        self.res.stop = "done"
                        raise BudgetExhausted("topology-search: budget ended in a block")
                    self.solves += 1
                    if key is not None:
                        self.cache[key] = (x, full)
                    self.last[(prog.label, len(x))] = x
            finally:
                problem.charge(meter.count)
            points.append(x)
        out = blocks.combine(points)
        ev = problem.evaluate(out)
        return (float(ev.objective) if ev.feasible else -np.inf), out
