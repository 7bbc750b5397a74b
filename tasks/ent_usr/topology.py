"""Topology settings of ent-usr (task config key `topology`; the Sec. VI CCN-only / CFN-only
variants): which roles act, the fixed rules of the others, and the matching frame-problem bounds.

* ent      : every role acts (the proposed elastic network topology).
* ccn-only : only LPB acts. LCP_m is fixed to "everything local": every service bit 0
             (eqs. 57-58: 0 = local set), full local power P^L_a = P_max and full local
             bandwidth B^L_m = B (the upper bounds of its continuous heads). FG and FPB then
             have no federated services; they act with the neutral rule below.
* cfn-only : only FG and FPB act. LCP_m is fixed to "everything federated": every service bit 1,
             zero local power and bandwidth (lower bounds), so all resources go to the federated
             regime. LPB then has no local services and acts with the neutral rule.
Neutral rule (roles without services): bits 0, categorical values round-robin over the classes
(FG: CCN m -> CFN m mod R), continuous heads at their upper bound (equal split after the
environment's simplex projection).

The environment applies these rules itself and lists only the acting roles (`EntUsrEnv.roles`,
`.stages`). A frame problem fixes the same quantities through its space bounds (`frame_bounds`):
ccn-only fed_* = 0, bl_m = B, pl_a = 1; cfn-only fed_* = 1, bl_m = 0, pl_a = 0.
"""
from __future__ import annotations

import numpy as np

from isacbench.multiagent import Head, RoleSpec

TOPOLOGIES = ("ent", "ccn-only", "cfn-only")
ROLES = ("lcp", "lpb", "fg", "fpb")
ACTING = {"ent": ROLES, "ccn-only": ("lpb",), "cfn-only": ("fg", "fpb")}
RULES = {"ccn-only": {"lcp": "local"}, "cfn-only": {"lcp": "federated"}}
FEDERATED = {"ent": None, "ccn-only": False, "cfn-only": True}  # the classification a topology fixes


def acting_roles(topology: str) -> tuple[str, ...]:
    """The roles that act under `topology`, in the order of `ROLES`."""
    return ACTING[topology]


def fixed_action(head: Head, rule: str, batch: int, n_agents: int) -> np.ndarray:
    """The fixed rule's action for one head: (batch, n_agents, size)."""
    shape = (batch, n_agents, head.size)
    if head.kind == "bernoulli":
        return np.full(shape, 1 if rule == "federated" else 0, dtype=np.int64)
    if head.kind == "categorical":
        return np.broadcast_to(np.arange(head.size) % head.classes, shape).astype(np.int64)
    return np.full(shape, head.low if rule == "federated" else head.high, dtype=np.float64)


def fixed_actions(topology: str, role: str, spec: RoleSpec, batch: int) -> dict[str, np.ndarray]:
    """Actions of the non-acting `role` under `topology`."""
    rule = RULES.get(topology, {}).get(role, "neutral")
    return {h.name: fixed_action(h, rule, batch, spec.n_agents) for h in spec.heads}


def federation(topology: str) -> bool | None:
    """The classification `topology` fixes for every service (False: all local, True: all
    federated), or None where it is decided."""
    return FEDERATED[topology]


def reference_federations(topology: str) -> tuple[bool, ...]:
    """The all-local (False) / all-federated (True) rule topologies a frame problem may take as its
    reference decision: both under ent, only the fixed one under a restricted topology."""
    fixed = federation(topology)
    return (False, True) if fixed is None else (fixed,)


def restrict_federation(topology: str, fed: np.ndarray) -> np.ndarray:
    """A classification (bool array) within `topology`: unchanged under ent, else the fixed one."""
    fixed = federation(topology)
    fed = np.asarray(fed, bool)
    return fed if fixed is None else np.full(fed.shape, fixed)


def frame_bounds(topology: str, B: int) -> dict[str, tuple]:
    """(low, high) of the frame problem's classification bits `fed`, dedicated subcarriers `bl`
    (of B) and local power share `pl` under `topology` (equal bounds fix the variable)."""
    fixed = federation(topology)
    if fixed is None:
        return {"fed": (0, 1), "bl": (0, B), "pl": (0.0, 1.0)}
    return {"fed": (int(fixed),) * 2, "bl": (0 if fixed else B,) * 2, "pl": (0.0 if fixed else 1.0,) * 2}
