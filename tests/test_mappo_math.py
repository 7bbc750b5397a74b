"""MAPPO building blocks against hand-computed values and torch.distributions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import distributions as D

from isacbench.api import UserError
from isacbench.multiagent import Head
from isacbench.solvers.mappo import MAPPO
from isacbench.solvers.mappo import heads as H
from isacbench.solvers.mappo.buffer import gae, standardize
from isacbench.solvers.mappo.config import PRESETS
from isacbench.solvers.mappo.networks import RunningNorm
from isacbench.solvers.mappo.solver import anneal


def test_gae_matches_hand_computation():
    # one env, one agent, 3 frames, gamma = 0.5, lambda = 0.5, episode ends after frame 3
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[[0.5]], [[1.0]], [[2.0]]])
    d = torch.tensor([[False], [False], [True]])
    # delta_3 = 3 - 2 = 1 ; delta_2 = 2 + 0.5*2 - 1 = 2 ; delta_1 = 1 + 0.5*1 - 0.5 = 1   (eq. 79)
    # A_3 = 1 ; A_2 = 2 + 0.25*1 = 2.25 ; A_1 = 1 + 0.25*2.25 = 1.5625                     (eq. 80)
    adv = gae(r, v, d, gamma=0.5, lam=0.5)
    assert adv[:, 0, 0].tolist() == pytest.approx([1.5625, 2.25, 1.0])


def test_gae_cuts_at_episode_boundaries_and_broadcasts_over_agents():
    # two back-to-back episodes of 2 frames; two agents with different values; gamma = 0.9, lambda = 1
    r = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    d = torch.tensor([[False], [True], [False], [True]])
    v = torch.tensor([[0.0, 1.0]]).expand(4, 2).reshape(4, 1, 2)
    adv = gae(r, v, d, gamma=0.9, lam=1.0)
    # lambda = 1: A_n = discounted return - V ; returns are 1.9 and 1 in each episode
    expect = torch.tensor([[1.9, 0.9], [1.0, 0.0], [1.9, 0.9], [1.0, 0.0]])
    assert torch.allclose(adv[:, 0, :], expect)


def test_standardize_uses_population_moments():
    a = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    # mu = 3, sigma^2 = (4 + 1 + 0 + 9) / 4 = 3.5  (eq. 81b-c: 1/(N_T |I_u|))
    z = standardize(a)
    expect = (a - 3.0) / math.sqrt(3.5)
    assert torch.allclose(z, expect, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(2, 6), st.floats(-3, 3), st.floats(0.5, 4.0), st.integers(0, 2 ** 31 - 1))
def test_head_log_prob_and_entropy_match_torch_distributions(size, classes, low, width, seed):
    g = torch.Generator().manual_seed(seed)
    high = low + width
    cases = [(Head("b", "bernoulli", size), lambda p: D.Bernoulli(logits=p)),
             (Head("c", "categorical", size, classes=classes), lambda p: D.Categorical(logits=p.view(7, size, classes))),
             (Head("x", "continuous", size, low=low, high=high),  # mode m, concentration kappa, widened support
              lambda p: D.TransformedDistribution(
                  D.Beta(1 + p[..., size:].exp() * torch.sigmoid(p[..., :size]),
                         1 + p[..., size:].exp() * torch.sigmoid(-p[..., :size])),
                  [D.AffineTransform(low - H.MARGIN * width, (1 + 2 * H.MARGIN) * width)]))]
    for head, ref in cases:
        p = torch.randn(7, H.n_params(head), generator=g) * 2
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            a = H.sample(head, p)
        assert a.shape == (7, size)
        logp, ent = H.log_prob_entropy(head, p, a)
        atol = 1e-4
        if head.kind == "continuous":  # + float32 rounding of log B's lgamma terms (~4e3 at kappa ~ e^6.6)
            x_m, x_k = p.chunk(2, -1)
            alpha, beta = 1 + x_k.exp() * torch.sigmoid(x_m), 1 + x_k.exp() * torch.sigmoid(-x_m)
            terms = torch.lgamma(alpha).abs() + torch.lgamma(beta).abs() + torch.lgamma(alpha + beta).abs()
            atol = 1e-4 + 4 * torch.finfo(torch.float32).eps * terms
        assert ((logp - ref(p).log_prob(a)).abs() <= atol + 1e-4 * ref(p).log_prob(a).abs()).all()
        if head.kind != "continuous":  # (no closed-form entropy in torch for the scaled Beta: see below)
            assert torch.allclose(ent, ref(p).entropy(), atol=1e-5)


def test_continuous_entropy_matches_monte_carlo():
    # differential entropy of the scaled Beta head: -E[log pi(a)] by Monte Carlo, 4 standard errors
    head = Head("x", "continuous", 3, low=-1.0, high=2.0)
    p = torch.tensor([[0.3, -1.0, 2.0, 1.5, 0.0, -0.5]]).expand(40_000, 6)
    torch.manual_seed(0)
    lp, ent = (t.sum(-1) for t in H.log_prob_entropy(head, p, H.sample(head, p)))
    se = lp.std().item() / math.sqrt(lp.numel())
    assert ent[0].item() == pytest.approx(-lp.mean().item(), abs=4 * se)


@pytest.mark.parametrize("head", [Head("b", "bernoulli", 3), Head("c", "categorical", 2, classes=4)])
def test_sampling_frequencies_match_the_head_probabilities(head):
    n = 20_000
    p = torch.tensor([[1.5, -0.5, 0.2, -2.0, 0.7, 0.0, 3.0, -1.0][:H.n_params(head)]]).expand(n, -1)
    torch.manual_seed(3)
    a = H.sample(head, p)
    if head.kind == "bernoulli":
        freq, prob = a.mean(0), torch.sigmoid(p[0])
    else:
        freq = torch.nn.functional.one_hot(a.long(), head.classes).float().mean(0)
        prob = torch.softmax(p[0].view(head.size, head.classes), -1)
    se = torch.sqrt(prob * (1 - prob) / n)
    assert torch.all((freq - prob).abs() <= 4 * se)


@pytest.mark.parametrize("low", [-5.0, 5.0])
def test_continuous_samples_at_the_support_ends_stay_inside_it_in_float32(low):
    """A narrow head far from 0 (low +- 5, width 1e-3): low + width u for u at 1 - EPS / EPS rounds one float32 ulp
    past the widened support's end unless `sample` clamps (found by the property test below)."""
    head = Head("h", "continuous", 1, low=low, high=low + 1e-3)
    m = H.MARGIN * 1e-3
    for mode_logit in (20.0, -20.0):  # Beta mode at 1 / 0, the largest concentration
        raw = H.sample(head, torch.tensor([[mode_logit, H.LOG_KAPPA_MAX]]).expand(4096, 2))
        assert (raw >= head.low - m).all() and (raw <= head.high + m).all()


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["bernoulli", "categorical", "continuous"]), st.integers(1, 4), st.integers(2, 5),
       st.floats(-5, 5), st.floats(1e-3, 10), st.floats(-1e4, 1e4), st.integers(0, 2 ** 31 - 1))
