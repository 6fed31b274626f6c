"""The Ray engine: the same worker function as Ray tasks, so both engines give the same rows.

Ray is optional (`pip install "dcopt[ray]"`) and imported only when this engine runs.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Callable, Optional

from .discover import BatchArgumentError, Task
from .worker import Options, crash_record, ray_entry, timeout_record, warm


def run_ray(tasks: list[Task], opts: Options, workers: Optional[int], address: Optional[str],
            done: Callable[[Task, dict], None], started: Callable[[Task], None]) -> None:
    """The same tasks as Ray tasks. Without an address a local Ray is started (and stopped) with
    `workers` CPUs; with one (e.g. ray://head:10001 or 'auto') dcopt must be installed on the
    cluster's nodes. A task past its wall clock is cancelled with force (its worker is killed)."""
    try:
        import ray
    except ImportError:
        raise BatchArgumentError('the ray engine needs Ray: pip install "dcopt[ray]"') from None
    started_here = False
    if not ray.is_initialized():
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **kw)
        started_here = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(ray_entry)
        slots = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        warm_up = ray.remote(num_cpus=1)(warm)
        ray.get([warm_up.remote() for _ in range(min(slots, len(tasks)))])
        hard = opts.hard_timeout_s
        pending = deque(tasks)
        running: dict[Any, tuple[Task, float]] = {}
        while pending or running:
            while pending and len(running) < slots:
                t = pending.popleft()
                ref = remote.remote(opts.solver, t.path, t.data, opts.backend, opts.time_limit_s, opts.gap, **opts.extra)
                running[ref] = (t, time.monotonic())
                started(t)
            now = time.monotonic()
            wait_s = 0.5
            if hard is not None:
                wait_s = max(0.0, min([wait_s] + [s + hard - now for _, s in running.values()]))
            ready, _ = ray.wait(list(running), num_returns=1, timeout=wait_s)
            for ref in ready:
                t, s = running.pop(ref)
                try:
                    rec = ray.get(ref)
                except Exception as exc:  # worker crashed, node lost, ...
                    rec = crash_record(t, f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                                       time.monotonic() - s)
                done(t, rec)
            if hard is not None:
                now = time.monotonic()
                for ref, (t, s) in list(running.items()):
                    if now - s >= hard:
                        ray.cancel(ref, force=True)
                        running.pop(ref)
                        done(t, timeout_record(t, hard))
    finally:
        if started_here:
            ray.shutdown()
