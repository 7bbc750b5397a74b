"""The core contracts: spaces, problems, tasks, solvers, budgets.

Every objective is maximized. A solver never reports its own score: the runner
re-evaluates the returned decision with `Problem.evaluate` and checks feasibility.
"""
from __future__ import annotations

import inspect
import itertools
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Literal, Mapping, NamedTuple, Protocol, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .multiagent import MultiAgentEnv


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, exit code 2."""


class BudgetExhausted(Exception):
    """Raised by a budgeted problem when a solver evaluates past its budget."""


# --------------------------------------------------------------------------- space
@dataclass(frozen=True)
class Integer:
    name: str
    low: int
    high: int  # inclusive

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))

    def contains(self, v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and self.low <= v <= self.high

    def values(self, points: int | None = None) -> list[int]:
        return list(range(self.low, self.high + 1))

    def parse(self, text: str) -> int:
        return int(text)


@dataclass(frozen=True)
class Real:
    name: str
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def contains(self, v: Any) -> bool:
        return isinstance(v, (int, float, np.floating, np.integer)) and self.low <= float(v) <= self.high

    def values(self, points: int | None = 11) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, points or 11)]

    def parse(self, text: str) -> float:
        return float(text)


@dataclass(frozen=True)
class Categorical:
    name: str
    choices: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        return self.choices[int(rng.integers(len(self.choices)))]

    def contains(self, v: Any) -> bool:
        return v in self.choices

    def values(self, points: int | None = None) -> list:
        return list(self.choices)

    def parse(self, text: str) -> Any:
        for c in self.choices:
            if str(c) == text:
                return c
        raise ValueError(text)


Variable = Integer | Real | Categorical


@dataclass(frozen=True)
class Space:
    """An ordered box of typed variables; a decision is a dict name -> value."""

    variables: tuple[Variable, ...]

    def __post_init__(self):
        object.__setattr__(self, "variables", tuple(self.variables))

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def __getitem__(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def is_discrete(self) -> bool:
        return all(not isinstance(v, Real) for v in self.variables)

    def sample(self, rng: np.random.Generator) -> dict:
        return {v.name: v.sample(rng) for v in self.variables}

    def grid_size(self, real_points: int = 11) -> int:
        return math.prod(len(v.values(real_points)) for v in self.variables)

    def grid(self, real_points: int = 11) -> Iterator[dict]:
        """Every point of the discrete space (reals on `real_points` equispaced values)."""
        names = self.names
        for combo in itertools.product(*(v.values(real_points) for v in self.variables)):
            yield dict(zip(names, combo))

    def check(self, x: Mapping) -> dict:
        """Return x as a clean decision or raise UserError naming the offending variable."""
        unknown = set(x) - set(self.names)
        if unknown:
            raise UserError(f"unknown decision variable {sorted(unknown)[0]!r}; allowed: {', '.join(self.names)}")
        out = {}
        for v in self.variables:
            if v.name not in x:
                raise UserError(f"decision variable {v.name!r} is missing; required: {', '.join(self.names)}")
            val = x[v.name]
            if isinstance(val, str):
                try:
                    val = v.parse(val)
                except ValueError:
                    raise UserError(f"decision variable {v.name!r}: cannot parse {val!r} as {_describe(v)}") from None
            if isinstance(v, Integer) and isinstance(val, float) and val.is_integer():
                val = int(val)
            if not v.contains(val):
                raise UserError(f"decision variable {v.name!r}={val!r} is outside {_describe(v)}")
            out[v.name] = val.item() if isinstance(val, np.generic) else val
        return out


def _describe(v: Variable) -> str:
    if isinstance(v, Integer):
        return f"integers {v.low}..{v.high}"
    if isinstance(v, Real):
        return f"reals [{v.low}, {v.high}]"
    return f"one of {list(v.choices)}"


# ---------------------------------------------------------------------- problems
@dataclass
class Evaluation:
    """What a decision achieves. `objective` is maximized; infeasible points keep
    their objective but `feasible` is False and `violations` says by how much."""

    objective: float
    feasible: bool = True
    violations: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    objectives: tuple[float, ...] | None = None  # multi-objective problems (all maximized)

    def to_dict(self) -> dict:
        d = {"objective": self.objective, "feasible": self.feasible,
             "violations": dict(self.violations), "metrics": dict(self.metrics)}
        if self.objectives is not None:
            d["objectives"] = list(self.objectives)
        return d


class Problem(ABC):
    """One static decision problem (an instance)."""

    space: Space
    #: names of the objectives for multi-objective problems (all maximized), else None
    objective_names: tuple[str, ...] | None = None

    @abstractmethod
    def evaluate(self, x: Mapping) -> Evaluation:
        """Evaluate decision x (a dict name -> value)."""

    def structure(self, at: Mapping | None = None, options: Mapping | None = None) -> "Structure":
        """Structure a specialized solver can use (monotonic / convex programs); empty by default.
        `at`: a decision whose discrete part (e.g. a topology) fixes the structure of the continuous
        rest ("the structure of the continuous part with the discrete variables fixed at `at`"); None:
        the problem's own reference. Problems whose structure does not depend on a decision ignore it.
        `options`: problem-specific settings a solver passes on (e.g. ent-usr's {"beam": "mrt"}: the
        reference, starts and completions at true-MRT beams); a problem that takes none may omit the
        parameter (`BudgetedProblem.structure` then refuses options with a UserError)."""
        if options:
            raise UserError(f"{type(self).__name__}.structure() takes no options (got {dict(options)})")
        return Structure()


@dataclass
class MonotonicProgram:
    """Structure for monotonic optimization: max f(y) s.t. g(y) <= 0, low <= y <= high,
    with f and g increasing in every coordinate of y (so the feasible set is normal).
    `objective` and `constraint` are vectorized: y of shape (n, d) -> (n,).
    `to_decision` maps a point y back to a decision of the problem's space.
    A problem offers a list of these (one per discrete branch, e.g. per cluster size)
    as `Structure.monotonic`."""

    low: np.ndarray
    high: np.ndarray
    objective: Callable[[np.ndarray], np.ndarray]
    constraint: Callable[[np.ndarray], np.ndarray]
    to_decision: Callable[[np.ndarray], dict]
    label: str = ""


class ConvexProgram(ABC):
    """Structure for successive convex approximation (SCA): max f(x) over low <= x <= high and the
    program's convex set, through a concave cvxpy surrogate of f around an anchor x0.

    `surrogate(x)` builds, once, (concave objective, convex constraints, anchor), where
    `anchor(x0)` sets the cvxpy Parameters of the model at x0 (DPP: re-anchoring re-solves without
    recompiling) and returns how many evaluations of f it spent (finite differences; charged).
    `minorant=True` promises surrogate <= f everywhere (minorize-maximize: large steps are safe);
    otherwise the surrogate is a local model and solvers add a trust region.
    `objective` is the true f, vectorized (n, d) -> (n,), -inf outside the feasible set.
    `to_decisions(x)` maps a continuous point to the decisions worth evaluating (one, or the
    rounded-and-repaired neighbours of a relaxation). A problem offers a list of these (one per
    discrete branch) as `Structure.convex`."""

    low: np.ndarray
    high: np.ndarray
    start: np.ndarray  # a feasible point
    label: str = ""
    minorant: bool = False

    @abstractmethod
    def objective(self, x: np.ndarray) -> np.ndarray:
        """f at the rows of x (n, d); -inf where infeasible."""

    @abstractmethod
    def surrogate(self, x: Any) -> tuple[Any, list, Callable[[np.ndarray], int]]:
        """(concave cvxpy objective in x, convex cvxpy constraints, anchor setter)."""

    @abstractmethod
    def to_decisions(self, x: np.ndarray) -> list[dict]:
        """Decisions of the problem's space for the continuous point x."""


