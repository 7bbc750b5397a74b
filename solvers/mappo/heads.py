"""Hybrid action heads (Sec. V-A): one factored distribution per `isacbench.multiagent.Head`.

* bernoulli   -> independent Bernoulli bits (service classification, eqs. 56-58)
* categorical -> independent categoricals (FG grouping eq. 64, beam angles in Theta, eqs. 61, 66)
* continuous  -> independent Beta distributions scaled to [low, high] (powers, bandwidth split,
  eqs. 56, 61, 66); the environment projects the raw vector onto its budget simplex.

The joint log-probability of an agent is the sum over its heads' components (factored policy,
eq. 77) and its entropy the sum of component entropies (eq. 83b); both are returned per component. Parameters arrive as one flat
vector per agent (last axis) and are split per head by `split`.
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D
from torch.nn import functional as F

from isacbench.multiagent import Head

EPS = 1e-6  # keeps Beta samples strictly inside (0, 1) so their log-density stays finite
# Reference initialization (see `reference_bias`): logit of the reference bit / class, and the Beta
# concentration above 1 put on the reference value (alpha - 1 = 40 u, beta - 1 = 40 (1 - u)).
REF_LOGIT_BIT, REF_LOGIT_CLASS, REF_CONCENTRATION = 2.0, 4.0, 40.0
KINDS = ("bernoulli", "categorical", "continuous")


def n_params(head: Head) -> int:
    """Network outputs the head needs per agent."""
    if head.kind == "bernoulli":
        return head.size
    if head.kind == "categorical":
        return head.size * head.classes
    if head.kind == "continuous":
        return 2 * head.size
    raise ValueError(f"head {head.name!r}: unknown kind {head.kind!r}; known: {', '.join(KINDS)}")


def split(heads: tuple[Head, ...], params: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flat parameters (..., sum n_params) -> head name -> its slice."""
    parts = torch.split(params, [n_params(h) for h in heads], dim=-1)
    return {h.name: p for h, p in zip(heads, parts)}


def _beta(p: torch.Tensor) -> D.Beta:
    alpha, beta = (1.0 + F.softplus(x) for x in p.chunk(2, dim=-1))  # concentrations > 1: unimodal
    return D.Beta(alpha, beta, validate_args=False)


def _scale(head: Head) -> float:
    return head.high - head.low


def sample(head: Head, p: torch.Tensor) -> torch.Tensor:
    """Draw an action in the head's own units (floats; categorical values are class indices)."""
    if head.kind == "bernoulli":
        return (torch.rand_like(p) < torch.sigmoid(p)).float()
    if head.kind == "categorical":  # Gumbel-max: argmax(logits + Gumbel noise) ~ Categorical(softmax(logits))
        logits = p.unflatten(-1, (head.size, head.classes))
        u = torch.rand_like(logits).clamp_min(1e-20)
        return (logits - torch.log(-torch.log(u))).argmax(-1).float()
    return head.low + _scale(head) * _beta(p).sample().clamp(EPS, 1 - EPS)


def mode(head: Head, p: torch.Tensor) -> torch.Tensor:
    """Deterministic action for execution: most likely bit/class, Beta mean for continuous."""
    if head.kind == "bernoulli":
        return (p > 0).float()
    if head.kind == "categorical":
        return p.unflatten(-1, (head.size, head.classes)).argmax(-1).float()
    return head.low + _scale(head) * _beta(p).mean


def log_prob_entropy(head: Head, p: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(action), entropy) of each of the head's components, (..., size); the agent's
    log-probability and entropy are their sums over components and heads (eqs. 77, 83b).
    Continuous heads: density and differential entropy in the head's own units [low, high]."""
    if head.kind == "bernoulli":  # log pi = a log sigma(p) + (1 - a) log sigma(-p)
        logp = -F.binary_cross_entropy_with_logits(p, action, reduction="none")
        ent = F.binary_cross_entropy_with_logits(p, torch.sigmoid(p), reduction="none")
        return logp, ent
    if head.kind == "categorical":
        logits = torch.log_softmax(p.unflatten(-1, (head.size, head.classes)), dim=-1)
        logp = logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        return logp, -(logits.exp() * logits).sum(-1)
    dist, log_scale = _beta(p), math.log(_scale(head))
    u = ((action - head.low) / _scale(head)).clamp(EPS, 1 - EPS)
    return dist.log_prob(u) - log_scale, dist.entropy() + log_scale


def _softplus_inv(y: torch.Tensor) -> torch.Tensor:
    y = y.clamp_min(1e-3)
    return y + torch.log(-torch.expm1(-y))


def reference_bias(head: Head, ref) -> torch.Tensor:
    """Output-layer bias (n_params,) that centres the head's initial distribution on the reference
    action `ref` (size,): bit logits +-REF_LOGIT_BIT; the reference class REF_LOGIT_CLASS above the
    others; a Beta whose mode is the reference value. ref None: zeros (uniform classes / bits,
    Beta(1.69, 1.69))."""
    if ref is None:
        return torch.zeros(n_params(head))
    r = torch.as_tensor(ref, dtype=torch.float32).reshape(head.size)
    if head.kind == "bernoulli":
        return (2 * r - 1) * REF_LOGIT_BIT
    if head.kind == "categorical":
        return (F.one_hot(r.long(), head.classes) * REF_LOGIT_CLASS).flatten().float()
    u = ((r - head.low) / _scale(head)).clamp(0, 1)  # mode (alpha-1)/(alpha+beta-2) = u
    return torch.cat([_softplus_inv(REF_CONCENTRATION * u), _softplus_inv(REF_CONCENTRATION * (1 - u))])


def encode(head: Head, action: torch.Tensor) -> torch.Tensor:
    """Action features for a critic: bits, one-hot classes, unit-scaled reals."""
    if head.kind == "categorical":
        return F.one_hot(action.long(), head.classes).flatten(-2).float()
    if head.kind == "continuous":
        return (action - head.low) / _scale(head)
    return action


def encoded_dim(head: Head) -> int:
    return head.size * (head.classes if head.kind == "categorical" else 1)
