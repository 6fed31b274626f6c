"""What separates the LP bound from the optimum (a diagnostic script, not a test).

    python benchmarks/root_gap.py FILE... [--time-limit 120] [--best-cache benchmarks/root_gap_best.json]

Per instance: the LP relaxation's bound (HiGHS simplex, iterations printed), HiGHS's root bound
after its own cuts (node limit 1), and the best design known (a MIP solve to the time limit, cached
by instance name (objective and totals) so reruns only re-measure the bounds). Then where the gap sits: each named total
(capex part, energy, ...) summed over sites in the LP solution and in the best design, weighted as
in the TCO (yearly lines x horizon), and the integer variables the LP leaves fractional, grouped by
family (the variable name before `[`), with the site openings and fabric depths spelled out.
All figures are deterministic (bounds, iteration and node counts); seconds are only a guide.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.loader import load_instance  # noqa: E402
from optimizer.mip.backends.ortools import _to_model_proto  # noqa: E402
from optimizer.mip.build import build_model, objective_expr  # noqa: E402
from optimizer.mip.data import build_data  # noqa: E402
from optimizer.mip.lp import Model  # noqa: E402
from optimizer.solving import pipeline as S  # noqa: E402


def highs(m: Model, node_limit: int | None = None, time_limit_s: float | None = None, gap: float = 1e-6):
    """One HiGHS run through MathOpt: (objective or None, dual bound, values, stats)."""
    from ortools.math_opt.python import mathopt

    p = mathopt.SolveParameters(random_seed=1, relative_gap_tolerance=gap)
    if node_limit is not None:
        p.node_limit = node_limit
    if time_limit_s is not None:
        p.time_limit = datetime.timedelta(seconds=time_limit_s)
    res = mathopt.solve(mathopt.Model.from_model_proto(_to_model_proto(m)), mathopt.SolverType.HIGHS, params=p)
    values = None
    if res.has_primal_feasible_solution():
        values = [0.0] * m.num_vars
        for var, x in res.variable_values().items():
            values[var.id] = x
    obj = m.objective_value(values) if values is not None else None
    bound = res.termination.objective_bounds.dual_bound
    st = res.solve_stats
    return obj, (bound if math.isfinite(bound) else None), values, {
        "simplex_iterations": st.simplex_iterations, "nodes": st.node_count, "seconds": st.solve_time.total_seconds(),
        "termination": res.termination.reason.name}


def build(path: str):
    inst = load_instance(path)
    _, pruned = S.prepare(inst)
    data = build_data(inst, pruned, S.prepare_services(inst))
    m, v = build_model(data, symmetry=True)  # as `dcopt solve` builds it
    m.minimize(objective_expr(data, v, inst.objective))
    return inst, data, m, v


def totals_by_name(m: Model, v, values) -> dict[str, float]:
    """Named totals summed over sites: capex parts, energy, carbon, maintenance."""
    out: dict[str, float] = defaultdict(float)
    for k, x in v.totals.items():
        if k.coords and set(dict(k.coords)) == {"site"}:
            out[k.family] += values[x.index]
    return out


def fractional_by_family(m: Model, values, tol: float = 1e-6) -> dict[str, tuple[int, int, float]]:
    """family -> (integers, fractional ones, sum of their distances to the nearest integer)."""
    out: dict[str, list] = defaultdict(lambda: [0, 0, 0.0])
    for x in m.vars:
        if not x.integer:
            continue
        fam = x.name.split("[", 1)[0]
        f = abs(values[x.index] - round(values[x.index]))
        out[fam][0] += 1
        if f > tol:
            out[fam][1] += 1
            out[fam][2] += f
    return {k: tuple(v) for k, v in out.items()}


def report(path: str, time_limit_s: float, cache: dict, detail: int = 0, resolve: float | None = None) -> dict:
    t0 = time.perf_counter()
    inst, data, m, v = build(path)
    build_s = time.perf_counter() - t0
    print(f"## {inst.name}\n")
    print(f"MIP: {m.num_vars:,} variables ({m.num_integer_vars:,} integer), {m.num_constraints:,} rows; "
          f"built in {build_s:.1f} s\n")
    lp_obj, _, lp_vals, lp_st = highs(m.relaxation())
    _, root, _, root_st = highs(m, node_limit=1)
    best = cache.get(inst.name)
    if resolve is not None:  # this model's own MIP effort to a gap (deterministic: nodes, iterations)
        obj, bound, vals, st = highs(m, time_limit_s=time_limit_s, gap=resolve)
        print(f"MIP solve to a {100 * resolve:g}% gap ({time_limit_s:g} s limit): {st['termination'].lower()}, objective "
              f"{obj if obj is None else f'{obj:,.3f}'}, bound {bound if bound is None else f'{bound:,.3f}'}, {st['nodes']:,} nodes, "
              f"{st['simplex_iterations']:,} simplex iterations, {st['seconds']:.1f} s\n")
        if obj is not None and (best is None or obj < best["objective"] - 1e-9):
            best = None
    if best is None or best.get("time_limit_s", 0) < time_limit_s:
        obj, bound, vals, st = highs(m, time_limit_s=time_limit_s, gap=1e-4)
        best = {"objective": obj, "bound": bound, "time_limit_s": time_limit_s, "nodes": st["nodes"],
                "totals": totals_by_name(m, v, vals) if vals is not None else None,
                "site_open": {s: round(vals[x.index]) for s, x in v.site_open.items()} if vals is not None else None}
        cache[inst.name] = best
    best_obj = best["objective"]
    gap = (best_obj - lp_obj) / best_obj if best_obj else float("nan")
    print("| figure | value |\n|---|---:|")
    print(f"| LP relaxation bound | {lp_obj:,.3f} ({lp_st['simplex_iterations']:,} simplex iterations) |")
    print(f"| HiGHS root bound (after its cuts, node limit 1) | {root:,.3f} |" if root is not None else
          "| HiGHS root bound | - |")
    print(f"| best design known (HiGHS, {best['time_limit_s']:g} s, {best['nodes']:,} nodes) | {best_obj:,.3f} "
          f"(its bound {best['bound']:,.3f}) |")
    print(f"| LP gap to the best design | {100 * gap:.2f}% |")
    if root is not None:
        print(f"| root gap to the best design | {100 * (best_obj - root) / best_obj:.2f}% |")
    print()
    if best.get("totals"):
        horizon = data.horizon_years
        a, b = totals_by_name(m, v, lp_vals), defaultdict(float, best["totals"])
        rows = []
        for name in sorted(set(a) | set(b)):
            if not (name.startswith("capex_") or name.endswith("_musd_per_year")) or name == "capex_musd":
                continue
            w = horizon if name.endswith("_per_year") else 1.0
            w *= 1.0 + (data.maintenance_fraction * horizon if name.startswith("capex_") else 0.0)
            rows.append((w * (b[name] - a[name]), name, a[name], b[name]))
        print("Where the TCO gap sits ($M; capex lines include their maintenance over the horizon):\n")
        print("| named total (all sites) | LP | best design | weighted gap |\n|---|---:|---:|---:|")
        for g, name, x, y in sorted(rows, reverse=True):
            if abs(g) > 1e-3:
                print(f"| {name} | {x:,.3f} | {y:,.3f} | {g:+,.3f} |")
        print()
    frac = fractional_by_family(m, lp_vals)
    print("Integers the LP leaves fractional:\n")
    print("| family | integers | fractional | sum of distances |\n|---|---:|---:|---:|")
    for fam, (n, k, f) in sorted(frac.items(), key=lambda kv: -kv[1][2]):
        if k:
            print(f"| {fam} | {n:,} | {k:,} | {f:,.2f} |")
    print()
    opens = ", ".join(f"{s} {lp_vals[x.index]:.3f}" for s, x in v.site_open.items())
    print(f"site_open in the LP: {opens}")
    if best.get("site_open"):
        print(f"site_open in the best design: {', '.join(f'{s} {x}' for s, x in best['site_open'].items())}")
    depth = [(f"{f}@{s} t{n}", lp_vals[x.index]) for (f, s, n), x in v.tiers.items() if lp_vals[x.index] > 1e-6]
    print("fabric_tiers in the LP: " + ", ".join(f"{k} {x:.3f}" for k, x in depth))
    if detail:
        print("\nFractional integers in the LP (largest distance first):\n")
        rows = [(abs(lp_vals[x.index] - round(lp_vals[x.index])), x.name, lp_vals[x.index]) for x in m.vars
                if x.integer and abs(lp_vals[x.index] - round(lp_vals[x.index])) > 1e-6]
        for f, name, x in sorted(rows, reverse=True)[:detail]:
            print(f"- {name} = {x:.4f}")
    print()
    return {"name": inst.name, "lp": lp_obj, "root": root, "best": best_obj, "lp_iterations": lp_st["simplex_iterations"]}


def without_this_rounds_rows() -> None:
    """The model before this round's rows: depth_for_job, storage_cluster_for_job,
    serving_units_rounding and the symmetry breaking."""
    import optimizer.mip.build as build
    import optimizer.mip.families.fabric as fabric
    import optimizer.mip.families.serving as serving
    import optimizer.mip.families.storage as storage

    fabric._depth_for_job = lambda *a: None
    storage._cluster_for_job = lambda *a: None
    serving._rounding_cut = lambda *a: None
    build.FAMILIES = tuple(f for f in build.FAMILIES if f.name not in build.SYMMETRY)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds for the best-design MIP solve")
    ap.add_argument("--detail", type=int, default=0, help="list this many fractional integers of the LP")
    ap.add_argument("--resolve", type=float, default=None, metavar="GAP",
                    help="also solve this model's MIP to GAP and print its nodes and simplex iterations")
    ap.add_argument("--best-cache", default=str(ROOT / "benchmarks" / "root_gap_best.json"),
                    help="JSON of best designs by instance name (objective, totals), so reruns only re-measure bounds")
    ap.add_argument("--plain", action="store_true", help="without depth_for_job, storage_cluster_for_job, serving_units_rounding and the symmetry rows")
    a = ap.parse_args()
    if a.plain:
        without_this_rounds_rows()
    path = Path(a.best_cache)
    cache = json.loads(path.read_text()) if path.exists() else {}
    for f in a.files:
        report(f, a.time_limit, cache, a.detail, a.resolve)
        sys.stdout.flush()
    path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
