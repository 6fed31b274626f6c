"""The Python API: dcopt from a notebook or a script, in a handful of functions.

```python
from optimizer import api as dc    # not `import optimizer`: optimizer.solving.pipeline, .sweep, ... are modules

inst = dc.load("instances/llama3-70b-20mw.yaml")          # shows itself as a table in a notebook
tight = dc.with_(inst, {"facility.power_cap_mw": 3})      # a changed copy, validated like a file
res = dc.solve(tight, time_limit=30)                      # a Result: design, cost, per-workload table
res.to_frame(); res.cost_frame(); res.sites_frame(); res.hardware_frame()
dc.estimate("llama3-70b", "b200", gpus=2048, global_batch=2048)
dc.sweep(inst, "catalog.accelerators.b200.node_price_usd", [3e5, 4e5, 5e5])   # a DataFrame
dc.pareto(inst, "tco", "time_to_train")                   # a DataFrame, one verified design a row
dc.batch(["scenarios/"], workers=2)                       # a DataFrame of the batch summary
doc = dc.result_dict(res)                                 # the JSON `dcopt solve --json` prints
dc.render_html(doc); dc.bom_csv(doc); dc.compare_results([doc, dc.load_result("b.json")])
```

Why these shapes:
- **One editing idiom**: `with_(inst, {"dotted.path": value, ...})` with the paths sweep files and
  `dcopt sweep --param` use (`facility.power_cap_mw`, `workloads[0].deadline_days`,
  `workloads[llama3-70b].fabric`, `catalog.accelerators.b200.node_price_usd`). The instance is
  dumped back to a document, the fields set, and the whole document re-validated by the loader, so
  a bad value gets the same error a bad file gets, naming the field.
- **Results keep their instance**: the report tables need both, so `Result` pairs them, and its
  HTML is built from `optimizer.present.report.tables`: a notebook shows what `dcopt solve` prints.
- **pandas is optional** (`pip install "dcopt[notebooks]"`) and imported only by the functions
  that return frames.
- Only public pieces of dcopt are wrapped here (loader, solve, report, estimate, sweep, pareto,
  batch, generate); nothing in this module changes what they compute.
- **Instances display themselves** because `load` returns `Instance`, a subclass of the schema's
  frozen model that adds only `_repr_html_`; `show(inst)` turns any other instance into one.
"""

from __future__ import annotations

import html
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from models import schema as _schema
from models.edit import document
from models.loader import InstanceError, load_instance

from optimizer.mip.backends import BACKEND_NAMES  # the backends a caller may name, defined beside them
from optimizer.mip.backends.progress import ProgressEvent  # what `solve(on_progress=...)` receives
from optimizer.mip.design import Solution
from optimizer import fmt

__all__ = [
    "Instance", "InstanceError", "Result", "Estimate", "load", "show", "with_", "solve", "estimate", "sweep",
    "pareto", "batch", "read_batch", "batch_workloads", "generate",
    # The plain results (no pandas) the command line prints, and the errors it maps to exit codes.
    "BACKEND_NAMES", "version", "catalog", "presets", "catalog_dict", "instance_schema", "calibrate", "calibrate_serving", "format_serving_calibration", "what_binds",
    "shadow_prices", "parse_values", "run_sweep", "pareto_front", "batch_tasks", "run_batch", "generate_text",
    "VerificationError", "SweepError", "ParetoError", "ParetoInfeasible", "BatchArgumentError",
    # Handing a design on: result dicts (JSON) and what renders from them alone.
    "result_dict", "load_result", "render_html", "bom_csv", "compare_results", "diagnosis_data",
    "ProgressEvent",
]

PathLike = Union[str, Path]

