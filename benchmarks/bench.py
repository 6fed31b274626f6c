"""Speed figures for dcopt (a script, not a test): python benchmarks/bench.py

Prints: configurations evaluated per second by the numpy performance model; per shipped instance,
candidates before and after pruning, MIP size, and solve time on each backend.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.loader import default_catalog, load_instance  # noqa: E402
from models.presets import PRESETS  # noqa: E402
from models.perf.training import enumerate_grid, evaluate  # noqa: E402
from optimizer.solving.pipeline import prepare, solve_instance  # noqa: E402


def perf_model_rate(repeats: int = 3) -> None:
    cat = default_catalog()
    accs, fabs = list(cat.accelerators.values()), list(cat.fabrics.values())
    print("## Performance model (full built-in catalog: 11 accelerators x 5 fabrics)")
    print(f"{'model':<12} {'configs':>10} {'enumerate s':>12} {'evaluate s':>11} {'configs/s':>12}")
    for name, batch in (("llama3-8b", 1024), ("llama3-70b", 2048), ("gpt3-175b", 1536)):
        dims = PRESETS[name]
        t0 = time.perf_counter()
        grid = enumerate_grid(dims, batch, accs, fabs)
        t_enum = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            evaluate(dims, grid, accs, fabs, cat.calibration, "bf16", batch, tokens=1e12)
            times.append(time.perf_counter() - t0)
        best = min(times)
        print(f"{name:<12} {len(grid):>10,} {t_enum:>12.3f} {best:>11.3f} {len(grid) / best:>12,.0f}")
    print()


def instances() -> None:
    print("## Shipped instances")
    print(f"{'instance':<32} {'candidates':>11} {'in MIP':>7} {'vars':>6} {'int':>5} {'cons':>5} "
          f"{'ortools s':>10} {'pulp s':>8} {'objective agrees':>17}")
    for path in sorted((ROOT / "instances").glob("*.yaml")):
        inst = load_instance(path)
        _, pruned = prepare(inst)
        total = sum(p.enumerated for p in pruned)
        kept = sum(p.survived for p in pruned)
        res = {}
        for backend in ("ortools", "pulp"):
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                sol = solve_instance(inst, backend=backend)
                runs.append(time.perf_counter() - t0)
            res[backend] = (sol, statistics.median(runs))
        sol = res["ortools"][0]
        a, b = res["ortools"][0].objective_value, res["pulp"][0].objective_value
        agree = "infeasible (both)" if a is None and b is None else ("yes" if a and b and abs(a - b) <= 1e-6 * abs(a) else "NO")
        size = sol.mip_size
        print(f"{path.name:<32} {total:>11,} {kept:>7} {size.get('variables', 0):>6} {size.get('integer_variables', 0):>5} "
              f"{size.get('constraints', 0):>5} {res['ortools'][1]:>10.2f} {res['pulp'][1]:>8.2f} {agree:>17}")
    print("(solve times are end to end: enumeration, evaluation, pruning, MIP, verification; median of 3)")


if __name__ == "__main__":
    print(f"# dcopt benchmarks: Python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()}, {__import__('os').cpu_count()} cores\n")
    perf_model_rate()
    instances()
