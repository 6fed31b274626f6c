"""Independent verifier: re-derive every constraint from the design and the instance.

It reads only the design (counts of what is bought, each job's layout) and the instance; each
constraint family's check (beside its `add_<family>` in optimizer/mip/families/) re-runs the
performance model on each layout and recomputes nodes, racks, fabric, storage, power and cost
with its own arithmetic (not the MIP's expressions). Then the objective is recomputed through the
metric registry. Any violation raises `VerificationError` listing all of them.
"""

from __future__ import annotations

from models.metrics import by_objective
from models.schema import Instance

from optimizer.mip.audit import Audit, VerificationError, close
from optimizer.mip.build import FAMILIES
from optimizer.mip.design import Solution

__all__ = ["VerificationError", "verify_solution"]


def verify_solution(instance: Instance, sol: Solution) -> None:
    """Raise VerificationError unless the design satisfies every limit of the instance."""
    if sol.design is None:
        raise VerificationError(["no design to verify"])
    audit = Audit(instance, sol)
    for family in FAMILIES:
        family.check(audit)
        if family.name == "sites" and audit.problems:
            raise VerificationError(audit.problems)  # without the right sites nothing else can be checked
    _check_totals(audit)
    if audit.problems:
        raise VerificationError(audit.problems)


def _check_totals(a: Audit) -> None:
    """The solver's named totals as recomputed, and the objective through its registry metric."""
    sol = a.sol
    for name, value in sol.totals.items():
        if name in a.totals and not close(value, a.totals[name], rel=1e-5, abs_=1e-6):
            a.problem(f"total {name}: reported {value:,.6g}, recomputed {a.totals[name]:,.6g}")
    metric = by_objective(a.instance.objective)
    if metric.per_job:
        obj = sum(j.days for j in sol.jobs)
    else:
        obj = a.totals[metric.mip_total] / metric.mip_scale
    if sol.objective_value is not None and not close(obj, sol.objective_value, rel=1e-5, abs_=1e-3):
        a.problem(f"objective {a.instance.objective}: reported {sol.objective_value:,.4f}, recomputed {obj:,.4f}")
