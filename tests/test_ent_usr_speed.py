"""The ent-usr speed work (issue 14) keeps the model's outputs.

tests/data/ent_usr_reference.npz holds trajectories recorded with the code of commit dc25c4a, before
the speed changes (fixed seeds, fixed random actions; `trajectory` below is the recording function):
observations, states, rewards, every `model.evaluate` output, beams, metrics, channels, for the default
instance, M = 9, and the ccn-only / cfn-only topologies. The new code must reproduce them: integer
outputs (beam indices) and everything upstream of the sensing algebra exactly; the 4x4 inverses now
come from a closed form (`sensing.inv_spd4`) instead of LAPACK, so the sensing outputs (and through the
Kalman update, later frames) agree to rounding, well inside RTOL.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from isacbench.tasks.ent_usr import EntUsrTask, channels, model, sensing
from isacbench.tasks.ent_usr import actions as act
from isacbench.tasks.ent_usr import env as ent_env
from isacbench.tasks.ent_usr.mrt import TRUE_MRT

REFERENCE = Path(__file__).parent / "data" / "ent_usr_reference.npz"
CASES = {"default": {}, "m9": {"M": 9, "R": 2}, "ccn": {"topology": "ccn-only"}, "cfn": {"topology": "cfn-only"}}
RTOL = 1e-6  # relative to each array's largest magnitude; the observed differences are below 1e-8
KEYS = ("rate", "sinr_loc", "sinr_fed", "F", "J", "J_pred", "err_pos", "err_vel", "usr", "signaling",
        "beam_loc", "beam_fed")


def trajectory(task: EntUsrTask, big: bool, num_envs: int = 3, frames: int = 4, seed: int = 7) -> dict:
    """The recorded quantities of `frames` frames under uniform random actions (rng seed 123)."""
    env = task.make_env(num_envs, seed)
    rng = np.random.default_rng(123)
    out = {}
    for f in range(frames):
        for stage in env.stages:
            acts = {}
            for role in stage:
                out[f"obs_{role}_{f}"] = env.observe(role).copy() if big else env.observe(role).sum(-1)
                acts[role] = env.roles[role].sample(env.num_envs, rng)
            out[f"state_{f}"] = env.state().copy() if big else env.state().sum(-1)
            env.act(acts)
        r, _, m = env.end_frame()
        out[f"reward_{f}"] = r
        for k in KEYS + (("h_hat", "delta") if big else ()):
            out[f"{k}_{f}"] = np.asarray(env.last[k])
        out[f"x_hat_{f}"] = env.x_hat.copy()
        if big:
            out[f"h_{f}"] = env.h.copy()
        for k, v in m.items():
            out[f"m_{k}_{f}"] = np.asarray(v)
    return out


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


@pytest.mark.parametrize("case", list(CASES))
def test_environment_reproduces_the_outputs_recorded_before_the_speed_changes(reference, case):
    got = trajectory(EntUsrTask(CASES[case]), big=case == "default")
    checked = 0
    for key, value in got.items():
        name = f"{case}/{key}"
        if name not in reference.files:  # channels are stored for frames 0 and 3 only
            continue
        ref, value = reference[name], np.asarray(value)
        assert ref.shape == value.shape, name
        if ref.dtype.kind in "iub":
            np.testing.assert_array_equal(value, ref, err_msg=name)
        else:
            scale = np.max(np.abs(ref)) if ref.size else 0.0
            np.testing.assert_allclose(value, ref, rtol=RTOL, atol=RTOL * scale, err_msg=name)
        checked += 1
    assert checked > 50


def test_upstream_of_the_sensing_algebra_is_bit_identical(reference):
    """Channels, estimates, beams and SINRs of the first frame do not touch the 4x4 inverses."""
    got = trajectory(EntUsrTask(), big=True, frames=1)
    for key in ("h_0", "h_hat_0", "delta_0", "beam_loc_0", "beam_fed_0", "sinr_loc_0", "sinr_fed_0", "rate_0",
                "obs_lcp_0", "obs_fpb_0"):
        np.testing.assert_array_equal(got[key], reference[f"default/{key}"], err_msg=key)


def test_blockwise_normal_draws_are_the_stream_of_one_draw():
    shape = (19, 3, 5, 2, 4)  # 19 environments: blocks of channels.CHUNK and a remainder
    a = channels.cn(np.random.default_rng(5), shape)
    raw = np.random.default_rng(5).standard_normal((*shape, 2), dtype=np.float32)
    np.testing.assert_array_equal(a, (raw * np.float32(np.sqrt(0.5))).view(np.complex64)[..., 0])
    h_prev = channels.cn(np.random.default_rng(6), shape)
    lam = np.random.default_rng(7).random(shape[:3]) + 0.1
    new = channels.evolve(h_prev, lam, 0.9, np.random.default_rng(8))
    eps = channels.cn(np.random.default_rng(8), shape)
    old = eps * np.sqrt((1 - 0.9**2) * lam).astype(np.float32)[..., None, None] + np.float32(0.9) * h_prev
    np.testing.assert_array_equal(new, old)


def _mmse_inputs(p, seed: int, b: int = 11):
    """Channels h, h[n-1], pilot noise (b, MA, MK, M, N), lam (b, MA, MK, 1) and pilot counts (b, MA, MK, M)."""
    rng = np.random.default_rng(seed)
    shape = (b, p.MA, p.MK, p.M, p.N)
    h, h_prev, noise = (channels.cn(rng, shape) for _ in range(3))
    lam = rng.random((b, p.MA, p.MK, 1)) * 1e-9
    pilots = rng.integers(0, 5, (b, p.MA, p.MK, p.M)).astype(float)
    return h, h_prev, noise, lam, pilots


def test_mmse_estimate_blockwise_equals_the_direct_formula():
    p = EntUsrTask().params
    h, h_prev, noise, lam, pilots = _mmse_inputs(p, 0)
    got, delta = channels.mmse_estimate(h, h_prev, lam, pilots, noise, p)
    # the formula of the previous implementation, in complex arithmetic
    lam_bar = (1 - p.rho**2) * lam
    snr = p.p_ce * pilots * lam_bar
    gain = snr / (snr + p.noise)
    scale = np.where(pilots > 0, np.sqrt(p.noise / np.maximum(p.p_ce * pilots, 1e-300)), 0.0)
    want = h_prev * ((1.0 - gain) * p.rho).astype(np.float32)[..., None]
    want += h * gain.astype(np.float32)[..., None]
    want += noise * (gain * scale).astype(np.float32)[..., None]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(delta, channels.error_variance(lam_bar, pilots, p.p_ce, p.noise))


def test_mrt_users_equal_the_direct_argmax():
    p = EntUsrTask().params
    rng = np.random.default_rng(2)
    b = 21
    h_hat = channels.cn(rng, (b, p.MA, p.MK, p.M, p.N))
    sub = rng.random((b, p.MA, p.M)) < 0.5
    code = channels.steering(p.angles, p.N)
    g_all = np.abs(h_hat.conj() @ code.T) ** 2
    want_fc = np.argmax(np.einsum("bai,bakil->bakl", sub.astype(np.float32), g_all), axis=-1)
    want_uc = np.argmax(np.abs(model._diag_blocks(h_hat, p).conj() @ code.T) ** 2, axis=-1).reshape(b, p.MA, p.K)
    got_uc, got_fc = model._mrt_users(p, h_hat, sub)
    np.testing.assert_array_equal(got_uc, want_uc)
    np.testing.assert_array_equal(got_fc, want_fc)


def test_nearest_angle_equals_argmin():
    p = EntUsrTask().params
    theta = np.concatenate([np.random.default_rng(3).uniform(-np.pi / 2, np.pi / 2, 5000), p.angles,
                            (p.angles[1:] + p.angles[:-1]) / 2, [-np.pi / 2 + 1e-12, np.pi / 2]])
    want = np.argmin(np.abs(theta[..., None] - p.angles), axis=-1)
    np.testing.assert_array_equal(model.nearest_angle(theta, p), want)


def test_closed_form_4x4_inverse_matches_lapack():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 4, 7))
    scale = np.array([1e3, 1e3, 1.0, 1.0])  # position and velocity information on different scales
    J = x @ np.swapaxes(x, -1, -2) * scale[:, None] * scale
    want = np.linalg.inv(J)
    got = sensing.inv_spd4(J)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    np.testing.assert_array_equal(got, np.swapaxes(got, -1, -2))  # symmetric by construction


# ---- issue 14 item 1 (second round): blockwise kernels pinned against the previous code on fixed inputs

def _previous_mrt_users(p, h_hat, sub_ap):
    """model._mrt_users of commit d3d2238: one (rows, 2N) @ (2N, 2L) product per block of 8 environments
    over all subbands, then the weighted sum over i in order (the reference for the per-subband kernel)."""
    b = h_hat.shape[0]
    w = model._gain_matrix(p)
    sub = sub_ap.astype(np.float32)
    mrt_uc = np.empty((b, p.M, p.A, p.K), np.int64)
    mrt_fc = np.empty((b, p.MA, p.MK), np.int64)
    rows = np.ascontiguousarray(h_hat, np.complex64).view(np.float32)
    for lo in range(0, b, 8):
        hi = min(b, lo + 8)
        g = np.empty((hi - lo, p.MA, p.MK, p.M, p.n_angles), np.float32)
        prod = rows[lo:hi].reshape(-1, 2 * p.N) @ w
        np.square(prod, out=prod)
        np.add(prod[:, : p.n_angles], prod[:, p.n_angles:], out=g.reshape(-1, p.n_angles))
        np.argmax(model._diag_blocks(g, p), axis=-1, out=mrt_uc[lo:hi])
        wt = sub[lo:hi]
        g_fed = g[:, :, :, 0] * wt[:, :, None, 0, None]
        for i in range(1, p.M):
            g_fed += g[:, :, :, i] * wt[:, :, None, i, None]
        np.argmax(g_fed, axis=-1, out=mrt_fc[lo:hi])
    return mrt_uc.reshape(b, p.MA, p.K), mrt_fc


@pytest.mark.parametrize("config", [{}, {"M": 9, "R": 3}])
def test_mrt_users_per_subband_equal_the_previous_kernel(config):
    p = EntUsrTask(config).params
    rng = np.random.default_rng(11)
    b = 2 * model.CHUNK + 5  # whole blocks and a remainder
    h_hat = channels.cn(rng, (b, p.MA, p.MK, p.M, p.N)) * np.float32(3e-5)
    sub = rng.random((b, p.MA, p.M)) < 0.5
    for got, want in zip(model._mrt_users(p, h_hat, sub), _previous_mrt_users(p, h_hat, sub)):
        np.testing.assert_array_equal(got, want)


def test_split_gain_products_are_the_columns_of_the_whole_product():
    """_gains_into multiplies by the two halves of W: the same dot products as the whole W, bit for bit."""
    p = EntUsrTask().params
    w = model._gain_matrix(p)
    x = channels.cn(np.random.default_rng(12), (5000, p.N)).view(np.float32).reshape(5000, 2 * p.N)
    whole = x @ w
    np.testing.assert_array_equal(x @ np.ascontiguousarray(w[:, : p.n_angles]), whole[:, : p.n_angles])
    np.testing.assert_array_equal(x @ np.ascontiguousarray(w[:, p.n_angles:]), whole[:, p.n_angles:])


def test_mmse_estimate_phase_one_shapes_equal_the_direct_formula():
    """The Phase-I call of the environment: scalar pilot count, diagonal-block (non-contiguous) channels."""
    p = EntUsrTask().params
    rng = np.random.default_rng(13)
    shape = (19, p.MA, p.MK, p.M, p.N)
    h, h_prev, noise = (model._diag_blocks(channels.cn(rng, shape), p) for _ in range(3))
    lam = rng.random(h.shape[:-1]) * 1e-9
    pilots = float(p.B * p.D_ce)
    got, delta = channels.mmse_estimate(h, h_prev, lam, pilots, noise, p)
    lam_bar = (1 - p.rho**2) * lam
    gain = p.p_ce * pilots * lam_bar / (p.p_ce * pilots * lam_bar + p.noise)
    scale = np.sqrt(p.noise / (p.p_ce * pilots))
    want = h_prev * ((1.0 - gain) * p.rho).astype(np.float32)[..., None]
    want += h * gain.astype(np.float32)[..., None]
    want += noise * (gain * scale).astype(np.float32)[..., None]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(delta, channels.error_variance(lam_bar, pilots, p.p_ce, p.noise))


def _assert_same_outputs(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                np.testing.assert_array_equal(b[key][k2], v2, err_msg=f"{key}/{k2}")
        else:
            np.testing.assert_array_equal(b[key], value, err_msg=key)


@pytest.mark.parametrize("config", [{}, {"topology": "cfn-only"}])
def test_blockwise_evaluate_equals_one_call(config):
    """env.evaluate_blocks (end_frame's evaluate on blocks of environments) returns what one
    model.evaluate call returns, bit for bit, for every output."""
    task = EntUsrTask(config)
    env = task.make_env(37, 3)
    rng = np.random.default_rng(14)
    for _ in range(2):
        for stage in env.stages:
            env.act({role: env.roles[role].sample(env.num_envs, rng) for role in stage})
        d = act.decode(env.p, env.actions)
        whole = model.evaluate(env.p, env.frame_state(), d)
        blocks = ent_env.evaluate_blocks(env.p, env.frame_state(), d, block=8)  # 5 blocks of 7-8
        _assert_same_outputs(whole, blocks)
        env.end_frame()


# ---- issue 14 item 1 (round 2): component-wise sensing kernels pinned against the previous vector forms

def _previous_geometry(ap, x, fc):
    """sensing.geometry of commit 431679d (vector form on 2- and 4-wide last axes)."""
    diff = x[:, None, :, :2] - ap[:, :, None, :]
    d = np.maximum(np.linalg.norm(diff, axis=-1), 1.0)
    u = diff / d[..., None]
    v = np.broadcast_to(x[:, None, :, 2:], u.shape)
    tau_leg = np.concatenate([u / sensing.C0, np.zeros_like(u)], axis=-1)
    vu = np.sum(v * u, axis=-1, keepdims=True)
    f_leg = np.concatenate([-(fc / sensing.C0) * (v - vu * u) / d[..., None], -(fc / sensing.C0) * u], axis=-1)
    return d, tau_leg, f_leg


def _previous_fim(tau_leg, f_leg, u, v, sums):
    """sensing.fim of commit 431679d (8 x 8 pair sums by a batched matrix product)."""
    t, g = np.moveaxis(tau_leg, -2, -3), np.moveaxis(f_leg, -2, -3)
    uq, vq = np.moveaxis(u, -1, -2)[..., None], np.moveaxis(v, -1, -2)[..., None]
    su, sv = uq.sum(-2, keepdims=True), vq.sum(-2, keepdims=True)
    X = np.concatenate([t, g], axis=-1)
    own = np.swapaxes(X, -1, -2) @ ((sv * uq + su * vq) * X)
    uX, vX = (uq * X).sum(-2), (vq * X).sum(-2)
    P = own + uX[..., :, None] * vX[..., None, :] + vX[..., :, None] * uX[..., None, :]
    wtt, wff, wtf = (sums[..., j, None, None] for j in range(3))
    cross = P[..., 4:, :4]
    return wtt * P[..., :4, :4] + wff * P[..., 4:, 4:] - wtf * (cross + np.swapaxes(cross, -1, -2))


def _sensing_inputs(b=37, seed=21):
    p = EntUsrTask().params
    rng = np.random.default_rng(seed)
    ap = rng.uniform(0, p.area, (b, p.MA, 2))
    x = np.concatenate([rng.uniform(0, p.area, (b, p.MQ, 2)), rng.uniform(-80, 80, (b, p.MQ, 2))], -1)
    x[0, 0, :2] = ap[0, 0] + 0.3  # a target within 1 m of an AP (the distance clamp)
    return p, rng, ap, x


def test_componentwise_geometry_is_bit_identical_to_the_vector_form():
    p, _, ap, x = _sensing_inputs()
    for got, want in zip(sensing.geometry(ap, x, p.fc), _previous_geometry(ap, x, p.fc)):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


FIM_RTOL = 1e-12  # per matrix, relative to its largest entry (other summation order; observed ~5e-16)


@pytest.mark.parametrize("velocity_tau", [False, True])
def test_componentwise_fim_equals_the_matrix_form(velocity_tau):
    """Same sums in another order (float64): equal to FIM_RTOL of each matrix's scale, exactly symmetric;
    also with nonzero velocity components of the delay legs (the general path) and broadcast inputs
    with an extra leading axis (as power.py calls it)."""
    p, rng, ap, x = _sensing_inputs()
    dist, tau_leg, f_leg = sensing.geometry(ap, x, p.fc)
    if velocity_tau:
        tau_leg = tau_leg + rng.standard_normal(tau_leg.shape) * 1e-9
    u = (rng.random(dist.shape) < 0.6) / dist**2
    v = u * rng.uniform(0, 1e3, dist.shape)
    sums = rng.uniform(0, 1, (len(ap), p.MQ, 3)) * np.array([1e12, 1e3, 1e7])
    cases = [(tau_leg, f_leg, u, v, sums),
             (np.broadcast_to(tau_leg[0], (5,) + tau_leg.shape[1:]), np.broadcast_to(f_leg[0], (5,) + f_leg.shape[1:]),
              np.broadcast_to(u[0], (5,) + u.shape[1:]), v[:5], np.broadcast_to(sums[0], (5,) + sums.shape[1:]))]
    for args in cases:
        got, want = sensing.fim(*args), _previous_fim(*args)
        assert got.shape == want.shape
        scale = np.abs(want).max(axis=(-1, -2), keepdims=True)
        assert np.all(np.abs(got - want) <= FIM_RTOL * scale)
        np.testing.assert_array_equal(got, np.swapaxes(got, -1, -2))


def test_around_table_equals_the_formula():
    p = EntUsrTask().params
    rng = np.random.default_rng(22)
    mrt = rng.integers(0, p.n_angles, (7, 5, 9))
    c = rng.integers(-3, p.n_angles + 3, mrt.shape)  # out-of-range c is clipped
    cc = np.clip(c, 0, p.n_angles - 1)
    want = (mrt + np.where(cc % 2 == 1, (cc + 1) // 2, -(cc // 2))) % p.n_angles
    np.testing.assert_array_equal(model.around(mrt, c, p), want)
    np.testing.assert_array_equal(model.around(np.int64(3), np.arange(p.n_angles), p),
                                  (3 + np.where(np.arange(p.n_angles) % 2 == 1, (np.arange(p.n_angles) + 1) // 2,
                                                -(np.arange(p.n_angles) // 2))) % p.n_angles)


@pytest.mark.parametrize("case", list(CASES))
def test_first_frame_rates_and_beams_are_bit_identical_to_the_recording(reference, case):
    """Frame 0's SINRs, rates and beams do not depend on the sensing algebra: the F-regime product (conj(h_hat)
    and the beams written in the product's layout) and the beam-offset table keep them to the bit."""
    got = trajectory(EntUsrTask(CASES[case]), big=False, frames=1)
    for key in ("sinr_loc_0", "sinr_fed_0", "rate_0", "beam_loc_0", "beam_fed_0"):
        np.testing.assert_array_equal(got[key], reference[f"{case}/{key}"], err_msg=key)


def test_mmse_estimate_writes_into_given_buffers():
    """out=(h_hat, delta): the same values written into the caller's arrays (fast and general paths)."""
    p = EntUsrTask().params
    h, h_prev, noise, lam, pilots = _mmse_inputs(p, 23)
    shape = h.shape
    for args in ((h, h_prev, noise), (h.astype(np.complex128), h_prev, noise)):
        want = channels.mmse_estimate(*args[:2], lam, pilots, args[2], p)
        buf = (np.empty(shape, want[0].dtype), np.empty(shape[:-1]))
        got = channels.mmse_estimate(*args[:2], lam, pilots, args[2], p, out=buf)
        assert got[0] is buf[0] and got[1] is buf[1]
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# ---- issue 14 item 1 (round 3): the co-phasing of eq. 62b / 67b pinned against the previous formulas

def _previous_coherent_phase(inner):
    """model._coherent_phase of commit 8538ca1: the complex quotient by |inner|, 1 where inner = 0."""
    mag = np.abs(inner)
    return np.where(mag > 0, inner.conj() / np.where(mag > 0, mag, 1), 1).astype(np.complex64)


def _bits(x):
    return np.ascontiguousarray(x).view(np.uint64 if x.dtype == np.complex64 else np.uint8)


def test_coherent_phase_is_bit_identical_to_the_complex_quotient():
    """Fast path (complex64, no zero or non-finite part) and the general one: the same bits as the previous
    formula, signs of zero included, at every magnitude (subnormal to overflowing), with exact zeros,
    signed zeros, NaN and inf in the input; non-contiguous and complex128 inputs take the general path."""
    rng = np.random.default_rng(31)
    base = (rng.standard_normal((64, 4, 12, 16)) + 1j * rng.standard_normal((64, 4, 12, 16))).astype(np.complex64)
    special = base.copy().reshape(-1)
    special[::7] = 0
    special[1::11] = complex(-0.0, 0.0)
    special[2::13] = complex(0.0, -0.0)
    special[3::17] = complex(-0.0, 3e-7)
    special[4::19] = complex(2e-7, -0.0)
    special[5::23] *= np.float32(1e-44)  # subnormal parts: 1 / |inner| overflows
    special[6::29] *= np.float32(1e37)  # |inner| overflows
    special[100], special[101], special[102] = np.nan, complex(np.inf, 1), complex(1, np.nan)
    special[200] = complex(1e-30, 1e30)  # the small part's product underflows
    cases = [base * np.float32(s) for s in (1e-30, 1e-6, 1.0, 1e30)] + [special.reshape(base.shape)]
    cases += [cases[1][:, :, ::2], cases[1].astype(np.complex128), cases[1][0, 0, 0, 0]]
    with np.errstate(all="ignore"):
        for inner in cases:
            got, want = model._coherent_phase(inner), _previous_coherent_phase(inner)
            assert got.dtype == want.dtype == np.complex64 and got.shape == want.shape
            np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("per_subband", [False, True])
def test_federated_inner_products_in_the_gain_layout_equal_the_previous_einsum(per_subband):
    """h_hat^H v of eq. 67b summed in conj(h_hat)'s gain layout (B, i, k', MA, N) with the beams transposed:
    bit-identical to the previous einsum on the (B, i, MA, k') view with broadcast beams, for codebook beams
    (B, 1, MA, MK, N) and per-subband (true-MRT) beams (B, M, MA, MK, N)."""
    p = EntUsrTask().params
    rng = np.random.default_rng(32)
    b = 19
    h_hat = channels.cn(rng, (b, p.MA, p.MK, p.M, p.N)) * np.float32(3e-5)
    code = channels.steering(p.angles, p.N)
    beam = rng.integers(0, p.n_angles, (b, p.MA, p.MK))
    vfu = channels.cn(rng, (b, p.M, p.MA, p.MK, p.N)) if per_subband else code[beam][:, None]
    hc = np.empty((b, p.M, p.MK, p.MA, p.N), np.complex64)
    np.conjugate(h_hat.transpose(0, 3, 2, 1, 4), out=hc)
    hf = hc.transpose(0, 1, 3, 2, 4)
    want = np.einsum("...n,...n->...", hf, np.broadcast_to(vfu, hf.shape))  # (B, i, MA, k')
    vft = np.ascontiguousarray(np.swapaxes(vfu, 2, 3))
    if not per_subband:  # codebook beams gathered straight in the transposed layout (model.evaluate)
        np.testing.assert_array_equal(_bits(code[np.swapaxes(beam, 1, 2)][:, None]), _bits(vft))
    got = np.einsum("...n,...n->...", hc, np.broadcast_to(vft, hc.shape)).transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    np.testing.assert_array_equal(_bits(model._coherent_phase(np.ascontiguousarray(got.transpose(0, 1, 3, 2)))
                                        .transpose(0, 1, 3, 2)), _bits(_previous_coherent_phase(want)))


@pytest.mark.parametrize("config", [{}, {"M": 9, "R": 3}])
def test_codebook_gains_of_a_strided_subband_view_equal_those_of_its_contiguous_copy(config):
    """_mrt_users hands BLAS the subband view rows[lo:hi, :, :, i] (uniform row stride) instead of a contiguous
    copy of it (the previous kernel): the same gains, bit for bit."""
    p = EntUsrTask(config).params
    rows = (channels.cn(np.random.default_rng(33), (model.CHUNK + 3, p.MA, p.MK, p.M, p.N)) * np.float32(3e-5)
            ).view(np.float32)
    w = model._gain_matrix(p)
    w_re, w_im = np.ascontiguousarray(w[:, : p.n_angles]), np.ascontiguousarray(w[:, p.n_angles:])
    for lo, hi in ((0, model.CHUNK), (model.CHUNK, model.CHUNK + 3)):
        for i in range(p.M):
            got, want = (np.empty((hi - lo, p.MA, p.MK, p.n_angles), np.float32) for _ in range(2))
            model._gains_into(rows[lo:hi, :, :, i], w_re, w_im, got)
            model._gains_into(np.ascontiguousarray(rows[lo:hi, :, :, i]), w_re, w_im, want)
            np.testing.assert_array_equal(got, want)


# ---- issue 14 item 1 (round 3): action decoding pinned against the previous formulas

def _previous_entries(x, mask):
    """The entries of act.project_simplex at commit 8538ca1 (actions.py)."""
    return np.where(mask, np.clip(np.nan_to_num(x, nan=0.0), -1e6, 1e6), -1e9)


def test_simplex_entries_are_bit_identical_to_the_previous_formula():
    """NaN, +-inf, signed zeros, huge entries; bool, int and broadcast masks; float64, float32 and int inputs."""
    rng = np.random.default_rng(34)
    x = rng.uniform(-0.5, 1.5, (300, 12, 32)) * rng.choice([1e-3, 1.0, 10.0], (300, 12, 1))
    flat = x.reshape(-1)
    flat[::97], flat[1::89], flat[2::83], flat[3::79], flat[4::73], flat[5::71] = np.nan, np.inf, -np.inf, -0.0, 3e7, -2e7
    mask = rng.random(x.shape) < 0.6
    cases = [(x, mask), (x, mask.astype(int)), (x, mask[:1]), (x[0, 0], mask[0, 0]), (x.astype(np.float32), mask),
             (rng.integers(-3, 4, (50, 8)), rng.random((50, 8)) < 0.5), (x[:, :, :1], mask[:, :, :1])]
    for xi, mi in cases:
        got, want = act._entries(xi, mi), _previous_entries(xi, mi)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    before = x.copy()
    act.project_simplex(x, mask)
    np.testing.assert_array_equal(x.view(np.uint8), before.view(np.uint8))  # the input is not written


@pytest.mark.parametrize("config", [{}, {"M": 9, "R": 3}])
def test_decode_picks_each_aps_fpb_entries_as_the_previous_take_along_axis(config):
    task = EntUsrTask(config)
    env = task.make_env(23, 5)
    p, rng = env.p, np.random.default_rng(35)
    acts = {role: env.specs[role].sample(env.num_envs, rng) for role in env.specs}
    got = act.decode(p, acts)
    b, nq = env.num_envs, p.MK + p.MQ
    pick = got.group[:, np.arange(p.MA) // p.A][:, None, :, None]
    fpow = np.asarray(acts["fpb"]["power"], float).reshape(b, p.R, p.MA, nq)
    fbeam = np.asarray(acts["fpb"]["beam"]).reshape(b, p.R, p.MA, nq)
    frac_fed = np.take_along_axis(fpow, pick, axis=1)[:, 0]
    want_beam = act.beam_index(p, np.take_along_axis(fbeam, pick, axis=1)[:, 0])
    np.testing.assert_array_equal(got.beam_fed, want_beam)
    _, fed_mask = model.service_masks(p, got)
    np.testing.assert_array_equal(got.frac_fed.view(np.uint8), act.project_simplex(frac_fed, fed_mask).view(np.uint8))


def _fresh(s: model.FrameState) -> model.FrameState:
    """A new state on the same arrays, without kept terms."""
    return model.FrameState(**{f.name: getattr(s, f.name) for f in fields(s)})


def _same_terms(a: model.FrameTerms, b: model.FrameTerms) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))


