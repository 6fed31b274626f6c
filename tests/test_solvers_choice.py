"""benchmarks/solvers_choice.py's measurement-only OR-Tools CBC column (`OrToolsCbc`, the pywraplp
wrapper): on hand-checkable models it gives the answers every dcopt backend gives, so the
benchmark table in benchmarks/RESULTS.md compares solvers on the same problem, not a mistranslation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from optimizer.mip.backends import PulpBackend, Status
from optimizer.mip.lp import Model

pytest.importorskip("ortools.linear_solver.pywraplp")
_SPEC = importlib.util.spec_from_file_location(
    "solvers_choice", Path(__file__).parent.parent / "benchmarks" / "solvers_choice.py")
solvers_choice = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(solvers_choice)


def test_optimum_with_objective_constant_by_hand():
    # max 3x + 4y + 1, 2x + 3y <= 12.5, x, y integer in [0, 10]: x = 6, y = 0 gives 19
    # (x = 3, y = 2 gives 18; x = 4, y = 1 gives 17).
    m = Model("toy")
    x, y = m.add_var("x", ub=10, integer=True), m.add_var("y", ub=10, integer=True)
    m.add_constraint(2 * x + 3 * y <= 12.5, "cap")
    m.maximize(3 * x + 4 * y + 1)
    r = solvers_choice.OrToolsCbc().solve(m)
    assert r.status == Status.OPTIMAL
    assert r.objective == pytest.approx(19.0)
    assert r.values == pytest.approx([6.0, 0.0])


def test_infeasible_and_unbounded_are_told_apart():
    m = Model("infeasible")
    a = m.add_var("a", ub=1, integer=True)
    m.add_constraint(a >= 2, "low")
    m.minimize(a + 0)
    assert solvers_choice.OrToolsCbc().solve(m).status == Status.INFEASIBLE
    m = Model("unbounded")
    a = m.add_var("a", integer=True)
    m.add_constraint(a >= 2, "low")
    m.maximize(a + 0)
    assert solvers_choice.OrToolsCbc().solve(m).status == Status.UNBOUNDED


def test_same_optimum_as_pulp_cbc_on_a_generated_mip():
    m = solvers_choice.generalized_assignment(5, 40, 31)
    ours, pulp = solvers_choice.OrToolsCbc().solve(m, time_limit_s=30), PulpBackend().solve(m, time_limit_s=30)
    assert ours.status == pulp.status == Status.OPTIMAL
    assert ours.objective == pytest.approx(pulp.objective, rel=1e-6)
