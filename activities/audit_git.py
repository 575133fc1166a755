"""The git audit of requests started by an earlier release: `commit_audit` writes a request's
whole status to `.audit/requests/<id>.json` and one `.audit/tasks/<task id>.json` per task.
Current requests commit through activities.audit_trail. Content is deterministic, so a retried
activity finds nothing new and returns the commit that already holds it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.audit_paths import PERMANENT_ERRNOS, safe_name
from activities.audit_repo import AuditRepo
from activities.records import public_status
from workflows.types import AuditCommitResult, AuditRecord, ErrorType


def audit_files(rec: AuditRecord) -> dict[str, bytes]:
    """What `commit_audit` commits for `rec`: the request first, then one file per task."""
    docs: dict[str, Any] = {f".audit/requests/{safe_name(rec.status.workflow_id)}.json": public_status(rec.status)}
    for task in rec.tasks:
        docs[f".audit/tasks/{safe_name(task.task_id)}.json"] = dataclasses.asdict(task)
    return {
        path: (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode() for path, doc in docs.items()
    }


class AuditGitActivities:
    def __init__(self, repo_path: Path, remote: str | None = None) -> None:
        self._repo = AuditRepo(repo_path, remote)

    @activity.defn(name="commit_audit")
    def commit_audit(self, rec: AuditRecord) -> AuditCommitResult:
        status = rec.status
        files = audit_files(rec)
        request = status.request.request if status.request else ""
        message = f"{status.workflow_id}: {status.phase}\n\n{request}\n"
        if status.error:
            message += f"\n{status.error}\n"
        try:
            sha = self._repo.commit(files, message).sha
        except (OSError, ValueError) as err:
            if isinstance(err, ValueError) or err.errno in PERMANENT_ERRNOS:  # retrying cannot help: say so at once
                raise ApplicationError(
                    f"cannot write the audit files: {err}", type=ErrorType.AUDIT_FAILED, non_retryable=True
                ) from err
            raise
        self._repo.push()  # also after a no-op commit: a retry pushes what an earlier try could not
        return AuditCommitResult(sha=sha, files=sorted(files))
