"""How dcopt writes numbers for people (money, power, durations, carbon) and floats into CSV.

One module so that a terminal table, a notebook, a plot, a diagnosis and a CSV file agree: a TCO
reads `$169.78M` everywhere. It imports nothing from dcopt, so any layer may use it.
"""

from __future__ import annotations

from typing import Any, Optional

NONE = "-"  # what a missing value shows as


def usd(x: Optional[float], *, millions: bool = False, whole: bool = False) -> str:
    """`$169.78M` from $100k up, `$12,345` below; `millions` always writes $M, `whole` always dollars."""
    if x is None:
        return NONE
    if not whole and (millions or abs(x) >= 1e5):
        return f"${x / 1e6:,.2f}M"
    return f"${x:,.0f}"


def _with_unit(x: Optional[float], digits: int, unit: str) -> str:
    if x is None:
        return NONE
    return f"{x:,.{digits}f}" + (f" {unit}" if unit else "")


def mw(kw: Optional[float], digits: int = 3, unit: str = "MW") -> str:
    """Power given in kW (the unit of every `_kw` field) written in MW; `unit=""` for a bare number."""
    return _with_unit(None if kw is None else kw / 1e3, digits, unit)


def days(d: Optional[float], digits: int = 2, unit: str = "days") -> str:
    return _with_unit(d, digits, unit)


def ms(s: Optional[float], digits: int = 1, unit: str = "ms") -> str:
    """A duration given in seconds written in milliseconds (latencies: TTFT, TPOT)."""
    return _with_unit(None if s is None else s * 1e3, digits, unit)


def duration(s: Optional[float]) -> str:
    """A duration in seconds in the largest unit that keeps it readable: `45 s`, `12.5 min`, `3.2 h`."""
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 3600 else f"{s / 3600:.1f} h"


def tco2_per_year(t: Optional[float], digits: int = 1, unit: str = "tCO2/yr") -> str:
    return _with_unit(t, digits, unit)


QUANTITY = {  # the units a limit is measured in (explain's bindings and fixes)
    "MW": lambda x: _with_unit(x, 3, "MW"),  # limits in MW already
    "$": lambda x: usd(x, millions=True),
    "racks": lambda x: f"{x:,.0f} racks",
    "tCO2/yr": tco2_per_year,
    "days": days,
    "s": ms,
}


def quantity(x: float, unit: str) -> str:
    """A limit's value in its unit (MW, $, racks, tCO2/yr, days, s); any other unit as `1,234 unit`."""
    f = QUANTITY.get(unit)
    return f(x) if f else f"{x:,.4g} {unit}"


def number(v: Any) -> str:
    """A value of unknown meaning (estimate tables): floats with 4 significant digits, the rest as is."""
    return f"{v:,.4g}" if isinstance(v, float) else str(v)


def csv_value(v: Any) -> Any:
    """A value for a CSV cell: floats in full precision (repr round-trips), None as an empty cell."""
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else v


def csv_row(row: dict) -> dict:
    return {k: csv_value(v) for k, v in row.items()}


# Values by their registry unit (models.metrics), written three ways: the solve summary line, a
# table cell, and inside a sentence. A metric of another unit is written with its display unit.
_BY_UNIT = {
    "USD": (usd, lambda x: usd(x, millions=True), None),
    "kW": (lambda x: mw(x, unit="MW facility"), mw, None),
    "days": (days, lambda x: days(x, unit="d"), days),
    "tCO2/yr": (lambda x: tco2_per_year(x, unit="tCO2 per year"), lambda x: tco2_per_year(x, unit="t/yr"),
                tco2_per_year),
}
_SENTENCE_PREFIX = {"USD": lambda m, x: f"{m.label} " + usd(x, millions=True), "kW": lambda m, x: f"{m.label} " + mw(x)}
_STYLES = ("summary", "table", "sentence")


def objective(name: str, value: Optional[float], style: str = "summary") -> str:
    """An objective's value with its unit; `style` is summary (`dcopt solve`), table (sweep rows) or
    sentence (explain's fixes). The unit comes from the objective's registry metric."""
    from models.metrics import by_objective

    if value is None:
        return NONE
    i = _STYLES.index(style)
    try:
        m = by_objective(name)
    except ValueError:
        return f"{value:,.4g}" if style == "sentence" else f"{value:g}"
    if style == "sentence" and m.unit in _SENTENCE_PREFIX:
        return _SENTENCE_PREFIX[m.unit](m, value)
    f = _BY_UNIT.get(m.unit, (None, None, None))[i]
    return f(value) if f else f"{m.show(value):,.4g} {m.display_unit}"


def objective_axis(name: str) -> tuple[str, float]:
    """Axis label and the factor from the objective's own unit to the axis's, for plots."""
    from models.metrics import by_objective

    try:
        m = by_objective(name)
    except ValueError:
        return name, 1.0
    return m.title, m.display_scale


def solve_progress(objective_name: str, incumbent: Optional[float], bound: Optional[float], gap: Optional[float],
                   elapsed_s: Optional[float] = None) -> str:
    """A running solve in one line: `incumbent $50.20M · bound $49.80M · gap 0.80% · 12 s` (values in
    the objective's user units; `no design yet` before the first incumbent; no time when None)."""
    parts = ["no design yet" if incumbent is None else f"incumbent {objective(objective_name, incumbent, 'table')}"]
    if bound is not None:
        parts.append(f"bound {objective(objective_name, bound, 'table')}")
    if gap is not None:
        pct = 100 * gap
        parts.append(f"gap {pct:.2f}%" if pct < 100 else "gap >100%")
    if elapsed_s is not None:
        parts.append(duration(elapsed_s))
    return " · ".join(parts)


def node_counts(nodes: dict) -> str:
    """Nodes per accelerator type, labelled as nodes (`392 a100-sxm-80gb nodes`): `N x acc` means chips."""
    return ", ".join(f"{n:,} {a} nodes" for a, n in nodes.items())


def break_even(extra_days: Optional[float]) -> str:
    """An own-versus-rent break-even in words: how much longer (or shorter) the job would have to run."""
    if extra_days is None:
        return "-"
    return (f"owning wins if it ran {extra_days:,.1f} more days" if extra_days > 0
            else f"renting wins if it ran {-extra_days:,.1f} fewer days")
