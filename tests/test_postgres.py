"""The team setup for real: a PostgreSQL cluster on 127.0.0.1 (started here with initdb / pg_ctl),
an `mlflow server` with it as the backend store and an artifact root on disk, and isacbench's
run / sweep / leaderboard / ui pointed at the server; several Optuna workers on one study in
PostgreSQL; the load benchmark at smoke scale. Skipped, with the reason, where the PostgreSQL
binaries are missing (`.ci/run` installs them from the distribution's packages)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import TESTS, cli

from benchmarks.servers import mlflow_server, postgres, postgres_missing

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(postgres_missing() is not None,
                                                      reason=f"no PostgreSQL here: {postgres_missing()}")]


@pytest.fixture(scope="module")
def pg():
    with postgres() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def server(pg, tmp_path_factory):
    """`mlflow server --backend-store-uri postgresql+psycopg2://... --artifacts-destination DIR`."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    with mlflow_server(pg.create_database("mlflow"), artifacts, workers=2) as url:
        yield url, artifacts


def query(pg, database: str, sql: str):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=pg.port, user="isacbench", dbname=database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_run_sweep_leaderboard_and_ui_through_a_postgres_backed_server(pg, server, tmp_path):
    url, artifacts = server
    p = cli(["run", "--task", "toy:ToyTask", "--solver", "random", "--seeds", "0-1", "--json",
             "--tracking-uri", url], tmp_path)
    assert p.returncode == 0, p.stderr
    single = {r["seed"]: r["objective"] for r in map(json.loads, p.stdout.splitlines())}
    s = cli(["sweep", "--task", "toy:ToyTask", "--workers", "2", "--tracking-uri", url], tmp_path)
    assert s.returncode == 0, s.stderr
    assert "4 finished, 2 skipped" in s.stdout  # random seeds 0-1 at this budget are the runs above
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    # the runs are rows of the PostgreSQL database (the server's backend store) ...
    rows = query(pg, "mlflow", "SELECT r.status, t.value FROM runs r JOIN experiments e "
                               "ON r.experiment_id = e.experiment_id JOIN tags t ON t.run_uuid = r.run_uuid "
                               "WHERE e.name = 'isacbench/toy' AND t.key = 'isacbench.seed'")
    assert sorted(rows) == sorted([("FINISHED", "0"), ("FINISHED", "1"), ("FINISHED", "2")] +
                                  [("FINISHED", str(i)) for i in range(3)])  # random 0-2, exhaustive 0-2
    objectives = dict(query(pg, "mlflow", "SELECT t.value, m.value FROM latest_metrics m JOIN tags t "
                                          "ON t.run_uuid = m.run_uuid JOIN runs r ON r.run_uuid = m.run_uuid "
                                          "WHERE m.key = 'objective' AND t.key = 'isacbench.seed' "
                                          "AND r.name LIKE 'toy.random.%' AND r.run_uuid NOT IN "
                                          "(SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId')"))
    assert {int(k): v for k, v in objectives.items()} == pytest.approx(single)
    # ... and their artifacts are files under the server's artifact root on disk
    assert len(list(artifacts.rglob("solution.json"))) == 6
    assert len(list(artifacts.rglob("config.json"))) == 6
    board = cli(["leaderboard", "--task", "toy:ToyTask", "--tracking-uri", url, "--out", "lb"], tmp_path)
    assert board.returncode == 0, board.stderr
    table = (tmp_path / "lb" / "toy.csv").read_text()
    assert "random" in table and "exhaustive" in table
    ui = cli(["ui", "--tracking-uri", url], tmp_path, timeout=180)
    assert ui.returncode == 0 and f"the store is already served: open {url}" in ui.stdout


WORKERS, TRIALS = 4, 12


def test_optuna_workers_on_machines_share_one_postgres_study_without_losing_trials(pg, tmp_path):
    """WORKERS `isacbench run` processes, started together, each with TRIALS evaluations, on one study
    in PostgreSQL (as workers on several machines would): the study holds WORKERS x TRIALS trials."""
    storage = pg.create_database("optuna")
    args = ["run", "--task", "sg-nulling", "--solver", "optuna", "--budget-evals", TRIALS, "--no-track", "--json",
            "-S", f"storage={storage}", "-S", "study_name=shared"]
    env = {"PYTHONPATH": str(TESTS)}
    import os

    procs = [subprocess.Popen([sys.executable, "-c", "from isacbench.cli import main; main()", *map(str, args),
                               "--seed", str(seed)], cwd=tmp_path, env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in range(WORKERS)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert json.loads(out)["evaluations"] == TRIALS
    import optuna

    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == WORKERS * TRIALS
    assert sorted(t.number for t in trials) == list(range(WORKERS * TRIALS))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # one study in the database, its trials written by the workers' connections
    assert query(pg, "optuna", "SELECT count(*) FROM studies") == [(1,)]
    assert query(pg, "optuna", "SELECT count(*) FROM trials WHERE state = 'COMPLETE'") == [(WORKERS * TRIALS,)]


def test_load_benchmark_smoke_every_run_present_exactly_once(pg, server, tmp_path):
    """The load benchmark's measurement at smoke scale, on both stores."""
    from benchmarks import bench_tracking

    url, _ = server
    n = bench_tracking.RUNS["tiny"]
    for uri in (f"sqlite:///{tmp_path / 'mlflow.db'}", url):
        m = bench_tracking.ingest(uri, n, 2, tmp_path / "lb")
        assert m["exactly_once"], m
        assert m["done"] == n and m["failed"] == 0 and m["status"] == {"FINISHED": n}
        assert m["runs_per_s"] > 0 and m["leaderboard_s"] > 0
        assert m["leaderboard_rows"] == 2  # the quick profile's two instances, one solver
    block = bench_tracking.render(bench_tracking.Section("tracking"), "cmd", 1.0)
    report = bench_tracking.splice("# results\n\nold\n", block)
    assert bench_tracking.splice(report, block) == report and report.startswith("# results\n\nold\n")

