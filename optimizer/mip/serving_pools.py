"""Serving layouts for the MIP: each surviving replica layout with its role (combined, prefill or
decode) and its requests/s per replica at every (site, region) it reaches within the SLOs.

Capacities come from the queueing model (`models.perf.queueing`, `models.perf.pools`): a
replica's load is what keeps its latency percentiles within the service's SLOs at that site's
round trip, so the MIP stays linear in the replica counts.
"""

from __future__ import annotations

import numpy as np

from models.candidates import ServiceTable
from models.perf.inference import slo_capacity_rps
from models.perf.pools import (
    KV_LINK_UTILIZATION, REACH_CAPACITY_FRACTION, decode_capacity_rps, decode_only_times, decode_ttft_allowance_s,
    kv_bytes_per_request, prefill_capacity_rps, prefill_only_s,
)
from models.schema import ANY_REGION, InferenceService

TTFT_KEYS = ("ttft_p99_s", "ttft_p50_s")
TPOT_KEYS = ("tpot_p99_s", "tpot_p50_s")


def tpot_budget_s(svc: InferenceService) -> float:
    """The per-token limit the decode pool's TTFT allowance is counted in."""
    return min(v for v in (svc.tpot_s, svc.tpot_p99_s, svc.tpot_p50_s) if v is not None)


def prune_pools(table: ServiceTable) -> tuple[np.ndarray, np.ndarray]:
    """Rows for a disaggregated service's pools: per (accelerator, tp) the smallest batch that fits
    (a prefill replica runs one prompt at a time), and the batch with the most decode requests/s
    whose bare step meets the TPOT SLO."""
    svc = table.service
    empty = np.zeros(0, dtype=np.int64)
    if svc.disaggregated is False or not len(table):
        return empty, empty
    p, g = table.perf, table.grid
    fits = p["fits_memory"].astype(bool)
    pre = prefill_only_s(p)
    prefill: dict[tuple[int, int, int], int] = {}
    ep = g.ep if g.ep is not None else np.ones(len(g), dtype=np.int64)  # MoE: TP and EP replicas of one size differ
    for i in np.flatnonzero(fits & (pre <= svc.ttft_s)):
        key = (int(g.acc[i]), int(g.t[i]), int(ep[i]))
        if key not in prefill or g.batch[i] < g.batch[prefill[key]]:
            prefill[key] = int(i)
    rt = decode_only_times(p, g.batch, svc.output_tokens)
    tpot = {k: getattr(svc, k) for k in TPOT_KEYS if getattr(svc, k) is not None}
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = decode_capacity_rps(rt, tpot, decode_ttft_allowance_s(tpot_budget_s(svc)))
    ok = fits & (p["decode_step_s"] <= svc.tpot_s) & (cap > 0)
    decode: dict[tuple[int, int, int], int] = {}
    for i in np.flatnonzero(ok):
        key = (int(g.acc[i]), int(g.t[i]), int(ep[i]))
        if key not in decode or cap[i] > cap[decode[key]]:
            decode[key] = int(i)
    # Pruning is per service, so a pool alone is useless: keep both or neither.
    if not prefill or not decode:
        return empty, empty
    return np.array(sorted(prefill.values()), dtype=np.int64), np.array(sorted(decode.values()), dtype=np.int64)


def kv_link_gbs(site, catalog, tp: int, per_node: int) -> float:
    """GB/s of front-end fabric a replica's share of its node's ports gives the KV transfer."""
    fab = catalog.frontend_fabrics[site.frontend_fabric]
    # tp / per_node: a share of one node's ports, or all the ports of a replica's several nodes.
    return site.frontend_ports_per_node * fab.port_gbps / 8.0 * (tp / per_node) * KV_LINK_UTILIZATION


