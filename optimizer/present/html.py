"""A result as one self-contained HTML page: summary, charts (inline SVG), per-site tables, every
workload's placement and layout, what binds, the verifier's statement and the bill of materials.

Rendered from the result's JSON dict alone (what `dcopt solve --json` prints and batch writes per
instance: the Solution's fields plus "report", see `optimizer.studies.handover.report_facts`), so a
saved result re-renders without its instance file or a solver. A dict without "report" (an older
file) renders without the caps, limits and BOM. No scripts, no external styles, fonts or images.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Optional, Sequence

from models.metrics import METRICS, by_objective

from optimizer import fmt

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2330;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px 0}h2{font-size:17px;margin:26px 0 8px 0;border-bottom:2px solid #e3e7ee;padding-bottom:3px}
.sub{color:#5a6475;font-size:13px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #d8dde6;border-radius:6px;padding:8px 14px;min-width:150px;background:#f7f9fc}
.card .v{font-size:20px;font-weight:600}.card .k{font-size:12px;color:#5a6475}
table{border-collapse:collapse;font-size:13px;margin:4px 0 10px 0}
th,td{border:1px solid #d8dde6;padding:3px 8px;text-align:left;vertical-align:top}th{background:#eef1f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}.tight{color:#b3261e;font-weight:600}
.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}.note{font-size:13px;color:#37404f}
svg text{font-family:system-ui,Helvetica,Arial,sans-serif}
"""

_PALETTE = ("#3b6fb6", "#e08a2c", "#4a9b5b", "#b8453e", "#7d5ba6", "#8a6d3b", "#3d9fa8", "#c25b9a")


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            raw = isinstance(c, _Raw)
            text = str(c) if raw else _e(c)
            cells.append(f'<td class="n">{text}</td>' if i in numeric else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


class _Raw(str):
    """Cell content that is already HTML."""


def _usd(x: Optional[float]) -> str:
    return fmt.usd(x, millions=True) if x is not None and abs(x) >= 1e5 else fmt.usd(x)


def bar_chart(title: str, items: Sequence[tuple[str, float]], show, *, cap: Optional[float] = None,
              cap_label: str = "", width: int = 640) -> str:
    """Horizontal bars, one per (label, value), labelled with `show(value)`; a dashed line at `cap`."""
    items = [(k, float(v)) for k, v in items if v is not None]
    if not items:
        return ""
    row, left, right, top = 24, 170, 120, 26
    top_value = max([v for _, v in items] + ([cap] if cap else [])) or 1.0
    scale = (width - left - right) / top_value
    height = top + row * len(items) + 14
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>',
             f'<text x="0" y="16" font-size="13" font-weight="600">{_e(title)}</text>']
    for i, (label, v) in enumerate(items):
        y = top + i * row
        w = max(v * scale, 0.0)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end">{_e(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                     f'fill="{_PALETTE[i % len(_PALETTE)]}"><title>{_e(label)}: {_e(show(v))}</title></rect>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{_e(show(v))}</text>')
    if cap:
        x = left + cap * scale
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 6}" stroke="#b3261e" '
                     f'stroke-dasharray="5,3" stroke-width="1.5"/>')
        parts.append(f'<text x="{x - 4:.1f}" y="{top - 8}" font-size="11" fill="#b3261e" text-anchor="end">'
                     f'{_e(cap_label)}</text>')
    return "".join(parts) + "</svg>"


