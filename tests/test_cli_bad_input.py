"""Issue 16: non-finite values, broken stores, solver-side user errors, hangs: each is one error line
and exit code 2 with nothing recorded (or, for a run with no finite result, a FAILED run), checked
against what the MLflow store really holds."""
import csv
import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import cli
from mlflow.tracking import MlflowClient

TOY = ["--task", "toy:ToyTask", "--solver", "random"]
MAPPO = ["run", "--task", "ent-usr", "--solver", "mappo"]


def store(workdir):
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def runs(workdir):
    """Every run in the default store (none when there is no store)."""
    if not (workdir / "mlflow.db").exists():
        return []
    client = store(workdir)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def one_line(p, message):
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], p.stderr


# ------------------------------------------------------------------- item 1: non-finite values
@pytest.mark.parametrize("args, message", [
    (["run", "--task", "sg-cluster", "--solver", "random", "-c", "rcs=Infinity"],
     "task sg-cluster config rcs=inf: Input should be a finite number (allowed: float > 0)"),
    ([*MAPPO, "-S", "max_grad_norm=Infinity", "--budget-frames", "320"],
     "solver mappo config max_grad_norm=inf: Input should be a finite"),
    (["run", *TOY, "--budget-seconds", "nan"], "--budget-seconds nan must be > 0 and finite"),
    (["run", *TOY, "--budget-seconds", "inf"], "--budget-seconds inf must be > 0 and finite"),
])
def test_non_finite_values_are_refused(workdir, args, message):
    one_line(cli(args, workdir), message)
    assert runs(workdir) == []


def test_a_run_without_a_finite_objective_is_failed_not_finished(workdir):
    p = cli(["run", "--task", "toy:NanTask", "--solver", "random"], workdir)
    assert p.returncode == 1 and "is nan, not a finite number" in p.stderr
    (run,) = runs(workdir)
    assert run.info.status == "FAILED" and "not a finite number" in run.data.tags["isacbench.error"]
    assert "objective" not in run.data.metrics


def test_leaderboard_skips_and_reports_malformed_runs(workdir):
    assert cli(["run", *TOY, "--seed", "0"], workdir).returncode == 0
    client = store(workdir)
    bad = {}
    for task in ("toy", "toy-nan"):  # a FINISHED run without metrics, next to good ones and alone
        exp = client.get_experiment_by_name(f"isacbench/{task}") or client.get_experiment(
            client.create_experiment(f"isacbench/{task}"))
        run = client.create_run(exp.experiment_id, tags={"isacbench.seed": "1", "isacbench.instance": "x"})
        client.set_terminated(run.info.run_id, "FINISHED")
        bad[task] = run.info.run_id
    p = cli(["leaderboard", "--task", "toy:ToyTask", "--task", "toy:NanTask", "--out", "lb"], workdir)
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2 and all("no finite objective, feasible, wall_s metric" in w for w in warnings)
    assert [bad["toy"] in warnings[0], bad["toy-nan"] in warnings[1]] == [True, True]
    assert "toy-nan: no finished runs" in p.stdout
    (row,) = csv.DictReader(open(workdir / "lb" / "toy.csv"))
    assert row["seeds"] == "1"


# ----------------------------------------------------------------------- item 2: store trouble
@pytest.mark.parametrize("uri, message", [
    ("foo://bar", "tracking URI 'foo://bar' is not usable: its scheme is not one of"),
    (".", "tracking URI '.' is a plain path, not a store; give sqlite:///PATH/mlflow.db"),
    ("file:///tmp", "tracking URI 'file:///tmp' is a plain path, not a store"),
])
def test_a_tracking_uri_that_is_no_store_is_one_line(workdir, uri, message):
    for command in (["run", *TOY], ["sweep", *TOY, "--seeds", "0"], ["leaderboard"]):
        one_line(cli([*command, "--tracking-uri", uri], workdir), message)
    assert runs(workdir) == []


def test_a_damaged_store_is_one_line(workdir):
    db = workdir / "mlflow.db"
    noise = random.Random(0)  # fixed bytes: sqlite's message depends on what the damage hits
    db.write_bytes(noise.randbytes(200_000))
    for command in (["run", *TOY], ["leaderboard"]):
        one_line(cli(command, workdir), "is not usable: (sqlite3.DatabaseError) file is not a database")
    db.unlink()
    store(workdir).search_experiments()  # a real store, then damaged pages
    pages = db.stat().st_size // 4096
    with open(db, "r+b") as f:
        for page in range(2, pages, 2):
            f.seek(page * 4096 + 100)
            f.write(noise.randbytes(2000))
    for command in (["run", *TOY], ["leaderboard"]):
        one_line(cli(command, workdir), "is not usable: (sqlite3.DatabaseError) database disk image is malformed")


