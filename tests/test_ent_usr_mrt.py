"""True MRT beams beside codebook MRT (tasks/ent_usr/mrt.py, issue 13): the codebook path is unchanged,
the true-MRT path matches closed forms and loop references of eq. 24-25 and 28-34 with the actual
beam vectors, and the rule baselines' `beam` option (random-mrt: true MRT by default)."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isacbench.api import Budget, UserError
from isacbench.tasks.ent_usr import EntUsrTask, channels, model, mrt
from isacbench.tasks.ent_usr.baselines import CcnMRT, CfnMRT, RandomMRT
from isacbench.tasks.ent_usr.config import C0, EntUsrConfig, params_of
from test_cli import store
from test_ent_usr_env import SMALL, run
from test_ent_usr_model import TINY, _dop, _tau, tiny_frame
from conftest import cli


def frame_problem(cfg):
    task = EntUsrTask({"frames_per_episode": 2, "eval_episodes": 1, **cfg})
    return task.frame_problems(task.evaluation_env())[0]


def rule_outputs(prob, fed, beam):
    d = prob.to_decision(prob.rule(fed, prob.contiguous_groups(), beam=beam))
    return d, model.evaluate(prob.p, prob.state, d)


def mixed(p, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (p.M, p.K + p.Q)).astype(bool)


# ------------------------------------------------------------------ the codebook path is unchanged
def test_codebook_path_matches_values_pinned_before_true_mrt():
    """Outputs of model.evaluate with codebook beams, computed at HEAD before mrt.py existed (commit
    d3d2238; the codebook path was bit-identical there on these and 66 more arrays). A kernel change
    that moves them beyond float rounding changes the model."""
    p, s, d, out = tiny_frame()  # random actions, relative beam classes
    np.testing.assert_allclose(out["usr"], [0.8913431006314579, 0.9063058166127004], rtol=1e-6)
    np.testing.assert_allclose(out["utility_comm"], [3.206049715083775, 3.698860614050583], rtol=1e-6)
    assert float(out["rate"].sum()) == pytest.approx(4.051457473431735, rel=1e-6)
    assert float(np.einsum("bqii->", out["F"])) == pytest.approx(23.28897898483423, rel=1e-6)
    prob = frame_problem({})
    ev = prob.evaluate(prob.rule(mixed(prob.p), prob.contiguous_groups()))  # codebook MRT rule, M = 4
    assert [ev.metrics[k] for k in ("usr", "utility_comm", "utility_sense")] == pytest.approx(
        [4.5654424595259675, 9.70302954009532, 8.30550091158172], rel=1e-6)


def test_true_mrt_path_with_codebook_vectors_equals_the_codebook_path():
    """A true-MRT index on a service the AP does not serve (zero power) switches evaluate to the
    true-MRT path (explicit vectors, per-subband FIM) without changing any beam that carries power:
    every output equals the codebook path's."""
    prob = frame_problem({})
    p = prob.p
    d = prob.to_decision(prob.rule(mixed(p), prob.contiguous_groups()))
    loc_mask, _ = model.service_masks(p, d)
    a, j = np.argwhere(~loc_mask[0])[0]  # a federated service: no local power at AP a
    d2 = d.take(slice(0, 1))
    d2.beam_loc = d.beam_loc.copy()
    d2.beam_loc[0, a, j] = mrt.TRUE_MRT
    ref, got = model.evaluate(p, prob.state, d), model.evaluate(p, prob.state, d2)
    assert got["beam_loc"][0, a, j] == mrt.TRUE_MRT
    for k in ("sinr_loc", "sinr_fed", "rate", "F", "J", "err_pos", "err_vel", "usr", "utility_comm", "utility_sense"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-7 * np.abs(ref[k]).max(), err_msg=k)


