"""Hybrid action heads (Sec. V-A): one factored distribution per `isacbench.multiagent.Head`.

* bernoulli   -> independent Bernoulli bits (service classification, eqs. 56-58)
* categorical -> independent categoricals (FG grouping eq. 64, beam angles in Theta, eqs. 61, 66)
* continuous  -> independent Beta distributions on the head's interval [low, high] widened by
  MARGIN of its width at each end, parametrized by mode and concentration; the action sent to
  the environment is clipped to [low, high] (`env_action`), which then projects power shares
  onto its budget simplex (powers, bandwidth split, eqs. 56, 61, 66).

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
# Continuous heads: the Beta lives on [low - MARGIN w, high + MARGIN w] (w = high - low), so a mode at a
# bound (e.g. full power) is an interior point that the clipped action reaches exactly.
MARGIN = 0.25
LOG_KAPPA_MAX = 10.0  # concentration kappa = exp(x) <= e^10
# Reference initialization (see `reference_bias`): logit of the reference bit / class, and the Beta
# concentration kappa (alpha - 1 = kappa m, beta - 1 = kappa (1 - m), m = the mode on the widened support).
REF_LOGIT_BIT, REF_LOGIT_CLASS, REF_CONCENTRATION = 4.0, 6.0, 200.0
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
    """Mode-concentration parametrization: m = sigmoid(x_m), kappa = exp(x_k), alpha = 1 + kappa m,
    beta = 1 + kappa (1 - m): unimodal with mode exactly m. Unlike alpha = 1 + softplus(.), the mode
    moves with O(1) sensitivity to x_m at any concentration, and Adam's steps on x_k are relative."""
    x_m, x_k = p.chunk(2, dim=-1)
    m, kappa = torch.sigmoid(x_m), torch.exp(x_k.clamp(max=LOG_KAPPA_MAX))
    return D.Beta(1.0 + kappa * m, 1.0 + kappa * (1.0 - m), validate_args=False)


def _support(head: Head) -> tuple[float, float]:
    """(lower end, width) of the Beta's widened support."""
    width = head.high - head.low
    return head.low - MARGIN * width, (1 + 2 * MARGIN) * width


def env_action(head: Head, action: torch.Tensor) -> torch.Tensor:
    """The action the environment receives: continuous values clipped to [low, high] (the stored,
    unclipped sample is the one whose log-probability PPO uses); other kinds unchanged."""
    return action.clamp(head.low, head.high) if head.kind == "continuous" else action


def sample(head: Head, p: torch.Tensor) -> torch.Tensor:
    """Draw an action in the head's own units (floats; categorical values are class indices)."""
    if head.kind == "bernoulli":
        return (torch.rand_like(p) < torch.sigmoid(p)).float()
    if head.kind == "categorical":  # Gumbel-max: argmax(logits + Gumbel noise) ~ Categorical(softmax(logits))
        logits = p.unflatten(-1, (head.size, head.classes))
        u = torch.rand_like(logits).clamp_min(1e-20)
        return (logits - torch.log(-torch.log(u))).argmax(-1).float()
    low, width = _support(head)  # on the widened support: pass it through `env_action`
    # clamped to the support itself too: in float32, low + width u can round one ulp past its end
    return (low + width * _beta(p).sample().clamp(EPS, 1 - EPS)).clamp(low, low + width)


def mode(head: Head, p: torch.Tensor) -> torch.Tensor:
    """Deterministic action for execution: most likely bit/class; the Beta mode for continuous,
    clipped to [low, high]."""
    if head.kind == "bernoulli":
        return (p > 0).float()
    if head.kind == "categorical":
        return p.unflatten(-1, (head.size, head.classes)).argmax(-1).float()
    low, width = _support(head)
    return env_action(head, low + width * torch.sigmoid(p.chunk(2, dim=-1)[0]))


def log_prob_entropy(head: Head, p: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(action), entropy) of each of the head's components, (..., size); the agent's
    log-probability and entropy are their sums over components and heads (eqs. 77, 83b).
    Continuous heads: density and differential entropy of the unclipped action in the head's own
    units, on the widened support."""
    if head.kind == "bernoulli":  # log pi = a log sigma(p) + (1 - a) log sigma(-p)
        logp = -F.binary_cross_entropy_with_logits(p, action, reduction="none")
        ent = F.binary_cross_entropy_with_logits(p, torch.sigmoid(p), reduction="none")
        return logp, ent
    if head.kind == "categorical":
        return categorical_log_prob_entropy(p.unflatten(-1, (head.size, head.classes)), action)
    low, width = _support(head)
    u = ((action - low) / width).clamp(EPS, 1 - EPS)
    return beta_log_prob_entropy(p, u, math.log(width))


def log_prob(head: Head, p: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log pi(action) of each component, the first output of `log_prob_entropy` (the same expressions,
    so the same values) without the entropy: what a rollout stores."""
    if head.kind == "bernoulli":
        return -F.binary_cross_entropy_with_logits(p, action, reduction="none")
    if head.kind == "categorical":
        logits = torch.log_softmax(p.unflatten(-1, (head.size, head.classes)), dim=-1)
        return logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    low, width = _support(head)
    u = ((action - low) / width).clamp(EPS, 1 - EPS)
    x_m, x_k = p.chunk(2, dim=-1)
    m, kappa = torch.sigmoid(x_m), torch.exp(x_k.clamp(max=LOG_KAPPA_MAX))
    a1, b1 = kappa * m, kappa * (1.0 - m)
    a, b = 1.0 + a1, 1.0 + b1
    log_b = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    return (a1 * torch.log(u) + b1 * torch.log1p(-u) - log_b) - math.log(width)