def test_sampled_and_mode_actions_stay_in_the_head_domain(kind, size, classes, low, width, scale, seed):
    head = Head("h", kind, size, classes=classes, low=low, high=low + width)
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(64, 3, H.n_params(head), generator=g) * scale  # extreme logits included
    raw = H.sample(head, p)  # continuous samples live on the widened support; the env gets them clipped
    for a in (H.env_action(head, raw), H.mode(head, p)):
        assert a.shape == (64, 3, size) and torch.isfinite(a).all()
        if kind == "bernoulli":
            assert set(a.unique().tolist()) <= {0.0, 1.0}
        elif kind == "categorical":
            assert (a >= 0).all() and (a < classes).all() and (a == a.round()).all()
        else:
            assert (a >= head.low).all() and (a <= head.high).all()
        assert all(torch.isfinite(t).all() for t in H.log_prob_entropy(head, p, a))
    if kind == "continuous":
        m = H.MARGIN * width
        assert (raw >= head.low - m).all() and (raw <= head.high + m).all()
        assert torch.isfinite(H.log_prob_entropy(head, p, raw)[0]).all()


def test_running_norm_matches_batch_moments():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (1000, 2, 5))
    n = RunningNorm((2, 5))
    for chunk in np.array_split(x, 7):
        n.update(torch.as_tensor(chunk))
    assert np.allclose(n.mean.numpy(), x.mean(0)) and np.allclose(n.var.numpy(), x.var(0))
    z = n(torch.as_tensor(x, dtype=torch.float32))
    assert torch.allclose(n.denormalize(z), torch.as_tensor(x, dtype=torch.float32), atol=1e-4)


