"""Issue 16 through the CLI as a user meets it: damaged checkpoints, kills and interrupts (real
processes, real signals), provenance tags, MLflow interfaces and progress output."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TESTS, cli, interruptible
from test_cli import runs, store

MAPPO = ["run", "--task", "toy_frames:ChannelTask", "--solver", "mappo", "-S", "num_envs=2", "-S", "actor_hidden=[8]",
         "-S", "critic_hidden=[8]"]  # rollouts of 2 x 4 frames


def start(args, cwd, env=None, **kw):
    """`isacbench ARGS` as a background process (see conftest.cli)."""
    full = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
    full.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-c", "from isacbench.cli import main; main()", *map(str, args)],
                            cwd=cwd, env=full, preexec_fn=interruptible, **kw)


def wait_for(what, timeout=240.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s")


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ------------------------------------------------------------------ item 4: checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The checkpoint file of a tracked two-rollout MAPPO run (16 frames)."""
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("trained")
    p = cli([*MAPPO, "--budget-frames", "16", "--json"], d)
    assert p.returncode == 0, p.stderr
    run_id = json.loads(p.stdout)["run_id"]
    return (d / "mlartifacts" / run_id / "artifacts" / "mappo" / "checkpoint.safetensors").read_bytes()


def damage(data: bytes, kind: str) -> bytes:
    header = 8 + int.from_bytes(data[:8], "little")  # safetensors: u64 header size, JSON header, tensors
    if kind == "truncated":
        return data[:len(data) // 2]
    if kind == "garbage":
        return np.random.default_rng(0).bytes(len(data))
    if kind == "half-header":
        return data[:8 + (header - 8) // 2]
    i = (header + len(data)) // 2  # bit-flipped: one bit in the middle of the tensors
    return data[:i] + bytes([data[i] ^ 0x08]) + data[i + 1:]


@pytest.mark.parametrize("kind", ["truncated", "garbage", "half-header", "bit-flipped"])
def test_a_damaged_checkpoint_is_one_line_exit_2_and_records_nothing(workdir, checkpoint, kind):
    (workdir / "ckpt.safetensors").write_bytes(damage(checkpoint, kind))
    p = cli([*MAPPO, "--budget-frames", "24", "-S", "resume=ckpt.safetensors"], workdir)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert "resume='ckpt.safetensors': the checkpoint ckpt.safetensors is damaged" in line, line
    assert runs(workdir) == []


@pytest.mark.parametrize("args, message", [
    (["-S", "lr=0.001", "--budget-frames", "24"],
     "the checkpoint was trained with other hyperparameters (lr: 0.0003 in the checkpoint, 0.001 here); "
     "resume with the same solver config"),
    (["-c", "users=4", "--budget-frames", "24"], "the checkpoint was trained on another environment (role user: "
                                                 "'3 agents, observations of 2, actions channel 1x2 classes, power "
                                                 "1x[0, 1]' in the checkpoint, '4 agents, "),
    (["--budget-frames", "8"], "the checkpoint holds 16 frames, more than the budget of 8 frames; resume with "
                               "--budget-frames 16 or more"),
])
def test_a_checkpoint_of_another_config_or_a_larger_budget_is_refused(workdir, checkpoint, args, message):
    (workdir / "ckpt.safetensors").write_bytes(checkpoint)
    p = cli([*MAPPO, *args, "-S", "resume=ckpt.safetensors"], workdir)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()], p.stderr
    assert message in p.stderr and "resume='ckpt.safetensors'" in p.stderr
    assert runs(workdir) == []


def test_a_checkpoint_without_a_checksum_is_refused(tmp_path):
    pytest.importorskip("torch")
    import torch
    from safetensors.torch import save_file

    from isacbench.api import UserError
    from isacbench.solvers.mappo import checkpoint

    save_file({"model.w": torch.zeros(2)}, str(tmp_path / "old.safetensors"), metadata={"meta": "{}", "param_groups": "[]"})
    with pytest.raises(UserError, match="old.safetensors has no checksum"):
        checkpoint.read("old.safetensors", tmp_path / "old.safetensors", "mappo")


# ------------------------------------------------------------------ item 5: kills and interrupts
def running(workdir, metric=None):
    """The RUNNING runs (with `metric` logged)."""
    return [r for r in runs(workdir, "RUNNING") if metric is None or metric in r.data.metrics]


def test_kill_9_of_a_run_is_marked_killed_with_its_files_on_the_next_start(workdir):
    tmp = workdir / "tmp"
    tmp.mkdir()
    p = start(["run", "--task", "toy_frames:ChannelTask", "--solver", "toy_frames:ArtifactLearner"], workdir,
              {"TOY_SLEEP": "600", "TMPDIR": str(tmp)}, stderr=subprocess.DEVNULL)
    try:  # the scratch folder is named after the process and the run
        (scratch,) = wait_for(lambda: list(tmp.glob(f"isacbench-{p.pid}-*-*/checkpoint.bin")))
        (run,) = running(workdir)
        run_id = run.info.run_id
        assert scratch.parent.name.startswith(f"isacbench-{p.pid}-{run_id}-")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert [r.info.run_id for r in runs(workdir, "RUNNING")] == [run_id]
    q = cli(["run", "--task", "toy:ToyTask", "--solver", "random"], workdir, {"TMPDIR": str(tmp)})
    assert q.returncode == 0, q.stderr
    (line,) = [line for line in q.stderr.splitlines() if run_id in line]
    assert f"was left RUNNING by process {p.pid}, which is gone: marked KILLED" in line
    assert "its files are now its artifacts: checkpoint.bin" in line
    killed = store(workdir).get_run(run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["isacbench.host"] == socket.gethostname()
    assert "checkpoint.bin" in {a.path for a in store(workdir).list_artifacts(run_id)}
    assert not scratch.parent.exists()  # the scratch folder of the dead process is removed
    assert runs(workdir, "RUNNING") == []


def spawned_workers(pid: int) -> list[int]:
    """The sweep's two pool workers, once both are started."""
    kids = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in _proc_text(t / "children").split()]
    workers = [k for k in kids if "spawn_main" in _proc_text(Path(f"/proc/{k}/cmdline"))]
    return workers if len(workers) == 2 else []


def _proc_text(path: Path) -> str:
    """A /proc file's text; "" where its thread or process ended since it was listed (a short-lived child)."""
    try:
        return path.read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
def test_kill_9_of_a_sweep_ends_its_workers_and_its_parent_run_is_marked_killed(workdir):
    env = {"TOY_SLEEP": "600", "TMPDIR": str(workdir)}
    p = start(["sweep", "--task", "toy:ToyTask", "--solver", "toy:FlakySolver", "--seeds", "0-1", "--workers", "2"],
              workdir, env, stderr=subprocess.DEVNULL)
    workers = []
    try:
        workers = wait_for(lambda: spawned_workers(p.pid))  # started after the sweep's parent run
        (parent,) = running(workdir)
        time.sleep(2)  # the workers are in the solver's sleep
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    try:
        wait_for(lambda: all(gone(w) for w in workers), timeout=60)  # a hang guard: they poll every ~1 s
    finally:
        for w in workers:
            if not gone(w):
                os.kill(w, signal.SIGKILL)
    q = cli(["run", "--task", "toy:ToyTask", "--solver", "random"], workdir, {"TMPDIR": str(workdir)})
    (line,) = [line for line in q.stderr.splitlines() if parent.info.run_id in line]
    assert "marked KILLED" in line and store(workdir).get_run(parent.info.run_id).info.status == "KILLED"


def test_ctrl_c_while_a_run_is_recorded_marks_it_killed(workdir):
    """The 500 MB artifact keeps the recording busy long enough to interrupt it: the signal goes as soon as
    its copy appears in the store (the recording logs the metrics first), found by a file-system poll
    (an MLflow query under load can take longer than the whole copy)."""
    tmp = workdir / "tmp"
    tmp.mkdir()
    p = start(["run", "--task", "toy_frames:ChannelTask", "--solver", "toy_frames:ArtifactLearner"], workdir,
              {"TOY_ARTIFACT_MB": "500", "TMPDIR": str(tmp)}, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: list((workdir / "mlartifacts").glob("**/checkpoint.bin")))
        p.send_signal(signal.SIGINT)
        p.wait(timeout=120)
    finally:
        p.kill()
    (run,) = runs(workdir)
    assert "objective" in run.data.metrics  # it was being recorded
    recorded = store(workdir).get_run(run.info.run_id)
    assert recorded.info.status == "KILLED", recorded.data.tags.get("isacbench.error")
    assert recorded.data.tags["isacbench.error"].startswith("recording failed: KeyboardInterrupt")


# ------------------------------------------------------------------ items 7 and 8: provenance and interfaces
def test_a_run_records_its_cpu_model_and_owner_and_prints_its_whole_run_id_at_80_columns(workdir):
    p = cli(["run", "--task", "toy:ToyTask", "--solver", "random"], workdir, {"COLUMNS": "80"})
    assert p.returncode == 0, p.stderr
    (run,) = runs(workdir, "FINISHED")
    assert f"seed 0: run id {run.info.run_id}" in p.stdout.splitlines()
    tags = run.data.tags
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        assert tags["isacbench.cpu"] == models[0]
    assert tags["isacbench.cpu"] and tags["isacbench.host"] == socket.gethostname()
    assert int(tags["isacbench.pid"]) > 0


def test_experiments_open_in_the_runs_view_and_an_unproved_bound_is_not_recorded(workdir):
    p = cli(["run", "--task", "toy:ToyTask", "--solver", "toy:NanBoundSolver", "--json"], workdir)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["bound"] is None
    (run,) = runs(workdir, "FINISHED")
    assert "bound" not in run.data.metrics
    exp = store(workdir).get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow 3: "Machine learning"
    solution = workdir / "mlartifacts" / run.info.run_id / "artifacts" / "solution.json"
    assert json.loads(solution.read_text())["bound"] is None


# ------------------------------------------------------------------ item 9: progress
def test_without_a_terminal_progress_is_plain_lines_and_a_partial_rollout_is_said(workdir):
    p = cli([*MAPPO, "--budget-frames", "44", "--no-track"], workdir)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert ("note: solver mappo trains in whole rollouts of 8 frames (num_envs=2 x 4 frames per episode): it "
            "uses 40 of the budget of 44 frames (48 would be 6 rollouts)") in lines
    shown = [(int(m[1]), m[2]) for m in (re.match(r"toy_frames:ChannelTask x mappo: (\d+)% after \d+ s: seed 0: "
                                                  r"(training|evaluation): ", line) for line in lines) if m]
    assert [s for s, _ in shown] == sorted(s for s, _ in shown) and shown[-1] == (100, "evaluation")
    assert sorted({s for s, phase in shown if phase == "training"}) == [18, 36, 54, 72, 90], lines


def test_in_a_terminal_one_bar_never_goes_back_and_the_run_id_is_whole(workdir):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    p = start([*MAPPO, "--budget-frames", "40"], workdir, {"TERM": "xterm"}, stdin=slave,
              stdout=slave, stderr=slave)
    os.close(slave)
    chunks, end = [], time.monotonic() + 600
    while select.select([master], [], [], max(0.0, end - time.monotonic()))[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    try:
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()  # a no-op once it has ended
    text = b"".join(chunks).decode(errors="replace")
    shown = [(int(m[1]), m.start()) for m in re.finditer(r"(\d+)%", text)]
    back = [at for (a, _), (b, at) in zip(shown, shown[1:]) if b < a]
    assert not back, repr(text[back[0] - 400:back[0] + 100]) if back else ""
    assert shown[-1][0] == 100
    (run,) = runs(workdir, "FINISHED")
    assert f"seed 0: run id {run.info.run_id}" in text