@dataclass
class SeparablePrograms:
    """Programs over disjoint blocks of variables whose objectives add up to the problem's
    objective (e.g. ent-usr's power levels per CCN / CFN): each block can be solved alone.
    `reference[k]` is block k's point in `reference_decision`; `combine(points)` maps one point per
    block back to a decision; `reference_evaluations` problem evaluations were spent choosing the
    reference (a solver charges them)."""

    programs: list  # MonotonicProgram or ConvexProgram, one per block
    reference: list[np.ndarray]
    reference_decision: dict
    combine: Callable[[list[np.ndarray]], dict]
    reference_evaluations: int = 0
    #: optional identity of each block (hashable): blocks with equal keys, also from other `at`
    #: decisions of the same problem, have the same feasible set and objectives equal up to a positive
    #: factor (so the same maximizers): a solver may reuse a block's solution (topology-search's cache)
    keys: list | None = None


@dataclass
class DiscreteSearch:
    """The discrete part of a problem's decision, for solvers that search it and optimize the
    continuous rest on `Problem.structure(at=decision)` (ent-usr: the topology, i.e. classification,
    grouping and resource split; the power levels are the convex blocks). `space` holds the search
    variables (Integer / Categorical, in a parametrization of the problem's choosing), `complete(z)`
    maps a point of it to a full decision of the problem's space (the problem's rule fills in every
    other variable), `starts` lists points worth starting a search from (e.g. the rule layouts),
    `neighbours(z)` the points a local search moves to from z (None: every single-variable change)."""

    space: "Space"
    complete: Callable[[dict], dict]
    starts: list[dict] = field(default_factory=list)
    neighbours: Callable[[dict], list[dict]] | None = None


