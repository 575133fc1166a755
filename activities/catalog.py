"""Playbook catalog and planning: which playbooks does a plain-words request ask for?

A playbook may open with a `# signoff:` header in YAML comments (DESIGN.md section 4); one
without is catalogued from its file name, `<service>-<action>.yml`. Matching is deliberately
simple: a playbook is planned when the request names its service (or an alias) and a word for
its action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity

from activities.extravars import VAR_TYPES, StepVars, VarsRefused, ansible_reserves, plan_vars
from workflows.types import PLAN_VERSION, Action, ApprovalPolicy, Plan, PlanInput, PlannedStep, Risk, VarSpec

MAX_PLAYBOOK_BYTES = 1 << 20

ACTION_WORDS: dict[Action, tuple[str, ...]] = {
    Action.DEPLOY: ("deploy", "install", "set up", "setup", "provision", "roll out", "rollout"),
    Action.CONFIGURE: ("configure", "config", "add", "set", "change", "register"),
    Action.UPDATE: ("update", "upgrade", "bump", "patch"),
    Action.RESTART: ("restart", "reboot", "bounce", "reload"),
    Action.VERIFY: ("verify", "check", "test", "health"),
    Action.REMOVE: ("remove", "delete", "uninstall", "decommission", "tear down", "teardown"),
}
DEFAULT_RISK: dict[Action, Risk] = {
    Action.DEPLOY: Risk.MEDIUM,
    Action.CONFIGURE: Risk.MEDIUM,
    Action.UPDATE: Risk.MEDIUM,
    Action.RESTART: Risk.MEDIUM,
    Action.VERIFY: Risk.LOW,
    Action.REMOVE: Risk.HIGH,
}


@dataclass(frozen=True)
class CatalogEntry:
    path: str  # relative to the playbook dir
    service: str = ""
    action: Action = Action.DEPLOY
    description: str = ""
    aliases: tuple[str, ...] = ()
    required_vars: tuple[str, ...] = ()
    risk: Risk = Risk.MEDIUM
    after: tuple[str, ...] = ()
    hosts: str = "all"
    vars: dict[str, VarSpec] = field(default_factory=dict)  # what a request may set (header `vars:`)
    broken: str | None = None  # why the file could not be catalogued

    @property
    def stem(self) -> str:
        return Path(self.path).stem


@dataclass
class Catalog:
    entries: list[CatalogEntry] = field(default_factory=list)

    @property
    def usable(self) -> list[CatalogEntry]:
        return [e for e in self.entries if e.broken is None]


def discover(playbook_dir: Path) -> Catalog:
    files = sorted(p for pattern in ("*.yml", "*.yaml") for p in playbook_dir.glob(pattern))
    return Catalog([catalog_entry(playbook_dir, path) for path in files])


def catalog_entry(playbook_dir: Path, path: Path) -> CatalogEntry:
    rel = str(path.relative_to(playbook_dir))
    try:
        if path.stat().st_size > MAX_PLAYBOOK_BYTES:
            return CatalogEntry(rel, broken=f"larger than {MAX_PLAYBOOK_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
        plays = yaml.safe_load(text)
        header = _header(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return CatalogEntry(rel, broken=f"not valid YAML: {_first_line(err)}")
    except (ValueError, TypeError) as err:
        return CatalogEntry(rel, broken=f"bad signoff header: {err}")
    if not isinstance(plays, list) or not plays or not all(isinstance(p, dict) for p in plays):
        return CatalogEntry(rel, broken="not a playbook: expected a list of plays")
    first = plays[0]
    # `<service>-<action>.yml`; a name without a known action is a deploy of the whole stem.
    prefix, _, suffix = path.stem.rpartition("-")
    if suffix not in set(Action):
        prefix, suffix = path.stem, Action.DEPLOY
    action = Action(header.get("action", suffix))  # a header action was checked by _header
    service = str(header.get("service") or prefix)
    hosts = first.get("hosts", "all")
    try:
        risk = Risk(str(header.get("risk", DEFAULT_RISK[action])).lower())
        return CatalogEntry(
            path=rel,
            service=service,
            action=action,
            description=str(header.get("description") or first.get("name") or path.stem),
            aliases=_strings(header.get("aliases")),
            required_vars=_strings(header.get("required_vars")),
            risk=risk,
            after=_strings(header.get("after")),
            hosts=",".join(hosts) if isinstance(hosts, list) else str(hosts),
            vars=var_specs(header.get("vars")),
        )
    except ValueError as err:
        return CatalogEntry(rel, broken=f"bad signoff header: {err}")


def _header(text: str) -> dict[str, Any]:
    """The `# signoff:` block of leading comment lines, parsed as YAML."""
    lines: list[str] = []
    in_header = False
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.strip() and (in_header or not line.startswith("---")):
                break
            continue
        body = line[1:]
        if body.strip().startswith("signoff:"):
            in_header = True
        if in_header:
            lines.append(body[1:] if body.startswith(" ") else body)
    if not lines:
        return {}
    parsed = yaml.safe_load("\n".join(lines))
    header = parsed.get("signoff") if isinstance(parsed, dict) else None
    if not isinstance(header, dict):
        raise ValueError("`signoff:` must be a mapping")
    if "action" in header:
        Action(str(header["action"]).lower())  # raises ValueError naming the bad action
        header["action"] = str(header["action"]).lower()
    return header


def var_specs(value: object) -> dict[str, VarSpec]:
    """A header's `vars:`: a list of names, or a mapping of name to `{type, secret}`."""
    if value is None:
        return {}
    if isinstance(value, list):
        value = {str(name): None for name in value}
    if not isinstance(value, dict):
        raise ValueError("`vars:` must be a list of names or a mapping of name to {type, secret}")
    specs = {}
    for name, spec in value.items():
        name = str(name)
        if ansible_reserves(name):
            raise ValueError(f"`vars:` declares {name!r}, a name Ansible reserves")
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"type", "secret", "description"}:
            raise ValueError(f"`vars.{name}` must be a mapping with `type` and/or `secret`")
        kind = spec.get("type")
        if kind is not None and kind not in VAR_TYPES:
            raise ValueError(f"`vars.{name}.type` must be one of {', '.join(sorted(VAR_TYPES))}")
        specs[name] = VarSpec(type=kind, secret=bool(spec.get("secret", False)))
    return specs


