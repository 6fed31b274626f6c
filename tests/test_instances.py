"""Every shipped instance: validates, solves on both backends to the same objective, passes the verifier."""

import copy
from pathlib import Path

import pytest

from models.loader import load_instance
from optimizer.solving.pipeline import solve_instance
from optimizer.studies.explain import diagnose_solution
from optimizer.solving.verify import VerificationError, verify_solution

INSTANCES = sorted((Path(__file__).parent.parent / "instances").glob("*.yaml"))


@pytest.fixture(scope="module")
def solved():
    out = {}
    for path in INSTANCES:
        inst = load_instance(path)
        out[path.name] = (inst, {b: diagnose_solution(inst, solve_instance(inst, backend=b), b) for b in ("ortools", "pulp")})
    return out


def test_there_are_instances():
    assert len(INSTANCES) >= 4


@pytest.mark.parametrize("path", INSTANCES, ids=lambda p: p.name)
def test_backends_agree(solved, path):
    inst, sols = solved[path.name]
    ort, pulp = sols["ortools"], sols["pulp"]
    assert ort.status == pulp.status
    if path.name.startswith("infeasible"):
        assert ort.status == "infeasible" and ort.diagnosis and pulp.diagnosis
        return
    assert ort.status == "optimal"
    assert ort.verified and pulp.verified
    assert ort.objective_value == pytest.approx(pulp.objective_value, rel=1e-6)


@pytest.mark.parametrize("path", INSTANCES, ids=lambda p: p.name)
def test_every_report_renders(solved, path):
    """The terminal/markdown report, what binds and the HTML page of every shipped instance render."""
    from optimizer import api
    from optimizer.present.report import render_markdown
    from optimizer.studies.explain import what_binds

    inst, sols = solved[path.name]
    sol = sols["ortools"]
    text = render_markdown(sol, inst)
    assert inst.name in text
    if sol.design is not None:
        assert what_binds(inst, sol)
        assert "<svg" in api.render_html(api.Result(sol, inst))


def test_gpt3_lands_near_the_megatron_estimate(solved):
    inst, sols = solved["gpt3-175b-a100.yaml"]
    job = sols["ortools"].jobs[0]
    assert 900 <= job.accelerators <= 1200  # the paper: 1024 A100s
    assert job.tflops_per_gpu_hw == pytest.approx(140, rel=0.15)  # the paper: 140 TFLOP/s per GPU
    assert job.days <= 34


def test_infeasible_instance_names_the_power_cap(solved):
    _, sols = solved["infeasible-deadline-power.yaml"]
    text = "\n".join(sols["ortools"].diagnosis)
    assert "raise the power cap by 2.129 MW (2.000 MW -> 4.129 MW; facility.power_cap_mw)" in text
    assert "extend the deadline of job gpt3-175b-rush by" in text


def test_verifier_catches_tampering(solved):
    inst, sols = solved["three-jobs-budget.yaml"]
    good = sols["ortools"]
    verify_solution(inst, good)  # the real answer passes

    fewer_nodes = copy.deepcopy(good)
    site = fewer_nodes.design.sites[0]
    acc = next(iter(site.nodes))
    cool = next(iter(site.nodes[acc]))
    site.nodes[acc][cool] -= 1
    with pytest.raises(VerificationError, match="workloads need .* nodes, design buys"):
        verify_solution(inst, fewer_nodes)

    too_fast = copy.deepcopy(good)
    too_fast.jobs[0].dp //= 2  # half the data parallelism: reported days no longer hold
    with pytest.raises(VerificationError, match="reported .* days"):
        verify_solution(inst, too_fast)

    cheap = copy.deepcopy(good)
    cheap.design.capex_usd["network"] *= 0.5
    with pytest.raises(VerificationError, match="capex network"):
        verify_solution(inst, cheap)

    thin_fabric = copy.deepcopy(good)
    thin_fabric.design.fabrics[0].spines -= 1
    with pytest.raises(VerificationError, match="spines"):
        verify_solution(inst, thin_fabric)


def test_same_answer_every_run(solved):
    inst, sols = solved["llama3-70b-20mw.yaml"]
    again = solve_instance(inst)
    assert again.to_dict()["design"] == sols["ortools"].to_dict()["design"]
    assert again.jobs == sols["ortools"].jobs


