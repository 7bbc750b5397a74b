"""MAPPO solver: the training loop (rollout -> advantages -> PPO epochs), tracking, checkpoints."""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from isacbench.api import Budget, EnvFactory, LearningSolver, Reporter, SequentialTask, UserError
from isacbench.multiagent import MultiAgentEnv

from . import checkpoint
from .algorithm import make_optimizer, prepare, update
from .config import Hyper, MappoConfig
from .curves import plot
from .networks import product_threads, torch_threads
from .policy import ActorCritic, MAPPOPolicy
from .rollout import collect

log = logging.getLogger(__name__)
EVAL = "eval/"  # prefix of the periodic evaluation's metrics (`Reporter.evaluate`) in the history and MLflow


def resolve_device(name: str, solver: str = "mappo") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"solver {solver} device='cuda': no CUDA device is available; use device=cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def anneal(start: float, end: float, fraction: float) -> float:
    """Linear schedule (Table I: clip 0.3 -> 0.15, entropy 1e-3 -> 1e-4)."""
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


def derive(entropy: int, *key: int) -> tuple[int, int]:
    """Two 32-bit seeds for the stream `key` of the run's SeedSequence: (0,) builds the
    environment, (1,) initializes the networks, (2, k) drives update k (reset, sampling, shuffles)."""
    a, b = np.random.SeedSequence(entropy, spawn_key=key).generate_state(2, dtype=np.uint32)
    return int(a), int(b)


def tracked(stats: dict) -> dict:
    """MLflow names of one update's metrics: `train/<name>` (the environment's per-frame metrics,
    losses, diagnostics), apart from the evaluation's own metrics that the runner logs for the
    same run under their plain names; the periodic evaluation's `eval/<metric>` keep theirs."""
    return {k if k.startswith(EVAL) else f"train/{k}": v for k, v in stats.items() if k != "frames"}


def training_frames(budget: Budget, hyper: Hyper, frames_per_episode: int) -> int | None:
    """The training frames of `budget` (the preset's when it names neither frames nor seconds; None:
    a time budget only); UserError when they do not cover one rollout."""
    total = budget.frames if budget.frames is not None else (None if budget.seconds else hyper.frames)
    if total is not None and total < hyper.num_envs * frames_per_episode:
        raise UserError(f"solver {hyper.algorithm}: budget of {total} frames is below one rollout "
                        f"(num_envs={hyper.num_envs} x {frames_per_episode} frames per episode)")
    return total


