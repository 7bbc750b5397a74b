"""Configuration of the ent-usr task: defaults are Table I and Sec. VI of the paper;
the values the paper leaves open are fields too (documented in docs/models/ent-usr.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from typing import Literal

from pydantic import Field, model_validator

from isacbench.api import TaskConfig, UserError

C0 = 3e8  # speed of light c_o [m/s] (Table I)


#: named sets of config values (`-c scenario=NAME`); docs/models/ent-usr.md ("Scenarios") says why
#: each value differs from Table I. Explicit config keys take precedence over the scenario's values.
SCENARIOS: dict[str, dict] = {
    "paper": {},  # Table I / Sec. VI
    # the topology map's cooperative region: the fixed per-CCN overhead O_bar_m = 10 o (Table I: 0.7 o)
    "cooperative": {"overhead_base": 10.0},
    # scaling: a 3 x 3 grid of cells of the paper's size (300 m) and density, R = 3 CFNs
    "large": {"M": 9, "R": 3, "area_m": 900.0},
}


class EntUsrConfig(TaskConfig):
    scenario: Literal["paper", "cooperative", "large"] = Field(
        "paper", description="named set of config values (SCENARIOS; explicit keys take precedence): paper = "
                             "Table I, cooperative = O_bar_m = 10 o, large = 3 x 3 cells (R = 3)")
    # ---- network (Table I, Sec. VI)
    M: int = Field(4, ge=1, le=64, description="number of CCNs (cells); must be a square number (grid)")
    R: int = Field(2, ge=1, le=64, description="number of CFNs")
    A: int = Field(3, ge=1, le=8, description="APs per cell")
    N_tx: int = Field(4, ge=1, le=32, description="antennas per AP")
    K: int = Field(4, ge=1, le=16, description="communication users per cell")
    Q: int = Field(4, ge=1, le=16, description="radar targets per cell")
    B: int = Field(16, ge=1, le=256, description="subcarriers per subband")
    delta_f_hz: float = Field(156.25e3, gt=0, description="subcarrier spacing Delta_f [Hz]")
    L: int = Field(100, ge=2, le=10_000, description="symbols per frame")
    fc_ghz: float = Field(5.89, gt=0, description="carrier frequency of subband 1 [GHz]")
    N0_dbm_hz: float = Field(-174.0, description="noise power spectral density [dBm/Hz]")
    P_max_dbm: float = Field(40.0, description="maximum transmit power per AP [dBm]")
    kappa: float = Field(4.0, ge=0, description="Rician K-factor")
    rho: float = Field(0.98, ge=0, le=1, description="Gauss-Markov channel correlation across frames")
    v_min: float = Field(20.0, ge=0, description="minimum target speed [m/s]")
    v_max: float = Field(80.0, gt=0, description="maximum target speed [m/s]")
    delta_q: float = Field(100.0, ge=0, description="state-transition (process-noise) intensity delta_q")
    rate_min: float = Field(0.05, ge=0, description="U^C_min [nats/s/Hz]")
    rate_max: float = Field(0.35, gt=0, description="U^C_max [nats/s/Hz]")
    err_min: float = Field(5e-5, gt=0, description="U^RP_min = U^RV_min (position [m^2] / velocity [(m/s)^2])")
    err_max: float = Field(2.0, gt=0, description="U^RP_max = U^RV_max")
    p_ce_dbm: float = Field(25.0, description="uplink pilot power p^ce [dBm]")
    D_ce: int = Field(1, ge=1, le=10, description="pilot slots per user D~^ce")
    area_m: float = Field(600.0, gt=0, description="side of the square simulation area [m]")
    perturb: float = Field(0.01, ge=0, le=0.2, description="per-episode node perturbation, fraction of the side")
    overhead_base: float = Field(0.7, ge=0, description="O_bar_m / o")
    # ---- left open by the paper (our choices)
    M_max: int | None = Field(None, ge=1, description="max CCNs per CFN (eq. 52); None = min(M, ceil(M/R)+1)")
    n_angles: int = Field(16, ge=2, le=360, description="number of beam angles Delta_Theta (eq. 61)")
    beam_mode: Literal["relative", "absolute"] = Field(
        "relative", description="agents' beam class: 'absolute' = index into Theta (eq. 61); 'relative' = the "
                                "same Theta angles, as an offset from the service's codebook-MRT angle (0 = MRT)")
    frame_s: float = Field(0.1, gt=0, description="frame duration T_bar [s] (eq. 5)")
    radar_gain_db: float = Field(0.0, description="radar processing gain G_R [dB]")
    rcs_m2: float = Field(1.0, gt=0, description="target radar cross section sigma_RCS [m^2]")
    ap_radius: float = Field(0.3, ge=0, le=0.5,
                             description="AP circle radius around the cell centre, fraction of cell side")
    prior_pos_std: float = Field(1.0, gt=0, description="initial position uncertainty per axis [m] (J_q[0])")
    prior_vel_std: float = Field(1.0, gt=0, description="initial velocity uncertainty per axis [m/s] (J_q[0])")
    utility_floor: float = Field(1e-3, gt=0, description="floor on U[n] inside log of the reward (eq. 75)")
    # ---- a setting (Task.setting_keys): restricts the decision, keeps the instance
    topology: Literal["ent", "ccn-only", "cfn-only"] = Field(
        "ent", description="ent: every role decides; ccn-only: every service local (only LPB acts); cfn-only: "
                           "every service federated (only FG and FPB act); see topology.py")
    reference_federate: float = Field(
        0.0, ge=0, le=1, description="the learners' starting point (env.reference_actions): every service "
                                     "federated with this probability, local power and bandwidth shares 1 - it "
                                     "(0: the CCN-MRT rule; 1: all federated); other solvers ignore it")
    resource_split: Literal["absolute", "proportional"] = Field(
        "absolute", description="how the LCP's power and bandwidth actions set the local shares: 'absolute' = "
                                "the shares themselves (eq. 59-60); 'proportional' = a tilt of the CCN's share of "
                                "local services (actions.local_shares): no resources idle in a regime without services")
    # ---- episodes and evaluation
    frames_per_episode: int = Field(20, ge=1, le=10_000, description="frames N_T per episode")
    eval_episodes: int = Field(4, ge=1, le=1024, description="evaluation episodes (fixed seeds from instance_seed)")

    @model_validator(mode="before")
    @classmethod
    def _scenario(cls, data):
        """Fill in the scenario's values for the keys not given explicitly (an unknown name is left to
        the field's check, which lists the scenarios)."""
        if isinstance(data, dict) and isinstance(data.get("scenario", "paper"), str):
            return {**SCENARIOS.get(data.get("scenario", "paper"), {}), **data}
        return data

    @model_validator(mode="after")
    def _check(self):
        g = math.isqrt(self.M)
        if g * g != self.M:
            raise ValueError(f"M={self.M} must be a square number (the cells form a grid), e.g. 1, 4, 9, 16")
        if self.R > self.M:
            raise ValueError(f"R={self.R} must be <= M={self.M}")
        if self.M_max is not None and self.M_max * self.R < self.M:
            raise ValueError(f"M_max={self.M_max} times R={self.R} must be >= M={self.M} so every CCN fits a CFN")
        if self.v_min > self.v_max:
            raise ValueError(f"v_min={self.v_min} must be <= v_max={self.v_max}")
        if self.rate_min >= self.rate_max or self.err_min >= self.err_max:
            raise ValueError("rate_min < rate_max and err_min < err_max are required")
        return self


