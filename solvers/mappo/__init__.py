"""MAPPO: centralized training, decentralized execution (ENT-USR paper, Sec. V) on any sequential task."""
from .solver import MAPPO

__all__ = ["MAPPO"]