def stacked_bar(title: str, parts: Sequence[tuple[str, float]], show, *, cap: Optional[float] = None,
                cap_label: str = "", width: int = 640) -> str:
    """One bar split into parts (e.g. a site's power: nodes, network, storage, cooling overhead), with a legend
    and a dashed line at `cap`."""
    parts = [(k, float(v), _PALETTE[i % len(_PALETTE)]) for i, (k, v) in enumerate(parts) if v]  # colour per part
    if not parts:
        return ""
    left, right, top, bar_h = 10, 20, 24, 26
    total = sum(v for _, v, _ in parts)
    top_value = max(total, cap or 0.0) or 1.0
    scale = (width - left - right) / top_value
    legend_y = top + bar_h + 26
    height = legend_y + 18 * len(parts) + 6
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>',
           f'<text x="0" y="15" font-size="13" font-weight="600">{_e(title)}</text>']
    x = float(left)
    for i, (label, v, color) in enumerate(parts):
        w = v * scale
        out.append(f'<rect x="{x:.1f}" y="{top}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                   f'<title>{_e(label)}: {_e(show(v))}</title></rect>')
        y = legend_y + 18 * i
        out.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{left + 18}" y="{y}" font-size="12">{_e(label)}: {_e(show(v))} '
                   f'({v / total:.0%})</text>')
        x += w
    out.append(f'<text x="{left}" y="{top + bar_h + 14}" font-size="11" fill="#5a6475">total {_e(show(total))}</text>')
    if cap:
        cx = left + cap * scale
        out.append(f'<line x1="{cx:.1f}" y1="{top - 6}" x2="{cx:.1f}" y2="{top + bar_h + 6}" stroke="#b3261e" '
                   f'stroke-dasharray="5,3" stroke-width="2"/>')
        out.append(f'<text x="{cx - 4:.1f}" y="{top + bar_h + 14}" font-size="11" fill="#b3261e" text-anchor="end">'
                   f'{_e(cap_label)}</text>')
    return "".join(out) + "</svg>"


def _objective_text(doc: dict, value: Optional[float]) -> str:
    return fmt.objective(doc.get("objective", ""), value)


def _summary(doc: dict, facts: dict) -> list[str]:
    d = doc.get("design")
    status = str(doc.get("status", "?"))
    what = "design" if d else "no design"
    out = [f"<h1>dcopt {what}: {_e(doc.get('instance', '?'))}</h1>"]
    try:
        metric = by_objective(doc.get("objective", "")).label
    except ValueError:
        metric = doc.get("objective", "")
    bits = [f"objective {_e(doc.get('objective', '?'))} (minimise {_e(metric)})",
            f"status <b>{_e(status.upper())}</b>"]
    if doc.get("objective_value") is not None:
        bits.append(f"value {_e(_objective_text(doc, doc['objective_value']))}")
    if doc.get("best_bound") is not None:
        bits.append(f"best bound {_e(_objective_text(doc, doc['best_bound']))}")
    if doc.get("gap") is not None:
        bits.append(f"gap {doc['gap']:.2%}")
    solver = f"{doc.get('backend', '')} ({doc.get('solver', '')})" if doc.get("backend") else ""
    if solver:
        bits.append(f"solver {_e(solver)}, {float(doc.get('runtime_s') or 0):.2f} s")
    out.append('<div class="sub">' + " &middot; ".join(bits) + "</div>")
    if d:
        accs = facts.get("accelerators_per_node") or {}
        nodes = {a: sum(by_o.values()) for a, by_o in (d.get("nodes") or {}).items()}
        hw = ", ".join(f"{n * accs[a]:,} x {a}" if a in accs else f"{n:,} {a} nodes" for a, n in sorted(nodes.items()) if n)
        cards = [(METRICS["tco_usd"].label + f" over {facts['horizon_years']:g} years" if facts.get("horizon_years")
                  else METRICS["tco_usd"].label, _usd(d.get("tco_usd"))),
                 (METRICS["capex_usd"].label, _usd((d.get("capex_usd") or {}).get("total"))),
                 (METRICS["facility_power_kw"].label, fmt.mw(d.get("facility_power_kw"))),
                 ("hardware", hw or "-")]
        if d.get("carbon_t_per_year"):
            cards.append((METRICS["carbon_t_per_year"].label, fmt.tco2_per_year(d["carbon_t_per_year"])))
        out.append('<div class="cards">' + "".join(f'<div class="card"><div class="k">{_e(k)}</div>'
                                                  f'<div class="v">{_e(v)}</div></div>' for k, v in cards) + "</div>")
    verified = bool(doc.get("verified"))
    statement = facts.get("verifier") or ("verified" if verified else "not verified")
    cls = "ok" if verified else "bad"
    out.append(f'<p class="note"><span class="{cls}">Verifier:</span> {_e(statement)}.</p>')
    if doc.get("message"):
        out.append(f'<p class="note">Note: {_e(doc["message"])}</p>')
    if doc.get("error"):
        out.append(f'<p class="note bad">Error: {_e(doc["error"])}</p>')
    return out


