"""`dcopt sweep` and `dcopt pareto`: what-if tables and trade-off fronts, kept apart from cli.py so
their machinery (and matplotlib) loads only when used."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from optimizer import api
from optimizer.cli.common import (EXIT_ERROR, EXIT_INVALID, EXIT_OK, Backend, Progress, backend_option, console, debug_option,
                                  errors, fail, quiet_option)
from optimizer import fmt


class OutFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _usd(x: Optional[float]) -> str:
    return fmt.usd(x, millions=True)


def _plot(kind: str, result, path: Path, out: OutFormat) -> None:
    from optimizer.present.plots import PlotUnavailable, plot_pareto, plot_sweep

    try:
        (plot_sweep if kind == "sweep" else plot_pareto)(result, path)
    except PlotUnavailable as exc:
        fail(str(exc), EXIT_INVALID)
    _note(f"Plot: {path}", out)


def _note(text: str, out: OutFormat) -> None:
    """A line for the reader: on stdout under a table, on stderr when stdout carries CSV or JSON."""
    if out == OutFormat.table:
        console.print(text, highlight=False)
    else:
        typer.echo(text, err=True)


def _print_sweep(res) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(f"Sweep of {res.param} on {res.instance} (objective {res.objective}; each row re-solved and verified)"),
              title_justify="left")
    for h in (escape(res.param), "status", "objective", "TCO", "capex", "facility MW", "nodes bought", *res.jobs, "flip"):
        t.add_column(h, justify="right" if h in (escape(res.param), "objective", "TCO", "capex", "facility MW") else "left")
    for r in res.rows:
        sol = r.solution
        if not r.has_design:
            t.add_row(f"{r.value:g}", r.status, *["-"] * (5 + len(res.jobs)), "")
            continue
        d = sol.design
        jobs = {j.name: j for j in sol.jobs}
        t.add_row(
            f"{r.value:g}", sol.status + ("" if sol.verified else " (unverified)"), fmt.objective(res.objective, sol.objective_value, "table"),
            _usd(d.tco_usd), _usd(d.capex_usd["total"]), fmt.mw(d.facility_power_kw, 2, unit=""),
            fmt.node_counts(r.nodes) or "-",
            *[f"{jobs[n].accelerators} x {jobs[n].accelerator}, {jobs[n].days:.1f} d"
              + (f" @{jobs[n].site}" if len(d.sites) > 1 else "") if n in jobs else "-" for n in res.jobs],
            "[bold yellow]flip[/]" if r.flip else "",
        )
    console.print(t)
    for before, after in res.flips():
        console.print(escape(f"The chosen accelerators flip between {res.param} = {before.value:g} and {after.value:g}: "
                             f"{fmt.node_counts(before.nodes)} -> {fmt.node_counts(after.nodes)}"), highlight=False)
    for r in res.rows:
        if not r.has_design:
            console.print(escape(f"{res.param} = {r.value:g}: {r.error or 'no design (' + r.status + ')'}"), highlight=False,
                          soft_wrap=True)
            for line in (r.solution.diagnosis if r.solution and not r.error else []):
                console.print(escape(f"    {line.strip()}"), highlight=False, soft_wrap=True)


def sweep(
    instance: Path = typer.Argument(..., help="Instance file (YAML or JSON)."),
    param: str = typer.Option(..., "--param", help="Field path, e.g. facility.power_cap_mw, workloads\\[0].deadline_days, "
                              "sites\\[campus].power_cap_mw, catalog.accelerators.b200.node_price_usd."),
    values: str = typer.Option(..., "--values", help="Comma-separated values and/or ranges start:stop:step (stop included)."),
    out_fmt: OutFormat = typer.Option(OutFormat.table, "--format", help="table (default), csv or json."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also write a PNG (needs matplotlib: pip install 'dcopt\\[plot]')."),
    backend: Backend = backend_option(),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds per solve (soft)."),
    gap: Optional[float] = typer.Option(None, help="Relative MIP gap to stop at (default: prove optimality)."),
    quiet: bool = quiet_option(),
    debug: bool = debug_option(),
) -> None:
    """Re-solve the instance for each value of one numeric field; table of objective and design, with accelerator flips marked.

    Every value is solved from scratch: our backends take no MIP start today, so nothing is warm-started."""
    with errors(debug, str(instance)):
        vals = api.parse_values(values)
        with Progress(f"sweep of {param}", total=len(vals), quiet=quiet) as prog:
            res = api.run_sweep(instance, param, vals, backend=backend.value, time_limit=time_limit, gap=gap,
                                on_row=lambda i, r: prog.update(f"{param} = {r.value:g}: {r.status}", advance=1))
    if out_fmt == OutFormat.csv:
        sys.stdout.write(res.to_csv())
    elif out_fmt == OutFormat.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        _print_sweep(res)
    if plot is not None:
        _plot("sweep", res, plot, out_fmt)
    raise typer.Exit(EXIT_ERROR if any(r.status == "error" for r in res.rows) else EXIT_OK)


def _distinct(values: list[float]) -> list[str]:
    """Values with as many significant digits as it takes (4 to 9) for neighbours to read differently:
    fronts have near-twins (53.810 vs 53.808 days on another fabric) that "53.81" would hide."""
    for digits in range(4, 10):
        out = [f"{v:,.{digits}g}" for v in values]
        if all(a != b for a, b in zip(out, out[1:])):
            break
    return out


def _print_front(front) -> None:
    from rich.markup import escape
    from rich.table import Table

    fx, fy = front.x, front.y
    t = Table(title=escape(f"Pareto front of {front.instance}: {fx.label} vs {fy.label} ({len(front.points)} points, "
                           f"{front.solves} solves; every point optimal and verified unless marked)"), title_justify="left")
    # Context columns for the metrics not on an axis.
    extra = [(h, f) for m, h, f in (
        ("tco_usd", "TCO", lambda d: _usd(d.tco_usd)),
        ("capex_usd", "capex", lambda d: _usd(d.capex_usd["total"])),
        ("facility_power_kw", "facility MW", lambda d: fmt.mw(d.facility_power_kw, 2, unit="")),
    ) if m not in (fx.metric, fy.metric)]
    if any(len(p.solution.design.sites) > 1 for p in front.points):  # where it is built matters too
        extra.insert(0, ("sites", lambda d: "; ".join(
            f"{st.name}: " + ", ".join(f"{sum(o.values())} {a}" for a, o in sorted(st.nodes.items())) for st in d.sites if st.nodes)))
    heads = ["#", fx.title, fy.title, "nodes", "jobs", *[h for h, _ in extra], "status"]
    for h in heads:
        t.add_column(h, justify="left" if h in ("nodes", "jobs", "sites", "status") else "right")
    xs = _distinct([fx.show(p.x) for p in front.points])
    ys = _distinct([fy.show(p.y) for p in front.points])
    for i, p in enumerate(front.points, 1):
        sol = p.solution
        jobs = "; ".join(f"{j.name}: {j.accelerators} x {j.accelerator} {j.fabric} tp{j.tp} pp{j.pp} dp{j.dp}, {j.days:.2f} d"
                         + (f" @{j.site}" if len(sol.design.sites) > 1 else "") for j in sol.jobs) or "-"
        t.add_row(str(i), xs[i - 1], ys[i - 1], escape(p.label or "-"), escape(jobs),
                  *[escape(f(sol.design)) for _, f in extra], sol.status + ("" if sol.verified else " (unverified)"))
    console.print(t)
    if front.duplicates or front.dominated:
        console.print(f"Removed {front.duplicates} duplicate and {front.dominated} dominated point(s).", highlight=False)
    if len(front.points) == 1:
        console.print(f"One design is best on both axes: there is no trade-off between {fx.label} and {fy.label} here.",
                      highlight=False)


def pareto(
    instance: Path = typer.Argument(..., help="Instance file (YAML or JSON)."),
    x: str = typer.Option("tco", "--x", help="Metric to minimise: tco, capex, power, carbon or time_to_train:JOB."),
    y: str = typer.Option(..., "--y", help="Metric traded against it (same names), e.g. time_to_train:gpt3-175b."),
    points: int = typer.Option(8, "--points", help="Grid of y bounds from y's minimum to y at x's minimum (both ends included)."),
    every: bool = typer.Option(False, "--all", help="Every point of the front, walked design by design (about two solves "
                               "per point) instead of a grid that may step over some."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write the front as CSV."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG (needs matplotlib: pip install 'dcopt\\[plot]')."),
    out_fmt: OutFormat = typer.Option(OutFormat.table, "--format", help="table (default), csv or json on stdout."),
    backend: Backend = backend_option(),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds per solve (soft); a solve that stops "
                                               "without proving optimality is an error: every point must be optimal."),
    quiet: bool = quiet_option(),
    debug: bool = debug_option(),
) -> None:
    """Trade-off front of two metrics by the epsilon-constraint method: every point an optimal, verified design."""
    with errors(debug, str(instance)):
        inst = api.load(instance)
        with Progress(f"Pareto front {x} vs {y}", quiet=quiet) as prog:
            solves = [0]

            def on_solve(what, sol):
                solves[0] += 1
                prog.update(f"{solves[0]} solves; {what}: {sol.status}")

            front = api.pareto_front(inst, x=x, y=y, points=None if every else points, backend=backend.value,
                                     time_limit=time_limit, on_solve=on_solve)
    if out_fmt == OutFormat.csv:
        sys.stdout.write(front.to_csv())
    elif out_fmt == OutFormat.json:
        print(json.dumps(front.to_dict(), indent=2))
    else:
        _print_front(front)
    if csv_out is not None:
        csv_out.parent.mkdir(parents=True, exist_ok=True)
        csv_out.write_text(front.to_csv())
        _note(f"CSV: {csv_out}", out_fmt)
    if plot is not None:
        _plot("pareto", front, plot, out_fmt)


def register(app: typer.Typer) -> None:
    app.command()(sweep)
    app.command()(pareto)
