"""Smoke test of the benchmarks at tiny sizes: each runs, its ratios are positive finite numbers
computed from its own measurements, and the report is generated from them. No timing assertions."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import __main__ as cli
from benchmarks import bench_env, bench_evaluators, bench_mappo, bench_solvers
from benchmarks.common import fit_exponent
from isacbench.api import Budget
from isacbench.tasks.sg_cluster.config import SgClusterConfig
from isacbench.tasks.sg_nulling.config import SgNullingConfig


@pytest.fixture(scope="module")
def sections():
    return {m.__name__.rsplit(".", 1)[1]: m.run("tiny")
            for m in (bench_env, bench_evaluators, bench_solvers, bench_mappo)}


def test_every_benchmark_reports_finite_positive_figures(sections):
    for name, sec in sections.items():
        assert sec.results, name
        for r in sec.results:
            assert math.isfinite(r.value), (name, r)
            if r.unit != "k":  # a fitted exponent may be any sign; everything else is a time, rate or ratio
                assert r.value > 0, (name, r)


def test_ratios_are_computed_from_their_own_measurements(sections):
    ratios = [r for sec in sections.values() for r in sec.results if r.unit == "x"]
    assert len(ratios) >= 4
    for r in ratios:
        assert r.numerator > 0 and r.denominator > 0 and math.isfinite(r.numerator)
        assert r.value == pytest.approx(r.numerator / r.denominator, rel=1e-12)


def test_env_bench_covers_requested_batches_ceiling_and_per_coefficient_cost(sections):
    names = [r.name for r in sections["bench_env"].results]
    assert names == ["batched vs per-env loop, B=1", "batched vs per-env loop, B=4",
                     "env fraction of one-core ceiling, B=4", "cost per channel coefficient, M=1",
                     "cost per channel coefficient, M=4", "env-frame time exponent in M (time ~ M^k)"]
    ceiling = sections["bench_env"].results[2]
    assert ceiling.target == bench_env.TARGET_CEILING and not ceiling.at_most
    assert ceiling.value == pytest.approx(ceiling.numerator / ceiling.denominator, rel=1e-12)


def test_ceiling_is_the_counted_work_at_the_measured_rates():
    p = bench_env.EntUsrTask().params
    work = bench_env.frame_work(p)
    c = p.MA * p.MK * p.M * p.N
    assert sum(work["draws32"].values()) == 4 * c  # eps and pilot noise: two float32 normals per coefficient
    rates = {"draws32": 1e8, "draws64": 5e7, "flops": 1e10, "bytes": 1e10}
    ceil = bench_env.ceiling_seconds(work, rates)
    assert ceil["draws32"] == pytest.approx(4 * c / 1e8)
    assert ceil["total"] == pytest.approx(sum(v for k, v in ceil.items() if k != "total"))


def test_mappo_figures_carry_their_targets(sections):
    res = {r.name: r for r in sections["bench_mappo"].results}
    upd = res["MAPPO update / CleanRL-style PPO update"]
    assert upd.target == bench_mappo.TARGET_UPDATE and upd.at_most
    assert upd.met == (upd.value <= upd.target)
    e2e = res["MAPPO frames/s / env frames/s"]
    assert e2e.target == bench_mappo.TARGET_END_TO_END and not e2e.at_most
    env_bound = res["MAPPO frames/s / env frames/s, bound from MAPPO's own environment work"]
    assert 0 < e2e.value <= env_bound.value  # the environment is timed inside the training run
    shares = [r.value for r in sections["bench_mappo"].results if r.unit == "fraction"]
    assert len(shares) == 2 and all(0 < s < 1 for s in shares) and sum(shares) < 1
    scoring = res["MAPPO environment work in the mode continuations"].value  # the default's G_s (stagewise)
    assert 0 < scoring < 1
    inline = res["MAPPO frames/s / env frames/s, continuations inline (one thread)"]
    assert 0 < inline.value <= res["MAPPO frames/s / env frames/s, bound from MAPPO's own environment work, "
                                   "one thread"].value
    worker = res["MAPPO training, continuations on a worker thread vs inline"].value
    assert worker == pytest.approx(e2e.value / inline.value)


def test_env_timers_count_a_method_called_from_another_once_and_a_worker_threads_apart():
    """profile_training's env timers share a per-thread depth counter: a timed method called from inside another
    (ent-usr's frame_rewards calling frame_reward, a branch's calls) adds nothing, so the env share is not counted
    twice; calls on another thread (mappo's continuation worker) count under `worker:` keys."""
    from collections import defaultdict
    totals, depth, calls = defaultdict(float), threading.local(), []
    inner = bench_mappo._timed(lambda: calls.append("inner"), totals, "inner", "env", nested=depth)
    outer = bench_mappo._timed(lambda: (inner(), inner()), totals, "outer", "env", nested=depth)
    outer()
    assert calls == ["inner", "inner"] and depth.depth == 0
    assert totals["inner"] == 0 and totals["outer"] > 0 and totals["env"] == totals["outer"]
    inner()  # called on its own it counts
    assert totals["inner"] > 0 and totals["env"] == totals["outer"] + totals["inner"]
    main = dict(totals)
    worker = threading.Thread(target=outer)
    worker.start()
    worker.join()
    assert calls == ["inner"] * 5 and dict((k, v) for k, v in totals.items() if not k.startswith("worker:")) == main
    assert totals["worker:outer"] > 0 and totals["worker:env"] == totals["worker:outer"]
    assert totals["worker:inner"] == 0


def test_normal_probe_is_the_normal_distributions_log_density_and_entropy():
    g = torch.Generator().manual_seed(3)
    p, u = torch.randn(5, 2, 8, generator=g) * 3, torch.rand(5, 2, 4, generator=g)
    logp, ent = bench_mappo.normal_probe(p, u, math.log(2.5))
    x_m, x_k = p.chunk(2, dim=-1)
    normal = torch.distributions.Normal(torch.sigmoid(x_m), torch.exp(x_k.clamp(-5.0, 2.0)))
    torch.testing.assert_close(logp, normal.log_prob(u) - math.log(2.5))
    torch.testing.assert_close(ent, normal.entropy() + math.log(2.5))


def test_normal_probe_figure_is_its_update_over_cleanrls(sections):
    res = {r.name: r for r in sections["bench_mappo"].results}
    probe = res["MAPPO update with a Normal-like probe in place of the Beta heads / CleanRL-style PPO update"]
    upd = res["MAPPO update / CleanRL-style PPO update"]
    assert probe.target is None and probe.denominator == upd.denominator  # the same CleanRL-style update
    assert probe.value == pytest.approx(probe.numerator / upd.denominator, rel=1e-12)


def test_cleanrl_baseline_has_the_requested_parameter_count():
    agent = bench_mappo.CleanRLAgent(100, (32, 32), 50_000)
    n = sum(p.numel() for p in agent.parameters())
    assert abs(n - 50_000) <= 33 * bench_mappo.CLASSES  # output width rounded to whole categoricals
    logp, ent = agent.log_prob_entropy(torch.zeros(2, 100), torch.zeros(2, agent.n_out // bench_mappo.CLASSES,
                                                                         dtype=torch.long))
    assert logp.shape == ent.shape == (2,)


def test_upper_bound_targets_are_met_below_them():
    from benchmarks.common import Result

    assert Result("b", "r", 0.9, "x", target=1.0, at_most=True).met
    assert not Result("b", "r", 1.1, "x", target=1.0, at_most=True).met
    assert Result("b", "r", 1.1, "x", target=1.0).met


def test_naive_nulling_baseline_agrees_with_vectorized_evaluator():
    cfg = SgNullingConfig()
    pts = [(1, 1, 1), (3, 2, 7)]
    naive = bench_evaluators.naive_nulling(cfg, pts)
    vec = bench_evaluators.vectorized_nulling(cfg, pts)
    np.testing.assert_allclose(naive, vec, rtol=bench_evaluators.NULLING_AGREE)


def test_naive_cluster_baseline_agrees_with_vectorized_evaluator():
    cfg = SgClusterConfig()
    pts = [(1, 0.4), (4, 1.0)]
    kcs = {L: bench_evaluators.cluster_kc(cfg, L) for L, _ in pts}
    naive = bench_evaluators.naive_cluster(cfg, pts, kcs)
    np.testing.assert_allclose(naive, bench_evaluators.vectorized_cluster(cfg, pts, kcs),
                               rtol=bench_evaluators.CLUSTER_AGREE)
    assert naive[1] > naive[0]  # cooperation (L = 4, full power) beats L = 1 at 40% power


def test_timed_problem_trace_matches_runner_trace():
    task = bench_solvers.registry.load("task", "sg-nulling")()
    run = bench_solvers.run_static(task, "random", Budget(evaluations=30))
    assert run.evaluations == len(run.times) == 30
    assert all(b >= a for a, b in zip(run.times, run.times[1:]))
    assert all(b >= a for a, b in zip(run.bests, run.bests[1:]))
    assert run.bests[-1] == run.objective  # random returns its incumbent, re-evaluated identically


def test_time_to_target_semantics():
    r = bench_solvers.Run("s", "b", objective=5.0, wall_s=9.0, times=[1.0, 2.0, 3.0], bests=[1.0, 4.0, 5.0])
    assert r.time_to(3.5) == 2.0
    assert r.time_to(5.0) == 3.0
    assert r.time_to(6.0) is None
    bulk = bench_solvers.Run("p", "b", objective=5.0, wall_s=9.0, times=[9.0], bests=[-math.inf])
    assert bulk.time_to(4.9) == 9.0  # a solver that evaluates at the end reaches the target when it returns


@settings(max_examples=30, deadline=None)
@given(st.floats(-3, 3), st.floats(0.1, 100))
def test_fit_exponent_recovers_power_laws(k, c):
    x = np.array([4.0, 9.0, 16.0, 36.0])
    assert fit_exponent(x, c * x ** k) == pytest.approx(k, abs=1e-9)


def test_cli_writes_report_from_measurements(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert cli.main(["--scale", "tiny", "--only", "env", "--out", str(out)]) == 0
    text = out.read_text()
    for key in ("## Machine", "numpy", "torch", "load_avg_1_5_15", "batched vs per-env loop, B=4", "no torch backend",
                "env fraction of one-core ceiling, B=4", "One-core ceiling of a frame"):
        assert key in text
