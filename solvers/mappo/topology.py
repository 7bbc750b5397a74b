"""Topology variants (Sec. VI baselines): which roles learn and the fixed rules of the others.

* ent      : every role learns (the proposed elastic network topology).
* ccn-only : only LPB agents learn. LCP_m is fixed to "everything local": every service bit 0
             (eqs. 57-58: 0 = local set), full local power P^L_a = P_max and full local
             bandwidth B^L_m = B (the upper bounds of its continuous heads). FG and FPB then
             have no federated users; they act with the neutral rule below.
* cfn-only : only FG and FPB agents learn. LCP_m is fixed to "everything federated": every
             service bit 1, zero local power and bandwidth (lower bounds), so all resources go
             to the federated regime. LPB then has no local users and acts with the neutral rule.
Neutral rule (roles without users): bits 0, categorical values round-robin over the classes
(FG: CCN m -> CFN m mod R), continuous heads at their upper bound (equal split after the
environment's simplex projection).
"""
from __future__ import annotations

import numpy as np

from isacbench.api import UserError
from isacbench.multiagent import Head, RoleSpec

TRAINED = {"ent": None, "ccn-only": ("lpb",), "cfn-only": ("fg", "fpb")}
RULES = {"ccn-only": {"lcp": "local"}, "cfn-only": {"lcp": "federated"}}


def trained_roles(topology: str, roles: dict[str, RoleSpec]) -> tuple[str, ...]:
    """Roles that learn under `topology` (all of them for ent)."""
    names = TRAINED[topology]
    if names is None:
        return tuple(roles)
    missing = [r for r in (*names, "lcp") if r not in roles]
    if missing:
        raise UserError(f"solver mappo topology={topology!r} needs roles lcp, lpb, fg, fpb; "
                        f"the environment has {', '.join(roles)}")
    return names


def fixed_action(head: Head, rule: str, batch: int, n_agents: int) -> np.ndarray:
    """The fixed rule's action for one head: (batch, n_agents, size)."""
    shape = (batch, n_agents, head.size)
    if head.kind == "bernoulli":
        return np.full(shape, 1 if rule == "federated" else 0, dtype=np.int64)
    if head.kind == "categorical":
        return np.broadcast_to(np.arange(head.size) % head.classes, shape).astype(np.int64)
    return np.full(shape, head.low if rule == "federated" else head.high, dtype=np.float64)


def fixed_actions(topology: str, role: str, spec: RoleSpec, batch: int) -> dict[str, np.ndarray]:
    """Actions of the untrained `role` under `topology`."""
    rule = RULES.get(topology, {}).get(role, "neutral")
    return {h.name: fixed_action(h, rule, batch, spec.n_agents) for h in spec.heads}
