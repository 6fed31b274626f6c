"""Scale figures for dcopt (a script, not a test): how far one machine goes, and where time goes.

    python benchmarks/scale.py [--time-limit 120] [--quick] > run.md

Prints, as markdown: the machine; candidate configurations evaluated per second by the numpy
performance model; for generated instances from 1 job to 50 workloads x 3 sites x the full
catalog, candidates before and after pruning, MIP size, and solve time, status and gap on OR-Tools
(default) and PuLP in the same run, with their ratio; the 50-workload target run (gap 0.5%); and
batch throughput for 1 and 2 local workers (and Ray when installed). Generated instances are
seeded (`dcopt generate`), so every run measures the same problems.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.loader import default_catalog, instance_from_dict  # noqa: E402
from models.presets import PRESETS  # noqa: E402
from models.perf.training import enumerate_grid, evaluate  # noqa: E402
from optimizer.solving import pipeline as S  # noqa: E402
from optimizer.runs.generate import generate, write  # noqa: E402

# (label, jobs, services, sites, accelerators (0 = all), fabrics (0 = all))
LADDER = [
    ("1 job", 1, 0, 1, 4, 2),
    ("5 workloads", 4, 1, 1, 6, 2),
    ("10 workloads x 2 sites", 7, 3, 2, 0, 0),
    ("20 workloads x 3 sites", 14, 6, 3, 0, 0),
    ("50 workloads x 3 sites", 35, 15, 3, 0, 0),
]
QUICK = LADDER[:3]
TARGET = ("50 workloads x 3 sites", 35, 15, 3, 0, 0)


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import ortools
    import pulp

    return (f"- CPU: {cpu}, {os.cpu_count()} cores (nproc), {mem_gb:.0f} GiB RAM, {platform.system()} {platform.machine()}\n"
            f"- Python {platform.python_version()}, numpy {np.__version__}, OR-Tools {ortools.__version__}, "
            f"PuLP {pulp.__version__}")


def perf_model_rate(repeats: int = 3) -> tuple[str, float]:
    cat = default_catalog()
    accs, fabs = list(cat.accelerators.values()), list(cat.fabrics.values())
    lines = [f"Full built-in catalog: {len(accs)} accelerators x {len(fabs)} fabrics; best of {repeats}.", "",
             "| model | configurations | enumerate s | evaluate s | evaluated / s |", "|---|---:|---:|---:|---:|"]
    rates = []
    for name, batch in (("llama3-8b", 1024), ("llama3-70b", 2048), ("gpt3-175b", 1536)):
        dims = PRESETS[name]
        t0 = time.perf_counter()
        grid = enumerate_grid(dims, batch, accs, fabs)
        t_enum = time.perf_counter() - t0
        best = min(_timed(lambda: evaluate(dims, grid, accs, fabs, cat.calibration, "bf16", batch, tokens=1e12))
                   for _ in range(repeats))
        rates.append(len(grid) / best)
        lines.append(f"| {name} | {len(grid):,} | {t_enum:.3f} | {best:.3f} | {len(grid) / best:,.0f} |")
    return "\n".join(lines), min(rates)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _instance(jobs, services, sites, acc, fab, seed):
    doc, _ = generate(jobs, services, sites, acc, seed, fabrics=fab)
    return instance_from_dict(doc, f"gen-{jobs}-{services}-{sites}")


def _counts(inst) -> tuple[int, int, float]:
    """(candidates enumerated, kept after pruning, seconds) for jobs and services together."""
    t0 = time.perf_counter()
    _, pruned = S.prepare(inst)
    services = S.prepare_services(inst) if hasattr(S, "prepare_services") else []
    dt = time.perf_counter() - t0
    total = sum(p.enumerated for p in pruned) + sum(p.enumerated for p in services)
    kept = sum(p.survived for p in pruned) + sum(p.survived for p in services)
    return total, kept, dt


def _solve(inst, backend: str, time_limit: float, gap) -> dict:
    """Solve and time; if the verifier rejects the design, say so and time the same solve unverified,
    so the solver's own figures (status, gap, seconds) are still measured."""
    t0 = time.perf_counter()
    try:
        sol = S.solve_instance(inst, backend=backend, time_limit_s=time_limit, gap=gap)
    except Exception as exc:  # a verifier rejection is a finding, not a crash of the benchmark
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        note = f"{type(exc).__name__}: {lines[1] if len(lines) > 1 else lines[0] if lines else ''}"
        t0 = time.perf_counter()
        try:
            sol = S.solve_instance(inst, backend=backend, time_limit_s=time_limit, gap=gap, verify=False)
        except Exception as exc2:
            return {"status": type(exc2).__name__, "s": time.perf_counter() - t0, "gap": None, "size": {},
                    "obj": None, "note": note}
        return {"status": f"{sol.status} (unverified)", "s": time.perf_counter() - t0, "gap": sol.gap,
                "size": sol.mip_size, "obj": sol.objective_value, "note": note, "verified": False, "solver": sol.solver}
    return {"status": sol.status, "s": time.perf_counter() - t0, "gap": sol.gap, "size": sol.mip_size,
            "obj": sol.objective_value, "note": "", "verified": True, "solver": sol.solver}


