"""ansible-lint on the playbook of a failed step: its findings, stored as suggestions, and listed.

ansible-lint runs as a subprocess of this interpreter, offline (it installs no collections and
fetches no schemas or version news), in the playbook dir, with the minimal environment playbooks
get: the worker's database URL and Temporal credentials never reach it. Its JSON (codeclimate)
report becomes `Finding`s, each with a category and whether ansible-lint can fix it itself
(AUTOFIX). Accepting a suggestion, which runs that fix, is activities/lint_fix.py.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine, RowMapping
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import LintSuggestionRow
from activities.processes import stop_process_tree
from activities.rundirs import playbook_env
from workflows.runs import AnalyzeFailureInput
from workflows.types import ErrorType

LINT_TIMEOUT = 240.0  # seconds; a run takes 3 to 5 s, a big repository with roles longer
RULE_DOC_URL = "https://docs.ansible.com/projects/lint/rules/"
_OK_EXIT = frozenset({0, 2, 8})  # clean, violations found, violations fixed
SUGGESTIONS = LintSuggestionRow.metadata.tables[LintSuggestionRow.__tablename__]
_BATCH = 1000


class Category(enum.StrEnum):
    IDEMPOTENCY = "idempotency"
    ERROR_HANDLING = "error handling"
    SECURITY = "security"
    DEPRECATED = "deprecated"
    STYLE = "style"


class SuggestionState(enum.StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    ACKNOWLEDGED = "acknowledged"


# By rule tag first (`jinja[invalid]`), then by rule id; a rule in neither goes by ansible-lint's
# own tags (_TAG_CATEGORIES), and what is left is style.
CATEGORIES: Mapping[str, Category] = {
    # a second run would change, or report changing, something again
    "no-changed-when": Category.IDEMPOTENCY,
    "command-instead-of-module": Category.IDEMPOTENCY,
    "no-handler": Category.IDEMPOTENCY,
    "latest": Category.IDEMPOTENCY,
    "package-latest": Category.IDEMPOTENCY,
    # failures hidden, or a play that fails (or misbehaves) for reasons other than the hosts
    "ignore-errors": Category.ERROR_HANDLING,
    "risky-shell-pipe": Category.ERROR_HANDLING,
    "inline-env-var": Category.ERROR_HANDLING,
    "partial-become": Category.ERROR_HANDLING,
    "no-prompting": Category.ERROR_HANDLING,
    "args": Category.ERROR_HANDLING,
    "schema": Category.ERROR_HANDLING,
    "syntax-check": Category.ERROR_HANDLING,
    "load-failure": Category.ERROR_HANDLING,
    "parser-error": Category.ERROR_HANDLING,
    "jinja[invalid]": Category.ERROR_HANDLING,
    "yaml[key-duplicates]": Category.ERROR_HANDLING,
    # secrets and permissions
    "no-log-password": Category.SECURITY,
    "risky-file-permissions": Category.SECURITY,
    "risky-octal": Category.SECURITY,
    "no-same-owner": Category.SECURITY,
    # removed or on the way out of Ansible
    "deprecated-bare-vars": Category.DEPRECATED,
    "deprecated-local-action": Category.DEPRECATED,
    "deprecated-module": Category.DEPRECATED,
    "no-jinja-when": Category.DEPRECATED,
    "role-name": Category.DEPRECATED,
    # free-form is discouraged, and still works
    "no-free-form": Category.STYLE,
}
_TAG_CATEGORIES: Mapping[str, Category] = {
    "idempotency": Category.IDEMPOTENCY,
    "security": Category.SECURITY,
    "deprecations": Category.DEPRECATED,
    "unpredictability": Category.ERROR_HANDLING,
    "syntax": Category.ERROR_HANDLING,
    "core": Category.ERROR_HANDLING,
}

# ansible-lint fixes what its rules that implement TransformMixin fix (`ansible-lint -L` tags them
# `autofix`; tests/test_lint.py holds this table against the installed ansible-lint), and of
# those only the tags their transform handles. None: every tag of the rule. `yaml` is fixed by
# ansible-lint's YAML formatter, which --fix always runs; it cannot mend duplicate keys or long lines.
AUTOFIX: Mapping[str, frozenset[str] | None] = {
    "command-instead-of-shell": None,
    "deprecated-local-action": None,
    "fqcn": frozenset({"fqcn[action-core]", "fqcn[action]", "fqcn[canonical]"}),
    "jinja": frozenset({"jinja[spacing]"}),
    "key-order": None,
    "name": frozenset({"name[casing]"}),
    "no-free-form": frozenset({"no-free-form", "no-free-form[raw]"}),
    "no-jinja-when": None,
    "no-log-password": None,
    "partial-become": None,
    "yaml": frozenset(
        f"yaml[{name}]"
        for name in (
            "braces brackets colons commas comments comments-indentation document-start empty-lines "
            "hyphens indentation new-line-at-end-of-file octal-values trailing-spaces truthy"
        ).split()
    ),
}


class LintError(RuntimeError):
    """ansible-lint could not lint (or fix) the file; the message says why."""


class PathRefused(LintError):
    """A playbook or file path that is not a file inside the playbook dir."""


@dataclasses.dataclass(frozen=True)
class Finding:
    rule: str  # ansible-lint's tag, e.g. no-changed-when, fqcn[action-core]
    category: Category
    message: str
    path: str  # relative to the playbook dir (posix), or as ansible-lint named a file outside it
    line: int | None
    fixable: bool

    @property
    def guidance(self) -> str:
        return guidance(self.rule, self.message)


@dataclasses.dataclass(frozen=True)
class Suggestion:
    id: str
    change_request_id: str
    step: int
    attempt: int
    task_id: str | None
    playbook: str
    rule: str
    category: str
    message: str
    path: str
    line: int | None
    fixable: bool
    state: SuggestionState
    decided_by: str | None
    decided_at: datetime | None
    branch: str | None
    fix_commit: str | None
    created_at: datetime

    @property
    def guidance(self) -> str:
        return guidance(self.rule, self.message)


def category_of(rule: str, tags: Sequence[str] = ()) -> Category:
    found = CATEGORIES.get(rule) or CATEGORIES.get(rule.split("[")[0])
    if found:
        return found
    return next((_TAG_CATEGORIES[t] for t in tags if t in _TAG_CATEGORIES), Category.STYLE)


def is_fixable(rule: str) -> bool:
    base = rule.split("[")[0]
    if base not in AUTOFIX:
        return False
    tags = AUTOFIX[base]
    return tags is None or rule in tags


def rule_url(rule: str) -> str:
    return f"{RULE_DOC_URL}{rule.split('[')[0]}/"


def guidance(rule: str, message: str) -> str:
    return f"{message}\nSee {rule_url(rule)}"


def lint_env(worker_env: Mapping[str, str]) -> dict[str, str]:
    """What ansible-lint runs with: a playbook's minimal environment (activities.rundirs), no colour."""
    return {**playbook_env(worker_env), "NO_COLOR": "1"}


