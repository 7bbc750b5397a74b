"""Monotonic optimization by Tuy's polyblock outer approximation.

Solves max f(y) s.t. g(y) <= 0, low <= y <= high with f, g increasing (the feasible
set G is normal), over one or several discrete branches (`MonotonicProgram`s offered as
`Structure.monotonic`) or separable blocks (`Structure.monotonic_blocks`,
`structured.solve_blocks`), and certifies an upper bound on the optimum.

Algorithm: the polyblock algorithm of H. Tuy, "Monotonic optimization: problems and
solution approaches", SIAM J. Optim. 11(2), 2000 (ref. [43] of the sg-cluster paper, which
gives no algorithm of its own); the same scheme as MAPEL (Qian, Zhang, Huang, IEEE TWC
2009). Run best-first over all branches at once:

1. Each branch starts with the polyblock [low, high] (vertex set {high}); `low` must be
   feasible, otherwise the branch is empty (G normal: nothing below an infeasible low).
2. Pick the vertex v with the largest f(v) over all branches: f(v) is an upper bound
   (f increasing, the polyblocks contain G). If v is feasible it is optimal.
3. Project v onto the upper boundary of G along the ray low + lam (v - low) by bisection
   on lam: `z_lo` (feasible) updates the incumbent, `z_hi` (infeasible) cuts the polyblock.
4. Replace v by v - (v_i - z_hi_i) e_i, i = 1..d (Tuy's vertex update). Every y >= z_hi is
   infeasible (G normal), so the new polyblock still contains G and the bound stays valid
   even when the run is stopped early. Improper vertices (dominated by another vertex)
   and vertices with f(v) <= incumbent are removed.
5. Stop when bound - incumbent <= max(eps, rel_eps |incumbent|), or on the iteration,
   vertex or evaluation caps; the returned bound is max(incumbent, max f over vertices).

Evaluation accounting (`structured.Meter`): every point y passed to f counts one evaluation
and every point passed to g counts one evaluation (a vertex costs one f; a bisection step one
g). These are charged to the runner's budgeted problem, plus one `problem.evaluate` of the
returned decision, so the total never exceeds the evaluation budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
from pydantic import Field

from isacbench.api import (Budget, BudgetedProblem, BudgetExhausted, Config, MonotonicProgram, Solution, Solver,
                           UserError)

from .structured import BlockResult, Meter, solve_blocks


class PolyblockConfig(Config):
    eps: float = Field(1e-6, ge=0, description="absolute gap at which to stop: bound - best <= eps")
    rel_eps: float = Field(1e-3, ge=0, description="relative gap at which to stop: bound - best <= rel_eps*|best|")
    bisection_tol: float = Field(1e-6, gt=0, lt=1, description="bisection tolerance on the ray parameter")
    reduce: bool = Field(True, description="shrink each selected vertex's box before projecting (BRB reduction)")
    reduction_tol: float = Field(1e-3, gt=0, lt=1, description="reduction bisection tolerance, relative to the box")
    max_vertices: int = Field(20_000, ge=1, description="cap on the vertex set (all branches together)")
    max_iterations: int = Field(100_000, ge=1, description="cap on polyblock iterations")


@dataclass
class _Branch:
    prog: MonotonicProgram
    low: np.ndarray
    high: np.ndarray
    vertices: np.ndarray  # (n, d)
    values: np.ndarray  # (n,) f at the vertices


@dataclass
class PolyblockResult:
    best: float  # -inf when no feasible point is known
    best_y: np.ndarray | None
    best_branch: int | None
    bound: float  # certified: no feasible point of any branch exceeds it (-inf: all branches empty)
    iterations: int
    evaluations: int
    stop: str  # 'gap', 'iterations', 'vertices', 'budget', 'infeasible'
    max_vertex_count: int
    branches_pruned: int
    branches_empty: int
    branch_bounds: list = field(default_factory=list)


def _reduce(meter: Meter, prog: MonotonicProgram, low: np.ndarray, v: np.ndarray, best: float,
            tol: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Shrink the box [low, v] to [t, u] without losing a feasible point with f > best
    (the "reduction" operation of Tuy, Al-Khayyal & Thach, "Monotonic optimization: branch
    and cut methods", 2005; the reduce step of branch-reduce-and-bound in Bjornson & Jorswieck,
    "Optimal resource allocation in coordinated multi-cell systems", 2013):
    t_i = min{s : f(v with y_i = s) >= best}, u_i = max{s : g(t with y_i = s) <= 0}.
    Both are found by bisection, all coordinates at once, keeping the conservative end
    (t below, u above its exact value), so the reduction stays valid. None: no such point."""
    d = len(v)
    rows = np.arange(d)

    def swap(base: np.ndarray, vals: np.ndarray) -> np.ndarray:
        y = np.repeat(base[None], d, axis=0)
        y[rows, rows] = vals
        return y

    # lower corner: f(v_{i <- s}) >= best holds at s = v_i (f(v) > best); low end keeps f < best
    lo, hi = low.copy(), v.copy()
    need = meter.f(prog, swap(v, low)) < best
    lo[~need] = hi[~need] = low[~need]
    while np.any(need & (hi - lo > tol * (v - low))):
        mid = 0.5 * (lo + hi)
        ok = meter.f(prog, swap(v, mid)) >= best
        hi, lo = np.where(need & ok, mid, hi), np.where(need & ~ok, mid, lo)
    t = np.where(need, lo, low)
    if meter.g(prog, t[None])[0] > 0:
        return None  # every y >= t is infeasible: the box holds nothing better than best
    # upper corner: g(t_{i <- s}) <= 0 at s = t_i; high end keeps g > 0
    lo, hi = t.copy(), v.copy()
    need = meter.g(prog, swap(t, v)) > 0
    while np.any(need & (hi - lo > tol * (v - low))):
        mid = 0.5 * (lo + hi)
        ok = meter.g(prog, swap(t, mid)) <= 0
        lo, hi = np.where(need & ok, mid, lo), np.where(need & ~ok, mid, hi)
    return t, np.where(need, hi, v)