@dataclass
class Structure:
    """What a problem offers specialized solvers (every field optional):
    `monotonic` branch programs (polyblock, convex), `convex` branch relaxations (convex), and the
    separable block forms `monotonic_blocks` (polyblock) and `convex_blocks` (convex), and the
    `discrete` part of the decision a search can enumerate (topology-search)."""

    monotonic: list[MonotonicProgram] = field(default_factory=list)
    convex: list[ConvexProgram] = field(default_factory=list)
    monotonic_blocks: SeparablePrograms | None = None
    convex_blocks: SeparablePrograms | None = None
    discrete: DiscreteSearch | None = None


class Incumbent(NamedTuple):
    objective: float
    decision: dict


class BudgetedProblem(Problem):
    """What a solver receives: the problem, with its evaluations counted against the budget.
    `evaluate` raises BudgetExhausted once the budget is spent; the best feasible point so far is
    kept (`best`), so a solver that runs out, or returns `Solution(decision=None)`, still gets a
    result. `charge(n)` counts evaluations made outside `evaluate` (e.g. of structure functions)."""

    def __init__(self, problem: Problem, budget: "Budget", clock: Callable[[], float] = time.perf_counter):
        self.inner = problem
        self.space = problem.space
        self.objective_names = problem.objective_names
        self.budget = budget
        self.evaluations = 0
        self.best: Incumbent | None = None
        self.trace: list[float] = []  # best feasible objective after each evaluation (nan until one)
        self._clock = clock
        self._start = clock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    @property
    def remaining(self) -> int | None:
        """Evaluations left (None: no evaluation budget)."""
        return None if self.budget.evaluations is None else self.budget.evaluations - self.evaluations

    @property
    def deadline(self) -> float | None:
        """The clock time (time.perf_counter) when the time budget ends (None: no time budget)."""
        return None if self.budget.seconds is None else self._start + self.budget.seconds

    @property
    def exhausted(self) -> bool:
        b = self.budget
        return ((b.evaluations is not None and self.evaluations >= b.evaluations)
                or (b.seconds is not None and self.elapsed >= b.seconds))

    def evaluate(self, x: Mapping) -> Evaluation:
        if self.exhausted:
            raise BudgetExhausted(f"budget exhausted after {self.evaluations} evaluations")
        ev = self.inner.evaluate(x)
        self.evaluations += 1
        if ev.feasible and (self.best is None or ev.objective > self.best.objective):
            self.best = Incumbent(float(ev.objective), dict(x))
        self.trace.append(self.best.objective if self.best else float("nan"))
        return ev

    def charge(self, n: int) -> None:
        """Count n evaluations made outside `evaluate` (e.g. of a solver's structure functions)."""
        if n <= 0:
            return
        self.evaluations += n
        self.trace.extend([self.best.objective if self.best else float("nan")] * n)

    def structure(self, at: Mapping | None = None, options: Mapping | None = None) -> Structure:
        if options:
            if "options" not in inspect.signature(self.inner.structure).parameters:
                raise UserError(f"{type(self.inner).__name__}.structure() takes no options (got {dict(options)})")
            return self.inner.structure(at, options=options)
        return self.inner.structure() if at is None else self.inner.structure(at)