def _costs(d: dict, facts: dict) -> list[str]:
    capex = d.get("capex_usd") or {}
    items = [(k if k != "site" else "site build-out", v) for k, v in capex.items() if k != "total" and v]
    years = facts.get("horizon_years")
    opex = [("energy", d.get("energy_usd_per_year")), ("maintenance", d.get("maintenance_usd_per_year"))]
    if d.get("carbon_usd_per_year"):
        opex.append(("carbon", d["carbon_usd_per_year"]))
    out = ["<h2>Cost</h2>", bar_chart(f"Capex by category (total {_usd(capex.get('total'))})", items, _usd),
           bar_chart("Opex per year", opex, _usd)]
    rows = [[k, _usd(v)] for k, v in items]
    rows.append(["capex total" + (f" (budget {_usd(facts['capex_budget_usd'])})" if facts.get("capex_budget_usd") else ""),
                 _usd(capex.get("total"))])
    rows += [[f"{k} per year", _usd(v)] for k, v in opex]
    rows.append([f"TCO" + (f" over {years:g} years" if years else ""), _usd(d.get("tco_usd"))])
    out.append(_table(["", "USD"], rows, numeric=(1,)))
    return out


def _power(d: dict, facts: dict) -> list[str]:
    caps = {s["name"]: s for s in facts.get("sites") or []}
    out = ["<h2>Power</h2>"]
    rows = []
    for s in d.get("sites") or []:
        if not s.get("open", True) and not s.get("facility_power_kw"):
            continue
        overhead = (s.get("facility_power_kw") or 0) - (s.get("it_power_kw") or 0)
        cap = (caps.get(s["name"]) or {}).get("power_cap_kw")
        pue = (caps.get(s["name"]) or {}).get("pue")
        parts = [("IT: accelerator nodes", s.get("node_power_kw")), ("IT: network", s.get("network_power_kw")),
                 ("IT: storage", s.get("storage_power_kw")),
                 ("cooling and facility overhead" + (f" (PUE {pue:g})" if pue else ""), overhead)]
        title = f"Facility power at {s['name']}" + (f" against its cap of {fmt.mw(cap)}" if cap else "")
        out.append(stacked_bar(title, parts, lambda kw: fmt.mw(kw), cap=cap, cap_label=f"cap {fmt.mw(cap)}" if cap else ""))
        rows.append([s["name"], fmt.mw(s.get("node_power_kw")), fmt.mw(s.get("network_power_kw")),
                     fmt.mw(s.get("storage_power_kw")), fmt.mw(s.get("it_power_kw")), fmt.mw(overhead),
                     fmt.mw(s.get("facility_power_kw")), fmt.mw(cap) if cap else "no cap",
                     f"{(s.get('facility_power_kw') or 0) / cap:.0%}" if cap else "-"])
    out.append(_table(["site", "nodes", "network", "storage", "IT", "overhead", "facility", "cap", "of cap"], rows,
                      numeric=range(1, 9)))
    return out