# ------------------------------------------------------------------ closed forms
def test_single_ap_true_mrt_sinr_and_beampattern_closed_form():
    """One AP (M = A = 1), N = 4, K = 2 users and one target, all local: with w_k = h_k / ||h_k||,
    SINR_k = p_k ||h_k||^2 / (p_k' |h_k^H h_k'|^2 / ||h_k'||^2 + sigma + delta_k sum_s p_s) (eq. 24-25),
    and the FIM scales with Gamma_q = sum_k p_k |v(theta_q)^H w_k|^2 + p_q (eq. 32; one AP, so F is
    Gamma times terms that do not depend on the beams), against the codebook beams' Gamma."""
    prob = frame_problem({"M": 1, "R": 1, "A": 1, "K": 2, "Q": 1, "N_tx": 4})
    p = prob.p
    fed = np.zeros((1, 3), bool)
    d, out = rule_outputs(prob, fed, "mrt")
    _, code = rule_outputs(prob, fed, "codebook")
    pw, _, _ = model.per_subcarrier_powers(p, d)
    pw = pw[0, 0]
    h = out["h_hat"][0, 0, :, 0].astype(np.complex128)  # (K, N)
    delta = out["delta"][0, 0, :, 0]
    norm2 = np.sum(np.abs(h) ** 2, axis=1)
    for k in range(2):
        o = 1 - k
        want = pw[k] * norm2[k] / (pw[o] * abs(h[k].conj() @ h[o]) ** 2 / norm2[o] + p.noise + delta[k] * pw.sum())
        assert out["sinr_loc"][0, 0, k] == pytest.approx(want, rel=1e-5)
    x = prob.state.x_pred[0, 0]
    ap = prob.state.ap[0, 0]
    vq = channels.steering(np.arctan((ap[1] - x[1]) / (ap[0] - x[0])), p.N).astype(np.complex128)
    gain = lambda w: abs(vq.conj() @ w) ** 2  # noqa: E731
    gam_true = sum(pw[k] * gain(h[k] / np.sqrt(norm2[k])) for k in range(2)) + pw[2] * gain(vq)
    code_v = channels.steering(p.angles[code["beam_loc"][0, 0]], p.N).astype(np.complex128)
    gam_code = sum(pw[s] * gain(code_v[s]) for s in range(3))
    np.testing.assert_allclose(out["F"][0, 0], code["F"][0, 0] * gam_true / gam_code, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(2, 32), st.integers(0, 2**32 - 1), st.floats(-14, 0))