def dbm_to_w(dbm: float) -> float:
    return 10.0 ** ((dbm - 30.0) / 10.0)


@dataclass(frozen=True)
class Params:
    """Derived constants (SI units) of one configuration."""

    M: int
    R: int
    A: int
    N: int
    K: int
    Q: int
    B: int
    L: int
    M_max: int
    n_angles: int
    df: float  # subcarrier spacing [Hz]
    T: float  # OFDM symbol duration 1/Delta_f [s]
    Tbar: float  # frame duration [s]
    fc: float  # [Hz]
    noise: float  # sigma = N0 * Delta_f per subcarrier [W] (users and APs)
    P_max: float  # [W]
    p_ce: float  # [W]
    D_ce: int
    kappa: float
    rho: float
    area: float
    cell: float  # cell side [m]
    grid: int  # cells per row
    perturb_m: float
    ap_radius_m: float
    v_min: float
    v_max: float
    delta_q: float
    rate_min: float
    rate_max: float
    err_min: float
    err_max: float
    G_R: float
    rcs: float
    prior_pos_std: float
    prior_vel_std: float
    o: float  # normalization o = 8 M N_tx K (Sec. VI)
    O_bar: float  # O_bar_m = 0.7 o (Sec. VI)
    utility_floor: float
    frames: int
    beam_relative: bool = False  # agents' beam classes are offsets from codebook MRT (see actions.decode)
    topology: str = "ent"  # ent / ccn-only / cfn-only (topology.py)
    reference_federate: float = 0.0  # the reference_actions' federate probability (env.reference_actions)
    resource_split: str = "absolute"  # absolute / proportional: LCP's power and bandwidth (actions.local_shares)

    @property
    def MA(self) -> int:
        return self.M * self.A

    @property
    def MK(self) -> int:
        return self.M * self.K

    @property
    def MQ(self) -> int:
        return self.M * self.Q

    @property
    def angles(self) -> np.ndarray:
        """Theta = {(-1/2 + l/Delta_Theta) pi}, l = 1..Delta_Theta (eq. 61)."""
        return (-0.5 + np.arange(1, self.n_angles + 1) / self.n_angles) * np.pi

    @property
    def subband_fc(self) -> np.ndarray:
        """f_c^i = f_c + (i-1) B Delta_f (below eq. 34)."""
        return self.fc + np.arange(self.M) * self.B * self.df


