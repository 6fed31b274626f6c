"""Which MIP solver should OrToolsBackend use by default? Measure HiGHS vs SCIP (and CBC for
reference) on seeded MILPs of the shapes dcopt builds, for speed and run-to-run determinism.

    python benchmarks/solvers_choice.py [--repeats 3] [--time-limit 30] [--quick]
    python benchmarks/solvers_choice.py --dcopt-ladder [--gap 0.005] [--only 50x10x3] [--solvers highs,cbc,cbc-ortools]

Each instance is solved `repeats` times per solver in one process; "det" means every repeat
returned the same status, objective and values (bit for bit); the 4-hex hash of the values lets
two runs in separate processes be diffed. Times are wall-clock medians including translation.
CP-SAT is deliberately absent (docs/solvers.md: wrong on mixed models).

Measured (ortools 9.15, PuLP 3.3 / CBC 2.10.3, Python 3.11, 2-core x86_64; --repeats 3
--time-limit 30). For HiGHS and SCIP the hashes equalled those of an earlier run in another
process (--time-limit 10) on every instance both runs had, time-limited rows included; CBC's
time-limited result differed between repeats once (mknap 200x10 at 10 s):

    instance           vars   int  rows                       highs                      scip                       cbc
    cfl 8x30            248     8   278        0.005s opti det 7a8c      0.006s opti det 7a8c      0.014s opti det 7a8c
    cfl 15x60           915    15   975        0.013s opti det 459e      0.017s opti det edae      0.031s opti det 0199
    cfl 30x120         3630    30  3750        0.092s opti det 042e      0.080s opti det 5f36      0.313s opti det a4ee
    mknap 80x5           80    80     5        0.232s opti det 7c97      0.084s opti det 7c97      0.166s opti det 7c97
    mknap 120x5         120   120     5        0.976s opti det b6b7      0.512s opti det 27e9      0.831s opti det b6b7
    mknap 60x10          60    60    10        0.640s opti det 697f      0.657s opti det 697f      0.272s opti det 697f
    gap 5x40            200   200    45        0.357s opti det 733c      0.237s opti det 733c      0.129s opti det 733c
    gap 8x60            480   480    68        0.327s opti det 48a4      0.341s opti det 48a4      0.203s opti det 48a4
    gap 10x100         1000  1000   110        1.935s opti det 0d33      6.218s opti det 0d33     30.137s feas det 0d33
    dcopt 10x10x4       104   104    15        0.005s opti det b9ad      0.003s opti det b9ad      0.008s opti det b9ad
    dcopt 40x25x6      1006  1006    47        0.022s opti det 3401      0.023s opti det 3401      0.022s opti det 3401
    dcopt 80x25x8      2008  2008    89        0.045s opti det adaf      0.053s opti det adaf      0.038s opti det adaf
    gap 10x100 s52     1000  1000   110        1.953s opti det 1caf      1.769s opti det 7404     14.287s opti det 1caf
    gap 10x100 s53     1000  1000   110        2.384s opti det 5a12      3.890s opti det 39bf     30.645s feas det caba
    gap 12x150         1800  1800   162        7.544s opti det 1b17      3.968s opti det 1b17     30.176s feas det dc98
    cfl 50x200        10050    50 10250        1.427s opti det baec      4.792s opti det 873c      2.105s opti det 861f
    dcopt 300x40x12   12012 12012   313        0.809s opti det be12      0.560s opti det be12      0.209s opti det 0929
    mknap 100x8         100   100     8       10.200s opti det a497      3.032s opti det a497      1.845s opti det a497
    mknap 150x5         150   150     5       14.332s opti det 4de3      9.348s opti det 4de3      3.676s opti det 4de3
    mknap 200x10        200   200    10       30.003s feas det 2be4     30.086s feas det 014b     30.166s feas det a636

At the limit on mknap 200x10 (maximise) the incumbents were HiGHS 10560, SCIP 10562, CBC 10568.
Verdict: SCIP as the MathOpt default (less total time, more wins, cleaner statuses); HiGHS
stays selectable ("ortools-highs") and wins LP-heavy models.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import random
import statistics
import sys
from collections.abc import Callable

from optimizer.mip.backends import OrToolsBackend, PulpBackend, SolveResult, Status
from optimizer.mip.lp import EQ, GE, LE, Model, lin_sum


# -- instance generators (all seeded) ---------------------------------------------------------

def facility_location(n_fac: int, n_cust: int, seed: int) -> Model:
    """Capacitated facility location: open y[f] (binary), serve x[f,c] in [0,1] (fraction).
    min sum open_cost*y + sum dist*demand*x; sum_f x = 1; sum_c demand*x <= cap*y; x <= y."""
    rng = random.Random(seed)
    m = Model(f"cfl-{n_fac}x{n_cust}-s{seed}")
    fx = [(rng.random(), rng.random()) for _ in range(n_fac)]
    cx = [(rng.random(), rng.random()) for _ in range(n_cust)]
    dem = [rng.randint(5, 35) for _ in range(n_cust)]
    total = sum(dem)
    cap = [rng.randint(int(1.5 * total / n_fac), int(4 * total / n_fac)) for _ in range(n_fac)]
    cost = [rng.randint(300, 900) for _ in range(n_fac)]
    y = [m.add_binary(f"open[f={f}]") for f in range(n_fac)]
    x = [[m.add_var(f"serve[f={f},c={c}]", ub=1) for c in range(n_cust)] for f in range(n_fac)]
    for c in range(n_cust):
        m.add_constraint(lin_sum(x[f][c] for f in range(n_fac)) == 1, f"demand[c={c}]")
    for f in range(n_fac):
        m.add_constraint(lin_sum((dem[c], x[f][c]) for c in range(n_cust)) <= cap[f] * y[f], f"cap[f={f}]")
        for c in range(n_cust):
            m.add_constraint(x[f][c] <= y[f], f"link[f={f},c={c}]")
    dist = lambda a, b: ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5  # noqa: E731
    m.minimize(lin_sum((cost[f], y[f]) for f in range(n_fac))
               + lin_sum((round(100 * dist(fx[f], cx[c]) * dem[c], 2), x[f][c])
                         for f in range(n_fac) for c in range(n_cust)))
    return m


def int_knapsack(n: int, n_dims: int, seed: int) -> Model:
    """Multi-dimensional knapsack with general integers 0..4: max value s.t. weight limits."""
    rng = random.Random(seed)
    m = Model(f"mknap-{n}x{n_dims}-s{seed}")
    x = [m.add_var(f"take[i={i}]", ub=4, integer=True) for i in range(n)]
    for d in range(n_dims):
        w = [rng.randint(5, 60) for _ in range(n)]
        m.add_constraint(lin_sum(zip(w, x)) <= int(0.6 * sum(w)), f"weight[d={d}]")
    m.maximize(lin_sum((rng.randint(10, 90), xi) for xi in x))
    return m


def generalized_assignment(n_agents: int, n_jobs: int, seed: int, tight: float = 0.8) -> Model:
    """GAP: each job to exactly one agent (binary), agent capacities; the classic medium-hard
    binary MIP, and close to dcopt's "each job picks one configuration, shared capacity"."""
    rng = random.Random(seed)
    m = Model(f"gap-{n_agents}x{n_jobs}-s{seed}")
    x = [[m.add_binary(f"assign[a={a},j={j}]") for j in range(n_jobs)] for a in range(n_agents)]
    w = [[rng.randint(5, 25) for _ in range(n_jobs)] for _ in range(n_agents)]
    c = [[rng.randint(10, 50) for _ in range(n_jobs)] for _ in range(n_agents)]
    for j in range(n_jobs):
        m.add_constraint(lin_sum(x[a][j] for a in range(n_agents)) == 1, f"job[j={j}]")
    for a in range(n_agents):
        m.add_constraint(lin_sum(zip(w[a], x[a])) <= int(tight * sum(w[a]) / n_agents), f"cap[a={a}]")
    m.minimize(lin_sum((c[a][j], x[a][j]) for a in range(n_agents) for j in range(n_jobs)))
    return m