def test_frame_terms_are_kept_on_the_state_and_change_no_output():
    """FrameState.terms: the decision-independent terms are computed once per state and Params, read-only, and
    every output of model.evaluate on a state that kept them equals, bit for bit, a fresh state's, for several
    decisions on the same state (as a frame problem evaluates them), codebook and true-MRT beams."""
    task = EntUsrTask({"scenario": "cooperative"})
    env = task.make_env(5, 2)
    rng = np.random.default_rng(8)
    for stage in env.stages:
        env.act({role: env.roles[role].sample(env.num_envs, rng) for role in stage})
    kept = env.frame_state()
    d = act.decode(env.p, env.actions)
    mrt_d = act.decode(env.p, env.actions)
    mrt_d.beam_loc[:, :1] = TRUE_MRT  # true MRT for one local service per AP: the mrt.beams / fim path
    for decision in (d, mrt_d, d):
        _assert_same_outputs(model.evaluate(env.p, _fresh(kept), decision), model.evaluate(env.p, kept, decision))
    terms = kept.terms(env.p)
    assert kept.terms(env.p) is terms and _fresh(kept).terms(env.p) is not terms
    assert env.frame_state() is kept  # the env keeps one state per frame
    assert kept.terms(EntUsrTask({"scenario": "cooperative"}).params) is not terms  # other Params: computed anew
    with pytest.raises(ValueError, match="read-only"):
        terms.J_pred[0, 0, 0, 0] = 1.0
    problem = task.frame_problems(env)[0]  # many decisions on one kept state, each as on a fresh problem's
    for x in (problem.space.sample(rng) for _ in range(3)):
        assert problem.evaluate(x) == task.frame_problems(env)[0].evaluate(x)


