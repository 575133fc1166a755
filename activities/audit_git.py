"""Audit commits in a git repository (GitPython).

One commit per change request outcome: `.audit/requests/<id>.json` (the request, plan,
decisions and step states) and `.audit/tasks/<task id>.json` (one file per task result).
Content is written deterministically, so a retried activity finds nothing to commit and
returns the commit that already holds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import git
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.records import public_status
from workflows.types import AuditCommitResult, AuditRecord, ChangeRequestStatus, ErrorType

AUTHOR = git.Actor("signoff", "signoff@localhost")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
_PREFIX_CHARS = 60
_PERMANENT = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EINVAL})


def safe_name(name: str) -> str:
    """A workflow or task id as a file name. Ids may be up to 1,000 characters of anything
    (slashes, spaces, `..`, any script): a plain short id is used as it is; any other becomes a
    readable prefix and a hash of the whole id, so it is bounded, unique and stays in .audit/."""
    if _PLAIN.match(name):
        return name
    prefix = _UNSAFE.sub("_", name)[:_PREFIX_CHARS].lstrip("._-")
    return f"{prefix}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


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
            try:
                return self._commit(repo, status, files)
            except OSError as err:
                _restore(repo, list(files))
                if err.errno in _PERMANENT:  # retrying cannot help: say so at once
                    raise ApplicationError(
                        f"cannot write the audit files: {err}", type=ErrorType.AUDIT_FAILED, non_retryable=True
                    ) from err
                raise
            except BaseException:
                _restore(repo, list(files))
                raise
            finally:
                repo.close()

    def _commit(self, repo: git.Repo, status: ChangeRequestStatus, files: dict[str, Any]) -> AuditCommitResult:
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


def _restore(repo: git.Repo, paths: list[str]) -> None:
    """Undo a commit attempt that failed half-way: unstage, and put every file back as HEAD
    has it (or remove it), so no untracked or modified file is left for the next commit."""
    tracked = (
        {entry.path for entry in repo.head.commit.tree.traverse() if isinstance(entry, git.Blob)}
        if repo.head.is_valid()
        else set()
    )
    if repo.head.is_valid():
        repo.git.reset("-q", "HEAD", "--", *paths)
    for rel in paths:
        if rel in tracked:
            repo.git.checkout("HEAD", "--", rel)
        else:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # never written
                (Path(repo.working_tree_dir or ".") / rel).unlink()


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