def beta_log_prob_entropy(p: torch.Tensor, u: torch.Tensor,
                          log_scale: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form log-density at u in (0, 1) and differential entropy of the Beta of `_beta(p)`
    (alpha = 1 + kappa m, beta = 1 + kappa (1 - m)), sharing log B(alpha, beta):
      log f(u) = (alpha - 1) log u + (beta - 1) log(1 - u) - log B(alpha, beta)
      H = log B(alpha, beta) - (alpha - 1) psi(alpha) - (beta - 1) psi(beta) + (alpha + beta - 2) psi(alpha + beta)
    with log B = lgamma(alpha) + lgamma(beta) - lgamma(alpha + beta): the same formulas as
    torch.distributions' Beta (through its Dirichlet), without its stacking (tests/test_mappo_math.py).
    On a support of width w = exp(log_scale): log f - log w and H + log w (the same operations as
    `log_prob`, so the same values). One autograd node whose backward is the closed-form gradient
    (`_BetaLogProbEntropy`): the values are those of the expressions above, op for op."""
    return _BetaLogProbEntropy.apply(p, u, log_scale)


# elements per block of `row_blocks`: a block and its temporaries stay in the L2 cache (the Beta keeps ~15 of them)
BLOCK_ELEMENTS = {"categorical": 1 << 18, "beta": 1 << 16}
ALIGN = 64  # elements: a multiple of any SIMD loop's unrolled width (2 x 16 float32 lanes on AVX-512)


def row_blocks(x: torch.Tensor, elements: int) -> list[slice]:
    """Slices of x's leading axis of about `elements` elements each (one slice for small tensors), each but
    the last holding a multiple of ALIGN elements. torch's elementwise loops compute whole SIMD vectors and a
    scalar tail, and some functions round differently in the two (sigmoid does, on 4 % of float32 inputs with
    torch 2.13): with aligned blocks every element of a contiguous block falls in the same kind of loop as in one
    pass over x, so blocked results equal one pass's (tests/test_mappo_math.py). Off the CPU (a GPU has no such
    cache to fit), one block."""
    if x.device.type != "cpu":
        return [slice(None)]
    n, row = (x.shape[0], x[:1].numel()) if x.dim() else (1, 1)
    step = ALIGN // math.gcd(max(row, 1), ALIGN)  # rows per aligned unit
    rows = max(step, elements // max(row, 1) // step * step)
    return [slice(lo, lo + rows) for lo in range(0, n, rows)]


DIGAMMA_SHIFT = 6  # `digamma_trigamma`: recurrence up to x + 6 >= 7, where the asymptotic series below is exact in float64


def digamma_trigamma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(psi(x), psi1(x)), digamma and trigamma, for x >= 1 (the Beta heads' alpha, beta >= 1; correct for any
    x > 0), elementwise in vectorized passes (torch's digamma and polygamma are scalar loops per element,
    most of a Beta head's cost). Recurrence psi(x) = psi(x + n) - sum_{k<n} 1/(x + k) and
    psi1(x) = psi1(x + n) + sum_{k<n} 1/(x + k)^2 with n = DIGAMMA_SHIFT, then the asymptotic series at
    y = x + n >= 7 (Abramowitz & Stegun 6.3.18, 6.4.12; Bernoulli numbers B_2..B_12):
      psi(y)  = log y - 1/(2y) - sum_k B_2k / (2k y^2k)
      psi1(y) = 1/y + 1/(2y^2) + sum_k B_2k / y^(2k+1)
    whose first omitted terms are below 1e-13 (psi) and 3e-12 (psi1, relative) at y = 7: float64-accurate
    (tests/test_mappo_math.py), float32 within a few ulps as torch's own."""
    r = x.reciprocal()
    s1, s2 = r.clone(), r * r
    for k in range(1, DIGAMMA_SHIFT):
        r = (x + k).reciprocal_()
        s1.add_(r)
        s2.addcmul_(r, r)
    y = x + DIGAMMA_SHIFT
    r = y.reciprocal()
    r2 = r * r
    psi = (torch.mul(r2, 691 / 32760).add_(-1 / 132).mul_(r2).add_(1 / 240).mul_(r2).add_(-1 / 252).mul_(r2)
           .add_(1 / 120).mul_(r2).add_(-1 / 12).mul_(r2).add_(torch.log(y)).sub_(r, alpha=0.5).sub_(s1))
    psi1 = (torch.mul(r2, -691 / 2730).add_(5 / 66).mul_(r2).add_(-1 / 30).mul_(r2).add_(1 / 42).mul_(r2)
            .add_(-1 / 30).mul_(r2).add_(1 / 6).mul_(r2).add_(r, alpha=0.5).add_(1).mul_(r).add_(s2))
    return psi, psi1