# Error types of the layers below, importable from here without loading those layers up front.
_LAZY = {
    "VerificationError": "optimizer.solving.verify", "SweepError": "models.edit",
    "ParetoError": "optimizer.studies.pareto", "ParetoInfeasible": "optimizer.studies.pareto",
    "BatchArgumentError": "optimizer.runs.discover", "BATCH_FAILED": ("optimizer.runs.worker", "FAILED"),
    "one_line": "optimizer.runs.store", "SolverCrash": "optimizer.runs.wallclock",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    where = _LAZY[name]
    module, attr = where if isinstance(where, tuple) else (where, name)
    return getattr(importlib.import_module(module), attr)


def version() -> str:
    """dcopt's version, from the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("dcopt")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _pandas():
    """pandas, or an error saying how to get it (it is an optional extra)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("this needs pandas: pip install 'dcopt[notebooks]' (or pip install pandas)") from None
    return pd


_CSS = ("<style>.dcopt table{border-collapse:collapse;margin:2px 0 10px 0;font-size:12px}"
        ".dcopt th,.dcopt td{border:1px solid #ccc;padding:2px 6px;text-align:left}"
        ".dcopt th{background:#f3f3f3}.dcopt .t{font-weight:bold;margin-top:6px}.dcopt .s{white-space:pre-wrap}"
        ".dcopt summary{cursor:pointer;margin:4px 0}</style>")


def _html_table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    esc = lambda x: html.escape(str(x))  # noqa: E731
    out = [f'<div class="t">{esc(title)}</div>' if title else "", "<table>"]
    if any(header):
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
    return "".join(out) + "</table>"


# --------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------


class Instance(_schema.Instance):
    """`models.schema.Instance` plus a notebook display. Same fields, same validation, still frozen;
    every dcopt function that takes an Instance takes this one. Made by `load`, `with_` and `show`."""

    def _repr_html_(self) -> str:
        return _instance_html(self)

    def __repr__(self) -> str:
        return (f"<Instance {self.name}: {len(self.training_jobs)} training job(s), {len(self.services)} "
                f"service(s), {len(self.site_list)} site(s), objective {self.objective}>")


def show(inst: _schema.Instance) -> Instance:
    """Any instance (e.g. one built by other dcopt code) as one that displays itself in a notebook."""
    if isinstance(inst, Instance):
        return inst
    # Already validated: copy the fields over without validating again.
    return Instance.model_construct(_fields_set=set(inst.model_fields_set), **dict(inst))


def load(path: PathLike) -> Instance:
    """Read and validate an instance file (YAML or JSON); a bad file raises `InstanceError`."""
    return show(load_instance(path))


def with_(inst: _schema.Instance, changes: Optional[Mapping[str, Any]] = None, /, **more: Any) -> Instance:
    """A copy of `inst` with fields set by dotted path, validated like a file.

    `with_(inst, {"facility.power_cap_mw": 15, "workloads[0].deadline_days": 45})`; keyword
    arguments are the same paths (`with_(inst, **{"budget.capex_usd": 5e8})`). A value of None
    removes an optional setting (e.g. `"budget.capex_usd": None`, no capex cap). Raises
    `InstanceError` (the loader's message: field path, value given, what was expected) for a bad
    value, and `ValueError` for a path that does not exist or a catalog entry the instance does not
    offer (setting its price would add it to the offer).
    """
    from models.edit import with_changes

    paths = {**(changes or {}), **more}
    return show(with_changes(inst, paths) if paths else inst)


def _workload_line(w) -> tuple[str, str, str]:
    model = w.model if isinstance(w.model, str) else f"custom ({w.model.layers} layers, hidden {w.model.hidden})"
    if isinstance(w, _schema.TrainingJob):
        what = f"{w.tokens:.3g} tokens in {w.deadline_days:g} days, batch {w.global_batch}, {w.precision}"
        pins = [f"{k}={v}" for k, v in (("accelerator", w.accelerator), ("fabric", w.fabric)) if v]
        if w.parallelism is not None:
            pins += [f"{k}={v}" for k, v in w.parallelism.model_dump(exclude_none=True).items()]
        return model, what, ", ".join(pins)
    what = (f"{w.demand_rps:g} req/s x {w.output_tokens:g} out tokens, TTFT {w.ttft_s * 1000:g} ms, "
            f"TPOT {w.tpot_s * 1000:g} ms, {w.precision}")
    return model, what, f"accelerators={','.join(w.accelerators)}" if w.accelerators else ""


def _instance_html(inst: _schema.Instance) -> str:
    b = inst.budget
    parts = [_CSS, '<div class="dcopt">',
             f"<b>{html.escape(inst.name)}</b> &nbsp; objective <code>{inst.objective}</code>"]
    if inst.description:
        parts.append(f"<div>{html.escape(inst.description)}</div>")
    rows = [[w.name, "training" if isinstance(w, _schema.TrainingJob) else "inference", *_workload_line(w)]
            for w in inst.workloads]
    parts.append(_html_table("Workloads", ["name", "kind", "model", "what", "pinned"], rows))
    rows = [[s.name, f"{s.power_cap_mw:g}", f"{s.pue:g}", f"{s.energy_usd_per_kwh:g}", s.max_racks or "-",
             ", ".join(s.cooling), f"{s.carbon_g_per_kwh:g}"] for s in inst.site_list]
    parts.append(_html_table("Facility" if inst.sites is None else "Sites",
                             ["site", "power cap MW", "PUE", "$/kWh", "max racks", "cooling", "gCO2/kWh"], rows))
    budget = [f"capex cap {fmt.usd(b.capex_usd)}" if b.capex_usd else "no capex cap", f"horizon {b.horizon_years:g} years",
              f"maintenance {b.maintenance_pct_per_year:g}%/year"]
    if b.carbon_price_usd_per_t:
        budget.append(f"carbon ${b.carbon_price_usd_per_t:g}/t")
    if b.carbon_cap_t_per_year:
        budget.append(f"carbon cap {b.carbon_cap_t_per_year:,.0f} t/year")
    parts.append("<div>Budget: " + html.escape(", ".join(budget)) + "</div>")
    cat = inst.catalog
    rows = [[n, f"{a.accelerators_per_node}", f"{a.peak_bf16_tflops:g}", f"{a.hbm_gb:g}", f"{a.node_power_kw:g}",
             fmt.usd(a.node_price_usd, whole=True)] for n, a in cat.accelerators.items()]
    parts.append(_html_table("Accelerators offered (prices indicative)",
                             ["name", "per node", "BF16 TFLOP/s", "HBM GB", "node kW", "node price"], rows))
    parts.append("<div>Fabrics: " + html.escape(", ".join(cat.fabrics)) + " &nbsp; Storage: "
                 + html.escape(", ".join(cat.storage)) + "</div></div>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


_FRAME_COLUMNS = (
    "workload", "kind", "site", "accelerator", "accelerators", "nodes", "fabric", "layout", "days", "deadline_days",
    "margin_days", "tokens_per_s", "mfu", "demand_rps", "served_rps", "ttft_s", "ttft_slo_s", "tpot_s", "tpot_slo_s",
    "cost_per_million_output_tokens_usd",
)


def _workload_rows(jobs: list[dict], services: list[dict]) -> list[dict]:
    """One row per workload from solution dicts (`Solution.to_dict()` or a batch result file), so a
    solved Result and a batch agree column for column. Service columns are None for jobs and back."""
    rows = []
    for j in jobs:
        rows.append({
            "workload": j["name"], "kind": "training", "site": j["site"], "accelerator": j["accelerator"],
            "accelerators": j["accelerators"], "nodes": j["nodes"], "fabric": j["fabric"],
            "layout": f"tp{j['tp']} pp{j['pp']} dp{j['dp']} mb{j['micro_batch']}"
                      + (f" vp{j['vp']}" if j["vp"] > 1 else "") + f" {j['recompute']}",
            "days": j["days"], "deadline_days": j["deadline_days"], "margin_days": j["deadline_days"] - j["days"],
            "tokens_per_s": j["tokens_per_s"], "mfu": j["mfu"],
        })
    for s in services:
        groups = s["groups"]
        accs = list(dict.fromkeys(g["accelerator"] for g in groups))
        sites = list(dict.fromkeys(g["site"] for g in groups))
        rows.append({
            "workload": s["name"], "kind": "inference", "site": "+".join(sites), "accelerator": "+".join(accs),
            "accelerators": sum(g["replicas"] * g["tp"] for g in groups), "nodes": sum(g["nodes"] for g in groups),
            "layout": "; ".join(f"{g['replicas']} x tp{g['tp']} b{g['batch']}" for g in groups),
            "demand_rps": s["demand_rps"], "served_rps": s["served_rps"],
            "ttft_s": max((g["ttft_s"] for g in groups), default=None), "ttft_slo_s": s["ttft_slo_s"],
            "tpot_s": max((g["tpot_s"] for g in groups), default=None), "tpot_slo_s": s["tpot_slo_s"],
            "cost_per_million_output_tokens_usd": s["cost_per_million_output_tokens_usd"],
        })
    return [{c: r.get(c) for c in _FRAME_COLUMNS} for r in rows]


_MAIN_TABLES = ("Training jobs", "Inference services", "Sites", "Placement", "Compute", "Cost")


class Result:
    """A solved instance: the `Solution` and the `Instance` it answers, with frames and a display.

    Attribute access falls through to the Solution (`status`, `objective_value`, `design`, `jobs`,
    `services`, `diagnosis`, `verified`, `runtime_s`, ...), except `instance`, which here is the
    Instance itself (the Solution's `instance` is only its name)."""

    def __init__(self, solution: Solution, instance: _schema.Instance):
        self.solution = solution
        self.instance = show(instance)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("solution", "instance"):
            raise AttributeError(name)
        return getattr(self.solution, name)

    @property
    def tco_usd(self) -> Optional[float]:
        return self.solution.design.tco_usd if self.solution.design is not None else None

    @property
    def capex_usd(self) -> Optional[float]:
        return self.solution.design.capex_usd["total"] if self.solution.design is not None else None

    def to_dict(self) -> dict:
        return self.solution.to_dict()

    def tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """The report's tables (title, header, rows), exactly as `dcopt solve` prints them."""
        from optimizer.present.report import tables

        return tables(self.solution, self.instance)

    def summary(self) -> list[str]:
        from optimizer.present.report import summary_lines

        return summary_lines(self.solution, self.instance)

    # -- frames ------------------------------------------------------------------------------

    def to_frame(self):
        """One row per workload (training jobs, then services): hardware, layout, time or SLOs, cost."""
        pd = _pandas()
        d = asdict(self.solution)
        return pd.DataFrame(_workload_rows(d["jobs"], d["services"]), columns=list(_FRAME_COLUMNS))

    def cost_frame(self):
        """Capex by category and opex per year; `usd_over_horizon` sums to the TCO."""
        pd = _pandas()
        cols = ["item", "kind", "usd", "usd_over_horizon"]
        d = self.solution.design
        if d is None:
            return pd.DataFrame([], columns=cols)
        years = self.instance.budget.horizon_years
        rows = [[k, "capex", v, v] for k, v in d.capex_usd.items() if k != "total" and not (k == "site" and v == 0)]
        opex = [("energy", d.energy_usd_per_year), ("maintenance", d.maintenance_usd_per_year)]
        if d.carbon_usd_per_year:
            opex.append(("carbon", d.carbon_usd_per_year))
        rows += [[k, "opex_per_year", v, v * years] for k, v in opex]
        return pd.DataFrame(rows, columns=cols)

    def sites_frame(self):
        """One row per site (a single facility is one site): what is built there, power, cost."""
        pd = _pandas()
        cols = ["site", "open", "nodes", "racks", "it_power_kw", "facility_power_kw", "power_cap_kw", "capex_usd",
                "energy_usd_per_year", "carbon_t_per_year"]
        d = self.solution.design
        if d is None:
            return pd.DataFrame([], columns=cols)
        caps = {s.name: s.power_cap_mw * 1000 for s in self.instance.site_list}
        rows = [[x.name, x.open, sum(n for by_o in x.nodes.values() for n in by_o.values()), x.total_racks,
                 x.it_power_kw, x.facility_power_kw, caps.get(x.name), x.capex_usd["total"], x.energy_usd_per_year,
                 x.carbon_t_per_year] for x in d.sites]
        return pd.DataFrame(rows, columns=cols)

    def hardware_frame(self):
        """The hardware bought: one row per site, accelerator and cooling option."""
        pd = _pandas()
        cols = ["site", "accelerator", "cooling", "nodes", "accelerators", "racks", "node_power_kw", "capex_usd"]
        d = self.solution.design
        if d is None:
            return pd.DataFrame([], columns=cols)
        cat = self.instance.catalog.accelerators
        rows = [[x.name, acc, o, n, n * cat[acc].accelerators_per_node, x.racks[acc][o], n * cat[acc].node_power_kw,
                 n * cat[acc].node_price_usd]
                for x in d.sites for acc, by_o in x.nodes.items() for o, n in by_o.items() if n]
        return pd.DataFrame(rows, columns=cols)

    # -- checks ------------------------------------------------------------------------------

    def estimate(self, workload: str, group: int = 0) -> "Estimate":
        """Re-run the performance model on the layout the design chose for `workload` (for a service,
        replica group `group`), with the instance's catalog: a check of the figures in the design."""
        w = next((w for w in self.instance.workloads if w.name == workload), None)
        if w is None:
            names = ", ".join(x.name for x in self.instance.workloads)
            raise ValueError(f"no workload '{workload}' (workloads: {names})")
        if isinstance(w, _schema.TrainingJob):
            j = next((j for j in self.solution.jobs if j.name == workload), None)
            if j is None:
                raise ValueError(f"'{workload}' has no layout in this result (status {self.solution.status})")
            lay = j.layout
            return estimate(w.model, j.accelerator, fabric=j.fabric, gpus=j.accelerators, tp=j.tp, pp=j.pp,
                            global_batch=lay.get("global_batch", w.global_batch), micro_batch=j.micro_batch, vp=j.vp,
                            precision=w.precision, recompute=j.recompute, distributed_optimizer=j.distributed_optimizer,
                            tokens=w.tokens, cp=lay.get("cp"), sharding=lay.get("sharding"),
                            stack=lay.get("stack", w.stack), seq_len=w.seq_len, catalog=self.instance)
        s = next((s for s in self.solution.services if s.name == workload), None)
        if s is None or not s.groups:
            raise ValueError(f"'{workload}' has no replicas in this result (status {self.solution.status})")
        g = s.groups[group]
        par = dict(ep=g.ep) if g.ep > 1 else dict(tp=g.tp)
        return estimate(w.model, g.accelerator, mode="inference", **par, batch=g.batch, precision=w.precision,
                        input_tokens=w.input_tokens, output_tokens=w.output_tokens, catalog=self.instance)

    # -- display -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        sol = self.solution
        cost = f", TCO {fmt.usd(self.tco_usd)}" if sol.design is not None else ""
        return f"<Result {sol.instance}: {sol.status}{cost}>"

    def _repr_html_(self) -> str:
        """The summary and every table of `dcopt solve`; the detail tables folded under the main ones."""
        sol = self.solution
        parts = [_CSS, '<div class="dcopt">']
        parts += [f'<div class="s">{html.escape(line)}</div>' for line in self.summary()]
        main = [t for t in self.tables() if t[0] in _MAIN_TABLES]
        more = [t for t in self.tables() if t[0] not in _MAIN_TABLES]
        parts += [_html_table(t, h, r) for t, h, r in main]
        if more:
            parts.append("<details><summary>" + html.escape("more: " + ", ".join(t for t, _, _ in more)) + "</summary>"
                         + "".join(_html_table(t, h, r) for t, h, r in more) + "</details>")
        if sol.diagnosis:
            parts.append("<div><b>No design exists.</b> Why:</div><ul>"
                         + "".join(f"<li>{html.escape(x.strip())}</li>" for x in sol.diagnosis) + "</ul>")
        return "".join(parts) + "</div>"


def _as_instance(inst: Union[_schema.Instance, PathLike]) -> _schema.Instance:
    return load(inst) if isinstance(inst, (str, Path)) else inst


def solve(inst: Union[_schema.Instance, PathLike], backend: str = "ortools", time_limit: Optional[float] = None,
          gap: Optional[float] = None, objective: Optional[str] = None, export: Optional[PathLike] = None,
          contained: bool = False, on_progress: Optional[Callable[[ProgressEvent], None]] = None,
          work_limit: Optional[int] = None, decompose: bool = False) -> Result:
    """Solve (and verify) one instance, or an instance file. `time_limit` is seconds per MIP solve
    (soft); `objective` overrides the instance's; `export` also writes the MIP (.lp or .mps). An
    infeasible instance gives a Result whose `diagnosis` says what blocks and by how much; a design
    the verifier rejects raises `optimizer.solving.verify.VerificationError`.

    `contained=True` (what `dcopt solve` uses) runs the whole solve, diagnosis included, in a child
    process under a hard wall clock of `time_limit` plus a small grace, falling back to PuLP if a
    solver crashes (`optimizer.runs.wallclock`); `SolverCrash` when no backend survives.

    `on_progress(event)` follows the main MIP solve live (e.g. a notebook progress line): a
    `ProgressEvent` with `elapsed_s`, `incumbent` and `bound` in the objective's units (USD for
    cost objectives) as the solver reports them, and `gap`; the last one has `final=True` and the
    returned objective. With `contained=True` it is called in this process, not the child.

    `work_limit` caps each MIP solve at that many branch-and-bound nodes after the root: unlike the
    time limit it stops at the same point on a loaded or an idle machine (`Solution.work` says
    how many nodes ran and which limit stopped it). `decompose` fixes the sites from the constructive
    start, solves the rest, then the full model (the bound reported stays the full model's)."""
    from optimizer.solving.pipeline import solve_instance
    from optimizer.studies.explain import diagnose_solution

    inst = _as_instance(inst)
    if contained:
        from optimizer.runs.wallclock import solve_contained

        if objective is not None:
            inst = with_(inst, {"objective": objective})
        return Result(solve_contained(inst, backend=backend, time_limit=time_limit, gap=gap, export=export,
                                      on_progress=on_progress, work_limit=work_limit, decompose=decompose), inst)
    sol = solve_instance(inst, backend=backend, time_limit_s=time_limit, gap=gap, objective=objective,
                         export_path=export, on_progress=on_progress, work_limit=work_limit, decompose=decompose)
    diagnose_solution(inst, sol, backend, time_limit)
    return Result(sol, inst)


def result_dict(result: Result) -> dict:
    """The result as JSON-ready data (what `dcopt solve --json` prints): the Solution's fields, the
    diagnosis as objects `{kind, field, current, needed, unit, tco_usd_after, message}`, and under
    "report" the instance facts a report needs (caps, what binds, the bill of materials), so the
    dict alone re-renders (`render_html`, `bom_csv`, `compare_results`)."""
    from optimizer.studies.explain import diagnosis_data as _data
    from optimizer.studies.handover import report_facts

    doc = result.solution.to_dict()
    doc["diagnosis"] = _data(result.solution.diagnosis)
    doc["report"] = report_facts(result.instance, result.solution)
    return doc


def diagnosis_data(result: Result) -> list[dict]:
    """The diagnosis of an infeasible result as objects (empty when a design exists)."""
    from optimizer.studies.explain import diagnosis_data as _data

    return _data(result.solution.diagnosis)


def load_result(path: PathLike) -> dict:
    """A result file (`dcopt solve --json > r.json`, or one of a batch's results/*.json) as a dict;
    ValueError naming the file when it is not one."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{p}: not a JSON result file ({exc})") from None
    if not isinstance(doc, dict) or "status" not in doc or "objective" not in doc and "error" not in doc:
        raise ValueError(f"{p}: not a dcopt result (expected the JSON of `dcopt solve --json` or a batch result file)")
    return doc


def render_html(doc: Union[dict, Result]) -> str:
    """One self-contained HTML page for a result dict (or a Result)."""
    from optimizer.present.html import render_html as _render

    return _render(result_dict(doc) if isinstance(doc, Result) else doc)


def bom_csv(doc: Union[dict, Result]) -> str:
    """The bill of materials of a result as CSV; its totals add up to the capex."""
    from optimizer.present.bom import bom_csv as _bom

    return _bom(result_dict(doc) if isinstance(doc, Result) else doc)


def compare_results(docs: Sequence[Union[dict, Result]], format: str = "md") -> Union[str, dict]:
    """Results side by side: Markdown text (`format="md"`) or a dict (`"json"`), differences marked."""
    from optimizer.present.compare import compare_dict, compare_markdown

    docs = [result_dict(d) if isinstance(d, Result) else d for d in docs]
    if format == "md":
        return compare_markdown(docs)
    if format == "json":
        return compare_dict(docs)
    raise ValueError(f"--format: got '{format}', expected md or json")


def what_binds(result: Result) -> list:
    """Every limit of a solved design with its use and slack (`optimizer.studies.explain.Binding`)."""
    from optimizer.studies.explain import what_binds as _binds

    return _binds(result.instance, result.solution)


def shadow_prices(result: Result, backend: str = "ortools", time_limit: Optional[float] = None) -> list:
    """What one more unit of each limit is worth to a cost objective (`ShadowPrice`s; empty otherwise)."""
    from optimizer.studies.explain import shadow_prices as _prices

    return _prices(result.instance, result.solution, backend=backend, time_limit_s=time_limit)


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


class Estimate(dict):
    """The dict `dcopt estimate --json` prints, which also displays as a table in a notebook."""

    def _repr_html_(self) -> str:
        rows = []
        for k, v in self.items():
            for k2, v2 in (v.items() if isinstance(v, dict) else [(None, v)]):
                key = k if k2 is None else f"{k}.{k2}"
                rows.append([key, fmt.number(v2)])
        title = "Training estimate" if "gpus" in self else "Inference estimate (one replica)"
        return _CSS + '<div class="dcopt">' + _html_table(title, ["", ""], rows) + "</div>"


def estimate(model: Union[str, _schema.ModelDims, Mapping[str, Any]], accelerator: str = "h100-sxm", *,
             mode: str = "training", catalog: Union[None, _schema.Catalog, _schema.Instance] = None,
             seq_len: Optional[int] = None, **kw: Any) -> Estimate:
    """One training layout or one serving replica through the optimizer's performance model.

    `model` is a preset name, `ModelDims` or a dict of dimensions; `catalog` is the built-in one by
    default, or an instance's (its price and calibration overrides apply). Training keywords:
    gpus, global_batch (both required; an int or {min, max}), fabric, tp, pp, cp, micro_batch, vp,
    precision, recompute, sharding, fsdp, distributed_optimizer, stack, tokens, and for a mixture of
    experts ep (expert parallel size, carved out of dp) and etp (expert tensor parallel size).
    Inference keywords: tp, batch, precision, input_tokens, output_tokens, max_tpot_s,
    requests_per_s, and for a mixture of experts ep (a wide-EP replica of ep accelerators; tp is then
    its attention tensor-parallel degree) and fabric (what its all-to-all crosses between nodes).
    What is left out is chosen (fastest layout that fits) and echoed.
    Raises ValueError for an impossible layout."""
    from models.perf.estimate import estimate_inference, estimate_training
    from models.loader import default_catalog
    from models.presets import resolve_model

    if isinstance(catalog, _schema.Instance):
        catalog = catalog.catalog
    catalog = catalog or default_catalog()
    if isinstance(model, Mapping):
        model = _schema.ModelDims(**model)
    try:
        dims = resolve_model(model, seq_len)
    except KeyError as exc:  # an unknown preset: a bad value, like any other here
        raise ValueError(exc.args[0]) from None
    if mode == "inference":
        return Estimate(estimate_inference(dims, catalog, accelerator, **kw))
    if mode != "training":
        raise ValueError(f"mode: got '{mode}', expected training or inference")
    missing = [k for k in ("gpus", "global_batch") if kw.get(k) is None]
    if missing:
        raise ValueError(f"a training estimate needs {' and '.join(missing)}")
    if isinstance(kw["global_batch"], str):  # the CLI's "1536" or "1024:2048"
        from models.perf.estimate import parse_global_batch

        kw["global_batch"] = parse_global_batch(kw["global_batch"])
    return Estimate(estimate_training(dims, catalog, accelerator, kw.pop("fabric", None), kw.pop("gpus"), **kw))


def calibrate(logo: bool = True):
    """The performance model against every published run of the calibration files: (the 2021
    Megatron-LM report, the modern training report with its leave-one-group-out refits when `logo`,
    the serving report). Their `to_dict()` give the JSON; `calibration_text` the printed tables."""
    from models.loader import default_catalog
    from models.perf.calibration import run_calibration, run_modern
    from models.perf.serving_calibration import run_serving_calibration

    cat = default_catalog()
    return run_calibration(cat), run_modern(cat, logo=logo), run_serving_calibration()


def calibration_text(modern, serving) -> str:
    """The modern training and the serving calibration tables, as `dcopt calibrate` prints them."""
    from models.perf.calibration import format_modern
    from models.perf.serving_calibration import format_serving_calibration

    return (format_modern(modern) + "\n\nServing (HBM, GEMM and serving runs; LOGO = leave one group out):\n"
            + format_serving_calibration(serving))


def calibrate_serving() -> list[dict]:
    """The serving model against published serving runs, HBM and GEMM rows (one dict per row:
    kind, id, published, predicted, error_pct, loo_error_pct, source)."""
    from models.loader import default_catalog
    from models.perf.serving_calibration import run_serving_calibration

    return run_serving_calibration(default_catalog())


def format_serving_calibration(rows: list[dict]) -> str:
    from models.perf.serving_calibration import format_serving_calibration as fmt_rows

    return fmt_rows(rows)


# --------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------


def catalog() -> _schema.Catalog:
    """The built-in catalog: accelerators, fabrics, storage tiers and the model's calibration."""
    from models.loader import default_catalog

    return default_catalog()


def presets() -> dict:
    """The model presets by name (`ModelDims`)."""
    from models.presets import PRESETS

    return dict(PRESETS)


def catalog_dict() -> dict:
    """The whole built-in catalog as plain data (what `dcopt catalog --json` prints): every field of
    every accelerator, fabric and storage tier, the calibration, and the presets with their size."""
    doc = catalog().model_dump(mode="json")
    doc.pop("frontend_fabrics", None)  # derived per instance by the loader, empty here
    doc["presets"] = {n: {**d.model_dump(mode="json"), "params": d.params} for n, d in presets().items()}
    return doc


def instance_schema() -> dict:
    """The JSON Schema of instance files (for editors)."""
    return _schema.instance_file_schema()


# --------------------------------------------------------------------------------------------
# Sweeps and Pareto fronts
# --------------------------------------------------------------------------------------------


def parse_values(text: str) -> list[float]:
    """`dcopt sweep --values` text (comma-separated values and start:stop:step ranges) as a list."""
    from optimizer.studies.sweep import parse_values as _parse

    return _parse(text)


def run_sweep(inst: Union[_schema.Instance, PathLike], param: str, values: Sequence[Any], *, backend: str = "ortools",
              time_limit: Optional[float] = None, gap: Optional[float] = None, on_row: Optional[Callable] = None):
    """The sweep as `optimizer.studies.sweep.SweepResult` (rows, flips, `to_csv`, `to_dict`), what
    `dcopt sweep` prints; `on_row(i, row)` is called as each value is solved."""
    from models.loader import read_file

    from optimizer.studies.sweep import run_sweep as _run

    if isinstance(inst, (str, Path)):
        raw, source = read_file(inst), str(inst)
    else:
        raw, source = document(inst), inst.name
    return _run(raw, param, list(values), source, backend=backend, time_limit_s=time_limit, gap=gap, on_row=on_row)


def sweep(inst: Union[_schema.Instance, PathLike], param: str, values: Sequence[Any], *, backend: str = "ortools",
          time_limit: Optional[float] = None, gap: Optional[float] = None):
    """Re-solve the instance for each value of one field (dotted path, as in `with_`): a DataFrame,
    one row per value, in the given order, with the verified design's figures, `flip` where the
    accelerators bought change, and a `result` column holding each `Result`.

    Every value is validated before anything is solved (a bad one raises `InstanceError`). Values
    need not be numbers: `sweep(inst, "workloads[0].fabric", ["roce-400g", "ib-ndr-400g"])`."""
    pd = _pandas()
    res = run_sweep(inst, param, values, backend=backend, time_limit=time_limit, gap=gap)
    base = _as_instance(inst)
    results = [Result(r.solution, with_(base, {param: r.value})) if r.solution is not None else None for r in res.rows]
    df = pd.DataFrame(res.records())
    df["result"] = results
    df.attrs.update(param=param, objective=res.objective, instance=res.instance)
    return df


def pareto_front(inst: Union[_schema.Instance, PathLike], x: str = "tco", y: str = "time_to_train",
                 points: Optional[int] = 8, *, backend: str = "ortools", time_limit: Optional[float] = None,
                 on_solve: Optional[Callable] = None):
    """The front as `optimizer.studies.pareto.ParetoFront` (points, `to_csv`, `to_dict`), what
    `dcopt pareto` prints; `on_solve(what, solution)` is called after each solve."""
    from optimizer.studies.pareto import pareto_front as _front

    return _front(_as_instance(inst), x=x, y=y, points=points, backend=backend, time_limit_s=time_limit,
                  on_solve=on_solve)


def pareto(inst: Union[_schema.Instance, PathLike], x: str = "tco", y: str = "time_to_train",
           points: Optional[int] = 8, *, backend: str = "ortools", time_limit: Optional[float] = None):
    """The Pareto front of two minimised metrics (tco, capex, power, carbon, time_to_train[:JOB]):
    a DataFrame by increasing x, one proven-optimal, verified design a row, with a `result` column.
    `points=None` finds every point of the front. Raises `ValueError` (ParetoInfeasible) when no
    design exists at all."""
    pd = _pandas()
    inst = _as_instance(inst)
    front = pareto_front(inst, x, y, points, backend=backend, time_limit=time_limit)
    df = pd.DataFrame(front.records())
    df["result"] = [Result(p.solution, inst) for p in front.points]
    df.attrs.update(x=front.x.metric, y=front.y.metric, x_title=front.x.title, y_title=front.y.title,
                    x_scale=front.x.scale, y_scale=front.y.scale, instance=front.instance, solves=front.solves)
    return df


# --------------------------------------------------------------------------------------------
# Batches and generated instances
# --------------------------------------------------------------------------------------------


def generator_objectives() -> list[str]:
    """The objectives a generated instance may use: every registry objective that is not per job
    (those need exactly one training job and no services)."""
    from models.metrics import METRICS

    return [m.objective for m in METRICS.values() if m.objective and not m.per_job]


def generate_text(jobs: int = 2, services: int = 1, sites: int = 1, accelerators: int = 4, seed: int = 0, *,
                  fabrics: int = 2, infeasible: bool = False, objective: str = "min_tco", command: str = "",
                  output: Optional[PathLike] = None) -> str:
    """One random instance as YAML text with its header (the witness design, or what breaks it),
    as `dcopt generate` prints it; also written (atomically) to `output` if given."""
    from optimizer.runs.generate import generate as _gen
    from optimizer.runs.generate import render, write

    if output is not None:
        return write(output, jobs, services, sites, accelerators, seed, fabrics=fabrics, infeasible=infeasible,
                     objective=objective, command=command).read_text()
    doc, notes = _gen(jobs, services, sites, accelerators, seed, fabrics=fabrics, infeasible=infeasible,
                      objective=objective)
    return render(doc, notes, command)


def generate(directory: PathLike, seeds: Iterable[int] = range(4), *, jobs: int = 1, services: int = 1,
             sites: int = 1, accelerators: int = 4, fabrics: int = 2, infeasible: bool = False,
             objective: str = "min_tco") -> list[Path]:
    """Write one random, realistic instance per seed into `directory` (feasible by construction
    unless `infeasible`), as `dcopt generate` does; returns the paths."""
    from optimizer.runs.generate import write

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    return [write(d / f"generated-{seed:04d}.yaml", jobs, services, sites, accelerators, seed, fabrics=fabrics,
                  infeasible=infeasible, objective=objective) for seed in seeds]


def _paths(paths: Union[PathLike, Sequence[PathLike]]) -> list[str]:
    return [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]


def batch_tasks(paths: Union[PathLike, Sequence[PathLike]], out: PathLike) -> list:
    """The instances a batch over `paths` would solve (sweep files expanded), in order; raises
    BatchArgumentError for a path that matches nothing."""
    from optimizer.runs.discover import discover

    return discover(_paths(paths), Path(out))


def run_batch(paths: Union[PathLike, Sequence[PathLike]], out: PathLike, *, workers: Optional[int] = None,
              engine: str = "local", ray_address: Optional[str] = None, backend: str = "ortools",
              time_limit: Optional[float] = 60.0, timeout: Optional[float] = None, gap: Optional[float] = None,
              resume: bool = False, retry_failed: bool = False, solver: Optional[str] = None,
              listener: Any = None, tasks: Optional[list] = None, work_limit: Optional[int] = None):
    """The batch as `optimizer.runs.batch.BatchReport` (records, counts), what `dcopt batch` prints.
    `listener` gets `started(task)` / `finished(task, record, skipped)`; `tasks` from `batch_tasks`."""
    from optimizer.runs.batch import run_batch as _run
    from optimizer.runs.discover import BatchArgumentError
    from optimizer.runs.worker import DEFAULT_SOLVER, Options

    if backend not in BACKEND_NAMES:
        raise BatchArgumentError(f"--backend: got '{backend}', expected {', '.join(BACKEND_NAMES)}")
    opts = Options(backend=backend, time_limit_s=time_limit, timeout_s=timeout, gap=gap, solver=solver or DEFAULT_SOLVER,
                   work_limit=work_limit)
    return _run(_paths(paths), Path(out), workers=workers, engine=engine, ray_address=ray_address, resume=resume,
                retry_failed=retry_failed, opts=opts, listener=listener, tasks=tasks)


def batch(paths: Union[PathLike, Sequence[PathLike]], out: Optional[PathLike] = None, *, workers: Optional[int] = None,
          backend: str = "ortools", time_limit: Optional[float] = 60.0, timeout: Optional[float] = None,
          gap: Optional[float] = None, resume: bool = False, work_limit: Optional[int] = None):
    """Solve many instance files (files, directories, globs, sweep files) in parallel worker
    processes, as `dcopt batch` does: a DataFrame of the summary, one row per instance.

    Results go to `out` (a new temporary directory if not given; `df.attrs["out"]` says where), so
    `batch_workloads(df)` can read the per-workload figures and `resume=True` can reuse them."""
    from optimizer.runs.store import summary_row

    _check_main_guard()
    pd = _pandas()
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="dcopt-batch-"))
    report = run_batch(paths, out, workers=workers, backend=backend, time_limit=time_limit, timeout=timeout, gap=gap,
                       resume=resume, work_limit=work_limit)
    df = pd.DataFrame([summary_row(r) for r in report.records])
    df.attrs.update(out=str(out), wall_s=report.wall_s)
    return df


