"""Accepting an ansible-lint suggestion (activities/lint.py): its fix, or an acknowledgement.

Accepting a fixable suggestion runs ansible-lint's own fix for that rule on that file: in a git
playbook repository in a temporary worktree of HEAD, committed on `signoff/lint-<id>` (the
user's checkout and branch are never touched); otherwise in a scratch copy whose result replaces
the file. ansible-lint's --fix also rewrites the whole file in its YAML style, so a fix is a
commit to review, not a silent edit. A suggestion without a fix is acknowledged with guidance.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from activities.lint import (
    LINT_TIMEOUT,
    SUGGESTIONS,
    LintError,
    PathRefused,
    Suggestion,
    SuggestionState,
    inside,
    is_fixable,
    lint_env,
    run_ansible_lint,
    to_suggestion,
)
from workflows.identity import IdentityRefused, identify

GIT_TIMEOUT = 60.0
BRANCH_PREFIX = "signoff/lint-"
_ID = re.compile(r"^[0-9a-f]{8,32}$")


class SuggestionError(ValueError):
    """A suggestion cannot be accepted: unknown, already decided, or its fix cannot be made."""


@dataclasses.dataclass(frozen=True)
class AcceptResult:
    suggestion_id: str
    state: SuggestionState  # still OPEN when ansible-lint's fix changed or resolved nothing
    message: str  # what happened, in a sentence
    guidance: str
    branch: str | None = None
    fix_commit: str | None = None
    path: Path | None = None  # the file the fix was written to, when it was applied in place


def accept_suggestion(
    engine: Engine, playbook_dir: Path, suggestion_id: str, user: str, env: Mapping[str, str] | None = None
) -> AcceptResult:
    """Apply ansible-lint's fix for the suggestion (git: on a new branch), or acknowledge one it
    cannot fix. `suggestion_id` may be a unique prefix of at least 8 hex digits."""
    try:
        who = identify(user).name
    except IdentityRefused as err:
        raise SuggestionError(f"--as: {err}") from None
    wanted = suggestion_id.strip().lower()
    if not _ID.match(wanted):
        raise SuggestionError(f"{suggestion_id!r} is not a suggestion id (8 to 32 hex digits)")
    run_env = lint_env(os.environ) if env is None else env
    with engine.begin() as conn:
        found = _locked(conn, wanted)
        if found.state != SuggestionState.OPEN:
            when = found.decided_at.isoformat(timespec="seconds") if found.decided_at else "?"
            raise SuggestionError(f"suggestion {found.id} is already {found.state} (by {found.decided_by}, {when})")
        # The table decides what runs as --fix, not the row (an ansible-lint upgrade may drop a fix).
        if not (found.fixable and is_fixable(found.rule)):
            _decide(conn, found.id, SuggestionState.ACKNOWLEDGED, who)
            return AcceptResult(
                found.id,
                SuggestionState.ACKNOWLEDGED,
                f"ansible-lint has no automatic fix for {found.rule}: acknowledged; fix it by hand",
                found.guidance,
            )
        fix = _Fix(found, playbook_dir.resolve(), who, run_env)
        done = fix.on_branch() if fix.toplevel else fix.in_place()
        if done.state == SuggestionState.ACCEPTED:
            _decide(conn, found.id, SuggestionState.ACCEPTED, who, branch=done.branch, fix_commit=done.fix_commit)
        return done


def _locked(conn: Connection, wanted: str) -> Suggestion:
    rows = conn.execute(select(SUGGESTIONS).where(SUGGESTIONS.c.id.startswith(wanted)).limit(2).with_for_update()).all()
    if not rows:
        raise SuggestionError(f"no suggestion {wanted}; see `signoff suggestions`")
    if len(rows) > 1:
        raise SuggestionError(f"{wanted} is the start of more than one suggestion id; give more of it")
    return to_suggestion(rows[0]._mapping)


def _decide(conn: Connection, sid: str, state: SuggestionState, who: str, **fields: str | None) -> None:
    values = {"state": str(state), "decided_by": who, "decided_at": func.now(), **fields}
    conn.execute(
        update(SUGGESTIONS).where(SUGGESTIONS.c.id == sid, SUGGESTIONS.c.state == SuggestionState.OPEN).values(values)
    )


class _Fix:
    """ansible-lint's fix for one suggestion, made in a scratch tree and then committed or copied."""

    def __init__(self, found: Suggestion, root: Path, who: str, env: Mapping[str, str]) -> None:
        self.found = found
        self.root = root
        self.who = who
        self.env = env
        self.base_rule = found.rule.split("[")[0]  # a key of AUTOFIX: is_fixable() said so
        if not re.fullmatch(r"[0-9a-f]{32}", found.id):  # it names the branch
            raise SuggestionError(f"suggestion id {found.id!r} is not one signoff made")
        try:
            inside(root, found.path)
        except PathRefused as err:
            raise SuggestionError(str(err)) from None
        self.toplevel = _git_toplevel(root, env)

    def on_branch(self) -> AcceptResult:
        top = self.toplevel
        assert top is not None
        branch = f"{BRANCH_PREFIX}{self.found.id}"
        ref = f"refs/heads/{branch}"
        existing = _git(top, self.env, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if existing:  # an earlier accept committed and then failed to record: take its commit
            body = _git(top, self.env, "log", "-1", "--format=%B", existing)
            if f"Suggestion: {self.found.id}" not in body:
                raise SuggestionError(f"branch {branch} exists in {top} and is not signoff's fix; remove it first")
            done = f"ansible-lint's fix for {self.found.rule} was committed before: {branch}, commit {existing[:12]}"
            return self._accepted(done, branch, existing)
        with tempfile.TemporaryDirectory(prefix="signoff-lint-") as scratch:
            tree = Path(scratch) / "worktree"
            _git(top, self.env, "worktree", "add", "--detach", "--quiet", "--", str(tree), "HEAD")
            try:
                work = tree / self.root.relative_to(top)
                if not (work / self.found.path).is_file():
                    raise SuggestionError(f"{self.found.path} is not committed in {top}: nothing to fix on HEAD")
                fixed = self._fix(work)
                if isinstance(fixed, str):
                    return self._still_open(fixed)
                in_repo = (work / self.found.path).relative_to(tree).as_posix()
                _git(tree, self.env, "add", "--", in_repo)
                _git(tree, self.env, "commit", "--quiet", "--no-verify", "-F", "-", stdin=self._message(in_repo, fixed))
                commit = _git(tree, self.env, "rev-parse", "HEAD")
                # An empty old value: create the branch only if nobody made it meanwhile.
                _git(top, self.env, "update-ref", "-m", "signoff: lint fix", ref, commit, "")
            finally:
                _git(top, self.env, "worktree", "remove", "--force", "--", str(tree), check=False)
                _git(top, self.env, "worktree", "prune", check=False)
        return self._accepted(self._fixed(fixed, f"on branch {branch}, commit {commit[:12]}"), branch, commit)

    def in_place(self) -> AcceptResult:
        target = inside(self.root, self.found.path)
        with tempfile.TemporaryDirectory(prefix="signoff-lint-") as scratch:
            # Fixed in a copy (symlinks copied as what they point to), then the one file is replaced.
            work = Path(scratch) / "playbooks"
            try:
                shutil.copytree(self.root, work, ignore_dangling_symlinks=True)
            except (shutil.Error, OSError) as err:
                raise SuggestionError(f"cannot copy {self.root} to fix it aside: {err}") from None
            fixed = self._fix(work)
            if isinstance(fixed, str):
                return self._still_open(fixed)
            staged = target.with_name(f".{target.name}.signoff-fix")
            shutil.copyfile(work / self.found.path, staged)
            shutil.copymode(target, staged)
            os.replace(staged, target)
        result = self._accepted(self._fixed(fixed, f"in {target} ({self.root} is not in a git repository)"), None, None)
        return dataclasses.replace(result, path=target)

    def _fix(self, work: Path) -> tuple[int, int] | str:
        """Run the fix in `work`: how many of the rule's findings in the file it resolved, of
        how many; or why it resolved none."""
        path, rule = self.found.path, self.found.rule
        try:
            before = _count(run_ansible_lint(work, path, self.env, alone=True), rule, path)
            if before == 0:
                return f"ansible-lint finds no {rule} in {path} any more: nothing to fix"
            content = (work / path).read_bytes()
            after = _count(run_ansible_lint(work, path, self.env, alone=True, fix=self.base_rule), rule, path)
        except LintError as err:
            raise SuggestionError(str(err)) from None
        except subprocess.TimeoutExpired:
            raise SuggestionError(f"ansible-lint did not finish within {LINT_TIMEOUT:.0f} s") from None
        if (work / path).read_bytes() == content:
            return f"ansible-lint's fix for {rule} changes nothing in {path}"
        if after >= before:
            return f"ansible-lint's fix does not resolve {rule} in {path}"
        return before - after, before

    def _still_open(self, why: str) -> AcceptResult:
        return AcceptResult(self.found.id, SuggestionState.OPEN, f"{why}; not accepted", self.found.guidance)

    def _fixed(self, fixed: tuple[int, int], where: str) -> str:
        return f"ansible-lint fixed {fixed[0]} of {fixed[1]} {self.found.rule} in {self.found.path} {where}"

    def _accepted(self, message: str, branch: str | None, commit: str | None) -> AcceptResult:
        return AcceptResult(
            self.found.id, SuggestionState.ACCEPTED, message, self.found.guidance, branch=branch, fix_commit=commit
        )

    def _message(self, path: str, fixed: tuple[int, int]) -> str:
        s = self.found
        # Text from the request and the playbook stays inside lines that start with ours, unwrapped,
        # so no line of it can pass for a trailer.
        return (
            f"ansible-lint: fix {s.rule} in {_line(path)}\n\n"
            f"Suggestion {s.id} for change request {_line(s.change_request_id)}, step {s.step}, "
            f"attempt {s.attempt}: {_line(s.message)}\n\n"
            f"`ansible-lint --fix={self.base_rule}` resolved {fixed[0]} of {fixed[1]} {s.rule} in this file.\n"
            "It also rewrites the file in ansible-lint's YAML style: review before merging.\n\n"
            f"Suggestion: {s.id}\n"
            f"Change-request: {_line(s.change_request_id)}\n"
            f"Accepted-by: {self.who}\n"
        )


def _count(report: list[dict[str, Any]], rule: str, path: str) -> int:
    return sum(1 for item in report if item["check_name"] == rule and (item.get("location") or {}).get("path") == path)


def _line(text: str) -> str:
    """One line of printable text: ids and paths may hold anything, and must not forge a trailer."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


# --- git ----------------------------------------------------------------------------------------

# Never the repository's hooks or signing setup: they are the user's, for the user's own commits.
_GIT_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "user.name=signoff",
    "-c",
    "user.email=signoff@localhost",
)


def _git(cwd: Path, env: Mapping[str, str], *args: str, stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(
            ["git", *_GIT_CONFIG, *args],
            cwd=cwd,
            env={**env, "GIT_TERMINAL_PROMPT": "0"},
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise SuggestionError("git is not installed") from None
    if check and done.returncode != 0:
        raise SuggestionError(f"git {args[0]} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip() if done.returncode == 0 else ""


def _git_toplevel(root: Path, env: Mapping[str, str]) -> Path | None:
    """The work tree `root` is in, or None when it is in none. Any other refusal (a repository
    git does not trust, say) is an error: the fix must not then land in the user's checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=root,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise SuggestionError("git is not installed") from None
    if done.returncode == 0:
        return Path(done.stdout.strip()).resolve()
    if "not a git repository" in done.stderr:
        return None
    raise SuggestionError(f"git cannot tell whether {root} is in a repository: {done.stderr.strip()}")