def _fmt_gap(g) -> str:
    return "-" if g is None else f"{100 * g:.2f}%"


def ladder(sizes, seed: int, time_limit: float) -> tuple[str, dict]:
    lines = [f"Generated with `dcopt generate --seed {seed}`; end-to-end `solve_instance` (enumerate, evaluate, "
             f"prune, build, solve, verify) with a {time_limit:g} s limit per MIP solve, default gap (prove "
             "optimality). `prepare s` is the candidate tables and pruning alone.", "",
             "| size | jobs+services | candidates | after pruning | removed | prepare s | MIP vars (int) / cons "
             "| OR-Tools s | status, gap | PuLP s | status, gap | OR-Tools/PuLP |",
             "|---|---|---:|---:|---:|---:|---|---:|---|---:|---|---:|"]
    largest = {}
    notes = []
    solvers = {"ortools": set(), "pulp": set()}
    for label, j, s, k, a, f in sizes:
        inst = _instance(j, s, k, a, f, seed)
        total, kept, prep = _counts(inst)
        ort = _solve(inst, "ortools", time_limit, None)
        pulp = _solve(inst, "pulp", time_limit, None)
        size = ort["size"] or pulp["size"]
        mip = (f"{size.get('variables', 0):,} ({size.get('integer_variables', 0):,}) / {size.get('constraints', 0):,}"
               if size else "-")
        lines.append(f"| {label} | {j}+{s} | {total:,} | {kept:,} | {100 * (1 - kept / total):.2f}% | {prep:.2f} | {mip} "
                     f"| {ort['s']:.2f} | {ort['status']}, {_fmt_gap(ort['gap'])} | {pulp['s']:.2f} "
                     f"| {pulp['status']}, {_fmt_gap(pulp['gap'])} | {ort['s'] / pulp['s']:.2f} |")
        solvers["ortools"].add(ort.get("solver") or "?")
        solvers["pulp"].add(pulp.get("solver") or "?")
        for b, r in (("OR-Tools", ort), ("PuLP", pulp)):
            if r["note"]:
                notes.append(f"- {label}, {b}: {r['status']}: {r['note']}")
        if ort["obj"] and pulp["obj"] and ort["status"] == pulp["status"] == "optimal":
            if abs(ort["obj"] - pulp["obj"]) > 1e-6 * abs(ort["obj"]):
                notes.append(f"- {label}: the backends' optima differ: {ort['obj']:,.2f} vs {pulp['obj']:,.2f}")
        largest = {"label": label, "total": total, "kept": kept}
        print(f"  [ladder] {label}: ortools {ort['s']:.1f}s {ort['status']}, pulp {pulp['s']:.1f}s {pulp['status']}",
              file=sys.stderr, flush=True)
    notes.append(f"- Solvers used: OR-Tools backend -> {', '.join(sorted(solvers['ortools']))} (MathOpt); "
                 f"PuLP backend -> {', '.join(sorted(solvers['pulp']))}.")
    return "\n".join(lines + [""] + notes), largest


