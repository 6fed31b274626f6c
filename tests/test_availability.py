"""Hot spares, facility tiers and geo-redundant serving, worked by hand on both backends."""

import copy

import pytest

from models.facility import tier_usd_per_mw
from models.loader import InstanceError, instance_from_dict
from optimizer.solving.pipeline import solve_instance
from optimizer.solving.verify import VerificationError, verify_solution

from .test_placement import JOB, instance, site
from .test_sweep import LEGACY_FLASH

BACKENDS = ["ortools", "pulp"]


def test_tier_costs_by_hand():
    # $11.7M/MW is the N+1 average; 53% of it is plant, which scales with plant per MW (1, 1.25, 2).
    assert tier_usd_per_mw("N") == pytest.approx(11.7e6 * (0.47 + 0.53 * 1.0 / 1.25))  # 10.46M
    assert tier_usd_per_mw("N+1") == pytest.approx(11.7e6)
    assert tier_usd_per_mw("2N") == pytest.approx(11.7e6 * (0.47 + 0.53 * 2.0 / 1.25))  # 15.42M


@pytest.mark.parametrize("backend", BACKENDS)
def test_facility_capex_grows_with_the_tier(backend):
    tco, it = {}, {}
    for tier in ("N", "N+1", "2N"):
        sol = solve_instance(instance([site("only", redundancy=tier, facility_capex_usd_per_mw=None)], [JOB]), backend=backend)
        assert sol.verified
        x = sol.design.sites[0]
        it[tier] = x.it_power_kw
        assert x.capex_usd["facility"] == pytest.approx(tier_usd_per_mw(tier) * x.it_power_kw / 1000, rel=1e-6)
        tco[tier] = sol.objective_value
    # Same design at every tier (one pinned layout): TCO differs by the facility line alone.
    assert it["N"] == pytest.approx(it["2N"])
    assert tco["N"] < tco["N+1"] < tco["2N"]
    assert tco["2N"] - tco["N"] == pytest.approx((tier_usd_per_mw("2N") - tier_usd_per_mw("N")) * it["N"] / 1000, rel=1e-6)
    # A site's own figure overrides its tier.
    own = solve_instance(instance([site("only", redundancy="2N", facility_capex_usd_per_mw=1e6)], [JOB]), backend=backend)
    assert own.design.sites[0].capex_usd["facility"] == pytest.approx(1e6 * it["N"] / 1000, rel=1e-6)


def test_hot_spares_are_bought_and_checked():
    sol = solve_instance(instance([site("only")], [JOB]))
    job = sol.jobs[0]
    # Poisson mean 64 nodes x 8 x 1.479e-5 x 48 h = 0.363: P(more than 3 out) = 5.4e-4 <= 1e-3.
    assert (job.nodes, job.spare_nodes) == (64, 3)
    assert sol.design.total_nodes("toy") == 67
    short = copy.deepcopy(sol)
    short.design.sites[0].nodes["toy"]["air"] -= 3
    with pytest.raises(VerificationError, match="workloads need 67 nodes, design buys 64"):
        verify_solution(instance([site("only")], [JOB]), short)


def _chat(rps, **extra):
    return {"name": "chat", "kind": "inference", "model": "llama3-8b", "requests_per_s": rps, "input_tokens": 300,
            "output_tokens": 100, "ttft_s": 1.0, "tpot_s": 0.05, "accelerators": ["b200"], **extra}


def _serving(sites, svc):
    raw = {"name": "geo", "catalog": {"accelerators": ["b200"], "fabrics": ["roce-400g"], "storage": {"flash-pfs": LEGACY_FLASH}},
           "workloads": [svc], "sites": sites, "budget": {"horizon_years": 1, "maintenance_pct_per_year": 0}}
    return instance_from_dict(raw, "geo")


