"""Configuration of the sg-nulling task (defaults: Sec. V of Meng & Masouros, "Networked ISAC
coordinated beamforming and cooperative BS cluster optimization").

Names follow the paper's symbols; choices the paper leaves open are written next to the field
and in docs/models/sg-nulling.md.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from isacbench.api import TaskConfig


class SgNullingConfig(TaskConfig):
    # ---- network (Sec. V)
    Mt: int = Field(20, ge=2, le=64, description="transmit antennas per BS M_t")
    Mr: int = Field(10, ge=1, le=256, description="receive antennas per BS M_r (enters eq. 5 as a gain)")
    xi: float = Field(0.1, gt=0, le=1e3, description="target radar cross-section xi (eq. 5)")
    kappa: float = Field(1.0, gt=0, le=1, description="receive-filter mismatch loss kappa (eq. 5)")
    delta_t: float = Field(1.0, gt=0, le=1e6, description="matched-filter gain Delta T (eq. 5)")
    lambda_b: float = Field(1.0, gt=0, le=100, description="BS density lambda_b [1/km^2]")
    J_max: int = Field(10, ge=1, le=64, description="largest number of targets per BS J_max (eq. 16b)")
    alpha: float = Field(4.0, gt=2.0, le=8.0, description="BS-user and BS-BS path-loss exponent alpha (eqs. 2, 5)")
    beta: float = Field(2.0, ge=1.0, le=4.0, description="per-hop target path-loss exponent beta (eq. 5)")
    # ---- problem
    rho: float = Field(0.5, ge=0, le=1, description="weight of the communication ASE in T^ASE (eq. 15)")
    problem: Literal["P1", "P2"] = Field("P1", description="P1: max weighted sum ASE (eq. 16); "
                                                          "P2: max T_c^ASE under link-level constraints (eq. 19)")
    evaluator: Literal["analytic", "montecarlo"] = Field("analytic", description="closed forms or simulation")
    rate_sense_min: float | None = Field(None, ge=0, description="P2: R_s^th [nats/s/Hz] (eq. 19a)")
    rate_comm_min: float | None = Field(None, ge=0, description="P2: R_c^th [nats/s/Hz] (eq. 19a)")
    ase_sense_min: float | None = Field(None, ge=0, description="P2: T_s^th [nats/s/Hz/km^2] (eq. 19a)")
    L_min: int = Field(1, ge=1, le=64, description="P2: cluster floor L >= L^th (Fig. 5)")
    Q_min: int = Field(1, ge=1, le=64, description="P2: cluster floor Q >= Q^th (Fig. 5)")
    # ---- Monte Carlo
    mc_samples: int = Field(2000, ge=100, le=1_000_000, description="Monte Carlo networks per evaluation")
    mc_explicit: int = Field(8, ge=1, le=256, description="interferers per network with explicit ZF "
                                                          "beamformers and fading; farther ones enter by their "
                                                          "mean gain (see docs)")

    @property
    def sensing_gain(self) -> float:
        """xi * Delta T * kappa * M_r, the constant in front of eq. (5)."""
        return self.xi * self.delta_t * self.kappa * self.Mr
