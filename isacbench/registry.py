"""Discovery of tasks and solvers: entry points `isacbench.tasks` / `isacbench.solvers`,
or a `package.module:Class` spec that needs no packaging."""
from __future__ import annotations

import functools
import importlib
from importlib.metadata import EntryPoint, entry_points

from .api import Solver, Task, UserError

GROUPS = {"task": "isacbench.tasks", "solver": "isacbench.solvers"}
BASES = {"task": Task, "solver": Solver}


@functools.lru_cache(maxsize=None)
def _entry_points(group: str) -> tuple[EntryPoint, ...]:
    """The group's entry points, read once per process (a scan of every installed distribution's
    metadata costs tens of ms; a sweep loads its task and solver several times per run)."""
    return tuple(entry_points(group=group))


def names(kind: str) -> list[str]:
    """Registered names of `kind` ('task' or 'solver'), sorted."""
    return sorted({ep.name for ep in _entry_points(GROUPS[kind])})


def load(kind: str, name: str) -> type:
    """The class registered as `name`, or the class a 'module:Class' spec names."""
    if ":" in name:
        module, _, attr = name.partition(":")
        if not (module and attr) or module.startswith("."):
            raise UserError(f"{kind} {name!r} is not of the form module:Class; registered: {', '.join(names(kind))}")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise UserError(f"cannot load {kind} {name!r}: {e}") from None
    else:
        eps = [ep for ep in _entry_points(GROUPS[kind]) if ep.name == name]
        if not eps:
            raise UserError(f"unknown {kind} {name!r}; available: {', '.join(names(kind))}")
        cls = eps[0].load()
    if not (isinstance(cls, type) and issubclass(cls, BASES[kind])):
        raise UserError(f"{name!r} is not an isacbench {kind} (a subclass of isacbench.api.{BASES[kind].__name__})")
    return cls


def load_all(kind: str) -> tuple[dict[str, type], dict[str, str]]:
    """(loadable classes by name, error message by name for entries that fail to load)."""
    loaded, broken = {}, {}
    for n in names(kind):
        try:
            loaded[n] = load(kind, n)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not hide the others
            broken[n] = f"{type(e).__name__}: {e}"
    return loaded, broken


def check_pair(task: type[Task], solver: type[Solver]) -> None:
    if not solver.supports(task):
        supported = [n for n, s in load_all("solver")[0].items() if s.supports(task)]
        raise UserError(f"solver {solver.name!r} does not support task {task.name!r}; "
                        f"solvers for {task.name}: {', '.join(supported)}")
