"""dcopt pareto: a front whose points are enumerated by hand, every point verified, dominance, CSV and PNG."""

import copy
import csv
import io
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from models.loader import instance_from_dict
from optimizer.cli import app
from optimizer.studies.pareto import ParetoError, nondominated, pareto_front

from .test_sweep import SLOW_ACC_DAYS, two_accelerators

NODE_PRICE = 100_000


def one_accelerator(deadline_days=30) -> dict:
    """The sweep tests' idealised instance with only the 10 TFLOP/s `slow` accelerator, tp=pp=1 pinned:
    a layout is its data-parallel degree dp, on dp/8 nodes, training in SLOW_ACC_DAYS / dp days."""
    raw = two_accelerators(slow_price=NODE_PRICE)
    del raw["catalog"]["accelerators"]["fast"]
    raw["name"] = "one-accelerator"
    raw["workloads"][0]["deadline_days"] = deadline_days
    return raw


def hand_front(deadline_days=30, budget_nodes=None):
    """(dp, nodes, days, TCO less storage) of every design on the front: dp divides the global batch
    1536 = 2^9 x 3 and meets the deadline; more accelerators are always faster, so every such dp is
    on the front. TCO = nodes x ($100,000 + a $1,000 port) + the $10,000 switch + storage (a few
    dollars of flash for checkpoints and for reading tokens, which grows with training speed)."""
    divisors = [d for d in range(1, 1537) if 1536 % d == 0]
    out = []
    for dp in divisors:
        days = SLOW_ACC_DAYS / dp
        nodes = -(-dp // 8)
        if days <= deadline_days and (budget_nodes is None or nodes <= budget_nodes):
            out.append((dp, nodes, days, nodes * (NODE_PRICE + 1_000) + 10_000))
    return out


def test_hand_front_is_what_we_think():
    # 30 days needs dp >= 4357.6 / 30 = 145.3: the divisors 192, 256, 384, 512, 768 and 1536.
    assert SLOW_ACC_DAYS == pytest.approx(4357.6, abs=0.1)
    assert [p[0] for p in hand_front()] == [192, 256, 384, 512, 768, 1536]
    assert [p[1] for p in hand_front()] == [24, 32, 48, 64, 96, 192]


def _assert_points(front, expected):
    got = [(p.solution.jobs[0].dp, p.solution.design.total_nodes("slow"), p.y, p.x) for p in front.points]
    # By increasing TCO: fewest nodes (slowest) first.
    expected = sorted(expected, key=lambda e: e[3])
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for p, (_, _, days, tco), (_, _, days_h, tco_h) in zip(front.points, got, expected):
        storage = p.solution.design.capex_usd["storage"]
        assert 0 < storage < 100
        assert days == pytest.approx(days_h, rel=1e-9)
        assert tco == pytest.approx(tco_h + storage, abs=0.01)


def test_every_point_of_a_hand_front():
    front = pareto_front(instance_from_dict(one_accelerator()), x="tco", y="time_to_train:job", points=None)
    _assert_points(front, hand_front())
    assert all(p.solution.status == "optimal" and p.solution.verified and p.proven for p in front.points)
    assert [p.label for p in front.points] == ["24 nodes slow", "32 nodes slow", "48 nodes slow", "64 nodes slow", "96 nodes slow",
                                               "192 nodes slow"]
    assert front.duplicates == front.dominated == 0


def test_grid_finds_the_points_its_bounds_reach():
    # y from 2.84 days (dp 1536) to 22.70 (dp 192); 3 points put bounds at 22.70, 12.77 and 2.84 days:
    # the cheapest design within 12.77 days is dp 384 (11.35 days), so dp 256, 512 and 768 are stepped over.
    hand = hand_front()
    y_lo, y_hi = hand[-1][2], hand[0][2]
    mid = (y_lo + y_hi) / 2
    assert hand_front(deadline_days=mid)[0][0] == 384
    front = pareto_front(instance_from_dict(one_accelerator()), x="tco", y="time_to_train", points=3)
    _assert_points(front, [h for h in hand if h[0] in (192, 384, 1536)])
    assert front.grid == pytest.approx([y_hi, mid, y_lo])
    assert all(p.proven for p in front.points)


def test_multi_job_time_by_bisection():
    # A second, identical job makes min_time unavailable (it would minimise the sum); the days of
    # `job` are then minimised by bisection. The other job stays at its cheapest: dp 192, 24 nodes.
    raw = one_accelerator()
    other = copy.deepcopy(raw["workloads"][0])
    other["name"] = "other"
    raw["workloads"].append(other)
    front = pareto_front(instance_from_dict(raw), x="tco", y="time_to_train:job", points=None)
    assert front.y.objective is None
    got = [(p.solution.jobs[0].dp, p.solution.jobs[1].dp) for p in front.points]
    assert got == [(dp, 192) for dp, *_ in hand_front()]
    for p, (dp, nodes, days, tco) in zip(front.points, hand_front()):
        assert p.y == pytest.approx(days, rel=1e-9)
        storage = p.solution.design.capex_usd["storage"]
        assert p.x == pytest.approx(tco + 24 * (NODE_PRICE + 1_000) + storage, abs=0.01)
        assert p.proven


def test_power_front_and_axis_errors():
    inst = instance_from_dict(one_accelerator())
    # Cost and power both grow with nodes: one design is best on both axes.
    front = pareto_front(inst, x="capex", y="power")
    assert len(front.points) == 1 and front.points[0].solution.design.total_nodes("slow") == 24
    with pytest.raises(ParetoError, match="unknown axis 'speed'"):
        pareto_front(inst, x="tco", y="speed")
    with pytest.raises(ParetoError, match="no training job 'nope'"):
        pareto_front(inst, x="tco", y="time_to_train:nope")
    with pytest.raises(ParetoError, match="same metric"):
        pareto_front(inst, x="tco", y="tco_usd")


def test_dominated_and_duplicate_points_are_removed():
    P = lambda x, y: SimpleNamespace(x=x, y=y)  # noqa: E731
    pts = [P(3, 1), P(1, 5), P(2, 6), P(2, 3), P(1, 5 * (1 + 1e-9)), P(4, 1), P(5, 0.5)]
    kept, dup, dom = nondominated(pts)
    assert [(p.x, p.y) for p in kept] == [(1, 5), (2, 3), (3, 1), (5, 0.5)]
    assert (dup, dom) == (1, 2)  # (1, 5+eps) repeats (1, 5); (2, 6) and (4, 1) are dominated


@pytest.fixture()
def instance_file(tmp_path):
    p = tmp_path / "one.yaml"
    p.write_text(yaml.safe_dump(one_accelerator()))
    return p


def test_cli_table_csv_png(instance_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out_csv, png = tmp_path / "front.csv", tmp_path / "front.png"
    r = CliRunner().invoke(app, ["pareto", str(instance_file), "--x", "tco", "--y", "time_to_train:job", "--all",
                                 "--csv", str(out_csv), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "Pareto front of one-accelerator" in r.output and "192 nodes slow" in r.output
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [(int(x["job.accelerators"]), x["status"], x["verified"]) for x in rows] == [
        (dp, "optimal", "True") for dp, *_ in hand_front()]
    assert all(0 < float(x["tco_usd"]) - h[3] < 100 for x, h in zip(rows, hand_front()))  # storage: a few dollars
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_errors(instance_file):
    r = CliRunner().invoke(app, ["pareto", str(instance_file), "--y", "time_to_train:nope"])
    assert r.exit_code == 2 and "no training job 'nope' (jobs: job)" in r.output
    raw = one_accelerator(deadline_days=1)  # no layout meets a 1-day deadline
    instance_file.write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(app, ["pareto", str(instance_file), "--y", "time_to_train"])
    assert r.exit_code == 3 and "no design satisfies the instance, so there is no front" in r.output
