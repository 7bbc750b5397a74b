"""ent-usr physics: channels, estimation, SINR, FIM/BFIM, signaling, utilities, action projection."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isacbench.tasks.ent_usr import EntUsrTask, actions, channels, model, sensing, signaling
from isacbench.tasks.ent_usr.config import C0, EntUsrConfig, params_of

P = params_of(EntUsrConfig())


def random_raw_actions(env, rng, spread=1.0):
    """Raw actions in and outside the heads' domains (the env must clip / project them)."""
    out = {}
    for role, spec in env.roles.items():
        heads = {}
        for h in spec.heads:
            shape = (env.num_envs, spec.n_agents, h.size)
            if h.kind == "bernoulli":
                heads[h.name] = rng.integers(0, 2, shape)
            elif h.kind == "categorical":
                heads[h.name] = rng.integers(0, h.classes, shape)
            else:
                heads[h.name] = rng.uniform(-spread, 1 + spread, shape)
        out[role] = heads
    return out


def play_frame(env, acts):
    for stage in env.stages:
        env.act({r: acts[r] for r in stage})
    return env.end_frame()


# ------------------------------------------------------------------ projection
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=12), st.integers(0, 2**12 - 1), st.integers(0, 10**6))
def test_simplex_projection_is_the_euclidean_projection(x, mask_bits, seed):
    x = np.array(x)
    mask = np.array([(mask_bits >> i) & 1 for i in range(len(x))], bool)
    y = actions.project_simplex(x, mask)
    assert np.all(y >= 0) and y.sum() <= 1 + 1e-12 and np.all(y[~mask] == 0)
    # optimality: no feasible point is closer to x (on the masked coordinates)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        z = rng.dirichlet(np.ones(len(x))) * rng.uniform(0, 1) * mask
        assert np.sum((x * mask - y) ** 2) <= np.sum((x * mask - z) ** 2) + 1e-9


def test_projection_matches_hand_values():
    np.testing.assert_allclose(actions.project_simplex(np.array([0.2, 0.3, -1.0]), np.ones(3, bool)), [0.2, 0.3, 0])
    np.testing.assert_allclose(actions.project_simplex(np.array([1.0, 1.0, 0.0]), np.ones(3, bool)), [0.5, 0.5, 0])
    np.testing.assert_allclose(actions.project_simplex(np.array([2.0, 0.5, 9.0]), np.array([1, 1, 0], bool)),
                               [1.0, 0.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1, 4), min_size=4, max_size=4))
def test_group_repair_enforces_m_max(groups):
    g = actions.repair_groups(np.array([groups]), P)
    sizes = np.bincount(g[0], minlength=P.R)
    assert g.min() >= 0 and g.max() < P.R and sizes.max() <= P.M_max and sizes.sum() == P.M
    clipped = np.clip(groups, 0, P.R - 1)
    if np.bincount(clipped, minlength=P.R).max() <= P.M_max:
        assert np.array_equal(g[0], clipped)  # a feasible grouping is left alone


