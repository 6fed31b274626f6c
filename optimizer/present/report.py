"""A solution as tables: rich in a terminal, Markdown for documents. One table builder, two renderers."""

from __future__ import annotations

from models.schema import Instance

from optimizer.mip.design import Solution
from optimizer import fmt

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def summary_lines(sol: Solution, instance: Instance) -> list[str]:
    lines = [f"Instance: {sol.instance}    objective: {sol.objective}    status: {sol.status.upper()}"]
    if sol.objective_value is not None:
        unit = lambda x: fmt.objective(sol.objective, x)  # noqa: E731
        gap = "" if sol.gap is None else f"    gap {sol.gap:.2%}"
        bound = "" if sol.best_bound is None else f"    best bound {unit(sol.best_bound)}"
        lines.append(f"Objective: {unit(sol.objective_value)}{bound}{gap}")
    lines.append(
        f"Solver: {sol.backend} ({sol.solver})    {sol.runtime_s:.2f} s"
        + (f"    MIP {sol.mip_size.get('variables', 0)} vars ({sol.mip_size.get('integer_variables', 0)} integer), "
           f"{sol.mip_size.get('constraints', 0)} constraints" if sol.mip_size else "")
        + ("    verified: every constraint re-checked independently" if sol.verified else "")
    )
    if sol.message:
        lines.append(f"Note: {sol.message}")
    return lines


def storage_sizing_tables(sol: Solution, multi: bool) -> list[Table]:
    """What sized the storage: each owned job's needs (and the term setting each rate), then per site
    needed versus bought and the requirement the units are bought to."""
    out: list[Table] = []
    rows = [[j.name, f"{s['usable_tb']:,.1f}", f"{s['write_gbps']:,.1f} ({s['write_sized_by']})",
             f"{s['read_gbps']:,.1f} ({s['read_sized_by']})", fmt.duration(s["checkpoint_write_s"]),
             fmt.duration(s["checkpoint_reload_s"])] for j in sol.jobs if (s := j.storage)]
    if rows:
        out.append(("Storage needs (set by: checkpoint window, per accelerator, data reads, checkpoint reload)",
                    ["job", "usable TB", "write GB/s (set by)", "read GB/s (set by)", "checkpoint write", "restart reload"],
                    rows))
    d = sol.design
    rows = [([x.name] if multi else []) + [f"{z['usable_tb_needed']:,.1f} / {z['usable_tb']:,.1f}",
                                           f"{z['write_gbps_needed']:,.1f} / {z['write_gbps']:,.1f}",
                                           f"{z['read_gbps_needed']:,.1f} / {z['read_gbps']:,.1f}", z["sized_by"]]
            for x in d.sites if (z := x.storage_sizing) and z.get("sized_by")]
    if rows:
        out.append(("Storage sizing (needed / bought)", (["site"] if multi else [])
                    + ["usable TB", "write GB/s", "read GB/s", "sized by"], rows))
    return out


