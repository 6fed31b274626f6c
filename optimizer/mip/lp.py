"""A tiny solver-independent MILP: the MIP builder writes numbers and names here, backends read it.

Why our own and not PuLP/MathOpt objects directly: the builder must not depend on which solver
runs (OR-Tools may be missing, PuLP is the fallback), names like `nodes[acc=h100-sxm]` must
survive verbatim for reports even where a solver rejects them, and tests need an evaluator that
checks an assignment without any solver.

    m = Model("demo")
    x = m.add_var("x", ub=100, integer=True)
    y = m.add_var("y")
    m.add_constraint(3 * x + 2 * y >= 10.5, "demand")
    m.minimize(5 * x + 4 * y)

Expressions are immutable under `+ - * /` (a new LinExpr each time); `+=`/`-=` mutate in place
like a list. `sum()` over n terms is O(n^2) because each step copies; use `lin_sum` for long sums.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

LE, GE, EQ = "<=", ">=", "=="
SENSES = (LE, GE, EQ)

Values = Union[Mapping[int, float], Sequence[float]]


class Key(str):
    """A name that is structure: a family and its coordinates, rendered `family[k=v,...]`.

    Variables, named totals and constraints are keyed by `Key`s; values and duals are read back by
    building the same key (`K("power_cap", site="campus")`), never by re-typing the rendered text.
    It is a str, so exports, reports and plain-string lookups see exactly the readable name."""

    def __new__(cls, family: str, *index: object, **coords: object) -> "Key":
        parts = [str(i) for i in index] + [f"{k}={v}" for k, v in coords.items()]
        self = super().__new__(cls, family + ("[" + ",".join(parts) + "]" if parts else ""))
        self.family = family
        self.index = index
        self.coords = tuple(coords.items())
        return self

    def __getnewargs_ex__(self):  # pickling (batch workers) rebuilds the structure
        return (self.family, *self.index), dict(self.coords)

    def coord(self, name: str) -> object:
        return dict(self.coords)[name]


K = Key


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) or (isinstance(x, numbers.Real) and not isinstance(x, bool))


class _Arith:
    """Shared operators for Var and LinExpr; everything goes through `_as_expr`."""

    __slots__ = ()
    # Makes numpy scalars/arrays return NotImplemented so Python calls our reflected operator
    # (np.float64(2) * x would otherwise build a 0-d object array).
    __array_ufunc__ = None

    def _as_expr(self) -> LinExpr:  # pragma: no cover - overridden
        raise NotImplementedError

    def __add__(self, other):
        e = self._as_expr().copy()
        return e._iadd(other, 1.0)

    def __radd__(self, other):
        return self.__add__(other)

    def __sub__(self, other):
        e = self._as_expr().copy()
        return e._iadd(other, -1.0)

    def __rsub__(self, other):
        return (-self).__add__(other)

    def __neg__(self):
        return self._as_expr()._scaled(-1.0)

    def __pos__(self):
        return self._as_expr().copy()

    def __mul__(self, other):
        if not _is_number(other):
            if isinstance(other, _Arith):
                raise TypeError("product of two variables/expressions is not linear")
            return NotImplemented
        return self._as_expr()._scaled(float(other))

    def __rmul__(self, other):
        return self.__mul__(other)

    def __truediv__(self, other):
        if not _is_number(other):
            if isinstance(other, _Arith):
                raise TypeError("division by a variable/expression is not linear")
            return NotImplemented
        if other == 0:
            raise ZeroDivisionError("expression divided by zero")
        return self._as_expr()._scaled(1.0 / float(other))

    def __le__(self, other):
        return Constraint._from_diff(self - other, LE)

    def __ge__(self, other):
        return Constraint._from_diff(self - other, GE)

    def __eq__(self, other):  # type: ignore[override]
        return Constraint._from_diff(self - other, EQ)

    def __ne__(self, other):  # type: ignore[override]
        raise TypeError("'!=' constraints are not linear; use two models or a binary")


class Var(_Arith):
    """A decision variable: just its index and metadata; arithmetic builds LinExpr.

    `==` builds a constraint, so compare variables with `is` or by `.index`; hashing is by
    identity so Vars work as dict keys.
    """

    __slots__ = ("index", "name", "lb", "ub", "integer")

    def __init__(self, index: int, name: str, lb: float, ub: float, integer: bool):
        self.index = index
        self.name = name
        self.lb = lb
        self.ub = ub
        self.integer = integer

    __hash__ = object.__hash__

    def _as_expr(self) -> LinExpr:
        return LinExpr({self.index: 1.0}, 0.0)

    def __repr__(self) -> str:
        kind = "int" if self.integer else "cont"
        return f"Var({self.index}, {self.name!r}, [{self.lb}, {self.ub}], {kind})"


class LinExpr(_Arith):
    """sum(coef * var) + constant, stored as {var index: coef}."""

    __slots__ = ("terms", "constant")
    __hash__ = None  # type: ignore[assignment]  # mutable (+=)

    def __init__(self, terms: dict[int, float] | None = None, constant: float = 0.0):
        self.terms: dict[int, float] = terms if terms is not None else {}
        self.constant = float(constant)

    def _as_expr(self) -> LinExpr:
        return self

    def copy(self) -> LinExpr:
        return LinExpr(dict(self.terms), self.constant)

    def _scaled(self, k: float) -> LinExpr:
        return LinExpr({i: c * k for i, c in self.terms.items()}, self.constant * k)

    def _iadd(self, other, sign: float) -> LinExpr:
        """Add `sign * other` into self (in place) and return self."""
        terms = self.terms
        if isinstance(other, Var):
            i = other.index
            terms[i] = terms.get(i, 0.0) + sign
        elif isinstance(other, LinExpr):
            for i, c in other.terms.items():
                terms[i] = terms.get(i, 0.0) + sign * c
            self.constant += sign * other.constant
        elif _is_number(other):
            self.constant += sign * float(other)
        else:
            return NotImplemented
        return self

    def __iadd__(self, other):
        return self._iadd(other, 1.0)

    def __isub__(self, other):
        return self._iadd(other, -1.0)

    def __repr__(self) -> str:
        parts = [f"{c:+g}*v{i}" for i, c in self.terms.items()]
        if self.constant or not parts:
            parts.append(f"{self.constant:+g}")
        return "LinExpr(" + " ".join(parts) + ")"


def as_expr(x: Var | LinExpr | float) -> LinExpr:
    """A fresh LinExpr for a Var, LinExpr or number."""
    if isinstance(x, Var):
        return x._as_expr()
    if isinstance(x, LinExpr):
        return x.copy()
    if _is_number(x):
        return LinExpr({}, float(x))
    raise TypeError(f"cannot make a linear expression from {type(x).__name__}")


def lin_sum(items: Iterable[Var | LinExpr | float | tuple[float, Var]]) -> LinExpr:
    """O(total terms) sum; items are Vars, LinExprs, numbers or (coef, Var) pairs.

    `lin_sum((c, x) for ...)` avoids building one LinExpr per term.
    """
    out = LinExpr()
    terms = out.terms
    const = 0.0
    for it in items:
        if isinstance(it, Var):
            i = it.index
            terms[i] = terms.get(i, 0.0) + 1.0
        elif isinstance(it, tuple):
            c, v = it
            i = v.index
            terms[i] = terms.get(i, 0.0) + float(c)
        elif isinstance(it, LinExpr):
            for i, c in it.terms.items():
                terms[i] = terms.get(i, 0.0) + c
            const += it.constant
        elif _is_number(it):
            const += float(it)
        else:
            raise TypeError(f"lin_sum: cannot add {type(it).__name__}")
    out.constant = const
    return out


class Constraint:
    """`coefs · x  sense  rhs`, constants moved to the right. Built by `<=`, `>=`, `==`."""

    __slots__ = ("coefs", "sense", "rhs", "name")

    def __init__(self, coefs: dict[int, float], sense: str, rhs: float, name: str | None = None):
        if sense not in SENSES:
            raise ValueError(f"sense must be one of {SENSES}, got {sense!r}")
        self.coefs = coefs
        self.sense = sense
        self.rhs = float(rhs)
        self.name = name

    @classmethod
    def _from_diff(cls, diff, sense: str) -> Constraint:
        if diff is NotImplemented:
            return NotImplemented
        return cls(diff.terms, sense, -diff.constant)

    def __bool__(self):
        # Catches `0 <= x <= 5` (Python chains it with `and`) and `if x == y:`.
        raise TypeError(
            "a Constraint has no truth value: write chained bounds as two constraints, "
            "and compare variables with `is` or `.index`"
        )

    def lhs_value(self, values: Values) -> float:
        return math.fsum(c * values[i] for i, c in self.coefs.items())

    def activity_norm(self, values: Values) -> float:
        """sum |a_i x_i|: the scale against which a solver's feasibility tolerance is relative."""
        return math.fsum(abs(c * values[i]) for i, c in self.coefs.items())

    def violation(self, values: Values) -> float:
        """How far the assignment is outside the constraint (0 if satisfied)."""
        lhs = self.lhs_value(values)
        if self.sense == LE:
            return max(0.0, lhs - self.rhs)
        if self.sense == GE:
            return max(0.0, self.rhs - lhs)
        return abs(lhs - self.rhs)

    def __repr__(self) -> str:
        lhs = " ".join(f"{c:+g}*v{i}" for i, c in self.coefs.items()) or "0"
        return f"Constraint({self.name!r}: {lhs} {self.sense} {self.rhs:g})"


