"""Leaderboards: generated from the MLflow runs, numbers recomputed here independently."""
import numpy as np
import pandas as pd
import pytest
from conftest import cli
from mlflow.tracking import MlflowClient


def test_leaderboard_matches_an_independent_recomputation(workdir):
    for solver, seeds in (("random", "0-4"), ("exhaustive", "0-1")):
        p = cli(["run", "--task", "toy:ToyTask", "--solver", solver, "--seeds", seeds, "--budget-evals", "200"],
                workdir)
        assert p.returncode == 0, p.stderr
    # a second instance, so grouping by instance is exercised
    assert cli(["run", "--task", "toy:ToyTask", "--solver", "random", "-c", "capacity=2", "--seeds", "0-2"],
               workdir).returncode == 0
    p = cli(["leaderboard", "--task", "toy:ToyTask", "--out", "boards"], workdir)
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(workdir / "boards" / "toy.csv")
    md = (workdir / "boards" / "toy.md").read_text()
    assert (workdir / "boards" / "toy.png").stat().st_size > 10_000 and "![toy leaderboard](toy.png)" in md

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("isacbench/toy")
    recorded = client.search_runs([exp.experiment_id])
    assert len(recorded) == 10
    for inst in {r.data.tags["isacbench.instance"] for r in recorded}:
        inst_runs = [r for r in recorded if r.data.tags["isacbench.instance"] == inst]
        best_known = max(r.data.metrics["objective"] for r in inst_runs if r.data.metrics["feasible"] == 1)
        rows = table[table["instance"] == inst].set_index("solver")
        means = {}
        for solver in rows.index:
            mine = [r for r in inst_runs if r.data.tags["isacbench.solver"] == solver]
            obj = np.array([r.data.metrics["objective"] for r in mine if r.data.metrics["feasible"] == 1])
            means[solver] = obj.mean()
            row = rows.loc[solver]
            assert row["objective"] == pytest.approx(obj.mean(), rel=1e-9)
            assert row["seeds"] == len(mine)
            assert row["feasible_rate"] == pytest.approx(np.mean([r.data.metrics["feasible"] for r in mine]))
            assert row["slack"] == pytest.approx(np.mean([r.data.metrics["slack"] for r in mine]), rel=1e-9)
            assert row["reference_kind"] == "best known"
            assert row["reference"] == pytest.approx(best_known, rel=1e-9)
            assert row["gap_pct"] == pytest.approx(100 * (best_known - obj.mean()) / abs(best_known), rel=1e-9)
            assert row["ci_low"] <= row["objective"] + 1e-9 <= row["ci_high"] + 2e-9
            assert obj.min() - 1e-9 <= row["ci_low"] and row["ci_high"] <= obj.max() + 1e-9
        order = sorted(means, key=means.get, reverse=True)
        assert list(rows.sort_values("rank").index) == order
        assert f"## Instance `{inst}`" in md
    assert "exhaustive" in md and "isacbench leaderboard --task toy" in md and "each run's MLflow params" in md


def test_curves_panel_averages_step_metrics_over_seeds(workdir):
    from isacbench import leaderboard
    from isacbench.tracking import Tracker

    assert cli(["run", "--task", "toy:ToyTask", "--solver", "random", "--seeds", "0-1"], workdir).returncode == 0
    paths = leaderboard.write(Tracker(), "toy", workdir / "lb", ("slack",), curves=("best_so_far", "absent"))
    assert [p.name for p in paths] == ["toy.md", "toy.csv", "toy.png", "toy-curves.png", "toy-curves.csv"]
    assert "![toy leaderboard](toy-curves.png)" in (workdir / "lb" / "toy.md").read_text()
    assert leaderboard.write(Tracker(), "toy", workdir / "lb2", curves=("absent",))[-1].name == "toy.png"


def test_a_rows_confidence_interval_does_not_depend_on_other_rows():
    import numpy as np
    import pandas as pd

    from isacbench.leaderboard import summarize

    def runs(solver, values):
        return pd.DataFrame({"instance": "i", "solver": solver, "budget": "evaluations=10", "seed": range(len(values)),
                             "objective": values, "feasible": 1.0, "bound": np.nan, "evaluations": 10.0, "wall_s": 1.0})
    a = runs("b-solver", [1.0, 2.0, 4.0, 3.0, 7.0])
    alone = summarize(a).set_index("solver")
    both = summarize(pd.concat([runs("a-solver", [5.0, 6.0, 9.0]), a])).set_index("solver")
    assert alone.loc["b-solver", "ci_low"] < 3.4 < alone.loc["b-solver", "ci_high"]
    assert (alone.loc["b-solver", ["ci_low", "ci_high"]] == both.loc["b-solver", ["ci_low", "ci_high"]]).all()
    # nor on the order in which the store returns the runs
    shuffled = summarize(a.iloc[[3, 0, 4, 2, 1]]).set_index("solver")
    assert (alone.loc["b-solver", ["ci_low", "ci_high"]] == shuffled.loc["b-solver", ["ci_low", "ci_high"]]).all()


def test_tracker_runs_reads_every_page():
    from mlflow.store.entities.paged_list import PagedList

    from isacbench.tracking import Tracker

    class Client:  # three pages of two runs, as MLflow returns them
        def __init__(self):
            self.calls = []

        def get_experiment_by_name(self, name):
            return type("Exp", (), {"experiment_id": "7"}) if name == "isacbench/toy" else None

        def search_runs(self, ids, filter_string, max_results, page_token):
            self.calls.append((ids, filter_string, page_token))
            page = int(page_token or 0)
            return PagedList([2 * page, 2 * page + 1], str(page + 1) if page < 2 else None)

    tracker = Tracker.__new__(Tracker)  # no store: the client is the fake above
    tracker.client = Client()
    assert list(tracker.runs("toy", "attributes.status = 'FINISHED'")) == [0, 1, 2, 3, 4, 5]
    assert tracker.client.calls == [(["7"], "attributes.status = 'FINISHED'", t) for t in (None, "1", "2")]
    assert list(tracker.runs("other")) == []