def dcopt_like(n_jobs: int, n_cands: int, n_acc: int, seed: int, power_frac: float = 0.5) -> Model:
    """The shape dcopt builds: integer node counts per accelerator (modular capacity), one
    binary per surviving (job, candidate configuration), SOS1-like choice rows, node capacity
    and a power cap; cost = capex(nodes) + energy(choices). Money in $M, power in MW."""
    rng = random.Random(seed)
    m = Model(f"dcopt-{n_jobs}x{n_cands}x{n_acc}-s{seed}")
    gpn = [rng.choice([4, 8]) for _ in range(n_acc)]
    capex = [round(rng.uniform(0.15, 0.6), 3) for _ in range(n_acc)]
    mw = [round(rng.uniform(0.005, 0.012), 4) for _ in range(n_acc)]
    nodes = [m.add_var(f"nodes[acc=a{a}]", ub=2000, integer=True) for a in range(n_acc)]
    use = {a: [] for a in range(n_acc)}
    power = []
    energy = []
    for j in range(n_jobs):
        row = []
        for k in range(n_cands):
            a = rng.randrange(n_acc)
            gpus = rng.choice([64, 128, 256, 512, 1024])
            z = m.add_binary(f"choose[job=j{j},cand={k}]")
            row.append(z)
            use[a].append((gpus, z))
            power.append((gpus / gpn[a] * mw[a], z))
            energy.append((round(rng.uniform(0.05, 2.0), 3), z))
        m.add_constraint(lin_sum(row) == 1, f"one_config[job=j{j}]")
    for a in range(n_acc):
        m.add_constraint(lin_sum(use[a]) <= gpn[a] * nodes[a], f"gpus[acc=a{a}]")
    m.add_constraint(lin_sum(power) <= power_frac * sum(c for c, _ in power) / n_cands, "power_cap")
    m.minimize(lin_sum(zip(capex, nodes)) + lin_sum(energy) + 1.0)
    return m