def test_anneal_is_linear_between_table_one_endpoints():
    hp = PRESETS["paper"]
    assert anneal(hp.clip_start, hp.clip_end, 0.0) == 0.3
    assert anneal(hp.clip_start, hp.clip_end, 0.5) == pytest.approx(0.225)
    assert anneal(hp.ent_start, hp.ent_end, 1.0) == pytest.approx(1e-4)


def test_paper_preset_is_table_one():
    hp = MAPPO({"preset": "paper"}).config.hyper()
    assert (hp.gamma, hp.gae_lambda, hp.clip_start, hp.clip_end, hp.value_coef, hp.ent_start, hp.ent_end, hp.lr) == \
        (0.9, 0.96, 0.3, 0.15, 0.5, 1e-3, 1e-4, 5e-5)
    assert hp.actor_hidden == (256,) * 4 and hp.critic_hidden == (512,) * 3
    assert MAPPO({"preset": "paper", "lr": 1e-3}).config.hyper().lr == 1e-3


@pytest.mark.parametrize("cfg, needle", [({"topology": "ccn-only"}, "topology"), ({"lr": -1}, "lr"),
                                         ({"num_envs": 0}, "num_envs"), ({"actor_hidden": [0]}, "actor_hidden"),
                                         ({"bogus": 1}, "bogus")])
def test_bad_config_is_one_clear_user_error(cfg, needle):
    with pytest.raises(UserError, match=needle):
        MAPPO(cfg)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(2, 20), st.integers(0, 19))
def test_reference_bias_centres_each_head_on_the_reference_action(u, classes, ref_class):
    ref_class %= classes
    cont = Head("p", "continuous", 1, low=-1.0, high=3.0)
    bias = H.reference_bias(cont, [-1.0 + 4.0 * u])
    beta = H._beta(bias)
    mode = (beta.concentration1 - 1) / (beta.concentration1 + beta.concentration0 - 2)  # on the widened support
    assert (-2.0 + 6.0 * mode).item() == pytest.approx(-1.0 + 4.0 * u, abs=1e-4)  # = the reference, head units
    assert H.mode(cont, bias).item() == pytest.approx(-1.0 + 4.0 * u, abs=1e-4)  # (bounds included, exactly)
    assert (beta.concentration1 + beta.concentration0).item() == pytest.approx(2 + H.REF_CONCENTRATION, rel=1e-5)
    cat = Head("c", "categorical", 1, classes=classes)
    prob = torch.softmax(H.reference_bias(cat, [ref_class]), -1)
    e = math.exp(H.REF_LOGIT_CLASS)
    assert prob[ref_class].item() == pytest.approx(e / (e + classes - 1), rel=1e-6)
    bits = torch.sigmoid(H.reference_bias(Head("b", "bernoulli", 2), [1, 0]))
    b = H.REF_LOGIT_BIT
    assert bits.tolist() == pytest.approx([1 / (1 + math.exp(-b)), 1 / (1 + math.exp(b))], rel=1e-6)
    assert torch.equal(H.reference_bias(cat, None), torch.zeros(classes))


@pytest.mark.parametrize("u", [0.0, 0.5, 1.0])
def test_continuous_head_mode_stays_responsive_at_the_reference(u):
    # Issue 6: with alpha, beta = 1 + softplus(.) a reference at a bound left d mean / d output ~ 6e-4 and the
    # heads never moved. Mode-concentration on the widened support: d mode / d x_m = (1 + 2 MARGIN) m (1 - m)
    # in head units, m = (u + MARGIN) / (1 + 2 MARGIN) on the widened support (0.208 at a bound, 0.375 mid-way).
    head = Head("p", "continuous", 1, low=0.0, high=1.0)
    x = H.reference_bias(head, [u]).requires_grad_(True)
    low, width = -H.MARGIN, 1 + 2 * H.MARGIN
    beta = H._beta(x)
    (low + width * beta.mean).sum().backward()
    m = (u + H.MARGIN) / width
    d_mode = width * m * (1 - m)
    assert H.mode(head, x.detach()).item() == pytest.approx(u, abs=1e-6)
    # the Beta mean tracks the mode to O(1/kappa): its slope is within 5 % of the mode's
    assert x.grad[0].item() == pytest.approx(d_mode, rel=0.05)
    assert d_mode > 0.2


