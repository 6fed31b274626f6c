"""Fat-tree (folded-Clos) sizing: switches, links and transceivers from endpoints and radix.

Al-Fares et al. 2008: with radix k, one tier (a single switch) serves k endpoints, two tiers
k^2/2 and three tiers k^3/4 non-blocking. With an oversubscription ratio o (leaf down:up), a
leaf gives `down = floor(k*o/(o+1))` ports to endpoints and `up = k - down` to the next tier;
tiers above the leaves are non-blocking (half their ports down, half up).

  tier 1: 1 switch, no switch-to-switch links                       (endpoints <= k)
  tier 2: L = ceil(E/down) leaves, S = ceil(L*up/k) spines,
          links = L*up                                               (endpoints <= down*k)
  tier 3: L leaves, A = ceil(L*up/(k/2)) aggregation, C = ceil(A/2) cores,
          links = L*up + A*k/2                                       (endpoints <= down*k*k/2)

Every switch-to-switch link carries two transceivers (one per end). Endpoint ports (NIC plus its
cable/optic) are priced per port by the fabric. The MIP (optimizer.mip.families.fabric.add_fabric) writes the
same rules as linear constraints; this module is the closed form the verifier uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_TIERS = 3


def port_split(radix: int, oversubscription: float) -> tuple[int, int]:
    """Leaf ports (down to endpoints, up to the next tier)."""
    down = int(math.floor(radix * oversubscription / (oversubscription + 1.0)))
    down = max(1, min(radix - 1, down))
    return down, radix - down


def tier_capacity(tiers: int, radix: int, oversubscription: float) -> int:
    """Most endpoints a fabric with this many tiers can serve."""
    down, _ = port_split(radix, oversubscription)
    if tiers == 1:
        return radix
    if tiers == 2:
        return down * radix
    if tiers == 3:
        return down * radix * (radix // 2)
    raise ValueError(f"tiers must be 1..{MAX_TIERS}, got {tiers}")


@dataclass(frozen=True)
class FatTree:
    endpoints: int
    tiers: int
    leaves: int
    aggregation: int
    spines: int
    links: int

    @property
    def switches(self) -> int:
        return self.leaves + self.aggregation + self.spines

    @property
    def optics(self) -> int:
        return 2 * self.links


def fat_tree(endpoints: int, radix: int, oversubscription: float = 1.0, tiers: int | None = None) -> FatTree:
    """The fat-tree for `endpoints` ports; the fewest tiers that fit unless `tiers` is given."""
    if endpoints <= 0:
        return FatTree(0, 0, 0, 0, 0, 0)
    if tiers is None:
        tiers = next((n for n in range(1, MAX_TIERS + 1) if endpoints <= tier_capacity(n, radix, oversubscription)), None)
        if tiers is None:
            raise ValueError(
                f"{endpoints} endpoints exceed a {MAX_TIERS}-tier fat-tree of radix {radix} "
                f"({tier_capacity(MAX_TIERS, radix, oversubscription)} endpoints)"
            )
    if endpoints > tier_capacity(tiers, radix, oversubscription):
        raise ValueError(f"{endpoints} endpoints exceed a {tiers}-tier fat-tree of radix {radix}")
    down, up = port_split(radix, oversubscription)
    if tiers == 1:
        return FatTree(endpoints, 1, 1, 0, 0, 0)
    leaves = math.ceil(endpoints / down)
    if tiers == 2:
        spines = math.ceil(leaves * up / radix)
        return FatTree(endpoints, 2, leaves, 0, spines, leaves * up)
    aggregation = math.ceil(leaves * up / (radix // 2))
    cores = math.ceil(aggregation / 2)
    return FatTree(endpoints, 3, leaves, aggregation, cores, leaves * up + aggregation * (radix // 2))
