"""Validation of everything a requester or approver sends: workflow input and signal payloads.

Standard library only (it runs inside the workflow sandbox). Strict: unknown fields are errors,
shapes and sizes are bounded before anything walks a value, and names Ansible gives a meaning of
its own can never be set through a request's vars.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Any

from workflows.types import DECIDE_ACTIONS, ApproveInput, ChangeRequestInput, DecideInput, RejectInput

# Bounds on what a requester may send, checked before anything walks the value: a deeply nested
# object would otherwise blow the recursion limit wherever it is converted (history, query, DB).
MAX_INPUT_BYTES = 256 * 1024
MAX_REQUEST_CHARS = 4000
MAX_VARS_DEPTH = 32
MAX_VARS_NODES = 10_000  # keys and list items, all levels together
MAX_VAR_NAME_CHARS = 128
MAX_INVENTORY_CHARS = 1000

# Names Ansible gives a meaning of its own: connection and privilege settings, magic variables,
# play keywords and Jinja globals. An extra var has the highest precedence in Ansible, so any of
# these set by a requester would steer Ansible itself (`ansible_ssh_common_args` runs commands on
# the worker, `ansible_connection: local` moves a play onto it). Taken from ansible-core's
# `get_reserved_names()`, `INTERNAL_STATIC_VARS` and `MAGIC_VARIABLE_MAPPING`; the planning
# activity checks again against the installed ansible-core, and a test keeps this list a superset.
RESERVED_VAR_PREFIXES = ("ansible_", "_ansible", "inventory_", "role_", "play_", "playbook_", "discovered_interpreter")
RESERVED_VAR_NAMES = frozenset(
    {
        "action",
        "always",
        "any_errors_fatal",
        "args",
        "async",
        "async_val",
        "become",
        "become_exe",
        "become_flags",
        "become_method",
        "become_pass",
        "become_user",
        "block",
        "changed_when",
        "check_mode",
        "collections",
        "connection",
        "cycler",
        "debugger",
        "delay",
        "delegate_facts",
        "delegate_to",
        "dict",
        "diff",
        "environment",
        "fact_path",
        "failed_when",
        "force_handlers",
        "gather_facts",
        "gather_timeout",
        "group_names",
        "groups",
        "handlers",
        "hosts",
        "hostvars",
        "ignore_errors",
        "ignore_unreachable",
        "item",
        "joiner",
        "lipsum",
        "local_action",
        "lookup",
        "loop",
        "loop_control",
        "loop_with",
        "max_fail_percentage",
        "module_defaults",
        "name",
        "namespace",
        "no_log",
        "notify",
        "now",
        "omit",
        "order",
        "password",
        "poll",
        "port",
        "post_tasks",
        "pre_tasks",
        "private_key_file",
        "q",
        "query",
        "range",
        "register",
        "remote_addr",
        "remote_user",
        "rescue",
        "retries",
        "roles",
        "run_once",
        "serial",
        "strategy",
        "tags",
        "tasks",
        "throttle",
        "timeout",
        "undef",
        "until",
        "vars",
        "vars_files",
        "vars_prompt",
        "when",
        "with_",
    }
)
# Var names whose values are treated as secret even when no playbook says so.
CREDENTIAL_NAME_PARTS = ("password", "passwd", "secret", "token", "key", "credential", "private")


def reserved_var(name: str) -> bool:
    lowered = name.lower()
    return lowered in RESERVED_VAR_NAMES or lowered.startswith(RESERVED_VAR_PREFIXES) or lowered.startswith("with_")


def credential_like(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in CREDENTIAL_NAME_PARTS)


class InvalidInput(ValueError):
    """Raised by the parsers below; `field` names the offending field ("" for the whole value)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


