"""A serving replica under Poisson arrivals: TTFT and TPOT percentiles, and the load that meets an SLO.

The replica is described by plain numbers (`ReplicaTimes`, from `inference.replica_times`), so the
MIP can size capacity per layout without this module knowing the hardware:

  W   replica time one request's prefill consumes (exclusive prefill, or the sum of its chunks' cost)
  k   prefill steps: 0 = the prefill runs alone between decode steps (vLLM's default without
      chunking); k >= 1 = chunked prefill, one chunk rides in each of k decode steps (Sarathi-Serve,
      Agrawal et al., OSDI 2024)
  a, c  a decode step at b running sequences takes a + c*b (the chord of the roofline between 0 and
      the batch cap, hence an upper bound of the convex max(compute, memory) in between)
  beta  batch cap (KV-cache slots), o output tokens per request

Capacity (requests/s) is 1 / (W + o*(a + c*beta)/beta): the replica's timeline at full batch, the
same expression as `inference.evaluate_serving`'s requests_per_s. Utilisation rho = rate / capacity.

Decode (mean value, work conservation). Prefills take the fraction rate*W of the replica's time, so
a sequence's mean time per output token T solves T = (a + c*B)/(1 - rate*W) with B = rate*o*T
running sequences (Little's law):  T = a / (1 - rate*W - c*rate*o); B reaches beta exactly at rho=1.
A request's own TPOT is the step time plus the prefills (W each) that land during its o tokens;
their count is Poisson with mean rate*o*T, so TPOT_p = (a + c*B) + W * N_p / o with N_p the
Poisson quantile (Cornish-Fisher normal approximation with skew term, since there is no scipy).

TTFT: prefills are an M/G/1 queue (DistServe, Zhong et al., OSDI 2024, section 3.1, models a prefill
instance as M/D/1) whose server takes "vacations" -- decode steps -- whenever no prefill waits.
By the Fuhrmann-Cooper decomposition (Fuhrmann & Cooper, Oper. Res. 1985) the wait is the M/G/1 wait
plus the residual of the step in progress (uniform on [0, a + c*B]). Each prefill occupies the
prefill server for S = W + k*(a + c*B) of wall clock (its k chunk steps), rho_p = rate*S.
The M/G/1 waiting-time tail is the Cramer-Lundberg asymptote P(Wq > x) = C*exp(-theta*x), capped
at P(Wq > 0) = rho_p (Asmussen, Applied Probability and Queues, 2003, ch. XIII): theta solves
rate*(M(theta) - 1) = theta with M the service-time MGF, C = (1 - rho_p)/(rate*M'(theta) - 1).
The prefill time is gamma distributed with squared coefficient of variation `prefill_scv`
(0 = deterministic, the M/D/1 case; 1 = exponential, where the formula is exactly M/M/1).
A request may also wait for a KV slot: the beta slots are an M/D/c queue (each held beta/capacity
at full batch, so the offered load is rho*beta), approximated after Allen & Cunneen (Lee & Longton
1959): Erlang C probability of waiting, and the M/M/c exponential tail with its rate doubled for a
deterministic holding time. This term is what diverges as rho -> 1; the three waits are taken as
independent and their sum's quantile is found numerically (one 32-point quadrature, bisection).
With `prefill_scv` > 0 TTFT is the wait's quantile plus the mean prefill.

Why this one: it is exact for M/M/1, asymptotically exact for M/D/1 (within 1 % of Crommelin's
exact M/D/1 p99, tests/test_queueing.py), closed-form apart from monotone roots, vectorises, and
agrees with the discrete-event simulation (`serving_sim`) within 20 % on every percentile at
rho = 0.5 and 0.9.

Not modelled: prompt-length variation beyond `prefill_scv`, an idle replica's zero residual step
(conservative at low load), batch-size fluctuation in the step time.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

BISECT_ITERS = 80


@dataclass(frozen=True)
class ReplicaTimes:
    """One replica layout (or an array of them, broadcast) as the queueing model sees it."""

    prefill_work_s: np.ndarray  # W
    step_fixed_s: np.ndarray  # a
    step_per_seq_s: np.ndarray  # c
    batch: np.ndarray  # beta
    output_tokens: np.ndarray  # o
    prefill_steps: np.ndarray | int = 0  # k (0 = exclusive prefill)
    prefill_scv: float = 0.0

    def arrays(self):
        return np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (
            self.prefill_work_s, self.step_fixed_s, self.step_per_seq_s, self.batch, self.output_tokens,
            self.prefill_steps)))


def timeline_capacity_rps(rt: ReplicaTimes) -> np.ndarray:
    """Requests/s when the replica's timeline is full at full batch."""
    W, a, c, beta, o, _ = rt.arrays()
    return 1.0 / (W + o * (a + c * beta) / beta)


