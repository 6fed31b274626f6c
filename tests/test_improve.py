"""Issue 20: the LP-restricted improvement of the start and the cutoff it hands the solver."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.loader import load_instance
from optimizer.mip.backends import SolveResult, Status, solve
from optimizer.mip.build import build_model, objective_expr
from optimizer.mip.data import build_data
from optimizer.mip.improve import CUTOFF_SLACK, cutoff_for, improve_start, placements_to_zero
from optimizer.mip.lp import Model
from optimizer.mip.start import heuristic_start
from optimizer.solving import pipeline as P

ROOT = Path(__file__).resolve().parent.parent
FOUR_SITES = ROOT / "instances" / "placement-four-sites.yaml"
BACKENDS = ["ortools-highs", "pulp"]  # the backends that take a cutoff (SCIP goes without: ortools.py)


def _knapsack() -> Model:
    """min 10 + 3x + 5y  s.t.  2x + 4y >= 7,  x, y integer in [0, 10]. The cheapest covers by hand:
    (0, 2) costs 20, (2, 1) 21, (4, 0) 22, (1, 2) 23: the optimum is 20 at x = 0, y = 2."""
    m = Model("knap")
    x = m.add_var("x", 0, 10, integer=True)
    y = m.add_var("y", 0, 10, integer=True)
    m.add_constraint(2 * x + 4 * y >= 7, "cover")
    m.minimize(10 + 3 * x + 5 * y)
    return m


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cutoff_above_the_optimum_keeps_it_and_one_below_proves_nothing_is_better(backend):
    m = _knapsack()
    plain = solve(m, backend=backend, fallback=False)
    assert plain.status == Status.OPTIMAL and plain.objective == pytest.approx(20.0)
    # The cutoff is the objective with its constant (10): a hair above 20 keeps the optimum ...
    above = solve(m, backend=backend, fallback=False, cutoff=20.0 + 1e-5)
    assert above.status == Status.OPTIMAL and above.objective == pytest.approx(20.0)
    assert above.values[1] == pytest.approx(2.0)
    # ... and 19.5 (nothing reaches it) leaves nothing: the proof that 20 cannot be beaten by 0.5.
    below = solve(m, backend=backend, fallback=False, cutoff=19.5)
    assert below.status == Status.INFEASIBLE and below.values is None


def test_scip_solves_without_the_cutoff():
    below = solve(_knapsack(), backend="ortools-scip", fallback=False, cutoff=19.5)
    assert below.status == Status.OPTIMAL and below.objective == pytest.approx(20.0)


def test_the_cutoff_sits_a_hair_above_the_design():
    class S:
        objective = 737.42
    assert cutoff_for(S()) == pytest.approx(737.42 * (1 + CUTOFF_SLACK)) and CUTOFF_SLACK <= 1e-2
    assert cutoff_for(S()) > 737.42


def _model(path):
    inst = load_instance(path)
    _, pruned = P.prepare(inst)
    d = build_data(inst, pruned, P.prepare_services(inst))
    m, v = build_model(d)
    m.minimize(objective_expr(d, v, inst.objective))
    return inst, d, m, v


@pytest.mark.parametrize("backend", ["ortools", "pulp"])
def test_the_improved_start_is_a_design_no_worse_than_the_start(backend):
    inst, d, m, v = _model(FOUR_SITES)
    start = heuristic_start(m, d, v, inst.objective, backend=backend)
    better = improve_start(m, v, start, backend, time_limit_s=30)
    assert m.violations(better.start.values) == []  # every row of the full model, not just the restricted one
    assert better.start.objective <= start.objective * (1 + 1e-9)
    assert better.lp_bound <= better.start.objective * (1 + 1e-9)  # the relaxation is a bound
    assert better.placements_kept <= better.placements
    # No placement the start uses is ever zeroed: the start stays a design of the restricted model.
    lp = solve(m.relaxation(), backend=backend)
    zeroed = placements_to_zero(v, lp.values, start.values)
    assert all(start.values[i] < 0.5 for i in zeroed)
    assert all(lp.values[i] < 1e-6 for i in zeroed)


@pytest.mark.parametrize("backend", ["ortools", "pulp"])
def test_the_improvement_and_its_cutoff_never_change_the_optimum(backend):
    inst = load_instance(FOUR_SITES)
    plain = P.solve_instance(inst, backend=backend, start=False)
    improved = P.solve_instance(inst, backend=backend, improve=True)
    assert plain.status == improved.status == "optimal" and improved.verified
    assert improved.objective_value == pytest.approx(plain.objective_value, rel=1e-6)
    imp = improved.improvement
    assert imp["lp_bound"] <= improved.objective_value * (1 + 1e-9)
    assert improved.objective_value <= imp["objective"] * (1 + 1e-9) <= improved.start_objective_value * (1 + 1e-9)
    assert ("cutoff" in imp) == (backend in P.CUTOFF_BACKENDS)


def test_the_improvement_runs_where_measured_to_help_unless_asked():
    inst = load_instance(FOUR_SITES)
    assert P.solve_instance(inst, backend="pulp").improvement == {}  # CBC: not by default
    asked = P.solve_instance(inst, backend="pulp", improve=True)
    assert asked.improvement and "cutoff" not in asked.improvement
    assert P.solve_instance(inst, improve=False).improvement == {}


def test_nothing_below_the_cutoff_leaves_the_improved_start_without_a_bound(monkeypatch):
    inst = load_instance(FOUR_SITES)
    real = P.run_backend

    def nothing_below(model, cutoff=None, **kw):
        if cutoff is None:  # the tie-break's solve
            return real(model, **kw)
        return SolveResult(Status.INFEASIBLE, None, None, None, None, 0.0, "ortools", "highs",
                           "no solution below the objective bound")

    monkeypatch.setattr(P, "run_backend", nothing_below)
    sol = P.solve_instance(inst, improve=True, backend="ortools-highs")
    # "Infeasible" under a cutoff the start is below cannot be true: the start stands, verified, no bound claimed.
    assert sol.status == "feasible" and sol.verified and sol.incumbent_source == "heuristic"
    assert sol.objective_value == pytest.approx(sol.improvement["objective"])
    assert sol.best_bound is None and sol.gap is None and "cutoff" in sol.message


def test_a_start_within_the_asked_gap_of_the_lp_bound_ends_the_solve(monkeypatch):
    inst = load_instance(FOUR_SITES)
    calls = []
    real = P.run_backend
    monkeypatch.setattr(P, "run_backend", lambda model, **kw: calls.append(kw) or real(model, **kw))
    loose = P.solve_instance(inst, gap=0.5)  # 50 %: the improved start is surely within it of the LP bound
    assert loose.verified and loose.incumbent_source == "heuristic" and not calls  # no branch-and-bound solve
    assert loose.best_bound == pytest.approx(loose.improvement["lp_bound"])
    assert loose.gap == pytest.approx((loose.objective_value - loose.best_bound) / loose.objective_value)
    assert loose.gap <= 0.5
    tight = P.solve_instance(inst)  # the default gap (1e-6) the LP bound does not reach: the solver runs
    assert calls and tight.status == "optimal"
