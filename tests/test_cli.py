"""End-to-end: the CLI as a user calls it, checked against what the MLflow store really holds."""
import json

import pytest
from conftest import cli
from mlflow.tracking import MlflowClient


def store(workdir):
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def runs(workdir, status=None):
    if not (workdir / "mlflow.db").exists():
        return []
    client = store(workdir)
    exps = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(exps) if exps else []
    return [r for r in found if status is None or r.info.status == status]


def test_run_records_every_seed_in_the_local_store(workdir):
    p = cli(["run", "--task", "toy:ToyTask", "--solver", "random", "--seeds", "0-2", "--json"], workdir)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert [r["seed"] for r in lines] == [0, 1, 2]
    for key in ("objective", "feasible", "metrics", "decision", "evaluations", "wall_s", "run_id"):
        assert all(key in r for r in lines)
    recorded = {r.info.run_id: r for r in runs(workdir, "FINISHED")}
    assert set(recorded) == {r["run_id"] for r in lines}
    for r in lines:
        run = recorded[r["run_id"]]
        assert run.data.metrics["objective"] == pytest.approx(r["objective"])
        assert run.data.metrics["evaluations"] == r["evaluations"] == 50
        assert run.data.metrics["slack"] == pytest.approx(r["metrics"]["slack"])
        assert run.data.params["task.capacity"] == "3.5" and run.data.params["seed"] == str(r["seed"])
        for tag in ("version", "git_commit", "python", "numpy", "torch", "instance"):
            assert run.data.tags[f"isacbench.{tag}"]
        artifacts = {a.path for a in store(workdir).list_artifacts(r["run_id"])}
        assert {"solution.json", "config.json"} <= artifacts
        history = store(workdir).get_metric_history(r["run_id"], "best_so_far")
        assert history[-1].value == pytest.approx(r["objective"]) and history[-1].step == 50


def test_same_seed_gives_identical_numbers(workdir):
    args = ["run", "--task", "toy:ToyTask", "--solver", "random", "--seed", "3", "--json", "--no-track"]
    a, b = (json.loads(cli(args, workdir).stdout) for _ in range(2))
    assert (a["decision"], a["objective"]) == (b["decision"], b["objective"])


def test_evaluate_prints_the_evaluation(workdir):
    p = cli(["evaluate", "--task", "toy:ToyTask", "--config", "capacity=2", "--decision", "x=2",
             "--decision", "y=0.5", "--decision", "c=a", "--json"], workdir)
    assert p.returncode == 0, p.stderr
    ev = json.loads(p.stdout)
    assert ev == {"objective": -1.0, "feasible": False, "violations": {"capacity": 0.5},
                  "metrics": {"slack": -0.5}}


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "nope", "--solver", "random"], "unknown task 'nope'; available: "),
    (["run", "--task", "toy:ToyTask", "--solver", "nope"], "unknown solver 'nope'; available: "),
    (["run", "--task", "toy:ToyTask", "--solver", "random", "-c", "cap=1"], "unknown task toy config key 'cap'"),
    (["run", "--task", "toy:ToyTask", "--solver", "random", "-c", "capacity=big"],
     "capacity='big': Input should be a valid number"),
    (["run", "--task", "toy:ToyTask", "--solver", "random", "-c", "capacity=-1"],
     "capacity=-1: Input should be greater than or equal to 0"),
    (["run", "--task", "toy:ToyTask", "--solver", "exhaustive", "-S", "max_points=0"],
     "max_points=0: Input should be greater than or equal to 1"),
    (["run", "--task", "toy:ToyTask", "--solver", "toy:OtherTaskSolver"],
     "solver 'other-only' does not support task 'toy'"),
    (["run", "--task", "toy:ToyTask", "--solver", "random", "--tracking-uri", "http://127.0.0.1:9"],
     "tracking URI 'http://127.0.0.1:9' is unreachable"),
    (["run", "--task", "toy:ToyTask", "--solver", "random", "--seeds", "4-x"], "--seeds '4-x' is not a range"),
    (["run", "--task", "toy:ToyTask", "--solver", "random", "--budget-evals", "0"], "--budget-evals 0 must be > 0"),
    (["run", "--task", "toy:Missing", "--solver", "random"], "cannot load task 'toy:Missing'"),
    (["run", "--task", "toy:ToyTask", "--solver", "random", "--device", "cuda"], "solver 'random' has no device"),
    (["evaluate", "--task", "toy:ToyTask", "-d", "x=1", "-d", "y=0.1", "-d", "c=z"], "decision variable 'c': cannot parse 'z' as one of ['a', 'b']"),
    (["evaluate", "--task", "toy:ToyTask", "-d", "x=1"], "decision variable 'y' is missing"),
    (["reproduce", "toy:ToyTask", "--figure", "3"], "task 'toy' has no figure 3; available: none"),
])
def test_bad_input_is_one_line_exit_2_and_records_nothing(workdir, args, message):
    p = cli(args, workdir)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert runs(workdir, "FINISHED") == []


