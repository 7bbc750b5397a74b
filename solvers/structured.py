"""Machinery shared by the structured solvers (`polyblock`, `convex`): the meter of structure
evaluations and the separable block programs (`Structure.monotonic_blocks` / `.convex_blocks`).

Evaluation accounting: every point passed to a program's objective f or constraint g counts one
evaluation (a `ConvexProgram`'s anchor reports its own), charged to the runner's budgeted problem
with `BudgetedProblem.charge`, plus every `problem.evaluate`. A meter stops a solver at its cap or
deadline by raising `BudgetExhausted`, like the budgeted problem itself.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from isacbench.api import BudgetedProblem, BudgetExhausted, ConvexProgram, MonotonicProgram, SeparablePrograms, Solution


class Meter:
    """Counts evaluations of structure functions (one per point) against a cap and a deadline
    (`time.perf_counter` time); a charge past either raises BudgetExhausted, uncounted."""

    def __init__(self, cap: int | None = None, deadline: float | None = None):
        self.cap, self.deadline, self.count = cap, deadline, 0

    def charge(self, n: int) -> None:
        if (self.cap is not None and self.count + n > self.cap) or (
                self.deadline is not None and time.perf_counter() >= self.deadline):
            raise BudgetExhausted(f"structure evaluations: cap or deadline reached after {self.count}")
        self.count += n

    def f(self, prog: MonotonicProgram | ConvexProgram, y: np.ndarray) -> np.ndarray:
        self.charge(len(y))
        return checked(prog.objective(y), prog, y, "objective")

    def g(self, prog: MonotonicProgram, y: np.ndarray) -> np.ndarray:
        self.charge(len(y))
        return checked(prog.constraint(y), prog, y, "constraint")


def checked(values, prog: MonotonicProgram | ConvexProgram, y: np.ndarray, what: str) -> np.ndarray:
    """Values of a structure function at the rows of y as floats; NaN is an error (read as infeasible,
    it could cut feasible points off)."""
    out = np.asarray(values, dtype=float).reshape(len(y))
    if np.isnan(out).any():
        raise ValueError(f"program {prog.label!r}: {what} returned NaN at {y[np.isnan(out)][0]}")
    return out


@dataclass
class BlockResult:
    y: np.ndarray  # the block's point
    value: float  # f(y)
    bound: float  # upper bound of the block program (inf: none)
    evaluations: int
    info: dict


#: (program, reference point, evaluation cap, deadline) -> the block's result
BlockSolver = Callable[[MonotonicProgram | ConvexProgram, np.ndarray, "int | None", "float | None"], BlockResult]


def solve_blocks(problem: BudgetedProblem, blocks: SeparablePrograms, block_solver: BlockSolver) -> Solution:
    """Separable programs (e.g. ent-usr's CCN / CFN power blocks, `tasks/ent_usr/power.py`): the
    objective is the sum of the blocks' objectives, so each block is solved alone, the remaining
    evaluations and time split evenly over the blocks still to solve (blocks get 90 % of the time:
    the final evaluation must fit). The reference decision is evaluated first (the incumbent, kept by
    the runner if the time runs out); each block starts from its reference point (one f evaluation)
    and keeps it when the solver finds nothing better. The program value and bound are the sums over
    the blocks (`info`); they hold for the blocks' fixed part of the decision only (ent-usr: topology
    and beams), so no `Solution.bound` is claimed. Finally the program's decision is evaluated and
    the better of it and the reference kept."""
    problem.charge(blocks.reference_evaluations)
    ev_ref = problem.evaluate(blocks.reference_decision)
    n = len(blocks.programs)
    remaining = None if problem.remaining is None else problem.remaining - 1 - n
    start = time.perf_counter()
    seconds = None if problem.deadline is None else 0.9 * max(problem.deadline - start, 0.0)
    ys, value, bound, used, per_block = [], 0.0, 0.0, n, []
    for k, (prog, ref) in enumerate(zip(blocks.programs, blocks.reference)):
        f_ref = float(prog.objective(ref[None])[0])
        cap = None if remaining is None else max(remaining // (n - k), 0)
        deadline = None if seconds is None else start + seconds * (k + 1) / n
        res = block_solver(prog, ref, cap, deadline)
        if remaining is not None:
            remaining -= res.evaluations
        used += res.evaluations
        y, val = (res.y, res.value) if res.value > f_ref else (ref, f_ref)
        ys.append(y)
        value, bound = value + val, bound + max(res.bound, val)
        per_block.append({"block": prog.label, "value": val, "bound": res.bound, "evaluations": res.evaluations,
                          **res.info})
    problem.charge(used)
    decision = blocks.combine(ys)
    info = {"program_value": value, "program_bound": bound if np.isfinite(bound) else None,
            "structure_evaluations": used, "blocks": per_block, "reference_objective": float(ev_ref.objective)}
    try:
        ev = problem.evaluate(decision)
    except BudgetExhausted:  # the time ran out in the last block: the runner keeps the reference
        return Solution(decision=None, info={**info, "kept": "reference"})
    info["verified_objective"] = float(ev.objective)
    keep = ev.feasible and (not ev_ref.feasible or ev.objective >= ev_ref.objective)
    info["kept"] = "program" if keep else "reference"
    return Solution(decision=decision if keep else dict(blocks.reference_decision), info=info)