# ------------------------------------------------------------------------ budget
@dataclass(frozen=True)
class Budget:
    evaluations: int | None = None
    seconds: float | None = None
    frames: int | None = None  # environment frames, for learning solvers

    def to_dict(self) -> dict:
        return {k: v for k, v in (("evaluations", self.evaluations), ("seconds", self.seconds),
                                  ("frames", self.frames)) if v is not None}

    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.to_dict().items()) or "unbounded"


@dataclass(frozen=True)
class Profile:
    """A benchmark protocol of a task: instances (task config overrides), the solvers
    it compares (None: every solver supporting the task), one budget per solver
    class (`budgets` by solver name, else `budget`), and the solver seeds' default (`seeds`, or
    `solver_seeds` by solver name, e.g. one seed for a deterministic solver)."""

    instances: tuple[dict, ...] = ({},)
    budget: Budget = Budget(evaluations=200)
    budgets: dict[str, Budget] = field(default_factory=dict)
    solvers: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    solver_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def budget_for(self, solver: str) -> Budget:
        return self.budgets.get(solver, self.budget)

    def seeds_for(self, solver: str) -> tuple[int, ...]:
        return self.solver_seeds.get(solver, self.seeds)


# ------------------------------------------------------------------------ config
class Config(BaseModel):
    """Base of task and solver configs: unknown keys are errors, and so are inf and nan in float
    fields (a key that accepts them says so with `Field(allow_inf_nan=True)`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TaskConfig(Config):
    instance_seed: int = Field(0, ge=0, description="seed of the instance (layouts, channels, Monte Carlo)")


def build_config(cls: type[Config], values: Mapping | None, what: str) -> Config:
    """Validate `values` against `cls`, turning pydantic errors into one UserError line."""
    try:
        return cls(**dict(values or {}))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if not key:  # a check across several keys (model validator): its message names them
            raise UserError(f"{what} config: {err['msg'].removeprefix('Value error, ')}") from None
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(cls.model_fields)
            raise UserError(f"unknown {what} config key {key!r}; "
                            + (f"allowed: {allowed}" if allowed else f"{what} has no config keys")) from None
        value = err.get("input")
        raise UserError(f"{what} config {key}={value!r}: {err['msg']}{_field_range(cls, key)}") from None


def _field_range(cls: type[Config], key: str) -> str:
    f = cls.model_fields.get(key)
    if f is None:
        return ""
    bounds = []
    for m in f.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sym} {getattr(m, attr)}")
    ann = f.annotation
    args = [a for a in get_args(ann) if a is not type(None)]
    if len(args) == 1 and len(get_args(ann)) == 2:  # X | None ("None: take it from the preset")
        ann = args[0]
    if get_origin(ann) is Literal:  # pydantic's message already lists the choices
        return ""
    name = getattr(ann, "__name__", str(ann))
    return f" (allowed: {name}{' ' + ' and '.join(bounds) if bounds else ''})"


# ------------------------------------------------------------------------- tasks
class Task(ABC):
    """A problem family. Subclasses set `name`, `Config` and implement `problem()`
    (static tasks) or the sequential interface (see `SequentialTask`)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "static"
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    default_budget: ClassVar[Budget] = Budget(evaluations=200)
    #: per-solver defaults where a solver needs another budget to do real work (e.g. polyblock)
    solver_budgets: ClassVar[dict[str, Budget]] = {}
    #: metrics shown as leaderboard columns next to the objective
    leaderboard_metrics: ClassVar[tuple[str, ...]] = ()
    #: step-indexed metrics (e.g. training curves) the leaderboard plots, mean over seeds per solver
    leaderboard_curves: ClassVar[tuple[str, ...]] = ()
    #: config keys that restrict the decision (e.g. ent-usr's topology) rather than define the
    #: instance: left out of the instance id, shown in the run's variant label like solver settings
    setting_keys: ClassVar[tuple[str, ...]] = ()
    #: the solver whose runs are the instance's oracle (e.g. ent-usr's per-frame, genie-aided
    #: `topology-search`): the leaderboard shows every solver's gap to its mean (None: no column)
    oracle: ClassVar[str | None] = None

    def __init__(self, config: Mapping | TaskConfig | None = None):
        self.config = config if isinstance(config, self.Config) else build_config(self.Config, config, f"task {self.name}")

    @classmethod
    def budget_for(cls, solver: str) -> Budget:
        """The default budget of `solver` on this task."""
        return cls.solver_budgets.get(solver, cls.default_budget)

    def problem(self) -> Problem:
        raise NotImplementedError

    @classmethod
    def profiles(cls) -> dict[str, Profile]:
        """Benchmark profiles by name ('quick', 'paper'); the default is the paper's instance."""
        return {"quick": Profile(budget=cls.default_budget), "paper": Profile(budget=cls.default_budget)}

    def figures(self) -> dict[int | str, Callable[..., list]]:
        """Paper figures by number, and the task's own figures by name -> fn(out_dir: pathlib.Path,
        progress: Callable[[float, str], None]) that writes a PNG and a CSV into out_dir and returns
        their paths (`isacbench reproduce TASK --figure NUMBER|NAME`)."""
        return {}


