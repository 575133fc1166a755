"""The catalog as JSON: entries, skipped and broken files round-trip exactly, for the
PostgreSQL cache (activities/playbook_cache.py). Reading back is strict: a row written for an
older shape of `Entry` raises ValueError, so the cache treats it as a miss and parses again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from activities import header as hdr
from activities import vocabulary as vocab
from activities.discovery import SOURCES, Broken, Entry, Item, Skipped, VarSpec

_ENTRY_FIELDS = {f.name: str(f.type) for f in fields(Entry)}
_VAR_KEYS = frozenset(f.name for f in fields(VarSpec))


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """Every field of `entry` as JSON values: tuples as lists, each of `vars` as a mapping."""
    out = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    out.update({k: list(v) for k, v in out.items() if isinstance(v, tuple)})
    out["vars"] = [{"name": v.name, "type": v.type, "secret": v.secret} for v in entry.vars]
    return out


def entry_from_json(d: Mapping[str, Any]) -> Entry:
    """The `Entry` that `entry_to_json` gave `d` (a "kind" key is ignored).

    Raises ValueError unless `d` has exactly the fields of today's `Entry`, each of its type:
    a cache row from an older shape is a miss, never a half-filled entry.
    """
    data = {k: v for k, v in d.items() if k != "kind"}
    if set(data) != set(_ENTRY_FIELDS):
        raise ValueError(f"not an entry: fields {sorted(set(data) ^ set(_ENTRY_FIELDS))} differ")
    bad = [name for name, kind in _ENTRY_FIELDS.items() if not _fits(data[name], kind)]
    if bad:
        raise ValueError(f"not an entry: bad {', '.join(bad)}")
    data.update({k: tuple(v) for k, v in data.items() if isinstance(v, list)})
    data["vars"] = tuple(VarSpec(v["name"], v["type"], v["secret"]) for v in data["vars"])
    return Entry(**data)


def _fits(value: Any, kind: str) -> bool:
    """Whether a JSON value fits an `Entry` field annotated `kind`."""
    if kind == "tuple[VarSpec, ...]":
        return isinstance(value, list) and all(
            isinstance(v, dict)
            and set(v) == _VAR_KEYS
            and isinstance(v["name"], str)
            and (v["type"] is None or v["type"] in hdr.VAR_TYPES)
            and isinstance(v["secret"], bool)
            for v in value
        )
    if kind == "tuple[str, ...]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "int | None":
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "Source":
        return value in SOURCES
    if kind == "vocab.Risk":
        return value in vocab.RISKS
    return isinstance(value, str)


def item_to_json(item: Item) -> dict[str, Any]:
    """An entry, skipped or broken file as JSON, its class named by "kind"."""
    if isinstance(item, Entry):
        return {"kind": "entry", **entry_to_json(item)}
    return {"kind": "skipped" if isinstance(item, Skipped) else "broken", "path": item.path, "reason": item.reason}


def item_from_json(d: Mapping[str, Any]) -> Item:
    """What `item_to_json` gave `d`; ValueError for any other shape."""
    name = d.get("kind")
    if name == "entry":
        return entry_from_json(d)
    kinds: dict[str, type[Skipped] | type[Broken]] = {"skipped": Skipped, "broken": Broken}
    kind = kinds.get(name) if isinstance(name, str) else None
    if (
        kind is None
        or set(d) != {"kind", "path", "reason"}
        or not all(isinstance(d[k], str) for k in ("path", "reason"))
    ):
        raise ValueError(f"not an entry, skipped or broken item: {sorted(d)}")
    return kind(d["path"], d["reason"])
