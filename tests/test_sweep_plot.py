"""The sweep plot: values without a design sit on the x axis, off the objective's scale; axes say what
the swept parameter is in words and units."""

from pathlib import Path

import pytest

from optimizer import api
from optimizer.present.plots import param_label

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("path, label", [
    ("facility.power_cap_mw", "power cap (MW)"),
    ("sites[campus].power_cap_mw", "power cap at campus (MW)"),
    ("catalog.accelerators.b200.node_price_usd", "b200 node price ($)"),
    ("workloads[gpt3].deadline_days", "deadline of gpt3 (days)"),
    ("workloads[0].deadline_days", "deadline of workload 0 (days)"),
    ("facility.energy_usd_per_kwh", "energy ($/kWh)"),
    ("budget.carbon_price_usd_per_t", "carbon price ($/tCO2)"),
    ("budget.capex_usd", "capex budget ($)"),
    ("facility.pue", "PUE"),
])
def test_param_label(path, label):
    assert param_label(path) == label


def test_no_design_points_are_off_the_objective_axis():
    pytest.importorskip("matplotlib")
    from optimizer.present.plots import sweep_figure

    res = api.run_sweep(ROOT / "instances/infeasible-deadline-power.yaml", "facility.power_cap_mw", [2, 3, 4.5, 5])
    assert [r.has_design for r in res.rows] == [False, False, True, True]
    fig = sweep_figure(res)
    top, bottom = fig.axes
    none = next(ln for ln in top.get_lines() if ln.get_label().startswith("no design"))
    assert list(none.get_xdata()) == [2, 3]
    # Drawn in axes units on y (0 = the axis line), not at any TCO.
    x0, y0 = none.get_transform().transform((2, 0.0))
    ax0 = top.transAxes.transform((0, 0))
    assert y0 == pytest.approx(ax0[1])
    designs = next(ln for ln in top.get_lines() if ln.get_label() == "optimal design")
    assert list(designs.get_xdata()) == [4.5, 5]
    assert bottom.get_xlabel().startswith("power cap (MW)")
    assert top.get_ylabel() == "TCO ($M)"
