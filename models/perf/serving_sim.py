"""Discrete-event simulation of one continuous-batching replica: the check on `queueing.latency`.

The replica loops over steps, as vLLM's scheduler does. Exclusive prefill (k = 0): if a request
waits and a KV slot is free, the next step is its prefill (W seconds, prefill first); otherwise a
decode step of a + c*b for the b running sequences. Chunked prefill (k >= 1): every step is a
decode step of the running sequences plus, while a prefill is in progress, one chunk of W/k.
A slot is taken when the prefill starts and freed after the request's o-th decode step.
TTFT = end of the prefill - arrival; TPOT = (last token - first token) / o, per request.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np


def simulate_replica(
    rate: float,
    prefill_work_s: float,
    step_fixed_s: float,
    step_per_seq_s: float,
    batch: int,
    output_tokens: int,
    prefill_steps: int = 0,
    n_requests: int = 20000,
    warmup: int = 2000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """TTFT and TPOT of every request after the warm-up ones, seeded and deterministic."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate, n_requests))
    first = np.full(n_requests, np.nan)
    done = np.full(n_requests, np.nan)
    queue: deque[int] = deque()
    finishing: list[tuple[int, int]] = []  # (decode step count at which it finishes, request)
    n_dec = 0  # decode steps run so far
    running = 0  # sequences in the decode batch
    nxt = 0  # next arrival to enqueue
    t = 0.0
    cur, chunks_left = -1, 0  # chunked mode: the prefill in progress
    W, a, c, o = prefill_work_s, step_fixed_s, step_per_seq_s, output_tokens

    def finish_step(now):
        nonlocal running
        while finishing and finishing[0][0] == n_dec:
            _, j = heapq.heappop(finishing)
            done[j] = now
            running -= 1

    while nxt < n_requests or queue or running or cur >= 0:
        while nxt < n_requests and arrival[nxt] <= t:
            queue.append(nxt)
            nxt += 1
        if not (queue or running or cur >= 0):
            t = arrival[nxt]
            continue
        if prefill_steps == 0:
            if queue and running < batch:
                j = queue.popleft()
                t += W
                first[j] = t
                heapq.heappush(finishing, (n_dec + o, j))
                running += 1
            elif running:
                t += a + c * running
                n_dec += 1
                finish_step(t)
            else:  # queue non-empty but no slot and nothing running cannot happen (batch >= 1)
                raise AssertionError("stalled")
            continue
        if cur < 0 and queue and running < batch:
            cur, chunks_left = queue.popleft(), prefill_steps
        t += a + c * running + (W / prefill_steps if cur >= 0 else 0.0)
        if running:
            n_dec += 1
            finish_step(t)
        if cur >= 0:
            chunks_left -= 1
            if chunks_left == 0:
                first[cur] = t
                heapq.heappush(finishing, (n_dec + o, cur))
                running += 1
                cur = -1
    keep = slice(warmup, None)
    return {"ttft_s": (first - arrival)[keep], "tpot_s": ((done - first) / o)[keep]}
