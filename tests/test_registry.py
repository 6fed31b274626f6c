"""A new objective is one registry entry (models.metrics): schema, MIP, tie-break, verifier, report,
Pareto axis and formatting all read it. Here a toy objective, least network capex, is added in the
test alone and solved end to end on both backends."""

from __future__ import annotations

import pytest

from models import metrics
from models.loader import instance_from_dict
from models.metrics import Metric

from optimizer import fmt
from optimizer.mip.audit import VerificationError
from optimizer.present.report import summary_lines
from optimizer.solving.measure import metric_value
from optimizer.solving.pipeline import solve_instance
from optimizer.solving.verify import verify_solution
from optimizer.studies.pareto import parse_axis

DOC = {
    "name": "toy-objective",
    "catalog": {"accelerators": ["h100-sxm"], "fabrics": ["ib-ndr-400g", "roce-400g"], "storage": ["flash-pfs"]},
    "workloads": [{"name": "j", "model": "llama3-8b", "tokens": 5e11, "deadline_days": 30, "global_batch": 512}],
    "facility": {"power_cap_mw": 10},
}


@pytest.fixture
def network_objective():
    m = metrics.register(Metric("network_capex_usd", "USD", "network capex", "$M", 1e-6, "capex_network_musd", 1e-6,
                                objective="min_network_capex", tie_break="min_tco", axis="network_capex"))
    yield m
    del metrics.METRICS[m.name]


@pytest.mark.parametrize("backend", ["ortools", "pulp"])
def test_a_registered_objective_solves_verifies_and_reports(network_objective, backend):
    inst = instance_from_dict(dict(DOC, objective="min_network_capex"))  # the schema accepts it
    sol = solve_instance(inst, backend=backend)
    assert sol.status == "optimal" and sol.verified
    # The objective is the network capex line of the verified design, and no design is cheaper in it:
    assert sol.objective_value == pytest.approx(sol.design.capex_usd["network"], rel=1e-6)
    tco = solve_instance(instance_from_dict(DOC), backend=backend)
    assert sol.objective_value <= tco.design.capex_usd["network"] * (1 + 1e-9)
    # ... then the cheapest TCO at that network capex (its tie-break), so never worse than TCO's own optimum
    # by more than the network saving it buys:
    assert sol.design.tco_usd >= tco.design.tco_usd * (1 - 1e-9)
    assert metric_value(sol, "network_capex_usd") == pytest.approx(sol.objective_value)
    assert fmt.objective("min_network_capex", 2.5e6) == "$2.50M"
    assert any("$" in line for line in summary_lines(sol, inst))
    axis = parse_axis("network_capex", inst)
    assert (axis.metric, axis.objective, axis.unit) == ("network_capex_usd", "min_network_capex", "$M")
    # The verifier recomputes it too: a wrong objective value is caught.
    sol.objective_value *= 1.1
    with pytest.raises(VerificationError, match="objective min_network_capex"):
        verify_solution(inst, sol)


def test_an_unregistered_objective_is_invalid_input():
    from models.loader import InstanceError

    with pytest.raises(InstanceError, match="objective: got 'min_network_capex', expected: one of min_tco"):
        instance_from_dict(dict(DOC, objective="min_network_capex"))
