"""Issue 15: the leaderboard's gap to the task's oracle (price of decentralization) and its
learning-curve panel, from a real MLflow SQLite store; numbers recomputed here by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from isacbench import leaderboard
from isacbench.api import Budget, LearningSolver
from isacbench.runner import RunSpec, run
from isacbench.tracking import TAG, Tracker

from toy_frames import ChannelTask


def record(tracker: Tracker, variant: str, seed: int, instance: str, objective: float, feasible: bool = True,
           budget: str = "evaluations=10") -> None:
    """One FINISHED run as the runner tags it (`runner.run_tags`)."""
    run_id = tracker.start("toy", variant, seed, {"task.capacity": instance}, {
        TAG + "task": "toy", TAG + "solver": variant.split("[")[0], TAG + "variant": variant, TAG + "seed": str(seed),
        TAG + "budget": budget, TAG + "instance": instance})
    tracker.log_metrics(run_id, {"objective": objective, "feasible": float(feasible), "wall_s": 1.0,
                                 "evaluations": 10.0})
    tracker.finish(run_id, "FINISHED")


def test_gap_to_the_oracle_per_instance(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    oracle, learner, other = [10.0, 12.0], [8.0, 9.0, 10.0], [11.5]  # instance a; seeds differ in count
    for seed, v in enumerate(oracle):
        record(tracker, "oracle", seed, "a", v)
    record(tracker, "oracle", 2, "a", 100.0, feasible=False)  # infeasible: not part of the oracle's mean
    for seed, v in enumerate(learner):
        record(tracker, "learner", seed, "a", v)
        record(tracker, "learner", seed, "b", v + 1)  # instance b: no oracle run
    record(tracker, "other", 0, "a", other[0])
    paths = leaderboard.write(tracker, "toy", tmp_path / "lb", oracle="oracle")
    table = pd.read_csv(paths[1], keep_default_na=True)
    a = table[table["instance"] == "a"].set_index("solver")

    ref = np.mean(oracle)  # 11
    assert a.loc["learner", "oracle_gap_pct"] == pytest.approx(100 * (ref - np.mean(learner)) / ref, rel=1e-12)
    assert a.loc["other", "oracle_gap_pct"] == pytest.approx(100 * (ref - 11.5) / ref, rel=1e-12)  # -4.545...
    assert tuple(a.loc["oracle", ["oracle_gap_pct", "oracle_gap_ci_low", "oracle_gap_ci_high"]]) == (0, 0, 0)
    # the CI of the difference lies within what resampling can reach, and around the gap
    lo, hi = a.loc["learner", ["oracle_gap_ci_low", "oracle_gap_ci_high"]]
    assert 100 * (min(oracle) - max(learner)) / ref <= lo < a.loc["learner", "oracle_gap_pct"] < hi
    assert hi <= 100 * (max(oracle) - min(learner)) / ref
    # one run against the oracle's two seeds: the oracle's spread alone makes the CI
    assert a.loc["other", "oracle_gap_ci_low"] < a.loc["other", "oracle_gap_ci_high"]
    assert table[table["instance"] == "b"]["oracle_gap_pct"].isna().all()
    assert a.loc["learner", "gap_pct"] == pytest.approx(100 * (12 - 9.0) / 12)  # to the best known: unchanged

    md = paths[0].read_text()
    assert "| gap % | gap to oracle % |" in md
    b_section = md.split("## Instance `b`")[1]
    (row,) = [line for line in b_section.splitlines() if line.startswith("| 1 | learner |")]
    assert row.split(" | ")[5] == "–"
    (row,) = [line for line in md.split("## Instance `b`")[0].splitlines() if "| learner |" in line]
    assert row.split(" | ")[5] == (f"{a.loc['learner', 'oracle_gap_pct']:.2f} [{lo:.2f}, {hi:.2f}]")
    # without a declared oracle, no column
    plain = leaderboard.write(tracker, "toy", tmp_path / "plain")
    assert "oracle_gap_pct" not in pd.read_csv(plain[1]) and "gap to oracle" not in plain[0].read_text()


def test_ent_usr_declares_its_topology_oracle():
    from isacbench import registry
    from isacbench.tasks.ent_usr.task import EntUsrTask

    assert EntUsrTask.oracle == "topology-search"
    assert registry.load("solver", EntUsrTask.oracle).name == "topology-search"


class Power:
    """Every user on channel 0 at power `p` (a policy of the toy channel task)."""

    def __init__(self, p: float):
        self.p = p

    def act(self, role, obs):
        shape = obs.shape[:2] + (1,)
        return {"channel": np.zeros(shape, np.int64), "power": np.full(shape, self.p)}


class Happo(LearningSolver):
    """A stand-in learner named `happo`: three 'updates' of 8 frames, its power rising with the
    update and the seed, evaluated (`Reporter.evaluate`) after updates 2 and 3."""

    name = "happo"

    def train(self, make_env, budget, rng, reporter):
        seed = float(rng.integers(2))
        for k in (1, 2, 3):
            policy = Power(0.2 * k + 0.1 * seed)
            reporter.log_metrics({"train/return": k + seed}, 8 * k)
            if k >= 2:
                reporter.log_metrics({f"eval/{m}": v for m, v in reporter.evaluate(policy).items()}, 8 * k)
        return policy


class Plain(Happo):
    """A learner that logs no evaluation curve."""

    name = "plain-learner"

    def train(self, make_env, budget, rng, reporter):
        reporter.log_metrics({"train/return": 1.0}, 8)
        return Power(1.0)


def test_curves_panel_shows_every_learned_variant_with_its_evaluation_curve(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for solver, seeds in (("test_leaderboard_oracle:Happo", (0, 1, 2)), ("test_leaderboard_oracle:Plain", (0,)),
                          ("random", (0,))):
        for seed in seeds:
            run(RunSpec("toy_frames:ChannelTask", solver, seed, budget=Budget(frames=24, evaluations=2)), tracker)
    paths = leaderboard.write(tracker, "toy-channels", tmp_path / "lb", curves=("train/return",), objective="sum_rate")
    assert [p.name for p in paths][-2:] == ["toy-channels-curves.png", "toy-channels-curves.csv"]
    assert paths[-2].stat().st_size > 10_000
    curves = pd.read_csv(paths[-1])
    assert list(dict.fromkeys(curves["metric"])) == ["eval/sum_rate", "train/return"]
    ev = curves[curves["metric"] == "eval/sum_rate"]
    assert set(ev["solver"]) == {"happo"} and list(ev["step"]) == [16, 24] and set(ev["seeds"]) == {3}
    # by hand: every seed's logged values at that step, averaged
    client = tracker.client
    happo_runs = [r for r in tracker.runs("toy-channels") if r.data.tags.get(TAG + "variant") == "happo"]
    for step in (16, 24):
        values = [v.value for r in happo_runs for v in client.get_metric_history(r.info.run_id, "eval/sum_rate")
                  if v.step == step]
        row = ev[ev["step"] == step].iloc[0]
        assert len(values) == 3 and row["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert min(values) - 1e-12 <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= max(values) + 1e-12
    # the last evaluation is the run's result (the runner plays the returned policy on the same episodes)
    assert {r.data.metrics["eval/sum_rate"] == r.data.metrics["objective"] for r in happo_runs} == {True}
    train = curves[curves["metric"] == "train/return"]
    assert set(train["solver"]) == {"happo", "plain-learner"}  # whatever learning variants the store holds
    assert "![toy-channels leaderboard](toy-channels-curves.png)" in paths[0].read_text()


def test_without_evaluation_curves_the_panel_shows_the_training_return(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run(RunSpec("toy_frames:ChannelTask", "test_leaderboard_oracle:Plain", 0, budget=Budget(frames=8)), tracker)
    paths = leaderboard.write(tracker, "toy-channels", tmp_path / "lb", objective="sum_rate")
    curves = pd.read_csv(paths[-1])
    assert set(curves["metric"]) == {"train/return"} and list(curves["solver"]) == ["plain-learner"]
    assert ChannelTask.oracle is None


def test_curves_are_drawn_per_instance(tmp_path):
    """Two instances (scenarios whose objectives differ in scale) get one curves figure each, named by
    instance, and the CSV keeps each instance's curves apart (no mean over the two)."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for noise in (0.1, 1.0):
        for seed in (0, 1):
            run(RunSpec("toy_frames:ChannelTask", "test_leaderboard_oracle:Happo", seed, {"noise": noise},
                        budget=Budget(frames=24)), tracker)
    paths = leaderboard.write(tracker, "toy-channels", tmp_path / "lb", curves=("train/return",), objective="sum_rate")
    curves = pd.read_csv(paths[-1])
    instances = sorted(set(curves["instance"]))
    assert len(instances) == 2 and set(curves["seeds"]) == {2}
    assert sorted(p.name for p in paths if p.name.startswith("toy-channels-curves-")) == [
        f"toy-channels-curves-{i}.png" for i in instances]
    ev = curves[(curves["metric"] == "eval/sum_rate") & (curves["step"] == 24)].set_index("instance")["mean"]
    assert ev[instances[0]] != pytest.approx(ev[instances[1]])  # each instance's own mean
    md = paths[0].read_text()
    assert all(f"![toy-channels leaderboard](toy-channels-curves-{i}.png)" in md for i in instances)


def test_instance_labels_name_what_differs_between_instances_not_the_settings_within():
    rows = [("a", {"task.capacity": "1", "task.topology": "ent", "task.seed": "0"}),
            ("a", {"task.capacity": "1", "task.topology": "ccn-only", "task.seed": "0"}),
            ("b", {"task.capacity": "2", "task.topology": "cfn-only", "task.seed": "0"}),
            ("b", {"task.capacity": "2", "task.topology": "ent", "task.seed": "0"})]
    runs = pd.DataFrame({"instance": [i for i, _ in rows], "params": [p for _, p in rows]})
    assert leaderboard.instance_labels(runs) == {"a": "capacity=1", "b": "capacity=2"}
    assert leaderboard.instance_labels(runs[runs["instance"] == "a"]) == {"a": "default"}
    # a key some runs lack (added later) varies within the instance where only some runs have it
    late = pd.DataFrame({"instance": ["a", "a", "b"], "params": [{"task.capacity": "1"},
                         {"task.capacity": "1", "task.split": "x"}, {"task.capacity": "2", "task.split": "x"}]})
    assert leaderboard.instance_labels(late) == {"a": "capacity=1", "b": "capacity=2"}
