"""The static decision of one frame as an isacbench Problem, for centralized, genie-aided
per-frame optimizers (random, optuna, polyblock, convex, the MRT baselines).

Decision variables (compact parametrization of eq. 47-51; beams are MRT: codebook, or true with `true_mrt`):
  fed_{m}_{j}  Integer 0..1    service j of CCN m (users 0..K-1, then targets) is federated (eq. 57-58)
  bl_{m}       Integer 0..B    dedicated subcarriers B_m^L (eq. 60)
  pl_{a}       Real [0, 1]     P_a^L / P_max (eq. 59)
  grp_{m}      Integer 0..R-1  CFN of CCN m (eq. 65); feasible iff every |S_r| <= M_max (eq. 52)
  wl_{a}, wf_{a} Real [0, 1]   sensing weight of AP a in the L / F regime: each served user gets a
                               share proportional to 1 - w, each served target to w (0.5 = equal power)
Optional (not sampled by black-box solvers; see `FrameSpace`):
  lv_{m}_{j}   Real [0, LV_MAX] power level of service j of CCN m (default 1): every AP's share for it is
                               scaled by lv, then an AP whose shares exceed its budget scales them all down (eq. 16-17)
  true_mrt     Real {0, 1}     1: true MRT beams (w = h_hat / ||h_hat||, mrt.py) instead of codebook MRT
                               (default 0); the rule baselines' `beam=mrt`
The objective is the frame's USR (eq. 42) computed with the estimated CSI of the frame; the metrics
are `metrics.METRICS`, as the environment's `end_frame` reports them.
Under a restricted topology setting (`Params.topology`, topology.py) the bounds fix the topology:
ccn-only fed_* = 0, bl_m = B, pl_a = 1; cfn-only fed_* = 1, bl_m = 0, pl_a = 0.
`structure()` exposes the power allocation for the topology and beams (codebook or true MRT) of a
reference decision as monotonic and convex programs (`power.PowerPrograms`); `options={"beam": "mrt"}`
takes the reference and the topology search's layouts at true-MRT beams."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from isacbench.api import DiscreteSearch, Evaluation, Integer, Problem, Real, Space, Structure, UserError

from . import actions as act
from . import model, topology
from .config import Params
from .metrics import frame_metrics
from .power import LV_MAX, PowerPrograms, apply_levels


@dataclass(frozen=True)
class FrameSpace(Space):
    """The 76 sampled variables plus optional ones with defaults: a decision may omit them (black-box
    solvers never see them) or set them (power-allocation solvers); `check` keeps the ones given.
    The core Space has no optional variables; this subclass works around that."""

    optional: tuple[Real, ...] = ()
    defaults: tuple[float, ...] = ()

    def check(self, x: Mapping) -> dict:
        opt = {v.name: v for v in self.optional}
        out = super().check({k: v for k, v in x.items() if k not in opt})
        for name, val in x.items():
            if name in opt:
                try:
                    val = float(val)
                except (TypeError, ValueError):
                    raise UserError(f"decision variable {name!r}: cannot parse {val!r} as a real") from None
                if not opt[name].contains(val):
                    raise UserError(f"decision variable {name!r}={val!r} is outside reals "
                                    f"[{opt[name].low}, {opt[name].high}]")
                out[name] = val
        return out


class EntUsrFrameProblem(Problem):
    def __init__(self, p: Params, state: model.FrameState, label: str = ""):
        self.p, self.state, self.label = p, state, label
        nk = p.K + p.Q
        levels = tuple(Real(f"lv_{m}_{j}", 0.0, LV_MAX) for m in range(p.M) for j in range(nk))
        levels += (Real("true_mrt", 0.0, 1.0),)  # last of the optional variables (default 0)
        bounds = topology.frame_bounds(p.topology, p.B)
        self.space = FrameSpace(
            tuple(Integer(f"fed_{m}_{j}", *bounds["fed"]) for m in range(p.M) for j in range(nk))
            + tuple(Integer(f"bl_{m}", *bounds["bl"]) for m in range(p.M))
            + tuple(Real(f"pl_{a}", *bounds["pl"]) for a in range(p.MA))
            + tuple(Integer(f"grp_{m}", 0, p.R - 1) for m in range(p.M))
            + tuple(Real(f"wl_{a}", 0.0, 1.0) for a in range(p.MA))
            + tuple(Real(f"wf_{a}", 0.0, 1.0) for a in range(p.MA)), optional=levels,
            defaults=(1.0,) * (len(levels) - 1) + (0.0,))

    # -------------------------------------------------------------- conversions
    def to_decision(self, x: Mapping, repair: bool = True) -> model.Decision:
        """The full (batch-1) Decision of a point of the space."""
        p = self.p
        nk = p.K + p.Q
        fed = np.array([[x[f"fed_{m}_{j}"] for j in range(nk)] for m in range(p.M)], dtype=bool)
        vec = lambda name, n: np.array([[x[f"{name}_{i}"] for i in range(n)]], dtype=float)  # noqa: E731
        group = np.array([[int(x[f"grp_{m}"]) for m in range(p.M)]])
        if x.get("true_mrt", 0.0) not in (0.0, 1.0):
            raise UserError(f"decision variable 'true_mrt'={x['true_mrt']!r} must be 0 (codebook MRT) or 1 (true MRT)")
        d = act.rule_decision(p, fed[None, :, : p.K].reshape(1, p.MK), fed[None, :, p.K:].reshape(1, p.MQ),
                              vec("bl", p.M).astype(np.int64), vec("pl", p.MA) * p.P_max, group,
                              vec("wl", p.MA), vec("wf", p.MA), repair=repair,
                              beam=act.TRUE_MRT if x.get("true_mrt", 0.0) else act.MRT)
        lv = np.array([[float(x.get(f"lv_{m}_{j}", 1.0)) for j in range(nk)] for m in range(p.M)])
        return apply_levels(p, d, lv[None])

    def rule(self, fed: np.ndarray, group: np.ndarray, beam: str = "codebook") -> dict:
        """The baselines' decision for classification fed (M, K+Q) and grouping (M,): each CCN keeps
        the share of its subcarriers and of its APs' power that its local services make of all its
        services, MRT beams (beam: "codebook" MRT, or "mrt": true MRT, `true_mrt` = 1) and equal power
        per service (w = 0.5). Under a restricted topology the classification is the fixed one
        (`topology.restrict_federation`)."""
        p = self.p
        fed = topology.restrict_federation(p.topology, fed)
        n_loc = (~fed).sum(axis=1)
        x = {f"fed_{m}_{j}": int(fed[m, j]) for m in range(p.M) for j in range(p.K + p.Q)}
        x.update({f"bl_{m}": int(round(p.B * n_loc[m] / (p.K + p.Q))) for m in range(p.M)})
        x.update({f"pl_{a}": float(n_loc[a // p.A] / (p.K + p.Q)) for a in range(p.MA)})
        x.update({f"grp_{m}": int(group[m]) for m in range(p.M)})
        x.update({f"{w}_{a}": 0.5 for w in ("wl", "wf") for a in range(p.MA)})
        if beam == "mrt":
            x["true_mrt"] = 1.0
        elif beam != "codebook":
            raise ValueError(f"beam={beam!r}: 'codebook' or 'mrt'")
        return x

    def contiguous_groups(self) -> np.ndarray:
        """CCN m -> CFN floor(m R / M): R blocks of consecutive (row-major, adjacent) CCNs."""
        return (np.arange(self.p.M) * self.p.R) // self.p.M

    def reference(self, beam: str = "codebook") -> tuple[dict, int]:
        """Default reference decision of `structure()`, and the evaluations choosing it took: the
        better (USR) of the rule topologies the topology setting allows (`topology.reference_federations`:
        CCN-only and CFN-only under ent, else the fixed one), contiguous groups, `beam` as in `rule`."""
        p = self.p
        xs = [self.rule(np.full((p.M, p.K + p.Q), fed), self.contiguous_groups(), beam=beam)
              for fed in topology.reference_federations(p.topology)]
        if len(xs) == 1:
            return xs[0], 0
        return max(xs, key=lambda x: self.evaluate(x).objective), len(xs)

    def structure(self, at: Mapping | None = None, options: Mapping | None = None) -> Structure:
        """The power allocation at the topology, sensing weights and beams of the decision `at`
        (default: `self.reference(beam)`, whose evaluations are not counted here: `reference_evaluations`
        says how many a solver should charge), groups beyond M_max repaired (eq. 52): `monotonic_blocks`
        (`PowerPrograms.separable`: one MonotonicProgram per CCN / CFN block, objectives adding up
        to the USR), `monotonic` (the joint program, one branch), `convex_blocks` (the same blocks
        as ConvexPrograms in the power levels, `power_convex`, with block keys) and `discrete`
        (the topology search space, `discrete(beam)`). The beams are those of `at` (codebook MRT, or
        true MRT with `true_mrt` = 1). options: {"beam": "codebook" (default) or "mrt"}: the beams of
        the default reference and of `discrete`'s layouts (an `at` keeps its own)."""
        options = dict(options or {})
        beam = options.pop("beam", "codebook")
        if options or beam not in ("codebook", "mrt"):
            raise UserError(f"ent-usr frame problem: structure options are beam='codebook' or 'mrt'; got "
                            f"{dict(options or {}, beam=beam)}")
        x, spent = (at, 0) if at is not None else self.reference(beam)
        x = self.space.check(x)
        if self.cfn_excess(x):
            x = {**x, **{f"grp_{m}": int(g) for m, g in enumerate(act.repair_groups(
                np.array([[x[f"grp_{m}"] for m in range(self.p.M)]]), self.p)[0])}}
        progs = PowerPrograms(self.p, self.state, x, self.to_decision)
        return Structure(monotonic=[progs.joint()], monotonic_blocks=progs.separable(spent),
                         convex_blocks=progs.convex(spent),
                         discrete=self.discrete() if beam == "codebook" else self.discrete(beam))

    def discrete(self, beam: str = "codebook") -> DiscreteSearch:
        """The topology as a discrete search space (`topology-search`): `fed_{m}_{j}` (as in the
        frame problem), `grp_{m}`, and per CCN a resource split `off_{m}` in -(K+Q)..K+Q: CCN m keeps
        the share clip((n_loc_m + off_m) / (K+Q), 0, 1) of its subcarriers (bl_m, rounded) and of its
        APs' power (pl_a) for its n_loc_m local services, the rest going to its CFN (off = 0 is the
        baselines' proportional rule, `rule`); sensing weights 0.5 (equal power; the power levels
        are the convex blocks' variables). Under a restricted topology setting the bounds fix the
        classification and the split as the frame problem's bounds do. Starts: the all-local and
        all-federated rule layouts the setting allows, contiguous groups; `beam` (as in `rule`) is the
        beams of every completed layout. Neighbours: see
        `neighbours` below (single flips alone miss e.g. exchanging which user a CCN federates)."""
        p, nk = self.p, self.p.K + self.p.Q
        bounds = topology.frame_bounds(p.topology, p.B)
        fixed = topology.federation(p.topology) is not None
        space = Space(tuple(Integer(f"fed_{m}_{j}", *bounds["fed"]) for m in range(p.M) for j in range(nk))
                      + tuple(Integer(f"grp_{m}", 0, p.R - 1) for m in range(p.M))
                      + tuple(Integer(f"off_{m}", *((0, 0) if fixed else (-nk, nk))) for m in range(p.M)))

        def complete(z: Mapping) -> dict:
            fed = np.array([[int(z[f"fed_{m}_{j}"]) for j in range(nk)] for m in range(p.M)], dtype=bool)
            x = self.rule(fed, np.array([int(z[f"grp_{m}"]) for m in range(p.M)]), beam=beam)
            share = np.clip(((~fed).sum(axis=1) + np.array([int(z[f"off_{m}"]) for m in range(p.M)])) / nk, 0, 1)
            x.update({f"bl_{m}": int(np.clip(round(p.B * share[m]), *bounds["bl"])) for m in range(p.M)})
            x.update({f"pl_{a}": float(np.clip(share[a // p.A], *bounds["pl"])) for a in range(p.MA)})
            return x

        def isolate(z: Mapping, m: int) -> dict | None:
            """Groups with CCN m alone in its CFN: the others of its CFN move to the other CFNs with
            room (fewest members first); None if m is alone already or they do not fit (M_max)."""
            grp = [int(z[f"grp_{i}"]) for i in range(p.M)]
            others = [i for i in range(p.M) if i != m and grp[i] == grp[m]]
            if not others:
                return None
            for i in others:
                size = np.bincount([g for k, g in enumerate(grp) if k not in others or grp[k] != grp[m]],
                                   minlength=p.R)
                room = [r for r in np.argsort(size, kind="stable") if r != grp[m] and size[r] < p.M_max]
                if not room:
                    return None
                grp[i] = int(room[0])
            return {f"grp_{i}": grp[i] for i in range(p.M)}

        def neighbours(z: Mapping) -> list[dict]:
            """Flip one service (for a CCN without federated services also: and isolate the CCN in
            its own CFN); swap a federated and a local service of one CCN; flip one service and move
            its CCN's split by one step; move a CCN to another CFN; swap the CFNs of two CCNs; move a
            split by one or two steps (within the bounds)."""
            out = []
            for m in range(p.M):
                fed = [f"fed_{m}_{j}" for j in range(nk)]
                off, lo, hi = f"off_{m}", space[f"off_{m}"].low, space[f"off_{m}"].high
                steps = [d for d in (-2, -1, 1, 2) if lo <= z[off] + d <= hi]
                if bounds["fed"][0] != bounds["fed"][1]:
                    alone = isolate(z, m) if not any(z[a] for a in fed) else None
                    for a in fed:
                        out.append({a: 1 - z[a]})
                        if alone:  # the CCN's first federated service, in a CFN of its own (|S_r| = 1, eq. 41)
                            out.append({a: 1, **alone})
                        out += [{a: 1 - z[a], off: z[off] + d} for d in steps if abs(d) == 1]
                        out += [{a: 0, b: 1} for b in fed if z[a] == 1 and z[b] == 0]
                out += [{off: z[off] + d} for d in steps]
                out += [{f"grp_{m}": r} for r in range(p.R) if r != z[f"grp_{m}"]]
                out += [{f"grp_{m}": z[f"grp_{i}"], f"grp_{i}": z[f"grp_{m}"]} for i in range(m + 1, p.M)
                        if z[f"grp_{i}"] != z[f"grp_{m}"]]
            return [{**z, **c} for c in out]

        groups = self.contiguous_groups()
        starts = [{**{f"fed_{m}_{j}": int(f) for m in range(p.M) for j in range(nk)},
                   **{f"grp_{m}": int(groups[m]) for m in range(p.M)}, **{f"off_{m}": 0 for m in range(p.M)}}
                  for f in topology.reference_federations(p.topology)]
        return DiscreteSearch(space, complete, starts, neighbours)

    # -------------------------------------------------------------- evaluation
    def cfn_excess(self, x: Mapping) -> float:
        """Number of CCNs beyond M_max in over-full CFNs (eq. 52); 0 when feasible."""
        sizes = np.bincount([int(x[f"grp_{m}"]) for m in range(self.p.M)], minlength=self.p.R)
        return float(np.maximum(sizes - self.p.M_max, 0).sum())

    def evaluate(self, x: Mapping) -> Evaluation:
        x = self.space.check(x)
        d = self.to_decision(x, repair=False)
        excess = self.cfn_excess(x)
        out = model.evaluate(self.p, self.state, d)
        metrics = {k: float(v[0]) for k, v in frame_metrics(self.p, out, d).items()}
        return Evaluation(objective=metrics["usr"], feasible=excess == 0,
                          violations={"cfn_size": excess} if excess else {}, metrics=metrics)