class _BetaLogProbEntropy(torch.autograd.Function):
    """Forward: the expressions of `beta_log_prob_entropy`. Backward, with a1 = alpha - 1 = kappa m,
    b1 = beta - 1 = kappa (1 - m), psi1 the trigamma function and d/da1 at fixed b1:
      d log f / d a1 = log u - psi(alpha) + psi(alpha + beta)     (d log B / d alpha = psi(alpha) - psi(alpha + beta))
      d H / d a1     = -a1 psi1(alpha) + kappa psi1(alpha + beta)
    (b1 alike with log(1 - u), beta; psi and psi1 from `digamma_trigamma`), then d a1 / d x_m = -d b1 / d x_m = kappa m (1 - m) = a1 (1 - m),
    d a1 / d x_k = a1, d b1 / d x_k = b1 (zero where x_k is clamped at LOG_KAPPA_MAX), and
    d log f / d u = a1 / u - b1 / (1 - u). The same gradient autograd forms through the expressions
    (to rounding), in a handful of passes instead of dozens of autograd nodes."""

    @staticmethod
    def forward(ctx, p, u, log_scale):
        logp, ent, saved = u.new_empty(u.shape), u.new_empty(u.shape), []
        ctx.blocks = row_blocks(u, BLOCK_ELEMENTS["beta"])  # its temporaries stay in cache
        for sl in ctx.blocks:
            logp[sl], ent[sl], keep = _beta_forward(p[sl], u[sl], log_scale)
            saved += keep
        ctx.save_for_backward(*saved)
        return logp, ent

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        saved, per = ctx.saved_tensors, len(ctx.saved_tensors) // len(ctx.blocks)
        grad_p = g_logp.new_empty((*g_logp.shape[:-1], 2 * g_logp.shape[-1])) if ctx.needs_input_grad[0] else None
        grad_u = g_logp.new_empty(g_logp.shape) if ctx.needs_input_grad[1] else None
        for i, sl in enumerate(ctx.blocks):
            g_p, g_u = _beta_backward(g_logp[sl], g_ent[sl], *saved[i * per:(i + 1) * per],
                                      ctx.needs_input_grad[0], ctx.needs_input_grad[1])
            if grad_p is not None:
                torch.cat(g_p, -1, out=grad_p[sl])
            if grad_u is not None:
                grad_u[sl] = g_u
        return grad_p, grad_u, None


def _beta_forward(p, u, log_scale):
    """One block of `_BetaLogProbEntropy.forward`: (log f, H, the tensors its backward needs)."""
    x_m, x_k = p.chunk(2, dim=-1)
    m, kappa = torch.sigmoid(x_m), torch.exp(x_k.clamp(max=LOG_KAPPA_MAX))
    a1, b1 = kappa * m, kappa * (1.0 - m)  # alpha - 1, beta - 1
    a, b = 1.0 + a1, 1.0 + b1
    ab = a + b
    (psi_a, tri_a), (psi_b, tri_b), (psi_ab, tri_ab) = digamma_trigamma(a), digamma_trigamma(b), digamma_trigamma(ab)
    log_b = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(ab)
    log_u, log_1u = torch.log(u), torch.log1p(-u)
    logp = a1 * log_u + b1 * log_1u - log_b
    ent = log_b - a1 * psi_a - b1 * psi_b + (ab - 2.0) * psi_ab
    if log_scale:
        logp, ent = logp - log_scale, ent + log_scale
    return logp, ent, [m, kappa, a1, b1, psi_a, psi_b, psi_ab, tri_a, tri_b, tri_ab, log_u, log_1u,
                       x_k <= LOG_KAPPA_MAX, u]


