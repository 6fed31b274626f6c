"""What-if sweeps: re-solve one instance over values of one numeric field.

An architect rarely trusts one number; they ask "what if the power cap were lower?" or "at what
B200 price would we buy H100s instead?". A sweep answers by solving the instance once per value,
each time from the raw instance document with the field set and the whole instance re-validated
(so a bad value gets the loader's error naming the path), and each design verified as usual.

Field paths are the ones sweep files use (`optimizer.runs.scenarios`): `facility.power_cap_mw`,
`workloads[0].deadline_days`, `sites[campus].power_cap_mw`,
`catalog.accelerators.b200.node_price_usd` (a catalog section given as a list of names is turned
into the equivalent mapping first, so only the price changes).

No warm start: neither SCIP/HiGHS through MathOpt nor CBC through PuLP is handed a MIP start by our
backends today, so every value is solved from scratch: a sweep costs one `dcopt solve` per value
(plus the infeasibility diagnosis for values without a design).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from models.edit import SweepError, check_path, edited
from models.loader import InstanceError, instance_from_dict
from models.schema import Instance

from optimizer.mip.design import Solution
from optimizer.fmt import csv_row

Number = Union[int, float]
MAX_VALUES = 1000  # a typo like 0:1e9:1 should fail at once, not after a week of solving
_INT = re.compile(r"[+-]?\d+")


# --------------------------------------------------------------------------------------------
# Values and instances
# --------------------------------------------------------------------------------------------


def _number(text: str, spec: str) -> Number:
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    try:
        x = float(text)
    except ValueError:
        raise SweepError(f"--values '{spec}': '{text}' is not a number") from None
    if not math.isfinite(x):
        raise SweepError(f"--values '{spec}': '{text}' is not a finite number")
    return x


def parse_values(spec: str) -> list[Number]:
    """'10,15,20' or 'start:stop:step' (stop included when the steps land on it), or a mix: '5,10:30:10'.

    Integers stay integers (fields like global_batch want them); ranges with a float part give
    floats rounded to 12 significant digits, so 0.1 steps print as 0.3 and not 0.30000000000000004."""
    out: list[Number] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise SweepError(f"--values '{spec}': empty item (write values as 10,15,20 or start:stop:step)")
        if ":" not in item:
            out.append(_number(item, spec))
            continue
        parts = item.split(":")
        if len(parts) != 3:
            raise SweepError(f"--values '{spec}': range '{item}' must be start:stop:step")
        start, stop, step = (_number(p, spec) for p in parts)
        if step == 0 or (stop - start) * step < 0:
            raise SweepError(f"--values '{spec}': step {step} never goes from {start} to {stop}")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n > MAX_VALUES:
            raise SweepError(f"--values '{spec}': range '{item}' has {n:,} values (at most {MAX_VALUES})")
        if all(isinstance(x, int) for x in (start, stop, step)):
            out += [start + i * step for i in range(n)]
        else:
            out += [float(f"{start + i * step:.12g}") for i in range(n)]
    if len(out) > MAX_VALUES:
        raise SweepError(f"--values '{spec}': {len(out):,} values (at most {MAX_VALUES})")
    return out


def check_param(raw: dict, param: str) -> None:
    """Refuse a path that would change the question rather than one number in it (models.edit)."""
    check_path(raw, param)


def instance_with(raw: dict, param: str, value: Any, source: str) -> Instance:
    """The instance with one field set, validated like a file (InstanceError names the path)."""
    return edited(raw, {param: value}, f"{source} with {param}={value}")


def build_instances(raw: dict, param: str, values: list[Number], source: str) -> list[Instance]:
    """Every value's instance, all validated before any solve (a bad value should not cost the good ones)."""
    if not isinstance(raw, dict):
        raise InstanceError(source, [f"(top level): got {type(raw).__name__}, expected a mapping of sections"])
    check_param(raw, param)
    out, problems = [], []
    for v in values:
        try:
            out.append(instance_with(raw, param, v, source))
        except InstanceError as exc:
            problems.append(exc)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            first.problems = first.problems + [f"({len(problems) - 1} more value(s) of {param} are invalid too)"]
        raise InstanceError(first.source, first.problems)
    return out


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