def tables(sol: Solution, instance: Instance) -> list[Table]:
    out: list[Table] = []
    if sol.jobs:
        out.append(("Training jobs", ["job", "hardware", "fabric", "layout", "days", "deadline", "margin"], [
            [j.name, f"{j.accelerators} x {j.accelerator} ({j.nodes} nodes" + (f" + {j.spare_nodes} spare" if j.spare_nodes else "") + ")",
             j.fabric,
             f"tp{j.tp} pp{j.pp} dp{j.dp} mb{j.micro_batch}" + (f" vp{j.vp}" if j.vp > 1 else "") + f" {j.recompute}",
             f"{j.days:.1f}", "-" if j.deadline_days is None else f"{j.deadline_days:g}",
             "-" if j.margin_days is None else f"{j.margin_days:+.1f}"]
            for j in sol.jobs
        ]))
        out.append(("Job performance", ["job", "tokens/s", "MFU", "HW TFLOP/s/acc", "mem GB/acc", "goodput",
                                        "interruptions/day", "checkpoint every", "candidates (all > evaluated > fit > on time > MIP)"], [
            [j.name, f"{j.tokens_per_s:,.0f}", f"{j.mfu:.1%}", f"{j.tflops_per_gpu_hw:.0f}", f"{j.memory_per_gpu_gb:.1f}",
             f"{j.goodput:.3f}", f"{j.interruptions_per_day:.2f}",
             "-" if j.checkpoint_interval_s is None else fmt.duration(j.checkpoint_interval_s),
             _funnel(j)]
            for j in sol.jobs
        ]))
    if sol.services:
        out.append(("Inference services", ["service", "demand", "served", "replicas (layout)", "TTFT / SLO", "TPOT / SLO",
                                           "$ per M output tokens"], [
            [sv.name, f"{sv.demand_rps:g} req/s ({sv.output_tokens_per_s:,.0f} tok/s)", f"{sv.served_rps:,.2f} req/s",
             "; ".join(f"{g.replicas} x {g.accelerator} " + (f"ep{g.ep}" if g.ep > 1 else f"tp{g.tp}") + f" b{g.batch}" + ("" if g.role == "combined" else f" {g.role}")
                      + (f" @{g.site}" if instance.sites else "")
                      for g in sv.groups),
             f"{sv.worst_ttft_s * 1000:.0f} / {sv.ttft_slo_s * 1000:g} ms (-{(sv.ttft_slo_s - sv.worst_ttft_s) * 1000:.0f})",
             f"{sv.worst_tpot_s * 1000:.1f} / {sv.tpot_slo_s * 1000:g} ms (-{(sv.tpot_slo_s - sv.worst_tpot_s) * 1000:.1f})",
             f"${sv.cost_per_million_output_tokens_usd:,.3f}"]
            for sv in sol.services
        ]))
        where = (lambda g: [g.site, ", ".join(f"{r} {x:,.1f}" for r, x in g.regions.items())]) if instance.sites else (lambda g: [])  # noqa: E731
        out.append(("Replica layouts", ["service"] + (["site", "serves req/s"] if instance.sites else []) + [
            "replicas", "accelerator", "tp", "batch", "req/s each", "out tok/s each", "TTFT ms", "TPOT ms", "mem GB/acc"], [
            [sv.name] + where(g) + [str(g.replicas), g.accelerator, str(g.tp), str(g.batch), f"{g.requests_per_s_each:,.2f}",
             f"{g.output_tokens_per_s_each:,.0f}", f"{g.ttft_s * 1000:.0f}", f"{g.tpot_s * 1000:.1f}", f"{g.memory_per_acc_gb:.1f}"]
            for sv in sol.services for g in sv.groups
        ]))
    resilient = [sv for sv in sol.services if sv.survive_site_loss or sv.availability is not None]
    if resilient:
        out.append(("Serving resilience", ["service", "survives the loss of any one site", "availability target",
                                           "spare replicas (N+k) per region", "capacity / demand"], [
            [sv.name, "yes" if sv.survive_site_loss else "no", "-" if sv.availability is None else f"{sv.availability:g}",
             ", ".join(f"{r} +{k}" for r, k in sv.spare_replicas.items()) or "-",
             f"{sv.served_rps:,.1f} / {sv.demand_rps:g} req/s"]
            for sv in resilient
        ]))
    d = sol.design
    if d is None:
        return out
    cat, bud = instance.catalog, instance.budget
    out += procurement_tables(sol, instance)
    multi = instance.sites is not None
    sites = {x.name: x for x in instance.site_list}
    pre = (lambda name: [name]) if multi else (lambda name: [])  # noqa: E731
    site_h = ["site"] if multi else []
    if multi:
        rows = [[x.name, "yes" if x.open else "no", str(sum(n for by_o in x.nodes.values() for n in by_o.values())),
                 str(x.total_racks), f"{x.it_power_kw:,.1f}",
                 f"{x.facility_power_kw:,.1f} / {sites[x.name].power_cap_mw * 1000:,.0f}", fmt.usd(x.capex_usd["total"]),
                 fmt.usd(x.energy_usd_per_year), f"{x.carbon_t_per_year:,.1f}"]
                for x in d.sites]
        out.append(("Sites", ["site", "open", "nodes", "racks", "IT kW", "facility kW / cap", "capex", "energy per year",
                              "tCO2 per year"], rows))
        rows = [[j.name, "training", j.site, f"{j.nodes} nodes ({j.accelerators} x {j.accelerator})"] for j in sol.jobs]
        rows += [[sv.name, "serving", g.site, f"{g.replicas} x {g.accelerator} {'ep' if g.ep > 1 else 'tp'}{g.tp}, serving "
                  + ", ".join(f"{r} {x:,.1f} req/s" for r, x in g.regions.items())]
                 for sv in sol.services for g in sv.groups]
        out.append(("Placement", ["workload", "kind", "site", "what"], rows))
    rows = []
    for x in d.sites:
        site = sites[x.name]
        for acc, by_o in x.nodes.items():
            a = cat.accelerators[acc]
            for o, n in by_o.items():
                r = x.racks[acc][o]
                rows.append(pre(x.name) + [acc, o, str(n), str(n * a.accelerators_per_node), str(r), f"{n * a.node_power_kw:,.1f}",
                                           f"{n * a.node_power_kw / max(r, 1):.1f} / {site.cooling[o].max_kw_per_rack:g}"])
    out.append(("Compute", site_h + ["accelerator", "cooling", "nodes", "accelerators", "racks", "node kW", "kW per rack / limit"], rows))
    rows = [pre(f.site) + [f.name, str(f.endpoints), str(f.tiers), str(f.leaves), str(f.aggregation), str(f.spines),
                           str(f.switches), str(f.optics)] for f in d.fabrics]
    out.append(("Networks (fat-trees; frontend:, storage:, management: = the site networks every owned node gets)",
                site_h + ["fabric", "endpoints", "tiers", "leaves", "aggregation", "spines", "switches", "link optics"], rows))
    num = lambda x: f"{x:,.1f}" if abs(x) >= 1 else f"{x:.3f}"  # noqa: E731  (small pools stay visible)
    rows = [pre(x.name) + [t, "-", num(tb), num(tb / cat.storage[t].replication), num(tb * cat.storage[t].gbps_per_tb),
                           num(tb * cat.storage[t].gbps_per_tb)]
            for x in d.sites for t, tb in x.storage_tb.items()]
    rows += [pre(x.name) + [f"{t} (backup copies)", "-", "-", num(tb), "-", num(tb * cat.storage[t].per_usable_tb()[2])]
             for x in d.sites for t, tb in x.backup_tb.items()]
    for x in d.sites:
        for t, n in x.storage_units.items():
            st = cat.storage[t]
            rows.append(pre(x.name) + [t + (" (in nodes)" if st.in_node else ""), str(n), "-",
                                       num(n * st.unit_usable_tb), num(n * st.unit_read_gbs), num(n * st.unit_write_gbs)])
    if rows:
        out.append(("Storage", site_h + ["tier", "units", "raw TB", "usable TB", "read GB/s", "write GB/s"], rows))
    out += storage_sizing_tables(sol, multi)
    if not multi:
        x, site = d.sites[0], instance.site_list[0]
        out.append(("Power", ["", "kW"], [
            ["nodes", f"{x.node_power_kw:,.1f}"], ["network", f"{x.network_power_kw:,.1f}"], ["storage", f"{x.storage_power_kw:,.1f}"],
            ["IT total", f"{x.it_power_kw:,.1f}"],
            [f"facility (PUE {site.pue:g}) / cap", f"{x.facility_power_kw:,.1f} / " + ("no cap" if site.power_cap_mw is None else f"{site.power_cap_mw * 1000:,.0f}")],
        ]))
    rows = [[_capex_label(k, instance), fmt.usd(v)] for k, v in d.capex_usd.items()
            if k != "total" and not (k in ("site", "backup") and v == 0)]
    rows.append(["capex total" + (f" (budget {fmt.usd(bud.capex_usd)})" if bud.capex_usd else ""), fmt.usd(d.capex_usd["total"])])
    if d.rent_jobs_usd or d.rent_services_usd_per_year:
        rows.append(["rented training (for each job's duration)", fmt.usd(d.rent_jobs_usd)])
        rows.append(["rented serving per year", fmt.usd(d.rent_services_usd_per_year)])
    rows.append(["energy per year", fmt.usd(d.energy_usd_per_year)])
    rows.append([f"maintenance per year ({bud.maintenance_pct_per_year:g}% of capex)", fmt.usd(d.maintenance_usd_per_year)])
    if d.carbon_t_per_year > 0:
        cap = f", cap {bud.carbon_cap_t_per_year:,.0f}" if bud.carbon_cap_t_per_year else ""
        rows.append([f"carbon per year ({d.carbon_t_per_year:,.1f} tCO2{cap})",
                     fmt.usd(d.carbon_usd_per_year) + ("" if bud.carbon_price_usd_per_t else " (no carbon price)")])
    rows.append([f"TCO over {bud.horizon_years:g} years", fmt.usd(d.tco_usd)])
    out.append(("Cost", ["", "USD"], rows))
    return out