INSTANCES: list[tuple[str, Callable[[], Model]]] = [
    ("cfl 8x30", lambda: facility_location(8, 30, 1)),
    ("cfl 15x60", lambda: facility_location(15, 60, 2)),
    ("cfl 30x120", lambda: facility_location(30, 120, 41)),
    ("mknap 80x5", lambda: int_knapsack(80, 5, 21)),
    ("mknap 120x5", lambda: int_knapsack(120, 5, 22)),
    ("mknap 60x10", lambda: int_knapsack(60, 10, 23)),
    ("gap 5x40", lambda: generalized_assignment(5, 40, 31)),
    ("gap 8x60", lambda: generalized_assignment(8, 60, 32)),
    ("gap 10x100", lambda: generalized_assignment(10, 100, 33)),
    ("dcopt 10x10x4", lambda: dcopt_like(10, 10, 4, 6)),
    ("dcopt 40x25x6", lambda: dcopt_like(40, 25, 6, 7, power_frac=0.3)),
    ("dcopt 80x25x8", lambda: dcopt_like(80, 25, 8, 8)),
    ("gap 10x100 s52", lambda: generalized_assignment(10, 100, 52)),
    ("gap 10x100 s53", lambda: generalized_assignment(10, 100, 53)),
    ("gap 12x150", lambda: generalized_assignment(12, 150, 51)),
    ("cfl 50x200", lambda: facility_location(50, 200, 54)),
    ("dcopt 300x40x12", lambda: dcopt_like(300, 40, 12, 55, power_frac=0.3)),
    ("mknap 100x8", lambda: int_knapsack(100, 8, 57)),
    ("mknap 150x5", lambda: int_knapsack(150, 5, 56)),
    ("mknap 200x10", lambda: int_knapsack(200, 10, 5)),  # not solved in 30 s: incumbent quality
]
QUICK = {"cfl 8x30", "mknap 80x5", "gap 5x40", "dcopt 10x10x4"}


# dcopt's own MIPs, generated (`dcopt generate`): (label, jobs, services, sites, accelerators, fabrics, seed);
# accelerators/fabrics 0 = the full built-in catalog. The issue-20 ladder plus the small sizes.
LADDER: list[tuple[str, int, int, int, int, int, int]] = [
    ("1 job", 1, 0, 1, 4, 2, 1),
    ("5 workloads", 4, 1, 1, 6, 2, 1),
    ("5 workloads", 4, 1, 1, 6, 2, 2),
    ("8 x 2 sites", 6, 2, 2, 4, 2, 1),
    ("10 x 2 sites full", 7, 3, 2, 0, 0, 1),
    ("20x8x3", 20, 8, 3, 4, 2, 1),
    ("20x8x3", 20, 8, 3, 4, 2, 2),
    ("50x10x3", 50, 10, 3, 4, 2, 1),
    ("50x10x3", 50, 10, 3, 4, 2, 2),
    # Seeds 3 and 4 of the two small sizes: the out-of-sample check of a solver choice made on seeds 1 and 2.
    ("20x8x3 more", 20, 8, 3, 4, 2, 3),
    ("20x8x3 more", 20, 8, 3, 4, 2, 4),
    ("50x10x3 more", 50, 10, 3, 4, 2, 3),
    ("50x10x3 more", 50, 10, 3, 4, 2, 4),
    ("35x15x3 full", 35, 15, 3, 0, 0, 1),
    ("100x20x5", 100, 20, 5, 4, 2, 1),
    ("200x40x5", 200, 40, 5, 4, 2, 1),
]


