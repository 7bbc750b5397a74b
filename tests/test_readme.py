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
