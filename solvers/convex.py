"""Successive convex approximation (SCA) with cvxpy, on what `problem.structure()` offers:

* `convex_blocks` (ent-usr: separable power blocks) and `convex` (sg-nulling: relaxed branches):
  `ConvexProgram`s that build their own concave surrogate around an anchor.
* `monotonic` (sg-cluster P2, eq. 41): each branch max f(y) s.t. g(y) <= 0, low <= y <= high becomes
  a `LinearizedProgram`, trust-region sequential linear programming (Marks & Wright, Oper. Res.
  1978; Scutari, Facchinei, Lampariello, IEEE TSP 2017): at u_k (unit-box coordinates) the LP

    max  grad f(u_k)^T u
    s.t. g(u_k) + grad g(u_k)^T (u - u_k) <= -margin

  (forward-difference gradients). Every iterate is feasible, so the value never exceeds a certified
  upper bound (polyblock's). Branches are screened (the feasible end of a bisection along the
  diagonal), visited best first, and skipped once f(high), a bound of the branch (f increasing), is
  below the incumbent.

One loop, `sca_program`, runs every ConvexProgram: the surrogate plus the box and a trust region,
one DPP problem re-anchored through Parameters (`SurrogateStep`); a step is kept only if the true f
improves. A branch program's continuous points are then rounded and repaired by the program and
checked with `problem.evaluate`.

Evaluation accounting as in polyblock (`structured.Meter`): one evaluation per point passed to f or
g and per finite-difference point of an anchor, charged to the runner's budgeted problem, plus every
`problem.evaluate`. Subproblem statuses are counted in `info["statuses"]`.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Sequence

import cvxpy as cp
import numpy as np
from pydantic import Field

from isacbench.api import (Budget, BudgetedProblem, BudgetExhausted, Config, ConvexProgram, MonotonicProgram, Solution,
                           Solver, Structure, UserError)

from .structured import BlockResult, Meter, checked, solve_blocks

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
    rel_tol: float = Field(1e-6, ge=0, description="stop a branch when the predicted or true gain is below rel_tol*|f|")
    fd_step: float = Field(1e-6, gt=0, lt=0.1, description="forward-difference step (fraction of the box)")
    screen_tol: float = Field(1e-3, gt=0, lt=1, description="bisection tolerance of the diagonal start point")
    beam: Literal["codebook", "mrt"] = Field("codebook", description="ent-usr: the beams of the reference layout whose "
                                             "power is optimized, codebook MRT or true MRT (structure option beam)")


class SubproblemFailed(RuntimeError):
    """The convex solver did not return an optimal point for an SCA subproblem."""


@dataclass
class ScaResult:
    """What SCA runs report: subproblems and their statuses, why it stopped and, over monotonic
    branches (`sca`), the best point."""

    best: float = -np.inf
    best_y: np.ndarray | None = None
    best_branch: int | None = None
    evaluations: int = 0
    subproblems: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    branches_solved: int = 0
    branches_skipped: int = 0
    branches_empty: int = 0
    stop: str = "done"  # 'done', 'budget'

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


class LinearizedProgram(ConvexProgram):
    """A MonotonicProgram as a ConvexProgram in its unit box u (y = low + (high - low) u), for
    trust-region SLP (module docstring): the surrogate at u0 is the LP grad f(u0)^T u s.t. the
    linearized constraint, backed off by margin = 1e-7 (1 + |grad g|_1) so that the solver's
    tolerance cannot push a point across it; the anchor's forward differences (step `fd_step`,
    backwards on the upper face) cost 2 d evaluations (reported). The true objective is f where
    g <= 0, else -inf: the SCA loop charges one evaluation per point (its g), the program charges f
    to `meter` where it is evaluated. `start` = (u, f, g), a feasible point with known values."""

    minorant = False

    def __init__(self, prog: MonotonicProgram, meter: Meter, start: tuple[np.ndarray, float, float], fd_step: float):
        self.prog, self.meter, self.h, self.label = prog, meter, fd_step, prog.label
        self.origin, self.width = _box(prog)
        self.low, self.high = np.zeros(len(self.origin)), np.ones(len(self.origin))
        self.start = start[0]
        self._known = {start[0].tobytes(): start[1:]}  # (f, g) of evaluated points: the anchors

    def point(self, u: np.ndarray) -> np.ndarray:
        return self.origin + self.width * u

    def objective(self, u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(u)
        y = self.point(u)
        g = checked(self.prog.constraint(y), self.prog, y, "constraint")
        f = np.full(len(u), -np.inf)
        if (ok := g <= 0).any():
            f[ok] = self.meter.f(self.prog, y[ok])
        self._known.update((row.tobytes(), (fv, gv)) for row, fv, gv in zip(u, f, g))
        return f

    def surrogate(self, u: cp.Variable):
        d = len(self.origin)
        grad_f, grad_g, rhs = cp.Parameter(d), cp.Parameter(d), cp.Parameter()  # rhs = grad_g^T u0 - g(u0) - margin

        def anchor(u0: np.ndarray) -> int:
            f0, g0 = self._known[u0.tobytes()]
            sign = np.where(u0 + self.h <= 1.0, 1.0, -1.0)
            ys = self.point(u0[None] + np.diag(sign * self.h))
            grad_f.value = (checked(self.prog.objective(ys), self.prog, ys, "objective") - f0) / (sign * self.h)
            grad_g.value = (checked(self.prog.constraint(ys), self.prog, ys, "constraint") - g0) / (sign * self.h)
            rhs.value = float(grad_g.value @ u0 - g0 - 1e-7 * (1.0 + np.abs(grad_g.value).sum()))
            return 2 * d

        return grad_f @ u, [grad_g @ u <= rhs], anchor

    def to_decisions(self, u: np.ndarray) -> list[dict]:
        return [self.prog.to_decision(self.point(u))]


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
        """The maximizer of the surrogate (anchored at x0 by the caller) within `radius` of x0;
        `self.status` says how it was obtained (a retry is labelled, e.g. "optimal (no
        equilibration)"). SubproblemFailed when every attempt fails."""
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
                start: np.ndarray | None = None, value: float | None = None) -> tuple[np.ndarray, float]:
    """SCA on a ConvexProgram from `start` (default: its own; `value`: f(start) when known): solve
    the surrogate around the incumbent, keep the solution if the true f improves (trust region
    doubles), else halve the region. A minorant surrogate starts with the whole box. Stops on a
    predicted or true gain below rel_tol |f|, a region below min_trust_region, max_iterations, or
    the meter (`res.stop = "budget"`). Returns the incumbent (x, f(x))."""
    start = prog.start if start is None else start
    x, fx = np.clip(np.asarray(start, float), prog.low, prog.high), -np.inf
    radius = 1.0 if prog.minorant else cfg.trust_region
    tic = time.perf_counter()
    try:
        fx = meter.f(prog, x[None])[0] if value is None else value
        if not np.isfinite(fx):
            raise ValueError(f"convex: program {prog.label!r}: its start point is infeasible")
        step = SurrogateStep(prog, cfg.solver)
        for _ in range(cfg.max_iterations):
            if radius < cfg.min_trust_region:
                break
            # a solve cannot be interrupted: start one only if the last step's duration still fits
            now = time.perf_counter()
            if meter.deadline is not None and now + (now - tic) > meter.deadline:
                raise BudgetExhausted("convex: no time for another subproblem")
            tic = now
            meter.charge(step.anchor(x))  # evaluations of f the anchor needed
            try:
                cand = np.clip(step.solve(x, radius), prog.low, prog.high)
            except SubproblemFailed:  # flagged in the statuses, treated as a rejected step: the incumbent stays
                res.count(step.status)
                radius *= 0.5
                continue
            if step.predicted_gain(x) <= cfg.rel_tol * max(abs(fx), 1e-12):
                break  # stationary: the surrogate sees no ascent from x inside the region
            res.subproblems += 1
            res.count(step.status)
            fc = meter.f(prog, cand[None])[0]
            if fc > fx:
                gain, x, fx = fc - fx, cand, fc
                radius = min(1.0, 2.0 * radius)
                if prog.minorant and gain <= cfg.rel_tol * max(abs(fx), 1e-12):
                    break
            else:
                radius *= 0.5
    except BudgetExhausted:
        res.stop = "budget"
    return x, fx


