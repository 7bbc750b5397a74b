"""ent-usr batched environment: frames/s of one batched env vs a loop over B single envs,
and how the step time grows with the number of cells M.

Both sides play the same policy (uniform random actions drawn per head from each role's
action spec: bernoulli {0,1}, categorical {0..classes-1}, continuous [low, high]) and do the
same work per frame: observe every acting role, act stage by stage, end the frame (resetting
when the episode ends). Frames/s counts environment frames (B per batched step).

Everything runs on one core (BLAS limited to one thread), and the environment is compared with its
one-core ceiling: the time one frame's irreducible work takes at the machine's measured one-core
rates (normal draws/s, flop/s of a single-precision matrix product, memory bytes/s), with the work
counted from the instance's sizes (`frame_work`).
"""
from __future__ import annotations

import cProfile
import pstats
import time

import numpy as np
from threadpoolctl import threadpool_limits

from isacbench.tasks.ent_usr import EntUsrTask

from .common import Section, best_time, fit_exponent

SIZES = {  # batches, frames timed per batch, loop envs, loop frames, cells M, batch for the M sweep, M-sweep frames,
    # elements of the machine-rate measurements
    "tiny": dict(batches=(1, 4), frames=2, loop_envs=2, loop_frames=2, cells=(1, 4), m_coefs=3_000, m_frames=1,
                 rate_n=1 << 16),
    "quick": dict(batches=(1, 64, 1024), frames=1, loop_envs=4, loop_frames=3, cells=(4, 9, 16), m_coefs=400_000,
                  m_frames=1, rate_n=1 << 22),
    "full": dict(batches=(1, 64, 1024), frames=4, loop_envs=16, loop_frames=6, cells=(4, 9, 16, 36),
                 m_coefs=3_000_000, m_frames=3, rate_n=1 << 23),
}  # M sweep: the batch holds about m_coefs channel coefficients (at least 1 environment), so that fixed
#    per-step costs weigh the same at every M
TARGET_CEILING = 0.5  # env frames/s >= half of the one-core ceiling at the largest batch


def frame_work(p) -> dict[str, dict[str, float]]:
    """Irreducible work of one environment-frame of instance `p`, itemized: normal draws (float32 and
    float64), floating-point operations, and compulsory memory traffic in bytes. C = MA MK M N complex
    channel coefficients, L = n_angles. A complex multiply-add counts 8 flops. Only the work the
    equations require is counted (Python, indexing, temporaries and the small per-target algebra are
    not), so the ceiling is generous."""
    c = p.MA * p.MK * p.M * p.N
    n_ang = p.n_angles
    draws32 = {"channel innovation eps (eq. 1), 2 per coefficient": 2 * c,
               "pilot noise (eq. 19), 2 per coefficient": 2 * c}
    draws64 = {"target motion (eq. 4)": 4 * p.MQ, "measurement draws of the Kalman update (eq. 35)": 4 * p.MQ}
    flops = {
        "Gauss-Markov update h = rho h' + s eps (eq. 1)": 8 * c,
        "MMSE estimate, three scaled terms (eq. 19-22)": 10 * c,
        "codebook MRT gains (abs h^H v_l)^2, all (a, k, i), L angles (resolve_mrt)":
            c * 8 * n_ang + 3 * c // p.N * n_ang,
        "MRT sum over the CFN's subbands": p.MA * p.MK * n_ang * 2 * p.M,
        "F-regime coherent phases and beams (eq. 67b)": 16 * c,
        "F-regime gains h^H w per subband (eq. 24)": 8 * c * p.MK,
        "L-regime gains per cell (eq. 24)": 8 * p.M * p.K * p.A * p.N * p.K,
        "sensing codebook gains (eq. 32)": 8 * p.MA * p.MQ * p.N * n_ang,
    }
    memory = {"read h[n-1] and write h[n] once (complex64)": 2 * 8 * c}
    return {"draws32": draws32, "draws64": draws64, "flops": flops, "bytes": memory}


