"""examples/torchrl_ent_usr.py: the ent-usr PettingZoo environment trains, unchanged, under TorchRL's
PettingZooWrapper for a few hundred environment steps."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "torchrl_ent_usr.py"


def test_torchrl_pettingzoo_wrapper_trains_on_ent_usr(tmp_path):
    pytest.importorskip("torchrl", reason="torchrl is not installed (pip install torchrl; in the [dev] extra)")
    p = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "300", "--frames-per-episode", "5",
                        "--episodes-per-update", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    # TorchRL grouped the agents by role, with the environment's own agent counts (default M=4, R=2)
    assert out["groups"] == {"lcp": 4, "lpb": 4, "fg": 1, "fpb": 2}
    assert out["episode_steps"] == 5 * 3  # ENT plays 3 stages per frame (LCP; LPB + FG; FPB)
    assert 200 <= out["env_steps"] <= 300 and out["updates"] == (out["env_steps"] - 15) // 60
    assert all(math.isfinite(v) for v in out["losses"])
    # every episode return is a sum of 5 frames' USR rewards (eq. 75), which are positive here
    assert out["episode_return_first"] > 0 and out["episode_return_last"] > 0
