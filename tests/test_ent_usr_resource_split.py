"""ent-usr setting `resource_split`: absolute (eq. 59-60) vs proportional (actions.local_shares)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isacbench.api import Budget, UserError
from isacbench.tasks.ent_usr import EntUsrTask, actions
from test_ent_usr_model import play_frame, random_raw_actions

SMALL = {"frames_per_episode": 3, "eval_episodes": 2}
unit = st.floats(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(prop=unit, u=unit, v=unit)
def test_tilt_is_prop_at_one_half_monotone_in_u_and_keeps_empty_regimes_empty(prop, u, v):
    t = actions.proportional_tilt(np.array(prop), np.array([u, v, 0.5, 0.0, 1.0]))
    assert np.all((0 <= t) & (t <= 1)) and abs(t[2] - prop) < 1e-12
    assert (t[0] - t[1]) * (u - v) >= -1e-12  # monotone in the action
    if prop in (0.0, 1.0):  # a regime without services gets nothing, whatever the action
        assert np.all(t == prop)
    else:  # the whole of [0, 1] is reachable, and the log-odds add
        assert t[3] == 0.0 and t[4] == 1.0
        if 1e-9 < min(u, t[0]) and max(u, t[0]) < 1 - 1e-9:  # log-odds resolvable in float64 (no subnormals)
            logit = lambda x: np.log(x / (1 - x))  # noqa: E731
            assert abs(logit(t[0]) - logit(prop) - logit(u)) < 1e-6 * (1 + abs(logit(prop)) + abs(logit(u)))


def test_proportional_split_follows_the_classification():
    task = EntUsrTask({**SMALL, "resource_split": "proportional"})
    p, env = task.params, task.make_env(64, 0)
    env.reset(seed=3)
    acts = random_raw_actions(env, np.random.default_rng(4))
    cls = acts["lcp"]["classify"].reshape(64, p.M, p.K + p.Q) > 0.5
    cls[:8] = False  # all local: every resource stays local, whatever the power and bandwidth actions
    cls[8:16] = True  # all federated: none stays
    acts["lcp"]["classify"] = cls.reshape(acts["lcp"]["classify"].shape).astype(np.int64)
    reported = None
    for stage in env.stages:
        env.act({r: acts[r] for r in stage})
        if "fg" in stage:
            reported = env.observe("fg").reshape(64, p.M, -1)
    env.end_frame()
    d = env.last_decision
    assert np.all(d.p_loc[:8] == p.P_max) and np.all(d.b_loc[:8] == p.B)
    assert np.all(d.p_loc[8:16] == 0) and np.all(d.b_loc[8:16] == 0)
    prop = 1 - cls.mean(-1)  # (64, M)
    u_p = np.clip(acts["lcp"]["power"].reshape(64, p.M, p.A), 0, 1)
    u_b = np.clip(acts["lcp"]["bandwidth"].reshape(64, p.M), 0, 1)
    with np.errstate(invalid="ignore"):  # 0 / 0 where prop is 0 or 1: those are checked above
        want_p = prop[..., None] * u_p / (prop[..., None] * u_p + (1 - prop[..., None]) * (1 - u_p))
        want_b = prop * u_b / (prop * u_b + (1 - prop) * (1 - u_b))
    mixed = (prop > 0) & (prop < 1)
    assert mixed[16:].mean() > 0.5
    assert np.allclose(d.p_loc.reshape(64, p.M, p.A)[mixed] / p.P_max, want_p[mixed], atol=1e-12)
    assert np.array_equal(d.b_loc[mixed], np.rint(want_b[mixed] * p.B).astype(int))
    # the FG's reported state (eq. 74) carries the decoded federated shares: A powers, then K+Q flags, then B^F / B
    nk = p.K + p.Q
    rep_pf = reported[..., -(2 + 1 + nk + p.A): -(2 + 1 + nk)]
    rep_bf = reported[..., -3]
    assert np.allclose(rep_pf, 1 - d.p_loc.reshape(64, p.M, p.A) / p.P_max, atol=1e-6)
    assert np.allclose(rep_bf, 1 - d.b_loc / p.B, atol=1e-6)


def test_absolute_split_reads_the_actions_as_the_shares():
    task = EntUsrTask(SMALL)
    p, env = task.params, task.make_env(16, 0)
    env.reset(seed=1)
    acts = random_raw_actions(env, np.random.default_rng(2))
    play_frame(env, acts)
    d = env.last_decision
    assert np.array_equal(d.p_loc, np.clip(acts["lcp"]["power"], 0, 1).reshape(16, p.MA) * p.P_max)
    assert np.array_equal(d.b_loc, np.rint(np.clip(acts["lcp"]["bandwidth"], 0, 1).reshape(16, p.M) * p.B))


@pytest.mark.parametrize("federate", [0.0, 0.4])
def test_proportional_reference_splits_by_services(federate):
    task = EntUsrTask({**SMALL, "resource_split": "proportional", "reference_federate": federate})
    ref = task.make_env(4, 0).reference_actions()
    assert ref["lcp"]["power"].tolist() == [0.5] * task.params.A and ref["lcp"]["bandwidth"].tolist() == [0.5]
    assert ref["lcp"]["classify"].tolist() == [federate] * (task.params.K + task.params.Q)


def test_proportional_split_changes_only_the_label_not_the_instance():
    from isacbench import runner
    from isacbench.tasks.ent_usr.baselines import RandomMRT
    cfg = {**SMALL, "resource_split": "proportional"}
    _, tags = runner.run_tags(runner.RunSpec("ent-usr", "random-mrt", task_config=cfg), EntUsrTask(cfg),
                              RandomMRT(), Budget())
    _, plain = runner.run_tags(runner.RunSpec("ent-usr", "random-mrt", task_config=SMALL), EntUsrTask(SMALL),
                               RandomMRT(), Budget())
    assert tags["isacbench.instance"] == plain["isacbench.instance"]
    assert tags["isacbench.variant"] == "random-mrt[resource_split=proportional]"
    with pytest.raises(UserError, match="resource_split"):
        EntUsrTask({**SMALL, "resource_split": "even"})
