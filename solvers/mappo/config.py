"""MAPPO / IPPO / HAPPO configuration: the user-facing pydantic `Config`s and the two presets.

`paper` is Table I of the ENT-USR paper (gamma, GAE lambda, clip and entropy annealing,
value weight, learning rate) with the Sec. VI network sizes. `default` keeps the paper's
algorithm but is sized to learn within a CPU budget (smaller nets, larger learning rate).
Every preset value can be overridden key by key; `None` means "take it from the preset".
The algorithm (which critic, simultaneous or sequential role updates) is the solver's, not a key:
`MappoConfig`, `IppoConfig`, `HappoConfig` resolve to `Hyper.algorithm` = mappo / ippo / happo.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from isacbench.api import Config

Width = Annotated[int, Field(ge=1, le=8192)]


@dataclass(frozen=True)
class Hyper:
    """Resolved hyperparameters (preset merged with the user's overrides)."""

    num_envs: int
    lr: float
    gamma: float
    gae_lambda: float
    clip_start: float
    clip_end: float
    ent_start: float
    ent_end: float
    value_coef: float
    epochs: int
    minibatches: int
    max_grad_norm: float
    actor_hidden: tuple[int, ...]
    critic_hidden: tuple[int, ...]
    critic_action: bool
    ratio: str
    baseline: str
    frames: int
    algorithm: str = "mappo"  # mappo | ippo | happo: the solver's (critic input and update order, algorithm.py)
    factor_bound: float = 2.0  # happo: M truncated to [1/b, b] (algorithm.sequential_update)


PRESETS: dict[str, Hyper] = {
    # Table I + Sec. VI; quantities the paper does not state (epochs, minibatches, grad clip,
    # batch size) follow the official MAPPO defaults (Yu et al. 2022).
    "paper": Hyper(num_envs=32, lr=5e-5, gamma=0.9, gae_lambda=0.96, clip_start=0.3, clip_end=0.15,
                   ent_start=1e-3, ent_end=1e-4, value_coef=0.5, epochs=5, minibatches=1, max_grad_norm=10.0,
                   actor_hidden=(256, 256, 256, 256), critic_hidden=(512, 512, 512), critic_action=True,
                   ratio="joint", baseline="critic", frames=2_000_000),
    # CPU preset: same actors, ratio clipping and Table I clip/entropy schedule; smaller nets, a 6x
    # larger learning rate, per-component ratio clipping, and the policy mode's reward on the same frame
    # (self-critical), split over the frame's stages, as the baseline of one-frame advantages (lambda = 0)
    # instead of a learned critic (see docs).
    "default": Hyper(num_envs=16, lr=3e-4, gamma=0.9, gae_lambda=0.0, clip_start=0.3, clip_end=0.15,
                     ent_start=1e-3, ent_end=1e-4, value_coef=0.5, epochs=4, minibatches=2, max_grad_norm=10.0,
                     actor_hidden=(128, 128), critic_hidden=(128, 128), critic_action=False,
                     ratio="component", baseline="stagewise", frames=72_000),
}

#: preset values that follow the resolved baseline (a `baseline=...` override takes them too).
#: default: the mean baseline uses one-frame credit (lambda 0, A_n = r_n - mean r); the critic uses
#: lambda 0.5 (credit horizon ~1/(1 - gamma lambda) = 1.8 frames at gamma 0.9): the agents' actions
#: act on the frame's reward, and a longer sum adds the later frames' reward noise; lambda 0 leans on the
#: critic's next-state value alone and measured worse (48k frames, seed 0: 6.405 vs 6.485; docs/solvers/mappo.md).
#: greedy (self-critical) credits one frame like mean: A_n = r_n - r_n^mode; stagewise splits that over the stages.
BY_BASELINE: dict[str, dict[str, dict]] = {"default": {"mean": {"gae_lambda": 0.0}, "critic": {"gae_lambda": 0.5},
                                                       "greedy": {"gae_lambda": 0.0},
                                                       "stagewise": {"gae_lambda": 0.0}},
                                           "paper": {}}


class MappoConfig(Config):
    #: the algorithm these settings train (`Hyper.algorithm`); IPPO and HAPPO subclass this config
    algorithm: ClassVar[str] = "mappo"
    #: the baseline when the user names none: the critic (IPPO, HAPPO) or the preset's (MAPPO)
    critic_by_default: ClassVar[bool] = False

    preset: Literal["default", "paper"] = Field("default", description="hyperparameter preset")
    init: Literal["reference", "uniform"] = Field(
        "reference", description="initial policy: centred on the environment's reference_actions() hint (a rule "
                                 "action; none: uniform), or uniform (zero output biases)")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="torch device for training")
    num_envs: int | None = Field(None, ge=1, le=4096, description="parallel environments per rollout")
    lr: float | None = Field(None, gt=0, le=1, description="Adam learning rate (actors and critics)")
    gamma: float | None = Field(None, ge=0, lt=1, description="discount factor (eq. 79)")
    gae_lambda: float | None = Field(None, ge=0, le=1, description="GAE parameter (eq. 80)")
    clip_start: float | None = Field(None, gt=0, lt=1, description="PPO clip ratio at the start (eq. 83a)")
    clip_end: float | None = Field(None, gt=0, lt=1, description="PPO clip ratio at the end (linear anneal)")
    ent_start: float | None = Field(None, ge=0, description="entropy coefficient at the start (eq. 82)")
    ent_end: float | None = Field(None, ge=0, description="entropy coefficient at the end (linear anneal)")
    value_coef: float | None = Field(None, ge=0, description="value loss weight c_V")
    epochs: int | None = Field(None, ge=1, le=100, description="optimization epochs per rollout")
    minibatches: int | None = Field(None, ge=1, le=1024, description="minibatches per epoch")
    max_grad_norm: float | None = Field(None, gt=0, description="global gradient-norm clip")
    actor_hidden: tuple[Width, ...] | None = Field(None, min_length=1, description="actor MLP widths")
    critic_hidden: tuple[Width, ...] | None = Field(None, min_length=1, description="critic MLP widths")
    critic_action: bool | None = Field(None, description="feed the agent's own action to its critic (eq. 78)")
    ratio: Literal["joint", "component"] | None = Field(
        None, description="PPO ratio per agent action (eq. 83c) or per action component")
    baseline: Literal["critic", "mean", "greedy", "stagewise"] | None = Field(
        None, description="advantage baseline: the role's learned critic (eqs. 78-80), the rollout's mean "
                          "reward, each frame's reward of the policy's mode on the same frame (greedy: "
                          "self-critical), or greedy's split over the frame's stages (stagewise: a stage is "
                          "credited with its own actions, the later stages at their mode; algorithm."
                          "centred_rewards); no critic for mean, greedy and stagewise: GAE on centred "
                          "rewards with V = 0")
    frames: int | None = Field(None, ge=1, description="training frames when the budget names neither "
                                                        "frames nor seconds")
    deterministic: bool = Field(True, description="act with the policy's mode at evaluation (Sec. V-D1)")
    threads: int = Field(1, ge=1, le=256, description="torch intra-op threads and numpy's BLAS threads while "
                                                       "training (1 avoids oversubscribing a shared CPU; the "
                                                       "environment's products are too small to gain from more)")
    product_threads: int | None = Field(None, ge=1, le=256, description="torch threads for the actors' and "
                                        "critics' matrix products in the learner, every other operation on "
                                        "`threads`; the same values as on `threads` (networks.product_threads: "
                                        "each product shape is checked once); None: 2 where the process may use 2+ "
                                        "CPUs, else 1")
    overlap: bool = Field(True, description="play and score the baseline's mode continuations (greedy, stagewise) "
                                            "on a worker thread while the rollout goes on: the same values, "
                                            "faster where a second core is free (only used with 2+ CPUs)")
    checkpoint_every: int = Field(10, ge=1, description="save a checkpoint every N updates")
    eval_every: int = Field(10, ge=0, description="play the policy on the task's evaluation episodes every N "
                                                   "updates and after the last (logged as eval/<metric>); 0: never")
    resume: str | None = Field(None, description="MLflow run id (or checkpoint file/folder) to continue from")

    def default_baseline(self) -> str:
        return "critic" if self.critic_by_default else PRESETS[self.preset].baseline

    def hyper(self) -> Hyper:
        """The preset, then its values for the resolved baseline (`BY_BASELINE`), then every key the
        user set, and the config's algorithm."""
        base = PRESETS[self.preset]
        baseline = self.baseline or self.default_baseline()
        over = {f.name: getattr(self, f.name) for f in fields(Hyper)
                if f.name in type(self).model_fields and getattr(self, f.name) is not None}
        return Hyper(**{**{f.name: getattr(base, f.name) for f in fields(Hyper)},
                        **BY_BASELINE[self.preset].get(baseline, {}), "baseline": baseline, **over,
                        "algorithm": self.algorithm})


class IppoConfig(MappoConfig):
    """IPPO: every agent's critic sees its own observation only; a critic is what makes it IPPO
    (without one it would be `mappo[baseline=mean]`), so the baseline is always the critic."""

    algorithm: ClassVar[str] = "ippo"
    baseline: Literal["critic"] | None = Field(
        None, description="advantage baseline: each agent's local critic (the only choice for ippo)")
    critic_by_default: ClassVar[bool] = True


class HappoConfig(MappoConfig):
    """HAPPO: one centralized V(s) (baseline critic by default) and sequential role updates."""

    algorithm: ClassVar[str] = "happo"
    critic_by_default: ClassVar[bool] = True
    baseline: Literal["critic", "mean"] | None = Field(
        None, description="advantage baseline shared by every role: the centralized state-value critic V(s) "
                          "(default) or the rollout's mean reward (no critic)")

    factor_bound: float | None = Field(
        None, gt=1, description="HAPPO's factor M (the earlier roles' joint ratio product) truncated to [1/b, b] "
                                "(default 2; see docs/solvers/mappo.md, HAPPO)")
