"""sg-nulling: coordinated beamforming and cooperative BS cluster sizes for ISAC networks (stochastic geometry)."""
from .config import SgNullingConfig
from .task import SgNullingTask

__all__ = ["SgNullingTask", "SgNullingConfig"]
