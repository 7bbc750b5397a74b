"""MAPPO for ent-usr: centralized training, decentralized execution (ENT-USR paper, Sec. V)."""
from .solver import MAPPO

__all__ = ["MAPPO"]
