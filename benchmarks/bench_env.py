"""ent-usr batched environment: frames/s of one batched env vs a loop over B single envs,
and how the step time grows with the number of cells M.

Both sides play the same policy (uniform random actions drawn per head from each role's
action spec: bernoulli {0,1}, categorical {0..classes-1}, continuous [low, high]) and do the
same work per frame: observe every acting role, act stage by stage, end the frame (resetting
when the episode ends). Frames/s counts environment frames (B per batched step).
"""
from __future__ import annotations

import cProfile
import pstats
import time

import numpy as np

from isacbench.tasks.ent_usr import EntUsrTask

from .common import Section, fit_exponent

SIZES = {  # batches, frames timed per batch, loop envs, loop frames, cells M, batch for the M sweep, M-sweep frames
    "tiny": dict(batches=(1, 4), frames=2, loop_envs=2, loop_frames=2, cells=(1, 4), m_batch=1, m_frames=1),
    "quick": dict(batches=(1, 64, 1024), frames=1, loop_envs=4, loop_frames=3, cells=(4, 9, 16), m_batch=2,
                  m_frames=1),
    "full": dict(batches=(1, 64, 1024), frames=4, loop_envs=16, loop_frames=6, cells=(4, 9, 16, 36), m_batch=4,
                 m_frames=3),
}
TARGET_1024 = 50.0


def random_actions(env, role: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Uniform random action of every head of `role`, shaped (B, n_agents, size)."""
    return env.roles[role].sample(env.num_envs, rng)


def play_frame(env, rng: np.random.Generator, seed: int) -> None:
    """One frame under the random policy; a finished episode is reset (part of the env's cost)."""
    for stage in env.stages:
        acts = {}
        for role in stage:
            env.observe(role)
            acts[role] = random_actions(env, role, rng)
        env.act(acts)
    _, done, _ = env.end_frame()
    if done.all():
        env.reset(seed)


def batched_fps(task: EntUsrTask, batch: int, frames: int, seed: int = 0) -> tuple[float, float]:
    """(frames/s, seconds per batched step) of one env with `batch` parallel environments."""
    env = task.make_env(batch, seed)
    rng = np.random.default_rng(seed)
    play_frame(env, rng, seed)  # warm-up (first-touch allocations)
    start = time.perf_counter()
    for _ in range(frames):
        play_frame(env, rng, seed)
    elapsed = time.perf_counter() - start
    return batch * frames / elapsed, elapsed / frames


def loop_fps(task: EntUsrTask, n_envs: int, frames: int, seed: int = 0) -> float:
    """Frames/s of a Python loop over n_envs single environments (batch 1 each). Their cost is
    linear in the number of envs (independent envs), so this rate holds for any B."""
    envs = [task.make_env(1, seed + i) for i in range(n_envs)]
    rng = np.random.default_rng(seed)
    for i, env in enumerate(envs):
        play_frame(env, rng, seed + i)
    start = time.perf_counter()
    for _ in range(frames):
        for i, env in enumerate(envs):
            play_frame(env, rng, seed + i)
    return n_envs * frames / (time.perf_counter() - start)


def profile_step(task: EntUsrTask, batch: int, top: int = 6, seed: int = 0) -> tuple[float, list[tuple[str, float]]]:
    """cProfile of one batched frame: (total seconds, [(function, own seconds)] largest first)."""
    env = task.make_env(batch, seed)
    rng = np.random.default_rng(seed)
    play_frame(env, rng, seed)
    prof = cProfile.Profile()
    prof.runcall(play_frame, env, rng, seed)
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (calls, prim, own time, cumulative, callers)
    rows = sorted(((f"{k[0].rsplit('/', 1)[-1]}:{k[2]}", v[2]) for k, v in stats.items()), key=lambda r: -r[1])
    return sum(v[2] for v in stats.values()), rows[:top]


def run(scale: str = "full") -> Section:
    cfg = SIZES[scale]
    sec = Section("env")
    task = EntUsrTask()
    loop = loop_fps(task, cfg["loop_envs"], cfg["loop_frames"])
    sec.lines.append(f"ent-usr default instance (M={task.params.M}, R={task.params.R}, A={task.params.A}, "
                     f"K={task.params.K}, Q={task.params.Q}, N={task.params.N}); random policy; numpy on CPU.")
    sec.lines.append(f"Per-environment loop baseline: {cfg['loop_envs']} envs of batch 1 x {cfg['loop_frames']} "
                     f"frames = {loop:.1f} frames/s.")
    sec.lines += ["", "| batch B | batched frames/s | loop frames/s | speed-up | s per batched step |",
                  "|---|---|---|---|---|"]
    for b in cfg["batches"]:
        fps, step = batched_fps(task, b, cfg["frames"])
        target = TARGET_1024 if b == 1024 else None
        r = sec.ratio(f"batched vs per-env loop, B={b}", 1.0 / loop, 1.0 / fps, target,
                      f"{fps:.1f} vs {loop:.1f} frames/s ({cfg['frames']} batched steps)")
        sec.lines.append(f"| {b} | {fps:.1f} | {loop:.1f} | {r.value:.2f}x | {step:.4f} |")
    big = max(cfg["batches"])
    total, rows = profile_step(task, big)
    sec.lines += ["", f"Where one batched frame at B={big} spends its time (cProfile, own time; total {total:.3f} s, "
                  f"i.e. {total / big * 1e3:.3f} ms per environment-frame vs {1e3 / loop:.3f} ms per frame in the "
                  "loop): " + ", ".join(f"{name} {t / total:.0%}" for name, t in rows) + "."]
    steps, per_env = [], []
    for m in cfg["cells"]:
        _, step = batched_fps(EntUsrTask({"M": m, "R": min(2, m)}), cfg["m_batch"], cfg["m_frames"])
        steps.append(step)
        per_env.append(step / cfg["m_batch"])
    expo = fit_exponent(cfg["cells"], per_env)
    sec.figure("step time exponent in M (time ~ M^k)", expo, "k",
               f"M={list(cfg['cells'])}, B={cfg['m_batch']}: "
               + ", ".join(f"{s * 1e3:.1f} ms" for s in steps) + " per batched step")
    sec.lines += ["", f"Step time vs cells M (B={cfg['m_batch']}, R=2, other parameters default): "
                  + ", ".join(f"M={m}: {s * 1e3:.1f} ms" for m, s in zip(cfg["cells"], steps))
                  + f"; fitted exponent k = {expo:.2f} (time ~ M^k). The channel tensors are "
                  "(B, M A, M K, M, N), i.e. they grow as M^3."]
    sec.lines.append("\nGPU: the ent-usr environment has no torch backend (numpy only) and this machine has no "
                     "GPU, so the CUDA-vs-CPU comparison is not measured.")
    return sec