def params_of(cfg: EntUsrConfig) -> Params:
    grid = math.isqrt(cfg.M)
    cell = cfg.area_m / grid
    m_max = cfg.M_max if cfg.M_max is not None else min(cfg.M, math.ceil(cfg.M / cfg.R) + 1)
    if m_max * cfg.R < cfg.M:  # pragma: no cover - guarded by the validator
        raise UserError(f"M_max={m_max} too small for M={cfg.M}, R={cfg.R}")
    o = 8.0 * cfg.M * max(cfg.A - 1, 1) * cfg.N_tx * cfg.K
    return Params(
        M=cfg.M, R=cfg.R, A=cfg.A, N=cfg.N_tx, K=cfg.K, Q=cfg.Q, B=cfg.B, L=cfg.L, M_max=m_max,
        n_angles=cfg.n_angles, df=cfg.delta_f_hz, T=1.0 / cfg.delta_f_hz, Tbar=cfg.frame_s,
        fc=cfg.fc_ghz * 1e9, noise=dbm_to_w(cfg.N0_dbm_hz) * cfg.delta_f_hz, P_max=dbm_to_w(cfg.P_max_dbm),
        p_ce=dbm_to_w(cfg.p_ce_dbm), D_ce=cfg.D_ce, kappa=cfg.kappa, rho=cfg.rho, area=cfg.area_m,
        cell=cell, grid=grid, perturb_m=cfg.perturb * cfg.area_m, ap_radius_m=cfg.ap_radius * cell,
        v_min=cfg.v_min, v_max=cfg.v_max, delta_q=cfg.delta_q, rate_min=cfg.rate_min, rate_max=cfg.rate_max,
        err_min=cfg.err_min, err_max=cfg.err_max, G_R=10.0 ** (cfg.radar_gain_db / 10.0), rcs=cfg.rcs_m2,
        prior_pos_std=cfg.prior_pos_std, prior_vel_std=cfg.prior_vel_std, o=o, O_bar=cfg.overhead_base * o,
        utility_floor=cfg.utility_floor, frames=cfg.frames_per_episode, beam_relative=cfg.beam_mode == "relative",
        topology=cfg.topology, reference_federate=cfg.reference_federate,
        resource_split=cfg.resource_split,
    )