def _beta_backward(g_logp, g_ent, m, kappa, a1, b1, psi_a, psi_b, psi_ab, tri_a, tri_b, tri_ab, log_u, log_1u, free,
                   u, want_p: bool, want_u: bool):
    """One block of `_BetaLogProbEntropy.backward`: ((d/dx_m, d/dx_k) or None, d/du or None)."""
    g_p = g_u = None
    if want_p:
        # the psi(alpha + beta) and psi1(alpha + beta) terms are shared by a1 and b1
        shared = g_logp * psi_ab + g_ent * kappa * tri_ab
        d_a1 = g_logp * (log_u - psi_a) - g_ent * a1 * tri_a + shared
        d_b1 = g_logp * (log_1u - psi_b) - g_ent * b1 * tri_b + shared
        g_p = ((d_a1 - d_b1) * a1 * (1.0 - m), (d_a1 * a1 + d_b1 * b1) * free)
    if want_u:
        g_u = g_logp * (a1 / u - b1 / (1.0 - u))
    return g_p, g_u


def categorical_log_prob_entropy(logits: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log softmax(z)[a], entropy -sum_j p_j log p_j) over the last axis of logits z (..., classes):
    the forward of torch.distributions.Categorical (log_softmax, gather, -(p log p).sum), with the
    gradient in closed form in one pass: d log p_a / dz = onehot(a) - p, dH / dz = -p (log p + H).
    Both passes run over blocks of the leading axis (`row_blocks`), so that a block's intermediates stay
    in cache (the FPB's beam logits are 8 MB per minibatch); every operation is per row of classes, so the
    values are those of one pass over the whole tensor (tests/test_mappo_math.py)."""
    return _CategoricalLogProbEntropy.apply(logits, action.long())


class _CategoricalLogProbEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, a):
        prob, plogp = z.new_empty(z.shape), z.new_empty(z.shape)
        logp, ent = z.new_empty(z.shape[:-1]), z.new_empty(z.shape[:-1])
        idx = a.unsqueeze(-1)
        ctx.blocks = row_blocks(z, BLOCK_ELEMENTS["categorical"])  # the backward's blocks too
        for sl in ctx.blocks:
            logp_all = torch.log_softmax(z[sl], dim=-1)
            torch.exp(logp_all, out=prob[sl])
            torch.mul(prob[sl], logp_all, out=plogp[sl])
            torch.sum(plogp[sl], -1, out=ent[sl])
            logp[sl] = logp_all.gather(-1, idx[sl]).squeeze(-1)
        ent.neg_()
        ctx.save_for_backward(plogp, prob, ent, idx)
        return logp, ent

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        plogp, prob, ent, idx = ctx.saved_tensors
        # dL/dz_j = g_logp ([j = a] - p_j) - g_ent p_j (log p_j + H)
        #         = -g_ent (p_j log p_j) - (g_logp + g_ent H) p_j + g_logp [j = a]: two passes over the classes
        coef = torch.addcmul(g_logp, g_ent, ent).neg_().unsqueeze(-1)
        g_neg = g_ent.neg().unsqueeze(-1)
        grad = torch.empty_like(prob)
        for sl in ctx.blocks:
            block = grad[sl]
            torch.mul(plogp[sl], g_neg[sl], out=block)
            block.addcmul_(prob[sl], coef[sl])
            block.scatter_add_(-1, idx[sl], g_logp[sl].unsqueeze(-1))
        return grad, None


def reference_bias(head: Head, ref) -> torch.Tensor:
    """Output-layer bias (n_params,) that centres the head's initial distribution on the reference
    action `ref` (size,): bit logits +-REF_LOGIT_BIT (a bit probability in (0, 1): its logit); the
    reference class REF_LOGIT_CLASS above the others; a Beta whose mode is the reference value,
    concentration REF_CONCENTRATION. ref None:
    zeros (uniform classes / bits, Beta(1.5, 1.5) centred on the head's interval)."""
    if ref is None:
        return torch.zeros(n_params(head))
    r = torch.as_tensor(ref, dtype=torch.float32).reshape(head.size)
    if head.kind == "bernoulli":  # a bit 0 / 1 at logit -+REF_LOGIT_BIT; a fraction: its logit
        return torch.where((r == 0) | (r == 1), (2 * r - 1) * REF_LOGIT_BIT, torch.logit(r))
    if head.kind == "categorical":
        return (F.one_hot(r.long(), head.classes) * REF_LOGIT_CLASS).flatten().float()
    low, width = _support(head)
    m = ((r.clamp(head.low, head.high) - low) / width)  # in [MARGIN, 1 + MARGIN] / (1 + 2 MARGIN)
    return torch.cat([torch.logit(m), torch.full_like(m, math.log(REF_CONCENTRATION))])


def encode(head: Head, action: torch.Tensor) -> torch.Tensor:
    """Action features for a critic: bits, one-hot classes, unit-scaled reals."""
    if head.kind == "categorical":
        return F.one_hot(action.long(), head.classes).flatten(-2).float()
    if head.kind == "continuous":
        return (action - head.low) / (head.high - head.low)
    return action


def encoded_dim(head: Head) -> int:
    return head.size * (head.classes if head.kind == "categorical" else 1)
