"""MAPPO training throughput on ent-usr and where the time goes.

One short training run (default preset, CPU, 1 torch thread as the solver's config sets) with
timers around: every environment method (reset, observe, state, act, end_frame, frame_reward(s): the
env's share; a method called from another counts once), the rollout collection (env + policy inference
+ bookkeeping), and the learner (advantage preparation + PPO epochs). Frames/s = environment frames trained / wall time of `train`.
"""
from __future__ import annotations

import copy
import math
import threading
import time
from collections import defaultdict
from contextlib import ExitStack, nullcontext
from functools import wraps
from unittest import mock

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from isacbench.api import Budget, Reporter
from isacbench.runner import solver_rng
from isacbench.solvers.mappo import heads
from isacbench.solvers.mappo import solver as mappo_solver
from isacbench.solvers.mappo.algorithm import make_optimizer, prepare, update
from isacbench.solvers.mappo.config import MappoConfig
from isacbench.solvers.mappo.networks import product_threads, torch_threads
from isacbench.solvers.mappo.policy import ActorCritic
from isacbench.solvers.mappo.rollout import Continuations, collect
from isacbench.tasks.ent_usr import EntUsrTask

from . import bench_env
from .common import Section, best_time

# num_envs / updates: the training run (None: the preset's num_envs); training_repeats: interleaved rounds of
# the training variants (`_run`), the fastest of each reported; parity_envs: rollout
# of the update benchmark (None: the preset's); paper_updates: updates of the paper-preset run (0: skipped)
SIZES = {"tiny": dict(num_envs=2, updates=1, parity_envs=2, repeats=1, training_repeats=1, paper_updates=0),
         "quick": dict(num_envs=None, updates=2, parity_envs=None, repeats=2, training_repeats=1, paper_updates=1),
         "full": dict(num_envs=None, updates=4, parity_envs=None, repeats=5, training_repeats=4, paper_updates=1)}
ENV_METHODS = ("reset", "observe", "state", "act", "end_frame", "frame_reward", "frame_rewards")
TARGET_UPDATE = 1.0  # MAPPO update time / CleanRL-style PPO update time, at most
TARGET_END_TO_END = 0.5  # MAPPO training frames/s / random-policy env frames/s at the same batch, at least
CLASSES = 16  # the CleanRL-style policy: independent categoricals of 16 classes (MultiDiscrete)


class CleanRLAgent(nn.Module):
    """CleanRL's ppo.py agent shape: one MLP (Linear -> Tanh) from the observation to the logits of
    independent categoricals, with as many parameters as `n_params` (output width rounded to CLASSES)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], n_params: int):
        super().__init__()
        trunk = sum(a * b + b for a, b in zip((obs_dim, *hidden), hidden))
        self.n_out = max(CLASSES, round((n_params - trunk) / (hidden[-1] + 1) / CLASSES) * CLASSES)
        layers, width = [], obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.Tanh()]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, self.n_out))

    def log_prob_entropy(self, obs: torch.Tensor, action: torch.Tensor):
        logits = torch.log_softmax(self.net(obs).unflatten(-1, (self.n_out // CLASSES, CLASSES)), -1)
        logp = logits.gather(-1, action.unsqueeze(-1)).squeeze(-1).sum(-1)
        return logp, -(logits.exp() * logits).sum((-2, -1))


def cleanrl_update(agent: CleanRLAgent, optimizer, obs, actions, old_logp, adv, epochs: int, minibatches: int,
                   clip: float, ent_coef: float, max_grad_norm: float) -> None:
    """CleanRL's PPO update (policy part): shuffled minibatches, clipped surrogate on the joint ratio,
    entropy bonus, global grad-norm clip, Adam."""
    n = obs.shape[0]
    for _ in range(epochs):
        for idx in torch.tensor_split(torch.randperm(n), min(minibatches, n)):
            logp, ent = agent.log_prob_entropy(obs[idx], actions[idx])
            ratio = (logp - old_logp[idx]).exp()
            a = adv[idx]
            loss = -torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a).mean() - ent_coef * ent.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
            optimizer.step()


def normal_probe(p: torch.Tensor, u: torch.Tensor, log_scale: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cost probe in place of `heads.beta_log_prob_entropy` (the same inputs and output shapes): log-density and
    entropy of N(m, s^2) at u, m = sigmoid(x_m), log s = x_k clamped to [-5, 2], on a support of width
    exp(log_scale), in closed form. It measures what the update would cost with a continuous distribution that
    needs no lgamma or digamma; the solver does not use it (its values are torch.distributions.Normal's, tested)."""
    x_m, x_k = p.chunk(2, dim=-1)
    m, log_s = torch.sigmoid(x_m), x_k.clamp(-5.0, 2.0)
    z = (u - m) * torch.exp(-log_s)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    return -0.5 * z * z - log_s - (half_log_2pi + log_scale), log_s + (0.5 + half_log_2pi + log_scale)


