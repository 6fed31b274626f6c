"""PuLP/CBC, the fallback: the model written through PuLP and CBC run by us, read back at full precision."""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
import warnings

from optimizer.mip.lp import EQ, GE, LE, Model
from optimizer.mip.backends.common import (
    DEFAULT_GAP, ABS_GAP, SEED, Status, SolveResult, _check_cutoff, _check_limits, _check_work, _rel_gap, _clean_values, _solution_status, _Results,
)


def _import_pulp():
    """Import pulp, loading ortools first when it exists: with highspy installed, importing
    pulp before ortools segfaults the interpreter (docs/solvers.md; exit 139)."""
    try:
        from ortools.math_opt.python import mathopt  # noqa: F401
    except ImportError:
        pass
    import pulp

    return pulp


class PulpBackend(_Results):
    """PuLP's bundled CBC binary, single-threaded with fixed seeds so reruns agree.

    Variables/constraints are renamed x<i>/c<k> inside PuLP (it rejects some characters and
    renames for CBC anyway); results map back by index.
    """

    name = "pulp"
    solver = "cbc"

    def __repr__(self) -> str:
        return "PulpBackend()"

    def is_available(self) -> bool:
        try:
            pulp = _import_pulp()
            return self._command(pulp, None, None, None) is not None
        except Exception:
            return False

    def _command(self, pulp, time_limit_s, gap, log_path, work_limit=None, warm=False, cutoff=None):
        # CBC solves PuLP's MPS file, which drops the objective's constant: its cutoff is without it.
        options = [f"randomCbcSeed {SEED}", "randomSeed 1234567"] + ([] if cutoff is None else [f"cutoff {cutoff!r}"])
        kw = dict(msg=False, timeLimit=time_limit_s, gapRel=DEFAULT_GAP if gap is None else gap,
                  gapAbs=ABS_GAP, threads=1, logPath=log_path, maxNodes=work_limit, warmStart=warm,
                  options=options)
        with warnings.catch_warnings():
            # PuLP 3.x deprecates PULP_CBC_CMD in favour of COIN_CMD + a separately installed
            # CBC; the bundled binary is exactly what makes PuLP a zero-install fallback.
            warnings.simplefilter("ignore", DeprecationWarning)
            if hasattr(pulp, "PULP_CBC_CMD"):
                cmd = pulp.PULP_CBC_CMD(**kw)
                if cmd.available():
                    return cmd
            cmd = pulp.COIN_CMD(**kw)
        return cmd if cmd.available() else None

    def solve(self, model: Model, time_limit_s: float | None = None, gap: float | None = None,
              start: list[float] | None = None, work_limit: int | None = None,
              cutoff: float | None = None) -> SolveResult:
        """`start`: a feasible assignment by variable index, given to CBC as PuLP's warm start
        (`setInitialValue` + `warmStart=True`, i.e. CBC's `-mips` file); `work_limit`: CBC's maxNodes (nodes after the root);
        `cutoff`: an objective (constant included) no better than a known design's, CBC's `-cutoff`."""
        _check_limits(time_limit_s, gap)
        _check_work(work_limit)
        t0 = time.perf_counter()
        try:
            pulp = _import_pulp()
        except ImportError as exc:
            return self._result(Status.ERROR, t0, f"pulp is not installed: {exc}")
        fd, log_path = tempfile.mkstemp(prefix="dcopt-cbc-", suffix=".log")
        os.close(fd)
        try:
            _check_cutoff(model, cutoff)
            plain = None if cutoff is None else cutoff - model.objective.constant
            cmd = self._command(pulp, time_limit_s, gap, log_path, work_limit, warm=start is not None, cutoff=plain)
            if cmd is None:
                return self._result(Status.ERROR, t0, "no CBC binary available to PuLP")
            prob, pvars = _to_pulp(pulp, model)
            _set_start(pvars, start)
            try:
                _run_cbc(pulp, cmd, prob, time_limit_s, gap, log_path)
            except Exception as exc:
                return self._result(Status.ERROR, t0, f"{type(exc).__name__}: {exc}{_log_tail(log_path)}")
            log = _read(log_path)
            limited = time_limit_s is not None or work_limit is not None
            result = self._interpret(pulp, model, prob, pvars, limited, log, t0)
            _cbc_work(log, result)
            return result
        finally:
            try:
                os.remove(log_path)
            except OSError:
                pass

    def _interpret(self, pulp, model, prob, pvars, limited, log: str, t0: float) -> SolveResult:
        # At a time limit CBC's "Stopped on time - objective value X" makes prob.status read
        # Optimal; sol_status (IntegerFeasible vs Optimal) is what tells them apart.
        status, sol = prob.status, prob.sol_status
        if sol in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) and status == pulp.LpStatusOptimal:
            raw = [pv.varValue if pv.varValue is not None else _neutral(v) for v, pv in zip(model.vars, pvars)]
            values = _clean_values(model, raw)
            obj = model.objective_value(values)
            bound = _cbc_bound(log, model.objective.constant)
            if sol == pulp.LpSolutionOptimal and (bound is None or abs(bound - obj) <= 5e-4):
                bound = obj  # CBC prints the bound to 3 decimals; don't invent a gap from rounding
            g = _rel_gap(obj, bound)
            st, msg = _solution_status(obj, bound, g, proved_optimal=sol == pulp.LpSolutionOptimal)
            if sol == pulp.LpSolutionIntegerFeasible:
                msg = f"stopped by the {_cbc_limit(log)} limit with a solution"
            return self._result(st, t0, msg, objective=obj, best_bound=bound, gap=g, values=values)
        if status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
            return self._result(Status.INFEASIBLE, t0, _cbc_line(log, "Result") or "")
        if status == pulp.LpStatusUnbounded or sol == pulp.LpSolutionUnbounded:
            return self._result(Status.UNBOUNDED, t0, _cbc_line(log, "Result") or "")
        if status == pulp.LpStatusNotSolved and limited:
            return self._result(Status.TIME_LIMIT, t0, f"no solution found before the {_cbc_limit(log)} limit")
        return self._result(Status.ERROR, t0,
                            f"CBC status {pulp.LpStatus.get(status, status)}, solution status "
                            f"{pulp.LpSolution.get(sol, sol)}{_log_tail(log_path=None, text=log)}")