_JINJA = re.compile(r"{{|{%|{#")
# Terminal escapes, other C0/C1 controls and bidi overrides (Trojan Source) would make the
# request an approver reads differ from the one that was sent.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A host pattern as Ansible reads `--limit`: names, groups, globs, ranges and the `:&!,` operators.
# Not `@file` (Ansible would read the hosts from that file on the worker) and no whitespace tricks.
_LIMIT = re.compile(r"^[A-Za-z0-9_.*?\[\]:&!,~^$|()+-]+$")


def parse_input(value: object) -> ChangeRequestInput:
    """Validate decoded workflow input strictly: unknown fields are errors, not ignored."""
    obj = _object(value, ChangeRequestInput)
    request = _text(obj, "request")
    if len(request) > MAX_REQUEST_CHARS:
        raise InvalidInput("request", f"is longer than {MAX_REQUEST_CHARS} characters")
    if _INVISIBLE.search(request):
        raise InvalidInput(
            "request", "holds control or bidirectional-override characters, which hide text from the approver"
        )
    requester = _text(obj, "requester")
    inventory = obj.get("inventory")
    if inventory is not None and (not isinstance(inventory, str) or not inventory.strip()):
        raise InvalidInput("inventory", "must be a non-empty string (a group or host pattern)")
    if inventory is not None:
        inventory = inventory.strip()
        if len(inventory) > MAX_INVENTORY_CHARS or not _LIMIT.match(inventory):
            raise InvalidInput(
                "inventory",
                "must be an Ansible host pattern (names, groups, globs, ranges, ':&!,'), not a file or command",
            )
    extra_vars = obj.get("vars", {})
    if not isinstance(extra_vars, dict):
        raise InvalidInput("vars", f"must be an object, got {_json_type(extra_vars)}")
    check_shape("vars", extra_vars)
    for name, var_value in extra_vars.items():
        check_var_name(name)
        _reject_templates(f"vars.{name}", var_value)
    dry_run = obj.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run", f"must be true or false, got {_json_type(dry_run)}")
    return ChangeRequestInput(
        request=request.strip(),
        requester=requester.strip(),
        inventory=inventory or None,
        vars=dict(extra_vars),
        dry_run=dry_run,
    )


def parse_approve(value: object) -> ApproveInput:
    obj = _object(value, ApproveInput)
    return ApproveInput(
        approver=_text(obj, "approver").strip(),
        comment=_optional_text(obj, "comment"),
        plan_digest=_digest(obj),
        signature=_signature(obj),
        via=_via(obj),
        subject=_subject(obj),
    )


def parse_decide(value: object) -> DecideInput:
    obj = _object(value, DecideInput)
    action = _text(obj, "action").strip().lower()
    if action not in DECIDE_ACTIONS:
        raise InvalidInput("action", f"must be one of {', '.join(DECIDE_ACTIONS)}, got {action!r}")
    return DecideInput(
        operator=_text(obj, "operator").strip(),
        action=action,
        comment=_optional_text(obj, "comment"),
        plan_digest=_digest(obj),
        signature=_signature(obj),
        via=_via(obj),
        subject=_subject(obj),
    )


def parse_reject(value: object) -> RejectInput:
    obj = _object(value, RejectInput)
    return RejectInput(
        approver=_text(obj, "approver").strip(),
        reason=_optional_text(obj, "reason"),
        plan_digest=_digest(obj),
        signature=_signature(obj),
        via=_via(obj),
        subject=_subject(obj),
    )


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _digest(obj: dict[str, Any]) -> str | None:
    value = _optional_text(obj, "plan_digest")
    if value is not None and not _DIGEST.fullmatch(value.strip()):
        raise InvalidInput("plan_digest", "must be sha256:<64 hex digits>, as `status` shows it")
    return value.strip() if value is not None else None


# `via` and `subject` are the sender's claims (types.ApproveInput), recorded as sent: only their
# shape is checked here, so they print safely. The signing key is what proves who sent them.
_VIA = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_SUBJECT_CHARS = 256


def _via(obj: dict[str, Any]) -> str | None:
    value = _optional_text(obj, "via")
    if value is not None and not _VIA.fullmatch(value):
        raise InvalidInput("via", "must be a channel name: a lowercase letter, then up to 31 letters, digits or '-'")
    return value


