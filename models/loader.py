"""Instance files (YAML or JSON) -> a validated `Instance`, with errors a person can act on."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Catalog, Instance

CATALOG_SECTIONS = ("accelerators", "fabrics", "storage")


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


@lru_cache(maxsize=1)
def default_catalog_raw() -> dict[str, Any]:
    text = resources.files("models").joinpath("data/catalog.yaml").read_text()
    return yaml.safe_load(text)


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
            chosen = {name: {} for name in chosen}
        if not isinstance(chosen, dict):
            raise InstanceError(source, [f"catalog.{section}: expected a list of names or a mapping name -> fields"])
        merged[section] = {}
        for name, over in chosen.items():
            over = over or {}
            if not isinstance(over, dict):
                raise InstanceError(source, [f"catalog.{section}.{name}: expected a mapping of fields"])
            merged[section][name] = {**base[section].get(name, {}), **over}
    merged["calibration"] = {**base["calibration"], **(user.get("calibration") or {})}
    return merged


def instance_from_dict(data: Any, source: str = "<instance>") -> Instance:
    if not isinstance(data, dict):
        raise InstanceError(source, [f"(top level): got {type(data).__name__}, expected a mapping of sections"])
    data = dict(data)
    data["catalog"] = merge_catalog(data.get("catalog"), source)
    # Front-end networks named by the facility or sites: from the instance's fabrics, else built-in.
    places = [data.get("facility")] + (data.get("sites") if isinstance(data.get("sites"), list) else [])
    frontends = {}
    for place in places:
        if isinstance(place, dict):
            name = place.get("frontend_fabric", "eth-100g")
            spec = data["catalog"]["fabrics"].get(name) or default_catalog_raw()["fabrics"].get(name)
            if isinstance(name, str) and spec is not None:
                frontends[name] = dict(spec)
    data["catalog"]["frontend_fabrics"] = frontends
    try:
        return Instance.model_validate(data)
    except ValidationError as exc:
        raise InstanceError(source, validation_problems(exc)) from None


def read_file(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise InstanceError(str(path), ["file not found"])
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise InstanceError(str(path), [f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}"]) from None


def load_instance(path: str | Path) -> Instance:
    """Read and validate one instance file (YAML or JSON)."""
    return instance_from_dict(read_file(path), source=str(path))