def largest_rate(cap: np.ndarray, meets, iters: int = BISECT_ITERS) -> np.ndarray:
    """Per row, the largest rate in [0, cap] where `meets(rate)` (monotone: true below, false
    above) holds, by vectorised bisection; `lo` after `iters` halvings."""
    lo, hi = np.zeros_like(cap), cap.copy()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        good = meets(mid)
        lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
    return lo


def capacity_rps(rt: ReplicaTimes) -> np.ndarray:
    """Requests/s at 100 % utilisation: the timeline capacity, or lower with chunked prefill when
    the chunk slot saturates first (each prefill holds it for k steps: rate*(W + k*step) < 1)."""
    W, a, c, beta, o, k = rt.arrays()
    cap = timeline_capacity_rps(rt)
    if not np.any(k > 0):
        return cap
    lo = largest_rate(cap, lambda rate: _prefill_load(rate, W, a, c, o, k) < 1)
    return np.where(k > 0, lo, cap)


def _decode_mean(rate, W, a, c, o):
    """Mean TPOT and running sequences (module docstring); inf where past the timeline."""
    denom = 1.0 - rate * W - c * rate * o
    tpot = np.where(denom > 0, a / np.where(denom > 0, denom, 1.0), np.inf)
    return tpot, rate * o * tpot


def _prefill_load(rate, W, a, c, o, k):
    tpot, B = _decode_mean(rate, W, a, c, o)
    return rate * (W + k * (a + c * B))


def erlang_c(servers, offered):
    """Probability of waiting in M/M/c (Erlang C), via the Erlang B recursion; 1 where offered >= servers."""
    servers, offered = np.broadcast_arrays(np.asarray(servers, dtype=np.float64), np.asarray(offered, dtype=np.float64))
    b = np.ones(servers.shape)
    for n in range(1, int(np.max(servers, initial=1)) + 1):
        step = offered * b / (n + offered * b)
        b = np.where(n <= servers, step, b)
    r = offered / servers
    return np.where(r < 1, b / np.maximum(1.0 - r * (1.0 - b), 1e-300), 1.0)


def _mgf(theta, m, scv):
    if scv == 0:
        e = np.exp(np.minimum(theta * m, 700.0))
        return e, m * e
    base = 1.0 - theta * scv * m
    return base ** (-1.0 / scv), m * base ** (-1.0 / scv - 1.0)


