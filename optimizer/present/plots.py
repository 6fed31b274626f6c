"""PNG plots of sweeps and Pareto fronts, for people who would rather look than read a table.

matplotlib is optional (`pip install 'dcopt[plot]'`) and imported only here, only when a plot is
asked for. Figures are drawn on `matplotlib.figure.Figure` directly, never through pyplot: no
global backend switch, no window, nothing left open in a notebook that also imports dcopt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.fmt import objective_axis

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


def plot_sweep(result: "SweepResult", path: Path | str) -> Path:
    """Objective (top) and nodes per accelerator (bottom) against the swept value; flips dashed."""
    fig = _figure(figsize=(8, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    label, scale = objective_axis(result.objective)
    rows = [r for r in result.rows if r.has_design and isinstance(r.value, (int, float))]
    xs = [r.value for r in rows]
    top.plot(xs, [r.solution.objective_value * scale for r in rows], "o-", color="tab:blue")
    for i, r in enumerate(rows):  # label where the choice starts and where it changes, not every point
        if i == 0 or r.flip:
            top.annotate(" + ".join(f"{n} x {a}" for a, n in r.nodes.items()), (r.value, r.solution.objective_value * scale),
                         textcoords="offset points", xytext=(6, -12), fontsize=8)
    top.margins(y=0.15)
    infeasible = [r.value for r in result.rows if not r.has_design]
    if infeasible and rows:
        lo = min(r.solution.objective_value * scale for r in rows)
        top.plot(infeasible, [lo] * len(infeasible), "x", color="tab:red", label="no design")
        top.legend(loc="best", fontsize=8)
    top.set_ylabel(label)
    top.set_title(f"{result.instance}: sweep of {result.param}", fontsize=10)
    accs = sorted({a for r in rows for a in r.nodes})
    for a in accs:
        bottom.plot(xs, [r.nodes.get(a, 0) for r in rows], "o-", label=a)
    bottom.set_ylabel("nodes")
    bottom.set_xlabel(result.param)
    if accs:
        bottom.legend(loc="best", fontsize=8)
    for before, after in result.flips():
        mid = (before.value + after.value) / 2
        for ax in (top, bottom):
            ax.axvline(mid, linestyle="--", color="grey", linewidth=1)
        top.annotate(" flip", (mid, 0.97), xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=8, color="grey")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


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
