"""MAPPO end to end on the toy staged environment: learning, determinism, checkpoint/resume
(checkpoint/resume for IPPO and HAPPO too)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from isacbench.api import Budget, Reporter, UserError
from isacbench.solvers.mappo import HAPPO, IPPO, MAPPO

from test_mappo_env import ToyEnv, play

TINY = dict(num_envs=16, actor_hidden=(32, 32), critic_hidden=(64, 64), lr=3e-3, epochs=4, minibatches=2)
ROLLOUT = 16 * ToyEnv.frames_per_episode  # frames per update
EVAL_SEEDS = (1000, 1001)


def train(budget_frames: int, tmp_path=None, reporter: Reporter | None = None, solver_class=MAPPO, **over):
    solver = solver_class({**TINY, **over})
    rep = reporter or Reporter(artifact_dir=str(tmp_path) if tmp_path else None)
    policy = solver.train(ToyEnv, Budget(frames=budget_frames), np.random.default_rng(7), rep)  # make_env
    return solver, policy


def curve(solver) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "fps"} for h in solver.history]


def test_training_improves_the_toy_return_over_the_first_evaluation():
    _, first = train(ROLLOUT)  # the same initialization after its first update
    solver, trained = train(40 * ROLLOUT)
    before = play(ToyEnv(32), first.act, EVAL_SEEDS)
    after = play(ToyEnv(32), trained.act, EVAL_SEEDS)
    # 256 evaluation frames, reward sd < 1 -> standard error < 0.07; ask for > 5 standard errors
    assert after - before > 0.35, (before, after)
    assert len(solver.history) == 40 and solver.frames == 40 * ROLLOUT


def test_same_seed_gives_the_same_curve_and_weights():
    a, pa = train(4 * ROLLOUT)
    b, pb = train(4 * ROLLOUT)
    assert curve(a) == curve(b)
    for (ka, va), (kb, vb) in zip(pa.model.state_dict().items(), pb.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("solver_class", [MAPPO, IPPO, HAPPO])
def test_checkpoint_resume_continues_identically(tmp_path, solver_class):
    straight, p_straight = train(6 * ROLLOUT, solver_class=solver_class)

    def stop_after_4(fraction, text):
        if "update 4," in text:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(6 * ROLLOUT, reporter=Reporter(progress=stop_after_4, artifact_dir=str(tmp_path)), checkpoint_every=2,
              solver_class=solver_class)
    ckpt = tmp_path / "mappo" / "checkpoint.safetensors"
    assert ckpt.is_file() and (tmp_path / "mappo" / "training_curve.png").is_file()

    logged = []
    resumed, p_resumed = train(6 * ROLLOUT, reporter=Reporter(log_metrics=lambda m, s: logged.append((s, m))),
                               resume=str(tmp_path), solver_class=solver_class)
    assert curve(resumed) == curve(straight)
    assert [s for s, _ in logged] == [h["frames"] for h in straight.history]  # old steps re-logged, then new
    assert logged[0][1]["train/return"] == straight.history[0]["return"]
    for (k, v), (_, w) in zip(p_straight.model.state_dict().items(), p_resumed.model.state_dict().items()):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("via", ["environment", "reporter"])
def test_resume_from_an_mlflow_run_id(tmp_path, monkeypatch, via):
    """The run id is looked up in the run's own store (`Reporter.tracking_uri`, the CLI's
    --tracking-uri), else in $MLFLOW_TRACKING_URI."""
    from isacbench.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if via == "environment":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")  # the working directory's default store is another one
    tracker = Tracker(uri)
    run_id = tracker.start("toy", "mappo", 0, {}, {})
    art = tmp_path / "artifacts"
    train(2 * ROLLOUT, reporter=Reporter(artifact_dir=str(art), run_id=run_id), checkpoint_every=1)
    tracker.log_files(run_id, {str(f.relative_to(art)): f.read_bytes() for f in art.rglob("*") if f.is_file()})
    tracker.finish(run_id, "KILLED")
    reporter = Reporter(tracking_uri=uri if via == "reporter" else None)
    resumed, _ = train(3 * ROLLOUT, reporter=reporter, resume=run_id)
    assert [h["frames"] for h in resumed.history] == [ROLLOUT, 2 * ROLLOUT, 3 * ROLLOUT]
    with pytest.raises(UserError, match="resume"):
        train(3 * ROLLOUT, reporter=reporter, resume="0123456789abcdef")


def test_budget_below_one_rollout_is_a_user_error():
    with pytest.raises(UserError, match="below one rollout"):
        train(ROLLOUT - 1)


def _blas_threads() -> dict[str, int]:
    return {p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_training_runs_torch_and_numpys_blas_on_threads_and_restores_them():
    """`threads` caps torch's intra-op threads and numpy's BLAS threads while training (the environment's small
    products gain nothing from a second BLAS thread, whose spinning takes the core the rollout and the
    continuation worker need); both are restored afterwards, also when training fails."""
    seen = []

    def make_env(*args, **kwargs):
        seen.append((torch.get_num_threads(), _blas_threads()))
        return ToyEnv(*args, **kwargs)

    torch_before = torch.get_num_threads()
    with threadpool_limits(2, user_api="blas"):
        outside = _blas_threads()  # the libraries loaded now, each on 2 threads (or its own maximum)
        solver = MAPPO({**TINY, "threads": 1})
        solver.train(make_env, Budget(frames=ROLLOUT), np.random.default_rng(7), Reporter())
        assert seen and all(t == 1 and blas and set(blas.values()) == {1} for t, blas in seen), seen
        assert {k: v for k, v in _blas_threads().items() if k in outside} == outside
        with pytest.raises(UserError):
            solver.train(make_env, Budget(frames=1), np.random.default_rng(7), Reporter())
        assert {k: v for k, v in _blas_threads().items() if k in outside} == outside
    assert torch.get_num_threads() == torch_before