def lint_playbook(playbook_dir: Path, playbook: str, env: Mapping[str, str] | None = None) -> list[Finding]:
    """ansible-lint's findings for `playbook` (relative to `playbook_dir`) and what it includes."""
    root = playbook_dir.resolve()
    target = inside(root, playbook)
    report = run_ansible_lint(root, target.relative_to(root).as_posix(), lint_env(os.environ) if env is None else env)
    return [_finding(root, item) for item in report]


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, refused unless it is a file inside `root` (symlinks resolved)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise PathRefused(f"{relative!r} is outside the playbook dir {root}")
    if not path.is_file():
        raise PathRefused(f"{relative!r} is not a file in the playbook dir {root}")
    return path


def make_suggestion_id(change_request_id: str, step: int, attempt: int, rule: str, path: str, line: int | None) -> str:
    key = json.dumps([change_request_id, step, attempt, rule, path, line], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class LintActivities:
    def __init__(self, engine: Engine, playbook_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self._engine = engine
        self._playbook_dir = playbook_dir
        self._env = lint_env(os.environ) if env is None else dict(env)

    @activity.defn(name="analyze_failure")
    def analyze_failure(self, inp: AnalyzeFailureInput) -> int:
        """Lint the failed step's playbook and store each finding once; returns how many the
        failure has (a repeated or retried run stores nothing twice and returns the same)."""
        try:
            findings = lint_playbook(self._playbook_dir, inp.playbook, self._env)
        except PathRefused as err:
            raise ApplicationError(str(err), type=ErrorType.INVALID_INPUT, non_retryable=True) from err
        except LintError as err:
            raise ApplicationError(str(err), type=ErrorType.LINT_FAILED, non_retryable=True) from err
        rows: dict[str, dict[str, Any]] = {}
        for f in findings:
            key = make_suggestion_id(inp.workflow_id, inp.step, inp.attempt, f.rule, f.path, f.line)
            rows.setdefault(
                key,
                {
                    "id": key,
                    "change_request_id": inp.workflow_id,
                    "step": inp.step,
                    "attempt": inp.attempt,
                    "task_id": inp.task_id,
                    "playbook": inp.playbook,
                    "rule": f.rule,
                    "category": str(f.category),
                    "message": f.message,
                    "path": f.path,
                    "line": f.line,
                    "fixable": f.fixable,
                },
            )
        batch = list(rows.values())
        with self._engine.begin() as conn:
            for start in range(0, len(batch), _BATCH):
                conn.execute(insert(SUGGESTIONS).values(batch[start : start + _BATCH]).on_conflict_do_nothing())
        return len(rows)


def list_suggestions(engine: Engine, workflow_id: str | None = None) -> list[Suggestion]:
    """Every suggestion, or those of one change request: by request, step, attempt, file, line."""
    query = select(SUGGESTIONS).order_by(
        SUGGESTIONS.c.created_at,
        SUGGESTIONS.c.change_request_id,
        SUGGESTIONS.c.step,
        SUGGESTIONS.c.attempt,
        SUGGESTIONS.c.path,
        SUGGESTIONS.c.line,
    )
    if workflow_id is not None:
        query = query.where(SUGGESTIONS.c.change_request_id == workflow_id)
    with engine.connect() as conn:
        return [to_suggestion(row._mapping) for row in conn.execute(query)]


def to_suggestion(row: RowMapping) -> Suggestion:
    fields = {f.name: row[f.name] for f in dataclasses.fields(Suggestion)}
    return Suggestion(**{**fields, "state": SuggestionState(row["state"])})


# --- running ansible-lint ---------------------------------------------------------------------


def run_ansible_lint(
    cwd: Path, lintable: str, env: Mapping[str, str], *, alone: bool = False, fix: str | None = None
) -> list[dict[str, Any]]:
    """ansible-lint's report on `lintable`; `alone`: not on the files it includes (roles, tasks),
    which --fix would otherwise rewrite too, wherever they are."""
    args = [sys.executable, "-m", "ansiblelint", "--offline", "--nocolor", "-f", "json"]
    if alone:
        args += ["--exclude", "/"]  # every file but the one named: ansible-lint never excludes that one
    if fix:
        args.append(f"--fix={fix}")
    with subprocess.Popen(
        [*args, "--", lintable],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=LINT_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_process_tree(proc.pid)
            proc.kill()
            proc.communicate()
            raise  # a busy host, perhaps: the activity is retried
    tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
    if proc.returncode not in _OK_EXIT:
        raise LintError(f"ansible-lint exited with {proc.returncode} on {lintable}: {tail}")
    try:
        report = json.loads(out or b"[]")
    except ValueError:
        raise LintError(f"ansible-lint printed no JSON report for {lintable}: {tail}") from None
    if not isinstance(report, list):
        raise LintError(f"ansible-lint's report for {lintable} is not a list")
    return [item for item in report if isinstance(item, dict) and item.get("check_name")]


def _finding(root: Path, item: dict[str, Any]) -> Finding:
    rule = str(item["check_name"])
    location = item.get("location") or {}
    begin = (location.get("lines") or {}).get("begin") or (location.get("positions") or {}).get("begin", {}).get("line")
    path, ours = _relative(root, str(location.get("path", "")))
    body = (item.get("content") or {}).get("body")
    message = " ".join(str(part) for part in (item.get("description") or rule, body) if part)
    return Finding(
        rule=rule,
        category=category_of(rule, [str(t) for t in item.get("categories") or []]),
        message=message,
        path=path,
        line=int(begin) if isinstance(begin, int) else None,
        fixable=ours and is_fixable(rule),
    )


def _relative(root: Path, reported: str) -> tuple[str, bool]:
    """The reported path relative to `root`, and whether it lies inside it (and may be fixed)."""
    resolved = (root / reported).resolve()
    if reported and resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix(), True
    return reported, False