# -------------------------------------------------------- constraints of a frame
@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.0, 3.0))
def test_power_and_partition_constraints_hold_for_any_raw_action(seed, spread):
    task = EntUsrTask({"frames_per_episode": 2})
    env = task.make_env(3, seed)
    rng = np.random.default_rng(seed)
    d = actions.decode(P, random_raw_actions(env, rng, spread))
    pw_loc, pw_fed, b_fed_r = model.per_subcarrier_powers(P, d)
    loc_mask, fed_mask = model.service_masks(P, d)
    ca = np.arange(P.MA) // P.A
    b_loc = d.b_loc[:, ca]
    p_fed = P.P_max - d.p_loc
    tol = 1e-9 * P.P_max
    assert np.all(pw_loc >= 0) and np.all(pw_fed >= 0)
    assert np.all(b_loc[..., None] * pw_loc <= d.p_loc[..., None] + tol)  # eq. 14
    assert np.all(b_loc * pw_loc.sum(-1) <= d.p_loc + tol)  # eq. 16
    b_fed_ap = np.take_along_axis(b_fed_r, d.group[:, ca], axis=1)
    assert np.all(b_fed_ap[..., None] * pw_fed <= p_fed[..., None] + tol)  # eq. 15
    assert np.all(b_fed_ap * pw_fed.sum(-1) <= p_fed + tol)  # eq. 17
    assert np.all(pw_loc[~loc_mask] == 0) and np.all(pw_fed[~fed_mask] == 0)  # non-members get nothing
    assert np.all((0 <= d.p_loc) & (d.p_loc <= P.P_max)) and np.all((0 <= d.b_loc) & (d.b_loc <= P.B))  # eq. 10
    # eq. 8: each service of CCN m is local (served by the APs of m) xor federated
    fed_k_at_ap = d.fed_users.reshape(-1, P.M, P.K)[:, ca]
    fed_q_at_ap = d.fed_targets.reshape(-1, P.M, P.Q)[:, ca]
    assert np.array_equal(loc_mask, ~np.concatenate([fed_k_at_ap, fed_q_at_ap], -1))
    # eq. 12 / 52: each CCN in exactly one CFN, CFN sizes within M_max
    sizes = np.stack([np.bincount(g, minlength=P.R) for g in d.group])
    assert np.all(sizes.sum(1) == P.M) and sizes.max() <= P.M_max
    # a federated service is served only by APs of its own CFN
    srv_cell = np.concatenate([np.arange(P.MK) // P.K, np.arange(P.MQ) // P.Q])
    same_cfn = d.group[:, ca][:, :, None] == d.group[:, srv_cell][:, None, :]
    assert not np.any(fed_mask & ~same_cfn)
    fed_srv = np.concatenate([d.fed_users, d.fed_targets], 1)
    assert np.array_equal(fed_mask.any(1), fed_srv)  # every federated service has its CFN's APs


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10**6))
def test_utilities_in_unit_interval_and_usr_nonnegative(seed):
    env = EntUsrTask({"frames_per_episode": 3}).make_env(4, seed)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        reward, _, m = play_frame(env, random_raw_actions(env, rng))
        out = env.last
        for k in ("u_comm", "u_sense"):
            assert np.all((out[k] >= 0) & (out[k] <= 1))
        assert np.all(m["usr"] >= 0) and np.all(np.isfinite(reward))
        np.testing.assert_allclose(m["utility"], m["utility_comm"] + m["utility_sense"])
        np.testing.assert_allclose(m["usr"], m["utility"] / m["signaling"])
        np.testing.assert_allclose(reward, np.log(np.maximum(m["utility"], P.utility_floor)) - np.log(m["signaling"]))


# ------------------------------------------------------------------- signaling
def test_signaling_matches_hand_computation():
    # M=4, A=3, N=4, K=4: o = 8*4*2*4*4 = 1024, O_bar = 716.8, O^{L,(1)} = 2*4*4 = 32
    out = signaling.overhead(P, np.array([[2, 1, 0, 3]]), np.array([[1, 0, 2, 0]]), np.array([[0, 0, 1, 1]]))
    np.testing.assert_array_equal(out["O_L2"], [[2 * 12 + 20, 12, 40, 36]])  # eq. 40
    # CFN 0: |K^F| = 3, |S| = 2: (6-2) + (6-1) = 9; CFN 1: (6-0) + (6-3) = 9; times (A-1)N + AN = 20
    np.testing.assert_array_equal(out["O_F"], [[180, 180]])
    np.testing.assert_allclose(out["signaling"], [(4 * (716.8 + 32) + 132 + 360) / 1024])


def test_all_local_frame_has_no_federated_overhead():
    out = signaling.overhead(P, np.zeros((1, 4)), np.zeros((1, 4)), np.array([[0, 1, 0, 1]]))
    assert np.all(out["O_L2"] == 0) and np.all(out["O_F"] == 0)
    np.testing.assert_allclose(out["signaling"], [4 * (716.8 + 32) / 1024])


