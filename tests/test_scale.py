"""Issue 20: the constructive start, the MIP start, the work limit and the decomposition (small instances)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.loader import load_instance
from optimizer.mip.backends import SolveResult, Status
from optimizer.mip.build import build_model, objective_expr
from optimizer.mip.data import build_data
from optimizer.mip.start import greedy_decisions, heuristic_start
from optimizer.solving import pipeline as P

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = sorted((ROOT / "instances").glob("*.yaml"))
FOUR_SITES = ROOT / "instances" / "placement-four-sites.yaml"


def _model(path):
    inst = load_instance(path)
    _, pruned = P.prepare(inst)
    services = P.prepare_services(inst)
    if any(p.survived == 0 for p in pruned) or any(p.survived == 0 for p in services):
        return inst, None, None, None
    d = build_data(inst, pruned, services)
    m, v = build_model(d)
    m.minimize(objective_expr(d, v, inst.objective))
    return inst, d, m, v


def test_the_start_satisfies_every_row_and_the_verifier_on_every_shipped_instance(monkeypatch):
    # The solver is made to stop with nothing (what a time limit on a large instance did before the
    # start), so each design below is the start's: every row checked here, then extracted and verified.
    seen, real = [], P.run_backend

    def no_incumbent(model, backend="ortools", time_limit_s=None, gap=None, fallback=True, start=None,
                     work_limit=None, cutoff=None):
        if start is None:  # no start: the instance that is infeasible on purpose, solved for real
            return real(model, backend=backend, time_limit_s=time_limit_s, gap=gap)
        assert model.violations(start) == []
        seen.append(model.objective_value(start))
        return SolveResult(Status.TIME_LIMIT, None, None, None, None, 0.0, "ortools", "scip", "no solution found")

    monkeypatch.setattr(P, "run_backend", no_incumbent)
    got = 0
    for path in INSTANCES:
        sol = P.solve_instance(load_instance(path), study_procurement=False, hint=True)
        if sol.start_objective_value is None:
            assert sol.status == "infeasible" and not sol.has_design, path.name
            continue
        assert sol.verified and sol.incumbent_source == "heuristic" and sol.status == "feasible", path.name
        # The start as the LP-restricted re-solve improved it (optimizer.mip.improve), never worse.
        assert sol.objective_value == pytest.approx(sol.improvement["objective"])
        assert sol.objective_value <= sol.start_objective_value * (1 + 1e-9)
        got += 1
    assert got == len(seen) >= len(INSTANCES) - 1  # all but the instance that is infeasible on purpose


def test_no_start_on_an_infeasible_instance():
    inst, d, m, v = _model(ROOT / "instances" / "infeasible-deadline-power.yaml")
    if m is not None:
        assert heuristic_start(m, d, v, inst.objective) is None


def test_the_greedy_places_each_job_exactly_once():
    inst, d, m, v = _model(FOUR_SITES)
    fixed = greedy_decisions(m, d, v, inst.objective, 0.9)
    for job in d.jobs:
        placed = [k for k, x in v.choose.items() if k[0] == job.name and fixed[x.index] == 1.0]
        placed += [k for k, x in v.rent.items() if k[0] == job.name and fixed[x.index] == 1.0]
        assert len(placed) == 1
        if placed[0] in v.choose:
            assert fixed[v.site_open[placed[0][2]].index] == 1.0  # only at a site it opens


@pytest.mark.parametrize("backend", ["ortools", "pulp"])
def test_start_and_decomposition_never_change_the_optimum(backend):
    inst = load_instance(FOUR_SITES)
    plain = P.solve_instance(inst, backend=backend, start=False, decompose=False)
    hinted = P.solve_instance(inst, backend=backend, start=True, hint=True)
    split = P.solve_instance(inst, backend=backend, start=True, decompose=True)
    assert plain.status == hinted.status == split.status == "optimal"
    assert hinted.objective_value == pytest.approx(plain.objective_value, rel=1e-6)
    assert split.objective_value == pytest.approx(plain.objective_value, rel=1e-6)
    assert split.decomposition["lp_bound"] <= split.objective_value / 1e6 + 1e-6  # $M: a bound, not above
    assert split.start_objective_value >= plain.objective_value * (1 - 1e-9)  # the start is a design, not below


@pytest.mark.parametrize("backend", ["ortools", "pulp"])
def test_a_work_limited_solve_is_repeatable_and_reports_its_work(backend):
    inst = load_instance(FOUR_SITES)
    a, b = (P.solve_instance(inst, backend=backend, work_limit=0) for _ in range(2))
    assert a.verified and b.verified
    assert (a.objective_value, a.best_bound, a.work) == (b.objective_value, b.best_bound, b.work)
    assert a.work["work_limit"] == 0 and a.work["stopped_by"] == "work" and a.work["nodes"] is not None
    assert a.status == "feasible" and a.gap > 0  # this instance needs branching: the root alone does not close it


def test_the_solver_bound_stays_with_the_start_design(monkeypatch):
    inst = load_instance(FOUR_SITES)
    optimum = P.solve_instance(inst, start=False).objective_value / 1e6

    def bound_only(model, **kw):
        return SolveResult(Status.TIME_LIMIT, None, optimum, None, None, 0.0, "ortools", "scip", "no solution found")

    monkeypatch.setattr(P, "run_backend", lambda model, backend="ortools", **kw: bound_only(model, **kw))
    sol = P.solve_instance(inst)
    assert sol.incumbent_source == "heuristic" and sol.best_bound == pytest.approx(optimum * 1e6)
    assert sol.gap == pytest.approx((sol.objective_value - optimum * 1e6) / sol.objective_value)


def test_a_bad_work_limit_names_the_field():
    inst = load_instance(FOUR_SITES)
    with pytest.raises(ValueError, match="work_limit"):
        P.solve_instance(inst, work_limit=-1)
