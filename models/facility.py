"""Facility build cost by redundancy tier, site availability, spare serving replicas and backups.

Plain numbers for the MIP (models/data/reliability.yaml holds the figures and their sources;
docs/reliability.md explains them).
"""

from __future__ import annotations

import math

import numpy as np

from .perf.goodput import class_rates, reliability_data
from .candidates import checkpoint_tb, storage_usable_tb
from .schema import Accelerator, Facility, ModelDims, TrainingJob

REDUNDANCY_TIERS = ("N", "N+1", "2N")


def _tier(redundancy: str) -> dict:
    tiers = reliability_data()["facility"]["tiers"]
    if redundancy not in tiers:
        raise ValueError(f"redundancy: got {redundancy!r}, expected one of {', '.join(REDUNDANCY_TIERS)}")
    return tiers[redundancy]


def tier_usd_per_mw(redundancy: str) -> float:
    """Build cost per MW of critical IT load at a redundancy tier: the published average, its
    critical-capacity share scaled by the power and cooling plant installed per MW delivered."""
    f = reliability_data()["facility"]
    share, avg = f["critical_capacity_share"], f["usd_per_mw_critical_average"]
    plant = _tier(redundancy)["plant_per_mw"] / _tier(f["average_is_tier"])["plant_per_mw"]
    return avg * ((1.0 - share) + share * plant)


def facility_capex_usd_per_mw(site: Facility) -> float:
    """The site's facility build cost per MW of critical IT: its own figure, else its tier's."""
    if site.facility_capex_usd_per_mw is not None:
        return site.facility_capex_usd_per_mw
    return tier_usd_per_mw(site.redundancy)


def facility_capex_usd(site: Facility, critical_it_mw: float) -> float:
    """Capex category `facility`: shell, power distribution, UPS/generators and cooling plant for
    `critical_it_mw` of IT load (linear, so the MIP takes the per-MW figure as a coefficient)."""
    return facility_capex_usd_per_mw(site) * critical_it_mw


def site_availability(redundancy: str) -> float:
    """Fraction of the year the site's power and cooling are up at this tier."""
    return float(_tier(redundancy)["availability"])


def site_outage_hours_per_year(redundancy: str) -> float:
    return (1.0 - site_availability(redundancy)) * 8760.0


def replica_failures_per_hour(acc: Accelerator, tp: int) -> float:
    """A serving replica of `tp` accelerators fails when any of them has an unplanned fault
    (planned maintenance drains replicas first, so it is left out)."""
    return tp * sum(v for c, v in class_rates(acc).items() if c != "planned")


def replica_unavailability(failures_per_hour: float, mttr_hours: float | None = None) -> float:
    """Long-run fraction of time one replica is down: lam r / (1 + lam r) (alternating up/repair)."""
    r = reliability_data()["serving"]["replica_mttr_hours"] if mttr_hours is None else mttr_hours
    x = failures_per_hour * r
    return x / (1.0 + x)


def spare_replicas(needed, unavailability: float, availability: float) -> np.ndarray:
    """N+k: per entry of `needed` (replicas the demand needs), the fewest k such that at least
    `needed` of needed + k independent replicas are up with probability >= `availability`."""
    if not 0.0 < availability < 1.0:
        raise ValueError(f"availability: got {availability!r}, expected a fraction between 0 and 1 (e.g. 0.999)")
    if not 0.0 <= unavailability < 1.0:
        raise ValueError(f"unavailability: got {unavailability!r}, expected a fraction in [0, 1)")
    needed = np.asarray(needed, dtype=np.int64)
    out = np.zeros(needed.shape, dtype=np.int64)
    if unavailability == 0.0:
        return out
    lq, lp = math.log(unavailability), math.log1p(-unavailability)
    for n in np.unique(needed):
        if n <= 0:
            continue
        k = 0
        while True:
            m = int(n) + k  # replicas; P(at most k down) = sum_{j<=k} C(m, j) q^j p^(m-j)
            ok = sum(math.exp(math.lgamma(m + 1) - math.lgamma(j + 1) - math.lgamma(m - j + 1) + j * lq + (m - j) * lp)
                     for j in range(k + 1))
            if ok >= availability:
                break
            k += 1
        out[needed == n] = k
    return out


def backup_usable_tb(job: TrainingJob, dims: ModelDims) -> float:
    """Usable TB the job's `backup_copies` hold elsewhere (a second site or an object tier)."""
    return job.backup_copies * storage_usable_tb(job, dims)


def backup_write_gbps(job: TrainingJob, dims: ModelDims, checkpoint_interval_s: float) -> float:
    """Bandwidth to copy each checkpoint to every backup before the next one is written, GB/s."""
    return job.backup_copies * checkpoint_tb(dims) * 1000.0 / checkpoint_interval_s


def region_spares(table, catalog, rtt_by_site: list[dict[str, float]] | None) -> dict[str, dict]:
    """The N+k rule of a service with an `availability` target, per demand region r:
    R = requests/s of the largest replica among the layouts that meet the SLOs and reach r from some
    site (RTT + TTFT within the TTFT SLO; `rtt_by_site` None = one facility, every region at 0 ms),
    N = ceil(D_r / R) replicas needed, q = the worst replica unavailability among those layouts,
    k = spare_replicas(N, q, availability). The design must hold D_r + k x R for r: losing any k
    replicas (each gives r at most R) leaves the demand served. Empty without a target.

    `table` is the service's models.candidates.ServiceTable (the full one, not a pruned set), so
    the MIP and the verifier derive the same k from the instance alone."""
    svc = table.service
    if svc.availability is None:
        return {}
    ok = table.meets_slo()
    ttft, rps = table.perf["ttft_s"], table.perf["requests_per_s"]
    out = {}
    for region, demand in svc.regional_demand_rps.items():
        if rtt_by_site is None or region == "*":
            reach = ok
        else:
            best = min((rtt[region] for rtt in rtt_by_site if region in rtt), default=math.inf)
            reach = ok & (best / 1000.0 + ttft <= svc.ttft_s * (1 + 1e-12))
        idx = np.flatnonzero(reach)
        if not len(idx):
            continue  # nothing reaches it: the MIP is infeasible for the demand already
        big = float(np.max(rps[idx]))
        q = max(replica_unavailability(replica_failures_per_hour(catalog.accelerators[table.accelerators[int(table.grid.acc[i])]],
                                                                  int(table.grid.t[i]))) for i in idx)
        n = math.ceil(demand / big - 1e-9)
        k = int(spare_replicas([n], q, svc.availability)[0])
        out[region] = {"replica_rps": big, "needed": n, "unavailability": q, "spares": k, "spare_rps": k * big}
    return out