@dataclass(frozen=True)
class Violation:
    """One broken constraint, bound or integrality requirement of an assignment."""

    name: str
    kind: str  # "constraint" | "lower bound" | "upper bound" | "integrality"
    value: float  # lhs (constraint) or variable value
    limit: str  # e.g. "<= 10.5", ">= 0", "integer"
    amount: float

    def __str__(self) -> str:
        return f"{self.name}: {self.kind} {self.value:.6g} {self.limit} (off by {self.amount:.3g})"


class Model:
    """Variables, named constraints and one objective; numbers only, no solver."""

    def __init__(self, name: str = "model"):
        self.name = name
        self.vars: list[Var] = []
        self.constraints: list[Constraint] = []
        self.objective: LinExpr = LinExpr()
        self.sense: str = "min"
        self._var_by_name: dict[str, int] = {}
        self._con_by_name: dict[str, int] = {}

    # -- building -----------------------------------------------------------------------------
    def add_var(self, name: str, lb: float | None = 0.0, ub: float | None = None, integer: bool = False) -> Var:
        """`lb=None` means -inf, `ub=None` means +inf. Names must be unique (results map by name)."""
        if not isinstance(name, str) or not name:
            raise ValueError("variable name must be a non-empty string")
        if name in self._var_by_name:
            raise ValueError(f"duplicate variable name {name!r}")
        lo = -math.inf if lb is None else float(lb)
        hi = math.inf if ub is None else float(ub)
        if math.isnan(lo) or math.isnan(hi) or lo == math.inf or hi == -math.inf:
            raise ValueError(f"variable {name!r}: invalid bounds [{lb}, {ub}]")
        if lo > hi:
            raise ValueError(f"variable {name!r}: lower bound {lo} > upper bound {hi}")
        v = Var(len(self.vars), name, lo, hi, bool(integer))
        self.vars.append(v)
        self._var_by_name[name] = v.index
        return v

    def add_binary(self, name: str) -> Var:
        return self.add_var(name, 0.0, 1.0, integer=True)

    def add_constraint(self, constraint: Constraint, name: str) -> None:
        """Store a normalised copy (zero coefficients dropped); NaN/inf data is rejected here,
        where the builder can still say which constraint it was."""
        if not isinstance(constraint, Constraint):
            raise TypeError(
                f"constraint {name!r}: expected a Constraint (expr <= / >= / == ...), "
                f"got {type(constraint).__name__}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError("constraint name must be a non-empty string")
        if name in self._con_by_name:
            raise ValueError(f"duplicate constraint name {name!r}")
        n = len(self.vars)
        coefs: dict[int, float] = {}
        for i, c in constraint.coefs.items():
            if not 0 <= i < n:
                raise ValueError(f"constraint {name!r}: variable index {i} is not in model {self.name!r}")
            if not math.isfinite(c):
                raise ValueError(f"constraint {name!r}: coefficient {c} on {self.vars[i].name!r}")
            if c != 0.0:
                coefs[i] = c
        if not math.isfinite(constraint.rhs):
            raise ValueError(f"constraint {name!r}: right-hand side {constraint.rhs}")
        self._con_by_name[name] = len(self.constraints)
        self.constraints.append(Constraint(coefs, constraint.sense, constraint.rhs, name))

    def _set_objective(self, expr, sense: str) -> None:
        e = as_expr(expr)
        n = len(self.vars)
        for i, c in e.terms.items():
            if not 0 <= i < n:
                raise ValueError(f"objective: variable index {i} is not in model {self.name!r}")
            if not math.isfinite(c):
                raise ValueError(f"objective: coefficient {c} on {self.vars[i].name!r}")
        if not math.isfinite(e.constant):
            raise ValueError(f"objective: constant {e.constant}")
        e.terms = {i: c for i, c in e.terms.items() if c != 0.0}
        self.objective = e
        self.sense = sense

    def minimize(self, expr) -> None:
        self._set_objective(expr, "min")

    def maximize(self, expr) -> None:
        self._set_objective(expr, "max")

    # -- read access --------------------------------------------------------------------------
    @property
    def num_vars(self) -> int:
        return len(self.vars)

    @property
    def num_integer_vars(self) -> int:
        return sum(1 for v in self.vars if v.integer)

    @property
    def num_constraints(self) -> int:
        return len(self.constraints)

    def var(self, name: str) -> Var:
        return self.vars[self._var_by_name[name]]

    def with_integers_fixed(self, values: Values) -> "Model":
        """A copy whose integer variables are fixed at `values` (rounded) and made continuous: the LP
        whose duals price the limits around this integer design. Same indices and names."""
        m = Model(self.name + "[integers fixed]")
        for v in self.vars:
            if v.integer:
                x = float(round(values[v.index]))
                m.vars.append(Var(v.index, v.name, x, x, False))
            else:
                m.vars.append(Var(v.index, v.name, v.lb, v.ub, False))
        m._var_by_name = dict(self._var_by_name)
        m.constraints = list(self.constraints)
        m._con_by_name = dict(self._con_by_name)
        m.objective, m.sense = self.objective, self.sense
        return m

    def relaxation(self) -> "Model":
        """A copy with every variable continuous: the LP relaxation, whose bound the valid
        inequalities lift (benchmarks/root_gap.py). Same indices and names."""
        m = Model(self.name + "[relaxed]")
        m.vars = [Var(v.index, v.name, v.lb, v.ub, False) for v in self.vars]
        m._var_by_name = dict(self._var_by_name)
        m.constraints, m._con_by_name = list(self.constraints), dict(self._con_by_name)
        m.objective, m.sense = self.objective, self.sense
        return m

    def constraint(self, name: str) -> Constraint:
        return self.constraints[self._con_by_name[name]]

    def values_by_name(self, values: Values) -> dict[str, float]:
        """Solver values (by index) -> {variable name: value}."""
        return {v.name: values[v.index] for v in self.vars}

    def __repr__(self) -> str:
        return (f"Model({self.name!r}: {self.num_vars} vars ({self.num_integer_vars} integer), "
                f"{self.num_constraints} constraints, {self.sense})")

    # -- checking an assignment ---------------------------------------------------------------
    def expr_value(self, expr, values: Values) -> float:
        return expr_value(expr, values)

    def objective_value(self, values: Values) -> float:
        return expr_value(self.objective, values)

    def violations(self, values: Values, tol: float = 1e-6) -> list[Violation]:
        """Everything the assignment breaks, worst first.

        A row may be off by `tol * max(1, |rhs|, sum|a_i x_i|)`: solvers check feasibility
        relative to the row's magnitude (measured: SCIP returns rows off by 1e-5 whose terms are
        ~100), so a purely absolute test flags noise, not errors.
        """
        out: list[Violation] = []
        for v in self.vars:
            x = values[v.index]
            if x < v.lb - tol * max(1.0, abs(v.lb)):
                out.append(Violation(v.name, "lower bound", x, f">= {v.lb:g}", v.lb - x))
            if x > v.ub + tol * max(1.0, abs(v.ub)):
                out.append(Violation(v.name, "upper bound", x, f"<= {v.ub:g}", x - v.ub))
            if v.integer and abs(x - round(x)) > tol:
                out.append(Violation(v.name, "integrality", x, "integer", abs(x - round(x))))
        for c in self.constraints:
            amount = c.violation(values)
            if amount > tol * max(1.0, abs(c.rhs)) and amount > tol * c.activity_norm(values):
                out.append(Violation(c.name or "?", "constraint", c.lhs_value(values), f"{c.sense} {c.rhs:g}", amount))
        out.sort(key=lambda x: -x.amount)
        return out

    def evaluate(self, values: Values, tol: float = 1e-6) -> dict:
        """{"objective": float, "feasible": bool, "violations": [Violation]} for an assignment."""
        viol = self.violations(values, tol)
        return {"objective": self.objective_value(values), "feasible": not viol, "violations": viol}

    # -- export -------------------------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write .mps (free MPS, names verbatim except whitespace) or .lp (CPLEX LP, names
        sanitised: `[`->`(`, `]`->`)`, `=`->`.`, `-`->`_`); optimizer/mip/export.py writes them."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".mps":
            p.write_text(self.to_mps_string())
        elif suffix == ".lp":
            p.write_text(self.to_lp_string())
        else:
            raise ValueError(f"export: unknown format {p.suffix!r}; use .lp or .mps")
        return p

    def to_lp_file(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.to_lp_string())
        return p

    def to_mps_string(self) -> str:
        from optimizer.mip.export import to_mps_string

        return to_mps_string(self)

    def to_lp_string(self) -> str:
        from optimizer.mip.export import to_lp_string

        return to_lp_string(self)


def expr_value(expr, values: Values) -> float:
    """Value of a Var / LinExpr / number under an assignment indexed by variable index."""
    if isinstance(expr, Var):
        return float(values[expr.index])
    if isinstance(expr, LinExpr):
        return math.fsum([expr.constant, *(c * values[i] for i, c in expr.terms.items())])
    if _is_number(expr):
        return float(expr)
    raise TypeError(f"cannot evaluate {type(expr).__name__}")
