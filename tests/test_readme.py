"""The README's "Add a solver" example works exactly as written."""
import json
import re
import shlex
from pathlib import Path

from conftest import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_add_a_solver_example_runs_through_the_cli(tmp_path):
    text = section("Add a solver")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    command = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip()
    (tmp_path / "my_solvers.py").write_text(code)
    assert command.startswith("PYTHONPATH=. isacbench ")
    args = shlex.split(command)[2:] + ["--json"]
    p = cli(args, tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    results = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert [r["seed"] for r in results] == [0, 1, 2]
    assert all(r["feasible"] and r["evaluations"] > 0 and r["objective"] > 0 for r in results)
    assert len(code.splitlines()) <= 45


def test_add_a_marl_solver_example_trains_and_is_evaluated_by_the_runner(tmp_path):
    text = section("Add a MARL solver")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    command = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip()
    assert 60 <= len(code.splitlines()) <= 100
    (tmp_path / "my_marl.py").write_text(code)
    assert command.startswith("PYTHONPATH=. isacbench run --task ent-usr ")
    p = cli(shlex.split(command)[2:] + ["--json"], tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    (result,) = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    # evaluated by the runner on the fixed episodes: 4 episodes x 20 frames, every per-frame metric averaged
    assert result["solver"] == "independent-reinforce" and result["feasible"]
    assert result["decision"]["episodes"] == 4 and result["decision"]["frames_per_episode"] == 20
    usr = result["metrics"]["usr"]
    assert result["objective"] == usr and 0 < usr < 100
    # the reporter's step-indexed curve reached MLflow: one point per update of 8 envs x 20 frames
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(result["run_id"], "train/return")
    assert [m.step for m in history] == [160, 320, 480, 640]
    # its evaluation during training (`reporter.evaluate`, every 4th update): the same episodes and scoring
    (evaluated,) = client.get_metric_history(result["run_id"], "eval/usr")
    assert evaluated.step == 640 and evaluated.value == result["objective"]
