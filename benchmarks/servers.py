"""Throw-away servers on 127.0.0.1 for the tests and the load benchmark: a real PostgreSQL
cluster (initdb into a temporary folder, pg_ctl on a free port), an `mlflow server` on top of
any backend store, and a local multi-node Ray cluster (`ray start`). Each is a context manager
that stops exactly the processes it started (by their ids) and removes its folders.

PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` user (created by
Debian's `postgresql` package) through `runuser`. `postgres_missing()` says why no cluster can
be started here (None when one can), so tests skip with that reason.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

PG_USER = "isacbench"  # the cluster's superuser (trust authentication on 127.0.0.1 only)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path | None:
    """The folder holding initdb / pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
                        if p.split("/")[4].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _run_as() -> list[str]:
    """Command prefix that runs PostgreSQL as a non-root user (empty when not root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def postgres_missing() -> str | None:
    """Why a PostgreSQL cluster cannot be started here, or None if it can."""
    if pg_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found; install them: apt-get install postgresql"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary, part of the [dev] extra)"
    return None


class Postgres:
    """A running cluster: `url(db)` is its SQLAlchemy URL, `create_database(name)` adds a database."""

    def __init__(self, port: int, root: Path):
        self.port, self.root = port, root

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


@contextlib.contextmanager
def postgres(durable: bool = False, max_connections: int = 200) -> Iterator[Postgres]:
    """Start a PostgreSQL cluster on 127.0.0.1:<free port> in a temporary folder; stop and remove it
    on exit. durable=False turns fsync off (tests); the benchmark keeps PostgreSQL's defaults."""
    reason = postgres_missing()
    if reason:
        raise RuntimeError(reason)
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="isacbench-pg-"))
    data, log = root / "data", root / "server.log"
    prefix = _run_as()
    if prefix:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = free_port()
    options = f"-p {port} -h 127.0.0.1 -k {root} -c max_connections={max_connections}"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, text=True, timeout=120)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                        "-w", "-t", "60", "start"], check=True, capture_output=True, text=True, timeout=90)
    except subprocess.CalledProcessError as e:
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr or e.stdout}\n{tail}") from None
    try:
        yield Postgres(port, root)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}")
        try:
            if requests.get(url + "/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}: no answer within {timeout:.0f} s")


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, workers: int = 1,
                  log: Path | None = None) -> Iterator[str]:
    """`mlflow server` over `backend_store_uri` with its artifacts proxied to the folder `artifacts`;
    yields its http:// URL."""
    port = free_port()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", backend_store_uri, "--artifacts-destination", str(artifacts),
                             "--workers", str(workers)],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, proc)
        yield url
    finally:
        _stop_group(proc, grace=5)  # uvicorn would wait for clients' keep-alive connections
        if log:
            out.close()


def _stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to the process group this module started (its leader is `proc`), then, after
    `grace` seconds, SIGKILL to what is left of the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


# a throw-away cluster on loopback: no token authentication (Ray 2.60 turns it on for a head that
# `ray start` starts, and a worker node then fails with "InvalidAuthToken"), no usage statistics
RAY_LOCAL_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_IMPORT_WARNING": "1"}


def ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'isacbench[ray]')"
    if shutil.which("ray") is None and not (Path(sys.executable).parent / "ray").exists():
        return "the `ray` command is not on PATH"
    return None


@contextlib.contextmanager
def ray_cluster(nodes: int = 2, cpus_per_node: int = 1, timeout: float = 120,
                env: dict[str, str] | None = None) -> Iterator[str]:
    """A local Ray cluster on 127.0.0.1: a head and `nodes - 1` worker nodes, each started with
    `ray start --block` in its own process group (stopped by that group's id, never `ray stop`,
    which would end every Ray process on the machine), with `env` added to their environment (e.g.
    PYTHONPATH for code the tasks import). Yields the head's address host:port."""
    ray_bin = str(Path(sys.executable).parent / "ray") if (Path(sys.executable).parent / "ray").exists() \
        else shutil.which("ray")
    temp = Path(tempfile.mkdtemp(prefix="rayc", dir="/tmp"))  # short: Ray's socket paths are length-limited
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, **RAY_LOCAL_ENV, **(env or {})}
    common = ["--block", f"--num-cpus={cpus_per_node}", "--num-gpus=0", "--disable-usage-stats",
              "--node-ip-address=127.0.0.1", "--object-store-memory=100000000"]
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for i in range(nodes):
            args = ([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
                     f"--temp-dir={temp}", *common] if i == 0 else [ray_bin, "start", f"--address={address}", *common])
            logs.append(open(temp / f"node{i}.out", "w"))
            procs.append(subprocess.Popen(args, stdout=logs[-1], stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True))
            if i == 0:
                _wait_port("127.0.0.1", port, procs[0], timeout, temp / "node0.out")
        _wait_nodes(address, nodes, timeout, procs)
        yield address
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            # `ray start` may exit (or hang) before its GCS / raylet / workers, all in its group: end them too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for f in logs:
            f.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray head exited with code {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.3)
    raise RuntimeError(f"ray head did not listen on {host}:{port} within {timeout:.0f} s")


def _wait_nodes(address: str, nodes: int, timeout: float, procs: list[subprocess.Popen]) -> None:
    """Wait until the GCS reports `nodes` alive nodes (asked in a subprocess: no Ray state here)."""
    probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, include_dashboard=False);"
             "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a ray node exited with code {p.returncode}")
        out = subprocess.run([sys.executable, "-c", probe, address], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **RAY_LOCAL_ENV}, check=False)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(nodes)]:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {nodes} nodes within {timeout:.0f} s")