def machine_rates(n: int) -> dict[str, float]:
    """One-core rates of this machine, measured now (best of 3): float32 and float64 standard normal
    draws/s (numpy's Generator, the sampler the environment uses), flop/s of a float32 matrix
    product (256 x 256 x 256), and memory bytes/s of a copy of n float32 (read + write)."""
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        f32, f64 = np.empty(n, np.float32), np.empty(n, np.float64)
        t32 = best_time(lambda: rng.standard_normal(dtype=np.float32, out=f32), 3)
        t64 = best_time(lambda: rng.standard_normal(dtype=np.float64, out=f64), 3)
        a = rng.standard_normal((256, 256), dtype=np.float32)
        tmm = best_time(lambda: a @ a, 3, min_time=0.05)
        src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
        tcp = best_time(lambda: np.copyto(dst, src), 3)
    return {"draws32": n / t32, "draws64": n / t64, "flops": 2 * 256**3 / tmm, "bytes": 2 * 4 * n / tcp}


def ceiling_seconds(work: dict, rates: dict) -> dict[str, float]:
    """Seconds per environment-frame of each kind of work at the machine's rate (run one after another,
    as numpy runs its kernels), and their sum."""
    parts = {k: sum(work[k].values()) / rates[k] for k in ("draws32", "draws64", "flops", "bytes")}
    return {**parts, "total": sum(parts.values())}


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


def batched_fps(task: EntUsrTask, batch: int, frames: int, seed: int = 0) -> tuple[float, float, float]:
    """(frames/s, mean and smallest seconds per batched step) of one env with `batch` parallel
    environments. The smallest step is the estimator of the ceiling's rates (`best_time`): the
    least disturbed by other processes on a shared machine."""
    env = task.make_env(batch, seed)
    rng = np.random.default_rng(seed)
    play_frame(env, rng, seed)  # warm-up (first-touch allocations)
    steps = []
    for _ in range(frames):
        start = time.perf_counter()
        play_frame(env, rng, seed)
        steps.append(time.perf_counter() - start)
    return batch * frames / sum(steps), sum(steps) / frames, min(steps)


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
    with threadpool_limits(1):  # the one-core figures: BLAS on one thread as well
        return _run(scale)


