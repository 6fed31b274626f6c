"""Purchase units: how many nodes a layout occupies and how many nodes a rack holds, when
accelerators are sold as nodes or as whole racks whose scale-up domain spans the rack's nodes
(GB200/GB300 NVL72: 18 compute trays of 4 GPUs, one 72-GPU NVLink domain)."""

from __future__ import annotations

import math

import numpy as np

from .schema import Accelerator


def layout_nodes(acc: Accelerator, n_acc, tp):
    """Nodes a layout of n_acc accelerators in tensor-parallel groups of tp occupies.

    A tp group must sit inside one scale-up domain. On a rack whose domain spans nodes, a domain
    holds floor(domain / tp) groups, so a tp that does not divide the domain leaves GPUs idle in
    every full rack (tp=16 uses 64 of 72). Elsewhere: whole nodes, ceil(n_acc / per_node)."""
    n_acc, tp = np.asarray(n_acc, dtype=np.int64), np.asarray(tp, dtype=np.int64)
    per = acc.accelerators_per_node
    plain = -(-n_acc // per)
    if acc.purchase_unit != "rack" or acc.scaleup_domain <= per:
        return plain
    groups = n_acc // np.maximum(tp, 1)
    per_domain = np.maximum(acc.scaleup_domain // np.maximum(tp, 1), 1)
    domains = -(-groups // per_domain)
    rest = groups - (domains - 1) * per_domain
    packed = (domains - 1) * acc.rack_nodes + -(-(rest * tp) // per)
    return np.where(tp > per, packed, plain)


def rack_holds(acc: Accelerator, cooling: str, max_kw_per_rack: float, rack_units: int) -> int:
    """Whole nodes one rack holds under a cooling option: a purchase rack holds exactly its
    rack_nodes (or nothing, if the option cannot cool it or the rack space cannot take it)."""
    if acc.liquid_cooled_only and cooling == "air":
        return 0
    if acc.purchase_unit == "rack":
        fits = (acc.rack_nodes * acc.node_power_kw <= max_kw_per_rack * (1 + 1e-9)
                and acc.rack_nodes * acc.node_rack_units <= rack_units)
        return acc.rack_nodes if fits else 0
    return max(0, min(int(math.floor(max_kw_per_rack / acc.node_power_kw + 1e-9)), rack_units // acc.node_rack_units))
