"""Own versus rent: for each workload the optimizer was free to own or rent, the design it did not
choose (re-solved with that workload pinned the other way) and the break-even duration."""

from __future__ import annotations

from models.edit import with_changes
from models.schema import Instance

from optimizer.mip.design import Solution


def break_even(instance: Instance, sol: Solution, solve, **kw) -> list[dict]:
    """One row per `either` workload: owned and rented TCO of the whole design, and for a training job
    how many more days it would have to run for owning to win (negative: how many fewer for renting
    to win). Owned cost does not grow with a job's duration (hardware is bought for the horizon);
    rent grows with it at the job's rent per day. `solve(instance, **kw)` solves one instance."""
    rows = []
    chosen = {j.name: j.procurement for j in sol.jobs}
    chosen.update({s.name: ("rent" if all(g.procurement == "rent" for g in s.groups) else
                            "own" if all(g.procurement == "own" for g in s.groups) else "mixed") for s in sol.services})
    for w in instance.workloads:
        if instance.procurement_of(w) != "either":
            continue
        tco = {}
        for mode in ("own", "rent"):
            alt = solve(with_changes(instance, {f"workloads[{w.name}].procurement": mode}), **kw)
            tco[mode] = alt.design.tco_usd if alt.design is not None and alt.verified else None
            if mode == "rent" and w in instance.training_jobs and alt.design is not None:
                rented = next(j for j in alt.jobs if j.name == w.name)
        row = {"workload": w.name, "kind": w.kind, "chosen": chosen.get(w.name, "own"),
               "tco_owned_usd": tco["own"], "tco_rented_usd": tco["rent"], "break_even_extra_days": None}
        if w in instance.training_jobs and None not in tco.values():
            acc = instance.catalog.accelerators[rented.accelerator]
            row["break_even_extra_days"] = extra_days(acc, rented.nodes * acc.accelerators_per_node, rented.days,
                                                      tco["own"] - tco["rent"])
        rows.append(row)
    return rows


def extra_days(acc, accelerators: int, days: float, gap_usd: float) -> float | None:
    """Days a rented job would have to run longer (gap > 0) or shorter (gap < 0) for its rent to
    change by `gap_usd`, at the cheaper rate for each duration (committed terms are billed whole, so
    rent is a staircase there); None when no duration closes the gap."""
    now = acc.rent_usd(accelerators, days * 24.0)[0]
    f = lambda e: acc.rent_usd(accelerators, max(days + e, 0.0) * 24.0)[0] - now - gap_usd  # noqa: E731
    if gap_usd >= 0:
        lo, hi = 0.0, 1.0
        while f(hi) < 0:
            lo, hi = hi, 2 * hi
            if hi > 1e6:
                return None
    else:
        lo, hi = -days, 0.0
        if f(lo) > 0:
            return None
    for _ in range(60):  # the smallest change that closes the gap
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return hi
