"""Configuration of the sg-cluster task (defaults: Sec. VI of Meng et al., overview paper Sec. V).

Where the paper is silent (e, effective bandwidth, processing interval, receive gain) the
choice is written next to the field and in docs/models/sg-cluster.md.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from isacbench.api import TaskConfig


class SgClusterConfig(TaskConfig):
    # ---- network (Sec. VI)
    Mt: int = Field(4, ge=2, le=64, description="transmit antennas per BS (ZF needs Mt >= 2)")
    Mr: int = Field(5, ge=1, le=64, description="receive antennas per BS")
    Pt: float = Field(1.0, gt=0, le=100, description="BS transmit power P^t [W]")
    rcs: float = Field(1.0, gt=0, description="mean target RCS sigma_av [m^2] (Swerling I)")
    lambda_b: float = Field(1.0, gt=0, le=100, description="BS density [1/km^2]")
    lambda_u: float = Field(1.0, gt=0, le=1000, description="user density [1/km^2]")
    lambda_s: float = Field(1.0, gt=0, le=1000, description="target density [1/km^2]")
    noise_db: float = Field(-80.0, ge=-200, le=0, description="sensing noise power sigma_s^2 [dBW]")
    alpha: float = Field(4.0, gt=2.0, le=8.0, description="communication path-loss exponent (eq. 11)")
    beta: float = Field(2.0, ge=2.0, le=8.0, description="sensing path-loss exponent per hop (eq. 4)")
    C_backhaul: float = Field(8.6, gt=0, description="backhaul capacity C_backhaul [bits/s/Hz] (eq. 13)")
    psi: int = Field(15, ge=2, le=200, description="resource blocks per BS (Lemmas 1-2)")
    fc_hz: float = Field(5e9, gt=0, description="carrier frequency f_c [Hz] (overview paper Sec. V)")
    bandwidth_hz: float = Field(50e6, gt=0, description="signal bandwidth [Hz] (overview paper Sec. V)")
    # ---- silent in the paper: our defaults (see docs)
    e_backhaul: float = Field(0.5, ge=0, description="backhaul rate per sensing BS e [bits/s/Hz] (eq. 13; "
                                                     "not given in the paper)")
    effective_bandwidth_hz: float | None = Field(None, gt=0, description="RMS bandwidth B in |zeta|^2 (eq. 8); "
                                                 "None = bandwidth/sqrt(12), a flat spectrum")
    cpi_s: float = Field(1e-3, gt=0, description="coherent processing interval [s]; eq. 8 is multiplied by "
                                                 "the time-bandwidth product cpi_s*bandwidth_hz")
    # ---- problem
    rho: float = Field(0.01, ge=0, le=1, description="weight of the rate in T^ISAC (eq. 40)")
    problem: Literal["P1", "P2", "region"] = Field("P2", description="P1 (eq. 34), P2 (eq. 41) or region (eq. 39)")
    evaluator: Literal["analytic", "montecarlo"] = Field("analytic", description="closed forms or simulation")
    L_max: int = Field(20, ge=1, le=60, description="largest communication cluster L")
    N_max: int = Field(30, ge=1, le=60, description="largest sensing cluster N")
    p1_pc_ratio: float = Field(1.0, gt=0, le=1, description="P1 only: fixed p^c/P^t")
    p1_N: int = Field(1, ge=1, le=60, description="P1 only: fixed sensing cluster N (enters the backhaul)")
    # ---- Monte Carlo
    mc_samples: int = Field(2000, ge=10, le=1_000_000, description="Monte Carlo networks per evaluation")
    mc_radius_km: float = Field(10.0, ge=3, le=50, description="radius of the simulated disk [km]")

    @model_validator(mode="after")
    def _check(self):
        if self.p1_N > self.N_max:
            raise ValueError(f"p1_N={self.p1_N} exceeds N_max={self.N_max}")
        return self

    # ---- derived quantities
    @property
    def noise_w(self) -> float:
        return 10 ** (self.noise_db / 10)

    @property
    def b_eff(self) -> float:
        return self.effective_bandwidth_hz or self.bandwidth_hz / math.sqrt(12)

    @property
    def lambda_b_m2(self) -> float:
        return self.lambda_b * 1e-6

    def zeta2_per_watt(self) -> float:
        """|zeta|^2 / p^s of eq. 8 [m^2/W]: G_t = Mt-1 (Appendix B), G_r = Mr, times the
        time-bandwidth product (energy SNR; eq. 8 as printed has none)."""
        gt, gr = self.Mt - 1, self.Mr
        return (gt * gr * self.b_eff ** 2 * self.rcs * self.cpi_s * self.bandwidth_hz
                / (8 * math.pi * self.fc_hz ** 2 * self.noise_w))
