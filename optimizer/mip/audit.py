"""What the independent verifier shares across constraint families: tolerances, the error, and
the audit of one design (what each site must hold, recomputed from the workloads' layouts).

Each constraint family pairs its `add_<family>` with a `check_<family>(audit)` in the same module;
the checks never read solver values: they recompute from the design through the performance model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.schema import Instance, Site

from optimizer.mip.design import Solution

REL_TOL = 1e-6
# Solvers meet constraints to ~1e-6 in scaled units; continuous sizing is checked at this slack.
FEAS_TOL = 1e-5


class VerificationError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("design failed verification:\n" + "\n".join(f"  - {p}" for p in problems))

    def __reduce__(self):  # crosses process boundaries (the hard wall clock's child) with its problems intact
        return (VerificationError, (self.problems,))


def close(a: float, b: float, rel: float = REL_TOL, abs_: float = 1e-6) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def _per_site(names, factory):
    return {n: factory() for n in names}


@dataclass
class Audit:
    """One design under check. Workload families record what each site must hold; the facility
    families compare it with what the design buys and recompute power and money in user units."""

    instance: Instance
    sol: Solution
    problems: list[str] = field(default_factory=list)
    sites: dict[str, Site] = field(default_factory=dict)
    need_nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> acc -> nodes
    need_endpoints: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> fabric -> endpoints
    usable_tb: dict[str, float] = field(default_factory=dict)
    need_gbps: dict[str, float] = field(default_factory=dict)  # checkpoint writes
    need_read_gbps: dict[str, float] = field(default_factory=dict)  # training data reads
    used: dict[str, bool] = field(default_factory=dict)
    serving_nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> acc -> serving nodes
    node_kw: dict[str, float] = field(default_factory=dict)
    network_kw: dict[str, float] = field(default_factory=dict)
    network_usd: dict[str, float] = field(default_factory=dict)
    storage_kw: dict[str, float] = field(default_factory=dict)
    storage_usd: dict[str, float] = field(default_factory=dict)
    facility_kw: dict[str, float] = field(default_factory=dict)
    backup_kw: dict[str, float] = field(default_factory=dict)  # backup copies' storage power
    backup_usd: dict[str, float] = field(default_factory=dict)
    facility_usd: dict[str, float] = field(default_factory=dict)  # facility build cost (families/facility.py)
    totals: dict[str, float] = field(default_factory=dict)  # recomputed totals in user units, by metric name

    def __post_init__(self) -> None:
        self.sites = {s.name: s for s in self.instance.site_list}
        names = list(self.sites)
        for attr, factory in (("need_nodes", dict), ("need_endpoints", dict), ("usable_tb", float), ("need_gbps", float), ("need_read_gbps", float),
                              ("used", bool), ("serving_nodes", dict), ("node_kw", float), ("network_kw", float),
                              ("network_usd", float), ("storage_kw", float), ("storage_usd", float), ("facility_kw", float),
                              ("backup_kw", float), ("backup_usd", float), ("facility_usd", float)):
            setattr(self, attr, _per_site(names, factory))

    @property
    def one_facility(self) -> bool:
        return self.instance.sites is None

    def tag(self, site: str) -> str:
        """How a problem names its site: nothing for a single facility."""
        return "" if self.one_facility else f"site {site}: "

    def problem(self, text: str) -> None:
        self.problems.append(text)