def _funnel(j) -> str:
    """Layouts enumerated > evaluated (node-order pruning stops early) > fit memory > on time > in the MIP."""
    evaluated = j.candidates_enumerated if j.candidates_evaluated is None else j.candidates_evaluated
    return (f"{j.candidates_enumerated:,} > {evaluated:,} > {j.candidates_fit_memory:,} > "
            f"{j.candidates_meet_deadline:,} > {j.candidates_in_mip}")


def _capex_label(part: str, instance: Instance) -> str:
    if part == "site":
        return "site build-out"
    if part != "facility":
        return part
    from models.facility import facility_capex_usd_per_mw

    tiers = sorted({(x.redundancy, facility_capex_usd_per_mw(x)) for x in instance.site_list})
    return "facility build (" + ", ".join(f"{t} {fmt.usd(u)}/MW IT" for t, u in tiers) + ")"


def procurement_tables(sol: Solution, instance: Instance) -> list[Table]:
    """Owned and rented side by side, and the break-even of each workload left to the optimizer."""
    years = instance.budget.horizon_years
    modes = {instance.procurement_of(w) for w in instance.workloads}
    if modes == {"own"}:
        return []
    node_price = {n: a.node_price_usd for n, a in instance.catalog.accelerators.items()}
    rows = [[j.name, "training", j.procurement, f"{j.nodes} x {j.accelerator} node",
             fmt.usd(j.nodes * node_price[j.accelerator]) if j.procurement == "own" else "-",
             fmt.usd(j.rent_usd) + f" for {j.days:.1f} days ({j.rent_rate})" if j.procurement == "rent" else "-"]
            for j in sol.jobs]
    rows += [[s.name, "serving", g.procurement,
              f"{g.nodes} x {g.accelerator} node" if g.procurement == "own"  # rented replicas occupy no owned node
              else f"{g.replicas} replica{'s' * (g.replicas != 1)} of {g.tp} x {g.accelerator}",
              fmt.usd(g.nodes * node_price[g.accelerator]) if g.procurement == "own" else "-",
              fmt.usd(g.rent_usd_per_year) + f" per year ({fmt.usd(g.rent_usd_per_year * years)} over {years:g} y, {g.rent_rate})"
              if g.procurement == "rent" else "-"] for s in sol.services for g in s.groups]
    out: list[Table] = [("Procurement (owned capex | rent)", ["workload", "kind", "own/rent", "hardware", "owned node capex",
                                                            "rent"], rows)]
    if sol.procurement:
        be = []
        for r in sol.procurement:
            note = fmt.break_even(r["break_even_extra_days"])
            be.append([r["workload"], r["chosen"], fmt.usd(r["tco_owned_usd"]) if r["tco_owned_usd"] is not None else "infeasible",
                       fmt.usd(r["tco_rented_usd"]) if r["tco_rented_usd"] is not None else "infeasible", note])
        out.append(("Own versus rent (whole-design TCO with the workload owned | rented)",
                    ["workload", "chosen", "TCO owned", "TCO rented", "break-even"], be))
    return out


def render_markdown(sol: Solution, instance: Instance) -> str:
    parts = [f"# dcopt: {sol.instance}", ""] + [f"- {line}" for line in summary_lines(sol, instance)] + [""]
    for title, header, rows in tables(sol, instance):
        parts += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        parts += ["| " + " | ".join(r) + " |" for r in rows]
        parts.append("")
    if sol.diagnosis:
        parts += ["## Why no design exists", ""] + [f"  - {x.strip()}" if x.startswith("  ") else f"- {x}"
                                                     for x in sol.diagnosis] + [""]
    return "\n".join(parts)


def render_rich(sol: Solution, instance: Instance, console) -> None:
    from rich.table import Table as RichTable

    for line in summary_lines(sol, instance):
        console.print(line, highlight=False)
    for title, header, rows in tables(sol, instance):
        t = RichTable(title=title, title_justify="left", header_style="bold")
        for h in header:
            t.add_column(h, overflow="fold")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    if sol.diagnosis:
        console.print("[bold red]No design exists.[/] Why:")
        for x in sol.diagnosis:
            console.print(f"    * {x.strip()}" if x.startswith("  ") else f"  - {x}", highlight=False)
