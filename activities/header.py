"""The `# signoff:` header: a playbook's own word on what it does (DESIGN.md section 4).

`read_header` finds the block among a file's leading comments and parses it as YAML; the
field readers (`text`, `names`, `duration`, `var_specs`) check each field's shape. Every
problem is a `HeaderError` whose message names the field, so discovery can list the file as
broken with that reason instead of guessing what the author meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from activities import vocabulary as vocab
from activities.safe_yaml import InvalidYaml, YamlTooComplex, load

FIELDS: Final = frozenset(
    {"service", "action", "description", "aliases", "required_vars", "risk", "after", "vars", "timeout", "idle_timeout"}
    | {"max_attempts", "max_execution_time"}  # the budget of a request that plans this playbook
)
VAR_TYPES: Final = frozenset({"str", "int", "bool", "list", "dict", "float"})
_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
# 100 years: past any real limit, and far inside what timers and date arithmetic hold (a
# `timeout: 99999999999d` once failed every workflow task of the request that planned it).
MAX_DURATION_DAYS: Final = 36500
_MAX_DIGITS: Final = 12  # per number in a duration; longer ones are over the limit anyway


class HeaderError(Exception):
    """The `# signoff:` header is there but wrong; the message says which field and why."""


@dataclass(frozen=True)
class VarSpec:
    name: str
    type: str | None = None  # str | int | bool | list | dict | float; None: any
    secret: bool = False


@dataclass(frozen=True)
class Fields:
    """What a header says, checked; empty or None wherever it is silent."""

    present: bool = False
    service: str = ""
    verb: str = ""  # as written, lower case: "reboot"
    action: str = ""  # its canonical action ("restart"), or the verb itself
    risk: vocab.Risk | None = None
    description: str = ""
    aliases: tuple[str, ...] | None = None
    required_vars: tuple[str, ...] = ()
    after: tuple[str, ...] = ()  # file stems
    vars: tuple[VarSpec, ...] | None = None
    timeout: int | None = None
    idle_timeout: int | None = None
    max_attempts: int | None = None
    max_execution_time: int | None = None  # seconds


def fields_of(header: dict[str, Any] | None) -> Fields:
    """The fields of a header `read_header` returned; HeaderError for one of the wrong shape."""
    if header is None:
        return Fields()
    verb = text(header, "action").lower()
    if len(verb.split()) > 1 and vocab.canonical_action(verb) is None:
        raise HeaderError(f"action must be one verb, got {verb!r}")
    risk = text(header, "risk").lower()
    if risk and risk not in vocab.RISKS:
        raise HeaderError(f"risk must be low, medium or high, got {risk!r}")
    declared = header.get("vars")
    return Fields(
        present=True,
        service=text(header, "service"),
        verb=verb,
        action=(vocab.canonical_action(verb) or vocab.normalise(verb)) if verb else "",
        risk=next((r for r in vocab.RISKS if r == risk), None),
        description=text(header, "description"),
        aliases=names(header, "aliases") if "aliases" in header else None,
        required_vars=names(header, "required_vars"),
        after=tuple(a.removesuffix(".yml").removesuffix(".yaml") for a in names(header, "after")),
        vars=var_specs(declared) if declared is not None else None,
        timeout=duration(header, "timeout"),
        idle_timeout=duration(header, "idle_timeout"),
        max_attempts=count(header, "max_attempts"),
        max_execution_time=duration(header, "max_execution_time"),
    )


def read_header(source: str) -> dict[str, Any] | None:
    """The `# signoff:` block among the leading comments, parsed as YAML; None if there is none.

    The block starts at a comment line `# signoff:` before the first play and ends at the first
    line that is not an indented comment.
    """
    block: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if not block:
            if stripped.startswith("#") and stripped[1:].strip().startswith("signoff:"):
                block.append(stripped[1:].strip())
            elif stripped and not stripped.startswith(("#", "---", "%")):
                return None  # a header must come before the plays
            continue
        body = line[2:] if line.startswith("# ") else line[1:]
        if not line.startswith("#") or (body.strip() and not body[0].isspace()):
            break
        block.append(body)
    if not block:
        return None
    try:
        docs = load("\n".join(block))
    except (YamlTooComplex, InvalidYaml) as err:
        raise HeaderError(f"not valid YAML: {err}") from err
    header = docs[0].get("signoff") if docs and isinstance(docs[0], dict) else None
    if not isinstance(header, dict):
        raise HeaderError("`signoff:` must be a mapping of fields")
    unknown = sorted(str(k) for k in header if k not in FIELDS)
    if unknown:
        raise HeaderError(f"unknown field {unknown[0]!r}")
    return header


def text(header: dict[str, Any], key: str) -> str:
    value = header.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        raise HeaderError(f"{key} must be text, got {value!r}")
    return "" if value is None else str(value).strip()


def names(header: dict[str, Any], key: str) -> tuple[str, ...]:
    value = header.get(key)
    items = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, (str, int)) for v in items):
        raise HeaderError(f"{key} must be a list of names, got {value!r}")
    return tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))


def duration(header: dict[str, Any], key: str) -> int | None:
    """Seconds in `30m`, `90s`, `2h`, `1h30m`, `1d` or a bare number of seconds, at most
    MAX_DURATION_DAYS."""
    value = header.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif m := _DURATION.fullmatch(str(value).strip().lower().replace(" ", "")):
        numbers = [int(n) if len(n) <= _MAX_DIGITS else 10**_MAX_DIGITS for n in (g or "0" for g in m.groups())]
        seconds = sum(n * unit for n, unit in zip(numbers, (86400, 3600, 60, 1), strict=True))
    else:
        seconds = 0
    if seconds <= 0:
        raise HeaderError(f"{key} must be a duration like 30m, 90s or 2h, got {_shown(value)}")
    if seconds > MAX_DURATION_DAYS * 86400:
        raise HeaderError(f"{key} must be at most {MAX_DURATION_DAYS}d, got {_shown(value)}")
    return seconds


def _shown(value: Any) -> str:
    """A field's value for a message, cut short: a header may hold a line of any length."""
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:37]}..."


def count(header: dict[str, Any], key: str) -> int | None:
    value = header.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise HeaderError(f"{key} must be a whole number above 0, got {value!r}")
    return value


def var_specs(value: object) -> tuple[VarSpec, ...]:
    """`vars:` as a mapping name -> {type?, secret?}, or a bare list of names."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(VarSpec(v) for v in value)
    if not isinstance(value, dict):
        raise HeaderError("vars must map names to {type, secret} or list names")
    specs = []
    for name, given in value.items():
        spec = {} if given is None else given
        if not isinstance(spec, dict) or set(spec) - {"type", "secret", "description"}:
            raise HeaderError(f"vars.{name} may only set type, secret and description")
        kind, secret = spec.get("type"), spec.get("secret", False)
        if kind is not None and kind not in VAR_TYPES:
            raise HeaderError(f"vars.{name}.type must be one of {', '.join(sorted(VAR_TYPES))}")
        if not isinstance(secret, bool):
            raise HeaderError(f"vars.{name}.secret must be true or false")
        specs.append(VarSpec(str(name), kind, secret))
    return tuple(specs)