def test_true_mrt_desired_gain_beats_every_codebook_angle(n, n_angles, seed, log_scale):
    """|h^H w|^2 with w = h / ||h|| equals ||h||^2 >= |h^H v(theta_l)|^2 for every Theta angle, for
    every (AP, user, subband), local and federated, over random channels and scales."""
    p = params_of(EntUsrConfig(M=4, R=2, A=2, K=3, Q=1, N_tx=n, n_angles=n_angles))
    rng = np.random.default_rng(seed)
    shape = (1, p.MA, p.MK, p.M, p.N)
    h_hat = ((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * 10.0**log_scale).astype(np.complex64)
    d = types.SimpleNamespace(beam_loc=np.full((1, p.MA, p.K + p.Q), mrt.TRUE_MRT),
                              beam_fed=np.full((1, p.MA, p.MK + p.MQ), mrt.TRUE_MRT))
    zeros = lambda shape: np.zeros(shape, np.int64)  # noqa: E731  (codebook indices, unused here)
    bm = mrt.beams(p, d, model._diag_blocks(h_hat, p), h_hat, rng.uniform(-1.5, 1.5, (1, p.MA, p.MQ)),
                   zeros(d.beam_loc.shape), zeros(d.beam_fed.shape))
    h = h_hat.astype(np.complex128)
    best = np.max(np.abs(h.conj() @ channels.steering(p.angles, p.N).astype(np.complex128).T) ** 2, axis=-1)
    norm2 = np.sum(np.abs(h) ** 2, axis=-1)  # (1, MA, MK, M)
    fed = np.abs(np.einsum("bakin,biakn->baki", h.conj(), bm.fed_users)) ** 2
    np.testing.assert_allclose(fed, norm2, rtol=1e-5)
    assert np.all(fed >= best * (1 - 1e-5))
    own = model._diag_blocks(h, p)  # (1, M, A, K, N): cell m's users at its APs on subband m
    loc = np.abs(np.einsum("bmakn,bmakn->bmak", own.conj(), bm.loc[..., : p.K, :])) ** 2
    np.testing.assert_allclose(loc, model._diag_blocks(norm2[..., None], p)[..., 0], rtol=1e-5)
    assert np.all(np.linalg.norm(bm.fed_targets, axis=-1) == pytest.approx(1, rel=1e-6))


# ------------------------------------------------------------------ loop references, mixed topology
def true_mrt_frame():
    prob = frame_problem(TINY)
    d, out = rule_outputs(prob, mixed(prob.p, 4), "mrt")
    assert d.fed_users.any() and (~d.fed_users).any() and d.fed_targets.any()
    return prob.p, prob.state, d, out


def _services(p, d, pw_loc, pw_fed, b, cell, fed):
    """(APs, subbands, power(a, s), global services) of a user's / target's regime: s = ('u', k) or ('t', q)."""
    ca = np.arange(p.MA) // p.A
    if fed:
        r = d.group[b, cell]
        aps = [a for a in range(p.MA) if d.group[b, ca[a]] == r]
        subs = [i for i in range(p.M) if d.group[b, i] == r]
        srv = [("u", k) for k in range(p.MK)] + [("t", q) for q in range(p.MQ)]
        return aps, subs, lambda a, s: pw_fed[b, a, s[1] + (p.MK if s[0] == "t" else 0)], srv
    aps = [a for a in range(p.MA) if ca[a] == cell]
    srv = [("u", cell * p.K + j) for j in range(p.K)] + [("t", cell * p.Q + j) for j in range(p.Q)]
    local = lambda s: s[1] % p.K if s[0] == "u" else p.K + s[1] % p.Q  # noqa: E731  (index among K + Q)
    return aps, [cell], lambda a, s: pw_loc[b, a, local(s)], srv


def _beam(p, s, out, b, a, svc, i):
    """True MRT: h_hat_aki / ||h_hat_aki|| for a user, v(bearing of the predicted position) for a target."""
    kind, j = svc
    if kind == "u":
        h = out["h_hat"][b, a, j, i].astype(np.complex128)
        return h / np.linalg.norm(h)
    x, ap = s.x_pred[b, j], s.ap[b, a]
    return channels.steering(np.arctan((ap[1] - x[1]) / (ap[0] - x[0])), p.N).astype(np.complex128)


def test_true_mrt_sinr_matches_direct_loops():
    """eq. 24-25 with w_aki = h_hat_aki / ||h_hat_aki||: local per cell, federated coherent joint
    transmission of the CFN's APs on each of its subbands."""
    p, s, d, out = true_mrt_frame()
    pw_loc, pw_fed, _ = model.per_subcarrier_powers(p, d)
    h = out["h_hat"].astype(np.complex128)
    for k in range(p.MK):
        m, fed = k // p.K, bool(d.fed_users[0, k])
        aps, subs, pw, srv = _services(p, d, pw_loc, pw_fed, 0, m, fed)
        users = [sv for sv in srv if sv[0] == "u"]
        for i in subs:
            def amp(sv):
                return abs(sum(np.sqrt(pw(a, sv)) * (h[0, a, k, i].conj() @ _beam(p, s, out, 0, a, sv, i))
                               for a in aps)) ** 2
            noise = p.noise + sum(out["delta"][0, a, k, i] * sum(pw(a, sv) for sv in srv) for a in aps)
            want = amp(("u", k)) / (sum(amp(sv) for sv in users if sv[1] != k) + noise)
            got = out["sinr_fed"][0, k, i] if fed else out["sinr_loc"][0, m, k % p.K]
            np.testing.assert_allclose(got, want, rtol=2e-4)


def test_true_mrt_fim_matches_slow_reference_with_per_subband_beampattern():
    """F = sum over (a, a', i, b, l) of 2 lambda^R Gamma_a'qi / sigma grad(psi) grad(psi)^T (eq. 27-34),
    Gamma_a'qi = sum_s p_a's |v(theta_a'q)^H w_a'si|^2 (eq. 32) with the true-MRT vectors of subband i."""
    p, s, d, out = true_mrt_frame()
    pw_loc, pw_fed, _ = model.per_subcarrier_powers(p, d)
    l_loc = p.L - p.K * p.D_ce
    for q in range(p.MQ):
        x, m, fed = s.x_pred[0, q], q // p.Q, bool(d.fed_targets[0, q])
        aps, subs, pw, srv = _services(p, d, pw_loc, pw_fed, 0, m, fed)
        if fed:
            n_fed = d.fed_users[0].reshape(p.M, p.K).sum(1)
            nl = p.L - p.D_ce * (max(sum(n_fed[j] for j in subs) - n_fed[i] for i in subs) + p.K)
            nb = {i: p.B - d.b_loc[0, i] for i in subs}
        else:
            nl, nb = l_loc, {m: d.b_loc[0, m]}
        F = np.zeros((4, 4))
        for a in aps:
            for a2 in aps:
                ap1, ap2 = s.ap[0, a], s.ap[0, a2]
                d1, d2 = np.linalg.norm(x[:2] - ap1), np.linalg.norm(x[:2] - ap2)
                lam_r = p.G_R * p.N**2 * C0**2 * p.rcs / ((4 * np.pi) ** 3 * p.fc**2 * d1**2 * d2**2)
                vq = channels.steering(np.arctan((ap2[1] - x[1]) / (ap2[0] - x[0])), p.N).astype(np.complex128)
                grad_t, grad_f = np.zeros(4), np.zeros(4)
                for c in range(4):
                    e = np.eye(4)[c] * 1e-3
                    grad_t[c] = (_tau(ap1, ap2, x + e) - _tau(ap1, ap2, x - e)) / 2e-3
                    grad_f[c] = (_dop(ap1, ap2, x + e, p.fc) - _dop(ap1, ap2, x - e, p.fc)) / 2e-3
                for i in subs:
                    gamma = sum(pw(a2, sv) * abs(vq.conj() @ _beam(p, s, out, 0, a2, sv, i)) ** 2 for sv in srv)
                    ratio = p.subband_fc[i] / p.fc
                    for bb in range(nb[i]):
                        for ll in range(nl):
                            g = 2 * np.pi * (ll * p.T * ratio * grad_f - bb * p.df * grad_t)
                            F += 2 * lam_r * gamma / p.noise * np.outer(g, g)
        np.testing.assert_allclose(out["F"][0, q], F, rtol=1e-4, atol=1e-9 * np.abs(F).max())


# ------------------------------------------------------------------ the baselines' option
def test_rule_baselines_beam_option_defaults_and_labels():
    assert RandomMRT().config.beam == "mrt" and RandomMRT().variant == "random-mrt"
    assert RandomMRT({"beam": "codebook"}).variant == "random-mrt[beam=codebook]"
    for solver in (CcnMRT, CfnMRT):
        assert solver().config.beam == "codebook" and solver().variant == solver.name
        assert solver({"beam": "mrt"}).variant == f"{solver.name}[beam=mrt]"
    with pytest.raises(UserError, match="beam"):
        RandomMRT({"beam": "zf"})
    prob = frame_problem({})
    rng = np.random.default_rng(0)
    x = RandomMRT().solve(prob, Budget(), rng).decision
    assert x["true_mrt"] == 1.0
    d = prob.to_decision(x)
    assert np.all(d.beam_loc == mrt.TRUE_MRT) and np.all(d.beam_fed == mrt.TRUE_MRT)
    assert "true_mrt" not in RandomMRT({"beam": "codebook"}).solve(prob, Budget(), rng).decision
    assert "true_mrt" not in CcnMRT().solve(prob, Budget(), rng).decision
    with pytest.raises(UserError, match="true_mrt"):
        prob.evaluate({**x, "true_mrt": 0.5})
    # the power programs take true-MRT beams too (test_ent_usr_power_mrt.py): the blocks keep true_mrt
    assert prob.structure(at=x).convex_blocks.reference_decision["true_mrt"] == 1.0


def test_beam_option_changes_the_beams_only():
    """Same topology and signaling with either beam (random draws do not depend on it); true MRT
    gives more communication utility."""
    task = EntUsrTask(SMALL)
    for solver in (RandomMRT, CcnMRT, CfnMRT):
        true, code = (run(task, solver({"beam": b})).evaluation.metrics for b in ("mrt", "codebook"))
        for k in ("signaling", "fed_user_share", "fed_target_share", "coop_share", "infeasible_frames"):
            assert true[k] == code[k], (solver.name, k)
        assert true["utility_comm"] > code["utility_comm"], solver.name


def test_cli_runs_random_mrt_with_codebook_beams(workdir):
    args = ["run", "--task", "ent-usr", "--solver", "random-mrt", "-c", "frames_per_episode=2", "-c", "eval_episodes=1",
            "--json"]
    code = cli([*args, "-S", "beam=codebook"], workdir)
    assert code.returncode == 0, code.stderr
    true = cli(args, workdir)
    assert true.returncode == 0, true.stderr
    res = [json.loads(p.stdout) for p in (code, true)]
    assert res[0]["metrics"]["signaling"] == res[1]["metrics"]["signaling"]
    assert res[0]["objective"] != res[1]["objective"]
    variants = [store(workdir).get_run(r["run_id"]).data.tags["isacbench.variant"] for r in res]
    assert variants == ["random-mrt[beam=codebook]", "random-mrt"]