def _reach(caps: dict[str, float]) -> dict[str, float]:
    """A site's replicas of one layout serve the regions whose capacity is within
    REACH_CAPACITY_FRACTION of the nearest's, all at the farthest's capacity (one load per group)."""
    caps = {r: c for r, c in caps.items() if c > 0}
    if not caps:
        return {}
    best = max(caps.values())
    kept = {r: c for r, c in caps.items() if c >= REACH_CAPACITY_FRACTION * best}
    low = min(kept.values())
    return {r: low for r in kept}


def _rtts(site, regions, one_facility: bool) -> dict[str, float]:
    """Seconds to each region (ANY_REGION and a single facility: 0); absent = unreachable."""
    out = {}
    for r in regions:
        if r == ANY_REGION or one_facility:
            out[r] = 0.0
        elif r in site.latency_ms:
            out[r] = site.latency_ms[r] / 1000.0
    return out


def combined_reach(table: ServiceTable, rows, sites, catalog, one_facility: bool) -> list[dict[str, dict[str, float]]]:
    """Per row: site -> region -> requests/s per replica within every SLO at that round trip."""
    svc, p = table.service, table.perf
    rows = np.asarray(rows, dtype=np.int64)
    out: list[dict[str, dict[str, float]]] = [{} for _ in rows]
    if not len(rows):
        return out
    g = table.grid.take(rows)
    sub = {k: v[rows] for k, v in p.items()}
    accs = [catalog.accelerators[a] for a in table.accelerators]
    cache: dict[float, np.ndarray] = {}
    for site in sites:
        rtts = _rtts(site, svc.regional_demand_rps, one_facility)
        per_row: list[dict[str, float]] = [{} for _ in rows]
        for r, rtt in rtts.items():
            if rtt not in cache:
                if svc.percentile_slos:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        cache[rtt] = slo_capacity_rps(table.dims, g, accs, catalog.calibration, svc.precision,
                                                      svc.input_tokens, svc.output_tokens, perf=sub, rtt_s=rtt,
                                                      **svc.percentile_slos)
                else:
                    cache[rtt] = sub["requests_per_s"]
            idle_ok = rtt + sub["ttft_s"] <= svc.ttft_s * (1 + 1e-12)
            for j in range(len(rows)):
                per_row[j][r] = float(cache[rtt][j]) if idle_ok[j] else 0.0
        for j in range(len(rows)):
            reach = _reach(per_row[j])
            if reach:
                out[j][site.name] = reach
    return out


def prefill_reach(table: ServiceTable, rows, sites, catalog, one_facility: bool):
    """Per prefill row: (prefill_s, site -> region -> requests/s per replica, site -> KV transfer s)."""
    svc, p, g = table.service, table.perf, table.grid
    rows = np.asarray(rows, dtype=np.int64)
    kv_b = kv_bytes_per_request(table.dims, svc.precision, svc.input_tokens)
    allow = decode_ttft_allowance_s(tpot_budget_s(svc))
    pre = prefill_only_s({k: v[rows] for k, v in p.items()})
    per_node = np.array([catalog.accelerators[table.accelerators[int(a)]].accelerators_per_node for a in g.acc[rows]])
    reach = [dict() for _ in rows]
    transfer = [dict() for _ in rows]
    for site in sites:
        link = np.array([kv_link_gbs(site, catalog, int(t), int(n)) for t, n in zip(g.t[rows], per_node)]) * 1e9
        x = kv_b / link
        caps = [dict() for _ in rows]
        for r, rtt in _rtts(site, svc.regional_demand_rps, one_facility).items():
            budgets = {k: getattr(svc, k) - rtt - allow for k in TTFT_KEYS if getattr(svc, k) is not None}
            if any(b <= 0 for b in budgets.values()):
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                cap = prefill_capacity_rps(pre, x, link / kv_b, budgets)
            cap = np.where(rtt + pre + x <= svc.ttft_s * (1 + 1e-12), cap, 0.0)
            for j in range(len(rows)):
                caps[j][r] = float(cap[j])
        for j in range(len(rows)):
            got = _reach(caps[j])
            if got:
                reach[j][site.name], transfer[j][site.name] = got, float(x[j])
    return [(float(pre[j]), reach[j], transfer[j]) for j in range(len(rows))]