def sca(programs: Sequence[MonotonicProgram], cfg: ConvexConfig, max_evaluations: int | None = None,
        deadline: float | None = None) -> ScaResult:
    """Screen every branch (its point on the diagonal boundary), then SCA (`LinearizedProgram`) on the
    branches in decreasing order of their screened value, skipping those whose f(high) cannot beat
    the incumbent; see the module docstring."""
    meter = Meter(max_evaluations, deadline)
    res = ScaResult()
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
                low, width = _box(prog)
                res.best, res.best_y, res.best_branch = start[1], low + width * start[0], k
            tops[k] = meter.f(prog, np.asarray(prog.high, float).reshape(1, -1))[0]  # branch bound (f increasing)
        for k in sorted(starts, key=lambda k: -starts[k][1]):
            if tops[k] <= res.best:
                res.branches_skipped += 1
                continue
            lin = LinearizedProgram(programs[k], meter, starts[k], cfg.fd_step)
            u, val = sca_program(lin, cfg, meter, res, value=starts[k][1])
            if val > res.best:
                res.best, res.best_y, res.best_branch = val, lin.point(u), k
            if res.stop == "budget":
                break
            res.branches_solved += 1
    except BudgetExhausted:
        res.stop = "budget"
    res.evaluations = meter.count
    return res


