"""Shared test helpers: polling instead of sleeping, starting change requests, reading audits."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import git
import psutil
from sqlalchemy import create_engine, text
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from workers.devstack import temporal_binary
from workers.sandbox import workflow_runner
from workers.settings import Settings
from workflows.change_request import ChangeRequestWorkflow
from workflows.interceptors import SignoffInterceptor
from workflows.types import ChangeRequestInput, ChangeRequestStatus, Phase

T = TypeVar("T")
HISTORIES = Path(__file__).parent / "histories"


async def replay_and_keep(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Replay this execution against the current code. With SIGNOFF_RECORD_HISTORIES=1, also
    keep its history in tests/histories/, where test_replay checks every later change."""
    history = await handle.fetch_history()
    await Replayer(
        workflows=[ChangeRequestWorkflow], interceptors=[SignoffInterceptor()], workflow_runner=workflow_runner()
    ).replay_workflow(history)
    if os.environ.get("SIGNOFF_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())


async def scheduled_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The activity types the execution has scheduled so far, in order (local activities aside)."""
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def assert_eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109  # on timeout the last AssertionError is raised, not a TimeoutError
    interval: float = 0.05,
) -> T:
    """Poll `check` until it stops raising AssertionError; re-raise the last one on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


async def start_request(
    env: WorkflowEnvironment,
    settings: Settings,
    request: str,
    requester: str = "alice",
    *,
    time_skipping: bool = False,
    **fields: Any,
) -> WorkflowHandle[ChangeRequestWorkflow, Any]:
    """Start a change request. Without time skipping by default: a test that will signal must
    not let virtual time run out the approval timeout first (DESIGN.md section 6)."""
    arg = ChangeRequestInput(request=request, requester=requester, **fields)
    start = env.client.start_workflow(  # type: ignore[misc]  # run takes a RawValue; we send the typed input
        ChangeRequestWorkflow.run,
        arg,
        id=f"cr-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    if time_skipping:
        return await start
    with env.with_time_skipping_disabled():
        return await start


async def wait_for_phase(
    handle: WorkflowHandle[Any, Any],
    phase: Phase,
    timeout: float = 60,  # noqa: ASYNC109  # handed to assert_eventually
) -> ChangeRequestStatus:
    async def check() -> ChangeRequestStatus:
        status = await handle.query(ChangeRequestWorkflow.status)
        assert status.phase == phase, f"phase is {status.phase}, waiting for {phase}"
        return status

    return await assert_eventually(check, timeout=timeout)


async def run_temporal(address: str, *args: str, check: bool = True) -> tuple[int, str, str]:
    """Run the real `temporal` binary against `address`; with `check`, fail on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        str(temporal_binary()),
        *args,
        "--address",
        address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    code = proc.returncode or 0
    assert not check or code == 0, f"temporal {' '.join(args)} exited {code}: {err.decode()}"
    return code, out.decode(), err.decode()


async def temporal_start(address: str, task_queue: str, workflow_id: str, *inputs: str) -> None:
    """`temporal workflow start` a ChangeRequestWorkflow, as a script would, one --input per JSON text."""
    args = [
        "workflow",
        "start",
        "--type",
        "ChangeRequestWorkflow",
        "--task-queue",
        task_queue,
        "--workflow-id",
        workflow_id,
    ]
    for given in inputs:
        args += ["--input", given]
    await run_temporal(address, *args)


def processes_of(workflow_id: str) -> list[psutil.Process]:
    """Live processes of a change request's Ansible runs: each carries SIGNOFF_WORKFLOW_ID."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SIGNOFF_WORKFLOW_ID") == workflow_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:  # exited, or not ours to read
            continue
    return found


def cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def db_rows(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def committed_json(repo_path: Path, sha: str, path: str) -> dict[str, Any]:
    commit = git.Repo(repo_path).commit(sha)
    blob = commit.tree / path
    return json.loads(blob.data_stream.read())


def committed_paths(repo_path: Path, sha: str, prefix: str) -> list[str]:
    commit = git.Repo(repo_path).commit(sha)
    return sorted(item.path for item in commit.tree.traverse() if item.path.startswith(prefix) and item.type == "blob")