@dataclass
class Reporter:
    """How long-running work reports back: a progress callback (fraction done, status
    text), step-indexed metrics (streamed to MLflow), and a folder whose files the
    runner logs as artifacts (checkpoints, plots). Defaults do nothing.

    `evaluate` (set by the runner for a learning solver; None elsewhere): plays a policy on the
    task's fixed evaluation episodes (`SequentialTask.evaluation_env`), the same episodes and
    scoring as the run's final result, and returns the per-frame metric means, the objective
    metric first (e.g. ent-usr: {"usr": ..., "utility": ..., ...}). A learning solver may call it
    during training (e.g. every N updates) and log the values as `eval/<metric>` at its step. The
    episodes are fixed (no generator of the solver's is used); a stochastic policy draws from
    torch's global generator, which the solver isolates (MAPPO forks and seeds it per evaluation),
    so that training is the same with or without evaluation."""

    progress: Callable[[float, str], None] = lambda fraction, text: None
    log_metrics: Callable[[dict, int], None] = lambda metrics, step: None
    artifact_dir: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None  # the store of this run (e.g. to resume from another run's artifacts)
    evaluate: Callable[[Policy], dict[str, float]] | None = None


#: builds a batched multi-agent environment: (num_envs, seed) -> MultiAgentEnv
EnvFactory = Callable[[int, "int | None"], MultiAgentEnv]


class SequentialTask(Task):
    """Episodes of frames played by agents (e.g. ent-usr). The task declares everything a solver
    and the runner need; the runner owns the loops (`runner.execute`):

    * `make_env(num_envs, seed)`: the batched multi-agent environment (`isacbench.multiagent`),
      with its roles, stages, `frames_per_episode` and optional `reference_actions()` hint; learning
      solvers train on it (`LearningSolver.train(make_env, ...)`).
    * `evaluation_env()`: the fixed evaluation episodes, the same for every solver.
    * `objective_metric`: the per-frame metric of `end_frame` whose mean over the evaluation
      episodes is the run's objective (every other per-frame metric is averaged too).
    * optionally `frame_problems(env)` and `apply_frame_decisions(env, problems, decisions)`: the
      static problem of the current frame in each environment, so that per-frame optimizers act as
      centralized, genie-aided solvers through the same checks as static problems."""

    kind: ClassVar[str] = "sequential"
    objective_metric: ClassVar[str]

    @abstractmethod
    def make_env(self, num_envs: int, seed: int | None = None) -> MultiAgentEnv:
        """A batched environment of `num_envs` episodes on this instance."""

    @abstractmethod
    def evaluation_env(self) -> MultiAgentEnv:
        """The fixed evaluation episodes (already reset), shared by all solvers."""

    def frame_problems(self, env: MultiAgentEnv) -> list[Problem]:
        """The current frame's static problem of every environment of the batch."""
        raise NotImplementedError(f"task {self.name!r} offers no frame problems")

    def apply_frame_decisions(self, env: MultiAgentEnv, problems: list[Problem], decisions: list[dict]) -> None:
        """Play the current frame with one decision per environment (all stages at once)."""
        raise NotImplementedError(f"task {self.name!r} offers no frame problems")

    @classmethod
    def offers_frame_problems(cls) -> bool:
        return cls.frame_problems is not SequentialTask.frame_problems


