"""ent-usr power programs at true-MRT beams (`true_mrt` = 1, mrt.py): the blocks' gains and sensing
terms are those model.evaluate uses (so the programs model the frame exactly), and the `beam=mrt`
option of `convex` and `topology-search` optimizes from / searches true-MRT layouts."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from isacbench.api import Budget, BudgetedProblem, UserError
from isacbench.runner import solve_problem
from isacbench.solvers.convex import Convex
from isacbench.solvers.topology_search import TopologySearch
from isacbench.tasks.ent_usr import EntUsrTask, model, mrt
from isacbench.tasks.ent_usr.power import PowerPrograms

SMALL = {"M": 1, "R": 1, "A": 2, "K": 2, "Q": 1, "frames_per_episode": 2, "eval_episodes": 1}
GRID = {"M": 4, "R": 2, "A": 1, "K": 2, "Q": 1, "frames_per_episode": 2, "eval_episodes": 1}  # CFNs of 2 subbands


def frame(cfg, b=0):
    task = EntUsrTask(cfg)
    return task.frame_problems(task.evaluation_env())[b]


@functools.cache
def full_frame():
    """Table I sizes (M = 4, R = 2), the second evaluation environment's first frame."""
    return frame({"frames_per_episode": 2, "eval_episodes": 2}, 1)


def topologies(p):
    nk = p.K + p.Q
    return {"ccn": np.zeros((p.M, nk), bool), "cfn": np.ones((p.M, nk), bool),
            "mixed": np.random.default_rng(3).integers(0, 2, (p.M, nk)).astype(bool)}


def with_levels(x, lv, p):
    nk = p.K + p.Q
    return {**x, **{f"lv_{s // nk}_{s % nk}": float(v) for s, v in enumerate(lv)}}


@pytest.mark.parametrize("topo", ["ccn", "cfn", "mixed"])
def test_true_mrt_start_point_equals_the_model(topo):
    """At a true-MRT rule layout, the convex blocks' objectives at their start points add up to
    problem.evaluate of the same decision (and of the combined start), as for codebook beams."""
    pr = full_frame()
    x = pr.rule(topologies(pr.p)[topo], pr.contiguous_groups(), beam="mrt")
    blocks = pr.structure(x).convex_blocks
    total = sum(prog.objective(prog.start[None])[0] for prog in blocks.programs)
    combined = blocks.combine([prog.start for prog in blocks.programs])
    assert combined["true_mrt"] == 1.0
    assert total == pytest.approx(pr.evaluate(combined).objective, rel=1e-6)
    assert total == pytest.approx(pr.evaluate(x).objective, rel=1e-6)  # the rule's levels fit the budgets
    # and true MRT is not codebook MRT here: the program models the true beams, not the codebook ones
    assert pr.evaluate(x).objective != pytest.approx(pr.evaluate({**x, "true_mrt": 0.0}).objective, rel=1e-4)