def _sites(d: dict, facts: dict) -> list[str]:
    accs = facts.get("accelerators_per_node") or {}
    limits = {s["name"]: s for s in facts.get("sites") or []}
    out = ["<h2>Sites</h2>"]
    for s in d.get("sites") or []:
        opened = s.get("open", True)
        out.append(f"<h3>{_e(s['name'])}{'' if opened else ' (not used)'}</h3>")
        if not opened:
            continue
        per_rack = (limits.get(s["name"]) or {}).get("max_kw_per_rack") or {}
        rows = []
        for acc, by_o in sorted((s.get("nodes") or {}).items()):
            for o, n in by_o.items():
                racks = (s.get("racks") or {}).get(acc, {}).get(o, 0)
                rows.append([acc, o, n, n * accs[acc] if acc in accs else "-", racks,
                             f"{per_rack[o]:g}" if o in per_rack else "-"])
        if rows:
            out.append(_table(["accelerator", "cooling", "nodes", "accelerators", "racks", "kW per rack limit"], rows,
                              numeric=(2, 3, 4, 5)))
        rows = [[f["name"], f["endpoints"], f["tiers"], f["leaves"], f["aggregation"], f["spines"],
                 f.get("switches", f["leaves"] + f["aggregation"] + f["spines"]), f["optics"]] for f in s.get("fabrics") or []]
        if rows:
            out.append(_table(["network (fat-tree)", "endpoints", "tiers", "leaves", "aggregation", "spines", "switches",
                               "link optics"], rows, numeric=range(1, 8)))
        rows = [[t, f"{tb:,.2f} TB raw"] for t, tb in (s.get("storage_tb") or {}).items()]
        rows += [[t, f"{n:,} units"] for t, n in (s.get("storage_units") or {}).items()]
        if rows:
            out.append(_table(["storage tier", "bought"], rows, numeric=(1,)))
        z = s.get("storage_sizing") or {}
        if z.get("sized_by"):
            out.append(_table(["storage (needed / bought)", "usable TB", "write GB/s", "read GB/s", "sized by"], [[
                "", f"{z['usable_tb_needed']:,.1f} / {z['usable_tb']:,.1f}", f"{z['write_gbps_needed']:,.1f} / {z['write_gbps']:,.1f}",
                f"{z['read_gbps_needed']:,.1f} / {z['read_gbps']:,.1f}", z["sized_by"]]], numeric=(1, 2, 3)))
        cap = (limits.get(s["name"]) or {}).get("max_racks")
        racks = sum(n for by_o in (s.get("racks") or {}).values() for n in by_o.values())
        out.append(f'<p class="note">{racks:,} compute racks' + (f" of {cap:,} allowed" if cap else "")
                   + f"; capex {_e(_usd((s.get('capex_usd') or {}).get('total')))}; energy "
                   f"{_e(_usd(s.get('energy_usd_per_year')))} per year.</p>")
    return out


