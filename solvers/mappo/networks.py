"""Actors, critics and running normalizers (Sec. V-D, Sec. VI network description).

Actors: one MLP per agent instance (parameters phi^{u_i}, eq. 77). The n agents of a role are
evaluated in one batched pass: `AgentLinear` holds n independent weight matrices.
Critics: one MLP per role, shared by the role's agents (psi^u, eq. 78), input
z = [s, (alpha), e_i] (MAPPO); one MLP per agent on its own observation (IPPO, `LocalCritic`);
or one V(s) for all (HAPPO: a `RoleCritic` of one agent).
Hidden layers: Linear -> LeakyReLU(0.01) -> LayerNorm (Sec. VI).
The learner may run the matrix products of both on more torch threads than the rest, with the same values
(`product_threads`).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from isacbench.multiagent import RoleSpec

from . import heads as H

SLOPE = 0.01  # LeakyReLU negative slope (Sec. VI)
GAIN = math.sqrt(2.0 / (1 + SLOPE ** 2))  # orthogonal-init gain for LeakyReLU


class AgentLinear(nn.Module):
    """n independent linear maps: x (..., n, fan_in) -> (..., n, fan_out)."""

    def __init__(self, n: int, fan_in: int, fan_out: int, gain: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(n, fan_out))
        for w in self.weight.data:
            nn.init.orthogonal_(w, gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (N, n, fan_in): one batched product per agent on strided views, bias fused
            return _AgentLinear.apply(x, self.weight, self.bias)
        return torch.einsum("...ni,noi->...no", x, self.weight) + self.bias


_PRODUCTS = {"threads": None}  # torch threads for `_AgentLinear`'s and `Linear`'s products (`product_threads`)
_SAME: dict[tuple, bool] = {}  # (product, thread counts, operands' shapes, strides, dtypes) -> `_agrees`


@contextmanager
def product_threads(n: int | None):
    """Within the block, the actors' and critics' matrix products (`_AgentLinear`, `Linear`: forward and
    backward) run on n torch threads, every other operation on torch's own setting (`threads`, 1 by default:
    the elementwise operations and reductions would round differently on more); None: no change. The values
    stay those of torch's setting: MKL splits most products' rows and columns between threads, each output the
    same sum in the same order, but not all (on the 2-core machine of 2026-12-02, products of 5-11 rows round
    differently on 2 threads), so each product shape runs on n threads only where it gives the values of
    torch's setting (`_agrees`, checked once). Not thread-safe (torch's thread count is the process's): for code
    where no other thread runs torch meanwhile, e.g. the learner."""
    before, _PRODUCTS["threads"] = _PRODUCTS["threads"], n
    try:
        yield
    finally:
        _PRODUCTS["threads"] = before


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads (OpenMP and MKL) set to n within the block, restored after."""
    own = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(own)


def _agrees(fn, n: int, args: tuple[torch.Tensor | None, ...]) -> bool:
    """Whether fn gives the same values on n threads as on torch's setting, tried on random operands of the
    shapes and strides of `args` (from a generator of its own: the run's random stream is left alone). How a
    product splits its sums, hence its rounding, follows from the shapes, strides and thread count; random
    operands show a different split in almost every output, where the real ones might hide it (zeros)."""
    g = torch.Generator().manual_seed(0)
    probe = [None if a is None else torch.as_strided(
        torch.randn(1 + sum((k - 1) * st for k, st in zip(a.shape, a.stride())), generator=g, dtype=a.dtype),
        a.shape, a.stride()) for a in args]
    want = fn(*probe)
    with torch_threads(n):
        return torch.equal(fn(*probe), want)


def _product(fn, *args: torch.Tensor | None) -> torch.Tensor:
    """fn(*args) on `product_threads`' threads where that shape gives the values of torch's setting, else on
    torch's setting. None operands (an absent bias) pass through."""
    n, own = _PRODUCTS["threads"], torch.get_num_threads()
    if n is None or n == own:  # the rollout's path: nothing to decide
        return fn(*args)
    tensors = [a for a in args if a is not None]
    if tensors[0].device.type != "cpu" or any(a.numel() == 0 for a in tensors):
        return fn(*args)
    key = (fn, n, own, *(None if a is None else (a.shape, a.stride(), a.dtype) for a in args))
    if key not in _SAME:
        _SAME[key] = _agrees(fn, n, args)
    if not _SAME[key]:
        return fn(*args)
    with torch_threads(n):
        return fn(*args)


class _AgentLinear(torch.autograd.Function):
    """y[:, i] = x[:, i] W_i^T + b_i for x (N, n, fan_in): the forward autograd would take (one baddbmm on
    strided views), with a backward that forms the weight gradient directly in the weight's (n, fan_out,
    fan_in) layout, dW_i = dy[:, i]^T x[:, i], instead of autograd's (n, fan_in, fan_out) product and a
    transposing copy of the widest tensor of the model (the FPB output layer)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return _product(torch.baddbmm, bias.unsqueeze(1), x.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        g = grad.transpose(0, 1)  # (n, N, fan_out), strided: the batched products take it as it is
        gx = _product(torch.bmm, g, weight).transpose(0, 1) if ctx.needs_input_grad[0] else None
        gw = _product(torch.bmm, g.transpose(1, 2), x.transpose(0, 1)) if ctx.needs_input_grad[1] else None
        gb = grad.sum(0) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


class Linear(nn.Linear):
    """nn.Linear whose products run on `product_threads`' threads (the same values): the critics' layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None and x.dim() in (2, 3) and x.is_contiguous():
            return _Linear.apply(x, self.weight, self.bias)
        return _product(F.linear, x, self.weight, self.bias)  # F.linear's own path; its backward on torch's threads