def dcopt_model(jobs: int, services: int, sites: int, accelerators: int, fabrics: int, seed: int) -> Model:
    """The MIP `dcopt solve` builds for a generated instance (tables, pruning, families, objective)."""
    from models.loader import instance_from_dict
    from optimizer.mip.build import build_model, objective_expr
    from optimizer.mip.data import build_data
    from optimizer.runs.generate import generate
    from optimizer.solving import pipeline as S

    doc, _ = generate(jobs, services, sites, accelerators, seed, fabrics=fabrics)
    inst = instance_from_dict(doc, f"gen-{jobs}-{services}-{sites}-s{seed}")
    data = build_data(inst, S.prepare(inst)[1], S.prepare_services(inst))
    m, v = build_model(data, symmetry=True)  # as `dcopt solve` builds it
    m.minimize(objective_expr(data, v, inst.objective))
    return m


class OrToolsCbc:
    """CBC through OR-Tools' linear-solver wrapper (`pywraplp`), for measurement only: the candidate
    third solver of OrToolsBackend that issue 20 asked about. It is not offered by dcopt: measured
    slower than HiGHS on one seed of every ladder size and without a design on 100 x 20 x 5
    (benchmarks/RESULTS.md, "OR-Tools' own CBC"). What the wrapper gives CBC (OR-Tools 9.15, CBC
    2.10.12): a time limit, the relative gap, one thread, the best bound and node count, and
    optimal / feasible / infeasible / unbounded statuses. What it does not: `SetHint` is accepted
    and ignored (no MIP start reached CBC's log), `SetSolverSpecificParametersAsString` is refused,
    so there is no node limit (no deterministic work limit) and no seed, and the log goes to the
    process's stdout from C++."""

    name, solver = "ortools", "cbc"

    def solve(self, model: Model, time_limit_s: float | None = None, gap: float | None = None) -> SolveResult:
        import time

        from ortools.linear_solver import pywraplp

        t0 = time.perf_counter()
        s = pywraplp.Solver.CreateSolver("CBC")
        inf = s.infinity()
        xs = [s.Var(max(v.lb, -inf), min(v.ub, inf), v.integer, v.name) for v in model.vars]
        for c in model.constraints:
            row = s.RowConstraint(c.rhs if c.sense in (GE, EQ) else -inf, c.rhs if c.sense in (LE, EQ) else inf, c.name or "")
            for i, a in c.coefs.items():
                row.SetCoefficient(xs[i], a)
        obj = s.Objective()
        for i, a in model.objective.terms.items():
            obj.SetCoefficient(xs[i], a)
        obj.SetOffset(model.objective.constant)
        if model.sense == "max":
            obj.SetMaximization()
        else:
            obj.SetMinimization()
        s.SetNumThreads(1)
        if time_limit_s is not None:
            s.SetTimeLimit(int(1000 * time_limit_s))
        params = pywraplp.MPSolverParameters()
        params.SetDoubleParam(params.RELATIVE_MIP_GAP, 1e-6 if gap is None else gap)
        code = s.Solve(params)
        status = {s.OPTIMAL: Status.OPTIMAL, s.FEASIBLE: Status.FEASIBLE, s.INFEASIBLE: Status.INFEASIBLE,
                  s.UNBOUNDED: Status.UNBOUNDED, s.NOT_SOLVED: Status.TIME_LIMIT}.get(code, Status.ERROR)
        values = [x.solution_value() for x in xs] if status.has_solution else None
        value = obj.Value() if values is not None else None
        bound = obj.BestBound()
        g = None if value is None else abs(value - bound) / max(1e-9, abs(value))
        return SolveResult(status, value, bound, g, values, time.perf_counter() - t0, self.name, self.solver,
                           nodes=s.nodes())