def _workloads(doc: dict, facts: dict) -> list[str]:
    out = []
    jobs, services = doc.get("jobs") or [], doc.get("services") or []
    if jobs or services:
        rows = [[j["name"], "training", j.get("site", ""), f"{j['accelerators']:,} x {j['accelerator']} ({j['nodes']} nodes)"]
                for j in jobs]
        rows += [[s["name"], "serving", g["site"], f"{g['replicas']} x {g['accelerator']} {'ep' if g.get('ep', 1) > 1 else 'tp'}{g['tp']} ({g['nodes']} nodes), "
                  + ", ".join(f"{r if r != '*' else 'all demand'} {x:,.2f} req/s" for r, x in (g.get("regions") or {}).items())]
                 for s in services for g in s.get("groups") or []]
        out += ["<h2>Placement</h2>", _table(["workload", "kind", "site", "what"], rows)]
    if jobs:
        rows = []
        for j in jobs:
            margin = j.get("margin_days")
            if margin is None and j.get("deadline_days") is not None:
                margin = j["deadline_days"] - j["days"]
            layout = (f"tp{j['tp']} pp{j['pp']} dp{j['dp']} mb{j['micro_batch']}" + (f" vp{j['vp']}" if j.get("vp", 1) > 1 else "")
                      + f" {j['recompute']}" + (" zero-1" if j.get("distributed_optimizer") else ""))
            rows.append([j["name"], j["fabric"], layout, f"{j['days']:.2f}",
                         "-" if j.get("deadline_days") is None else f"{j['deadline_days']:g}",
                         "-" if margin is None else f"{margin:+.2f}", f"{j['tokens_per_s']:,.0f}", f"{j['mfu']:.1%}",
                         f"{j['memory_per_gpu_gb']:.1f}"])
        out += ["<h2>Training jobs</h2>",
                _table(["job", "fabric", "layout", "days", "deadline", "margin days", "tokens/s", "MFU", "mem GB/acc"], rows,
                       numeric=range(3, 9))]
        rows = [[j["name"], f"{s['usable_tb']:,.1f}", f"{s['write_gbps']:,.1f}", s["write_sized_by"], f"{s['read_gbps']:,.1f}",
                 s["read_sized_by"], fmt.duration(s["checkpoint_write_s"]), fmt.duration(s["checkpoint_reload_s"])]
                for j in jobs if (s := j.get("storage"))]
        if rows:
            out.append(_table(["job storage", "usable TB", "write GB/s", "set by", "read GB/s", "set by", "checkpoint write",
                               "restart reload"], rows, numeric=(1, 2, 4, 6, 7)))
    if services:
        rows = []
        for s in services:
            groups = s.get("groups") or []
            ttft = max((g["ttft_s"] for g in groups), default=None)
            tpot = max((g["tpot_s"] for g in groups), default=None)
            rows.append([s["name"], f"{s['demand_rps']:g}", f"{s['served_rps']:,.2f}",
                         "; ".join(f"{g['replicas']} x {g['accelerator']} {'ep' if g.get('ep', 1) > 1 else 'tp'}{g['tp']} b{g['batch']}" for g in groups),
                         f"{fmt.ms(ttft)} / {fmt.ms(s['ttft_slo_s'])}", fmt.ms(None if ttft is None else s["ttft_slo_s"] - ttft),
                         f"{fmt.ms(tpot)} / {fmt.ms(s['tpot_slo_s'])}", fmt.ms(None if tpot is None else s["tpot_slo_s"] - tpot),
                         f"${s['cost_per_million_output_tokens_usd']:,.3f}"])
        out += ["<h2>Inference services</h2>",
                _table(["service", "demand req/s", "served req/s", "replicas", "TTFT / SLO", "TTFT margin", "TPOT / SLO",
                        "TPOT margin", "$ per M output tokens"], rows, numeric=(1, 2, 4, 5, 6, 7, 8)),
                '<p class="note">TTFT is the replica\'s own; the SLO also covers the network round trip, which the '
                '"what binds" table adds.</p>']
    return out


def _procurement(doc: dict) -> list[str]:
    """Rented workloads with the rate billed, and each `either` workload's own-versus-rent break-even."""
    rows = [[j["name"], "training", f"{j['accelerators']:,} x {j['accelerator']}", _usd(j.get("rent_usd")),
             j.get("rent_rate", "")] for j in doc.get("jobs") or [] if j.get("procurement") == "rent"]
    rows += [[s["name"], "serving", f"{g['replicas']} x {g['accelerator']} tp{g['tp']}",
              _usd(g.get("rent_usd_per_year")) + " per year", g.get("rent_rate", "")]
             for s in doc.get("services") or [] for g in s.get("groups") or [] if g.get("procurement") == "rent"]
    out = ["<h2>Rented capacity</h2>", _table(["workload", "kind", "what", "rent", "rate"], rows)] if rows else []
    be = []
    for r in doc.get("procurement") or []:
        note = fmt.break_even(r.get("break_even_extra_days"))
        be.append([r["workload"], r["chosen"], _usd(r.get("tco_owned_usd")) if r.get("tco_owned_usd") is not None else "infeasible",
                   _usd(r.get("tco_rented_usd")) if r.get("tco_rented_usd") is not None else "infeasible", note])
    if be:
        out += ["<h2>Own versus rent</h2>", _table(["workload", "chosen", "TCO owned", "TCO rented", "break-even"], be),
                '<p class="note">Whole-design TCO re-solved with the workload pinned owned, then rented.</p>']
    return out