@pytest.mark.parametrize("topo", ["ccn", "cfn", "mixed"])
def test_true_mrt_block_terms_reproduce_the_model(topo):
    """At random levels: each block's SINRs (eq. 24-25, per subband with the subband's beams) and
    sensing utility (eq. 32 per subband, mrt.fim) equal the model's; the blocks add up to the USR."""
    pr = full_frame()
    p, nk = pr.p, pr.p.K + pr.p.Q
    progs = PowerPrograms(p, pr.state, pr.rule(topologies(p)[topo], pr.contiguous_groups(), beam="mrt"),
                          pr.to_decision)
    assert mrt.uses_true_mrt(progs.d_unit)
    blocks = pr.structure(progs.x_ref).convex_blocks
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(4):
        lv = rng.uniform(0, 1.2, p.M * nk)
        x = with_levels(progs.x_ref, lv, p)
        out = model.evaluate(p, pr.state, pr.to_decision(x))
        fits = True
        for k, b in enumerate(progs.blocks):
            lb = lv[np.concatenate([b.users, b.targets])][None]
            if (lb @ b.load.T).max() > 1:  # the frame problem scales over-budget APs; the program does not
                fits = False
                continue
            if b.label.startswith("ccn"):
                want = out["sinr_loc"][0, int(b.label[3:]), b.users % nk][None]
            else:
                cells = np.flatnonzero(progs.d_unit.group[0] == int(b.label[3:]))
                want = out["sinr_fed"][0][(b.users // nk) * p.K + b.users % nk][:, cells].T
            np.testing.assert_allclose(b.sinr(lb)[0], want, rtol=2e-4)  # the model runs in complex64
            assert progs.sense_utility(k, lb)[0] == pytest.approx(out["u_sense"][0, b.target_q].sum(), rel=1e-6)
            checked += 1
        if fits:
            total = sum(prog.objective(lv[np.concatenate([b.users, b.targets])][None])[0]
                        for prog, b in zip(blocks.programs, progs.blocks))
            assert total == pytest.approx(float(out["usr"][0]), rel=1e-6)
    assert checked


def test_cfn_block_keeps_one_beampattern_per_subband():
    """CFNs over two subbands each with true MRT: its sensing terms carry one beampattern per subband
    (a federated user's beam changes with the subband), codebook beams one in all."""
    pr = frame(GRID)
    fed = np.ones((pr.p.M, pr.p.K + pr.p.Q), bool)
    true_ = PowerPrograms(pr.p, pr.state, pr.rule(fed, pr.contiguous_groups(), beam="mrt"), pr.to_decision)
    code = PowerPrograms(pr.p, pr.state, pr.rule(fed, pr.contiguous_groups()), pr.to_decision)
    assert true_.blocks[0].sense["coef"].shape[0] == 2 and true_.blocks[0].sense["sums"].shape[0] == 2
    assert code.blocks[0].sense["coef"].ndim == 3
    # the per-subband sums add up to the CFN's sums over its subbands
    np.testing.assert_allclose(true_.blocks[0].sense["sums"].sum(axis=0), code.blocks[0].sense["sums"], rtol=1e-12)


@pytest.mark.parametrize("cfg", [SMALL, GRID])
def test_convex_beam_mrt_beats_the_true_mrt_rule(cfg):
    """`convex -S beam=mrt` returns a feasible true-MRT decision at least as good as the better
    true-MRT rule layout (equal power); the default stays at codebook beams."""
    pr = frame(cfg)
    p = pr.p
    rules = [pr.evaluate(pr.rule(np.full((p.M, p.K + p.Q), f), pr.contiguous_groups(), beam="mrt")).objective
             for f in (False, True)]
    sol = solve_problem(pr, Convex({"beam": "mrt"}), Budget(evaluations=300), np.random.default_rng(0))
    assert sol.evaluation.feasible and sol.decision["true_mrt"] == 1.0
    assert sol.evaluation.objective >= max(rules) - 1e-12
    assert np.isfinite(sol.evaluation.objective) and sol.evaluation.objective > 0
    code = solve_problem(pr, Convex(), Budget(evaluations=300), np.random.default_rng(0))
    assert code.decision.get("true_mrt", 0.0) == 0.0


def test_topology_search_beam_mrt_searches_true_mrt_layouts():
    """`topology-search -S beam=mrt`: starts and completed layouts carry true_mrt = 1; the result is
    feasible, true MRT, and at least `convex -S beam=mrt`'s value (its best start is convex's layout)."""
    pr = frame(GRID)
    ds = pr.structure(options={"beam": "mrt"}).discrete
    assert all(ds.complete(z)["true_mrt"] == 1.0 for z in ds.starts)
    assert "true_mrt" not in pr.structure().discrete.complete(ds.starts[0])
    oracle = solve_problem(pr, TopologySearch({"beam": "mrt"}), Budget(evaluations=600), np.random.default_rng(0))
    convex = solve_problem(pr, Convex({"beam": "mrt"}), Budget(evaluations=600), np.random.default_rng(0))
    assert oracle.evaluation.feasible and oracle.decision["true_mrt"] == 1.0
    assert oracle.evaluation.objective >= convex.evaluation.objective - 1e-9


def test_structure_options_are_checked():
    """Unknown ent-usr structure options are a UserError; a problem whose structure() takes no
    options refuses them through the BudgetedProblem (convex -S beam=mrt on another task)."""
    pr = frame(SMALL)
    with pytest.raises(UserError, match="beam"):
        pr.structure(options={"beam": "zf"})
    with pytest.raises(UserError, match="beam"):
        pr.structure(options={"beams": "mrt"})

    class NoOptions(type(pr)):
        def structure(self, at=None):
            return super().structure(at)

    other = NoOptions(pr.p, pr.state)
    with pytest.raises(UserError, match="takes no options"):
        BudgetedProblem(other, Budget(evaluations=10)).structure(options={"beam": "mrt"})
    assert BudgetedProblem(other, Budget(evaluations=10)).structure().convex_blocks is not None
