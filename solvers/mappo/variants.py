"""IPPO and HAPPO: the MAPPO training loop with another critic / update order (`Hyper.algorithm`).

* `ippo`: independent PPO (de Witt et al. 2020, "Is independent learning all you need in the
  StarCraft multi-agent challenge?"): every agent's critic sees only its own observation.
* `happo`: heterogeneous-agent PPO (Kuba et al. 2022, ICLR): one centralized V(s) and sequential
  role updates (`algorithm.sequential_update`).
"""
from __future__ import annotations

from .config import HappoConfig, IppoConfig
from .solver import MAPPO


class IPPO(MAPPO):
    name = "ippo"
    description = "independent PPO: per-agent actors and per-agent critics on the agent's own observation"
    Config = IppoConfig


class HAPPO(MAPPO):
    name = "happo"
    description = "heterogeneous-agent PPO: centralized V(s), roles updated one after the other (Kuba et al. 2022)"
    Config = HappoConfig