def update_parity(num_envs: int | None, repeats: int, seed: int = 0, threads: int = 2) -> dict[str, float]:
    """Seconds of one MAPPO update (default preset: `hyper.epochs` passes of `hyper.minibatches`) on
    one collected rollout, and of a CleanRL-style PPO update with the same parameter count, the
    same number of samples (T*B frames), epochs and minibatches; one torch thread, best of `repeats`
    interleaved runs of each. Interleaved with them: the MAPPO update with its products on `threads` threads (the
    solver's learner, `networks.product_threads`; the same values), the CleanRL-style update with all of torch
    on `threads` threads, and the MAPPO update of a copy of the model with `normal_probe` in place of the Beta heads
    (one thread; how much of the gap to CleanRL the Beta heads are)."""
    cfg = MappoConfig() if num_envs is None else MappoConfig(num_envs=num_envs)
    hyper = cfg.hyper()
    env = EntUsrTask().make_env(hyper.num_envs, seed)
    with torch_threads(1):
        torch.manual_seed(seed)
        model = ActorCritic(env.roles, env.state_dim, hyper, env.reference_actions())
        opt = make_optimizer(model, hyper)  # as the solver
        data = prepare(model, collect(env, model, seed, torch.device("cpu"), hyper.baseline), hyper)
        clip, ent = hyper.clip_start, hyper.ent_start
        update(model, opt, data, hyper, clip, ent)  # warm-up (allocator, Adam state)
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n = next(iter(data.values())).log_prob.shape[0]
        obs_dim = sum(s.n_agents * s.obs_dim for s in env.roles.values())
        agent = CleanRLAgent(obs_dim, hyper.actor_hidden, n_params)
        copt = torch.optim.Adam(agent.parameters(), lr=hyper.lr, eps=1e-5)  # as CleanRL's ppo.py
        obs = torch.randn(n, obs_dim)
        with torch.no_grad():
            actions = torch.randint(0, CLASSES, (n, agent.n_out // CLASSES))
            old_logp = agent.log_prob_entropy(obs, actions)[0]
        adv = torch.randn(n)
        args = (obs, actions, old_logp, adv, hyper.epochs, hyper.minibatches, clip, ent, hyper.max_grad_norm)
        cleanrl_update(agent, copt, *args)

        def mappo_on_threads():
            with product_threads(threads):
                update(model, opt, data, hyper, clip, ent)

        def cleanrl_on_threads():
            with torch_threads(threads):
                cleanrl_update(agent, copt, *args)

        probe_model, probe_opt = copy.deepcopy((model, opt))  # the probe's steps leave the real model alone

        def mappo_normal_probe():
            with mock.patch.object(heads, "beta_log_prob_entropy", normal_probe):
                update(probe_model, probe_opt, data, hyper, clip, ent)
        mappo_normal_probe()  # warm-up
        mappo_on_threads()  # its products' first calls: checked against one thread
        runs = {"mappo": lambda: update(model, opt, data, hyper, clip, ent),
                "cleanrl": lambda: cleanrl_update(agent, copt, *args),
                "mappo_threads": mappo_on_threads, "cleanrl_threads": cleanrl_on_threads,
                "mappo_normal_probe": mappo_normal_probe}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(repeats):  # interleaved, so that all see the same load; the best of each
            for k, fn in runs.items():
                best[k] = min(best[k], best_time(fn, 1))
    return {**best, "threads": threads, "params": n_params,
            "cleanrl_params": sum(p.numel() for p in agent.parameters()), "samples": n, "epochs": hyper.epochs,
            "minibatches": hyper.minibatches, "num_envs": hyper.num_envs}


def _timed(fn, totals: dict, *keys: str, nested: threading.local | None = None):
    """fn, adding its wall time to totals[key] for each key, or to totals["worker:" + key] when called on
    a thread other than the main one (mappo's continuation worker); with `nested` (a threading.local depth
    counter shared by the timed methods), only calls not made from inside another such call on the same
    thread count (an env method calling another)."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        depth = getattr(nested, "depth", 0) if nested is not None else 0
        if nested is not None:
            nested.depth = depth + 1
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if nested is not None:
                nested.depth = depth
            if depth == 0:
                elapsed = time.perf_counter() - start
                prefix = "" if threading.current_thread() is threading.main_thread() else "worker:"
                for key in keys:
                    totals[prefix + key] += elapsed
    return wrapper


def _env_share(fn, totals: dict, key: str):
    """fn, adding to totals[key] the environment time (`env`, or `worker:env` on a worker thread) the timed env
    methods record during its calls: the continuations' own environment work, on either thread."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        env = "env" if threading.current_thread() is threading.main_thread() else "worker:env"
        before = totals[env]
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += totals[env] - before
    return wrapper


def profile_training(num_envs: int | None, updates: int, seed: int = 0, device: str = "cpu",
                     preset: str = "default", overlap: bool = True, blas_threads: int | None = None,
                     product_threads: int | None = None) -> dict[str, float]:
    """Train MAPPO for `updates` rollouts of num_envs episodes (None: the preset's); seconds per phase
    (`worker:` phases: on the continuation worker thread, overlapping the others) and frames. blas_threads: numpy's
    BLAS on that many threads while training instead of the solver's `threads` (as the solver before f456625);
    product_threads: the solver's setting (None: its default)."""
    totals: dict[str, float] = defaultdict(float)
    task = EntUsrTask()
    make_env = task.make_env

    def instrumented_env(*args, **kwargs):
        env = make_env(*args, **kwargs)
        # a subclass with the timed methods, so that a copy of the env (the self-critical baselines') times its own calls
        cls, depth = type(env), threading.local()
        env.__class__ = type(f"Timed{cls.__name__}", (cls,),
                             {name: _timed(getattr(cls, name), totals, name, "env", nested=depth)
                              for name in ENV_METHODS})
        return env

    cfg = {"preset": preset, "device": device, "overlap": overlap, "product_threads": product_threads}
    if num_envs is not None:
        cfg["num_envs"] = num_envs
    solver = mappo_solver.MAPPO(cfg)
    num_envs = solver.config.hyper().num_envs
    budget = Budget(frames=updates * num_envs * task.params.frames)
    with ExitStack() as stack:
        for name, key in (("collect", "rollout"), ("prepare", "learner"), ("update", "learner")):
            stack.enter_context(mock.patch.object(mappo_solver, name,
                                                  _timed(getattr(mappo_solver, name), totals, key)))
        stack.enter_context(mock.patch.object(Continuations, "_score", _timed(
            _env_share(Continuations._score, totals, "continuations:env"), totals, "continuations")))
        stack.enter_context(mock.patch.object(Continuations, "rewards",  # the rollout waiting for the worker
                                              _timed(Continuations.rewards, totals, "wait")))
        if blas_threads is not None:
            stack.enter_context(mock.patch.object(mappo_solver, "threadpool_limits", lambda *a, **k: nullcontext()))
            stack.enter_context(threadpool_limits(blas_threads, user_api="blas"))
        start = time.perf_counter()
        solver.train(instrumented_env, budget, solver_rng(seed), Reporter())
        totals["total"] = time.perf_counter() - start
    totals["frames"] = float(solver.frames)
    totals["num_envs"] = float(num_envs)
    return dict(totals)


def run(scale: str = "full") -> Section:
    # one core: numpy's BLAS and torch on one thread (the solver's). torch_threads gives torch's own count back to
    # OpenMP and MKL both: threadpoolctl restores OpenMP's only, not MKL's, which torch.set_num_threads calls moved
    with torch_threads(torch.get_num_threads()), threadpool_limits(1):
        return _run(scale)


def _run(scale: str) -> Section:
    cfg = SIZES[scale]
    sec = Section("mappo")
    frames = EntUsrTask().params.frames

    # ---- learner: one MAPPO update vs a CleanRL-style PPO update of the same size, back to back
    u = update_parity(cfg["parity_envs"], cfg["repeats"])
    sec.ratio("MAPPO update / CleanRL-style PPO update", u["mappo"], u["cleanrl"], TARGET_UPDATE,
              f"{u['mappo']:.3f} s vs {u['cleanrl']:.3f} s; {u['params']:,} vs {u['cleanrl_params']:,} parameters, "
              f"{u['samples']} samples, {u['epochs']} epochs x {u['minibatches']} minibatches", at_most=True)
    sec.lines += [f"Learner: one update of the default preset ({u['num_envs']} envs x {frames} frames = {u['samples']} "
                  f"samples, {u['epochs']} epochs x {u['minibatches']} minibatches, {u['params']:,} parameters in all "
                  f"actors) takes {u['mappo']:.3f} s; a CleanRL-style PPO update (one Linear-Tanh MLP with the same "
                  f"hidden widths, {u['cleanrl_params']:,} parameters, independent 16-class categoricals, joint ratio, "
                  f"the same samples, epochs, minibatches, Adam and grad clip) takes {u['cleanrl']:.3f} s: ratio "
                  f"{u['mappo'] / u['cleanrl']:.2f} (target <= {TARGET_UPDATE}). One torch thread, best of "
                  f"{cfg['repeats']}. The solver's learner runs the actors' and critics' matrix products on "
                  f"{u['threads']} threads where the process has 2+ CPUs, every other operation on one "
                  f"(`product_threads`, the same values): {u['mappo_threads']:.3f} s, "
                  f"{u['mappo'] / u['mappo_threads']:.2f}x; the CleanRL-style update with all of torch on "
                  f"{u['threads']} threads: {u['cleanrl_threads']:.3f} s. With a Normal-like closed form in place of "
                  f"the Beta heads' log-density and entropy (`normal_probe`, a cost probe on a copy of the model), the "
                  f"one-thread update takes {u['mappo_normal_probe']:.3f} s: ratio "
                  f"{u['mappo_normal_probe'] / u['cleanrl']:.2f}, the part of the gap that is not the Beta heads.", ""]
    sec.ratio(f"MAPPO update, products on {u['threads']} threads vs one", u["mappo"], u["mappo_threads"], None,
              f"{u['mappo_threads']:.3f} s vs {u['mappo']:.3f} s (the solver's learner with 2+ CPUs; the same "
              f"values, tests/test_mappo_update.py)")
    sec.ratio(f"MAPPO update / CleanRL-style PPO update, both on {u['threads']} threads", u["mappo_threads"],
              u["cleanrl_threads"], None,
              f"{u['mappo_threads']:.3f} s (products on {u['threads']} threads, the rest on one) vs "
              f"{u['cleanrl_threads']:.3f} s (all of torch on {u['threads']} threads)", at_most=True)
    sec.ratio("MAPPO update with a Normal-like probe in place of the Beta heads / CleanRL-style PPO update",
              u["mappo_normal_probe"], u["cleanrl"], None,
              f"{u['mappo_normal_probe']:.3f} s vs {u['cleanrl']:.3f} s, one thread (`normal_probe`: a cost probe, not "
              f"a head the solver uses; the rest of the update's gap is not in the Beta heads)", at_most=True)

    # ---- end to end: training frames/s vs the random-policy environment at the same batch; the solver's
    # default (the continuations on a worker thread where 2+ CPUs, the learner's products on 2 threads), the
    # continuations inline on one thread, the default with numpy's BLAS on one thread per CPU (its own default; the
    # solver before f456625), and the default with the learner's products on one thread (the solver before 6299bf5)
    cpus = mappo_solver.usable_cpus()
    variants = {"default": {}, "inline": {"overlap": False}, "blas": {"blas_threads": cpus},
                "products": {"product_threads": 1}}
    runs = {v: [] for v in variants}
    for _ in range(cfg["training_repeats"]):  # interleaved, so that all see the same load; the fastest of each
        for v, kw in variants.items():
            runs[v].append(profile_training(cfg["num_envs"], cfg["updates"], **kw))
    t, one, blas, products = (min(runs[v], key=lambda x: x["total"]) for v in variants)
    worker = cpus > 1
    b = int(t["num_envs"])
    env_fps, _, _ = bench_env.batched_fps(EntUsrTask(), b, max(2, frames // 2))
    fps, fps_one, fps_blas, fps_products = (x["frames"] / x["total"] for x in (t, one, blas, products))
    mode = "continuations on the worker thread" if worker else "one CPU: continuations inline"
    sec.ratio("MAPPO frames/s / env frames/s", 1.0 / env_fps, 1.0 / fps, TARGET_END_TO_END,
              f"{fps:.1f} vs {env_fps:.1f} frames/s at B={b} (training: {cfg['updates']} updates, {mode}; env: "
              f"random policy, one thread)")
    sec.ratio("MAPPO frames/s / env frames/s, continuations inline (one thread)", 1.0 / env_fps, 1.0 / fps_one,
              None, f"{fps_one:.1f} vs {env_fps:.1f} frames/s (overlap=false)")
    sec.ratio("MAPPO training, continuations on a worker thread vs inline", 1.0 / fps_one, 1.0 / fps, None,
              f"{fps:.1f} vs {fps_one:.1f} frames/s, the fastest of {cfg['training_repeats']} interleaved runs of "
              f"each" + ("" if worker else " (one CPU: both inline)"))
    sec.ratio("MAPPO training, numpy's BLAS on one thread vs one per CPU", 1.0 / fps_blas, 1.0 / fps, None,
              f"{fps:.1f} vs {fps_blas:.1f} frames/s ({cpus} BLAS threads), the fastest of "
              f"{cfg['training_repeats']} interleaved runs of each (`threads`=1 caps torch's and numpy's BLAS threads "
              f"while training; the same values, tests/test_ent_usr_speed.py)")
    sec.ratio("MAPPO training, the learner's products on 2 threads vs one", 1.0 / fps_products, 1.0 / fps, None,
              f"{fps:.1f} vs {fps_products:.1f} frames/s (learner {t['learner']:.2f} s vs {products['learner']:.2f} s), "
              f"the fastest of {cfg['training_repeats']} interleaved runs of each (`product_threads`; the same values, "
              f"tests/test_mappo_ent.py)" + ("" if worker else " (one CPU: one thread both)"))
    # what the networks' matrix products alone allow: per frame, one actor forward in the rollout (2 flops
    # per parameter) and `epochs` forward + backward passes in the learner (6 flops per parameter each)
    flop_rate = bench_env.machine_rates(1 << 16)["flops"]
    floor = (2 + 6 * u["epochs"]) * u["params"] / flop_rate
    bound = (1.0 / env_fps) / (1.0 / env_fps + floor)
    sec.fraction("MAPPO frames/s / env frames/s, bound from the networks' matmul flops", 1.0 / env_fps,
                 1.0 / env_fps + floor, None,
                 f"(2 + 6 x {u['epochs']} epochs) x {u['params']:,} parameters = "
                 f"{(2 + 6 * u['epochs']) * u['params'] / 1e6:.0f} Mflop per frame at {flop_rate:.3g} flop/s = "
                 f"{floor * 1e3:.2f} ms vs env {1e3 / env_fps:.2f} ms per frame")
    # what the environment work of MAPPO's own rollouts allows: the default baseline's continuations play and score
    # every frame again once per stage, so even with free inference and learner the ratio stays below this; with
    # the worker thread, the busier of the two threads' environment work bounds it
    main_env, worker_env = t["env"] / t["frames"], t.get("worker:env", 0.0) / t["frames"]
    all_env = one["env"] / one["frames"]
    sec.fraction("MAPPO frames/s / env frames/s, bound from MAPPO's own environment work", 1.0 / env_fps,
                 max(main_env, worker_env), None,
                 f"the rollouts' environment calls take {main_env * 1e3:.2f} ms per frame on the main thread and "
                 f"{worker_env * 1e3:.2f} ms on the worker thread vs the random policy's {1e3 / env_fps:.2f} ms "
                 f"(inline, all on one thread: {all_env * 1e3:.2f} ms)")
    sec.fraction("MAPPO frames/s / env frames/s, bound from MAPPO's own environment work, one thread",
                 1.0 / env_fps, all_env, None,
                 f"continuations inline: the rollouts' environment calls take {all_env * 1e3:.2f} ms per frame")
    sec.figure("MAPPO training frames/s (CPU, default preset)", fps, "frames/s",
               f"{t['frames']:.0f} frames in {t['total']:.2f} s ({cfg['updates']} updates x {b} envs, {mode})")
    sec.figure("MAPPO training frames/s (CPU, default preset, continuations inline)", fps_one, "frames/s",
               f"{one['frames']:.0f} frames in {one['total']:.2f} s")
    sec.figure("MAPPO time share: environment", t["env"] / t["total"], "fraction",
               f"main thread: {t['env']:.2f} s of {t['total']:.2f} s")
    sec.figure("MAPPO time share: learner (advantages + PPO epochs)", t["learner"] / t["total"], "fraction",
               f"{t['learner']:.2f} s of {t['total']:.2f} s")
    cont_env = one["continuations:env"]
    sec.figure("MAPPO environment work in the mode continuations", cont_env / one["env"],
               "fraction of environment time", f"{cont_env:.2f} s of {one['env']:.2f} s, inline (the default "
               f"baseline's continuations: the frame's later stages played on branches and scored, once per stage)")
    sec.lines += [f"Default preset, device cpu, {cfg['updates']} updates x {b} envs x {frames} frames = "
                  f"{t['frames']:.0f} frames in {t['total']:.2f} s: **{fps:.1f} frames/s** ({mode}; "
                  f"{fps_one:.1f} frames/s with them inline, {fps / fps_one:.2f}x); the random-policy environment "
                  f"alone at the same batch: {env_fps:.1f} frames/s (ratio {fps / env_fps:.2f}, target >= "
                  f"{TARGET_END_TO_END}). The networks' matrix products alone cost {floor * 1e3:.2f} ms per frame "
                  f"((2 + 6 x {u['epochs']} epochs) flops per parameter per frame, {u['params']:,} parameters, at this "
                  f"run's one-core {flop_rate:.3g} flop/s), so even a learner at the matmul floor would reach at most "
                  f"{bound:.2f} of the environment's frames/s. The rollouts' own environment work (each frame, plus the "
                  f"default baseline's mode continuations: the frame's later stages played again on branches and "
                  f"scored) takes {all_env * 1e3:.2f} ms per frame, {all_env * env_fps:.1f}x the random policy's: "
                  f"on one thread, with free inference and learner, the ratio would be {1 / (all_env * env_fps):.2f}. "
                  f"The solver plays and scores the continuations on a worker thread (`overlap`, on by default where "
                  f"the process has 2+ CPUs; the same values, tests/test_mappo_ent.py) while the rollout goes on.", "",
                  "| phase | default: seconds | share | inline: seconds | share |", "|---|---|---|---|---|"]

    def row(name: str, a: float, c: float) -> str:
        return f"| {name} | {a:.2f} | {a / t['total']:.1%} | {c:.2f} | {c / one['total']:.1%} |"
    for name, key in (("environment, main thread (reset/observe/state/act/end_frame/frame_reward(s))", "env"),
                      ("policy inference in rollouts (actors, sampling, buffers; branching)", None),
                      ("waiting for the worker thread at the rollout's end", "wait"),
                      ("learner (advantages + PPO epochs)", "learner")):
        if key is None:
            sec.lines.append(row(name, *(x["rollout"] - x["env"] - x.get("wait", 0.0) for x in (t, one))))
        else:
            sec.lines.append(row(name, t.get(key, 0.0), one.get(key, 0.0)))
    sec.lines.append(row("other (env/network construction, bookkeeping)",
                         *(x["total"] - x["rollout"] - x["learner"] for x in (t, one))))
    sec.lines.append(row("continuations: branches played at the mode and scored (inline: inside the rows above; "
                         "default: on the worker thread, alongside them)",
                         t.get("worker:continuations", 0.0) + t.get("continuations", 0.0), one["continuations"]))
    sec.lines.append(row("of which environment calls", t["continuations:env"], cont_env))
    if cfg["paper_updates"]:
        tp = profile_training(None, cfg["paper_updates"], preset="paper")
        pfps = tp["frames"] / tp["total"]
        sec.figure("MAPPO training frames/s (CPU, paper preset)", pfps, "frames/s",
                   f"{tp['frames']:.0f} frames in {tp['total']:.2f} s ({cfg['paper_updates']} update(s) x "
                   f"{int(tp['num_envs'])} envs)")
        sec.lines += ["", f"Paper preset (Table I, Sec. VI networks, learned critics), device cpu: {tp['frames']:.0f} "
                      f"frames in {tp['total']:.2f} s: **{pfps:.1f} frames/s** (environment "
                      f"{tp['env'] / tp['total']:.0%}, "
                      f"learner {tp['learner'] / tp['total']:.0%})."]
    if torch.cuda.is_available():  # rollouts and learner on the GPU; the environment stays numpy on the CPU
        g = profile_training(cfg["num_envs"], cfg["updates"], device="cuda")
        sec.figure("MAPPO training frames/s (CUDA)", g["frames"] / g["total"], "frames/s",
                   f"{torch.cuda.get_device_name(0)}; environment share {g['env'] / g['total']:.1%}")
    else:
        sec.lines.append("\nNo GPU on this machine: MAPPO on CUDA (`-S device=cuda`) is not measured.")
    return sec