def target(seed: int, time_limit: float) -> tuple[str, dict]:
    label, j, s, k, a, f = TARGET
    inst = _instance(j, s, k, a, f, seed)
    r = _solve(inst, "ortools", time_limit, 0.005)
    text = (f"`{label}` (seed {seed}), OR-Tools ({r.get('solver') or '?'}), gap 0.5%, time limit {time_limit:g} s: "
            f"**{r['s']:.1f} s end to end**, "
            f"status {r['status']}, gap {_fmt_gap(r['gap'])}" + (f" ({r['note']})" if r["note"] else ""))
    return text, r


def batch_throughput(n: int, seed: int) -> str:
    from optimizer.runs.batch import run_batch

    lines = [f"{n} generated instances (3-6 jobs, 1-3 services, 1-2 sites, 6 accelerator types, 3 fabrics; "
             "seeded), a fresh output directory per run; wall clock includes starting the workers.", "",
             "| engine | workers | wall s | instances / min | statuses |", "|---|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory(prefix="dcopt-bench-") as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(n):
            write(src / f"b{i:03d}.yaml", jobs=3 + i % 4, services=1 + i % 3, sites=1 + (i % 4 == 3), accelerators=6,
                  seed=seed * 1000 + i, fabrics=3)
        runs = [("local", 1), ("local", 2)]
        try:
            import ray  # noqa: F401

            runs.append(("ray", 2))
        except ImportError:
            pass
        for engine, w in runs:
            t0 = time.perf_counter()
            rep = run_batch([str(src)], Path(tmp) / f"out-{engine}-{w}", workers=w, engine=engine)
            dt = time.perf_counter() - t0
            st = ", ".join(f"{c} {k}" for k, c in rep.counts().items())
            lines.append(f"| {engine} | {w} | {dt:.1f} | {60 * n / dt:.0f} | {st} |")
            print(f"  [batch] {engine} x{w}: {dt:.1f}s", file=sys.stderr, flush=True)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per MIP solve in the ladder")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-instances", type=int, default=24)
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--other-seeds", type=lambda x: [int(v) for v in x.split(",") if v], default=[2, 3],
                    help="also run the 50-workload target size on these seeds (comma list; empty for none)")
    args = ap.parse_args()

    print(f"# dcopt scale benchmark\n\n{machine()}\n")
    print("## Performance model\n")
    text, rate = perf_model_rate()
    print(text + "\n")
    print("## Size ladder: pruning, MIP size, solve time per backend\n")
    text, largest = ladder(QUICK if args.quick else LADDER, args.seed, args.time_limit)
    print(text + "\n")
    t_text, t = ("(skipped in --quick)", {}) if args.quick else target(args.seed, args.time_limit)
    print("## Target run\n\n" + t_text + "\n")
    if not args.quick and args.other_seeds:
        # The same size, other random instances: how typical the target instance is.
        print("Same size, other seeds (not part of the target):\n")
        for other in args.other_seeds:
            print("- " + target(other, args.time_limit)[0])
            print(f"  [target] seed {other} done", file=sys.stderr, flush=True)
        print()
    print("## Batch throughput\n")
    print(batch_throughput(8 if args.quick else args.batch_instances, args.seed) + "\n")
    removed = 1 - largest["kept"] / largest["total"]
    rows = [("candidate configurations evaluated per second", ">= 1,000,000", f"{rate:,.0f} (slowest model)",
             rate >= 1e6)]
    if t:
        ok = (t.get("verified") and t["status"] in ("optimal", "feasible") and t["gap"] is not None
              and t["gap"] <= 0.005 and t["s"] <= 30)
        rows.append(("50 workloads x 3 sites: gap <= 0.5% in <= 30 s (default backend)", "<= 30 s",
                     f"{t['s']:.1f} s, {t['status']}, gap {_fmt_gap(t['gap'])}", ok))
    rows.append((f"pruning on the largest instance ({largest['label']})", ">= 90% removed",
                 f"{100 * removed:.2f}% ({largest['total']:,} > {largest['kept']:,})", removed >= 0.9))
    print("## Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|")
    for name, want, got, ok in rows:
        print(f"| {name} | {want} | {got} | {'yes' if ok else '**NO**'} |")
    print(f"\nPeak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
