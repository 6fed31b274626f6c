"""The local engine: a small pool of spawn processes with a hard wall clock per instance.

One process per running instance (spawn context: no inherited solver or thread state), kept warm
between instances so imports are paid once per worker, not once per file. A worker that crashes
or overruns its wall clock is killed with its whole process group (PuLP's CBC runs as a child
process) and replaced; only that instance's row records it. `ProcessPoolExecutor` cannot kill one
task without breaking the pool, hence this small pool. A solver taking `on_start` (solve_payload)
sends its verified constructive start before the MIP solve; an instance killed at the wall clock
then keeps that design in its "timeout" row (incumbent_source "heuristic").
"""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time
from collections import deque
from typing import Callable, Optional

from .discover import Task
from .worker import Options, crash_record, load_solver, timeout_record, warm


def _worker_main(conn, parent_pid: int, solver_spec: str) -> None:  # pragma: no cover - runs in a child
    """A local worker: its own process group (so a kill takes its solver children too), exits when
    the driver dies, solves one task at a time."""
    try:
        os.setpgrp()
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and kills us

    def watchdog():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                try:
                    os.killpg(0, signal.SIGKILL)
                finally:
                    os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()
    solve = load_solver(solver_spec)
    reports_start = "on_start" in inspect.signature(solve).parameters
    warm()

    try:
        conn.send(("ready", None))
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, path, data, backend, time_limit_s, gap, extra = msg
        if reports_start:  # the start's design before the solve: a kill at the wall clock keeps it

            def on_start(rec, task_id=task_id):
                conn.send(("start", task_id, rec))

            extra = dict(extra, on_start=on_start)
        rec = solve(path, data, backend, time_limit_s, gap, **extra)
        try:
            conn.send((task_id, rec))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx, solver_spec: str):
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.proc = ctx.Process(target=_worker_main, args=(child, os.getpid(), solver_spec), daemon=True)
        self.proc.start()
        child.close()
        self.task: Optional[Task] = None
        self.task_id = -1
        self.start_rec: Optional[dict] = None  # the running task's constructive-start record, once sent
        self.started = 0.0
        self.ready = False  # set by the worker's first message, once its imports are done
        self.born = time.monotonic()

    def kill(self) -> None:
        pid = self.proc.pid
        for target in ("group", "proc"):
            try:
                if target == "group":
                    os.killpg(pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except (ProcessLookupError, PermissionError, OSError):
                pass
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def run_local(tasks: list[Task], opts: Options, workers: int, done: Callable[[Task, dict], None],
              started: Callable[[Task], None]) -> None:
    """Solve tasks on `workers` spawn processes; a crashed or overdue worker is killed and replaced."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    pending = deque(tasks)
    pool: list[Optional[_Worker]] = [_Worker(ctx, opts.solver) for _ in range(min(workers, len(tasks)))]
    hard = opts.hard_timeout_s
    next_id = 0
    start_failures = 0

    def retire(i: int) -> None:
        """Kill slot i's worker; start a fresh one only if there is still work for it."""
        pool[i].kill()
        pool[i] = _Worker(ctx, opts.solver) if pending else None

    try:
        while pending or any(w is not None and w.task is not None for w in pool):
            for i in range(len(pool)):
                w = pool[i]
                if w is None and pending:
                    pool[i] = w = _Worker(ctx, opts.solver)
                if w is not None and w.ready and w.task is None and pending:
                    t = pending.popleft()
                    next_id += 1
                    try:
                        w.conn.send((next_id, t.path, t.data, opts.backend, opts.time_limit_s, opts.gap, opts.extra))
                    except (BrokenPipeError, OSError):
                        pending.appendleft(t)
                        retire(i)
                        continue
                    w.task, w.task_id, w.started, w.start_rec = t, next_id, time.monotonic(), None
                    started(t)
            live = [w for w in pool if w is not None]
            busy = [w for w in live if w.task is not None]
            wait_s = 0.5
            if hard is not None and busy:
                now = time.monotonic()
                wait_s = max(0.0, min(wait_s, min(w.started + hard - now for w in busy)))
            ready = set(wait([w.conn for w in live] + [w.proc.sentinel for w in live], timeout=wait_s))
            for i in range(len(pool)):
                w = pool[i]
                if w is None:
                    continue
                t, rec = w.task, None
                if w.conn in ready or w.proc.sentinel in ready:
                    msg = None
                    try:
                        if w.conn.poll():
                            msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None and msg[0] == "ready":
                        w.ready = True
                        continue
                    if msg is not None and msg[0] == "start":
                        if t is not None and msg[1] == w.task_id:
                            w.start_rec = msg[2]
                        continue
                    if msg is not None and t is not None and msg[0] == w.task_id:
                        rec = msg[1]
                        w.task = None
                    elif not w.proc.is_alive():
                        if t is None:  # died idle; if it never got ready, it could not start at all
                            if not w.ready:
                                start_failures += 1
                                if start_failures > 3:
                                    raise RuntimeError(f"batch workers fail to start (exit code {w.proc.exitcode})")
                            retire(i)
                            continue
                        code = w.proc.exitcode
                        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                        rec = crash_record(t, f"worker process died ({why}) while solving",
                                           time.monotonic() - w.started)
                        w.task = None
                        retire(i)
                if rec is None and t is not None and w.task is not None and hard is not None \
                        and time.monotonic() - w.started >= hard:
                    rec = timeout_record(t, hard, w.start_rec)
                    w.task = None
                    retire(i)
                if rec is not None:
                    done(t, rec)
    finally:
        for w in pool:
            if w is None:
                continue
            if w.task is not None:
                w.kill()
            else:
                w.stop()
