"""Sweeps: profiles, resumability, FAILED reruns, Ctrl-C safety, Ray executor = local executor."""
import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import TESTS, cli, interruptible
from mlflow.tracking import MlflowClient


def store_runs(workdir):
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("isacbench/toy")
    return client, client.search_runs([exp.experiment_id]) if exp else []


def children(runs, status="FINISHED"):
    return [r for r in runs if "isacbench.seed" in r.data.tags and r.info.status == status]


def results(runs):
    return {(r.data.tags["isacbench.solver"], r.data.tags["isacbench.seed"]): r.data.metrics["objective"]
            for r in children(runs)}


def test_local_sweep_is_resumable_and_matches_single_runs(workdir):
    p = cli(["sweep", "--task", "toy:ToyTask", "--workers", "2"], workdir)
    assert p.returncode == 0, p.stderr
    assert "6 finished, 0 skipped" in p.stdout
    _, runs = store_runs(workdir)
    parents = [r for r in runs if "isacbench.sweep" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children(runs))
    assert set(results(runs)) == {(s, str(i)) for s in ("random", "exhaustive") for i in range(3)}
    # the same seed through `isacbench run` gives the same number
    single = json.loads(cli(["run", "--task", "toy:ToyTask", "--solver", "random", "--seed", "1", "--json",
                             "--no-track"], workdir).stdout)
    assert single["objective"] == results(runs)[("random", "1")]
    again = cli(["sweep", "--task", "toy:ToyTask", "--workers", "2"], workdir)
    assert again.returncode == 0 and "0 finished, 6 skipped" in again.stdout


def test_failed_runs_are_rerun_and_finished_ones_skipped(workdir):
    args = ["sweep", "--task", "toy:ToyTask", "--solver", "toy:FlakySolver", "--seeds", "0-1"]
    first = cli(args, workdir, env={"TOY_FAIL": "1"})
    assert first.returncode == 1 and "0 finished, 0 skipped (already finished), 2 failed" in first.stdout
    _, runs = store_runs(workdir)
    assert len(children(runs, "FAILED")) == 2 and not children(runs)
    second = cli(args, workdir)
    assert second.returncode == 0 and "2 finished, 0 skipped" in second.stdout
    third = cli(args, workdir)
    assert "0 finished, 2 skipped" in third.stdout


def test_variants_differing_only_in_a_task_setting_are_separate_runs(workdir):
    """A task setting (`Task.setting_keys`) is outside the instance id but part of the variant: the
    sweep must not skip `random[capacity=2.0]` because `random` finished on the same instance."""
    plain = ["sweep", "--task", "toy:SettingToyTask", "--solver", "random", "--seeds", "0"]
    assert "1 finished, 0 skipped" in cli(plain, workdir).stdout
    args = [*plain, "--solver", "random[capacity=2.0]"]
    second = cli(args, workdir)
    assert second.returncode == 0 and "1 finished, 1 skipped" in second.stdout, second.stdout
    _, runs = store_runs(workdir)
    assert sorted(r.data.tags["isacbench.variant"] for r in children(runs)) == ["random", "random[capacity=2.0]"]
    assert len({r.data.tags["isacbench.instance"] for r in children(runs)}) == 1
    assert "0 finished, 2 skipped" in cli(args, workdir).stdout


def test_ctrl_c_leaves_no_unfinished_run_marked_finished(workdir):
    env = {"PYTHONPATH": str(TESTS), "TOY_SLEEP": "1.0"}
    import os
    log = workdir / "sweep.log"
    with open(log, "w") as out:  # the sweep prints one progress line per recorded run
        proc = subprocess.Popen([sys.executable, "-c", "from isacbench.cli import main; main()", "sweep", "--task",
                                 "toy:ToyTask", "--solver", "toy:FlakySolver", "--seeds", "0-19"],
                                cwd=workdir, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=interruptible)
    deadline = time.time() + 240
    while time.time() < deadline and "% after" not in log.read_text() and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, f"the sweep ended before it was interrupted: {log.read_text()[-500:]}"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    client, runs = store_runs(workdir)
    finished = children(runs)
    assert 1 <= len(finished) < 20
    for r in finished:  # everything marked FINISHED is complete
        assert "objective" in r.data.metrics
        assert {"solution.json", "config.json"} <= {a.path for a in client.list_artifacts(r.info.run_id)}
    parent = [r for r in runs if "isacbench.sweep" in r.data.tags]
    assert [p.info.status for p in parent] == ["KILLED"]
    resumed = cli(["sweep", "--task", "toy:ToyTask", "--solver", "toy:FlakySolver", "--seeds", "0-19"], workdir)
    assert f"{20 - len(finished)} finished, {len(finished)} skipped" in resumed.stdout


def test_ray_executor_gives_the_local_executors_numbers(workdir, tmp_path_factory):
    pytest.importorskip("ray")
    local_dir = tmp_path_factory.mktemp("local")
    assert cli(["sweep", "--task", "toy:ToyTask"], local_dir).returncode == 0
    p = cli(["sweep", "--task", "toy:ToyTask", "--executor", "ray", "--workers", "2"], workdir)
    assert p.returncode == 0, p.stderr
    assert "6 finished" in p.stdout
    assert results(store_runs(workdir)[1]) == results(store_runs(local_dir)[1])


def test_unknown_profile_and_executor_are_user_errors(workdir):
    p = cli(["sweep", "--task", "toy:ToyTask", "--profile", "huge"], workdir)
    assert p.returncode == 2 and "task 'toy' has no profile 'huge'; available: quick, paper" in p.stderr
    p = cli(["sweep", "--task", "toy:ToyTask", "--executor", "slurm"], workdir)
    assert p.returncode == 2 and "--executor 'slurm' is not one of: local, ray" in p.stderr