def test_utility_normalization_hand_values():
    np.testing.assert_allclose(signaling.comm_utility(np.array([0.0, 0.05, 0.2, 0.35, 1.0]), P), [0, 0, 0.5, 1, 1])
    span = np.log10(2) - np.log10(5e-5)
    u = signaling.sense_utility(np.array([2.0, 1e-3, 1e-6]), np.array([1e-6, 1e-2, 1e-6]), P)
    np.testing.assert_allclose(u, [0.0, (np.log10(2) + 2) / span, 1.0])


# -------------------------------------------------------------------- channels
def test_rician_init_and_gauss_markov_statistics():
    rng = np.random.default_rng(1)
    n = 4000
    lam = np.full((n, 1, 1), 2.0)
    theta = rng.uniform(-np.pi / 2, np.pi / 2, (n, 1, 1))
    h0 = channels.init_channel(lam, theta, P, rng).astype(np.complex128)
    h1 = channels.evolve(h0, lam, P.rho, rng).astype(np.complex128)
    # E|h|^2 = lam per antenna (eq. 2): E||h||^2 = lam N, and eq. 1 keeps it; entries of one draw
    # share the LoS gain, so the standard error is taken over per-draw means
    for hh in (h0, h1):
        per_draw = (np.abs(hh) ** 2).reshape(n, -1).mean(1)
        assert abs(per_draw.mean() - 2.0) < 4 * per_draw.std() / np.sqrt(n)
    corr = ((h0.conj() * h1).real / 2.0).reshape(n, -1).mean(1)  # E[h0^* h1] / lam = rho (eq. 1)
    assert abs(corr.mean() - P.rho) < 4 * corr.std() / np.sqrt(n)


def test_mmse_error_variance_and_orthogonality():
    rng = np.random.default_rng(2)
    n = 20000
    lam = np.full((n, 1, 1), 1.0)
    h_prev = channels.cn(rng, (n, 1, 1, 1, 4))
    h = channels.evolve(h_prev, lam, P.rho, rng)
    pilots = np.full((n, 1, 1, 1), 4.0)
    noise_scale = P.p_ce * 4 * (1 - P.rho**2)  # make the pilot SNR 1: sigma = p D lam_bar
    p2 = params_of(EntUsrConfig(N0_dbm_hz=10 * np.log10(noise_scale / P.df) + 30))
    h_hat, delta = channels.mmse_estimate(h, h_prev, lam[..., None], pilots, channels.cn(rng, h.shape), p2)
    err = (h - h_hat).astype(np.complex128)
    lam_bar = 1 - P.rho**2
    np.testing.assert_allclose(delta, lam_bar / 2, rtol=1e-5)  # eq. 21 with SNR 1
    e2 = np.abs(err) ** 2
    assert abs(e2.mean() - lam_bar / 2) < 5 * e2.std() / np.sqrt(e2.size)
    cross = (h_hat.astype(np.complex128).conj() * err).real  # E[h_hat^* e] = 0
    assert abs(cross.mean()) < 5 * cross.std() / np.sqrt(cross.size)


def test_pilot_counts_follow_eq22():
    d = channels.pilot_counts(P, np.array([[3, 0, 16, 5]]))
    a, k = 4, 5  # AP 4 and user 5 are both in cell 1
    assert d[0, a, k, 1] == P.B * P.D_ce and d[0, a, k, 2] == 16 and d[0, a, k, 0] == 3
    assert d[0, 0, k, 1] == 0  # AP of cell 0, user of cell 1 on subband 1: Phase II, B_1^F = 0


# ------------------------------------------------------- SINR and FIM references
TINY = {"M": 4, "R": 2, "A": 2, "K": 2, "Q": 1, "N_tx": 2, "B": 4, "L": 12, "frames_per_episode": 3}


def tiny_frame(seed=3, n_env=2):
    task = EntUsrTask(TINY)
    env = task.make_env(n_env, seed)
    rng = np.random.default_rng(seed)
    acts = random_raw_actions(env, rng, spread=0.2)
    acts["lcp"]["bandwidth"] = np.full_like(acts["lcp"]["bandwidth"], 0.5)
    state = env.frame_state()
    d = actions.decode(task.params, acts)
    return task.params, state, d, model.evaluate(task.params, state, d)


