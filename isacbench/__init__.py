"""isacbench: a reference benchmark for network-level integrated sensing and communication optimization."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("isacbench")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