def _run_cbc(pulp, cmd, prob, time_limit_s, gap, log_path: str) -> None:
    """What `prob.solve(cmd)` does, plus `-saveSolution`: CBC's text solution (all PuLP reads)
    carries 8 significant digits, its binary one every bit. Values are taken from the binary file
    when it matches the model, statuses from the text one."""
    import struct
    import subprocess

    tmp = tempfile.mkdtemp(prefix="dcopt-cbc-")
    mps, sol, binary = (os.path.join(tmp, n) for n in ("model.mps", "model.sol", "model.bin"))
    try:
        vs, vnames, cnames, _ = prob.writeMPS(mps, rename=1)
        args = [cmd.path, mps] + (["-max"] if prob.sense == pulp.LpMaximize else [])
        if time_limit_s is not None:
            args += ["-sec", f"{time_limit_s}"]
        for opt in cmd.options + cmd.getOptions():
            args += ["-" + opt.split()[0], *opt.split()[1:]]
        if cmd.optionsDict.get("warmStart"):
            mst = os.path.join(tmp, "start.mst")
            cmd.writesol(mst, prob, vs, vnames, cnames)  # PuLP's own warm-start file: the variables' initial values
            args += ["-mips", mst]
        args += ["-solve", "-saveSolution", binary, "-printingOptions", "all", "-solution", sol]
        timeout = None if time_limit_s is None else 2 * time_limit_s + 30
        follow = _progress_reporter(prob)
        if follow is not None:
            _run_following(args, log_path, timeout, follow)
        else:
            with open(log_path, "w") as log:
                subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
                               timeout=timeout)
        if not os.path.exists(sol):
            raise RuntimeError(f"CBC wrote no solution ({cmd.path})")
        status, values, dj, pi, slacks, sol_status = cmd.readsol_MPS(sol, prob, vs, vnames, cnames)
        prob.assignVarsVals(values)
        prob.assignStatus(status, sol_status)
        try:
            with open(binary, "rb") as f:
                raw = f.read()
            rows, cols = struct.unpack("ii", raw[:8])
            if cols == len(vs) and len(raw) == 16 + 16 * rows + 16 * cols:
                full = struct.unpack(f"{cols}d", raw[16 + 16 * rows: 16 + 16 * rows + 8 * cols])
                if all(math.isfinite(x) for x in full):
                    for v, x in zip(vs, full):
                        if v.varValue is not None:
                            v.varValue = x
        except (OSError, struct.error):
            pass  # keep the 8-digit values
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _progress_reporter(prob):
    """The progress sink's reader of CBC's log, or None when nobody listens. CBC solves PuLP's MPS
    file, which drops the objective's constant: the reporter adds it back."""
    from optimizer.mip.backends.progress import CbcLog, reporter

    return reporter(CbcLog(), constant=float(prob.objective.constant or 0.0))