def _unprivileged():
    """A command prefix under which file permissions bind (root ignores them without it)."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only store cannot be simulated")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


@pytest.mark.parametrize("case", ["read-only file", "read-only folder", "read-only folder, new store"])
def test_a_read_only_store_is_one_line_and_still_readable(workdir, case):
    prefix = _unprivileged()
    folder = workdir / "store"
    folder.mkdir()
    if case != "read-only folder, new store":
        assert cli(["run", *TOY, "--tracking-uri", f"sqlite:///{folder}/mlflow.db"], workdir).returncode == 0
    locked = folder / "mlflow.db" if case == "read-only file" else folder
    locked.chmod(0o444 if case == "read-only file" else 0o555)
    try:
        uri = ["--tracking-uri", f"sqlite:///{folder}/mlflow.db"]
        blocked = cli(["run", *TOY, "--seed", "1", *uri], workdir, prefix=prefix)
        one_line(blocked, f"tracking store {folder}/mlflow.db is read-only ({locked} is not writable)")
        if case != "read-only folder, new store":
            board = cli(["leaderboard", "--task", "toy:ToyTask", "--out", "lb", *uri], workdir, prefix=prefix)
            assert board.returncode == 0 and (workdir / "lb" / "toy.csv").is_file(), board.stderr
    finally:
        locked.chmod(0o755)
    if case.endswith("new store"):
        assert not (folder / "mlflow.db").exists()
    else:
        held = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        found = held.search_runs([e.experiment_id for e in held.search_experiments()])
        assert [r.data.tags["isacbench.seed"] for r in found] == ["0"]


def test_runs_started_at_once_on_a_new_store_all_succeed(workdir):
    with ThreadPoolExecutor(3) as pool:
        done = list(pool.map(lambda seed: cli(["run", *TOY, "--seed", str(seed)], workdir), range(3)))
    assert [p.returncode for p in done] == [0, 0, 0], [p.stderr[-500:] for p in done]
    assert sorted((r.info.status, r.data.tags["isacbench.seed"]) for r in runs(workdir)) == [
        ("FINISHED", "0"), ("FINISHED", "1"), ("FINISHED", "2")]


# ------------------------------------------- item 3: user errors only a solver sees, found first
@pytest.mark.parametrize("args, message", [
    ([*MAPPO, "--budget-frames", "10"],
     "solver mappo: budget of 10 frames is below one rollout (num_envs=16 x 20 frames per episode)"),
    ([*MAPPO, "-S", "device=cuda"], "solver mappo device='cuda': no CUDA device is available"),
    (["run", "--task", "ent-usr", "--solver", "happo", "--budget-frames", "10"],
     "solver happo: budget of 10 frames is below one rollout (num_envs=16 x 20 frames per episode)"),
    (["run", "--task", "ent-usr", "--solver", "ippo", "-S", "device=cuda"],
     "solver ippo device='cuda': no CUDA device is available"),
    ([*MAPPO, "--device", "cuda"], "solver mappo device='cuda': no CUDA device is available"),
    ([*MAPPO, "-S", "resume=0123456789abcdef"], "solver mappo resume='0123456789abcdef': not a checkpoint"),
    (["sweep", "--task", "ent-usr", "--solver", "mappo[device=cuda]", "--seeds", "0"],
     "solver mappo device='cuda': no CUDA device is available"),
])
def test_solver_checks_run_before_anything_is_recorded(workdir, args, message):
    torch = pytest.importorskip("torch")
    if "cuda" in message and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store(workdir).search_experiments()  # an existing store: nothing may be added to it
    one_line(cli(args, workdir), message)
    assert runs(workdir) == []


# ---------------------------------------------------------------- item 6: hangs and tracebacks
@pytest.mark.parametrize("args, message", [
    (["run", *TOY, "--seeds", "0-10000000"], "--seeds '0-10000000' names 10,000,001 seeds; at most 10,000"),
    (["sweep", *TOY, "--seeds", "0-5,0-99999999999999999999"], "at most 10,000 per command"),
    (["run", "--task", "toy:ToyTask", "--solver", ":"], "solver ':' is not of the form module:Class; registered: "),
    (["run", "--task", ":", "--solver", "random"], "task ':' is not of the form module:Class; registered: "),
    (["run", "--task", "toy:ToyTask", "--solver", ".toy:ToyTask"], "solver '.toy:ToyTask' is not of the form"),
    (["reproduce", "ent-usr", "--figure", "4", "--out", "a-file"], "--out a-file is a file; give a folder"),
    (["reproduce", "ent-usr", "--figure", "4", "--out", "a-file/sub"], "--out a-file/sub: cannot create the folder"),
    (["leaderboard", "--out", "a-file"], "--out a-file is a file; give a folder"),
    (["ui", "--port", "99999"], "--port 99999 is not a TCP port (1-65535)"),
    (["ui", "--port", "0"], "--port 0 is not a TCP port (1-65535)"),
    (["sweep", "--task", "toy:ToyTask", "--solver", "random[budget=3"],
     "solver variant 'random[budget=3' is not of the form name[key=value,...]"),
    (["sweep", "--task", "toy:ToyTask", "--solver", "random[nokey=3]"],
     "unknown solver random config key 'nokey'; solver random has no config keys"),
    (["run", *TOY, "-S", "nokey=3"], "unknown solver random config key 'nokey'; solver random has no config keys"),
])
def test_no_hang_and_no_traceback(workdir, args, message):
    (workdir / "a-file").write_text("not a folder")
    one_line(cli(args, workdir, timeout=60), message)
    assert runs(workdir) == [] and (workdir / "a-file").read_text() == "not a folder"


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "--address '127.0.0.1:1': no Ray cluster answers there"),
    ("ray://127.0.0.1:1", "--address 'ray://127.0.0.1:1': no Ray cluster answers there"),
    ("nowhere", "--address 'nowhere' is not HOST:PORT, ray://HOST:PORT or auto"),
])
def test_an_unreachable_ray_cluster_is_one_line_and_records_no_sweep(workdir, address, message):
    pytest.importorskip("ray")
    one_line(cli(["sweep", *TOY, "--seeds", "0", "--executor", "ray", "--address", address], workdir,
                 timeout=120), message)
    assert runs(workdir) == []