def _strings(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase.lower())}(?![\w-])", text) is not None


def match(request: str, catalog: Catalog) -> list[CatalogEntry]:
    """Playbooks whose service and action the request names, in the order they must run."""
    text = " ".join(request.lower().split())
    chosen = []
    for entry in catalog.usable:
        names = {entry.service, entry.service.replace("-", " "), *entry.aliases}
        if any(_mentions(text, n) for n in names) and any(
            _mentions(text, w) for w in ACTION_WORDS[entry.action]
        ):
            chosen.append(entry)
    return _ordered(chosen)


def _ordered(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    """Action order (deploy before configure ...), then `after:` constraints on top."""
    actions = list(Action)
    pending = sorted(entries, key=lambda e: (actions.index(e.action), e.path))
    stems = {e.stem for e in pending}
    ordered: list[CatalogEntry] = []
    while pending:
        done = {e.stem for e in ordered}
        ready = next(
            (e for e in pending if all(a in done or a not in stems for a in e.after)),
            pending[0],  # a cycle in `after:`: fall back to action order rather than hang
        )
        ordered.append(ready)
        pending.remove(ready)
    return ordered


class PlanningActivities:
    def __init__(self, playbook_dir: Path, policy: ApprovalPolicy, check_mode_preview: bool = True) -> None:
        self._playbook_dir = playbook_dir
        self._policy = policy
        self._check_mode_preview = check_mode_preview

    @activity.defn(name="plan_change")
    def plan_change(self, inp: PlanInput) -> Plan:
        catalog = discover(self._playbook_dir)
        entries = match(inp.request, catalog)
        error = None
        step_vars: list[list[str]] = [[] for _ in entries]
        shown = []
        if entries:
            try:
                step_vars, shown = plan_vars(inp.vars, [StepVars(e.path, e.vars, e.required_vars) for e in entries])
            except VarsRefused as err:
                error = str(err)
        steps = [
            PlannedStep(
                playbook=e.path,
                service=e.service,
                action=e.action,
                description=e.description,
                risk=e.risk,
                hosts=inp.inventory or e.hosts,
                required_vars=list(e.required_vars),
                vars=names,
            )
            for e, names in zip(entries, step_vars, strict=True)
        ]
        unmatched = None
        if not steps:
            known = ", ".join(sorted({f"{e.service} ({e.action})" for e in catalog.usable})) or "none"
            unmatched = f"no playbook in the catalog matches {inp.request!r}; known: {known}"
        risk = max((s.risk for s in steps), key=lambda r: r.rank, default=Risk.LOW)
        return Plan(
            steps=steps,
            risk=risk,
            policy=self._policy,
            unmatched=unmatched,
            error=error,
            vars=shown,
            version=PLAN_VERSION,
            check_mode_preview=self._check_mode_preview,
        )
