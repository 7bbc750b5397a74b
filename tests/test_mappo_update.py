"""The PPO epochs' diagnostics are read-only: `update` (with its per-role losses, entropies, clip
fractions, KL estimates and gradient norms) trains bit-identically to a bare PPO loop without any, and
the gradient norms it reports are the last epoch's means of the per-role norms before clipping."""
from __future__ import annotations

import pytest
import torch

from isacbench.solvers.mappo import HAPPO, IPPO, MAPPO
from isacbench.solvers.mappo.algorithm import actor_loss, critic_loss, make_optimizer, prepare, update

from test_marl_variants import ROLES, SMALL, toy_rollout
from isacbench.solvers.mappo.policy import ActorCritic


def bare_update(model, optimizer, data, hyper, clip, ent_coef) -> dict[str, float]:
    """The same PPO epochs without diagnostics; returns the last epoch's mean gradient norm per role
    (and critic), from the concatenated gradients before clipping."""
    n = next(iter(data.values())).log_prob.shape[0]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    critics = [r for r in data if data[r].critic]
    norms: dict[str, float] = {}
    for epoch in range(hyper.epochs):
        for idx in torch.tensor_split(torch.randperm(n), min(hyper.minibatches, n)):
            total = sum(actor_loss(model, r, data[r], idx, clip, ent_coef, hyper, diagnostics=False)[0] for r in data)
            total = total + sum(hyper.value_coef * critic_loss(model, data[r], idx) for r in critics)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if epoch == hyper.epochs - 1:
                parts = [(f"{r.upper()}/grad_norm_actor", model.actors[r]) for r in data]
                parts += [(f"{data[r].critic.upper()}/grad_norm_critic", model.critics[data[r].critic]) for r in critics]
                for key, module in parts:
                    g = torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])
                    norms[key] = norms.get(key, 0.0) + float(g.norm()) / min(hyper.minibatches, n)
            torch.nn.utils.clip_grad_norm_(params, hyper.max_grad_norm)
            optimizer.step()
    return norms


def trained(hyper, step, B: int = 4) -> tuple[dict, dict, dict]:
    """(weights, Adam state, what `step` returns) after step(model, optimizer, rollout) on a toy rollout of B envs."""
    torch.manual_seed(0)
    model = ActorCritic(ROLES, 5, hyper)
    rollout = toy_rollout(model, T=5, B=B)
    opt = make_optimizer(model, hyper)
    torch.manual_seed(1)
    stats = step(model, opt, rollout)
    return model.state_dict(), opt.state_dict()["state"], stats


def assert_same_weights_and_adam(a: tuple, b: tuple) -> None:
    for k, v in a[0].items():
        assert torch.equal(v, b[0][k]), k
    for i, s in a[1].items():
        for k, v in s.items():
            assert torch.equal(v, b[1][i][k]), (i, k)


@pytest.mark.parametrize("over", [dict(), dict(ratio="joint"), dict(baseline="mean"), dict(max_grad_norm=1e-3)])
def test_update_with_diagnostics_trains_bit_identically_to_a_bare_ppo_loop(over):
    hyper = MAPPO({**SMALL, "epochs": 3, "minibatches": 2, **over}).config.hyper()
    full, bare = (trained(hyper, lambda m, o, r: fn(m, o, prepare(m, r, hyper), hyper, 0.2, 0.01))
                  for fn in (update, bare_update))
    assert_same_weights_and_adam(full, bare)
    stats, norms = full[2], bare[2]
    assert norms and all(v > 0 for v in norms.values())
    for k, v in norms.items():  # the same per-role gradients, before clipping, averaged over the last epoch
        assert stats[k] == pytest.approx(v, rel=1e-5), k


@pytest.mark.parametrize("solver", [IPPO, HAPPO])
def test_update_diagnostics_of_the_variants_are_finite_and_cover_every_role(solver):
    hyper = solver({**SMALL, "epochs": 3, "minibatches": 2}).config.hyper()
    torch.manual_seed(0)
    model = ActorCritic(ROLES, 5, hyper)
    data = prepare(model, toy_rollout(model, T=5, B=4), hyper)
    stats = update(model, make_optimizer(model, hyper), data, hyper, 0.2, 0.01)
    for role in ("A", "B", "C"):
        for k in ("entropy", "approx_kl", "clip_fraction", "actor_loss", "grad_norm_actor"):
            assert torch.isfinite(torch.tensor(stats[f"{role}/{k}"])), (role, k)
        assert stats[f"{role}/grad_norm_actor"] > 0


@pytest.mark.parametrize("solver, over", [(MAPPO, dict()), (MAPPO, dict(baseline="mean")), (IPPO, dict()),
                                          (HAPPO, dict())])
def test_products_on_two_threads_train_bit_identically(solver, over):
    """`networks.product_threads`: the actors' and critics' products on 2 torch threads (the solver's learner with
    2+ CPUs), every other operation on one, give the same advantages, weights, Adam state and diagnostics as all
    on one thread."""
    from isacbench.solvers.mappo.networks import product_threads, torch_threads

    hyper = solver({**SMALL, "actor_hidden": (64, 300), "critic_hidden": (96, 300), "epochs": 2, "minibatches": 2,
                    **over}).config.hyper()

    def step(threads):
        def run(model, opt, rollout):
            with product_threads(threads):
                data = prepare(model, rollout, hyper)
                return [d.advantage for d in data.values()], update(model, opt, data, hyper, 0.2, 0.01)
        return run
    with torch_threads(1):  # the solver's `threads`
        one, two = trained(hyper, step(None), B=40), trained(hyper, step(2), B=40)
    assert_same_weights_and_adam(one, two)
    assert all(torch.equal(a, b) for a, b in zip(one[2][0], two[2][0])) and one[2][1] == two[2][1]
