"""The datacenter design MIP: the constraint families of optimizer/mip/families/, in a fixed order.

Each family module holds its `add_<family>` (variables and constraints, named by `K(...)` keys) and
its `check_<family>` (the independent verifier's check of a design against it); `FAMILIES` pairs them.

Data (optimizer.mip.data.MipData, all numbers; $M, kW, TB, GB/s, days, tCO2):
  jobs j with surviving candidates c: accelerator a(c), fabric f(c), nodes n_c, endpoints e_c,
  days_c, storage read and write rates r_c, w_c; per job usable storage U_j;
  services v with regional demand D_vr and layouts l (accelerator, tp, requests/s, TTFT);
  sites s with power cap, PUE, racks, cooling, prices, carbon intensity, build-out capex, RTTs.
Variables:
  site_open[s] in {0,1}               the site is built (its build-out capex is paid)
  choose[job,cand,site] in {0,1}      the configuration each job runs, and where (one site, one fabric)
  units[svc,layout,site] in Z+        replicas of each layout (role combined, prefill or decode) of
                                      each service at each site (named replicas[...] in exports)
  served[svc,layout,site,region] >= 0 requests/s those replicas serve for a region they reach within
                                      the SLOs (RTT + TTFT, percentiles at the replica's sized load);
                                      only reachable pairs exist. A replica may serve several regions.
  serving_node_count[acc,site] in Z+  nodes the replicas of every service share at a site:
                                      sum slots x replicas <= accelerators per node x nodes
  serving_nodes[acc,site] >= 0        the same count as a named total
  nodes[acc,cooling,site] in Z+       nodes bought, by site and by the cooling of their racks
  racks[acc,cooling,site] in Z+       racks of one node type and cooling option
  fabric_tiers[fabric,site,tiers]     the fat-tree depth built per fabric and site (binary), with
  endpoints / leaves / aggregation / spines per depth
  storage_tb[tier,site] >= 0          raw TB per storage tier at each site
  named totals (it_power_kw[site=s], capex_musd, tco_musd, carbon_t_per_year, ...) by equalities
Objective: any objective of the registry (models.metrics): min TCO (default; includes carbon cost
when a carbon price is set), capex, facility power, the single job's days, or tCO2 per year.

Site linking is tight, not big-M: sum_c choose[j,c,s] <= site_open[s] per job, each replica
variable <= its own demand bound x site_open[s], and facility power <= cap x site_open[s].

Valid inequalities (implied by the integers, not by the LP relaxation; they change no optimum but
lift the bound the solver must close): site_cover / site_count (sites too small for the least IT
load the workloads need force others open), one_depth <= site_open (a fabric only at an open site),
serving_units_floor / serving_units_rounding / serving_nodes_floor / serving_site_floor (whole
replicas and nodes cover each region's demand, and some site reaching it is open), depth_for_job (a
job too big for a shallow fat-tree needs a deeper one), storage_cluster_for_job (a site with a job
buys a storage cluster); docs/mip.md has the bound each buys. Symmetry breaking: site_order /
site_load_order among identical sites, job_order among identical jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.metrics import Metric, by_objective, objectives

from optimizer.mip.audit import Audit
from optimizer.mip.data import MipData
from optimizer.mip.families.backup import add_backup, check_backup
from optimizer.mip.families.compute import add_nodes_and_racks, check_nodes_and_racks
from optimizer.mip.families.costs import CAPEX_PARTS, add_costs, check_costs
from optimizer.mip.families.fabric import DEPTHS, add_fabric, check_fabric
from optimizer.mip.families.facility import add_facility, check_facility
from optimizer.mip.families.jobs import add_job_choice, add_job_symmetry, check_job_choice, check_job_symmetry, job_days_expr
from optimizer.mip.families.power import add_power, check_power
from optimizer.mip.families.resilience import add_resilience, check_resilience
from optimizer.mip.families.serving import add_serving, check_serving
from optimizer.mip.families.sites import (add_site_cover, add_site_symmetry, add_sites, check_site_cover, check_site_symmetry,
                                          check_sites, least_it_power_kw)
from optimizer.mip.families.storage import add_storage, check_storage
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars

__all__ = ["CAPEX_PARTS", "DEPTHS", "FAMILIES", "SYMMETRY", "Family", "Vars", "build_model", "least_it_power_kw", "metric_expr",
           "objective_expr"]


@dataclass(frozen=True)
class Family:
    """A constraint family: how it is added to the MIP, and how the verifier checks a design against
    it without the MIP (recomputed from the design through the performance model)."""

    name: str
    add: Callable[[Model, MipData, Vars], None]
    check: Callable[[Audit], None]


# The fixed order of the formulation; the verifier checks in the same order (workloads record
# what each site must hold before the facility families compare it with what is bought).
FAMILIES = (
    Family("sites", add_sites, check_sites),
    Family("site_cover", add_site_cover, check_site_cover),
    Family("job_choice", add_job_choice, check_job_choice),
    Family("job_symmetry", add_job_symmetry, check_job_symmetry),
    Family("serving", add_serving, check_serving),
    Family("nodes_and_racks", add_nodes_and_racks, check_nodes_and_racks),
    Family("fabric", add_fabric, check_fabric),
    Family("storage", add_storage, check_storage),
    Family("backup", add_backup, check_backup),  # before power and costs: they sum its kW and capex lines
    Family("power", add_power, check_power),
    Family("site_symmetry", add_site_symmetry, check_site_symmetry),  # orders identical sites by it_power_kw
    Family("facility", add_facility, check_facility),  # needs it_power_kw; costs sums its capex line
    Family("costs", add_costs, check_costs),
    Family("resilience", add_resilience, check_resilience),
)


# Symmetry breaking: valid only when the objective and every bound treat identical sites and jobs
# alike (totals do; one job's days or one site's power do not), so only on request.
SYMMETRY = frozenset({"job_symmetry", "site_symmetry"})


def build_model(d: MipData, symmetry: bool = False) -> tuple[Model, Vars]:
    """All constraint families in a fixed order; the caller sets the objective. `symmetry`: add the
    symmetry-breaking rows (SYMMETRY), for objectives and bounds over totals only."""
    m = Model(f"dcopt[{d.name}]")
    v = Vars()
    for family in FAMILIES:
        if symmetry or family.name not in SYMMETRY:
            family.add(m, d, v)
    return m, v


def metric_expr(d: MipData, v: Vars, metric: Metric, job: str | None = None):
    """A registry metric as a MIP expression, in MIP units (its named total, or a job's days; a
    per-job metric without a job sums over the jobs, which is min_time's single job)."""
    if metric.per_job:
        names = [job] if job else [j.name for j in d.jobs]
        return lin_sum(job_days_expr(d, v, n) for n in names)
    return v.totals[K(metric.mip_total)] + 0


def objective_expr(d: MipData, v: Vars, objective: str):
    if objective not in objectives():
        raise ValueError(f"unknown objective {objective!r} (expected one of {', '.join(objectives())})")
    return metric_expr(d, v, by_objective(objective))