def _subject(obj: dict[str, Any]) -> str | None:
    value = _optional_text(obj, "subject")
    if value is None:
        return None
    if not value.strip() or len(value) > MAX_SUBJECT_CHARS:
        raise InvalidInput("subject", f"must be 1 to {MAX_SUBJECT_CHARS} characters")
    # Cc/Cf (controls, bidi overrides) and U+2028/U+2029 would let a subject forge or reorder
    # the lines `status` and `audit` print; unassigned and private-use characters have no use here.
    if any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp") for ch in value):
        raise InvalidInput("subject", "must not contain control, format or line separator characters")
    return value


MAX_SIGNATURE_CHARS = 8192  # an ed25519 signature is ~300 characters, RSA-4096 ~900
_ARMOR = re.compile(
    r"-----BEGIN SSH SIGNATURE-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n){1,100}-----END SSH SIGNATURE-----\r?\n?"
)


def _signature(obj: dict[str, Any]) -> str | None:
    """Only the shape: whether it verifies is the worker's to say (activities.signatures)."""
    value = _optional_text(obj, "signature")
    if value is None:
        return None
    if len(value) > MAX_SIGNATURE_CHARS:
        raise InvalidInput("signature", f"is longer than {MAX_SIGNATURE_CHARS} characters")
    if not _ARMOR.fullmatch(value.strip() + "\n"):
        raise InvalidInput("signature", "must be an armored SSH signature (-----BEGIN SSH SIGNATURE----- ...)")
    return value.strip() + "\n"


def _object(value: object, cls: type) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, dict):
        raise InvalidInput("", f"input must be a JSON object, got {_json_type(value)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field (expected one of: {', '.join(sorted(known))})")
    return value


def _text(obj: dict[str, Any], name: str) -> str:
    if name not in obj:
        raise InvalidInput(name, "is required")
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidInput(name, f"must be a string, got {_json_type(value)}")
    if not value.strip():
        raise InvalidInput(name, "must not be empty")
    return value


def _optional_text(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(name, f"must be a string, got {_json_type(value)}")
    return value


def check_var_name(name: str) -> None:
    if len(name) > MAX_VAR_NAME_CHARS or not _VAR_NAME.match(name):
        raise InvalidInput(f"vars.{name[:MAX_VAR_NAME_CHARS]}", "is not a valid Ansible variable name")
    if reserved_var(name):
        raise InvalidInput(
            f"vars.{name}",
            "is a name Ansible reserves (connection, privilege or magic variable, or play keyword); "
            "a request may not set it",
        )


def check_shape(path: str, value: object) -> None:
    """Depth and size limits, checked without recursion so no input can exhaust the stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        if depth > MAX_VARS_DEPTH:
            raise InvalidInput(path, f"is nested deeper than {MAX_VARS_DEPTH} levels")
        if isinstance(item, dict):
            nodes += len(item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            nodes += len(item)
            stack.extend((v, depth + 1) for v in item)
        elif not (item is None or isinstance(item, (str, int, float, bool))):
            raise InvalidInput(path, f"holds {_json_type(item)}, which is not JSON data")
        if nodes > MAX_VARS_NODES:
            raise InvalidInput(path, f"has more than {MAX_VARS_NODES} keys and items")


def _reject_templates(path: str, value: object) -> None:
    """Extra vars are data: a Jinja expression in one would be evaluated by Ansible.
    Called only on values that passed `check_shape`, so the recursion is bounded."""
    if isinstance(value, str):
        if _JINJA.search(value):
            raise InvalidInput(path, "contains a Jinja template ({{ }}, {% %} or {# #}); extra vars must be plain data")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or _JINJA.search(key):
                raise InvalidInput(f"{path}", "has a key that is a Jinja template; extra vars must be plain data")
            _reject_templates(f"{path}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_templates(f"{path}[{index}]", item)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
