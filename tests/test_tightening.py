"""Valid inequalities and symmetry breaking (docs/mip.md): each cuts an LP point (or a relabelled
design) the plain model allowed, and the MIP optimum stays the same on both backends."""

import pytest

from optimizer.mip.backends import solve as run
from optimizer.mip.build import objective_expr
from optimizer.solving.pipeline import solve_instance

from .test_placement import BACKENDS, JOB, _built, instance, site

NDR = "ib-ndr-400g"


def _lp(inst, monkeypatch=None, drop=None):
    """The LP relaxation's optimum and values, optionally without one family's rows."""
    if drop is not None:
        monkeypatch.setattr(*drop)
    d, m, v = _built(inst)
    m.minimize(objective_expr(d, v, "min_tco"))
    res = run(m.relaxation(), backend="ortools-highs")
    return res.objective, res.values, m, v


def test_depth_for_job_cuts_the_mixed_depth_lp_point(monkeypatch):
    import optimizer.mip.families.fabric as fabric

    # Each job: (64 + 3 spare) nodes x 8 ports = 536 endpoints, more than one radix-64 switch holds,
    # so choose[job,...,site] <= fabric_tiers[2] + fabric_tiers[3] at each site. Each site (833 kW
    # of IT) holds one job (670 kW), so a site's fabric is capped at 2 x 536 ports but gets 536.
    inst = instance([site("east", power_cap_mw=1), site("west", power_cap_mw=1, energy_usd_per_kwh=0.06)],
                    [dict(JOB, name="a"), dict(JOB, name="b")])
    with_cut, vals, m, v = _lp(inst)
    rows = {c.name: c for c in m.constraints if c.name.startswith("depth_for_job")}
    assert sorted(rows) == [f"depth_for_job[job={j},fabric={NDR},site={s},deeper_than=1]" for j in "ab"
                            for s in ("east", "west")]
    without, old, _, v0 = _lp(inst, monkeypatch, (fabric, "_depth_for_job", lambda *a: None))
    # The old LP puts job a wholly at east and builds there 53 % of a 2-tier fabric (its cap is
    # 2 x 536 ports) beside 47 % of a one-switch depth, which takes 64 x 47 % of the job's ports.
    t1 = old[v0.tiers[NDR, "east", 1].index]
    assert old[v0.choose["a", 0, "east"].index] == pytest.approx(1)
    assert t1 > 0.4 and old[v0.endpoints[NDR, "east", 1].index] == pytest.approx(64 * t1)
    # That point breaks a's new row at east by t1 (choose 1 > fabric_tiers[2] = 1 - t1), and the
    # bound rises (by about 0.06 %: the LP then splits both jobs over the sites instead).
    assert rows[f"depth_for_job[job=a,fabric={NDR},site=east,deeper_than=1]"].violation(old) == pytest.approx(t1)
    assert with_cut > without * (1 + 3e-4)
    monkeypatch.undo()
    for backend in BACKENDS:
        sol = solve_instance(inst, backend=backend)
        monkeypatch.setattr(fabric, "_depth_for_job", lambda *a: None)
        plain = solve_instance(inst, backend=backend)
        monkeypatch.undo()
        assert sol.verified and sol.objective_value == pytest.approx(plain.objective_value, rel=1e-9)
        assert [f.tiers for s in ("east", "west") for f in sol.design.site(s).fabrics] == [2, 2]


def _twins():
    # Two identical sites of 1 MW (833 kW of IT at PUE 1.2), two identical jobs of 670 kW each:
    # one job per site, both sites open, and two labellings of that design.
    sites = [site("east", power_cap_mw=1, site_capex_usd=1e6), site("west", power_cap_mw=1, site_capex_usd=1e6)]
    return instance(sites, [dict(JOB, name="a"), dict(JOB, name="b")])


def test_identical_sites_and_jobs_are_ordered():
    from optimizer.mip.families.jobs import identical_jobs
    from optimizer.mip.families.sites import identical_sites

    from optimizer.mip.build import build_model

    d = _built(_twins())[0]
    assert not {c.name for c in _built(_twins())[1].constraints if "order" in c.name}  # only on request
    m, v = build_model(d, symmetry=True)
    assert identical_sites(d) == [["east", "west"]] and identical_jobs(d) == [["a", "b"]]
    names = {c.name for c in m.constraints}
    assert {"site_order[site=east,next=west]", "site_load_order[site=east,next=west]", "job_order[job=a,next=b]"} <= names
    m.minimize(objective_expr(d, v, "min_tco"))
    x = list(run(m, backend="ortools").values)
    assert not m.violations(x)
    # The same design with the jobs swapped (b at east, a at west) is now cut off by job_order.
    for k in range(len(d.jobs[0].candidates)):
        for s in ("east", "west"):
            ia, ib = v.choose["a", k, s].index, v.choose["b", k, s].index
            x[ia], x[ib] = x[ib], x[ia]
    assert [w.name for w in m.violations(x)] == ["job_order[job=a,next=b]"]
    # A different site differs in data: no group.
    d2, _, _ = _built(instance([site("east", power_cap_mw=1), site("west", power_cap_mw=1.1)], [JOB]))
    assert identical_sites(d2) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_symmetry_breaking_keeps_the_optimum(backend, monkeypatch):
    import optimizer.mip.build as build

    sol = solve_instance(_twins(), backend=backend)  # symmetry rows on: the objective is a total
    assert sol.verified and [j.site for j in sol.jobs] == ["east", "west"]  # a first, at the first site
    monkeypatch.setattr(build, "FAMILIES", tuple(f for f in build.FAMILIES if f.name not in ("job_symmetry", "site_symmetry")))
    plain = solve_instance(_twins(), backend=backend)
    assert plain.verified and sorted(j.site for j in plain.jobs) == ["east", "west"]
    assert sol.objective_value == pytest.approx(plain.objective_value, rel=1e-9)