def test_mean_baseline_gives_standardized_one_frame_advantages_and_no_critic():
    # default preset with baseline=mean (lambda=0): A_n = r_n - mean(r), then eq. 81 over frames, envs and agents
    from isacbench.multiagent import RoleSpec
    from isacbench.solvers.mappo.algorithm import prepare
    from isacbench.solvers.mappo.policy import ActorCritic
    from isacbench.solvers.mappo.rollout import Rollout

    spec = RoleSpec("r", 2, 3, (Head("x", "continuous", 1),))
    hyper = MAPPO({"baseline": "mean"}).config.hyper()
    assert (hyper.baseline, hyper.gae_lambda) == ("mean", 0.0)
    model = ActorCritic({"r": spec}, 5, hyper)
    assert len(model.critics) == 0 and len(model.value_norm) == 0
    T, B = 3, 2
    rewards = torch.tensor([[1.0, 2.0], [4.0, 0.0], [3.0, 2.0]])  # mean 2
    role = {"obs": torch.zeros(T, B, 2, 3), "state": torch.zeros(T, B, 6),
            "actions": {"x": torch.full((T, B, 2, 1), 0.5)}, "log_prob": torch.zeros(T, B, 2, 1)}
    ro = Rollout(roles={"r": role}, rewards=rewards, dones=torch.tensor([[False] * 2, [False] * 2, [True] * 2]),
                 metrics={}, episode_return=0.0, frames=T * B)
    d = prepare(model, ro, hyper)["r"]
    centred = (rewards - 2.0).flatten()  # (-1, 0, 2, -2, 1, 0): sd sqrt(10/6)
    expect = (centred / math.sqrt(10 / 6)).unsqueeze(-1).expand(-1, 2)  # both agents share the frame reward
    assert d.target is None and torch.allclose(d.advantage, expect, atol=1e-6)


# ---- speed work (issue 14): closed forms equal torch.distributions / the generic paths

@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.floats(-3, 3), st.floats(0.5, 4.0), st.floats(0.1, 3.0), st.integers(0, 2 ** 31 - 1))
def test_closed_form_beta_matches_torch_distributions_values_and_gradients(size, low, width, scale, seed):
    g = torch.Generator().manual_seed(seed)
    head = Head("x", "continuous", size, low=low, high=low + width)
    p = (torch.randn(9, 2 * size, generator=g, dtype=torch.float64) * scale).requires_grad_()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        a = H.sample(head, p.detach())
    logp, ent = H.log_prob_entropy(head, p, a)
    lo, w = H._support(head)
    dist = H._beta(p)  # torch.distributions.Beta, the previous path
    u = ((a - lo) / w).clamp(H.EPS, 1 - H.EPS)
    ref_logp, ref_ent = dist.log_prob(u) - math.log(w), dist.entropy() + math.log(w)
    assert torch.allclose(logp, ref_logp, rtol=1e-10, atol=1e-10)
    assert torch.allclose(ent, ref_ent, rtol=1e-10, atol=1e-10)
    wl, we = torch.randn(9, size, generator=g, dtype=torch.float64), torch.randn(9, size, generator=g,
                                                                                  dtype=torch.float64)
    grad = torch.autograd.grad((logp * wl).sum(), p, retain_graph=True)[0]
    ref = torch.autograd.grad((ref_logp * wl).sum(), p, retain_graph=True)[0]
    assert torch.allclose(grad, ref, rtol=1e-8, atol=1e-10)
    # the entropy's gradient holds trigammas: torch's float64 polygamma(1, .) (the reference's backward) is
    # accurate to 5e-10 relative only, the heads' `digamma_trigamma` to 1e-13 (test below, against scipy)
    grad = torch.autograd.grad((ent * we).sum(), p)[0]
    ref = torch.autograd.grad((ref_ent * we).sum(), p)[0]
    assert torch.allclose(grad, ref, rtol=1e-8, atol=1e-8)