def test_sinr_matches_direct_loops():
    p, s, d, out = tiny_frame()
    h_hat, delta = out["h_hat"].astype(np.complex128), out["delta"]
    pw_loc, pw_fed, _ = model.per_subcarrier_powers(p, d)
    ca = np.arange(p.MA) // p.A
    v = lambda idx: channels.steering(p.angles[idx], p.N)  # noqa: E731
    for b in range(h_hat.shape[0]):
        for k in range(p.MK):
            m = k // p.K
            if not d.fed_users[b, k]:  # local: APs of cell m, users of cell m, subband m (eq. 24-25)
                aps = [a for a in range(p.MA) if ca[a] == m]
                users = [j for j in range(p.MK) if j // p.K == m]
                i = m
                pw = lambda a, j: pw_loc[b, a, j % p.K]  # noqa: E731
                beam = lambda a, j: out["beam_loc"][b, a, j % p.K]  # noqa: E731
                tot = lambda a: pw_loc[b, a].sum()  # noqa: E731
                subs = [m]
            else:
                r = d.group[b, m]
                aps = [a for a in range(p.MA) if d.group[b, ca[a]] == r]
                users = [j for j in range(p.MK) if d.group[b, j // p.K] == r]
                pw = lambda a, j: pw_fed[b, a, j]  # noqa: E731
                beam = lambda a, j: out["beam_fed"][b, a, j]  # noqa: E731
                tot = lambda a: pw_fed[b, a].sum()  # noqa: E731
                subs = [i for i in range(p.M) if d.group[b, i] == r]
            for i in subs:
                def amp(j):  # sum_a sqrt(p_aj) h_hat_aki^H w_aji, w = e^{-j phi} v (eq. 62b / 67b)
                    tot_amp = 0
                    for a in aps:
                        w = v(beam(a, j))
                        phi = np.angle(h_hat[b, a, j, i].conj() @ w)
                        tot_amp += np.sqrt(pw(a, j)) * (h_hat[b, a, k, i].conj() @ (np.exp(-1j * phi) * w))
                    return abs(tot_amp) ** 2
                noise = p.noise + sum(delta[b, a, k, i] * tot(a) for a in aps)
                ref = amp(k) / (sum(amp(j) for j in users if j != k) + noise)
                got = out["sinr_fed"][b, k, i] if d.fed_users[b, k] else out["sinr_loc"][b, m, k % p.K]
                np.testing.assert_allclose(got, ref, rtol=2e-4)


def _tau(ap1, ap2, x):  # eq. 6a
    return (np.linalg.norm(x[:2] - ap1) + np.linalg.norm(x[:2] - ap2)) / C0


def _dop(ap1, ap2, x, fc):  # eq. 6b, summing over the two legs
    return sum(fc * x[2:] @ (a - x[:2]) / (C0 * np.linalg.norm(a - x[:2])) for a in (ap1, ap2))


def test_fim_matches_slow_reference_from_the_signal_model():
    """F = sum over (a, a', i, b, l) of 2 |alpha|^2 / sigma grad(psi) grad(psi)^T with the phase
    psi = 2 pi (l T (f_c^i/f_c) f - b Delta_f tau) of eq. 27, gradients by central differences."""
    p, s, d, out = tiny_frame(seed=5, n_env=1)
    pw_loc, pw_fed, _ = model.per_subcarrier_powers(p, d)
    ca = np.arange(p.MA) // p.A
    b = 0
    v = lambda th: channels.steering(np.asarray(th), p.N)  # noqa: E731
    l_loc = p.L - p.K * p.D_ce
    for q in range(p.MQ):
        x = s.x_pred[b, q]
        m = q // p.Q
        if d.fed_targets[b, q]:
            r = d.group[b, m]
            aps = [a for a in range(p.MA) if d.group[b, ca[a]] == r]
            subs = [i for i in range(p.M) if d.group[b, i] == r]
            nb = {i: p.B - d.b_loc[b, i] for i in subs}
            n_fed = d.fed_users[b].reshape(p.M, p.K).sum(1)
            gap = max(sum(n_fed[j] for j in subs) - n_fed[i] for i in subs)
            nl = p.L - p.D_ce * (gap + p.K)
            pw, beams = pw_fed[b], out["beam_fed"][b]
        else:
            aps, subs, nb, nl = [a for a in range(p.MA) if ca[a] == m], [m], {m: d.b_loc[b, m]}, l_loc
            pw, beams = pw_loc[b], out["beam_loc"][b]
        F = np.zeros((4, 4))
        for a in aps:
            for a2 in aps:
                ap1, ap2 = s.ap[b, a], s.ap[b, a2]
                d1, d2 = np.linalg.norm(x[:2] - ap1), np.linalg.norm(x[:2] - ap2)
                lam_r = p.G_R * p.N**2 * C0**2 * p.rcs / ((4 * np.pi) ** 3 * p.fc**2 * d1**2 * d2**2)
                th = np.arctan((ap2[1] - x[1]) / (ap2[0] - x[0]))
                gamma = sum(pw[a2, j] * abs(v(th).conj() @ v(p.angles[beams[a2, j]])) ** 2
                            for j in range(pw.shape[1]))  # eq. 32
                grad_t, grad_f = np.zeros(4), np.zeros(4)
                for c in range(4):
                    e = np.zeros(4)
                    e[c] = 1e-3
                    grad_t[c] = (_tau(ap1, ap2, x + e) - _tau(ap1, ap2, x - e)) / 2e-3
                    grad_f[c] = (_dop(ap1, ap2, x + e, p.fc) - _dop(ap1, ap2, x - e, p.fc)) / 2e-3
                for i in subs:
                    ratio = p.subband_fc[i] / p.fc
                    for bb in range(nb[i]):
                        for ll in range(nl):
                            g = 2 * np.pi * (ll * p.T * ratio * grad_f - bb * p.df * grad_t)
                            F += 2 * lam_r * gamma / p.noise * np.outer(g, g)
        np.testing.assert_allclose(out["F"][b, q], F, rtol=1e-4, atol=1e-9 * np.abs(F).max())


def test_fim_compact_form_equals_eq34_entries():
    """The matrix form of sensing.fim equals eq. 34a-d and eq. 33 (with W^ff) entry by entry."""
    rng = np.random.default_rng(0)
    t, g = rng.normal(size=2), rng.normal(size=4)
    Wtt, Wff, Wtf = rng.uniform(1, 2, 3)
    tx, ty = t
    fx, fy, fvx, fvy = g
    FP = np.array([[tx**2 * Wtt + fx**2 * Wff - 2 * fx * tx * Wtf,
                    tx * ty * Wtt + fx * fy * Wff - (fx * ty + fy * tx) * Wtf],
                   [0, ty**2 * Wtt + fy**2 * Wff - 2 * fy * ty * Wtf]])
    FP[1, 0] = FP[0, 1]
    FPV = np.array([[fvx * (-Wtf * tx + Wff * fx), fvy * (-Wtf * tx + Wff * fx)],
                    [fvx * (-Wtf * ty + Wff * fy), fvy * (-Wtf * ty + Wff * fy)]])
    FV = np.outer([fvx, fvy], [fvx, fvy]) * Wff
    ref = np.block([[FP, FPV], [FPV.T, FV]])
    # one AP pair (a = a' = 0, legs halved so that leg + leg = gradient), sigma = 1
    tau_leg = np.concatenate([t, [0, 0]])[None, None, None] / 2
    f_leg = g[None, None, None] / 2
    got = sensing.fim(tau_leg, f_leg, np.ones((1, 1, 1)), np.ones((1, 1, 1)), np.array([[[Wtt, Wff, Wtf]]]))
    np.testing.assert_allclose(got[0, 0], ref, rtol=1e-12)


def test_bfim_without_measurement_is_prior_only():
    p, s, d, _ = tiny_frame(seed=7, n_env=2)
    d.frac_loc[:] = 0.0
    d.frac_fed[:] = 0.0
    out = model.evaluate(p, s, d)
    assert np.all(out["F"] == 0)
    G, E = sensing.transition(p)
    prior = np.linalg.inv(E + G @ np.linalg.inv(s.J_prev) @ G.T)  # eq. 36 with no measurement
    np.testing.assert_allclose(out["J"], prior, rtol=1e-12)
    # prediction only loses information: the errors grow relative to J[n-1] (eq. 37-38)
    ep, ev = sensing.errors(s.J_prev)
    assert np.all(out["err_pos"] > ep) and np.all(out["err_vel"] > ev)
    assert np.all(out["rate"] == 0)


def test_mobility_matrices_eq5():
    G, E = sensing.transition(P)
    t = P.Tbar
    x = np.array([1.0, 2.0, 3.0, -4.0])
    np.testing.assert_allclose(G @ x, [1 + 3 * t, 2 - 4 * t, 3, -4])
    np.testing.assert_allclose(E[0, 0], P.delta_q * t**3 / 3)
    np.testing.assert_allclose(E[0, 2], P.delta_q * t**2 / 2)
    np.testing.assert_allclose(E[3, 3], P.delta_q * t)
    assert E[0, 1] == 0


def test_pathloss_and_radar_gain_hand_values():
    assert channels.pathloss_db(np.array(100.0), 5.89e9) == pytest.approx(32.4 + 90 + 20 * np.log10(5.89))
    # lambda^R = G_R N^2 c^2 sigma_RCS / ((4 pi)^3 fc^2 d^2 d'^2) with G_R = 1, sigma_RCS = 1 m^2:
    # at 5.89 GHz, N = 4, d = d' = 100 m this is 16 * 0.05093^2 / (1984.4 * 1e8)
    lam = sensing.radar_constant(P) / (100.0**2 * 100.0**2)
    assert lam == pytest.approx(16 * (C0 / 5.89e9) ** 2 / ((4 * np.pi) ** 3 * 1e8), rel=1e-12)
    assert lam == pytest.approx(2.0917e-13, rel=1e-3)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 4))
def test_baseline_rule_frames_have_positive_usr(seed, n_frames):
    from isacbench.tasks.ent_usr.baselines import CcnMRT, CfnMRT, RandomMRT
    task = EntUsrTask({"frames_per_episode": 6})
    env = task.make_env(2, seed)
    rng = np.random.default_rng(seed)
    for _ in range(n_frames):  # advance the episode with random actions first
        play_frame(env, random_raw_actions(env, rng))
    for solver in (CcnMRT(), CfnMRT(), RandomMRT()):
        for prob in task.frame_problems(env):
            ev = prob.evaluate(solver.solve(prob, None, rng).decision)
            assert ev.objective > 0 and 0 < ev.metrics["utility"] <= task.params.M * (P.K + P.Q)


def test_tracking_error_matches_the_bayesian_crb():
    """The environment's target estimates are the posterior means of the linear-Gaussian model of
    eq. 35, so the squared error of each state component, divided by the matching diagonal entry
    of J^{-1} (eq. 36-38), is chi-square with one degree of freedom: mean 1."""
    task = EntUsrTask({"frames_per_episode": 4})
    env = task.make_env(250, 11)
    p = task.params
    ratios = []
    for _ in range(3):
        state = env.frame_state()
        fed = np.zeros((env.num_envs, p.M * (p.K + p.Q)), bool)
        d = actions.rule_decision(p, fed[:, : p.MK], fed[:, p.MK:], np.full((env.num_envs, p.M), p.B),
                                  np.full((env.num_envs, p.MA), p.P_max), np.zeros((env.num_envs, p.M), int),
                                  np.full((env.num_envs, p.MA), 0.5), np.full((env.num_envs, p.MA), 0.5))
        env.set_decision(d)
        env.end_frame()
        var = np.diagonal(np.linalg.inv(env.J), axis1=-2, axis2=-1)
        err = env.x_hat - state.x_true
        ratios.append((err**2 / var).mean(axis=(1, 2)))  # per environment
    r = np.mean(ratios, axis=0)  # frames of one environment are dependent: one sample per environment
    assert abs(r.mean() - 1.0) < 4 * r.std() / np.sqrt(r.size)
