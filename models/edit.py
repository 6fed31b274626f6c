"""The one way to edit an instance: fields set by dotted path on its document, then the whole
document validated again by the loader (a bad value gets the error a bad file gets).

Paths: `facility.power_cap_mw`, `workloads[0].deadline_days`, `workloads[llama3-70b].fabric`
(`[name]` picks the list item with that name), `sites[campus].power_cap_mw`,
`catalog.accelerators.b200.node_price_usd`. A value of None removes an optional limit (no capex
cap, no power cap): relaxing a limit is removing it, never writing a huge number.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from .loader import CATALOG_SECTIONS, default_catalog_raw, instance_from_dict
from .schema import Instance

_TOKEN = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


class EditError(ValueError):
    """A path that does not exist or cannot be set, or a sweep over it that cannot be expanded
    (the message names it). Sweeps call it SweepError."""


SweepError = EditError


def parse_path(dotted: str) -> list[str | int]:
    """'workloads[0].deadline_days' -> ['workloads', 0, 'deadline_days']; '[name]' stays a str."""
    parts: list[str | int] = []
    pos = 0
    for m in _TOKEN.finditer(dotted):
        gap = dotted[pos:m.start()]
        is_name = m.group(1) is None
        expected = "." if parts and is_name else ""  # names after the first need a dot; [..] never
        if gap != expected:
            raise EditError(f"bad field path '{dotted}'")
        pos = m.end()
        if not is_name:
            key = m.group(1).strip()
            if not key:
                raise EditError(f"bad field path '{dotted}': empty []")
            parts.append(int(key) if re.fullmatch(r"-?\d+", key) else key)
        else:
            parts.append(m.group(2))
    if pos != len(dotted) or not parts:
        raise EditError(f"bad field path '{dotted}'")
    return parts


def join_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def _find_named(items: list, name: str, dotted: str, prefix) -> int:
    for j, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == name:
            return j
    raise EditError(f"{dotted}: no item named '{name}' in '{join_path(prefix)}'")


def set_path(doc: dict, dotted: str, value: Any) -> None:
    """Set one field in an instance document, creating mappings on the way. A catalog section given
    as a list of names, or omitted (= every built-in entry), first becomes the equivalent mapping."""
    parts = parse_path(dotted)
    node: Any = doc
    for i, key in enumerate(parts):
        last = i == len(parts) - 1
        where = join_path(parts[: i + 1])
        if isinstance(key, int) or (isinstance(node, list) and isinstance(key, str)):
            if not isinstance(node, list):
                raise EditError(f"{dotted}: '{join_path(parts[:i])}' is not a list")
            idx = key if isinstance(key, int) else _find_named(node, key, dotted, parts[:i])
            if not -len(node) <= idx < len(node):
                raise EditError(f"{dotted}: index {idx} out of range ('{join_path(parts[:i])}' has {len(node)} items)")
            if last:
                node[idx] = copy.deepcopy(value)
                return
            node = node[idx]
            continue
        if not isinstance(node, dict):
            raise EditError(f"{dotted}: '{join_path(parts[:i]) or '(top level)'}' is not a mapping")
        if last:
            node[key] = copy.deepcopy(value)
            return
        if i == 1 and parts[0] == "catalog" and key in CATALOG_SECTIONS:
            sec = node.get(key)
            if sec is None:
                sec = {n: {} for n in default_catalog_raw().get(key, {})}
            elif isinstance(sec, list):
                sec = {n: {} for n in sec}
            node[key] = sec
        child = node.get(key)
        if child is None:
            if isinstance(parts[i + 1], int):
                raise EditError(f"{dotted}: '{where}' does not exist")
            child = node[key] = {}
        node = child


def check_path(doc: dict, dotted: str) -> None:
    """Refuse paths that would silently change the question rather than one number in it: setting a
    field of a catalog entry the instance does not offer would add that entry to the offer."""
    parts = parse_path(dotted)
    if len(parts) >= 3 and parts[0] == "catalog" and parts[1] in CATALOG_SECTIONS:
        section, name = parts[1], parts[2]
        cat = doc.get("catalog") if isinstance(doc.get("catalog"), dict) else {}
        given = cat.get(section)
        offered = list(default_catalog_raw().get(section, {})) if given is None else list(given)
        if name not in offered:
            raise EditError(
                f"{dotted}: '{name}' is not offered by this instance (catalog.{section}: {', '.join(map(str, offered))}); "
                "setting its field would add it to the offer"
            )


def document(inst: Instance) -> dict:
    """The instance as a document the loader accepts (the merged catalog listed in full, which
    offers the same entries with the same figures); validating it again gives an equal instance."""
    doc = inst.model_dump(exclude_none=True)
    doc["catalog"].pop("frontend_fabrics", None)  # the loader derives it from the facility or sites
    # A null that differs from what reloading would fill in (a built-in entry's figure, a field's
    # default) must stay: e.g. a site with no storage network, a storage tier in the per-TB form.
    from .loader import default_catalog_raw

    base = default_catalog_raw()
    for section in ("accelerators", "fabrics", "storage"):
        for name, entry in getattr(inst.catalog, section).items():
            for fld, val in entry:
                if val is None and base[section].get(name, {}).get(fld) is not None:
                    doc["catalog"][section][name][fld] = None
    places = [("facility", inst.facility)] if inst.facility is not None else [(i, s) for i, s in enumerate(inst.sites or [])]
    for key, place in places:
        out = doc["facility"] if key == "facility" else doc["sites"][key]
        for fld, info in type(place).model_fields.items():
            if getattr(place, fld) is None and info.default is not None:
                out[fld] = None
    return doc


def edited(doc: dict, changes: Mapping[str, Any], source: str) -> Instance:
    """A validated instance from a document with `changes` (path -> value) applied to a copy."""
    doc = copy.deepcopy(doc)
    for path, value in changes.items():
        check_path(doc, path)
        set_path(doc, path, value)
    return instance_from_dict(doc, source=source)


def with_changes(inst: Instance, changes: Mapping[str, Any]) -> Instance:
    """`inst` with fields set by dotted path, validated again (InstanceError names a bad field)."""
    what = ", ".join(f"{p}={v!r}" for p, v in changes.items())
    return edited(document(inst), changes, f"{inst.name} with {what}")
