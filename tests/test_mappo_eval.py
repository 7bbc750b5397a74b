"""Issue 15: MAPPO's periodic evaluation of its policy on the task's evaluation episodes
(`Reporter.evaluate`), logged as `eval/<metric>`, without changing what training computes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import cli

from isacbench.api import Budget, Reporter
from isacbench.solvers.mappo import MAPPO

from test_mappo_env import ToyEnv, play
from test_mappo_training import ROLLOUT, Interrupt, curve, train


def evaluator(calls: list):
    """A `Reporter.evaluate` on two toy episodes that also draws from the global generators (as a
    stochastic policy or an environment might): training must not notice."""
    def evaluate(policy) -> dict[str, float]:
        torch.rand(5)
        np.random.random(3)
        calls.append(policy)
        return {"score": play(ToyEnv(4), policy.act, (1000, 1001)), "other": float(len(calls))}
    return evaluate


def trained(solver) -> list[dict]:
    """The history without the evaluation's entries."""
    return [{k: v for k, v in h.items() if not k.startswith("eval/")} for h in curve(solver)]


def test_evaluation_runs_every_n_updates_and_at_the_end_and_training_is_bit_identical():
    calls, logged = [], []
    plain, p_plain = train(5 * ROLLOUT, reporter=Reporter(evaluate=evaluator(calls)), eval_every=0)
    assert calls == [] and not any(k.startswith("eval/") for h in plain.history for k in h)
    ev, p_ev = train(5 * ROLLOUT, eval_every=2, reporter=Reporter(
        evaluate=evaluator(calls), log_metrics=lambda m, s: logged.append((s, m))))
    assert len(calls) == 3  # after updates 2 and 4, and after the last (5)
    assert trained(ev) == trained(plain)
    for (k, v), (_, w) in zip(p_plain.model.state_dict().items(), p_ev.model.state_dict().items()):
        assert torch.equal(v, w), k
    steps = [(s, m["eval/score"], m["eval/other"]) for s, m in logged if "eval/score" in m]
    assert [(s, o) for s, _, o in steps] == [(2 * ROLLOUT, 1.0), (4 * ROLLOUT, 2.0), (5 * ROLLOUT, 3.0)]
    assert all(set(m) >= {"train/return", "train/loss"} for s, m in logged)  # one record per update
    # the last evaluation is the returned policy's score on the same episodes
    assert steps[-1][1] == play(ToyEnv(4), p_ev.act, (1000, 1001))
    assert [h.get("eval/score") for h in ev.history] == [None, steps[0][1], None, steps[1][1], steps[2][1]]


def test_a_time_budget_is_evaluated_after_its_last_update():
    calls = []
    solver = MAPPO({"num_envs": 4, "actor_hidden": (8,), "critic_hidden": (8,), "eval_every": 10 ** 6})
    solver.train(ToyEnv, Budget(seconds=0.3), np.random.default_rng(0), Reporter(evaluate=evaluator(calls)))
    assert len(calls) == 1 and "eval/score" in solver.history[-1]
    assert not any("eval/score" in h for h in solver.history[:-1])


def test_eval_every_is_operational():
    assert MAPPO({"eval_every": 3}).variant == MAPPO({"eval_every": 0}).variant == MAPPO().variant


def test_a_resumed_run_carries_the_evaluation_history(tmp_path):
    straight_log = []
    straight, _ = train(6 * ROLLOUT, eval_every=2, reporter=Reporter(
        evaluate=evaluator([]), log_metrics=lambda m, s: straight_log.append((s, m))))

    def stop_after_4(fraction, text):
        if "update 4," in text:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(6 * ROLLOUT, eval_every=2, checkpoint_every=2, reporter=Reporter(
            progress=stop_after_4, artifact_dir=str(tmp_path), evaluate=evaluator([])))
    logged = []
    resumed, _ = train(6 * ROLLOUT, eval_every=2, resume=str(tmp_path), reporter=Reporter(
        evaluate=evaluator([]), log_metrics=lambda m, s: logged.append((s, m))))

    def evals(log):
        return [(s, m["eval/score"]) for s, m in log if "eval/score" in m]
    assert evals(logged) == evals(straight_log) and [s for s, _ in evals(logged)] == [2 * ROLLOUT, 4 * ROLLOUT,
                                                                                     6 * ROLLOUT]
    assert trained(resumed) == trained(straight)


def test_the_cli_logs_the_evaluation_usr_at_its_frame_steps(workdir):
    """A real ent-usr run (3 updates of 2 x 20 frames), evaluated after update 2 and the last:
    `eval/usr` in the store at frames 80 and 120, the last equal to the run's objective."""
    from mlflow.tracking import MlflowClient

    p = cli(["run", "--task", "ent-usr", "--solver", "mappo", "-S", "num_envs=2", "-S", "actor_hidden=[16]",
             "-S", "critic_hidden=[16]", "-S", "eval_every=2", "--budget-frames", "120", "--json"], workdir)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    usr = sorted((m.step, m.value) for m in client.get_metric_history(result["run_id"], "eval/usr"))
    assert [s for s, _ in usr] == [80, 120]
    assert usr[-1][1] == pytest.approx(result["objective"], rel=1e-12)
    final = client.get_run(result["run_id"]).data.metrics
    for name in ("utility", "signaling", "coop_share"):  # every per-frame metric, as in the final result
        assert final[f"eval/{name}"] == pytest.approx(final[name], rel=1e-12)
    assert [m.step for m in client.get_metric_history(result["run_id"], "train/usr")] == [40, 80, 120]
    assert "evaluating the policy of update 2" in p.stderr
