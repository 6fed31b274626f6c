"""Live progress of a MIP solve: the incumbent and the best bound as the solver reports them.

No backend changes its search for this. MathOpt hands us the solver's log lines through its
message callback (`msg_cb`) and CBC writes its log to a file we follow; the parsers below read
the primal and dual bound out of those lines. Measured with ortools 9.15 / CBC 2.10 (docs/solvers.md):
MathOpt's MIP callbacks are no use here (SCIP rejects the MIP event, its MIP_SOLUTION event carries
the bound from before the new solution; HiGHS never calls them), while all three solvers log both
bounds at every new incumbent and periodically in between.

A solve reports progress only inside `progress_sink(fn)`: `fn(incumbent, bound)` gets MIP units
(the objective's constant included), either may be None. The pipeline converts to the user's units.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Optional


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a solve, in the objective's user units (USD for cost objectives)."""

    elapsed_s: float  # since the solve started
    incumbent: Optional[float]  # best design found so far (None: none yet)
    bound: Optional[float]  # no design can do better than this
    gap: Optional[float]  # |incumbent - bound| / |incumbent|
    final: bool = False  # the solve's answer: matches the returned objective
    status: Optional[str] = None  # with final: the Solution's status ("optimal", "infeasible", ...)

    def to_dict(self) -> dict:
        return asdict(self)


Sink = Callable[[Optional[float], Optional[float]], None]
# Per thread (and asyncio task): two solves in two threads of a notebook each report to their own.
_SINK: contextvars.ContextVar[Optional[Sink]] = contextvars.ContextVar("dcopt_progress_sink", default=None)


@contextlib.contextmanager
def progress_sink(fn: Optional[Sink]) -> Iterator[None]:
    """Within this block backend solves report (incumbent, bound) to `fn` (None: report nothing)."""
    token = _SINK.set(fn)
    try:
        yield
    finally:
        _SINK.reset(token)


def current_sink() -> Optional[Sink]:
    return _SINK.get()


def _number(text: str) -> Optional[float]:
    """A bound as solvers print it; None for none yet ("--", "inf", "Large", CBC's 1e50)."""
    try:
        x = float(text.strip().rstrip("%"))
    except ValueError:
        return None
    return x if math.isfinite(x) and abs(x) < 1e20 else None


class ScipLog:
    """SCIP's display table: columns found by the header (their set differs across versions)."""

    _FINAL = re.compile(r"^(Primal|Dual) Bound\s*:\s*(\S+)")

    def __init__(self) -> None:
        self._cols: Optional[tuple[int, int]] = None

    def feed(self, line: str) -> Optional[tuple[Optional[float], Optional[float]]]:
        m = self._FINAL.match(line)
        if m:
            x = _number(m.group(2))
            return (x, None) if m.group(1) == "Primal" else (None, x)
        if "|" not in line:
            return None
        cells = [c.strip() for c in line.split("|")]
        if "dualbound" in cells and "primalbound" in cells:
            self._cols = (cells.index("primalbound"), cells.index("dualbound"))
            return None
        if self._cols is None or len(cells) <= max(self._cols):
            return None
        return _number(cells[self._cols[0]]), _number(cells[self._cols[1]])


class HighsLog:
    """HiGHS's MIP table: `Src Proc. InQueue | Leaves Expl. | BestBound BestSol Gap | ...`."""

    _ROW = re.compile(r"^\s*(?:[A-Za-z]\s+)?\d+[kM]?\s+\d+[kM]?\s+\d+[kM]?\s+[\d.]+%\s+(\S+)\s+(\S+)\s+(\S+)")
    _FINAL = re.compile(r"^\s*(Primal|Dual) bound\s+(\S+)\s*$")

    def feed(self, line: str) -> Optional[tuple[Optional[float], Optional[float]]]:
        m = self._ROW.match(line)
        if m:
            return _number(m.group(2)), _number(m.group(1))
        m = self._FINAL.match(line)
        if m:
            x = _number(m.group(2))
            return (x, None) if m.group(1) == "Primal" else (None, x)
        return None


class CbcLog:
    """CBC's message lines (the objective of PuLP's MPS file, i.e. without its constant)."""

    _PATTERNS = (
        (re.compile(r"^Cbc00(?:04|12)I Integer solution of (\S+) found"), "incumbent"),
        (re.compile(r"^Cbc0010I After \d+ nodes, \d+ on tree, (\S+) best solution, best possible (\S+)"), "both"),
        (re.compile(r"^Cbc0013I At root node, .* objective from \S+ to (\S+)"), "bound"),
        (re.compile(r"^Continuous objective value is (\S+)"), "bound"),
        (re.compile(r"^Cbc0001I Search completed - best objective (\S+?),"), "incumbent"),
    )

    def feed(self, line: str) -> Optional[tuple[Optional[float], Optional[float]]]:
        for pattern, kind in self._PATTERNS:
            m = pattern.match(line)
            if m:
                if kind == "both":
                    return _number(m.group(1)), _number(m.group(2))
                x = _number(m.group(1))
                return (x, None) if kind == "incumbent" else (None, x)
        return None


class Reporter:
    """Feeds log lines to a parser and reports to the sink: at once when the incumbent improves,
    otherwise at most every `every_s` seconds (a busy SCIP log prints hundreds of lines a second).
    Keeps the best of each bound (minimisation); a failing sink never stops the solve."""

    def __init__(self, sink: Sink, parser, constant: float = 0.0, every_s: float = 0.2):
        self.sink, self.parser, self.constant, self.every_s = sink, parser, constant, every_s
        self.incumbent: Optional[float] = None
        self.bound: Optional[float] = None
        self._last = -math.inf
        self._lock = threading.Lock()

    def lines(self, lines) -> None:
        for line in lines:
            self.line(line)

    def line(self, line: str) -> None:
        got = self.parser.feed(line)
        if not got:
            return
        inc, bound = got
        with self._lock:
            better = inc is not None and (self.incumbent is None or inc + self.constant < self.incumbent)
            if better:
                self.incumbent = inc + self.constant
            moved = bound is not None and (self.bound is None or bound + self.constant > self.bound)
            if moved:
                self.bound = bound + self.constant
            now = time.monotonic()
            if not (better or (moved and now - self._last >= self.every_s)):
                return
            self._last = now
            try:
                self.sink(self.incumbent, self.bound)
            except Exception:  # noqa: BLE001 - a display problem must not fail the solve
                pass


def reporter(parser, constant: float = 0.0) -> Optional[Reporter]:
    """A Reporter for the current sink, or None when nobody listens (then the solve logs nothing)."""
    sink = current_sink()
    return None if sink is None else Reporter(sink, parser, constant)