def _run_following(args: list[str], log_path: str, timeout: float | None, rep, poll_s: float = 0.1) -> None:
    """`subprocess.run` with CBC's output to `log_path`, read back while CBC runs (every `poll_s`)
    and fed line by line to the progress reporter `rep`. Same timeout and kill as `run`. CBC's stdout
    to a file is block-buffered (its lines came all at once at the end, measured): coreutils'
    `stdbuf -oL` makes it line-buffered where it exists."""
    import shutil
    import subprocess

    stdbuf = shutil.which("stdbuf")
    if stdbuf:
        args = [stdbuf, "-oL", *args]
    end = None if timeout is None else time.monotonic() + timeout
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        with open(log_path, errors="replace") as f:
            rest = ""
            while True:
                done = proc.poll() is not None  # before reading: the last read then sees every line
                *lines, rest = (rest + f.read()).split("\n")
                rep.lines(lines)
                if done:
                    rep.lines([rest])
                    return
                if end is not None and time.monotonic() >= end:
                    raise subprocess.TimeoutExpired(args, timeout)
                try:
                    proc.wait(poll_s)
                except subprocess.TimeoutExpired:
                    pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _set_start(pvars, start: list[float] | None) -> None:
    if start is not None:
        for pv, x in zip(pvars, start):
            pv.setInitialValue(float(x))


def _cbc_stopped_on(log: str) -> str | None:
    """What CBC's log says it stopped on ("Result - Stopped on nodes" / "on time"), or None."""
    stop = re.search(r"^Result - Stopped on (\w+)", log, re.M)
    return stop.group(1) if stop else None


def _cbc_limit(log: str) -> str:
    """Which limit CBC stopped on, in words: node or time."""
    return "node" if _cbc_stopped_on(log) in ("node", "nodes") else "time"


def _cbc_work(log: str, result: SolveResult) -> None:
    m = re.search(r"^Enumerated nodes:\s*(\d+)", log, re.M)
    result.nodes = int(m.group(1)) if m else None
    stop = _cbc_stopped_on(log)
    if stop:
        result.stopped_by = {"node": "work", "nodes": "work"}.get(stop, stop)


def _neutral(v) -> float:
    """A value for a variable CBC did not report (it appears nowhere): 0 clipped to bounds."""
    x = min(max(0.0, v.lb), v.ub)
    return math.ceil(x) if v.integer else x


def _to_pulp(pulp, model: Model):
    sense = pulp.LpMaximize if model.sense == "max" else pulp.LpMinimize
    prob = pulp.LpProblem(re.sub(r"[^A-Za-z0-9_]", "_", model.name) or "model", sense)
    # PuLP 3.x deprecates LpVariable(...) in favour of prob.add_variable (PuLP 4 API).
    new_var = getattr(prob, "add_variable", None) or pulp.LpVariable
    pvars = [
        new_var(f"x{v.index}",
                lowBound=None if v.lb == -math.inf else v.lb,
                upBound=None if v.ub == math.inf else v.ub,
                cat=pulp.LpInteger if v.integer else pulp.LpContinuous)
        for v in model.vars
    ]
    obj = model.objective
    used = set(obj.terms)
    for c in model.constraints:
        used.update(c.coefs)
    # PuLP writes no COLUMNS entry for a variable that appears nowhere and CBC then rejects its
    # BOUNDS line; a zero objective coefficient keeps it declared (and its bounds checked).
    unused = [(pv, 0.0) for i, pv in enumerate(pvars) if i not in used]
    prob.setObjective(pulp.LpAffineExpression([(pvars[i], c) for i, c in obj.terms.items()] + unused,
                                              constant=obj.constant))
    psense = {LE: pulp.LpConstraintLE, GE: pulp.LpConstraintGE, EQ: pulp.LpConstraintEQ}
    for k, c in enumerate(model.constraints):
        e = pulp.LpAffineExpression([(pvars[i], a) for i, a in c.coefs.items()])
        prob.addConstraint(pulp.LpConstraint(e, psense[c.sense], f"c{k}", c.rhs))
    return prob, pvars


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _log_tail(log_path: str | None, text: str | None = None, lines: int = 8) -> str:
    text = _read(log_path) if text is None and log_path else (text or "")
    tail = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return ("\nCBC log (tail):\n  " + "\n  ".join(tail)) if tail else ""


def _cbc_line(log: str, key: str) -> str | None:
    m = re.search(rf"^{key}\s*[-:]\s*(.+)$", log, re.M)
    return m.group(1).strip() if m else None


def _cbc_bound(log: str, constant: float) -> float | None:
    """CBC's final bound from its log ("Lower bound:" when minimising, "Upper bound:" when
    maximising; PuLP does not expose it). CBC solves PuLP's MPS, which drops the objective
    constant, so add it back. CBC prints the bound to 3 decimals only."""
    m = re.search(r"^(?:Lower|Upper) bound:\s*(\S+)", log, re.M)
    if not m:
        return None
    try:
        b = float(m.group(1))
    except ValueError:
        return None
    if not math.isfinite(b) or abs(b) >= 1e30:
        return None
    return b + constant


