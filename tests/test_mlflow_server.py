"""A real `mlflow server` on 127.0.0.1: runs land there through --tracking-uri."""
import socket
import subprocess
import sys
import time

import pytest
import requests
from conftest import cli
from mlflow.tracking import MlflowClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_runs_are_recorded_on_a_real_mlflow_server(mlflow_server, workdir):
    p = cli(["run", "--task", "toy:ToyTask", "--solver", "random", "--seeds", "0-1", "--tracking-uri", mlflow_server],
            workdir)
    assert p.returncode == 0, p.stderr
    assert not (workdir / "mlflow.db").exists()  # nothing went to the local store
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("isacbench/toy")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["isacbench.seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and "objective" in r.data.metrics for r in runs)
    assert {"solution.json", "config.json"} <= {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    board = cli(["leaderboard", "--task", "toy:ToyTask", "--tracking-uri", mlflow_server, "--out", "lb"], workdir)
    assert board.returncode == 0 and (workdir / "lb" / "toy.csv").exists(), board.stderr


def test_ui_serves_the_local_store_on_loopback(workdir):
    assert cli(["run", "--task", "toy:ToyTask", "--solver", "random"], workdir).returncode == 0
    port = free_port()
    import os
    proc = subprocess.Popen([sys.executable, "-c", "from isacbench.cli import main; main()", "ui", "--port", str(port)],
                            cwd=workdir, env={**os.environ, "PYTHONPATH": str(workdir)},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(url + "/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        exp = MlflowClient(tracking_uri=url).get_experiment_by_name("isacbench/toy")
        assert exp is not None and len(MlflowClient(tracking_uri=url).search_runs([exp.experiment_id])) == 1
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
