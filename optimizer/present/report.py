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


def tables(sol: Solution, instance: Instance) -> list[Table]:
    out: list[Table] = []
    if sol.jobs:
        out.append(("Training jobs", ["job", "hardware", "fabric", "layout", "days", "deadline", "margin"], [
            [j.name, f"{j.accelerators} x {j.accelerator} ({j.nodes} nodes)", j.fabric,
             f"tp{j.tp} pp{j.pp} dp{j.dp} mb{j.micro_batch}" + (f" vp{j.vp}" if j.vp > 1 else "") + f" {j.recompute}",
             f"{j.days:.1f}", f"{j.deadline_days:g}", f"{j.margin_days:+.1f}"]
            for j in sol.jobs
        ]))
        out.append(("Job performance", ["job", "tokens/s", "MFU", "HW TFLOP/s/acc", "mem GB/acc", "candidates (all > fit > on time > MIP)"], [
            [j.name, f"{j.tokens_per_s:,.0f}", f"{j.mfu:.1%}", f"{j.tflops_per_gpu_hw:.0f}", f"{j.memory_per_gpu_gb:.1f}",
             f"{j.candidates_enumerated:,} > {j.candidates_fit_memory:,} > {j.candidates_meet_deadline:,} > {j.candidates_in_mip}"]
            for j in sol.jobs
        ]))
    if sol.services:
        out.append(("Inference services", ["service", "demand", "served", "replicas (layout)", "TTFT / SLO", "TPOT / SLO",
                                           "$ per M output tokens"], [
            [sv.name, f"{sv.demand_rps:g} req/s ({sv.output_tokens_per_s:,.0f} tok/s)", f"{sv.served_rps:,.2f} req/s",
             "; ".join(f"{g.replicas} x {g.accelerator} tp{g.tp} b{g.batch}" + ("" if g.role == "combined" else f" {g.role}")
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
    d = sol.design
    if d is None:
        return out
    cat, bud = instance.catalog, instance.budget
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
        rows += [[sv.name, "serving", g.site, f"{g.replicas} x {g.accelerator} tp{g.tp}, serving "
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
    out.append(("Networks (fat-trees; frontend: = serving front-end)",
                site_h + ["fabric", "endpoints", "tiers", "leaves", "aggregation", "spines", "switches", "link optics"], rows))
    num = lambda x: f"{x:,.1f}" if abs(x) >= 1 else f"{x:.3f}"  # noqa: E731  (small pools stay visible)
    rows = [pre(x.name) + [t, num(tb), num(tb / cat.storage[t].replication), num(tb * cat.storage[t].gbps_per_tb)]
            for x in d.sites for t, tb in x.storage_tb.items()]
    if rows:
        out.append(("Storage", site_h + ["tier", "raw TB", "usable TB", "GB/s"], rows))
    if not multi:
        x, site = d.sites[0], instance.site_list[0]
        out.append(("Power", ["", "kW"], [
            ["nodes", f"{x.node_power_kw:,.1f}"], ["network", f"{x.network_power_kw:,.1f}"], ["storage", f"{x.storage_power_kw:,.1f}"],
            ["IT total", f"{x.it_power_kw:,.1f}"],
            [f"facility (PUE {site.pue:g}) / cap", f"{x.facility_power_kw:,.1f} / {site.power_cap_mw * 1000:,.0f}"],
        ]))
    rows = [[k if k != "site" else "site build-out", fmt.usd(v)] for k, v in d.capex_usd.items()
            if k != "total" and not (k == "site" and v == 0)]
    rows.append(["capex total" + (f" (budget {fmt.usd(bud.capex_usd)})" if bud.capex_usd else ""), fmt.usd(d.capex_usd["total"])])
    rows.append(["energy per year", fmt.usd(d.energy_usd_per_year)])
    rows.append([f"maintenance per year ({bud.maintenance_pct_per_year:g}% of capex)", fmt.usd(d.maintenance_usd_per_year)])
    if d.carbon_t_per_year > 0:
        cap = f", cap {bud.carbon_cap_t_per_year:,.0f}" if bud.carbon_cap_t_per_year else ""
        rows.append([f"carbon per year ({d.carbon_t_per_year:,.1f} tCO2{cap})",
                     fmt.usd(d.carbon_usd_per_year) + ("" if bud.carbon_price_usd_per_t else " (no carbon price)")])
    rows.append([f"TCO over {bud.horizon_years:g} years", fmt.usd(d.tco_usd)])
    out.append(("Cost", ["", "USD"], rows))
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