def test_digamma_trigamma_match_scipy():
    from scipy import special

    x = np.concatenate([np.linspace(1e-3, 1, 501), np.linspace(1, 30, 20001), np.logspace(1.5, 5, 2001)])
    psi, psi1 = H.digamma_trigamma(torch.tensor(x))
    assert np.allclose(psi.numpy(), special.digamma(x), rtol=1e-12, atol=1e-12)
    assert np.allclose(psi1.numpy(), special.polygamma(1, x), rtol=1e-12, atol=0)
    psi32, psi1_32 = H.digamma_trigamma(torch.tensor(x[x >= 1], dtype=torch.float32))  # float32: a few ulps
    assert np.allclose(psi32.numpy(), special.digamma(x[x >= 1]), rtol=1e-6, atol=2e-6)
    assert np.allclose(psi1_32.numpy(), special.polygamma(1, x[x >= 1]), rtol=2e-6, atol=0)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 5), st.integers(2, 17), st.floats(0.1, 20.0), st.integers(0, 2 ** 31 - 1))
def test_categorical_closed_form_gradient_matches_autograd(size, classes, scale, seed):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(6, 3, size, classes, generator=g, dtype=torch.float64) * scale).requires_grad_()
    a = torch.randint(0, classes, (6, 3, size), generator=g)
    logp, ent = H.categorical_log_prob_entropy(z, a)
    ref = D.Categorical(logits=z)
    assert torch.equal(logp, torch.log_softmax(z, -1).gather(-1, a.unsqueeze(-1)).squeeze(-1))
    assert torch.allclose(logp, ref.log_prob(a), atol=1e-12) and torch.allclose(ent, ref.entropy(), atol=1e-12)
    wl, we = torch.randn(6, 3, size, generator=g, dtype=torch.float64), torch.randn(6, 3, size, generator=g,
                                                                                     dtype=torch.float64)
    grad = torch.autograd.grad((logp * wl).sum() + (ent * we).sum(), z)[0]
    want = torch.autograd.grad((ref.log_prob(a) * wl).sum() + (ref.entropy() * we).sum(), z)[0]
    assert torch.allclose(grad, want, rtol=1e-9, atol=1e-12)


def _blocked_equals_one_pass(run, x, kind, block, monkeypatch):
    """run() under one block and under `block` elements per block: every output equal bit for bit; the
    blocks cover x's leading axis once, each but the last a multiple of H.ALIGN elements."""
    monkeypatch.setitem(H.BLOCK_ELEMENTS, kind, 1 << 30)
    whole = run()
    monkeypatch.setitem(H.BLOCK_ELEMENTS, kind, block)
    blocks = H.row_blocks(x, block)
    n, row = x.shape[0], x[:1].numel()
    assert torch.equal(torch.cat([torch.arange(n)[b] for b in blocks]), torch.arange(n))
    assert all(len(range(n)[b]) * row % H.ALIGN == 0 for b in blocks[:-1])
    assert len(blocks) == 1 if block >= n * row else len(blocks) >= 2  # small blocks do split the tensor
    for x_blocked, x_whole in zip(run(), whole):
        assert torch.equal(x_blocked, x_whole)
    return whole


def test_row_blocks_split_cpu_tensors_only():
    """The blocks fit the CPU's cache; a tensor elsewhere (a GPU; `meta` here) is one block."""
    assert len(H.row_blocks(torch.zeros(100, 2, 6144), 1 << 18)) == 5  # 21 rows of 12,288 per block
    assert H.row_blocks(torch.zeros(100, 2, 6144, device="meta"), 1 << 18) == [slice(None)]


@pytest.mark.parametrize("block", [1, 3000, 1 << 30])  # the smallest aligned blocks, uneven ones, one block
@pytest.mark.parametrize("classes", [16, 5])  # rows of 2 x 7 x 16 = 224 and of 70 elements (unaligned)
def test_categorical_blocks_give_the_values_of_one_pass(block, classes, monkeypatch):
    """categorical_log_prob_entropy runs over blocks of the leading axis: on a strided slice of an output layer
    (as the FPB's beam logits), log-probabilities, entropies and the gradient equal bit for bit those of the
    whole tensor at once (one block)."""
    g = torch.Generator().manual_seed(3)
    out = torch.randn(45, 2, 8 + 7 * classes, generator=g) * 3
    z = out[..., 8:].unflatten(-1, (7, classes)).requires_grad_()  # non-contiguous, as split from the output layer
    a = torch.randint(0, classes, (45, 2, 7), generator=g)
    wl, we = torch.randn(45, 2, 7, generator=g), torch.randn(45, 2, 7, generator=g)

    def run():
        logp, ent = H.categorical_log_prob_entropy(z, a)
        return logp, ent, torch.autograd.grad((logp * wl).sum() + (ent * we).sum(), z)[0]

    whole = _blocked_equals_one_pass(run, z, "categorical", block, monkeypatch)
    assert torch.equal(whole[0], torch.log_softmax(z, -1).gather(-1, a.unsqueeze(-1)).squeeze(-1))