def _unit_rps():
    """Requests/s of the best serving node (one unit) for the chat service on B200."""
    from optimizer.mip.data import build_data
    from optimizer.solving.pipeline import prepare_services

    inst = _serving([site("a"), site("b")], _chat(1.0))
    d = build_data(inst, [], prepare_services(inst))
    # Replicas pack into nodes: a node's requests/s is a replica's times the replicas one node holds.
    return max(lay.requests_per_s * (lay.per_node // lay.slots) for lay in d.services[0].layouts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_survive_site_loss_on_three_sites_by_hand(backend):
    u = _unit_rps()
    sites = [site("a", energy_usd_per_kwh=0.03), site("b", energy_usd_per_kwh=0.05), site("c", energy_usd_per_kwh=0.07)]
    # 0.9 of a node's requests/s: one node at the cheapest site; surviving a site loss needs a second
    # node elsewhere (the next cheapest site), since losing either site leaves the other.
    plain = solve_instance(_serving(sites, _chat(0.9 * u)), backend=backend)
    assert [(g.site, g.nodes) for g in plain.services[0].groups] == [("a", 1)]
    safe = solve_instance(_serving(sites, _chat(0.9 * u, survive_site_loss=True)), backend=backend)
    assert safe.verified and sorted((g.site, g.nodes) for g in safe.services[0].groups) == [("a", 1), ("b", 1)]
    # 1.5 nodes of demand: for every lost site the other two hold >= 2 nodes, so summing over the
    # three losses 2 x total >= 6: three nodes, one per site (two sites of 2 nodes would be four).
    safe = solve_instance(_serving(sites, _chat(1.5 * u, survive_site_loss=True)), backend=backend)
    assert safe.verified and sorted((g.site, g.nodes) for g in safe.services[0].groups) == [("a", 1), ("b", 1), ("c", 1)]
    # The verifier removes each site in turn: without c's node, losing a (or b) leaves one node.
    inst = _serving(sites, _chat(1.5 * u, survive_site_loss=True))
    cut = copy.deepcopy(safe)
    svc = cut.services[0]
    svc.groups = [g for g in svc.groups if g.site != "c"]
    with pytest.raises(VerificationError, match="after the loss of site a only .* req/s can be served"):
        verify_solution(inst, cut)


def test_survive_site_loss_needs_two_sites():
    raw = {"name": "one", "workloads": [_chat(1.0, survive_site_loss=True)], "facility": {"power_cap_mw": 1}}
    with pytest.raises(InstanceError, match=r"survive_site_loss: true needs at least two sites"):
        instance_from_dict(raw, "one")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backup_copies_by_hand(backend):
    from models.candidates import checkpoint_tb
    from models.presets import resolve_model

    job = {**JOB, "dataset_tb": 10, "backup_copies": 2}
    from models.schema import ModelDims

    ckpt = checkpoint_tb(resolve_model(ModelDims(**job["model"])))
    usable = 2 * (10 + 2 * ckpt)  # two copies of the dataset and the 2 retained checkpoints
    gbps = 2 * ckpt * 1000 / 3600  # each checkpoint copied twice within the pinned 1 h interval
    # flash-pfs, the only tier (1.25 raw TB per usable TB, 1 GB/s per raw TB, $250 per raw TB): bought by
    # the usable TB at 1.25 GB/s and $312.5 per usable TB.
    raw = max(usable, gbps / 1.25)
    sol = solve_instance(instance([site("only")], [job]), backend=backend)
    assert sol.verified
    x = sol.design.sites[0]
    assert x.backup_tb == {"flash-pfs": pytest.approx(raw, rel=1e-6)}
    assert x.capex_usd["backup"] == pytest.approx(raw * 250 * 1.25, rel=1e-6)  # no cooling capex in these sites
    # Two sites: the copies go to the site the job is not at, which then opens.
    two = solve_instance(instance([site("a", energy_usd_per_kwh=0.03), site("b")], [job]), backend=backend)
    assert two.verified and two.jobs[0].site == "a"
    assert two.design.site("b").backup_tb == {"flash-pfs": pytest.approx(raw, rel=1e-6)} and not two.design.site("a").backup_tb
    cut = copy.deepcopy(two)
    cut.design.site("b").backup_tb = {}
    with pytest.raises(VerificationError, match="backup copies need .* usable TB at other sites"):
        verify_solution(instance([site("a", energy_usd_per_kwh=0.03), site("b")], [job]), cut)