# ----------------------------------------------------------------------- solvers
@dataclass
class Solution:
    """A solver's answer. `decision=None`: the runner takes the best feasible point evaluated."""

    decision: dict | None = None
    bound: float | None = None  # certified upper bound on the optimum, if the solver proves one
    info: dict[str, Any] = field(default_factory=dict)


class Solver(ABC):
    """Subclasses set `name`, optionally `Config`, `tasks` (None = any) and `kinds`
    ('static' problems; 'sequential': acts per frame on a sequential task's frame problems)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[Config]] = Config
    tasks: ClassVar[frozenset[str] | None] = None
    kinds: ClassVar[frozenset[str]] = frozenset({"static"})

    #: config keys that do not change what the solver computes (left out of its variant label)
    operational_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Mapping | Config | None = None):
        self.config = config if isinstance(config, self.Config) else build_config(self.Config, config, f"solver {self.name}")

    def settings(self) -> dict:
        """The solver's non-default settings that change what it computes (its variant)."""
        default = self.Config().model_dump(mode="json")
        return {k: v for k, v in self.config.model_dump(mode="json").items()
                if v != default.get(k) and k not in self.operational_keys}

    @property
    def variant(self) -> str:
        """The solver's name with its non-default settings, e.g. `optuna[sampler=cmaes]`:
        leaderboards and sweeps compare variants, not bare names."""
        return variant_label(self.name, self.settings())

    @classmethod
    def supports(cls, task: type[Task]) -> bool:
        if not (cls.tasks is None or task.name in cls.tasks) or task.kind not in cls.kinds:
            return False
        return task.kind != "sequential" or issubclass(cls, LearningSolver) or task.offers_frame_problems()

    def check(self, task: Task, budget: Budget, tracking_uri: str | None = None) -> None:
        """Raise UserError for a run this solver cannot do (e.g. a budget below its minimum, a device
        that is missing, a resume source that does not exist). `runner.prepare` calls it before the
        run is recorded; `tracking_uri` is the run's store (`Reporter.tracking_uri`). Default: none."""

    @abstractmethod
    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        """Return the best decision found within `budget` (or None: the best evaluated)."""


def variant_label(name: str, settings: Mapping[str, Any]) -> str:
    """'mappo' + {'lr': 0.001} -> 'mappo[lr=0.001]' (settings sorted)."""
    return name + ("[" + ",".join(f"{k}={v}" for k, v in sorted(settings.items())) + "]" if settings else "")


class Policy(Protocol):
    """A trained decentralized policy: each role acts on its own observations."""

    def act(self, role: str, obs: np.ndarray) -> dict[str, np.ndarray]:
        """obs (B, n_agents, obs_dim) -> head name -> (B, n_agents, size)."""


class LearningSolver(Solver):
    """A solver that learns a decentralized policy on a sequential task's batched environment.
    The runner calls `train`, then plays the returned policy on the task's evaluation episodes."""

    kinds: ClassVar[frozenset[str]] = frozenset({"sequential"})

    @abstractmethod
    def train(self, make_env: EnvFactory, budget: Budget, rng: np.random.Generator, reporter: Reporter) -> Policy:
        """Train within `budget` (frames and/or seconds) and return the policy. `make_env(num_envs,
        seed)` builds training environments; `reporter` takes progress, step-indexed metrics and
        checkpoint files (`reporter.artifact_dir`)."""

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        raise UserError(f"solver {self.name!r} learns a policy; it has no static solve")