def mg1_tail(rate, mean_s, scv: float = 0.0):
    """(theta, C) of the M/G/1 waiting-time tail P(Wq > x) ~ C exp(-theta x); gamma service time
    of the given mean and squared coefficient of variation. NaN where rate*mean >= 1."""
    rate, m = np.broadcast_arrays(np.asarray(rate, dtype=np.float64), np.asarray(mean_s, dtype=np.float64))
    rho = rate * m
    ok = (rho > 0) & (rho < 1)
    lam, mm, r = np.where(ok, rate, 1.0), np.where(ok, m, 1.0), np.where(ok, rho, 0.5)
    # f(theta) = lam (M - 1) - theta is convex, f(0) = 0, f'(0) < 0: one positive root, below the
    # bound from M >= 1 + theta m + (1 + scv) theta^2 m^2 / 2 and below the MGF's pole 1/(scv m).
    hi = 2.0 * (1.0 - r) / (r * mm * (1.0 + scv))
    if scv > 0:
        hi = np.minimum(hi, (1.0 - 1e-12) / (scv * mm))
    lo = np.zeros_like(hi)
    for _ in range(BISECT_ITERS):
        mid = 0.5 * (lo + hi)
        pos = lam * (_mgf(mid, mm, scv)[0] - 1.0) - mid > 0
        hi, lo = np.where(pos, mid, hi), np.where(pos, lo, mid)
    theta = 0.5 * (lo + hi)
    C = (1.0 - r) / (lam * _mgf(theta, mm, scv)[1] - 1.0)
    return np.where(ok, theta, np.nan), np.where(ok, C, np.nan)


def _wait_survival(t, rho, theta, C, V):
    """P(Wq + U > t), Wq with tail min(rho, C e^{-theta x}), U uniform on [0, V]."""
    xs = np.maximum(0.0, np.log(np.maximum(C, 1e-300) / rho) / theta)  # where the cap stops binding

    def G(x):  # integral of the Wq survival from 0 to x
        x = np.maximum(x, 0.0)
        return rho * np.minimum(x, xs) + np.where(x > xs, C / theta * (np.exp(-theta * xs) - np.exp(-theta * x)), 0.0)

    Vs = np.maximum(V, 1e-300)
    smooth = (np.maximum(V - t, 0.0) + G(t) - G(t - V)) / Vs
    point = np.where(t > xs, C * np.exp(-theta * t), np.where(t >= 0, rho, 1.0))  # V = 0
    return np.where(V > 0, smooth, point)


_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)


def _total_wait_survival(t, rho, theta, C, V, pw, eta):
    """P(Wq + U + X > t): X the KV-slot wait, P(X > x) = pw exp(-eta x), independent of the rest."""
    base = _wait_survival(t, rho, theta, C, V)
    # E[S1(t - X); 0 < X <= t] by Gauss-Legendre on [0, t], plus P(X > t) (where S1 = 1).
    x = 0.5 * t[..., None] * (_GL_X + 1.0)
    dens = eta[..., None] * np.exp(-eta[..., None] * x)
    s1 = _wait_survival(t[..., None] - x, rho[..., None], theta[..., None], C[..., None], V[..., None])
    conv = 0.5 * t * np.sum(_GL_W * dens * s1, axis=-1) + np.exp(-eta * t)
    return (1.0 - pw) * base + pw * conv


