"""Sweeps on a real two-node Ray cluster: a head and a worker node started here with `ray start` on
127.0.0.1 (one CPU each), the sweep joining it through --address; its results equal the local
process pool's. (A wrong --address is tested in test_cli_bad_input.py.)"""
from __future__ import annotations

import pytest
from conftest import TESTS, cli
from test_sweep import results, store_runs

from benchmarks.servers import RAY_LOCAL_ENV, ray_cluster, ray_missing

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(ray_missing() is not None, reason=str(ray_missing()))]


def test_two_node_ray_cluster_sweep_equals_the_local_executor(workdir, tmp_path_factory):
    local_dir = tmp_path_factory.mktemp("local")
    local = cli(["sweep", "--task", "toy:ToyTask"], local_dir)
    assert local.returncode == 0, local.stderr
    with ray_cluster(nodes=2, cpus_per_node=1, env={"PYTHONPATH": str(TESTS)}) as address:
        p = cli(["sweep", "--task", "toy:ToyTask", "--executor", "ray", "--address", address, "--workers", "2"],
                workdir, env=RAY_LOCAL_ENV, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "6 finished, 0 skipped" in p.stdout
    ray_runs = store_runs(workdir)[1]
    assert len(results(ray_runs)) == 6
    assert results(ray_runs) == results(store_runs(local_dir)[1])
    parent = [r for r in ray_runs if "isacbench.sweep" in r.data.tags]
    assert [r.data.tags["isacbench.executor"] for r in parent] == ["ray"]

