"""The MIP's variables, indexed for the builder, and its named totals keyed by `Key`."""

from __future__ import annotations

from dataclasses import dataclass, field

from optimizer.mip.data import FabricData
from optimizer.mip.lp import K, Key, Model, Var


@dataclass
class Vars:
    site_open: dict[str, Var] = field(default_factory=dict)
    choose: dict[tuple[str, int, str], Var] = field(default_factory=dict)  # (job, cand position, site)
    rent: dict[tuple[str, int], Var] = field(default_factory=dict)  # (job, rented cand position)
    units: dict[tuple[str, int, str], Var] = field(default_factory=dict)  # (svc, layout pos, site): replicas
    served: dict[tuple[str, int, str, str], Var] = field(default_factory=dict)  # (svc, layout pos, site, region)
    serving_nodes: dict[tuple[str, str], Var] = field(default_factory=dict)  # (acc, site)
    serving_node_count: dict[tuple[str, str], Var] = field(default_factory=dict)  # (acc, site): integer, packed
    nodes: dict[tuple[str, str, str], Var] = field(default_factory=dict)  # (acc, cooling, site)
    racks: dict[tuple[str, str, str], Var] = field(default_factory=dict)
    tiers: dict[tuple[str, str, int], Var] = field(default_factory=dict)  # (fabric, site, depth)
    endpoints: dict[tuple[str, str, int], Var] = field(default_factory=dict)
    leaves: dict[tuple[str, str, int], Var] = field(default_factory=dict)
    aggregation: dict[tuple[str, str], Var] = field(default_factory=dict)
    spines: dict[tuple[str, str, int], Var] = field(default_factory=dict)
    storage_tb: dict[tuple[str, str], Var] = field(default_factory=dict)  # (tier, site)
    backup_tb: dict[str, Var] = field(default_factory=dict)  # site -> raw TB of the backup tier (families/backup.py)
    totals: dict[Key, Var] = field(default_factory=dict)  # named totals, e.g. K("it_power_kw", site="dc1")
    fabrics_at: dict[str, list[FabricData]] = field(default_factory=dict)  # site -> fabrics built there (incl. front-end)

    def total(self, family: str, **coords) -> Var:
        """A named total by its key: `v.total("facility_power_kw", site="campus")`."""
        return self.totals[K(family, **coords)]


def define_total(m: Model, v: Vars, key: Key, expr) -> Var:
    """A named continuous variable equal to `expr`, so totals show up by name in exports and reports."""
    var = m.add_var(key, lb=0.0)
    m.add_constraint(var == expr, K("define", key))
    v.totals[key] = var
    return var