@pytest.mark.parametrize("block", [1, 3000, 1 << 30])
@pytest.mark.parametrize("size", [48, 5])  # rows of 2 x 48 and 2 x 5 (unaligned) components
def test_beta_blocks_give_the_values_of_one_pass(block, size, monkeypatch):
    """beta_log_prob_entropy runs over blocks of the leading axis: log-densities, entropies and both gradients
    (parameters and the point u) equal bit for bit those of one pass, on a strided slice of an output layer."""
    g = torch.Generator().manual_seed(4)
    out = torch.randn(45, 2, 2 * size + 3, generator=g) * 2
    p = out[..., 3:].requires_grad_()
    u = (torch.rand(45, 2, size, generator=g) * 0.98 + 0.01).requires_grad_()
    wl, we = torch.randn(45, 2, size, generator=g), torch.randn(45, 2, size, generator=g)

    def run():
        logp, ent = H.beta_log_prob_entropy(p, u, 0.7)
        return logp, ent, *torch.autograd.grad((logp * wl).sum() + (ent * we).sum(), (p, u))

    _blocked_equals_one_pass(run, u, "beta", block, monkeypatch)


def test_agent_linear_batched_product_equals_einsum():
    from isacbench.solvers.mappo.networks import AgentLinear

    torch.manual_seed(0)
    layer = AgentLinear(3, 5, 7, 1.0).double()
    with torch.no_grad():
        layer.bias.normal_()
    for shape in ((4, 3, 5), (2, 4, 3, 5), (3, 5)):
        x = torch.randn(*shape, dtype=torch.float64)
        want = torch.einsum("...ni,noi->...no", x, layer.weight) + layer.bias
        assert torch.allclose(layer(x), want, atol=1e-12)


def test_agent_linear_gradients_equal_autograd_through_einsum():
    from isacbench.solvers.mappo.networks import AgentLinear

    torch.manual_seed(0)
    layer = AgentLinear(3, 5, 7, 1.0).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 7, dtype=torch.float64)
    got = torch.autograd.grad((layer(x) * w).sum(), (x, layer.weight, layer.bias))
    want = torch.autograd.grad(((torch.einsum("...ni,noi->...no", x, layer.weight) + layer.bias) * w).sum(),
                               (x, layer.weight, layer.bias))
    for g, r in zip(got, want):
        assert g.shape == r.shape and torch.allclose(g, r, atol=1e-12)
    # a frozen input (observations) or frozen parameters: only the gradients asked for
    xw = torch.randn(4, 3, 5, dtype=torch.float64)
    assert torch.autograd.grad(layer(xw).sum(), layer.weight)[0].shape == layer.weight.shape


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 4), st.floats(0.1, 3.0), st.integers(0, 2 ** 31 - 1))
def test_closed_form_beta_gradient_in_the_action_matches_autograd(size, scale, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(5, 2 * size, generator=g, dtype=torch.float64) * scale
    u = (torch.rand(5, size, generator=g, dtype=torch.float64) * 0.98 + 0.01).requires_grad_()
    logp, _ = H.beta_log_prob_entropy(p, u)
    ref = H._beta(p).log_prob(u)
    assert torch.allclose(torch.autograd.grad(logp.sum(), u)[0], torch.autograd.grad(ref.sum(), u)[0], rtol=1e-8)


def test_fused_adam_takes_the_same_steps_as_the_default_adam():
    from isacbench.solvers.mappo.algorithm import make_optimizer

    def run(fused: bool):
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        hyper = PRESETS["default"]
        opt = make_optimizer(net, hyper) if fused else torch.optim.Adam(net.parameters(), lr=hyper.lr, eps=1e-5)
        x = torch.randn(16, 5)
        for _ in range(5):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    assert torch.allclose(run(True), run(False), rtol=1e-6, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["bernoulli", "categorical", "continuous"]), st.integers(1, 4), st.integers(2, 6),
       st.floats(-2, 2), st.floats(0.5, 3), st.integers(0, 2 ** 31 - 1))
