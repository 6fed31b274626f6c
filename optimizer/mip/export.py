"""Writing a model as free MPS or CPLEX LP text: our own writer, so exporting never imports a
solver and the output is byte-stable for golden-file tests."""

from __future__ import annotations

import math
import re

# The senses of optimizer.mip.lp (not imported: the model imports this module to export itself).
LE, GE, EQ = "<=", ">=", "=="


def to_mps_string(model) -> str:
    vnames = _unique([re.sub(r"\s+", "_", v.name) or f"x{v.index}" for v in model.vars])
    cnames = _unique([re.sub(r"\s+", "_", c.name or "") or f"c{k}" for k, c in enumerate(model.constraints)])
    obj = "OBJ"
    while obj in set(cnames):
        obj += "_"
    cols: list[list[tuple[str, float]]] = [[] for _ in model.vars]
    for i, c in model.objective.terms.items():
        cols[i].append((obj, c))
    for k, con in enumerate(model.constraints):
        for i, c in con.coefs.items():
            cols[i].append((cnames[k], c))
    row_type = {LE: "L", GE: "G", EQ: "E"}
    model_name = re.sub(r"\s+", "_", model.name) or "model"
    lines = [f"* dcopt model {model.name}", f"NAME {model_name}",
             "OBJSENSE", "    MAX" if model.sense == "max" else "    MIN", "ROWS", f" N  {obj}"]
    lines += [f" {row_type[c.sense]}  {cnames[k]}" for k, c in enumerate(model.constraints)]
    lines.append("COLUMNS")
    in_int = False
    for v in model.vars:
        if v.integer != in_int:
            lines.append("    MARKER  'MARKER'  " + ("'INTORG'" if v.integer else "'INTEND'"))
            in_int = v.integer
        entries = cols[v.index] or [(obj, 0.0)]  # keep empty columns so every var is declared
        lines += [f"    {vnames[v.index]}  {row}  {_num(c)}" for row, c in entries]
    if in_int:
        lines.append("    MARKER  'MARKER'  'INTEND'")
    lines.append("RHS")
    if model.objective.constant:
        # MPS convention (CPLEX, Gurobi, HiGHS): objective constant = -RHS of the objective row.
        lines.append(f"    RHS  {obj}  {_num(-model.objective.constant)}")
    lines += [f"    RHS  {cnames[k]}  {_num(c.rhs)}" for k, c in enumerate(model.constraints) if c.rhs]
    lines.append("BOUNDS")
    for v in model.vars:
        n = vnames[v.index]
        if v.lb == v.ub:
            lines.append(f" FX BND  {n}  {_num(v.lb)}")
            continue
        if v.lb == -math.inf:
            lines.append(f" {'FR' if v.ub == math.inf else 'MI'} BND  {n}")
        elif v.lb != 0.0 or v.integer or v.ub < 0:
            # Explicit: some readers default bound-less integer columns to binary, and read a
            # negative UP with an implicit lower bound of 0 as "lower bound -inf".
            lines.append(f" LO BND  {n}  {_num(v.lb)}")
        if v.ub != math.inf:
            lines.append(f" UP BND  {n}  {_num(v.ub)}")
        elif v.integer and v.lb != -math.inf:
            lines.append(f" PL BND  {n}")
    lines.append("ENDATA")
    return "\n".join(lines) + "\n"


def to_lp_string(model) -> str:
    vnames = _unique([_lp_name(v.name, "x", v.index) for v in model.vars])
    cnames = _unique([_lp_name(c.name or "", "c", k) for k, c in enumerate(model.constraints)])

    def expr(terms: dict[int, float]) -> list[str]:
        out = []
        for i, c in terms.items():
            sign = "-" if c < 0 else "+"
            out.append(f"{sign} {_num(abs(c))} {vnames[i]}")
        return out

    def wrap(head: str, tokens: list[str]) -> list[str]:
        lines, cur = [], head
        for t in tokens:
            if len(cur) + len(t) > 200:  # CPLEX LP lines are limited to 255 chars
                lines.append(cur)
                cur = "   "
            cur += " " + t
        lines.append(cur)
        return lines

    out = [f"\\ dcopt model {model.name}", "Maximize" if model.sense == "max" else "Minimize"]
    toks = expr(model.objective.terms)
    if model.objective.constant or not toks:
        c = model.objective.constant
        toks.append(f"{'-' if c < 0 else '+'} {_num(abs(c))}")
    out += wrap(" obj:", toks)
    out.append("Subject To")
    lp_sense = {LE: "<=", GE: ">=", EQ: "="}
    for k, con in enumerate(model.constraints):
        toks = expr(con.coefs) or ([f"0 {vnames[0]}"] if vnames else [])
        toks.append(f"{lp_sense[con.sense]} {_num(con.rhs)}")
        out += wrap(f" {cnames[k]}:", toks)
    out.append("Bounds")
    for v in model.vars:
        n = vnames[v.index]
        if v.lb == v.ub:
            out.append(f" {n} = {_num(v.lb)}")
        elif v.lb == -math.inf and v.ub == math.inf:
            out.append(f" {n} free")
        elif v.lb != 0.0 or v.ub != math.inf:
            lo = "-inf" if v.lb == -math.inf else _num(v.lb)
            hi = "+inf" if v.ub == math.inf else _num(v.ub)
            out.append(f" {lo} <= {n} <= {hi}")
    ints = [vnames[v.index] for v in model.vars if v.integer]
    if ints:
        out.append("Generals")
        out += wrap("", ints)
    out.append("End")
    return "\n".join(out) + "\n"


def _num(x: float) -> str:
    """Shortest exact text for a float (repr round-trips), ints without '.0'."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


_LP_MAP = str.maketrans({"[": "(", "]": ")", "=": ".", "-": "_", " ": "_", ":": ".", "+": "_",
                         "*": "_", "^": "_", "<": "_", ">": "_", "\\": "_", "\t": "_"})


def _lp_name(name: str, prefix: str, k: int) -> str:
    n = name.translate(_LP_MAP)
    if not n or n[0].isdigit() or n[0] == "." or n[0] in "eE" and n[1:2].isdigit():
        n = f"{prefix}{k}_{n}"
    return n


def _unique(names: list[str]) -> list[str]:
    """Make sanitised names unique by suffixing `#k` (legal in both LP and MPS)."""
    seen: dict[str, int] = {}
    out = []
    taken = set(names)
    for n in names:
        if n in seen:
            k = seen[n]
            while f"{n}#{k}" in taken:
                k += 1
            seen[n] = k + 1
            n2 = f"{n}#{k}"
            taken.add(n2)
            out.append(n2)
        else:
            seen[n] = 1
            out.append(n)
    return out
