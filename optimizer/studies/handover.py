"""What a design needs beside the solver's answer to be handed on: the bill of materials and the
instance facts a report shows (each site's cap and PUE, what binds, the verifier's statement).

`report_facts(instance, solution)` is a plain dict stored with every result (`dcopt solve --json`,
batch result files, under the key "report"), so `dcopt report RESULT.json --html` and
`dcopt compare` work from the JSON alone, with no instance file and no solver.

The BOM is priced the way the verifier recomputes capex (`check_costs`): quantities from the design,
unit prices from the instance's catalog and facility. A capex category this module has no lines
for (one added to CAPEX_PARTS later) gets one line with the design's amount, so the lines always
add up to the capex.
"""

from __future__ import annotations

from models.schema import Instance

from optimizer.mip.design import Solution

BOM_FIELDS = ("item", "category", "site", "quantity", "unit", "unit_price_usd", "total_usd", "source")


def _line(item, category, site, quantity, unit, price, source) -> dict:
    return {"item": item, "category": category, "site": site, "quantity": quantity, "unit": unit,
            "unit_price_usd": price, "total_usd": quantity * price, "source": source}


def _source(entry, path: str) -> str:
    text = getattr(entry, "source", "") or ""
    return f"{path}" + (f" ({text})" if text else "")


def bom(instance: Instance, sol: Solution) -> list[dict]:
    """One line per thing bought, per site. Empty when there is no design."""
    d = sol.design
    if d is None:
        return []
    cat = instance.catalog
    sites = {s.name: s for s in instance.site_list}
    prefix = (lambda i: "facility") if instance.sites is None else (lambda i: f"sites[{i}]")
    index = {s.name: i for i, s in enumerate(instance.site_list)}
    out: list[dict] = []
    for sd in d.sites:
        site, where = sites[sd.name], prefix(index[sd.name])
        lines: list[dict] = []
        for acc, by_o in sorted(sd.nodes.items()):
            a = cat.accelerators[acc]
            n = sum(by_o.values())
            if n:
                lines.append(_line(f"{acc} node ({a.accelerators_per_node} accelerators)", "compute", sd.name, n, "node",
                                   a.node_price_usd, _source(a, f"catalog.accelerators.{acc}.node_price_usd")))
        for f in sd.fabrics:
            site_net = ":" in f.name  # frontend:, storage:, management: (the site's own networks)
            key = f.name.split(":", 1)[1] if site_net else f.name
            spec = cat.frontend_fabrics[key] if site_net else cat.fabrics[key]
            path = f"catalog.fabrics.{key}"
            for what, qty, unit, price, fld in (
                    ("switch", f.switches, "switch", spec.switch_price_usd, "switch_price_usd"),
                    ("endpoint port (NIC + cable)", f.endpoints, "port", spec.endpoint_price_usd, "endpoint_price_usd"),
                    ("switch-to-switch optic", f.optics, "transceiver", spec.optic_price_usd, "optic_price_usd")):
                if qty:
                    lines.append(_line(f"{f.name} {what}", "network", sd.name, qty, unit, price,
                                       _source(spec, f"{path}.{fld}")))
        for tier, tb in sorted(sd.storage_tb.items()):
            t = cat.storage[tier]
            lines.append(_line(f"{tier} storage", "storage", sd.name, tb, "TB raw", t.usd_per_tb,
                               _source(t, f"catalog.storage.{tier}.usd_per_tb")))
        for tier, n in sorted(sd.storage_units.items()):
            t = cat.storage[tier]
            lines.append(_line(f"{tier} storage unit ({t.unit_usable_tb:g} TB usable)", "storage", sd.name, n, "unit",
                               t.unit_price_usd, _source(t, f"catalog.storage.{tier}.unit_price_usd")))
        if sd.total_racks:
            lines.append(_line("rack (PDUs, cabling)", "racks", sd.name, sd.total_racks, "rack", site.rack_capex_usd,
                               f"{where}.rack_capex_usd"))
        if sd.storage_racks:
            lines.append(_line("storage rack (PDUs, cabling)", "racks", sd.name, sd.storage_racks, "rack",
                               site.rack_capex_usd, f"{where}.rack_capex_usd"))
        cool = {o: c.capex_usd_per_kw for o, c in site.cooling.items()}
        aux = min(cool, key=lambda o: (cool[o], o))
        kw = {o: 0.0 for o in cool}
        for acc, by_o in sd.nodes.items():
            for o, n in by_o.items():
                kw[o] = kw.get(o, 0.0) + n * cat.accelerators[acc].node_power_kw
        kw[aux] += sd.network_power_kw + sd.storage_power_kw  # switches and storage at the cheapest option
        for o, k in sorted(kw.items()):
            if k:
                lines.append(_line(f"{o} cooling", "cooling", sd.name, k, "kW IT", cool[o],
                                   f"{where}.cooling.{o}.capex_usd_per_kw"))
        if sd.capex_usd.get("site"):
            lines.append(_line("site build-out", "site", sd.name, 1, "site", site.site_capex_usd if sd.open else 0.0,
                               f"{where}.site_capex_usd"))
        listed = {ln["category"] for ln in lines}
        for part, usd in sd.capex_usd.items():  # categories without lines here: one line each
            if part != "total" and part not in listed and usd:
                lines.append(_line(f"{part} capex", part, sd.name, 1, "lot", usd, "the design (no itemised prices)"))
        out += lines
    return out


def bom_total(lines: list[dict]) -> float:
    return sum(ln["total_usd"] for ln in lines)


def report_facts(instance: Instance, sol: Solution) -> dict:
    """The instance facts a report of `sol` shows, as plain data (JSON-ready)."""
    from optimizer.studies.explain import what_binds

    facts: dict = {
        "multi_site": instance.sites is not None,
        "horizon_years": instance.budget.horizon_years,
        "maintenance_pct_per_year": instance.budget.maintenance_pct_per_year,
        "capex_budget_usd": instance.budget.capex_usd,
        "carbon_cap_t_per_year": instance.budget.carbon_cap_t_per_year,
        "carbon_price_usd_per_t": instance.budget.carbon_price_usd_per_t,
        "sites": [{"name": s.name, "power_cap_kw": None if s.power_cap_mw is None else s.power_cap_mw * 1000,
                   "pue": s.pue, "max_racks": s.max_racks,
                   "max_kw_per_rack": {o: c.max_kw_per_rack for o, c in s.cooling.items()}}
                  for s in instance.site_list],
        "accelerators_per_node": {n: a.accelerators_per_node for n, a in instance.catalog.accelerators.items()},
        "verifier": ("every constraint re-checked independently from the design and the instance: layouts through the "
                     "performance model, nodes, racks, fat-trees, storage, power against each cap, every cost line")
        if sol.verified else "not verified (no design)" if sol.design is None else "not verified",
        "bom": bom(instance, sol),
        "limits": [],
    }
    if sol.design is not None:
        facts["limits"] = [{"limit": b.limit, "value": b.value, "bound": b.bound, "slack": b.slack, "unit": b.unit,
                            "tight": b.tight} for b in what_binds(instance, sol)]
    return facts
