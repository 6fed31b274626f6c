"""A hard wall clock and crash containment for one `dcopt solve`.

The solve runs in a child process. Inside it every MIP solve (the main one, the lexicographic
second stage, the diagnosis's re-solves) shares one deadline, `time_limit` seconds from the start
(`optimizer.mip.backends.run_deadline`), so `--time-limit` bounds the whole run, not each solve.
The parent waits `time_limit + margin(time_limit)` at most and then kills the child: a solver that
ignores its limit, or pure-Python work that overruns it, cannot hang the command.

A child that dies by a signal (a native solver's abort or segfault) is not the end: the solve is
run again on the fallback backend (OR-Tools -> PuLP/CBC) in a fresh child, and the message says
which backend crashed and how. If the fallback crashes too, `SolverCrash` names it (exit 1).

Why a child per run and not per MIP solve: a spawn costs about a second of imports, and the
diagnosis of an infeasible instance runs dozens of solves.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional

from optimizer.mip.design import Solution

DIAGNOSIS_CUT = ("diagnosis stopped at the time limit: no fix was confirmed in time "
                 "(run `dcopt explain` with a longer --time-limit)")


class SolverCrash(RuntimeError):
    """The solve could not finish: every backend tried crashed, or the code failed unexpectedly."""


def margin_s(time_limit_s: float) -> float:
    """Grace after the soft limit before the child is killed: start-up, verification, reporting."""
    return min(3.0, 1.0 + 0.2 * time_limit_s)


def _context():
    # fork is instant and keeps test monkeypatches; but a parent that already runs solver threads
    # (HiGHS keeps a pool) must not fork, so it spawns a clean interpreter instead.
    if sys.platform.startswith("linux") and threading.active_count() == 1 \
            and "ortools.math_opt.core.python.solver" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("spawn")


_SEND: list[Callable] = []  # in the child: how to send the parent a message (progress events)
_SEND_LOCK = threading.Lock()


def _child(conn, target: Callable, args: tuple) -> None:
    def send(msg):
        with _SEND_LOCK:  # solver log callbacks may run on a solver thread
            try:
                conn.send(msg)
            except Exception as exc:  # an unpicklable exception: send its text
                conn.send(("crash", f"{type(exc).__name__}: {exc}", ""))

    _SEND[:] = [send]

    try:
        for item in target(*args):  # a generator: ("partial", x) messages, then ("ok", x)
            send(item)
    except Exception as exc:
        from models.loader import InstanceError

        from optimizer.solving.verify import VerificationError

        if isinstance(exc, (ValueError, InstanceError, VerificationError)):  # these carry their own meaning
            send(("raise", exc))
        else:
            send(("crash", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    except BaseException as exc:  # noqa: BLE001 - a message, never a traceback
        send(("crash", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


def run_in_child(target: Callable, args: tuple, hard_s: Optional[float],
                 on_progress: Optional[Callable] = None) -> tuple[str, Any, Optional[Any]]:
    """Run generator `target(*args)` in a child process; returns (how, value, last_partial):
    how = "ok" | "raise" | "crash" | "signal" | "timeout". ("progress", event) messages the child
    sends while it works (`_send_progress`) go to `on_progress` in this process."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, target, args), daemon=True)
    proc.start()
    child.close()
    end = None if hard_s is None else time.monotonic() + hard_s
    partial = None
    try:
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            if parent.poll(left):
                try:
                    msg = parent.recv()
                except EOFError:  # the child died without a word: look at how
                    break
                if msg[0] == "partial":
                    partial = msg[1]
                    continue
                if msg[0] == "progress":
                    if on_progress is not None:
                        on_progress(msg[1])
                    continue
                return msg[0], msg[1:], partial
            if end is not None and time.monotonic() >= end:
                return "timeout", hard_s, partial
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    code = proc.exitcode
    if code is not None and code < 0:
        return "signal", -code, partial
    return "crash", (f"the solver process exited with code {code} without an answer", ""), partial


def _signame(num: int) -> str:
    try:
        return f"signal {num}, {signal.Signals(num).name}"
    except ValueError:
        return f"signal {num}"


def _send_progress(event) -> None:
    """In the child: pass a solver progress event to the parent (a few a second at most)."""
    if _SEND:
        _SEND[0](("progress", event))


def _solve_steps(instance, backend: str, time_limit: Optional[float], gap: Optional[float], export,
                 progress: bool = False, work_limit: Optional[int] = None, decompose: bool = False):
    """The child's work: solve; if infeasible, hand the parent the answer before diagnosing."""
    from optimizer.mip.backends import run_deadline
    from optimizer.solving.pipeline import solve_instance

    with run_deadline(time_limit):
        sol = solve_instance(instance, backend=backend, time_limit_s=time_limit, gap=gap, export_path=export,
                             on_progress=_send_progress if progress else None, work_limit=work_limit,
                             decompose=decompose)
        if sol.status == "infeasible":
            yield ("partial", sol)
            from optimizer.studies.explain import diagnose

            sol.diagnosis = diagnose(instance, backend, time_limit)
    yield ("ok", sol)


def solve_contained(instance, backend: str = "ortools", time_limit: Optional[float] = None,
                    gap: Optional[float] = None, export=None, on_progress: Optional[Callable] = None,
                    work_limit: Optional[int] = None, decompose: bool = False) -> Solution:
    """`optimizer.solving.pipeline.solve_instance` with a hard wall clock and crash containment (see module doc).
    `on_progress(ProgressEvent)` is called in this process as the child's main solve progresses.

    Returns the Solution; raises what the solve raises for bad input or a rejected design
    (ValueError, `VerificationError`), and `SolverCrash` when no backend survived."""
    if time_limit is not None and not (0 < time_limit < 1e7):
        raise ValueError(f"--time-limit: got {time_limit!r}, expected a positive number of seconds")
    start = time.monotonic()
    hard = None if time_limit is None else time_limit + margin_s(time_limit)
    notes: list[str] = []
    chain = [backend] + (["pulp"] if backend.startswith("ortools") else [])
    for i, name in enumerate(chain):
        left_soft = None if time_limit is None else max(0.1 * time_limit, time_limit - (time.monotonic() - start))
        left_hard = None if hard is None else max(left_soft + margin_s(left_soft), hard - (time.monotonic() - start))
        how, value, partial = run_in_child(_solve_steps, (instance, name, left_soft, gap, export, on_progress is not None,
                                                          work_limit, decompose), left_hard, on_progress)
        if how == "ok":
            sol = value[0]
            if notes:
                fell = f"fell back to {name} because " + "; ".join(notes)
                sol.message = f"{fell}. {sol.message}".strip() if sol.message else fell
            return sol
        if how == "raise":
            raise value[0]
        if how == "timeout":
            if partial is not None:  # the answer (infeasible) came; its diagnosis did not finish
                partial.diagnosis = list(partial.diagnosis) + [DIAGNOSIS_CUT]
                return partial
            return Solution(instance=instance.name, objective=instance.objective, status="time_limit", backend=name,
                            message=f"hard wall clock: the solve was stopped after {value:.0f} s "
                                    f"(--time-limit {time_limit:g} s + {margin_s(time_limit):.0f} s grace)")
        if how == "signal":
            notes.append(f"{name} crashed ({_signame(value)})")
            continue
        text, tb = value
        raise SolverCrash(f"backend {name}: {text}")
    raise SolverCrash("; ".join(notes) + " (no backend left to fall back to)")
