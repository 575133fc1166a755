"""Extra vars at planning time: which playbook may receive which var, what the approver sees,
and what must be scrubbed from everything signoff keeps.

A var reaches a playbook only when that playbook's header declares it (`vars:`) or requires it
(`required_vars:`); a request setting a var that no planned playbook accepts is refused, so a
requester cannot override a value the inventory or the playbook sets. Values are shown to the
approver, except secrets: declared `secret: true`, or named like a credential.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible import constants as ansible_constants
from ansible.vars.reserved import is_reserved_name

from workflows.types import PlannedVar, VarSpec
from workflows.validation import credential_like, reserved_var

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}
VAR_TYPES = frozenset(_JSON_TYPES)
_MIN_SCRUB_CHARS = 3  # shorter values would blank out ordinary words; they are too short to hide anyway


class VarsRefused(ValueError):
    """The request's vars cannot go to the planned playbooks; the message names the var."""


@dataclass(frozen=True)
class StepVars:
    """What one planned step declares about vars."""

    playbook: str
    declared: Mapping[str, VarSpec]
    required: Sequence[str]

    def accepts(self, name: str) -> bool:
        return name in self.declared or name in self.required


def ansible_reserves(name: str) -> bool:
    """The installed ansible-core's own view, on top of the static list workflows check."""
    magic = {alias for aliases in ansible_constants.MAGIC_VARIABLE_MAPPING.values() for alias in aliases}
    return (
        reserved_var(name) or is_reserved_name(name) or name in ansible_constants.INTERNAL_STATIC_VARS or name in magic
    )


def plan_vars(request_vars: Mapping[str, Any], steps: Sequence[StepVars]) -> tuple[list[list[str]], list[PlannedVar]]:
    """Per step, the names of the vars it receives; and every var as the approver sees it.

    Raises VarsRefused for a reserved name, a var no step accepts, or a value of the wrong type.
    """
    for name in request_vars:
        if ansible_reserves(name):
            raise VarsRefused(f"var {name!r} is reserved by Ansible; a request may not set it")
    unaccepted = sorted(name for name in request_vars if not any(step.accepts(name) for step in steps))
    if unaccepted:
        declared = sorted({n for step in steps for n in (*step.declared, *step.required)})
        accepted = f"they accept: {', '.join(declared)}" if declared else "they declare no vars"
        raise VarsRefused(
            f"var {', '.join(repr(n) for n in unaccepted)} is not accepted by any planned playbook "
            f"({', '.join(step.playbook for step in steps)}); {accepted}"
        )
    for name, value in request_vars.items():
        for step in steps:
            spec = step.declared.get(name)
            if spec is not None and spec.type and not _has_type(value, spec.type):
                raise VarsRefused(
                    f"var {name!r} must be of type {spec.type} for {step.playbook}, got {_type_name(value)}"
                )
    per_step = [sorted(name for name in request_vars if step.accepts(name)) for step in steps]
    shown = [
        PlannedVar(name=name, shown=show_value(value, secret), secret=secret)
        for name, value in sorted(request_vars.items())
        for secret in [is_secret(name, steps)]
    ]
    return per_step, shown


def is_secret(name: str, steps: Sequence[StepVars]) -> bool:
    return credential_like(name) or any(
        spec.secret for step in steps for key, spec in step.declared.items() if key == name
    )


def show_value(value: Any, secret: bool) -> str:
    """JSON for the approver; for a secret, a short hash two people can compare instead."""
    if secret:
        return f"(secret, sha256:{fingerprint(value)})"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def fingerprint(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def secret_values(request_vars: Mapping[str, Any], secret_names: Sequence[str]) -> list[str]:
    """Every text form a secret var's value can take in Ansible output, longest first."""
    found: set[str] = set()
    for name, value in request_vars.items():
        if name in secret_names or credential_like(name):
            found.update(_leaf_texts(value))
            if isinstance(value, (dict, list)):
                found.add(json.dumps(value))
                found.add(str(value))  # Python repr, as Ansible prints dicts in messages
    return sorted((t for t in found if len(t) >= _MIN_SCRUB_CHARS), key=len, reverse=True)


class Scrubber:
    """Replaces secret values in any text before it is stored, logged or heartbeated."""

    MASK = "(secret)"

    def __init__(self, values: Sequence[str]) -> None:
        self._values = list(values)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, self.MASK)
        return text


def _leaf_texts(value: Any) -> list[str]:
    stack, texts = [value], []
    while stack:  # values passed the workflow's depth and size limits
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None:
            texts.append(json.dumps(item) if isinstance(item, bool) else str(item))
    return texts


def _has_type(value: Any, type_name: str) -> bool:
    allowed = _JSON_TYPES[type_name]
    if isinstance(value, bool) and bool not in allowed:
        return False  # JSON true is not a number
    return isinstance(value, allowed)


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(value), "null")
