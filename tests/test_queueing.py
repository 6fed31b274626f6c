"""Queueing model of a serving replica: exact M/M/1 and M/D/1 limits, and the discrete-event simulation."""

import math

import numpy as np
import pytest

from models.perf.queueing import (
    ReplicaTimes, capacity_rps, count_quantile, erlang_c, latency, max_rate_for_slo, mg1_tail,
)
from models.perf.serving_sim import simulate_replica


def md1_wait_cdf(t, rho, D=1.0):
    """Exact M/D/1 waiting-time CDF (Erlang 1909 / Crommelin 1932)."""
    lam = rho / D
    return (1 - rho) * sum((lam * (k * D - t)) ** k / math.factorial(k) * math.exp(-lam * (k * D - t))
                           for k in range(int(math.floor(t / D)) + 1))


def md1_wait_quantile(p, rho):
    lo, hi = 0.0, 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if md1_wait_cdf(mid, rho) < p else (lo, mid)
    return hi


def prefill_only(W=1.0, scv=0.0):
    # No decode work and (practically) unbounded slots: the prefill queue alone, M/G/1.
    return ReplicaTimes(prefill_work_s=W, step_fixed_s=0.0, step_per_seq_s=0.0, batch=4096, output_tokens=1,
                        prefill_scv=scv)


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_mm1_limit_is_exact(rho):
    rt = prefill_only(W=1.0, scv=1.0)
    lat = latency(rt, rho)
    # M/M/1: mean sojourn 1/(1-rho); the wait exceeds t with probability rho e^{-(1-rho) t}, and TTFT
    # is the wait's quantile plus the mean prefill (1).
    assert lat["ttft_mean_s"] == pytest.approx(1 / (1 - rho), rel=1e-9)
    assert lat["ttft_p99_s"] - 1 == pytest.approx(math.log(100 * rho) / (1 - rho), rel=1e-6)
    assert lat["ttft_p50_s"] - 1 == pytest.approx(max(0.0, math.log(2 * rho) / (1 - rho)), abs=1e-6)
    theta, C = mg1_tail(rho, 1.0, 1.0)
    assert theta == pytest.approx(1 - rho, rel=1e-9) and C == pytest.approx(rho, rel=1e-9)


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_md1_limit(rho):
    lat = latency(prefill_only(W=1.0, scv=0.0), rho)
    # Mean: Pollaczek-Khinchine for deterministic service, exact.
    assert lat["ttft_mean_s"] == pytest.approx(1 + rho / (2 * (1 - rho)), rel=1e-9)
    # p99: within 1 % of the exact M/D/1 distribution; p50 exact when the median wait is 0 (rho = 0.5).
    assert lat["ttft_p99_s"] - 1 == pytest.approx(md1_wait_quantile(0.99, rho), rel=0.01)
    if rho == 0.5:
        assert lat["ttft_p50_s"] == pytest.approx(1.0, abs=1e-9)
    else:
        assert lat["ttft_p50_s"] - 1 == pytest.approx(md1_wait_quantile(0.5, rho), rel=0.05)


def test_md1_cramer_lundberg_root_by_hand():
    # rho = 0.5, D = 1: theta solves 0.5 (e^theta - 1) = theta.
    theta, C = mg1_tail(0.5, 1.0, 0.0)
    assert 0.5 * (math.exp(theta) - 1) == pytest.approx(theta, rel=1e-9)
    assert C == pytest.approx(0.5 / (0.5 * math.exp(theta) - 1), rel=1e-9)


def test_capacity_and_mean_tpot_by_hand():
    rt = ReplicaTimes(prefill_work_s=0.05, step_fixed_s=0.02, step_per_seq_s=0.0002, batch=64, output_tokens=100)
    cap = 1 / (0.05 + 100 * (0.02 + 0.0002 * 64) / 64)
    assert capacity_rps(rt) == pytest.approx(cap, rel=1e-12)
    lat = latency(rt, 0.5 * cap)
    assert lat["utilization"] == pytest.approx(0.5)
    lam = 0.5 * cap
    assert lat["tpot_mean_s"] == pytest.approx(0.02 / (1 - lam * 0.05 - 0.0002 * lam * 100), rel=1e-12)
    # At full load the mean batch is the cap and TPOT is the full-batch formula step + beta * W / o.
    full = latency(rt, cap * (1 - 1e-9))
    assert full["mean_batch"] == pytest.approx(64, rel=1e-6)
    assert full["tpot_mean_s"] == pytest.approx(0.02 + 0.0002 * 64 + 64 * 0.05 / 100, rel=1e-6)
    assert np.isinf(latency(rt, cap)["ttft_p99_s"])


def test_erlang_c_and_count_quantile_by_hand():
    # M/M/2 with offered load 1: P(wait) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)
    assert erlang_c(1, 0.7) == pytest.approx(0.7, rel=1e-12)
    assert count_quantile(0.5, 100.0) == pytest.approx(100 - 1 / 6, rel=1e-12)


def test_max_rate_for_slo_inverts_latency():
    rt = ReplicaTimes(prefill_work_s=0.05, step_fixed_s=0.02, step_per_seq_s=0.0002, batch=64, output_tokens=100)
    r = float(max_rate_for_slo(rt, ttft_p99_s=0.5, tpot_p99_s=0.06))
    cap = float(capacity_rps(rt))
    assert 0 < r < cap
    at, above = latency(rt, r), latency(rt, r * 1.01)
    assert at["ttft_p99_s"] <= 0.5 + 1e-9 and at["tpot_p99_s"] <= 0.06 + 1e-9
    assert above["ttft_p99_s"] > 0.5 or above["tpot_p99_s"] > 0.06
    assert float(max_rate_for_slo(rt)) == pytest.approx(cap)
    assert float(max_rate_for_slo(rt, tpot_p99_s=0.019)) == 0.0  # below one bare decode step
    # The round trip counts against the TTFT SLO.
    assert float(max_rate_for_slo(rt, ttft_p99_s=0.5, rtt_s=0.1)) < r


# Stated tolerance of the approximation against the simulation: every percentile within 20 %.
SIM_TOL = 0.20


@pytest.mark.parametrize("chunks", [0, 4])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_approximation_agrees_with_simulation(rho, chunks):
    W, a, c, beta, o = 0.05, 0.02, 0.0002, 64, 100
    rt = ReplicaTimes(prefill_work_s=W, step_fixed_s=a, step_per_seq_s=c, batch=beta, output_tokens=o,
                      prefill_steps=chunks)
    rate = rho * float(capacity_rps(rt))
    # rho = 0.9 has long busy periods: 100k requests keep the simulated p99 within a few % of its limit.
    n = 30000 if rho == 0.5 else 100000
    sim = simulate_replica(rate, W, a, c, beta, o, chunks, n_requests=n, warmup=3000, seed=7)
    lat = latency(rt, rate)
    for key, q in (("ttft", 50), ("ttft", 99), ("tpot", 50), ("tpot", 99)):
        got = float(lat[f"{key}_p{q}_s"])
        want = float(np.percentile(sim[f"{key}_s"], q))
        assert got == pytest.approx(want, rel=SIM_TOL), (key, q, got, want)


def test_simulation_is_seeded():
    a = simulate_replica(5.0, 0.05, 0.02, 0.0002, 16, 50, n_requests=500, warmup=0, seed=3)
    b = simulate_replica(5.0, 0.05, 0.02, 0.0002, 16, 50, n_requests=500, warmup=0, seed=3)
    assert np.array_equal(a["ttft_s"], b["ttft_s"]) and np.array_equal(a["tpot_s"], b["tpot_s"])