def _limits(facts: dict) -> list[str]:
    limits = facts.get("limits") or []
    if not limits:
        return []
    rows = [[_Raw(f'<span class="tight">{_e(b["limit"])}</span>') if b["tight"] else b["limit"], fmt.quantity(b["value"], b["unit"]),
             fmt.quantity(b["bound"], b["unit"]), fmt.quantity(b["slack"], b["unit"]), "TIGHT" if b["tight"] else ""]
            for b in sorted(limits, key=lambda b: (not b["tight"], b["limit"]))]
    return ["<h2>What binds</h2>", _table(["limit", "used", "limit value", "slack", "tight (under 2% left)"], rows,
                                          numeric=(1, 2, 3))]


def diagnosis_items(doc: dict) -> list[dict]:
    """The diagnosis as objects; plain strings (older files) become notes."""
    return [x if isinstance(x, dict) else {"kind": "note", "message": str(x).strip()} for x in doc.get("diagnosis") or []]


def _diagnosis(doc: dict) -> list[str]:
    items = diagnosis_items(doc)
    if not items:
        return []
    rows, notes = [], []
    for x in items:
        if x.get("kind") == "fix":
            rows.append([x.get("field", ""), fmt.quantity(x["current"], x["unit"]), fmt.quantity(x["needed"], x["unit"]),
                         _usd(x.get("tco_usd_after")), x.get("message", "")])
        elif not str(x.get("message", "")).endswith(":"):  # the heading of the fixes: the table says it
            notes.append(f"<li>{_e(x.get('message', ''))}</li>")
    out = ["<h2>Why no design exists</h2>"]
    if notes:
        out.append("<ul>" + "".join(notes) + "</ul>")
    if rows:
        out += ["<p>Any one of these changes makes a design exist (each confirmed by a verified design):</p>",
                _table(["field", "now", "needed", "TCO after", "what"], rows, numeric=(1, 2, 3))]
    return out


def _bom(facts: dict, d: dict) -> list[str]:
    lines = facts.get("bom") or []
    if not lines:
        return []
    rows = [[ln["item"], ln["category"], ln["site"], f"{ln['quantity']:,.2f}" if isinstance(ln["quantity"], float)
             else f"{ln['quantity']:,}", ln["unit"], fmt.usd(ln["unit_price_usd"], whole=True),
             fmt.usd(ln["total_usd"], whole=True), ln["source"]] for ln in lines]
    total = sum(ln["total_usd"] for ln in lines)
    rows.append([_Raw("<b>total</b>"), "", "", "", "", "", _Raw(f"<b>{_e(fmt.usd(total, whole=True))}</b>"),
                 f"= capex {fmt.usd((d.get('capex_usd') or {}).get('total'), whole=True)}"])
    return ["<h2>Bill of materials</h2>",
            _table(["item", "category", "site", "quantity", "unit", "unit price", "total", "source"], rows,
                   numeric=(3, 5, 6)),
            '<p class="note">Prices are the instance\'s (indicative catalog defaults unless overridden).</p>']


def render_html(doc: dict) -> str:
    """The whole page for one result dict."""
    facts = doc.get("report") or {}
    d = doc.get("design")
    body = _summary(doc, facts)
    if d:
        body += _costs(d, facts) + _power(d, facts) + _sites(d, facts)
    body += _workloads(doc, facts) + _procurement(doc) + _limits(facts) + _diagnosis(doc)
    if d:
        body += _bom(facts, d)
    title = f"dcopt: {doc.get('instance', 'result')}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(x for x in body if x)
            + "\n</body></html>\n")
