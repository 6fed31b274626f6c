"""Instance files (YAML or JSON) -> a validated `Instance`, with errors a person can act on."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Catalog, Instance

CATALOG_SECTIONS = ("accelerators", "fabrics", "storage")

# Bounds checked before anything is parsed or validated: the biggest shipped or generated instance
# (50 workloads x 3 sites) is ~40 KB, 6 levels deep, a few thousand values.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32  # mappings/lists inside each other; the schema needs 6
MAX_VALUES = 500_000  # scalars + containers after YAML aliases are expanded (alias bombs)
MAX_STRING_CHARS = 20_000  # any one string; names are held to 128 by the schema


class InstanceError(Exception):
    """Bad input: names the file, the path to each bad field, what was given and what was expected."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(self.format())

    def format(self) -> str:
        lines = [f"{self.source}: invalid instance ({len(self.problems)} problem{'s' * (len(self.problems) != 1)})"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _loc_to_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("training", "inference") or str(part).startswith(("function-", "str")):
            continue  # union branch tags pydantic adds; not part of the user's path
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict) -> str:
    path = _loc_to_path(err["loc"])
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        return f"{path}: unknown field (check the spelling; `dcopt schema` lists the fields)"
    if err["type"] == "missing":
        return f"{path}: required field is missing"
    if path == "(top level)" and err["type"] == "value_error":
        return msg  # cross-reference checks already name their field
    given = err.get("input")
    if err["type"] == "value_error" and isinstance(given, dict) and msg.split(":", 1)[0].split(".")[0] in given:
        return f"{path}.{msg}"  # a model check that names its own field
    if isinstance(given, (dict, list)):
        return f"{path}: {msg}"
    return f"{path}: got {given!r}, expected: {msg}"


def validation_problems(exc: ValidationError) -> list[str]:
    seen, out = set(), []
    for err in exc.errors():
        text = _describe(err)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# -- YAML: the C loader where available, without YAML 1.1's silent readings --------------------

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe YAML with YAML 1.2 scalars: `yes`/`no`/`on`/`off` stay strings (only true/false are
    booleans), `1:30` stays a string (YAML 1.1 reads it as 90), `010` stays a string (not octal 8),
    `1e9` is a number, and a key given twice is an error instead of the last one silently winning."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r} (first given on line {seen[key]})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_TAG = "tag:yaml.org,2002:"
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag not in (_TAG + "bool", _TAG + "int", _TAG + "float")]
    for ch, rs in _Base.yaml_implicit_resolvers.items()
}
for _tag, _rx, _first in (
    (_TAG + "bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_TAG + "int", r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0b[01_]+)$", "-+0123456789"),
    (_TAG + "float", r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
                     r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_rx), list(_first))


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _yaml_shape_ok(text: str) -> str | None:
    """Nesting depth and size from the event stream (libyaml's parser is iterative, its composer
    recursive: 100,000 nested brackets would overflow the C stack before Python could say so)."""
    depth = events = 0
    for ev in yaml.parse(text, Loader=_Loader):
        events += 1
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels (line {ev.start_mark.line + 1})"
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        if events > MAX_VALUES:
            return f"more than {MAX_VALUES:,} values"
    return None