def test_a_crashing_solver_is_recorded_as_failed_not_as_a_result(workdir):
    p = cli(["run", "--task", "toy:ToyTask", "--solver", "toy:BrokenSolver"], workdir)
    assert p.returncode != 0 and "ZeroDivisionError" in p.stderr
    recorded = runs(workdir)
    assert [r.info.status for r in recorded] == ["FAILED"]
    assert "solver bug" in recorded[0].data.tags["isacbench.error"]
    assert "objective" not in recorded[0].data.metrics


def test_sequential_task_results_are_not_overwritten_by_its_curves(workdir):
    p = cli(["run", "--task", "ent-usr", "--solver", "random-mrt", "--json"], workdir)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    run = store(workdir).get_run(result["run_id"])
    for name in ("usr", "utility", "signaling", "utility_comm", "utility_sense"):
        assert run.data.metrics[name] == pytest.approx(result["metrics"][name], rel=1e-12)
    assert run.data.metrics["objective"] == pytest.approx(result["metrics"]["usr"], rel=1e-12)
    per_frame = store(workdir).get_metric_history(result["run_id"], "curve/usr")
    assert len(per_frame) == 20 and result["decision"]["frames_per_episode"] == 20


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "ent-usr", "--solver", "random-mrt", "-c", "M=5"],
     "error: task ent-usr config: M=5 must be a square number"),
    (["run", "--task", "ent-usr", "--solver", "mappo", "-c", "topology=star"],  # a task setting
     "error: task ent-usr config topology='star': Input should be 'ent', 'ccn-only' or 'cfn-only'"),
    (["run", "--task", "ent-usr", "--solver", "mappo", "-S", "baseline=foo"],  # an optional Literal key
     "error: solver mappo config baseline='foo': Input should be 'critic', 'mean', 'greedy' or 'stagewise'"),
    (["run", "--task", "ent-usr", "--solver", "mappo", "-S", "lr=2"],  # an optional bounded key
     "error: solver mappo config lr=2: Input should be less than or equal to 1 (allowed: float > 0 and <= 1)"),
])
def test_task_and_solver_config_errors_read_as_one_plain_line(workdir, args, message):
    p = cli(args, workdir)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.strip().startswith(message) and "Literal" not in p.stderr and "?" not in p.stderr
    assert "Optional" not in p.stderr


def test_resume_reads_the_run_from_the_tracking_uri_flag(workdir):
    """-S resume=RUN_ID finds the run in the --tracking-uri store (not only in the default one)."""
    pytest.importorskip("torch")
    (workdir / "shared").mkdir()
    shared = f"sqlite:///{workdir / 'shared' / 'mlflow.db'}"
    small = ["run", "--task", "ent-usr", "--solver", "mappo", "-S", "num_envs=2", "-S", "actor_hidden=[16]",
             "-S", "critic_hidden=[16]", "--budget-frames", "40", "--json"]

    def result(p):
        assert p.returncode == 0, p.stderr
        (r,) = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        return r

    first = result(cli([*small, "--seed", "0", "--tracking-uri", shared], workdir))
    resume = ["-S", f"resume={first['run_id']}", "--seed", "1"]
    # the checkpoint already holds the 40 frames: no further update, the first run's policy (not a seed-1 one)
    assert result(cli([*small, *resume, "--tracking-uri", shared], workdir))["objective"] == first["objective"]
    assert result(cli([*small, "--seed", "1", "--no-track"], workdir))["objective"] != first["objective"]
    elsewhere = cli([*small, *resume], workdir)  # the default store ./mlflow.db does not hold the run
    assert elsewhere.returncode == 2 and f"resume={first['run_id']!r}" in elsewhere.stderr
