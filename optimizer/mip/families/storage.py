"""Storage: one pool of tiers per site holding the datasets and retained checkpoints of the jobs
placed there, fast enough for their checkpoint writes and data reads."""

from __future__ import annotations

from optimizer.mip.audit import FEAS_TOL, Audit
from optimizer.mip.data import MipData
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars


def add_storage(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (5): usable capacity (raw TB / replication) for datasets and retained checkpoints,
    and bandwidth for every job writing a checkpoint within its window while reading training data
    at its token rate."""
    for s in d.sites:
        for t in d.storage:
            v.storage_tb[t.name, s.name] = m.add_var(K("storage_tb", tier=t.name, site=s.name), lb=0.0)
        placed = {j.name: lin_sum(v.choose[j.name, k, s.name] for k in range(len(j.candidates))) for j in d.jobs}
        m.add_constraint(
            lin_sum(v.storage_tb[t.name, s.name] * (1.0 / t.replication) for t in d.storage)
            >= lin_sum(j.usable_tb * placed[j.name] for j in d.jobs),
            K("storage_capacity", site=s.name),
        )
        read = lin_sum(c.read_gbps * v.choose[j.name, k, s.name] for j in d.jobs for k, c in enumerate(j.candidates))
        m.add_constraint(
            lin_sum(t.gbps_per_tb * v.storage_tb[t.name, s.name] for t in d.storage)
            >= read + lin_sum(j.write_gbps * placed[j.name] for j in d.jobs),
            K("storage_bandwidth", site=s.name),
        )


def check_storage(a: Audit) -> None:
    """Capacity and bandwidth per site against the jobs placed there. Records storage power and capex."""
    tiers = a.instance.catalog.storage
    for sd in a.sol.design.sites:
        tag = a.tag(sd.name)
        cap = sum(tb / tiers[t].replication for t, tb in sd.storage_tb.items())
        bw = sum(tb * tiers[t].gbps_per_tb for t, tb in sd.storage_tb.items())
        if cap < a.usable_tb[sd.name] * (1 - FEAS_TOL) - 1e-6:
            a.problem(f"{tag}storage: {cap:.2f} usable TB, jobs need {a.usable_tb[sd.name]:.2f}")
        if bw < a.need_gbps[sd.name] * (1 - FEAS_TOL) - 1e-6:
            a.problem(f"{tag}storage: {bw:.2f} GB/s, jobs need {a.need_gbps[sd.name]:.2f} (checkpoint writes + data reads)")
        a.storage_kw[sd.name] = sum(tb * tiers[t].w_per_tb for t, tb in sd.storage_tb.items()) / 1000
        a.storage_usd[sd.name] = sum(tb * tiers[t].usd_per_tb for t, tb in sd.storage_tb.items())