def beam_structure(problem: BudgetedProblem, beam: str) -> Structure:
    """`problem.structure()` at a solver's `beam` setting: the default codebook beams take no options
    (every problem), true MRT passes {"beam": "mrt"} (ent-usr frame problems; others refuse it)."""
    return problem.structure() if beam == "codebook" else problem.structure(options={"beam": beam})


def _box(prog: MonotonicProgram) -> tuple[np.ndarray, np.ndarray]:
    """(low, high - low): y = low + (high - low) u maps the unit box onto the program's box."""
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


class Convex(Solver):
    name = "convex"
    description = "successive convex approximation (cvxpy, DPP, Clarabel): convex surrogates, relaxations, monotonic programs"
    Config = ConvexConfig
    tasks: ClassVar[frozenset[str] | None] = frozenset({"sg-nulling", "sg-cluster", "ent-usr"})
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})

    def _block(self, prog: ConvexProgram, ref: np.ndarray, cap: int | None, deadline: float | None) -> BlockResult:
        """SCA on one separable block (ent-usr power levels) from its start point."""
        meter, res = Meter(cap, deadline), ScaResult()
        x, fx = sca_program(prog, self.config, meter, res)
        return BlockResult(x, fx, np.inf, meter.count,
                           {"stop": res.stop, "subproblems": res.subproblems, "statuses": res.statuses})

    def _branches(self, problem: BudgetedProblem, programs: Sequence[ConvexProgram]) -> Solution:
        """SCA on the branches' relaxations with half of the evaluations and time left: a quarter of
        that screens every branch (even split), the rest continues the CONTINUED_BRANCHES best from
        their screened points. Then the branches' rounded-and-repaired decisions, best continuous
        value first, go through `problem.evaluate` until the budget ends; the runner takes the best."""
        left = None if problem.remaining is None else problem.remaining // 2
        deadline, start, used = problem.deadline, time.perf_counter(), 0
        res = ScaResult()
        points: dict[int, tuple[float, np.ndarray]] = {}
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
        problem.charge(used)
        tried = 0
        try:
            for fx, prog, x in sorted(points, key=lambda t: -t[0]):
                for decision in prog.to_decisions(x):
                    problem.evaluate(decision)
                    tried += 1
        except BudgetExhausted:
            res.stop = "budget"
        info = {"solver": self.config.solver, "stop": res.stop, "structure_evaluations": used,
                "subproblems": res.subproblems, "statuses": res.statuses, "branches": len(programs),
                "branches_solved": res.branches_solved, "rounded_candidates": tried,
                "relaxation_value": max((p[0] for p in points), default=None)}
        if problem.best is None:
            return Solution(info={**info, "feasible_found": False})
        return Solution(info={**info, "verified_objective": problem.best.objective})

    def _monotonic(self, problem: BudgetedProblem, programs: Sequence[MonotonicProgram]) -> Solution:
        """`sca` on the branches with the evaluations and time left but one, then one
        `problem.evaluate` of the best point."""
        remaining = problem.remaining
        if remaining is not None and remaining < 2:
            return Solution(info={"stop": "budget"})
        res = sca(programs, self.config, None if remaining is None else remaining - 1, problem.deadline)
        problem.charge(res.evaluations)
        info = {"solver": self.config.solver, "stop": res.stop, "structure_evaluations": res.evaluations,
                "subproblems": res.subproblems, "statuses": res.statuses, "branches": len(programs),
                "branches_solved": res.branches_solved, "branches_skipped": res.branches_skipped,
                "branches_empty": res.branches_empty, "value": res.best}
        if res.best_y is None:  # proven infeasible (every branch empty) or out of budget first
            return Solution(info={**info, "feasible_found": False, "infeasible": res.stop == "done"})
        prog = programs[res.best_branch]
        decision = prog.to_decision(res.best_y)
        info["branch"] = prog.label
        try:
            ev = problem.evaluate(decision)
        except BudgetExhausted:  # the time budget ended in the structure: the runner re-evaluates the point
            return Solution(decision=decision, info=info)
        info.update(verified_feasible=bool(ev.feasible), verified_objective=float(ev.objective))
        return Solution(decision=decision, info=info)

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        structure = beam_structure(problem, self.config.beam)
        if structure.convex_blocks is not None:  # ent-usr: separable power allocation
            sol = solve_blocks(problem, structure.convex_blocks, self._block)
            statuses: dict[str, int] = {}
            for b in sol.info["blocks"]:
                for s, n in b.get("statuses", {}).items():
                    statuses[s] = statuses.get(s, 0) + n
            sol.info.update(solver=self.config.solver, statuses=statuses, program_bound=None)
            return sol
        if structure.convex:
            return self._branches(problem, structure.convex)
        if structure.monotonic:
            return self._monotonic(problem, structure.monotonic)
        raise UserError("solver 'convex' needs a problem whose structure() offers convex programs, convex blocks or "
                        "monotonic programs (sg-nulling, sg-cluster problem=P2 or region, ent-usr frame problems); "
                        "this problem offers none")
