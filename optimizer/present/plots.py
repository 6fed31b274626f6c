"""PNG plots of sweeps and Pareto fronts, for people who would rather look than read a table.

matplotlib is optional (`pip install 'dcopt[plot]'`) and imported only here, only when a plot is
asked for. Figures are drawn on `matplotlib.figure.Figure` directly, never through pyplot: no
global backend switch, no window, nothing left open in a notebook that also imports dcopt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.fmt import node_counts, objective_axis

if TYPE_CHECKING:  # pragma: no cover
    from optimizer.studies.pareto import ParetoFront
    from optimizer.studies.sweep import SweepResult


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _figure(**kw):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'dcopt[plot]'") from None
    return Figure(**kw)


def _save(fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# Unit suffixes of instance fields (longest first) and how an axis writes them.
_UNITS = (("_usd_per_kwh", "$/kWh"), ("_usd_per_kw", "$/kW"), ("_usd_per_tb", "$/TB"), ("_usd_per_t", "$/tCO2"),
          ("_usd_per_mw", "$/MW"), ("_g_per_kwh", "gCO2/kWh"), ("_t_per_year", "tCO2/yr"),
          ("_pct_per_year", "% per year"), ("_kw_per_rack", "kW per rack"), ("_usd", "$"), ("_mw", "MW"), ("_kw", "kW"),
          ("_days", "days"), ("_hours", "hours"), ("_years", "years"), ("_ms", "ms"), ("_s", "s"), ("_tb", "TB"),
          ("_gb", "GB"), ("_gbps", "Gb/s"), ("_tbs", "TB/s"), ("_tflops", "TFLOP/s"), ("_rps", "requests/s"),
          ("_w", "W"))


def param_label(path: str) -> str:
    """A swept field's path in words with its unit: `facility.power_cap_mw` -> "power cap (MW)",
    `catalog.accelerators.b200.node_price_usd` -> "b200 node price ($)", `workloads[gpt3].deadline_days`
    -> "deadline of gpt3 (days)", `sites[campus].power_cap_mw` -> "power cap at campus (MW)"."""
    import re

    parts = [p for p in re.split(r"[.\[\]]+", path) if p]
    if not parts:
        return path
    field, unit = parts[-1], ""
    for suffix, shown in _UNITS:
        if field.endswith(suffix) and len(field) > len(suffix):
            field, unit = field[: -len(suffix)], shown
            break
    words = {"pue": "PUE"}.get(field, field.replace("_", " "))
    head = parts[0]
    if head == "catalog" and len(parts) >= 4:
        words = f"{parts[2]} {words}"
    elif head == "workloads" and len(parts) >= 3:
        words = f"{words} of {parts[1]}" if not parts[1].isdigit() else f"{words} of workload {parts[1]}"
    elif head == "sites" and len(parts) >= 3:
        words = f"{words} at {parts[1]}" if not parts[1].isdigit() else f"{words} at site {parts[1]}"
    elif head == "budget" and "capex" == words:
        words = "capex budget"
    return f"{words} ({unit})" if unit else words


def sweep_figure(result: "SweepResult"):
    """Objective (top) and nodes per accelerator (bottom) against the swept value; flips dashed;
    values without a design marked on the x axis, below the objective's scale (they have no value)."""
    from matplotlib.transforms import blended_transform_factory

    fig = _figure(figsize=(8, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    label, scale = objective_axis(result.objective)
    rows = [r for r in result.rows if r.has_design and isinstance(r.value, (int, float))]
    xs = [r.value for r in rows]
    top.plot(xs, [r.solution.objective_value * scale for r in rows], "o-", color="tab:blue", label="optimal design")
    for i, r in enumerate(rows):  # label where the choice starts and where it changes, not every point
        if i == 0 or r.flip:
            top.annotate(node_counts(r.nodes), (r.value, r.solution.objective_value * scale),
                         textcoords="offset points", xytext=(6, -12), fontsize=8)
    top.margins(y=0.15)
    infeasible = [r.value for r in result.rows if not r.has_design and isinstance(r.value, (int, float))]
    if infeasible:
        # x in data units, y in axes units: on the axis line, off the objective's scale.
        on_axis = blended_transform_factory(top.transData, top.transAxes)
        top.plot(infeasible, [0.0] * len(infeasible), "x", color="tab:red", markersize=9, markeredgewidth=2,
                 transform=on_axis, clip_on=False, label="no design (infeasible)", linestyle="none")
        if not rows:
            top.set_xlim(min(infeasible) - 1, max(infeasible) + 1) if len(set(infeasible)) == 1 else None
    if rows or infeasible:
        top.legend(loc="best", fontsize=8)
    top.set_ylabel(label)
    xlabel = param_label(result.param)
    top.set_title(f"{result.instance}: {label.split(' (')[0]} against {xlabel.split(' (')[0]}", fontsize=10)
    accs = sorted({a for r in rows for a in r.nodes})
    for a in accs:
        bottom.plot(xs, [r.nodes.get(a, 0) for r in rows], "o-", label=a)
    bottom.set_ylabel("nodes bought")
    bottom.set_xlabel(f"{xlabel}   [{result.param}]")
    if accs:
        bottom.legend(loc="best", fontsize=8)
    for before, after in result.flips():
        mid = (before.value + after.value) / 2
        for ax in (top, bottom):
            ax.axvline(mid, linestyle="--", color="grey", linewidth=1)
        top.annotate(" flip", (mid, 0.97), xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=8, color="grey")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return fig


def plot_sweep(result: "SweepResult", path: Path | str) -> Path:
    return _save(sweep_figure(result), path)


def plot_pareto(front: "ParetoFront", path: Path | str) -> Path:
    """The front as a staircase (designs between points are dominated), each point labelled by its
    accelerator(s) and node count."""
    fig = _figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    xs = [front.x.show(p.x) for p in front.points]
    ys = [front.y.show(p.y) for p in front.points]
    if len(xs) > 1:
        ax.step(xs, ys, where="post", color="tab:blue", alpha=0.4, linewidth=1)
    ax.plot(xs, ys, "o", color="tab:blue")
    for i, (p, x, y) in enumerate(zip(front.points, xs, ys)):
        # Fronts often have near-twins (same nodes, another fabric): alternate above/below so both read.
        fabrics = sorted({j.fabric for j in p.solution.jobs})
        text = p.label + (f" ({', '.join(fabrics)})" if fabrics else "")
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6) if i % 2 == 0 else (6, -13), fontsize=7)
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel(front.x.title)
    ax.set_ylabel(front.y.title)
    ax.set_title(f"{front.instance}: Pareto front ({len(front.points)} optimal, verified designs)", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