def test_storage_cluster_for_job_lifts_the_lp_to_a_whole_cluster(monkeypatch):
    import optimizer.mip.families.storage as storage
    from models.loader import instance_from_dict

    from .test_placement import IDEAL

    # Shared storage only as whole systems: flash-pfs (4 units at least, $450k each) or hdd-object
    # (3 at least, $180k each). The toy job's dataset and checkpoints need far less than one unit,
    # so the cheapest design buys 3 hdd units ($0.54M); the plain LP a sliver of a unit (the
    # restart reload's read bandwidth: about 4 % of the cluster's price).
    toy = {"peak_bf16_tflops": 10, "hbm_gb": 1000, "hbm_bw_tbs": 1, "scaleup_domain": 8, "scaleup_bw_gbs": 100,
           "accelerators_per_node": 8, "node_power_kw": 10, "node_price_usd": 100_000, "node_rack_units": 8}
    inst = instance_from_dict({
        "name": "cluster", "workloads": [JOB], "sites": [site("only")],
        "catalog": {"accelerators": {"toy": toy}, "fabrics": [NDR], "storage": ["flash-pfs", "hdd-object"],
                    "calibration": IDEAL},
        "budget": {"horizon_years": 1, "maintenance_pct_per_year": 0}}, "cluster")

    def capex(drop):
        if drop:
            monkeypatch.setattr(storage, "_cluster_for_job", lambda *a: None)
        _, x, m, v = _lp(inst)
        monkeypatch.undo()
        return x[v.total("capex_storage_musd", site="only").index], m

    lifted, m = capex(False)
    plain, _ = capex(True)
    assert "storage_cluster_for_job[job=job,site=only]" in {c.name for c in m.constraints}
    assert lifted == pytest.approx(3 * 0.18, rel=1e-9) and plain < 0.05
    for backend in BACKENDS:
        sol = solve_instance(inst, backend=backend)
        monkeypatch.setattr(storage, "_cluster_for_job", lambda *a: None)
        old = solve_instance(inst, backend=backend)
        monkeypatch.undo()
        assert sol.verified and sol.design.site("only").storage_units == {"hdd-object": 3}
        assert sol.objective_value == pytest.approx(old.objective_value, rel=1e-9)


def test_serving_units_rounding_cuts_the_small_replica_point(monkeypatch):
    import dataclasses

    import optimizer.mip.families.serving as serving
    from optimizer.mip.build import build_model

    from .test_optimizer_hand import _solve, serving_data

    # 10 req/s from replicas of 4 req/s ($100k, layout a) or 1 req/s ($30k, layout b), one per node.
    # Integer: 2a + 2b = $260k (3a $300k, 1a + 6b $280k, 10b $300k). The floor u_a + u_b >= 3 with
    # 4 u_a + u_b >= 10 leaves the LP at u_a = 7/3, u_b = 2/3: $253,333. The rounding row
    # (b = 10/4 = 2.5, f = 0.5): u_a + min(1, 0.25 / 0.5) u_b >= 3, which with the capacity row
    # gives u_a = u_b = 2: the LP bound is the integer optimum.
    data = serving_data(30_000)
    svc = data.services[0]
    data = dataclasses.replace(data, services=[dataclasses.replace(
        svc, layouts=[svc.layouts[0], dataclasses.replace(svc.layouts[1], requests_per_s=1.0)])])

    def lp():
        m, v = build_model(data)
        m.minimize(objective_expr(data, v, "min_tco"))
        return m, run(m.relaxation(), backend="ortools-highs").objective * 1e6

    m, lifted = lp()
    row = m.constraint("serving_units_rounding[svc=chat]")
    assert row.rhs == 3 and sorted(row.coefs.values()) == [0.5, 1.0]
    assert lifted == pytest.approx(260_000, abs=0.01)
    for backend in BACKENDS:
        res, v = _solve(data, backend)
        assert res.objective * 1e6 == pytest.approx(260_000, abs=0.01)
        assert [round(res.values[v.units["chat", k, "dc"].index]) for k in (0, 1)] == [2, 2]
    monkeypatch.setattr(serving, "_rounding_cut", lambda *a: None)
    assert lp()[1] == pytest.approx(760_000 / 3, abs=0.01)


def test_a_bound_on_one_job_turns_symmetry_breaking_off():
    # days:a singles out a: ordering a before its twin b could then cut off the optimum.
    from optimizer.solving.pipeline import solve_mip

    d = _built(_twins())[0]
    rows = lambda m: {c.name for c in m.constraints if c.name.startswith(("job_order", "site_order"))}  # noqa: E731
    assert rows(solve_mip(d, "min_tco", "ortools", None, None)[2]) == {"job_order[job=a,next=b]",
                                                                       "site_order[site=east,next=west]"}
    assert rows(solve_mip(d, "min_tco", "ortools", None, None, bounds={"days:a": 1000})[2]) == set()
