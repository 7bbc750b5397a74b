"""Shared pieces of the benchmarks: timers, results, machine description, scale presets.

Every figure is a ratio of two measurements taken in the same run (baseline / candidate time, or
candidate / baseline throughput), so a loaded machine slows both sides. Each `Result` keeps the raw
measurements it was computed from, so the report (and the smoke test) can recompute it.
"""
from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

SCALES = ("tiny", "quick", "full")  # tiny: smoke test; quick: `--quick` (~1 min); full: default (~10 min)


@dataclass
class Result:
    """One benchmark figure. `value` = numerator / denominator (both measured in this run);
    `target` is met when value >= target, or value <= target when `at_most` (None: reported only)."""

    bench: str  # module, e.g. "env"
    name: str  # what is measured
    value: float
    unit: str  # "x" for speed-ups, "frames/s", "s", ...
    numerator: float | None = None
    denominator: float | None = None
    target: float | None = None
    detail: str = ""  # method and raw numbers, one line
    valid: bool = True  # False: a precondition (e.g. equal accuracy) failed, so the target is not met
    at_most: bool = False  # the target is an upper bound (e.g. a time ratio that should stay <= 1)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        ok = self.value <= self.target if self.at_most else self.value >= self.target
        return bool(self.valid and math.isfinite(self.value) and ok)

    @property
    def relation(self) -> str:
        return "<=" if self.at_most else ">="


@dataclass
class Section:
    """A benchmark module's output: its results plus free-form report lines (tables, notes)."""

    title: str
    results: list[Result] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def ratio(self, name: str, baseline_s: float, candidate_s: float, target: float | None = None,
              detail: str = "", valid: bool = True, at_most: bool = False) -> Result:
        """Speed-up = baseline time / candidate time for the same work (at_most: the target is an upper bound)."""
        r = Result(self.title, name, baseline_s / candidate_s, "x", baseline_s, candidate_s, target, detail, valid,
                   at_most)
        self.results.append(r)
        return r

    def figure(self, name: str, value: float, unit: str, detail: str = "", target: float | None = None) -> Result:
        r = Result(self.title, name, float(value), unit, target=target, detail=detail)
        self.results.append(r)
        return r

    def fraction(self, name: str, numerator: float, denominator: float, target: float | None = None,
                 detail: str = "", at_most: bool = False) -> Result:
        """A ratio of two same-unit measurements of this run (e.g. ceiling time / measured time,
        or two throughputs), reported with unit "x"; the target is a lower bound unless at_most."""
        r = Result(self.title, name, numerator / denominator, "x", numerator, denominator, target, detail,
                   at_most=at_most)
        self.results.append(r)
        return r


def best_time(fn: Callable[[], object], repeats: int = 3, min_time: float = 0.0) -> float:
    """Smallest wall time of `repeats` calls of fn (each repeated until min_time has passed):
    the minimum is the least disturbed by other processes on a shared machine."""
    best = math.inf
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / n)
    return best


def fit_exponent(x, y) -> float:
    """Least-squares slope of log y against log x: y ~ c x^slope."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def machine() -> dict[str, str]:
    """CPU model, cores, load average, library versions, GPU presence."""
    import scipy
    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (torch.cuda.is_available() is False)"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "load_avg_1_5_15": " / ".join(f"{v:.2f}" for v in load),
            "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch.__version__, "torch_threads": str(torch.get_num_threads()), "gpu": gpu,
            "platform": platform.platform()}