SOLVER_COLUMNS = {
    "highs": lambda: OrToolsBackend("highs"),
    "scip": lambda: OrToolsBackend("scip"),
    "cbc": lambda: PulpBackend(),  # PuLP's bundled CBC binary, dcopt's fallback
    "cbc-ortools": lambda: OrToolsCbc(),  # OR-Tools' CBC (pywraplp), measured only
}


def run_ladder(time_limit: float, gap: float, only: str | None, solvers: list[str] | None = None) -> None:
    """Each ladder MIP once per solver, to `gap` within `time_limit`: the measurement behind
    OrToolsBackend.AUTO_SOLVER (which solver `ortools` picks by integer count)."""
    solvers = solvers or ["highs", "scip", "cbc"]
    backends = [(name, SOLVER_COLUMNS[name]()) for name in solvers]
    auto = OrToolsBackend("auto")
    print(f"# python {platform.python_version()} on {platform.machine()}, gap {gap:g}, time limit {time_limit:g}s per solve")
    print(f"{'instance':<22}{'vars':>7}{'int':>7}{'rows':>7}  " + "".join(f"{name:>26}" for name, _ in backends)
          + f"{'auto':>26}")
    for label, *size, seed in LADDER:
        if only and only not in label:
            continue
        model = dcopt_model(*size, seed)
        cells = []
        for name, b in backends:
            r = b.solve(model, time_limit_s=time_limit, gap=gap)
            obj = "-" if r.objective is None else f"{r.objective:.2f}"
            g = "-" if r.gap is None else f"{100 * r.gap:.2f}%"
            cells.append(f"{r.runtime_s:7.1f}s {r.status.value[:4]} {obj} {g}")
        cells.append(f"= {auto.pick(model)}")
        print(f"{label + f' s{seed}':<22}{model.num_vars:>7}{model.num_integer_vars:>7}{model.num_constraints:>7}  "
              + "".join(f"{c:>26}" for c in cells))
        sys.stdout.flush()


def run(repeats: int, time_limit: float, quick: bool) -> None:
    backends = [("highs", OrToolsBackend("highs")), ("scip", OrToolsBackend("scip")), ("cbc", PulpBackend())]
    print(f"# python {platform.python_version()} on {platform.machine()}, repeats={repeats}, "
          f"time limit {time_limit:g}s per solve")
    print(f"{'instance':<17}{'vars':>6}{'int':>6}{'rows':>6}  " +
          "".join(f"{name:>26}" for name, _ in backends))
    for label, make in INSTANCES:
        if quick and label not in QUICK:
            continue
        model = make()
        cells = []
        objs = {}
        for name, b in backends:
            runs = [b.solve(model, time_limit_s=time_limit) for _ in range(repeats)]
            first = runs[0]
            det = all(r.status == first.status and r.objective == first.objective and r.values == first.values
                      for r in runs[1:])
            t = statistics.median(r.runtime_s for r in runs)
            objs[name] = first.objective
            st = first.status.value[:4]
            h = hashlib.sha1(repr(first.values).encode()).hexdigest()[:4]  # diff across processes
            cells.append(f"{t:8.3f}s {st:>4} {'det' if det else 'NONDET'} {h}")
        agree = len({round(o, 4) for o in objs.values() if o is not None}) <= 1
        print(f"{label:<17}{model.num_vars:>6}{model.num_integer_vars:>6}{model.num_constraints:>6}  "
              + "".join(f"{c:>26}" for c in cells) + ("" if agree else f"   objectives differ: {objs}"))
        sys.stdout.flush()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dcopt-ladder", action="store_true", help="dcopt's generated MIPs (LADDER) instead of the generic set")
    ap.add_argument("--gap", type=float, default=0.005, help="relative gap for --dcopt-ladder")
    ap.add_argument("--only", help="with --dcopt-ladder: only sizes whose label contains this")
    ap.add_argument("--solvers", default="highs,scip,cbc",
                    help=f"with --dcopt-ladder: comma-separated columns from {', '.join(SOLVER_COLUMNS)}")
    a = ap.parse_args()
    if a.dcopt_ladder:
        run_ladder(a.time_limit, a.gap, a.only, a.solvers.split(","))
    else:
        run(a.repeats, a.time_limit, a.quick)
