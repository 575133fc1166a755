"""Audit commits in a git repository (GitPython).

One commit per change request outcome: `.audit/requests/<id>.json` (the request, plan,
decisions and step states) and `.audit/tasks/<task id>.json` (one file per task result).
Content is written deterministically, so a retried activity finds nothing to commit and
returns the commit that already holds it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import git
from temporalio import activity

from activities.records import public_status
from workflows.types import AuditCommitResult, AuditRecord

AUTHOR = git.Actor("signoff", "signoff@localhost")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    """A workflow or task id as a file name: ids may hold '/' or spaces."""
    return _UNSAFE.sub("_", name)


def init_repo(path: Path) -> git.Repo:
    """Create the audit repository with a first commit, unless it exists already."""
    if (path / ".git").exists():
        return git.Repo(path)
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    readme = path / "README.md"
    readme.write_text("# signoff audit trail\n\nOne commit per change request; see .audit/.\n")
    repo.index.add([str(readme)])
    repo.index.commit("signoff audit repository", author=AUTHOR, committer=AUTHOR)
    return repo


class AuditGitActivities:
    def __init__(self, repo_path: Path) -> None:
        self._path = repo_path

    @activity.defn(name="commit_audit")
    def commit_audit(self, rec: AuditRecord) -> AuditCommitResult:
        status = rec.status
        files: dict[str, Any] = {f".audit/requests/{safe_name(status.workflow_id)}.json": public_status(status)}
        for task in rec.tasks:
            files[f".audit/tasks/{safe_name(task.task_id)}.json"] = dataclasses.asdict(task)
        with _locked(self._path):
            repo = git.Repo(self._path)
            for rel, doc in files.items():
                target = self._path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
            repo.index.add(list(files))
            request_file = next(iter(files))
            if repo.head.is_valid() and not repo.index.diff("HEAD"):
                last = next(repo.iter_commits(paths=request_file, max_count=1))
                return AuditCommitResult(sha=last.hexsha, files=sorted(files))
            request = status.request.request if status.request else ""
            message = f"{status.workflow_id}: {status.phase}\n\n{request}\n"
            if status.error:
                message += f"\n{status.error}\n"
            commit = repo.index.commit(message, author=AUTHOR, committer=AUTHOR)
            return AuditCommitResult(sha=commit.hexsha, files=sorted(files))


@contextmanager
def _locked(repo_path: Path) -> Iterator[None]:
    """One committer at a time per repository, across threads and worker processes."""
    lock_file = repo_path / ".git" / "signoff-audit.lock"
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