def test_the_env_keeps_one_state_per_frame_and_repeated_or_sliced_terms_equal_computed_ones():
    """EntUsrEnv.frame_state is one object per frame (a branch shares it until its own arrays change), so the
    frame's evaluations share its kept terms; a state's terms repeated (`FrameState.repeat`: frame_rewards' stacked
    branches) or sliced (`take`: evaluate_blocks' blocks, any index) equal bit for bit the ones the new state
    computes itself, and stay read-only."""
    task = EntUsrTask({"scenario": "cooperative"})
    env = task.make_env(5, 2)
    rng = np.random.default_rng(3)
    s, twin = env.frame_state(), env.branch()
    assert env.frame_state() is s and twin.frame_state() is s
    for stage in env.stages:
        env.act({role: env.roles[role].sample(env.num_envs, rng) for role in stage})
    assert env.frame_state() is s  # acting leaves the frame's state
    env.end_frame()
    assert env.frame_state() is not s and twin.frame_state() is s
    s = env.frame_state()
    for k in (2, 3):
        rep = s.repeat(k, env.p)
        assert rep.h.shape[0] == k * env.num_envs and _same_terms(rep.terms(env.p), _fresh(rep).terms(env.p))
    for idx in (slice(1, 4), np.array([4, 0, 2]), np.array([True, False, True, True, False])):
        part = s.take(idx)
        assert _same_terms(part.terms(env.p), _fresh(part).terms(env.p))
        assert not part.terms(env.p).code_gain.flags.writeable


@pytest.mark.parametrize("config", [{}, {"topology": "cfn-only"}])
def test_outputs_are_the_same_with_numpys_blas_on_one_thread_or_two(config):
    """mappo trains with numpy's BLAS on `threads` threads (solver.py; 1 by default): the environment's
    observations, states, rewards, every evaluate output and channel are bit-identical to those with two BLAS
    threads (the default of this 2-core machine), at the default preset's batch and at a large one."""
    task = EntUsrTask(config)
    for num_envs in (16, 256):
        runs = []
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="blas"):
                runs.append(trajectory(task, big=True, num_envs=num_envs, frames=3))
        _assert_same_outputs(*runs)