def _run(scale: str) -> Section:
    cfg = SIZES[scale]
    sec = Section("env")
    task = EntUsrTask()
    p = task.params
    loop = loop_fps(task, cfg["loop_envs"], cfg["loop_frames"])
    sec.lines.append(f"ent-usr default instance (M={p.M}, R={p.R}, A={p.A}, K={p.K}, Q={p.Q}, N={p.N}, "
                     f"{p.n_angles} codebook angles); random policy; numpy on one CPU core (BLAS on one thread).")
    sec.lines.append(f"Per-environment loop baseline: {cfg['loop_envs']} envs of batch 1 x {cfg['loop_frames']} "
                     f"frames = {loop:.1f} frames/s.")
    rows, fps_at, best_at = [], {}, {}
    for b in cfg["batches"]:
        fps, step, best_at[b] = batched_fps(task, b, cfg["frames"])
        fps_at[b] = fps
        r = sec.ratio(f"batched vs per-env loop, B={b}", 1.0 / loop, 1.0 / fps, None,
                      f"{fps:.1f} vs {loop:.1f} frames/s ({cfg['frames']} batched steps)")
        rows.append(f"| {b} | {fps:.1f} | {loop:.1f} | {r.value:.2f}x | {step:.4f} |")
    big = max(cfg["batches"])

    # ---- the one-core ceiling of a frame, from its counted work and this machine's measured rates
    work, rates = frame_work(p), machine_rates(cfg["rate_n"])
    ceil = ceiling_seconds(work, rates)
    measured = best_at[big] / big  # best batched step, as the ceiling's rates are best-of (`best_time`)
    sec.fraction(f"env fraction of one-core ceiling, B={big}", ceil["total"], measured, TARGET_CEILING,
                 f"ceiling {ceil['total'] * 1e6:.1f} us vs measured {measured * 1e6:.1f} us per environment-frame "
                 f"(best of {cfg['frames']} batched steps; mean {1e6 / fps_at[big]:.1f} us; "
                 f"{1 / measured:.0f} frames/s vs ceiling {1 / ceil['total']:.0f} frames/s)")
    sec.lines += ["", "### One-core ceiling of a frame", "",
                  f"Work of one environment-frame of the default instance (C = MA MK M N = {p.MA * p.MK * p.M * p.N} "
                  f"complex channel coefficients, L = {p.n_angles} angles), counted from the instance's sizes "
                  "(benchmarks/bench_env.py:frame_work):", "",
                  "| work | count | rate measured in this run (one core) | seconds per env-frame |",
                  "|---|---|---|---|"]
    units = {"draws32": ("float32 normal draws", "draws/s"), "draws64": ("float64 normal draws", "draws/s"),
             "flops": ("flops", "flop/s (float32 256^3 matrix product)"), "bytes": ("bytes", "bytes/s (copy)")}
    for kind, items in work.items():
        for what, n in items.items():
            sec.lines.append(f"| {what} | {n:,.0f} {units[kind][0]} | | |")
        sec.lines.append(f"| **total {units[kind][0]}** | {sum(items.values()):,.0f} | {rates[kind]:.3g} "
                         f"{units[kind][1]} | {ceil[kind] * 1e6:.1f} us |")
    sec.lines += ["", f"Ceiling: {ceil['total'] * 1e6:.1f} us per environment-frame (the four kinds of work one after "
                  f"another, as numpy runs them) = {1 / ceil['total']:.0f} frames/s. Measured at B={big} (best batched "
                  f"step, the same estimator as the rates): {measured * 1e6:.1f} us = {1 / measured:.0f} frames/s, "
                  f"i.e. {ceil['total'] / measured:.2f} of the "
                  f"ceiling (target >= {TARGET_CEILING}). The draws use numpy's Generator.standard_normal (the "
                  "environment's random stream); a faster sampler would lower the ceiling but change every "
                  "channel and leaderboard number.", ""]
    sec.lines += ["| batch B | batched frames/s | loop frames/s | speed-up | s per batched step |",
                  "|---|---|---|---|---|"] + rows
    total, prof = profile_step(task, big)
    sec.lines += ["", f"Where one batched frame at B={big} spends its time (cProfile, own time; total {total:.3f} s, "
                  f"i.e. {total / big * 1e3:.3f} ms per environment-frame vs {1e3 / loop:.3f} ms per frame in the "
                  "loop): " + ", ".join(f"{name} {t / total:.0%}" for name, t in prof) + "."]

    # ---- cost per channel coefficient as the number of cells grows (should stay flat)
    per_env, per_coef, batch_m, gain_share = [], [], [], []
    for m in cfg["cells"]:
        tm = EntUsrTask({"M": m, "R": min(2, m)})
        pm = tm.params
        coefs = pm.MA * pm.MK * pm.M * pm.N
        b = max(1, round(cfg["m_coefs"] / coefs))
        _, step, _ = batched_fps(tm, b, cfg["m_frames"])
        batch_m.append(b)
        per_env.append(step / b)
        per_coef.append(step / b / coefs)
        w = frame_work(pm)["flops"]
        gain_share.append(w["F-regime gains h^H w per subband (eq. 24)"] / sum(w.values()))
    for m, b, c in zip(cfg["cells"], batch_m, per_coef):
        sec.figure(f"cost per channel coefficient, M={m}", c * 1e9, "ns",
                   f"B={b}; {c * 1e9:.1f} ns per coefficient per env-frame")
    expo = fit_exponent(cfg["cells"], per_env)
    sec.figure("env-frame time exponent in M (time ~ M^k)", expo, "k",
               f"M={list(cfg['cells'])}, B={batch_m}: "
               + ", ".join(f"{s * 1e3:.2f} ms" for s in per_env) + " per environment-frame")
    sec.lines += ["", "Cost per channel coefficient vs cells M (R=2, other parameters default; the channel tensors "
                  "(B, M A, M K, M, N) hold C = M^3 A K N coefficients; each batch holds about "
                  f"{cfg['m_coefs']:,} coefficients): "
                  + ", ".join(f"M={m} (B={b}): {s * 1e3:.2f} ms per env-frame, {c * 1e9:.1f} ns/coef"
                              for m, b, s, c in zip(cfg["cells"], batch_m, per_env, per_coef))
                  + f"; time per env-frame ~ M^{expo:.2f}. The counted work is not all proportional to C: the "
                  "F-regime gains (eq. 24: every user pair on every subband, 8 C MK flops) grow as M^4; their share "
                  "of the counted flops is " + ", ".join(f"{g:.0%}" for g in gain_share) + " at these M."]
    sec.lines.append("\nGPU: the ent-usr environment has no torch backend (numpy only); the CUDA-vs-CPU comparison "
                     "is not measured.")
    return sec