def polyblock(programs: Sequence[MonotonicProgram], *, eps: float = 1e-6, rel_eps: float = 1e-3,
              bisection_tol: float = 1e-6, reduction_tol: float | None = 1e-3, max_vertices: int = 20_000,
              max_iterations: int = 100_000, max_evaluations: int | None = None,
              deadline: float | None = None, incumbent: tuple[int, np.ndarray] | None = None) -> PolyblockResult:
    """Maximize over the union of the branches; see the module docstring for the algorithm.
    `reduction_tol=None` turns the vertex reduction off (plain Tuy polyblock). `incumbent` = (branch,
    y): a known point, used as the first incumbent if feasible (2 evaluations), which lets the
    reduction and the pruning cut from the start."""
    meter = Meter(max_evaluations, deadline)
    best, best_y, best_k = -np.inf, None, None
    if incumbent is not None:
        k0, y0 = incumbent[0], np.asarray(incumbent[1], dtype=float).ravel()
        try:
            if meter.g(programs[k0], y0[None])[0] <= 0:
                best, best_y, best_k = float(meter.f(programs[k0], y0[None])[0]), y0.copy(), k0
        except BudgetExhausted:
            return PolyblockResult(-np.inf, None, None, np.inf, 0, meter.count, "budget", 0, 0, 0,
                                   [np.inf] * len(programs))
    branches: list[_Branch | None] = []
    iterations, max_count, stop, empty = 0, 0, "budget", 0

    def tol() -> float:
        return max(eps, rel_eps * abs(best))

    def bound() -> float:
        if len(branches) < len(programs):  # stopped before every branch had its first vertex
            return np.inf
        tops = [b.values.max() for b in branches if b is not None and len(b.values)]
        return float(max([best, *tops]))

    def drop(br: _Branch, j: int) -> None:
        keep = np.arange(len(br.values)) != j
        br.vertices, br.values = br.vertices[keep], br.values[keep]

    try:
        # step 1: empty branches (infeasible low) and the initial polyblocks [low, high]
        for k, prog in enumerate(programs):
            low = np.asarray(prog.low, dtype=float).ravel()
            high = np.asarray(prog.high, dtype=float).ravel()
            if low.shape != high.shape or np.any(high < low):
                raise ValueError(f"polyblock: branch {prog.label!r} has an invalid box low={low}, high={high}")
            if meter.g(prog, low[None])[0] > 0:
                empty += 1
                branches.append(None)
                continue
            f_low, f_high = meter.f(prog, np.stack([low, high]))
            if f_low > best:
                best, best_y, best_k = float(f_low), low.copy(), k
            branches.append(_Branch(prog, low, high, high[None].copy(), np.array([f_high])))
        if best_k is None:
            return PolyblockResult(-np.inf, None, None, -np.inf, 0, meter.count, "infeasible", 0, 0, empty,
                                   [-np.inf] * len(programs))

        while True:
            # prune vertices that cannot beat the incumbent, in every branch (prunes whole branches too)
            for b in branches:
                if b is not None:
                    m = b.values > best
                    b.vertices, b.values = b.vertices[m], b.values[m]
            alive = [(b.values.max(), k) for k, b in enumerate(branches) if b is not None and len(b.values)]
            max_count = max(max_count, sum(len(b.values) for b in branches if b is not None))
            if not alive or max(alive)[0] - best <= tol():
                stop = "gap"
                break
            if iterations >= max_iterations:
                stop = "iterations"
                break
            if max_count > max_vertices:
                stop = "vertices"
                break
            iterations += 1
            _, k = max(alive)
            br = branches[k]
            j = int(np.argmax(br.values))
            v, start = br.vertices[j], br.low
            if reduction_tol is not None:
                red = _reduce(meter, br.prog, br.low, v, best, reduction_tol)
                if red is None:
                    drop(br, j)
                    continue
                start, v = red
                f_v = meter.f(br.prog, v[None])[0]
                br.vertices[j], br.values[j] = v, f_v
                if f_v <= best:
                    continue
            # step 2: a feasible vertex attains its own bound: its box holds nothing better
            if meter.g(br.prog, v[None])[0] <= 0:
                best, best_y, best_k = float(br.values[j]), v.copy(), k
                drop(br, j)
                continue
            # step 3: bisection on the ray start + lam (v - start); lam=0 feasible, lam=1 infeasible
            lo, hi, d = 0.0, 1.0, v - start
            while hi - lo > bisection_tol:
                mid = 0.5 * (lo + hi)
                if meter.g(br.prog, (start + mid * d)[None])[0] <= 0:
                    lo = mid
                else:
                    hi = mid
            z_lo, z_hi = start + lo * d, start + hi * d
            f_z = meter.f(br.prog, z_lo[None])[0]
            if f_z > best:
                best, best_y, best_k = float(f_z), z_lo, k
            # step 4: Tuy's new vertices v - (v_i - z_i) e_i, skipping coordinates that do not move
            cut = np.flatnonzero(v - z_hi > 0)
            new = np.repeat(v[None], len(cut), axis=0)
            new[np.arange(len(cut)), cut] = z_hi[cut]
            others = np.delete(br.vertices, j, axis=0)
            # a new vertex is improper if another vertex dominates it
            new = new[~np.any(np.all(others[None, :, :] >= new[:, None, :], axis=2), axis=1)]
            f_new = meter.f(br.prog, new) if len(new) else np.empty(0)
            drop(br, j)  # only now: an early stop above leaves v in place and the bound valid
            br.vertices = np.concatenate([br.vertices, new])
            br.values = np.concatenate([br.values, f_new])
    except BudgetExhausted:
        stop = "budget"
    pruned = sum(1 for b in branches if b is not None and not len(b.values))
    branch_bounds = [-np.inf if b is None else float(max([b.values.max()] if len(b.values) else [-np.inf]))
                     for b in branches] + [np.inf] * (len(programs) - len(branches))
    return PolyblockResult(best, best_y, best_k, float(bound()), iterations, meter.count, stop, max_count,
                           pruned, empty, branch_bounds)