class MAPPO(LearningSolver):
    """Trains every role the environment lists (`env.roles`); any sequential task (`make_env`)."""

    name = "mappo"
    description = "multi-agent PPO, centralized training / decentralized execution (ENT-USR Sec. V)"
    Config = MappoConfig
    operational_keys: ClassVar[frozenset[str]] = frozenset({"device", "threads", "product_threads", "overlap",
                                                            "checkpoint_every", "eval_every", "resume"})

    def settings(self) -> dict:
        """The non-default settings, and the baseline whenever it is not a critic (mean, greedy; a preset's
        default included): a critic-less run is never labelled plain `mappo`."""
        settings, baseline = super().settings(), self.config.hyper().baseline
        settings.pop("baseline", None)
        if not baseline == self.config.default_baseline() == "critic":
            settings["baseline"] = baseline
        return settings

    def check(self, task: SequentialTask, budget: Budget, tracking_uri: str | None = None) -> None:
        """Before the run is recorded: the device exists, the budget covers one rollout, and the
        resume source (`checkpoint.locate`) holds an intact checkpoint of these hyperparameters and
        this environment, with no more frames than the budget (`checkpoint.verify`)."""
        cfg, hyper = self.config, self.config.hyper()
        resolve_device(cfg.device, self.name)
        env = task.make_env(1, 0)
        frames = env.frames_per_episode
        total = training_frames(budget, hyper, frames)
        rollout = hyper.num_envs * frames
        if total is not None and total % rollout:
            used = total - total % rollout
            log.warning(f"solver {self.name} trains in whole rollouts of {rollout:,} frames (num_envs={hyper.num_envs} "
                        f"x {frames} frames per episode): it uses {used:,} of the budget of {total:,} frames "
                        f"({used + rollout:,} would be {used // rollout + 1} rollouts)")
        if cfg.resume:
            checkpoint.verify(cfg.resume, checkpoint.locate(cfg.resume, tracking_uri, self.name), hyper, env, total)

    def train(self, make_env: EnvFactory, budget: Budget, rng: np.random.Generator,
              reporter: Reporter) -> MAPPOPolicy:
        with torch_threads(self.config.threads), threadpool_limits(self.config.threads, user_api="blas"):
            return self._train(make_env, budget, rng, reporter)

    def _train(self, make_env: EnvFactory, budget: Budget, rng: np.random.Generator,
               reporter: Reporter) -> MAPPOPolicy:
        cfg: MappoConfig = self.config
        hyper = cfg.hyper()
        device = resolve_device(cfg.device, self.name)
        entropy = int(rng.integers(2 ** 63))
        env: MultiAgentEnv = make_env(hyper.num_envs, derive(entropy, 0)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive(entropy, 1)[0])
            reference = env.reference_actions() if cfg.init == "reference" else None
            model = ActorCritic(env.roles, env.state_dim, hyper, reference).to(device)
        optimizer = make_optimizer(model, hyper)
        start_update, frames, history = 0, 0, []
        if cfg.resume:
            meta = checkpoint.load(cfg.resume, checkpoint.locate(cfg.resume, reporter.tracking_uri, self.name),
                                   model, optimizer)
            start_update, frames, history, entropy = meta["update"], meta["frames"], meta["history"], meta["entropy"]
            for h in history:  # the resumed run carries the whole curve
                reporter.log_metrics(tracked(h), int(h["frames"]))
        per_update = hyper.num_envs * env.frames_per_episode
        total_frames = training_frames(budget, hyper, env.frames_per_episode)
        n_updates = None if total_frames is None else total_frames // per_update
        out = Path(reporter.artifact_dir) / checkpoint.FOLDER if reporter.artifact_dir else None
        fixed = {"entropy": entropy, "hyper": dataclasses.asdict(hyper), "env": checkpoint.signature(env)}
        t0, k = time.perf_counter(), start_update
        last, metric_names = 0.0, ()
        evaluating = reporter.evaluate is not None and cfg.eval_every > 0
        overlap = cfg.overlap and usable_cpus() > 1
        products = cfg.product_threads or min(2, usable_cpus())
        while True:
            elapsed = time.perf_counter() - t0
            if n_updates is not None and k >= n_updates:
                break
            if budget.seconds is not None and elapsed + last > budget.seconds:
                break
            frac = k / max(1, n_updates - 1) if n_updates is not None else elapsed / budget.seconds
            tick = time.perf_counter()
            stats, metric_names = self._step(env, model, optimizer, hyper, entropy, k, frac, device, overlap, products)
            if not np.isfinite(stats["loss"]):  # a diverged policy would act NaN: fail the run, record nothing
                raise RuntimeError(f"solver {self.name}: training diverged at update {k + 1} (loss {stats['loss']})")
            last = time.perf_counter() - tick
            k, frames = k + 1, frames + stats.pop("frames_collected")
            stats["fps"] = per_update / last
            history.append({"frames": frames, **stats})
            done = k / n_updates if n_updates else min(1.0, (time.perf_counter() - t0) / budget.seconds)
            if evaluating and (k % cfg.eval_every == 0 or k == n_updates):
                t0 += self._evaluate(model, reporter, entropy, k, done, history[-1])  # not training time
            if out is not None and k % cfg.checkpoint_every == 0:
                self._save(out, model, optimizer, {**fixed, "update": k, "frames": frames, "history": history},
                           metric_names)
            reporter.log_metrics(tracked(history[-1]), frames)
            objective = next((f", {m} {v:.4g}" for m, v in history[-1].items() if m.startswith(EVAL)), "")
            reporter.progress(done, f"{self.name}: update {k}, {stats['fps']:.0f} frames/s, return {stats['return']:.4g}"
                                    + objective)
        if evaluating and history and not any(m.startswith(EVAL) for m in history[-1]):  # e.g. a time budget's end
            self._evaluate(model, reporter, entropy, k, 1.0, history[-1])
            reporter.log_metrics({m: v for m, v in history[-1].items() if m.startswith(EVAL)}, frames)
        if out is not None and history:
            self._save(out, model, optimizer, {**fixed, "update": k, "frames": frames, "history": history},
                       metric_names)
        self.frames, self.history = frames, history
        return MAPPOPolicy(model, cfg.deterministic)

    @staticmethod
    def _step(env: MultiAgentEnv, model: ActorCritic, optimizer, hyper: Hyper, entropy: int, k: int,
              frac: float, device: torch.device, overlap: bool = False, products: int | None = None
              ) -> tuple[dict[str, float], tuple[str, ...]]:
        """One update: collect a rollout, compute advantages, run the PPO epochs (the networks' matrix products on
        `products` threads: `networks.product_threads`). Returns the update's statistics and the names of the
        environment's per-frame metrics among them."""
        env_seed, torch_seed = derive(entropy, 2, k)
        clip = anneal(hyper.clip_start, hyper.clip_end, frac)
        ent_coef = anneal(hyper.ent_start, hyper.ent_end, frac)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(torch_seed)
            model.train()
            rollout = collect(env, model, env_seed, device, hyper.baseline, overlap)
            with product_threads(products):  # the rollout's worker thread has finished: no other torch work runs
                data = prepare(model, rollout, hyper)
                losses = update(model, optimizer, data, hyper, clip, ent_coef)
        stats = {**rollout.metrics, "return": rollout.episode_return, "reward": float(rollout.rewards.mean()),
                 **losses, "clip": clip, "ent_coef": ent_coef, "frames_collected": rollout.frames}
        return stats, tuple(rollout.metrics)

    def _evaluate(self, model: ActorCritic, reporter: Reporter, entropy: int, k: int, done: float,
                  entry: dict) -> float:
        """Play a copy of the policy after update `k` on the task's evaluation episodes
        (`reporter.evaluate`) and add the metric means to the update's history `entry` as
        `eval/<metric>`. The copy leaves the training model alone (device, mode), and the torch
        generator is forked and seeded from the run's stream (3, k): training draws the same
        random numbers with or without evaluation. Returns the seconds it took."""
        tick = time.perf_counter()
        reporter.progress(done, f"{self.name}: evaluating the policy of update {k} on the evaluation episodes")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive(entropy, 3, k)[0])
            means = reporter.evaluate(MAPPOPolicy(copy.deepcopy(model), self.config.deterministic))
        entry.update({f"{EVAL}{m}": float(v) for m, v in means.items()})
        return time.perf_counter() - tick

    def _save(self, out: Path, model, optimizer, meta: dict, metric_names: tuple[str, ...]) -> None:
        checkpoint.save(out / checkpoint.FILE, model, optimizer, meta)
        plot(meta["history"], out / "training_curve.png", f"MAPPO ({self.config.preset} preset)", metric_names)