class _Linear(torch.autograd.Function):
    """F.linear on a contiguous 2-D or 3-D input with a bias: the forward torch takes (one addmm on the rows'
    2-D view) and the products autograd forms in its backward (addmm's: dx = dy W, dW = dy^T x, db = the sum
    of dy over rows), each run by `_product`: the same values as F.linear's (tests/test_mappo_math.py)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        rows = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(rows, weight)
        ctx.shape = x.shape
        return _product(torch.addmm, bias, rows, weight.t()).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        rows, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        gx = _product(torch.mm, g, weight).view(ctx.shape) if ctx.needs_input_grad[0] else None
        gw = _product(torch.mm, g.t(), rows) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


class AgentLayerNorm(nn.Module):
    """LayerNorm over features with a separate affine transform per agent."""

    def __init__(self, n: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, width))
        self.bias = nn.Parameter(torch.zeros(n, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


def agent_trunk(n: int, fan_in: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """n independent MLP trunks: AgentLinear -> LeakyReLU -> AgentLayerNorm per hidden layer."""
    layers, width = [], fan_in
    for h in hidden:
        layers += [AgentLinear(n, width, h, GAIN), nn.LeakyReLU(SLOPE), AgentLayerNorm(n, h)]
        width = h
    return nn.Sequential(*layers)


class RoleActor(nn.Module):
    """Per-agent actors of one role: observations (..., n, obs_dim) -> flat head parameters."""

    def __init__(self, spec: RoleSpec, hidden: tuple[int, ...]):
        super().__init__()
        self.spec = spec
        self.trunk = agent_trunk(spec.n_agents, spec.obs_dim, hidden)
        self.out = AgentLinear(spec.n_agents, hidden[-1], sum(H.n_params(h) for h in spec.heads), 0.01)

    def forward(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        return H.split(self.spec.heads, self.out(self.trunk(obs)))


class RoleCritic(nn.Module):
    """Role-specific centralized critic V^u(z) shared by the role's agents (eq. 78)."""

    def __init__(self, spec: RoleSpec, state_dim: int, hidden: tuple[int, ...], use_action: bool):
        super().__init__()
        self.spec, self.use_action = spec, use_action
        width = state_dim + spec.n_agents + (sum(H.encoded_dim(h) for h in spec.heads) if use_action else 0)
        layers = []
        for h in hidden:
            layers += [Linear(width, h), nn.LeakyReLU(SLOPE), nn.LayerNorm(h)]
            width = h
        layers.append(Linear(width, 1))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, GAIN if m.out_features > 1 else 1.0)
                nn.init.zeros_(m.bias)
        self.register_buffer("index", torch.eye(spec.n_agents), persistent=False)

    def forward(self, state: torch.Tensor, actions: dict[str, torch.Tensor]) -> torch.Tensor:
        """state (..., state_dim), actions head -> (..., n, size)  ->  values (..., n)."""
        n = self.spec.n_agents
        parts = [state.unsqueeze(-2).expand(*state.shape[:-1], n, state.shape[-1]),
                 self.index.expand(*state.shape[:-1], n, n)]
        if self.use_action:
            parts += [H.encode(h, actions[h.name]) for h in self.spec.heads]
        return self.net(torch.cat(parts, dim=-1)).squeeze(-1)


class LocalCritic(nn.Module):
    """IPPO: agent i's value from its own normalized observation o_i and the fraction of the episode
    left (which the agent can count itself), with per-agent parameters (`AgentLinear`): no global
    state and no other agent's input reaches V_i."""

    def __init__(self, spec: RoleSpec, hidden: tuple[int, ...], extra: int):
        super().__init__()
        self.trunk = agent_trunk(spec.n_agents, spec.obs_dim + extra, hidden)
        self.out = AgentLinear(spec.n_agents, hidden[-1], 1, 1.0)

    def forward(self, obs: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """obs (..., n, obs_dim), extra (..., k) shared by the agents  ->  values (..., n)."""
        extra = extra.unsqueeze(-2).expand(*obs.shape[:-1], extra.shape[-1])
        return self.out(self.trunk(torch.cat([obs, extra], -1))).squeeze(-1)


class RunningNorm(nn.Module):
    """Running mean/variance over all samples seen (Chan et al. parallel update).

    Used for observations/states (inputs) and for value targets (value normalization)."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """x (N, *shape): merge the batch's moments into the running ones."""
        x = x.double().reshape(-1, *self.mean.shape)
        n = x.shape[0]
        m, v = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = m - self.mean
        self.var.copy_((self.var * self.count + v * n + delta ** 2 * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    def std(self) -> torch.Tensor:
        return torch.sqrt(self.var + 1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std()
        return z.clamp(-self.clip, self.clip).to(x.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z * self.std() + self.mean).to(z.dtype)
