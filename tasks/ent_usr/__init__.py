"""ent-usr: elastic network topology for distributed ISAC, USR maximization (multi-agent, multi-frame)."""
from .task import EntUsrTask

__all__ = ["EntUsrTask"]
