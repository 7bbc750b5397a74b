"""Successive convex approximation (SCA) with cvxpy, on what `problem.structure()` offers:

* `convex_blocks` (ent-usr: separable power blocks) and `convex` (sg-nulling: relaxed branches):
  `ConvexProgram`s that build their own concave surrogate around an anchor (`sca_program`,
  `SurrogateStep`: the surrogate plus the box and a trust region, one DPP problem re-anchored
  through Parameters). A step is kept only if the true f improves; a branch program's continuous
  points are then rounded and repaired by the program and checked with `problem.evaluate`.
* `monotonic` (sg-cluster P2, eq. 41): trust-region sequential linear programming on each branch
  max f(y) s.t. g(y) <= 0, low <= y <= high (Marks & Wright, Oper. Res. 1978; Scutari, Facchinei,
  Lampariello, IEEE TSP 2017): at y_k the LP

    max  grad f(y_k)^T y
    s.t. g(y_k) + grad g(y_k)^T (y - y_k) <= 0,  |y - y_k| <= r_k,  low <= y <= high

  (unit-box coordinates, forward-difference gradients) is compiled once per dimension
  (`LinearizedStep`). Every iterate is feasible, so the value never exceeds a certified upper
  bound (polyblock's). Branches are screened (the feasible end of a bisection along the diagonal),
  visited best first, and skipped once f(high), a bound of the branch (f increasing), is below the
  incumbent.

Evaluation accounting as in polyblock: one evaluation per point passed to f or g (and per
finite-difference point of a ConvexProgram's anchor), charged to the runner's budgeted problem,
plus every `problem.evaluate`. Subproblem statuses are counted in `info["statuses"]`.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Sequence

import cvxpy as cp
import numpy as np
from pydantic import Field

from isacbench.api import Budget, BudgetExhausted, Config, ConvexProgram, MonotonicProgram, Problem, Solution, Solver, UserError, best_or_sample

from .polyblock import BlockResult, Meter, OutOfBudget, charge, solve_blocks

OK_STATUS = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
SCREEN_SHARE, CONTINUED_BRANCHES = 0.25, 3  # branch programs: screening share, branches continued
# Clarabel's Ruiz equilibration occasionally stalls on the exp-cone + SDP surrogates of ent-usr
# (InsufficientProgress at a well-posed point); the same problem solves unequilibrated, with more
# equilibration passes, or with SCS (measured on the frames where it happened)
RETRIES: dict[str, tuple[tuple[str, dict, str], ...]] = {"CLARABEL": (
    ("CLARABEL", {}, ""), ("CLARABEL", {"equilibrate_enable": False}, " (no equilibration)"),
    ("CLARABEL", {"equilibrate_max_iter": 50}, " (50 equilibration passes)"), ("SCS", {}, " (SCS)"))}


class ConvexConfig(Config):
    solver: Literal["CLARABEL", "SCS", "HIGHS", "OSQP"] = Field("CLARABEL", description="cvxpy solver")
    max_iterations: int = Field(50, ge=1, description="SCA iterations per branch")
    trust_region: float = Field(0.25, gt=0, le=1, description="initial trust region (fraction of the box)")
    min_trust_region: float = Field(1e-5, gt=0, lt=1, description="stop a branch when the region is smaller")
    rel_tol: float = Field(1e-6, ge=0, description="stop a branch when the linearized gain is below rel_tol*|f|")
    fd_step: float = Field(1e-6, gt=0, lt=0.1, description="forward-difference step (fraction of the box)")
    screen_tol: float = Field(1e-3, gt=0, lt=1, description="bisection tolerance of the diagonal start point")


class SubproblemFailed(RuntimeError):
    """The convex solver did not return an optimal point for an SCA subproblem."""


class LinearizedStep:
    """The DPP subproblem of one SCA step in the unit box, compiled once per dimension d."""

    _cache: ClassVar[dict[tuple[int, str], "LinearizedStep"]] = {}

    def __init__(self, d: int):
        self.y = cp.Variable(d)
        self.grad_f = cp.Parameter(d)
        self.grad_g = cp.Parameter(d)
        self.rhs = cp.Parameter()  # grad_g^T y_k - g(y_k)
        self.center = cp.Parameter(d)
        self.radius = cp.Parameter(nonneg=True)
        y = self.y
        self.problem = cp.Problem(cp.Maximize(self.grad_f @ y), [
            self.grad_g @ y <= self.rhs, y >= 0, y <= 1,
            y - self.center <= self.radius, self.center - y <= self.radius])
        assert self.problem.is_dcp(dpp=True)

    @classmethod
    def of(cls, d: int, solver: str) -> "LinearizedStep":
        key = (d, solver)
        if key not in cls._cache:
            cls._cache[key] = cls(d)
        return cls._cache[key]

    def solve(self, solver: str, grad_f, grad_g, g0: float, center, radius: float) -> np.ndarray:
        self.grad_f.value, self.grad_g.value = grad_f, grad_g
        # back off by a small margin so that the solver's tolerance cannot push the point across a
        # linear constraint (a center on the boundary still has room to move inwards)
        margin = 1e-7 * (1.0 + float(np.abs(grad_g).sum()))
        self.rhs.value = float(grad_g @ center - g0 - margin)
        self.center.value, self.radius.value = center, radius
        try:
            self.problem.solve(solver=solver)
        except cp.SolverError as e:
            raise SubproblemFailed(f"convex: {solver} failed on an SCA subproblem: {e}") from None
        if self.problem.status not in OK_STATUS or self.y.value is None:
            raise SubproblemFailed(f"convex: {solver} returned status {self.problem.status!r} on an SCA "
                                   "subproblem (it always contains the current feasible point)")
        return np.clip(self.y.value, 0.0, 1.0)


@dataclass
class ScaResult:
    best: float
    best_y: np.ndarray | None
    best_branch: int | None
    evaluations: int
    subproblems: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    branches_solved: int = 0
    branches_skipped: int = 0
    branches_empty: int = 0
    stop: str = "done"  # 'done', 'budget'


def sca(programs: Sequence[MonotonicProgram], cfg: ConvexConfig, max_evaluations: int | None = None,
        deadline: float | None = None) -> ScaResult:
    """Screen every branch (its point on the diagonal boundary), then SCA on the branches in
    decreasing order of their screened value, skipping those whose f(high) cannot beat the
    incumbent; see the module docstring."""
    meter = Meter(max_evaluations, deadline)
    res = ScaResult(-np.inf, None, None, 0)
    starts: dict[int, tuple[np.ndarray, float, float]] = {}
    tops: dict[int, float] = {}
    try:
        for k, prog in enumerate(programs):
            start = _diagonal_start(prog, meter, cfg.screen_tol)
            if start is None:
                res.branches_empty += 1
                continue
            starts[k] = start
            if start[1] > res.best:
                res.best, res.best_y, res.best_branch = start[1], _box(prog)[0] + _box(prog)[1] * start[0], k
            tops[k] = meter.f(prog, np.asarray(prog.high, float).reshape(1, -1))[0]  # branch bound (f increasing)
        for k in sorted(starts, key=lambda k: -starts[k][1]):
            if tops[k] <= res.best:
                res.branches_skipped += 1
                continue
            y, val = _branch(programs[k], k, starts[k], cfg, meter, res)
            res.branches_solved += 1
            if val > res.best:
                res.best, res.best_y, res.best_branch = val, y, k
    except OutOfBudget:
        res.stop = "budget"
    res.evaluations = meter.count
    return res


def _box(prog: MonotonicProgram) -> tuple[np.ndarray, np.ndarray]:
    low = np.asarray(prog.low, float).ravel()
    return low, np.asarray(prog.high, float).ravel() - low


def _diagonal_start(prog: MonotonicProgram, meter: Meter, tol: float):
    """The feasible end of a bisection for the upper boundary on the diagonal of the unit box:
    (u, f, g), or None when low is infeasible (G normal: the branch is empty)."""
    low, width = _box(prog)
    g_low = meter.g(prog, low[None])[0]
    if g_low > 0:
        return None
    lo, hi, g_lo = 0.0, 1.0, g_low
    g_hi = meter.g(prog, (low + width)[None])[0]
    if g_hi <= 0:
        lo, g_lo = 1.0, g_hi
    while hi - lo > tol and lo < 1.0:
        mid = 0.5 * (lo + hi)
        g_mid = meter.g(prog, (low + mid * width)[None])[0]
        if g_mid <= 0:
            lo, g_lo = mid, g_mid
        else:
            hi = mid
    u = np.full(len(low), lo)
    return u, meter.f(prog, (low + width * u)[None])[0], g_lo


def _branch(prog: MonotonicProgram, k: int, start, cfg: ConvexConfig, meter: Meter, res: ScaResult):
    """SCA on one branch from a feasible start (u, f, g) in the unit box; returns (y, f(y))."""
    low, width = _box(prog)
    d = len(low)
    to_y = lambda u: low + width * u  # noqa: E731
    u, f0, g0 = start
    step = LinearizedStep.of(d, cfg.solver)
    radius, h = cfg.trust_region, cfg.fd_step
    try:
        for _ in range(cfg.max_iterations):
            if radius < cfg.min_trust_region:
                break
            # forward differences inside the box (step backwards on the upper face)
            sign = np.where(u + h <= 1.0, 1.0, -1.0)
            ys = to_y(u[None] + np.diag(sign * h))
            grad_f = (meter.f(prog, ys) - f0) / (sign * h)
            grad_g = (meter.g(prog, ys) - g0) / (sign * h)
            cand = step.solve(cfg.solver, grad_f, grad_g, g0, u, radius)
            res.subproblems += 1
            status = step.problem.status
            res.statuses[status] = res.statuses.get(status, 0) + 1
            y_c = to_y(cand)[None]
            g_c = meter.g(prog, y_c)[0]
            f_c = meter.f(prog, y_c)[0] if g_c <= 0 else -np.inf
            predicted = float(grad_f @ (cand - u))  # first-order gain: ~0 at a stationary point
            if g_c <= 0 and f_c > f0:
                u, f0, g0 = cand, f_c, g_c
                radius = min(1.0, 2.0 * radius)
            else:
                radius *= 0.5
            if predicted <= cfg.rel_tol * max(abs(f0), 1e-12):
                break
    except OutOfBudget:
        if f0 > res.best:  # keep what this branch reached before re-raising
            res.best, res.best_y, res.best_branch = f0, to_y(u), k
        raise
    return to_y(u), f0


class SurrogateStep:
    """The cvxpy problem of one ConvexProgram: its surrogate and constraints, the box, and a trust
    region |x - x0| <= radius (high - low), compiled once; anchor, centre and radius are Parameters."""

    def __init__(self, prog: ConvexProgram, solver: str):
        d = len(prog.low)
        self.solver, self.x = solver, cp.Variable(d)
        self.objective, constraints, self.anchor = prog.surrogate(self.x)
        self.center, self.radius = cp.Parameter(d), cp.Parameter(nonneg=True)
        width = np.maximum(np.asarray(prog.high, float) - prog.low, 1e-12)
        self.problem = cp.Problem(cp.Maximize(self.objective), constraints + [
            self.x >= prog.low, self.x <= prog.high, cp.abs(self.x - self.center) <= self.radius * width])
        if not self.problem.is_dcp(dpp=True):
            raise ValueError(f"convex: program {prog.label!r}: its surrogate is not DPP-compliant DCP")

    def solve(self, x0: np.ndarray, radius: float) -> np.ndarray:
        """The surrogate's maximizer around x0; `self.status` says how it was obtained (a retry
        is labelled, e.g. "optimal (no equilibration)"). SubproblemFailed when every attempt fails."""
        self.spent = self.anchor(x0)  # evaluations of f the anchor needed (charged by the caller)
        self.center.value, self.radius.value = x0, radius
        attempts = RETRIES.get(self.solver, ((self.solver, {}, ""),))
        for k, (solver, options, label) in enumerate(attempts):
            try:
                with warnings.catch_warnings():  # "Solution may be inaccurate": counted in the statuses instead
                    warnings.simplefilter("ignore", UserWarning)
                    self.problem.solve(solver=solver, **options)
                break
            except cp.SolverError as e:
                if k == len(attempts) - 1:
                    self.status = "solver_error"
                    raise SubproblemFailed(f"convex: {self.solver} failed on an SCA subproblem: {e}") from None
        self.status = self.problem.status + label
        if self.problem.status not in OK_STATUS or self.x.value is None:
            raise SubproblemFailed(f"convex: {self.solver} returned status {self.problem.status!r} on an SCA "
                                   "subproblem (it always contains the current feasible point)")
        return np.asarray(self.x.value, float)

    def predicted_gain(self, x0: np.ndarray) -> float:
        """Surrogate value of the last solution minus its value at the anchor x0."""
        best = float(self.problem.value)
        self.x.value = x0
        return best - float(self.objective.value)


def sca_program(prog: ConvexProgram, cfg: ConvexConfig, meter: Meter, res: ScaResult,
                start: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """SCA on a ConvexProgram from `start` (default: its own): solve the surrogate around the
    incumbent, keep the solution if the true f improves (trust region doubles), else halve the
    region. A minorant surrogate starts with the whole box. Returns the incumbent (x, f(x))."""
    start = prog.start if start is None else start
    x, fx = np.clip(np.asarray(start, float), prog.low, prog.high), -np.inf
    radius = 1.0 if prog.minorant else cfg.trust_region
    tic = time.perf_counter()
    try:
        fx = meter.f(prog, x[None])[0]
        if not np.isfinite(fx):
            raise ValueError(f"convex: program {prog.label!r}: its start point is infeasible")
        step = SurrogateStep(prog, cfg.solver)
        for _ in range(cfg.max_iterations):
            if radius < cfg.min_trust_region:
                break
            # a solve cannot be interrupted: start one only if the last step's duration still fits
            now = time.perf_counter()
            if meter.deadline is not None and now + (now - tic) > meter.deadline:
                raise OutOfBudget
            tic = now
            try:
                cand = np.clip(step.solve(x, radius), prog.low, prog.high)
            except SubproblemFailed:  # flagged in the statuses, treated as a rejected step: the incumbent stays
                res.statuses[step.status] = res.statuses.get(step.status, 0) + 1
                meter.charge(step.spent)
                radius *= 0.5
                continue
            meter.charge(step.spent)
            if step.predicted_gain(x) <= cfg.rel_tol * max(abs(fx), 1e-12):
                break  # stationary: the surrogate sees no ascent from x inside the region
            res.subproblems += 1
            res.statuses[step.status] = res.statuses.get(step.status, 0) + 1
            fc = meter.f(prog, cand[None])[0]
            if fc > fx:
                gain, x, fx = fc - fx, cand, fc
                radius = min(1.0, 2.0 * radius)
                if gain <= cfg.rel_tol * max(abs(fx), 1e-12):
                    break
            else:
                radius *= 0.5
    except OutOfBudget:
        res.stop = "budget"
    return x, fx


class Convex(Solver):
    name = "convex"
    description = "successive convex approximation (cvxpy, DPP, Clarabel): convex surrogates, relaxations, monotonic programs"
    Config = ConvexConfig
    tasks: ClassVar[frozenset[str] | None] = frozenset({"sg-nulling", "sg-cluster", "ent-usr"})
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})

    def _block(self, prog: ConvexProgram, ref: np.ndarray, cap: int | None, deadline: float | None) -> BlockResult:
        """SCA on one separable block (ent-usr power levels) from its start point."""
        meter, res = Meter(cap, deadline), ScaResult(-np.inf, None, None, 0)
        x, fx = sca_program(prog, self.config, meter, res)
        return BlockResult(x, fx, np.inf, meter.count,
                           {"stop": res.stop, "subproblems": res.subproblems, "statuses": res.statuses})

    def _deadline(self, problem: Problem, budget: Budget) -> float | None:
        return None if budget.seconds is None else (
            time.perf_counter() + budget.seconds - getattr(problem, "elapsed", 0.0))

    def _branches(self, problem: Problem, programs: Sequence[ConvexProgram], budget: Budget,
                  rng: np.random.Generator) -> Solution:
        """SCA on the branches' relaxations with half of the evaluations and time left: a quarter of
        that screens every branch (even split), the rest continues the CONTINUED_BRANCHES best from
        their screened points. Then the branches' rounded-and-repaired decisions, best continuous
        value first, go through `problem.evaluate` until the budget ends."""
        remaining = getattr(problem, "remaining_evaluations", budget.evaluations)
        left = None if remaining is None else remaining // 2
        deadline, start, used = self._deadline(problem, budget), time.perf_counter(), 0
        res = ScaResult(-np.inf, None, None, 0)
        points: dict[int, tuple[float, np.ndarray]] = {}
        # screening: a quarter of the SCA share, evenly; then the best branches continue
        # (branches, window [t0, t1] of the SCA share): screen every branch, then continue the best
        for branches, t0, t1 in ((range(len(programs)), 0.0, SCREEN_SHARE), (None, SCREEN_SHARE, 1.0)):
            if branches is None:
                branches = sorted(points, key=lambda k: -points[k][0])[:CONTINUED_BRANCHES]
            for j, k in enumerate(branches):
                cap = None if left is None else int((t1 - t0) / len(branches) * left)
                end = None if deadline is None else (
                    start + 0.5 * (deadline - start) * (t0 + (t1 - t0) * (j + 1) / len(branches)))
                meter = Meter(cap, end)
                x, fx = sca_program(programs[k], self.config, meter, res, points.get(k, (0, None))[1])
                used += meter.count
                if np.isfinite(fx) and fx >= points.get(k, (-np.inf,))[0]:
                    points[k] = (fx, x)
        res.branches_solved = len(points)
        points = [(fx, programs[k], x) for k, (fx, x) in points.items()]
        res.stop = "done"  # the SCA caps are shares of the budget, not the end of it
        charge(problem, used)
        best: tuple[float, dict] | None = None
        tried = 0
        try:
            for fx, prog, x in sorted(points, key=lambda t: -t[0]):
                for decision in prog.to_decisions(x):
                    ev = problem.evaluate(decision)
                    tried += 1
                    if ev.feasible and (best is None or ev.objective > best[0]):
                        best = (float(ev.objective), decision)
        except BudgetExhausted:
            res.stop = "budget"
        info = {"solver": self.config.solver, "stop": res.stop, "structure_evaluations": used,
                "subproblems": res.subproblems, "statuses": res.statuses, "branches": len(programs),
                "branches_solved": res.branches_solved, "rounded_candidates": tried,
                "relaxation_value": max((p[0] for p in points), default=None)}
        if best is None:
            info["feasible_found"] = False
            return Solution(decision=best_or_sample(problem, rng), info=info)
        return Solution(decision=best[1], info={**info, "verified_objective": best[0]})

    def solve(self, problem: Problem, budget: Budget, rng: np.random.Generator) -> Solution:
        structure = problem.structure()
        if structure.get("convex_blocks") is not None:  # ent-usr: separable power allocation
            sol = solve_blocks(problem, structure["convex_blocks"], budget, self._block)
            statuses: dict[str, int] = {}
            for b in sol.info["blocks"]:
                for s, n in b.get("statuses", {}).items():
                    statuses[s] = statuses.get(s, 0) + n
            sol.info.update(solver=self.config.solver, statuses=statuses, program_bound=None)
            return sol
        if structure.get("convex"):
            return self._branches(problem, structure["convex"], budget, rng)
        programs = structure.get("monotonic")
        if not programs:
            raise UserError("solver 'convex' needs a problem exposing structure()['convex'], ['convex_blocks'] or "
                            "['monotonic'] (sg-nulling, sg-cluster problem=P2 or region, ent-usr frame problems); "
                            "this problem exposes none")
        remaining = getattr(problem, "remaining_evaluations", budget.evaluations)
        if remaining is not None and remaining < 2:
            return Solution(decision=best_or_sample(problem, rng), info={"stop": "budget"})
        res = sca(programs, self.config, None if remaining is None else remaining - 1,
                  self._deadline(problem, budget))
        charge(problem, res.evaluations)
        info = {"solver": self.config.solver, "stop": res.stop, "structure_evaluations": res.evaluations,
                "subproblems": res.subproblems, "statuses": res.statuses, "branches": len(programs),
                "branches_solved": res.branches_solved, "branches_skipped": res.branches_skipped,
                "branches_empty": res.branches_empty, "value": res.best}
        if res.best_y is None:  # proven infeasible (every branch empty) or out of budget first
            info.update(feasible_found=False, infeasible=res.stop == "done")
            return Solution(decision=best_or_sample(problem, rng), info=info)
        prog = programs[res.best_branch]
        decision = prog.to_decision(res.best_y)
        ev = problem.evaluate(decision)
        info.update(branch=prog.label, verified_feasible=bool(ev.feasible), verified_objective=float(ev.objective))
        return Solution(decision=decision, info=info)