def decode_rps(table: ServiceTable, rows) -> np.ndarray:
    svc, p = table.service, table.perf
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return np.zeros(0)
    sub = {k: v[rows] for k, v in p.items()}
    rt = decode_only_times(sub, table.grid.batch[rows], svc.output_tokens)
    tpot = {k: getattr(svc, k) for k in TPOT_KEYS if getattr(svc, k) is not None}
    with np.errstate(divide="ignore", invalid="ignore"):
        return decode_capacity_rps(rt, tpot, decode_ttft_allowance_s(tpot_budget_s(svc)))


def serving_layouts(instance, ps, ServingLayout) -> list:
    """The MIP's layouts of one pruned service (`ServingLayout` rows: optimizer.mip.data passes its
    class, which imports this module): combined rows, then prefill and decode rows."""
    t, cat = ps.table, instance.catalog
    sites, one = instance.site_list, instance.sites is None
    per_node = lambda i: cat.accelerators[t.layout(i)["accelerator"]].accelerators_per_node  # noqa: E731
    out = []

    def add(i, role, rps, ttft, reach):
        lay = t.layout(i)
        acc = cat.accelerators[lay["accelerator"]]
        # A wide-EP replica across nodes: each of its nodes attaches its fabric ports for the all-to-all.
        ports = lay["tp"] // acc.accelerators_per_node * acc.fabric_ports_per_node if lay.get("fabric") else 0
        out.append(ServingLayout(i, lay["accelerator"], lay["tp"], lay["batch"], rps, ttft, per_node(i), role=role, reach=reach,
                                 fabric=lay.get("fabric"), endpoints=ports, ep=lay.get("ep", 1)))

    keep = [int(i) for i in ps.keep]
    for i, reach in zip(keep, combined_reach(t, keep, sites, cat, one)):
        if reach:
            best = max(c for by_r in reach.values() for c in by_r.values())
            add(i, "combined", best, float(t.perf["ttft_s"][i]), reach)
    pre_rows = [int(i) for i in ps.prefill_keep]
    pres = [(i, *x) for i, x in zip(pre_rows, prefill_reach(t, pre_rows, sites, cat, one)) if x[1]]
    dec_rows = [int(i) for i in ps.decode_keep]
    if pres and dec_rows:
        for i, pre, reach, transfer in pres:
            best = max(c for by_r in reach.values() for c in by_r.values())
            add(i, "prefill", best, pre + min(transfer.values()), reach)
        for i, rps in zip(dec_rows, decode_rps(t, dec_rows)):
            add(i, "decode", float(rps), 0.0, {s.name: {} for s in sites})
    return _drop_dominated(out)


def _drop_dominated(layouts: list) -> list:
    """Exact for packing: a replica of tp a is never needed when a replica of tp b (b dividing a,
    same accelerator and role) serves, a/b of them, at least as much at every (site, region) it
    reaches, since those a/b replicas take the same accelerators of the same nodes (and no more
    fabric ports than the big one attaches)."""
    def per_site(lay):
        return lay.reach if lay.role != "decode" else {"": {"": lay.requests_per_s}}

    def dominated(big, small) -> bool:
        if (small.accelerator, small.role) != (big.accelerator, big.role) or small is big:
            return False
        if small.slots >= big.slots or big.slots % small.slots:
            return False
        n = big.slots // small.slots
        if n * small.endpoints > big.endpoints:  # the small ones would need more fabric ports
            return False
        rs, rb = per_site(small), per_site(big)
        return all(n * rs.get(s, {}).get(r, 0.0) >= c * (1 - 1e-12) for s, by_r in rb.items() for r, c in by_r.items())

    return [lay for lay in layouts if not any(dominated(lay, o) for o in layouts)]

