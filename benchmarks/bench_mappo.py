"""MAPPO training throughput on ent-usr and where the time goes.

One short training run (default preset, CPU, 1 torch thread as the solver's config sets) with
timers around: every environment method (reset, observe, state, act, end_frame: the env's share),
the rollout collection (env + policy inference + bookkeeping), and the learner (advantage
preparation + PPO epochs). Frames/s = environment frames trained / wall time of `train`.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import ExitStack
from functools import wraps
from unittest import mock

import torch

from isacbench.api import Budget, Reporter
from isacbench.runner import solver_rng
from isacbench.solvers.mappo import solver as mappo_solver
from isacbench.tasks.ent_usr import EntUsrTask

from .common import Section

SIZES = {"tiny": dict(num_envs=2, updates=1), "quick": dict(num_envs=8, updates=2),
         "full": dict(num_envs=16, updates=4)}
ENV_METHODS = ("reset", "observe", "state", "act", "end_frame")


def _timed(fn, totals: dict, key: str):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
    return wrapper


def profile_training(num_envs: int, updates: int, seed: int = 0, device: str = "cpu") -> dict[str, float]:
    """Train MAPPO for `updates` rollouts of num_envs episodes; seconds per phase and frames."""
    totals: dict[str, float] = defaultdict(float)
    task = EntUsrTask()
    make_env = task.make_env

    def instrumented_env(*args, **kwargs):
        env = make_env(*args, **kwargs)
        for name in ENV_METHODS:  # instance attributes shadow the class methods of this env only
            setattr(env, name, _timed(getattr(env, name), totals, "env"))
        return env

    solver = mappo_solver.MAPPO({"num_envs": num_envs, "device": device})
    budget = Budget(frames=updates * num_envs * task.params.frames)
    with ExitStack() as stack:
        for name, key in (("collect", "rollout"), ("prepare", "learner"), ("update", "learner")):
            stack.enter_context(mock.patch.object(mappo_solver, name,
                                                  _timed(getattr(mappo_solver, name), totals, key)))
        start = time.perf_counter()
        solver.train(instrumented_env, budget, solver_rng(seed), Reporter())
        totals["total"] = time.perf_counter() - start
    totals["frames"] = float(solver.frames)
    return dict(totals)


def run(scale: str = "full") -> Section:
    cfg = SIZES[scale]
    sec = Section("mappo")
    t = profile_training(cfg["num_envs"], cfg["updates"])
    total, env = t["total"], t["env"]
    policy = t["rollout"] - env  # actor forward passes, sampling, buffer writes inside collect()
    learner = t["learner"]
    other = total - t["rollout"] - learner  # env construction, networks, checkpoints, bookkeeping
    fps = t["frames"] / total
    sec.figure("MAPPO training frames/s (CPU)", fps, "frames/s",
               f"{t['frames']:.0f} frames in {total:.2f} s ({cfg['updates']} updates x {cfg['num_envs']} envs)")
    sec.figure("MAPPO time share: environment", env / total, "fraction", f"{env:.2f} s of {total:.2f} s")
    sec.figure("MAPPO time share: learner (advantages + PPO epochs)", learner / total, "fraction",
               f"{learner:.2f} s of {total:.2f} s")
    sec.lines += [f"Default preset, device cpu, {cfg['updates']} updates x {cfg['num_envs']} envs x "
                  f"{EntUsrTask().params.frames} frames = {t['frames']:.0f} frames in {total:.2f} s: "
                  f"**{fps:.1f} frames/s**.", "",
                  "| phase | seconds | share |", "|---|---|---|"]
    for name, sec_s in (("environment (reset/observe/state/act/end_frame)", env),
                        ("policy inference in rollouts (actors, sampling, buffers)", policy),
                        ("learner (advantages + PPO epochs)", learner),
                        ("other (env/network construction, bookkeeping)", other)):
        sec.lines.append(f"| {name} | {sec_s:.2f} | {sec_s / total:.1%} |")
    if torch.cuda.is_available():  # learner on the GPU; the environment stays numpy on the CPU
        g = profile_training(cfg["num_envs"], cfg["updates"], device="cuda")
        sec.figure("MAPPO training frames/s (CUDA learner)", g["frames"] / g["total"], "frames/s",
                   f"{torch.cuda.get_device_name(0)}; environment share {g['env'] / g['total']:.1%}")
    else:
        sec.lines.append("\nNo GPU on this machine: the CUDA learner is not measured.")
    return sec
