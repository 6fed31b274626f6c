"""Results side by side (`dcopt compare A.json B.json ...`): hardware, power, every cost line and each
workload's layout, one row per item, a column per result; rows whose values differ are marked.

Works on result dicts (what `dcopt solve --json` prints and batch writes), so any saved results
compare, whatever instance files they came from.
"""

from __future__ import annotations

from typing import Any, Optional

from models.metrics import METRICS

from optimizer import fmt

Row = tuple[str, str, list[Optional[str]]]  # section, item, one value per result (None: absent)


def _name(doc: dict, i: int) -> str:
    return str(doc.get("instance") or doc.get("path") or f"result {i + 1}")


def _layout(j: dict) -> str:
    return (f"{j['accelerators']:,} x {j['accelerator']} on {j['fabric']}, tp{j['tp']} pp{j['pp']} dp{j['dp']} "
            f"mb{j['micro_batch']}" + (f" vp{j['vp']}" if j.get("vp", 1) > 1 else "") + f" {j['recompute']}"
            + (f" @{j['site']}" if j.get("site") else ""))


def _per_doc(doc: dict) -> dict[tuple[str, str], str]:
    """Every comparable item of one result, keyed by (section, item)."""
    out: dict[tuple[str, str], str] = {}
    put = lambda section, item, value: out.__setitem__((section, item), value)  # noqa: E731
    put("summary", "status", str(doc.get("status")))
    put("summary", "objective", f"{doc.get('objective')} = {fmt.objective(doc.get('objective', ''), doc.get('objective_value'))}")
    d = doc.get("design") or {}
    if not d:
        return out
    per_node = (doc.get("report") or {}).get("accelerators_per_node") or {}
    for acc, by_o in sorted((d.get("nodes") or {}).items()):
        for o, n in sorted(by_o.items()):
            if n:
                count = f"{n * per_node[acc]:,} accelerators, " if acc in per_node else ""
                put("hardware", f"{acc} ({o} cooled)", f"{count}{n:,} nodes")
    for s in d.get("sites") or []:
        tag = f" @{s['name']}" if len(d.get("sites") or []) > 1 else ""
        for f in s.get("fabrics") or []:
            put("hardware", f"network {f['name']}{tag}",
                f"{f['endpoints']:,} endpoints, {f['tiers']} tiers, "
                f"{f.get('switches', f['leaves'] + f['aggregation'] + f['spines']):,} switches, {f['optics']:,} optics")
        for t, tb in sorted((s.get("storage_tb") or {}).items()):
            put("hardware", f"storage {t}{tag}", f"{tb:,.2f} TB raw")
        racks = sum(n for by_o in (s.get("racks") or {}).values() for n in by_o.values())
        if racks:
            put("hardware", f"compute racks{tag}", f"{racks:,}")
    for s in d.get("sites") or []:
        tag = f" @{s['name']}" if len(d.get("sites") or []) > 1 else ""
        for k, label in (("node_power_kw", "nodes"), ("network_power_kw", "network"), ("storage_power_kw", "storage"),
                         ("it_power_kw", "IT total"), ("facility_power_kw", "facility")):
            put("power", label + tag, fmt.mw(s.get(k)))
    for k, v in (d.get("capex_usd") or {}).items():
        if k != "total":
            put("cost", f"capex {k}", fmt.usd(v, millions=True))
    put("cost", f"{METRICS['capex_usd'].label} total", fmt.usd((d.get("capex_usd") or {}).get("total"), millions=True))
    put("cost", "energy per year", fmt.usd(d.get("energy_usd_per_year"), millions=True))
    put("cost", "maintenance per year", fmt.usd(d.get("maintenance_usd_per_year"), millions=True))
    if d.get("carbon_usd_per_year") or d.get("carbon_t_per_year"):
        put("cost", "carbon per year", f"{fmt.usd(d.get('carbon_usd_per_year'), millions=True)} "
                                       f"({fmt.tco2_per_year(d.get('carbon_t_per_year'))})")
    put("cost", METRICS["tco_usd"].label, fmt.usd(d.get("tco_usd"), millions=True))
    for j in doc.get("jobs") or []:
        put("workloads", f"job {j['name']}", _layout(j) + f", {j['days']:.2f} days")
    for sv in doc.get("services") or []:
        groups = "; ".join(f"{g['replicas']} x {g['accelerator']} {'ep' if g.get('ep', 1) > 1 else 'tp'}{g['tp']} b{g['batch']} @{g['site']}"
                           for g in sv.get("groups") or [])
        put("workloads", f"service {sv['name']}", f"{groups}, ${sv['cost_per_million_output_tokens_usd']:,.3f}/M tokens")
    return out


_SECTIONS = ("summary", "hardware", "power", "cost", "workloads")


def compare_rows(docs: list[dict]) -> tuple[list[str], list[Row]]:
    """The column names and the rows (section order, then first appearance)."""
    if len(docs) < 2:
        raise ValueError(f"compare needs at least two results, got {len(docs)}")
    per = [_per_doc(d) for d in docs]
    keys: list[tuple[str, str]] = []
    for p in per:
        keys += [k for k in p if k not in keys]
    keys.sort(key=lambda k: _SECTIONS.index(k[0]))
    rows = [(s, item, [p.get((s, item)) for p in per]) for s, item in keys]
    return [_name(d, i) for i, d in enumerate(docs)], rows


def differs(values: list[Optional[str]]) -> bool:
    return len(set(values)) > 1


def compare_markdown(docs: list[dict]) -> str:
    names, rows = compare_rows(docs)
    out = ["| | item | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for section, item, values in rows:
        mark = "**≠**" if differs(values) else ""
        out.append(f"| {mark} | {section}: {item} | " + " | ".join(v if v is not None else "-" for v in values) + " |")
    n = sum(differs(v) for _, _, v in rows)
    out += ["", f"{n} of {len(rows)} items differ (marked ≠)."]
    return "\n".join(out) + "\n"


def compare_dict(docs: list[dict]) -> dict[str, Any]:
    names, rows = compare_rows(docs)
    return {"results": names,
            "rows": [{"section": s, "item": item, "values": values, "differs": differs(values)} for s, item, values in rows]}