def _json_no_dups(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _path_join(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def document_problems(data: Any) -> list[str]:
    """What no schema field may hold, wherever it sits: infinities and NaN, text that is not valid
    Unicode (lone surrogates) or absurdly long, nesting past MAX_DEPTH, and more than MAX_VALUES
    values once aliases are expanded. Iterative, so it cannot overflow the stack itself."""
    problems: list[str] = []
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    count = 0
    while stack and len(problems) < 20:
        x, path, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            problems.append(f"(top level): more than {MAX_VALUES:,} values once YAML aliases are expanded")
            break
        where = path or "(top level)"
        if isinstance(x, float) and not math.isfinite(x):
            problems.append(f"{where}: got {x!r}, expected a finite number")
        elif isinstance(x, str):
            if len(x) > MAX_STRING_CHARS:
                problems.append(f"{where}: a string of {len(x):,} characters, expected at most {MAX_STRING_CHARS:,}")
            else:
                try:
                    x.encode("utf-8")
                except UnicodeEncodeError:
                    problems.append(f"{where}: got {x.encode('utf-8', 'backslashreplace').decode()!r}, "
                                    "expected valid Unicode text (it holds a lone surrogate)")
        elif isinstance(x, (dict, list)):
            if depth >= MAX_DEPTH:
                problems.append(f"{where}: nested deeper than {MAX_DEPTH} levels")
                continue
            items = x.items() if isinstance(x, dict) else enumerate(x)
            for k, v in items:
                if isinstance(x, dict):
                    stack.append((k, _path_join(path, "(key)"), depth + 1))
                stack.append((v, _path_join(path, k if isinstance(x, list) else _printable_key(k)), depth + 1))
    return problems


def _printable_key(k: Any) -> str:
    """A key as it can be shown in a message: shortened, lone surrogates escaped."""
    text = str(k)
    if len(text) > 60:
        text = text[:60] + "..."
    return text.encode("utf-8", "backslashreplace").decode()


@lru_cache(maxsize=1)
def default_catalog_raw() -> dict[str, Any]:
    text = resources.files("models").joinpath("data/catalog.yaml").read_text()
    return _yaml_load(text)


def default_catalog() -> Catalog:
    return Catalog.model_validate(default_catalog_raw())


def merge_catalog(user: Any, source: str) -> dict[str, Any]:
    """Built-in catalog + the instance's `catalog:` section.

    Per section (accelerators, fabrics, storage): omitted = every built-in entry; a list of names or
    a mapping name -> overrides = only those entries, built-in fields updated by the overrides. An
    entry not in the built-in catalog must give every field. `calibration:` overrides knobs.
    """
    base = default_catalog_raw()
    if user is None:
        user = {}
    if not isinstance(user, dict):
        raise InstanceError(source, [f"catalog: got {type(user).__name__}, expected a mapping"])
    unknown = set(user) - set(CATALOG_SECTIONS) - {"calibration"}
    if unknown:
        raise InstanceError(
            source, [f"catalog.{k}: unknown section (expected accelerators, fabrics, storage, calibration)" for k in sorted(unknown)]
        )
    merged: dict[str, Any] = {}
    for section in CATALOG_SECTIONS:
        chosen = user.get(section)
        if chosen is None:
            merged[section] = {k: dict(v) for k, v in base[section].items()}
            continue
        if isinstance(chosen, list):
            bad = [i for i, name in enumerate(chosen) if not isinstance(name, str)]
            if bad:
                raise InstanceError(source, [f"catalog.{section}[{i}]: got {type(chosen[i]).__name__}, expected the "
                                             "name of a catalog entry" for i in bad])
            chosen = {name: {} for name in chosen}
        if not isinstance(chosen, dict):
            raise InstanceError(source, [f"catalog.{section}: expected a list of names or a mapping name -> fields"])
        merged[section] = {}
        for name, over in chosen.items():
            over = over or {}
            if not isinstance(over, dict):
                raise InstanceError(source, [f"catalog.{section}.{name}: expected a mapping of fields"])
            merged[section][name] = {**base[section].get(name, {}), **over}
    calibration = user.get("calibration") or {}
    if not isinstance(calibration, dict):
        raise InstanceError(source, [f"catalog.calibration: got {type(calibration).__name__}, expected a mapping of knobs"])
    merged["calibration"] = {**base["calibration"], **calibration}
    return merged


def instance_from_dict(data: Any, source: str = "<instance>") -> Instance:
    if not isinstance(data, dict):
        raise InstanceError(source, [f"(top level): got {type(data).__name__}, expected a mapping of sections"])
    problems = document_problems(data)
    if problems:
        raise InstanceError(source, problems)
    data = dict(data)
    data["catalog"] = merge_catalog(data.get("catalog"), source)
    # Front-end networks named by the facility or sites: from the instance's fabrics, else built-in.
    places = [data.get("facility")] + (data.get("sites") if isinstance(data.get("sites"), list) else [])
    frontends = {}
    for place in places:
        if not isinstance(place, dict):
            continue
        for fld, default in (("frontend_fabric", "eth-100g"), ("storage_fabric", "eth-200g"),
                             ("management_fabric", "eth-1g-mgmt")):
            name = place.get(fld, default)
            if not isinstance(name, str):
                continue  # the schema reports a wrong type, naming the field (null = no such network)
            spec = data["catalog"]["fabrics"].get(name) or default_catalog_raw()["fabrics"].get(name)
            if spec is not None:
                frontends[name] = dict(spec)
    data["catalog"]["frontend_fabrics"] = frontends
    try:
        return Instance.model_validate(data)
    except ValidationError as exc:
        raise InstanceError(source, validation_problems(exc)) from None
    except RecursionError:  # unreachable after document_problems; kept so no input can give a traceback
        raise InstanceError(source, [f"(top level): nested deeper than {MAX_DEPTH} levels"]) from None


def parse_text(text: str, source: str, json_syntax: bool = False) -> Any:
    """An instance document from its text: JSON, or YAML (safe, C loader, YAML 1.2 scalars)."""
    kind = "JSON" if json_syntax else "YAML"
    try:
        if json_syntax:
            return json.loads(text, object_pairs_hook=_json_no_dups)
        shape = _yaml_shape_ok(text)
        if shape:
            raise InstanceError(source, [f"(top level): {shape}"])
        return _yaml_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise InstanceError(source, [f"not valid {kind}: {where}{_one_line(what or exc)}"]) from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise InstanceError(source, [f"not valid {kind}: {_one_line(exc)}"]) from None
    except RecursionError:
        raise InstanceError(source, [f"(top level): nested deeper than {MAX_DEPTH} levels"]) from None
    except ValueError as exc:  # duplicate JSON keys; integers past Python's digit limit
        raise InstanceError(source, [f"not valid {kind}: {_one_line(exc)}"]) from None


def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split())
    text = text.encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= limit else text[:limit] + "..."


def read_file(path: str | Path) -> Any:
    """The document in an instance file. Only regular files up to MAX_FILE_BYTES of UTF-8 text are
    read: a directory, a device, a pipe or a binary gets an InstanceError, not a traceback or a hang."""
    path = Path(path)
    source = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InstanceError(source, ["file not found"]) from None
    except OSError as exc:
        raise InstanceError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    if stat.S_ISDIR(st.st_mode):
        raise InstanceError(source, ["is a directory, expected an instance file (YAML or JSON)"])
    if not stat.S_ISREG(st.st_mode):
        raise InstanceError(source, ["not a regular file (a device, pipe or socket), expected an instance file"])
    if st.st_size > MAX_FILE_BYTES:
        raise InstanceError(source, [f"{st.st_size:,} bytes, expected at most {MAX_FILE_BYTES:,} (instance files are small)"])
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InstanceError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InstanceError(source, [f"more than {MAX_FILE_BYTES:,} bytes (instance files are small)"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InstanceError(source, [f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                                     "expected a YAML or JSON instance file"]) from None
    if "\x00" in text:
        raise InstanceError(source, ["holds NUL bytes: a binary file, expected a YAML or JSON instance file"])
    return parse_text(text, source, json_syntax=path.suffix.lower() == ".json")


def load_instance(path: str | Path) -> Instance:
    """Read and validate one instance file (YAML or JSON)."""
    return instance_from_dict(read_file(path), source=str(path))
