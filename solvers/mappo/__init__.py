"""MAPPO: centralized training, decentralized execution (ENT-USR paper, Sec. V) on any sequential task;
IPPO and HAPPO share its training loop (`variants.py`)."""
from .solver import MAPPO
from .variants import HAPPO, IPPO

__all__ = ["HAPPO", "IPPO", "MAPPO"]