@dataclass
class SweepRow:
    value: Number
    solution: Optional[Solution]
    error: str = ""  # verification failure or solver error: the row has no trusted design
    flip: bool = False  # the accelerators bought (or a job's accelerator) differ from the previous design row

    @property
    def has_design(self) -> bool:
        return self.solution is not None and self.solution.design is not None and not self.error

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return self.solution.status if self.solution is not None else "error"

    @property
    def nodes(self) -> dict[str, int]:
        """Nodes bought per accelerator (all sites and cooling options)."""
        if not self.has_design:
            return {}
        return {a: n for a, by_o in sorted(self.solution.design.nodes.items()) if (n := sum(by_o.values()))}

    @property
    def choice(self) -> tuple:
        """What a flip compares: the accelerators bought, and each job's accelerator."""
        return (tuple(self.nodes), tuple(j.accelerator for j in self.solution.jobs)) if self.has_design else ()


@dataclass
class SweepResult:
    instance: str
    param: str
    objective: str
    jobs: list[str]
    rows: list[SweepRow] = field(default_factory=list)

    def flips(self) -> list[tuple[SweepRow, SweepRow]]:
        """(last row before, first row after) for each change of the chosen accelerators."""
        out, prev = [], None
        for r in self.rows:
            if not r.has_design:
                continue
            if r.flip and prev is not None:
                out.append((prev, r))
            prev = r
        return out

    def records(self) -> list[dict]:
        """One flat record per value (CSV / JSON)."""
        out = []
        for r in self.rows:
            sol = r.solution
            rec: dict[str, Any] = {
                "value": r.value, "status": r.status,
                "objective_value": sol.objective_value if r.has_design else None,
                "tco_usd": sol.design.tco_usd if r.has_design else None,
                "capex_usd": sol.design.capex_usd["total"] if r.has_design else None,
                "facility_power_mw": sol.design.facility_power_kw / 1000 if r.has_design else None,
                "nodes": ";".join(f"{a}:{n}" for a, n in r.nodes.items()),
                "flip": r.flip,
                "verified": bool(sol and sol.verified and not r.error),
            }
            jobs = {j.name: j for j in sol.jobs} if r.has_design else {}
            for name in self.jobs:
                j = jobs.get(name)
                rec[f"{name}.accelerator"] = j.accelerator if j else None
                rec[f"{name}.accelerators"] = j.accelerators if j else None
                rec[f"{name}.days"] = j.days if j else None
            rec["note"] = r.error or (" | ".join(x.strip() for x in sol.diagnosis) if sol and not r.has_design else "")
            out.append(rec)
        return out

    def to_csv(self) -> str:
        recs = self.records()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(recs[0]) if recs else ["value"], lineterminator="\n")
        w.writeheader()
        for rec in recs:
            w.writerow(csv_row(rec))
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {
            "instance": self.instance, "param": self.param, "objective": self.objective,
            "rows": [{**rec, "solution": r.solution.to_dict() if r.solution else None}
                     for rec, r in zip(self.records(), self.rows)],
            "flips": [{"between": [a.value, b.value], "from": list(a.nodes), "to": list(b.nodes)} for a, b in self.flips()],
        }


def run_sweep(raw: dict, param: str, values: list[Number], source: str = "<instance>", backend: str = "ortools",
              time_limit_s: Optional[float] = None, gap: Optional[float] = None,
              on_row: Optional[Callable[[int, SweepRow], None]] = None) -> SweepResult:
    """Solve the instance once per value, in the order given (flips compare neighbouring rows).

    Raises InstanceError / SweepError before solving anything if the path or any value is bad."""
    from optimizer.solving.pipeline import solve_instance
    from optimizer.solving.verify import VerificationError
    from optimizer.studies.explain import diagnose_solution

    instances = build_instances(raw, param, values, source)
    first = instances[0] if instances else instance_from_dict(raw, source)
    res = SweepResult(first.name, param, first.objective, [j.name for j in first.training_jobs])
    prev = None
    for i, (v, inst) in enumerate(zip(values, instances)):
        try:
            sol = solve_instance(inst, backend=backend, time_limit_s=time_limit_s, gap=gap)
            row = SweepRow(v, diagnose_solution(inst, sol, backend, time_limit_s))
            if row.solution.status == "error":
                row.error = f"solver error: {row.solution.message}"
        except VerificationError as exc:
            row = SweepRow(v, None, error=f"verification failed: {exc}")
        if row.has_design:
            row.flip = prev is not None and row.choice != prev.choice
            prev = row
        res.rows.append(row)
        if on_row is not None:
            on_row(i, row)
    return res