MAIN_GUARD_HELP = ("dc.batch(...) starts worker processes, and each one re-runs your script {script} to import "
                   "it: guard the call with `if __name__ == \"__main__\":` (as the multiprocessing docs ask), e.g.\n"
                   "    if __name__ == \"__main__\":\n        df = dc.batch([...], workers=2)")


def _check_main_guard() -> None:
    """Refuse, with what to do, a batch started from the top level of a plain script without the
    `__main__` guard: its spawned workers would re-run the script and start batches of their own."""
    import ast
    import sys

    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__name__", "") == "__mp_main__":  # inside a worker re-running the script
        raise RuntimeError(MAIN_GUARD_HELP.format(script=getattr(main, "__file__", "")))
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return  # a notebook, the REPL, `python -c`, or an installed entry point
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return
    line = frame.f_lineno

    def guarded(node) -> bool:
        t = node.test
        return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
                and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))

    for node in ast.walk(tree):
        if isinstance(node, ast.If) and guarded(node) and node.lineno <= line <= (node.end_lineno or line):
            return
    raise RuntimeError(MAIN_GUARD_HELP.format(script=path))


def read_batch(out: PathLike):
    """The summary of a finished batch directory (this API's or `dcopt batch --out`'s) as a DataFrame."""
    from optimizer.runs.store import read_summary

    return _pandas().DataFrame(read_summary(Path(out)))


def batch_workloads(out: Any):
    """One row per (instance, workload) of a batch: the columns of `Result.to_frame()` plus `path`
    and `instance`. `out` is the batch directory or the frame `batch()` returned."""
    pd = _pandas()
    if hasattr(out, "attrs") and "out" in getattr(out, "attrs", {}):
        out = out.attrs["out"]
    rows = []
    for f in sorted((Path(out) / "results").glob("*.json")):
        rec = json.loads(f.read_text())
        for row in _workload_rows(rec.get("jobs") or [], rec.get("services") or []):
            rows.append({"path": rec.get("path"), "instance": rec.get("instance"), **row})
    return pd.DataFrame(rows, columns=["path", "instance", *_FRAME_COLUMNS]).sort_values(
        ["path", "workload"], ignore_index=True)

