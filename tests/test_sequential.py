"""The declared multi-frame contract, on the toy task `toy_frames:ChannelTask` (no ent-usr code):
the runner plays the fixed evaluation episodes for learning solvers (MAPPO, IPPO, HAPPO) and per-frame
optimizers alike, through the CLI as a user would."""
import itertools
import json

import numpy as np
import pytest

from conftest import cli
from isacbench import episodes, registry
from isacbench.api import Budget, Solution, Solver
from isacbench.runner import RunSpec, run
from toy_frames import ChannelTask, sum_rate

TASK = "toy_frames:ChannelTask"


def run_json(args, cwd) -> dict:
    p = cli(["run", "--task", TASK, *args, "--json"], cwd)
    assert p.returncode == 0, p.stderr
    (result,) = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    return result


class UniformPolicy:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def act(self, role, obs):
        b, n, c = obs.shape
        return {"channel": self.rng.integers(0, c, (b, n, 1)), "power": self.rng.uniform(size=(b, n, 1))}


def grid_optimum(task: ChannelTask, powers: np.ndarray) -> float:
    """Mean over the evaluation episodes' frames of each frame's best (channels, powers on a grid),
    enumerated here with numpy, independently of any solver."""
    env = task.evaluation_env()
    n, c = task.config.users, task.config.channels
    combos = [(ch, pw) for ch in itertools.product(range(c), repeat=n) for pw in itertools.product(powers, repeat=n)]
    channel = np.array([ch for ch, _ in combos])
    power = np.array([pw for _, pw in combos])
    best = []
    for _ in range(env.frames_per_episode):
        for g in env.gains:
            best.append(sum_rate(np.broadcast_to(g, (len(combos), n, c)), channel, power, task.config.noise).max())
        env.act({"user": {"channel": np.zeros((env.num_envs, n, 1), int), "power": np.ones((env.num_envs, n, 1))}})
        env.end_frame()
    return float(np.mean(best))


def test_per_frame_exhaustive_reaches_every_frames_grid_optimum(tmp_path):
    result = run_json(["--solver", "exhaustive", "-c", "users=2", "-S", "real_points=5", "--budget-evals", "100"],
                      tmp_path)
    task = ChannelTask({"users": 2})
    assert result["objective"] == pytest.approx(grid_optimum(task, np.linspace(0, 1, 5)), rel=1e-12)
    # 4 episodes x 4 frames, 2^2 channel choices x 5^2 power levels each
    assert result["evaluations"] == 16 * 100
    assert result["metrics"]["infeasible_frames"] == 0
    assert result["decision"]["episodes"] == 4 and result["decision"]["frames_per_episode"] == 4


class OwnBestChannel:
    """The obvious decentralized rule: each user takes its strongest channel at full power."""

    def act(self, role, obs):
        return {"channel": obs.argmax(-1)[..., None], "power": np.ones(obs.shape[:2] + (1,))}


@pytest.mark.parametrize("solver, frames", [("mappo", 1920), ("ippo", 1920), ("happo", 3840)])
def test_mappo_learns_on_a_task_it_has_never_heard_of(tmp_path, solver, frames):
    """mappo (default preset: mean baseline), ippo (local critics) and happo (V(s), sequential updates),
    default configs. happo's critic advantage (lambda 0.5) needs 60 updates here: 4.23 at 30 (measured)."""
    result = run_json(["--solver", solver, "--budget-frames", str(frames), "-S", "num_envs=16"], tmp_path)
    uniform = episodes.play_policy(ChannelTask(), UniformPolicy(0)).evaluation.objective
    own_best = episodes.play_policy(ChannelTask(), OwnBestChannel()).evaluation.objective
    genie = grid_optimum(ChannelTask(), np.array([0.0, 1.0]))  # centralized: channels and on/off powers
    assert result["feasible"] and result["metrics"]["sum_rate"] == result["objective"]
    # it learns to avoid collisions, which the local rule cannot: above it, below the genie
    assert uniform < own_best < result["objective"] < genie


class NoDecision(Solver):
    """Evaluates three points and returns no decision: the runner takes the best of them."""
    name = "no-decision"
    kinds = frozenset({"static", "sequential"})

    def solve(self, problem, budget, rng):
        for _ in range(3):
            problem.evaluate(problem.space.sample(rng))
        return Solution(decision=None)


def test_a_solver_may_return_no_decision_per_frame():
    task, solver = ChannelTask(), NoDecision()
    done = run(RunSpec(TASK, "test_sequential:NoDecision", 0, budget=Budget(evaluations=3)))
    # replay: the same three samples per frame problem, best kept
    rng = np.random.default_rng(np.random.SeedSequence(0))
    env, best = task.evaluation_env(), []
    for _ in range(env.frames_per_episode):
        problems = task.frame_problems(env)
        decisions = []
        for p in problems:
            xs = [p.space.sample(rng) for _ in range(3)]
            decisions.append(max(xs, key=lambda x: p.evaluate(x).objective))
            best.append(p.evaluate(decisions[-1]).objective)
        task.apply_frame_decisions(env, problems, decisions)
        env.end_frame()
    assert done.objective == pytest.approx(np.mean(best), rel=1e-12)
    assert done.evaluations == 16 * 3
    assert solver.supports(ChannelTask)


def test_unsupported_pairs_are_refused_with_one_line(tmp_path):
    p = cli(["run", "--task", TASK, "--solver", "polyblock"], tmp_path)
    assert p.returncode == 2 and "does not support task 'toy-channels'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert registry.load("solver", "mappo").supports(ChannelTask)