def _wait_quantile(p: float, rho, theta, C, V, pw, eta):
    q = 1.0 - p
    hi = V + np.maximum(0.0, np.log(np.maximum(C, q) / q) / theta) + np.log(np.maximum(pw, q) / q) / eta + 1e-12
    lo = np.zeros_like(hi)
    for _ in range(BISECT_ITERS // 2):
        mid = 0.5 * (lo + hi)
        above = _total_wait_survival(mid, rho, theta, C, V, pw, eta) > q
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return hi


def count_quantile(p: float, mean, dispersion=1.0):
    """Cornish-Fisher p-quantile of a count with the given mean and variance/mean ratio (1 = Poisson)."""
    z = NormalDist().inv_cdf(p)
    mean = np.asarray(mean, dtype=np.float64)
    return np.maximum(0.0, mean + z * np.sqrt(mean * dispersion) + (z * z - 1.0) / 6.0)


def latency(rt: ReplicaTimes, rate, percentiles=(0.5, 0.99)) -> dict[str, np.ndarray]:
    """utilization, ttft/tpot means and percentiles (keys ttft_p50_s, tpot_p99_s, ...) at `rate`
    requests/s. inf where the load is at or past capacity."""
    W, a, c, beta, o, k = rt.arrays()
    rate = np.broadcast_to(np.asarray(rate, dtype=np.float64), W.shape)
    cap_t = timeline_capacity_rps(rt)
    util = rate / capacity_rps(rt)
    tpot_mean, B = _decode_mean(rate, W, a, c, o)
    step = a + c * B
    S = W + k * step
    rho_p = rate * S
    stable = (util < 1) & (rho_p < 1) & (rate > 0)
    r = np.where(stable, rate, 0.0)
    theta, C = mg1_tail(r, S, rt.prefill_scv)
    theta, C, rp = np.nan_to_num(theta, nan=1.0), np.nan_to_num(C, nan=0.0), np.where(stable, rho_p, 0.0)
    step_ok = np.where(stable, step, 0.0)
    # KV-slot wait: beta slots held beta/cap_t each at full batch, offered rate*beta/cap_t of them
    # (M/D/c by Allen-Cunneen: Erlang C, the M/M/c decay rate doubled for deterministic holding).
    rho_t = np.where(stable, rate / cap_t, 0.0)
    pw = erlang_c(beta, rho_t * beta)
    eta = np.maximum(2.0 * (cap_t - r), 1e-300)
    wq_mean = rp * S * (1.0 + rt.prefill_scv) / (2.0 * np.maximum(1.0 - rp, 1e-300)) + step_ok / 2.0 + pw / eta
    # Prefills landing during a request's decode: Poisson, each lengthening the window that admits
    # more (a branching process), so the variance grows by 1/(1 - rate*W)^2.
    disp = 1.0 / np.maximum(1.0 - r * W, 1e-300) ** 2
    out = {
        "utilization": util,
        "mean_batch": np.where(stable, B, np.inf),
        "ttft_mean_s": np.where(stable, wq_mean + S, np.inf),
        "tpot_mean_s": np.where(stable, tpot_mean, np.inf),
    }
    for p in percentiles:
        tag = f"p{round(p * 100):d}"
        wq = _wait_quantile(p, np.where(stable, rp, 0.5), theta, np.where(stable, C, 0.0), step_ok, pw, eta)
        out[f"ttft_{tag}_s"] = np.where(stable, wq + S, np.inf)
        n_p = count_quantile(p, np.where(stable, B, 0.0), disp)
        out[f"tpot_{tag}_s"] = np.where(stable, step + W * n_p / o, np.inf)
    return out


def max_rate_for_slo(
    rt: ReplicaTimes,
    *,
    ttft_p99_s=None,
    tpot_p99_s=None,
    ttft_p50_s=None,
    tpot_p50_s=None,
    rtt_s=0.0,
) -> np.ndarray:
    """Largest requests/s per replica whose latencies meet every SLO given (TTFT limits include the
    network round trip `rtt_s`); 0 where even a vanishing load misses one. Latencies rise with the
    rate, so a bisection on the rate in [0, capacity) finds it."""
    slos = {k: v for k, v in (("ttft_p99_s", ttft_p99_s), ("tpot_p99_s", tpot_p99_s), ("ttft_p50_s", ttft_p50_s),
                              ("tpot_p50_s", tpot_p50_s)) if v is not None}
    cap = capacity_rps(rt)
    if not slos:
        return cap
    pcts = sorted({0.99 if k.endswith("p99_s") else 0.5 for k in slos})

    def meets(rate):
        lat = latency(rt, rate, pcts)
        ok = np.ones(cap.shape, dtype=bool)
        for k, v in slos.items():
            extra = rtt_s if k.startswith("ttft") else 0.0
            ok &= lat[k] + extra <= np.asarray(v, dtype=np.float64)
        return ok

    feasible0 = meets(cap * 1e-9)
    return np.where(feasible0, largest_rate(cap, meets, 60), 0.0)