def test_service_mix_beats_every_single_type(solved):
    inst, sols = solved["three-services-mix.yaml"]
    mix = sols["ortools"]
    types = {g.accelerator for s in mix.services for g in s.groups}
    assert len(types) >= 2
    singles = {}
    for acc in inst.catalog.accelerators:
        only = inst.model_copy(update={"catalog": inst.catalog.model_copy(
            update={"accelerators": {acc: inst.catalog.accelerators[acc]}})})
        sol = solve_instance(only)
        if sol.status == "optimal":
            singles[acc] = sol.objective_value
    assert singles and all(mix.objective_value < v * (1 - 1e-6) for v in singles.values()), singles


def test_services_meet_slos_and_verifier_catches_breaks(solved):
    inst, sols = solved["train-and-serve.yaml"]
    sol = sols["ortools"]
    for s in sol.services:
        assert s.served_rps >= s.demand_rps
        for g in s.groups:
            assert g.ttft_s <= s.ttft_slo_s and g.tpot_s <= s.tpot_slo_s
        assert s.cost_per_million_output_tokens_usd > 0

    slow = copy.deepcopy(sol)
    slow.services[0].groups[0].batch = 512  # a bigger decode batch: TPOT beyond 50 ms
    with pytest.raises(VerificationError, match="breaks the SLO"):
        verify_solution(inst, slow)

    short = copy.deepcopy(sol)
    short.services[0].groups[0].replicas -= 2  # the same traffic on fewer replicas
    with pytest.raises(VerificationError, match="more than its .* of capacity"):
        verify_solution(inst, short)

    unserved = copy.deepcopy(sol)
    g = unserved.services[0].groups[0]
    g.regions = {r: x * 0.9 for r, x in g.regions.items()}
    with pytest.raises(VerificationError, match="demand is"):
        verify_solution(inst, unserved)

    crowded = copy.deepcopy(sol)
    g = crowded.services[0].groups[0]
    g.replicas += 8 * (g.nodes + 1) // g.tp  # more accelerators than the nodes bought hold
    with pytest.raises(VerificationError, match="workloads need .* nodes, design buys"):
        verify_solution(inst, crowded)


EDGE = ("edge-for-tight-ttft.yaml", "placement-four-sites.yaml")


@pytest.mark.parametrize("name", [p.name for p in INSTANCES if not p.name.startswith("infeasible")])
def test_small_services_are_not_rounded_up_to_whole_nodes(solved, name):
    # Packing: replicas share nodes, so a service's replicas serve at most 3x its demand at the
    # edge instances (each edge site needs its own replica) and 1.5x at one site.
    inst, sols = solved[name]
    limit = 3.0 if name in EDGE else (1.5 if inst.sites is None else None)
    for s in sols["ortools"].services:
        if limit is not None:
            assert s.served_rps <= limit * s.demand_rps, (s.name, s.served_rps, s.demand_rps)


def test_rag_disaggregates_and_the_verifier_checks_both_pools(solved):
    inst, sols = solved["rag-long-prompt.yaml"]
    sol = sols["ortools"]
    groups = sol.services[0].groups
    assert {"prefill", "decode"} <= {g.role for g in groups}  # disaggregated pools pay (combined ones may join)
    for g in groups:
        # (1e-9: a group may run at exactly the load its SLO allows, found by bisection)
        assert g.ttft_p99_s <= 3.0 * (1 + 1e-9) and g.tpot_p99_s <= 0.050 * (1 + 1e-9) and g.utilization < 1
        if g.role == "prefill":
            assert 0.01 < g.kv_transfer_s < 0.2  # 2 GB over its share of 8 x 400 GbE
    no_decode = copy.deepcopy(sol)
    no_decode.services[0].groups = [g for g in groups if g.role != "decode"]
    with pytest.raises(VerificationError, match="prefill replicas pass .* to decode replicas"):
        verify_solution(inst, no_decode)
    crowded = copy.deepcopy(sol)
    pre = max((g for g in crowded.services[0].groups if g.role == "prefill"), key=lambda g: g.replicas)
    pre.replicas = max(1, pre.replicas // 2)  # the same prompts on half the prefill replicas
    with pytest.raises(VerificationError, match="breaks the SLO|capacity"):
        verify_solution(inst, crowded)
