"""Planning: from a plain-words request to the plan an approver signs.

The pieces, each in its own module: discovery of the playbook repo (activities.discovery,
cached in PostgreSQL by activities.playbook_cache), request understanding (activities.intent),
where each step runs (activities.inventory, Ansible's own inventory API) and which vars it may
receive (activities.extravars). `Planner` joins them; the `plan_change` activity and
`signoff plan` both call it, so the CLI shows exactly what the workflow would plan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from temporalio import activity

from activities.discovery import Catalog, Entry, discover
from activities.extravars import StepVars, VarsRefused, plan_vars
from activities.intent import CatalogIndex, Intent, Step, plan_request
from activities.inventory import Inventory
from activities.inventory_source import InventoryError
from workflows.types import (
    PLAN_VERSION,
    ApprovalPolicy,
    Budget,
    Plan,
    PlanInput,
    PlannedStep,
    PlannedVar,
    Risk,
    UnmatchedClause,
    VarSpec,
)

_TEMPLATED = "set by var"
_MAX_OFFERED = 20


@dataclass
class Draft:
    """A plan before the policy is attached: steps, or why there are none."""

    steps: list[PlannedStep] = field(default_factory=list)
    vars: list[PlannedVar] = field(default_factory=list)
    error: str | None = None
    unmatched: list[UnmatchedClause] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def risk(self) -> Risk:
        return max((s.risk for s in self.steps), key=lambda r: r.rank, default=Risk.LOW)


class Planner:
    """Plans requests against one playbook repo and one inventory.

    `load_catalog` is how discovery happens: plain `discover` by default, or the PostgreSQL
    cache. The index built from a catalog is kept while the catalog is unchanged, so repeated
    and concurrent plans share it instead of rebuilding it.
    """

    def __init__(
        self,
        playbook_dir: Path,
        inventory: Path,
        load_catalog: Callable[[Path], Catalog] = discover,
    ) -> None:
        self.playbook_dir = playbook_dir
        self.inventory_path = inventory
        self._load_catalog = load_catalog
        self._lock = threading.Lock()
        self._index: tuple[tuple[tuple[str, str], ...], CatalogIndex] | None = None

    def catalog(self) -> Catalog:
        return self._load_catalog(self.playbook_dir)

    def index(self, catalog: Catalog) -> CatalogIndex:
        key = tuple((e.path, e.sha256) for e in catalog.entries)
        with self._lock:
            if self._index is not None and self._index[0] == key:
                return self._index[1]
        index = CatalogIndex(catalog)
        with self._lock:
            self._index = (key, index)
        return index

    def plan(self, request: str, limit: str | None = None, request_vars: Mapping[str, Any] | None = None) -> Draft:
        request_vars = dict(request_vars or {})
        try:
            inventory = Inventory.load(self.inventory_path)
        except InventoryError as err:
            return Draft(error=f"cannot read the inventory: {err}")
        catalog = self.catalog()
        intent = plan_request(request, self.index(catalog), target_names=inventory.names())
        if intent.error or not intent.steps:
            return _refusal(intent, catalog)
        steps: list[PlannedStep] = []
        for step in intent.steps:
            planned = _place(step, limit, inventory, request_vars)
            if isinstance(planned, str):
                return Draft(
                    error=f"step {len(steps) + 1} ({step.playbook}): {planned}", excluded=list(intent.excluded)
                )
            steps.append(planned)
        try:
            per_step, shown = plan_vars(request_vars, [_step_vars(s.entry) for s in intent.steps])
        except VarsRefused as err:
            return Draft(steps=steps, error=str(err), excluded=list(intent.excluded))
        steps = [_with_vars(s, names) for s, names in zip(steps, per_step, strict=True)]
        return Draft(steps=steps, vars=shown, excluded=list(intent.excluded))


def _refusal(intent: Intent, catalog: Catalog) -> Draft:
    unmatched = [UnmatchedClause(u.clause, u.reason, list(u.suggestions)) for u in intent.unmatched]
    error = intent.error or "nothing in the request maps to a playbook"
    if not intent.steps and not any(u.suggestions for u in intent.unmatched):
        error += f"; the catalog has: {_offer(catalog)}"
    return Draft(error=error, unmatched=unmatched)


def _offer(catalog: Catalog, most: int = _MAX_OFFERED) -> str:
    """What a request could ask for, short even for a repo of 1,000 playbooks."""
    offered = sorted({f"{e.service} ({e.action})" for e in catalog.entries})
    if not offered:
        return "no playbooks"
    more = f", and {len(offered) - most} more (signoff playbooks)" if len(offered) > most else ""
    return ", ".join(offered[:most]) + more


def _place(step: Step, limit: str | None, inventory: Inventory, request_vars: Mapping[str, Any]) -> PlannedStep | str:
    """Where the step runs: the playbook's hosts, narrowed by the request's pattern and by a
    target the request names. A target that matches nothing never widens anything: it is
    shown as unmatched, beside the hosts the step really touches. Returns why not, as text."""
    entry = step.entry
    patterns = [h for h in entry.hosts if not h.startswith(_TEMPLATED)]
    for var in entry.host_vars:  # `hosts: "{{ var }}"`: the var's value is the pattern
        value = request_vars.get(var)
        if isinstance(value, str) and value.strip():
            patterns.append(value.strip())
    narrowing = [limit] if limit else []
    unmatched_target = None
    if step.target_phrase:
        found = inventory.match_target(step.target_phrase)
        if found.pattern is not None:
            narrowing.append(found.pattern)
        else:
            unmatched_target = f"{step.target_phrase!r}: {found.why}"
    step_limit = ":&".join(narrowing) or None
    try:
        hosts = inventory.step_hosts(patterns, step_limit) if patterns else []
    except InventoryError as err:
        return str(err)
    needed = sorted({*entry.required_vars, *entry.host_vars})
    defined = inventory.defined_vars(hosts) if hosts else frozenset()
    missing = [name for name in needed if name not in request_vars and name not in defined]
    if missing:
        return f"needs vars {', '.join(missing)}: set them in the request's vars or the inventory"
    if not hosts:
        where = f" within {step_limit}" if step_limit else ""
        return (
            f"would touch no host: its hosts ({', '.join(entry.hosts) or 'none'}) match nothing in the inventory{where}"
        )
    try:
        sites = inventory.sites(hosts)
    except InventoryError as err:
        return str(err)
    if len(sites) > 1:  # one run of ansible-playbook runs in one place
        where = "; ".join(f"{site or 'no site'}: {', '.join(names)}" for site, names in sites.items())
        return f"its hosts are at more than one site ({where}): narrow the request to one site"
    return PlannedStep(
        playbook=entry.path,
        service=step.service,
        action=step.action,
        description=entry.description or entry.stem,
        risk=Risk(step.risk),
        hosts=", ".join(entry.hosts),
        required_vars=list(entry.required_vars),
        reason=step.reason,
        limit=step_limit,
        unmatched_target=unmatched_target,
        host_list=hosts,
        sha256=entry.sha256,
        timeout_seconds=entry.timeout,
        idle_timeout_seconds=entry.idle_timeout,
        max_attempts=entry.max_attempts,
        max_execution_seconds=entry.max_execution_time,
        site=next(iter(sites)),
    )


def request_budget(budget: Budget | None, steps: list[PlannedStep]) -> Budget | None:
    """The environment's budget, where a planned playbook's header sets a limit overridden by it;
    when several set one, the largest: the request needs what its most demanding step declares."""
    if budget is None:
        return None
    attempts = max(((s.max_attempts, s.playbook) for s in steps if s.max_attempts), default=None)
    execution = max(((s.max_execution_seconds, s.playbook) for s in steps if s.max_execution_seconds), default=None)
    if attempts:
        budget = replace(budget, max_attempts=attempts[0], attempts_from=f"the header of {attempts[1]}")
    if execution:
        budget = replace(budget, max_execution_seconds=execution[0], execution_from=f"the header of {execution[1]}")
    return budget


def _step_vars(entry: Entry) -> StepVars:
    declared = {v.name: VarSpec(type=v.type, secret=v.secret) for v in entry.vars}
    return StepVars(entry.path, declared, (*entry.required_vars, *entry.host_vars))


def _with_vars(step: PlannedStep, names: list[str]) -> PlannedStep:
    return replace(step, vars=names)


class PlanningActivities:
    def __init__(
        self,
        planner: Planner,
        policy: ApprovalPolicy,
        check_mode_preview: bool = True,
        timeouts: tuple[int | None, int | None] = (None, None),
        budget: Budget | None = None,
        failure_analysis: bool = False,
        notify: bool = False,
        breaker: tuple[int, float] = (0, 0.0),
    ) -> None:
        """`timeouts`: the `timeout` and `idle_timeout` (seconds) of playbooks whose header sets none."""
        self._planner = planner
        self._policy = policy
        self._check_mode_preview = check_mode_preview
        self._timeouts = timeouts
        self._budget = budget
        self._failure_analysis = failure_analysis
        self._notify = notify
        self._breaker = breaker  # failed steps within a window (seconds) that pause a host

    @activity.defn(name="plan_change")
    def plan_change(self, inp: PlanInput) -> Plan:
        draft = self._planner.plan(inp.request, inp.inventory, inp.vars)
        timeout, idle = self._timeouts
        steps = [
            replace(
                s,
                timeout_seconds=s.timeout_seconds or timeout,
                idle_timeout_seconds=s.idle_timeout_seconds or idle,
            )
            for s in draft.steps
        ]
        return Plan(
            steps=steps if draft.error is None else [],
            risk=draft.risk,
            policy=self._policy,
            error=draft.error,
            vars=draft.vars if draft.error is None else [],
            version=PLAN_VERSION,
            check_mode_preview=self._check_mode_preview,
            failure_analysis=self._failure_analysis,
            notify=self._notify,
            breaker_failures=self._breaker[0],
            breaker_window_seconds=self._breaker[1],
            budget=request_budget(self._budget, steps),
            unmatched_clauses=draft.unmatched,
            excluded=draft.excluded,
        )
