"""What binds, what a unit of a limit is worth, and the infeasibility diagnosis on shipped instances."""

import pytest

from models.loader import load_instance
from optimizer.studies.explain import shadow_prices, what_binds
from optimizer.solving.pipeline import solve_instance
from tests.test_optimizer_hand import ideal_instance
from tests.test_placement import JOB, instance, site

BACKENDS = ["ortools", "pulp"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_binding_budget_is_detected(backend):
    free = solve_instance(ideal_instance(), backend=backend)
    capex = free.design.capex_usd["total"]
    budget = capex * 1.01  # 1% headroom: tight (under 2%)
    inst = ideal_instance(budget={"horizon_years": 1, "maintenance_pct_per_year": 0, "capex_usd": budget})
    sol = solve_instance(inst, backend=backend)
    binds = {b.limit: b for b in what_binds(inst, sol)}
    b = binds["capex budget"]
    assert b.tight and b.slack == pytest.approx(budget - capex, rel=1e-6)
    assert not binds["power cap"].tight  # 10 MW against ~0.85 MW
    assert binds["deadline of job toy-job"].slack == pytest.approx(10 - sol.jobs[0].days)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_more_mw_is_worth_the_energy_difference(backend):
    # The job must leave the cheap site when its cap is 10 kW short; 1 MW more brings it back and
    # saves exactly the energy price difference (0.06 $/kWh) on the job's facility power for a year.
    sites = [site("cheap", energy_usd_per_kwh=0.04), site("dear", energy_usd_per_kwh=0.10)]
    base = solve_instance(instance(sites, [JOB]), backend=backend)
    need_mw = base.design.site("cheap").facility_power_kw / 1000
    sites[0]["power_cap_mw"] = round(need_mw - 0.01, 3)
    inst = instance(sites, [JOB])
    moved = solve_instance(inst, backend=backend)
    prices = {p.limit: p for p in shadow_prices(inst, moved, backend=backend)}
    cheap = prices["power cap of site cheap"]
    assert cheap.resolve_delta == pytest.approx(-need_mw * 1000 * 8760 * 0.06, rel=1e-5)
    assert "would lower TCO by" in cheap.text()
    assert prices["power cap of site dear"].resolve_delta == pytest.approx(0, abs=1.0)
    binds = {b.limit: b for b in what_binds(inst, moved)}
    assert not binds["power cap of site dear"].tight


def test_explain_cli_on_shipped_instances():
    from typer.testing import CliRunner

    from optimizer.cli import app

    r = CliRunner().invoke(app, ["explain", "instances/three-jobs-budget.yaml"])
    assert r.exit_code == 0 and "What binds" in r.output and "capex budget" in r.output
    r = CliRunner().invoke(app, ["explain", "instances/infeasible-deadline-power.yaml"])
    assert r.exit_code == 3 and "raise the power cap by" in r.output


def test_every_fix_on_the_infeasible_instance_is_a_verified_design():
    from optimizer.studies.explain import find_fixes

    fixes = find_fixes(load_instance("instances/infeasible-deadline-power.yaml"))
    assert {f.limit for f in fixes} == {"power cap", "deadline of job gpt3-175b-rush"}
    assert all(f.verified and f.objective_value > 0 and f.needed > f.current for f in fixes)