def test_rollout_log_prob_is_exactly_the_training_log_prob(kind, size, classes, low, width, seed):
    """The rollout stores `log_prob`; PPO's first ratio uses `log_prob_entropy`: they must be bit-equal."""
    head = Head("h", kind, size, classes=classes, low=low, high=low + width)
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(5, 2, H.n_params(head), generator=g) * 3
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        a = H.sample(head, p)
    assert torch.equal(H.log_prob(head, p, a), H.log_prob_entropy(head, p, a)[0])


@pytest.mark.parametrize("shape, strided", [((6, 9), False), ((5, 3, 9), False), ((2, 5, 3, 9), False),
                                            ((4, 3, 9), True)])
@pytest.mark.parametrize("threads, bias", [(None, True), (1, True), (2, True), (2, False)])
def test_critic_linear_gives_nn_linears_values_and_gradients_on_any_product_threads(shape, strided, threads, bias):
    """The critics' `Linear` (its own backward on 2-D and 3-D inputs, F.linear's elsewhere) gives nn.Linear's
    outputs and gradients bit for bit, with its products on one or two threads."""
    from isacbench.solvers.mappo.networks import Linear, product_threads

    torch.manual_seed(0)
    ours, ref = Linear(9, 300, bias=bias), torch.nn.Linear(9, 300, bias=bias)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(*shape) if not strided else torch.randn(*shape[:-1], 2 * shape[-1])[..., ::2]
    assert x.is_contiguous() is not strided
    g = torch.randn(*x.shape[:-1], 300)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    with product_threads(threads):
        out = ours(xs[0])
        got = torch.autograd.grad((out * g).sum(), [t for t in (xs[0], ours.weight, ours.bias) if t is not None])
    want_out = ref(xs[1])
    want = torch.autograd.grad((want_out * g).sum(), [t for t in (xs[1], ref.weight, ref.bias) if t is not None])
    assert torch.equal(out, want_out)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_product_threads_hold_only_inside_the_products_and_nest():
    from isacbench.solvers.mappo.networks import _product, product_threads

    x, own = torch.ones(3), torch.get_num_threads()
    n = own + 1
    threads = lambda a: a * torch.get_num_threads()  # noqa: E731 - a product whose value shows its thread count
    with product_threads(n):
        assert torch.get_num_threads() == own
        with product_threads(None):
            assert torch.equal(_product(threads, x), x * own)
        # checked against torch's own setting: it differs there, so it stays on torch's setting, call after call
        assert [float(_product(threads, x)[0]) for _ in range(3)] == [own] * 3
        assert torch.equal(_product(lambda a: a * 2, x), x * 2)  # a product that agrees
    assert torch.get_num_threads() == own


def test_products_keep_n_threads_only_where_they_agree_with_torchs_setting(monkeypatch):
    from isacbench.solvers.mappo import networks

    monkeypatch.setattr(networks, "_SAME", {})
    seen = []

    def agrees(a):
        seen.append(torch.get_num_threads())
        return a + 1
    own, x = torch.get_num_threads(), torch.zeros(4, 3)
    with networks.product_threads(own + 1):
        for _ in range(3):
            assert torch.equal(networks._product(agrees, x), x + 1)
        networks._product(agrees, torch.zeros(5, 3).t())  # another shape and strides: checked again
    # each new shape: a random probe on torch's setting, then on own + 1 threads; every real call on own + 1
    assert seen == [own, own + 1, own + 1, own + 1, own + 1, own, own + 1, own + 1]
    assert list(networks._SAME.values()) == [True, True]
    torch.manual_seed(3)
    before = torch.rand(1)
    monkeypatch.setattr(networks, "_SAME", {})
    torch.manual_seed(3)
    with networks.product_threads(own + 1):
        networks._product(agrees, torch.zeros(6, 2))
    assert torch.equal(torch.rand(1), before)  # the probe's draws leave torch's stream alone