class Polyblock(Solver):
    name = "polyblock"
    description = "Tuy's polyblock outer approximation for monotonic programs; certifies an upper bound"
    Config = PolyblockConfig
    tasks: ClassVar[frozenset[str] | None] = frozenset({"sg-cluster", "ent-usr"})
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})

    def _block(self, prog: MonotonicProgram, ref: np.ndarray, cap: int | None, deadline: float | None) -> BlockResult:
        """Polyblock on one separable block, the reference point as first incumbent."""
        c = self.config
        res = polyblock([prog], eps=c.eps, rel_eps=c.rel_eps, bisection_tol=c.bisection_tol,
                        reduction_tol=c.reduction_tol if c.reduce else None, max_vertices=c.max_vertices,
                        max_iterations=c.max_iterations, max_evaluations=cap, deadline=deadline,
                        incumbent=(0, ref))
        return BlockResult(res.best_y, res.best, res.bound, res.evaluations,
                           {"stop": res.stop, "iterations": res.iterations})

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        structure = problem.structure()
        if structure.monotonic_blocks is not None:  # ent-usr: separable power allocation
            return solve_blocks(problem, structure.monotonic_blocks, self._block)
        programs = structure.monotonic
        if not programs:
            raise UserError("solver 'polyblock' needs a problem whose structure() offers monotonic programs "
                            "(sg-cluster problem=P2 or region, ent-usr frame problems); this problem offers none")
        remaining = problem.remaining
        if remaining is not None and remaining < 2:
            return Solution(info={"stop": "budget", "structure_evaluations": 0})
        c = self.config
        res = polyblock(programs, eps=c.eps, rel_eps=c.rel_eps, bisection_tol=c.bisection_tol,
                        reduction_tol=c.reduction_tol if c.reduce else None,
                        max_vertices=c.max_vertices, max_iterations=c.max_iterations,
                        max_evaluations=None if remaining is None else remaining - 1, deadline=problem.deadline)
        problem.charge(res.evaluations)
        info = {"stop": res.stop, "iterations": res.iterations, "structure_evaluations": res.evaluations,
                "max_vertex_count": res.max_vertex_count, "vertex_cap_hit": res.stop == "vertices",
                "branches": len(programs), "branches_empty": res.branches_empty,
                "branches_pruned": res.branches_pruned, "lower": res.best, "upper": res.bound}
        if res.best_y is None:  # proven infeasible (every branch empty) or out of budget first
            info.update(feasible_found=False, infeasible=res.stop == "infeasible")
            return Solution(info=info)
        prog = programs[res.best_branch]
        decision = prog.to_decision(res.best_y)
        info["branch"] = prog.label
        bound = res.bound if np.isfinite(res.bound) else None
        try:  # one evaluation of the problem: confirms the structure's point
            ev = problem.evaluate(decision)
        except BudgetExhausted:  # the time budget ended in the structure: the runner re-evaluates the point
            return Solution(decision=decision, bound=bound, info=info)
        info.update(verified_feasible=bool(ev.feasible), verified_objective=float(ev.objective))
        return Solution(decision=decision, bound=bound, info=info)
