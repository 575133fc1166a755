"""The audit an auditor can trust (issue 7): one chained event per fact, rows guarded by revision,
a git record built from the database, `signoff audit verify` that finds edits, deletions and a
changed git file, and the queries over a mixed run. Real Temporal, PostgreSQL and git."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.audit_repo import AuditRepo
from activities.audit_trail import AuditTrail, request_file
from activities.db import MIGRATIONS, SCHEMA_HEAD, Base, make_engine, migrate, migrate_in_child, schema_revision
from activities.records import plain
from tests.conftest import with_policy
from tests.helpers import db_rows, start_request, wait_for_phase
from tests.test_cli import signoff
from workers import audit_queries
from workers.settings import Settings
from workers.worker import running_worker
from workflows.audit import AuditLog, DecisionFact, RequestRecord, StepFact
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import (
    ApproveInput,
    ChangeRequestInput,
    ChangeRequestStatus,
    DecideInput,
    Decision,
    Phase,
    RejectInput,
    StepState,
    StepStatus,
    Verdict,
)


def sql(url: str, statement: str, **params: Any) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


async def approved(env: WorkflowEnvironment, settings: Settings, request: str, **kw: Any) -> WorkflowHandle[Any, Any]:
    handle = await start_request(env, settings, request, **kw)
    await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
    await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob", comment="go"))
    return handle


@pytest.fixture
async def mixed_run(env: WorkflowEnvironment, settings: Settings) -> dict[str, str]:
    """Succeeded, partial, failed, rejected and expired requests, audited."""
    settings = with_policy(settings, timeout_seconds=3600)
    async with running_worker(env.client, settings):
        ok = await approved(env, settings, "Deploy hello", vars={"greeting": "audit"})
        partial = await approved(env, settings, "Deploy doomed, then configure hello")
        await wait_for_phase(partial, Phase.AWAITING_DECISION)
        await partial.signal(ChangeRequestWorkflow.decide, DecideInput(operator="carol", action="skip"))
        failed = await approved(env, settings, "Deploy doomed")
        await wait_for_phase(failed, Phase.AWAITING_DECISION)
        await failed.signal(ChangeRequestWorkflow.decide, DecideInput(operator="bob", action="abort", comment="no"))
        rejected = await start_request(env, settings, "Configure hello")
        await wait_for_phase(rejected, Phase.AWAITING_APPROVAL)
        await rejected.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="alice"))  # refused: four eyes
        await rejected.signal(ChangeRequestWorkflow.reject, RejectInput(approver="bob", reason="not now"))
        expired = await start_request(env, settings, "Configure hello")
        await wait_for_phase(expired, Phase.AWAITING_APPROVAL)
        await env.fast_forward(expired, timedelta(hours=2))
        handles = {"succeeded": ok, "partial": partial, "failed": failed, "rejected": rejected, "expired": expired}
        for phase, handle in handles.items():
            assert (await handle.result()).outcome == phase
    return {phase: h.id for phase, h in handles.items()}


async def test_a_mixed_run_is_audited_queried_and_verified(
    mixed_run: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    url = settings.database_url
    assert url
    report = audit_queries.verify(url=url, audit_repo=settings.audit_repo)
    assert report.ok, report.broken
    assert report.requests == 5
    assert report.events == db_rows(url, "SELECT count(*) AS n FROM audit_events")[0]["n"]

    # each fact once, numbered per request; the revision is the last one
    for wid in mixed_run.values():
        seqs = [r["seq"] for r in db_rows(url, "SELECT seq FROM audit_events WHERE change_request_id = :id "
                                          "ORDER BY id", id=wid)]  # fmt: skip
        assert seqs == list(range(1, len(seqs) + 1))
        [row] = db_rows(url, "SELECT revision, phase FROM change_requests WHERE id = :id", id=wid)
        assert row["revision"] == len(seqs)

    partial = audit_queries.get_request(mixed_run["partial"], url)
    assert [(s["playbook"], s["state"], s["failure_class"]) for s in partial["steps"]] == [
        ("doomed-deploy.yml", "skipped", "task_failed"),
        ("hello-configure.yml", "succeeded", None),
    ]
    assert [(d["who"], d["verdict"], d["step"]) for d in partial["decisions"]] == [
        ("bob", "approve", None),
        ("carol", "skip", 1),
    ]
    assert {(t["step"], t["host"], t["status"]) for t in partial["tasks"]} >= {(1, "localhost", "failed")}
    kinds = [e["kind"] for e in partial["events"]]
    assert kinds[:2] == ["submitted", "planned"]
    assert kinds[-1] == "audit_commit"
    assert "decision" in kinds
    assert "step" in kinds

    rejected = audit_queries.get_request(mixed_run["rejected"], url)
    assert [(r["who"], r["verdict"]) for r in rejected["refusals"]] == [("alice", "approve")]
    assert [(d["who"], d["verdict"], d["note"]) for d in rejected["decisions"]] == [("bob", "reject", "not now")]

    failures = audit_queries.get_failures(7, url)
    failed_requests = {f["change_request_id"] for f in failures}
    assert failed_requests == {mixed_run["partial"], mixed_run["failed"]}
    assert all(f["failure_class"] == "task_failed" and f["host"] == "localhost" for f in failures)
    task = audit_queries.get_task(failures[0]["task_id"], url)
    assert task["status"] == "failed"

    # the git record is the database's document, one file per request
    repo = AuditRepo(settings.audit_repo)
    doc = json.loads(repo.read(request_file(mixed_run["succeeded"])) or b"")
    assert doc["record"]["phase"] == "succeeded"
    assert doc["record"]["vars"] == {"greeting": "audit"}
    assert doc["record"]["decisions"][0]["who"] == "bob"
    assert [t["task"] for t in doc["tasks"]] == ["Write hello.txt"]
    assert doc["chain_head"]["hash"] == doc["events"][-1]["hash"]

    # the CLI says the same
    cli_env = {"SIGNOFF_DATABASE_URL": url, "SIGNOFF_AUDIT_REPO": str(settings.audit_repo)}
    code, out, err = await signoff(cli_env, "audit", "verify")
    assert code == 0, err
    assert "the audit trail is intact" in out
    code, out, err = await signoff(cli_env, "failures", "--days", "7", "--json")
    assert code == 0, err
    assert {f["change_request_id"] for f in json.loads(out)} == failed_requests
    code, out, err = await signoff(cli_env, "audit", mixed_run["partial"])
    assert code == 0, err
    assert "decision skip on step 1 by carol" in out
    assert "step 1 doomed-deploy.yml skipped" in out


async def test_verify_finds_an_edited_row_a_deleted_row_and_an_edited_git_file(
    mixed_run: dict[str, str], settings: Settings
) -> None:
    url = settings.database_url
    assert url
    cli_env = {"SIGNOFF_DATABASE_URL": url, "SIGNOFF_AUDIT_REPO": str(settings.audit_repo)}
    wid = mixed_run["rejected"]
    [decision] = db_rows(url, "SELECT id, data FROM audit_events WHERE change_request_id = :id AND kind = 'decision' "
                         "AND data->>'verdict' = 'reject'", id=wid)  # fmt: skip

    # an edited row
    forged = {**decision["data"], "who": "carol"}
    sql(url, "UPDATE audit_events SET data = CAST(:data AS json) WHERE id = :id", data=json.dumps(forged),
        id=decision["id"])  # fmt: skip
    code, _out, err = await signoff(cli_env, "audit", "verify")
    assert code == 2
    assert f"event {decision['id']} of {wid!r}" in err
    assert "was edited" in err
    sql(url, "UPDATE audit_events SET data = CAST(:data AS json) WHERE id = :id", data=json.dumps(decision["data"]),
        id=decision["id"])  # fmt: skip
    assert audit_queries.verify(url=url, audit_repo=settings.audit_repo).ok

    # a deleted row: the next one's link breaks
    [row] = db_rows(url, "SELECT * FROM audit_events WHERE id = :id", id=decision["id"])
    sql(url, "DELETE FROM audit_events WHERE id = :id", id=decision["id"])
    report = audit_queries.verify(url=url, audit_repo=settings.audit_repo)
    assert not report.ok
    assert "link to the event before it is broken" in report.broken[0]
    one = audit_queries.verify(wid, url=url, audit_repo=settings.audit_repo)
    assert not one.ok
    columns = ", ".join(row)
    sql(url, f"INSERT INTO audit_events ({columns}) VALUES ({', '.join(':' + c for c in row)})",
        **{**row, "data": json.dumps(row["data"])})  # fmt: skip
    assert audit_queries.verify(url=url, audit_repo=settings.audit_repo).ok

    # a committed JSON file edited in a new commit
    path = request_file(mixed_run["succeeded"])
    repo = AuditRepo(settings.audit_repo)
    doc = json.loads(repo.read(path) or b"")
    doc["record"]["requester"] = "mallory"
    repo.commit({path: json.dumps(doc).encode()}, "an innocent-looking fix")
    code, _, err = await signoff(cli_env, "audit", "verify", mixed_run["succeeded"])
    assert code == 2
    assert "was changed after audit commit" in err


def status_with(steps: int, decisions: int) -> ChangeRequestStatus:
    status = ChangeRequestStatus(
        workflow_id="cr-revision",
        phase=Phase.EXECUTING,
        request=ChangeRequestInput("Deploy hello", "alice"),
        steps=[StepStatus(i, "hello-deploy.yml", StepState.SUCCEEDED) for i in range(1, steps + 1)],
    )
    status.approvals = [
        Decision(f"approver{i}", Verdict.APPROVE, None, "2026-01-01T00:00:00") for i in range(decisions)
    ]
    return status


def test_a_write_twice_or_out_of_order_leaves_one_row_per_fact(database_url: str, tmp_path: Path) -> None:
    repo = AuditRepo(tmp_path / "audit")
    repo.ensure()
    engine = make_engine(database_url)
    trail = AuditTrail(engine, repo)
    log = AuditLog()
    older = log.pending(status_with(1, 1), "2026-01-01T00:00:01")
    newer = log.pending(status_with(2, 2), "2026-01-01T00:00:02")
    run = ActivityEnvironment().run
    run(trail.append, newer)
    run(trail.append, newer)  # a retry after the write but before the completion reached Temporal
    run(trail.append, older)  # a stale attempt, arriving last
    engine.dispose()

    events = db_rows(database_url, "SELECT seq, kind FROM audit_events ORDER BY id")
    assert [e["seq"] for e in events] == list(range(1, newer.revision + 1))
    [row] = db_rows(database_url, "SELECT revision FROM change_requests")
    assert row["revision"] == newer.revision
    assert len(db_rows(database_url, "SELECT * FROM steps")) == 2, "the older write removed nothing"
    assert len(db_rows(database_url, "SELECT * FROM decisions")) == 2


def test_a_writer_killed_between_its_write_and_its_completion(database_url: str, tmp_path: Path) -> None:
    """The finishing write runs in a process that is killed (SIGKILL) right after its rows are
    committed and before it completes; running it again leaves one row per fact and one commit."""
    repo = AuditRepo(tmp_path / "audit")
    repo.ensure()
    log = AuditLog()
    status = status_with(2, 1)
    status.phase = Phase.SUCCEEDED
    batch = log.pending(status, "2026-01-01T00:00:09")
    payload = tmp_path / "batch.json"
    payload.write_text(json.dumps(_as_json(batch)))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json,sys; from tests.test_audit_trail import finish_from; finish_from(*sys.argv[1:])",
            database_url,
            str(tmp_path / "audit"),
            str(payload),
        ],
        cwd=Path(__file__).parent.parent,
    )
    assert child.wait(timeout=120) == -signal.SIGKILL, "killed between its write and its completion"
    assert db_rows(database_url, "SELECT 1 FROM audit_events LIMIT 1"), "its rows were written"
    engine = make_engine(database_url)
    result = ActivityEnvironment().run(AuditTrail(engine, repo).finish, batch)
    engine.dispose()

    events = db_rows(database_url, "SELECT seq FROM audit_events ORDER BY id")
    assert [e["seq"] for e in events] == list(range(1, batch.revision + 2))  # + the commit
    log_lines = subprocess.run(
        ["git", "-C", str(tmp_path / "audit"), "log", "--format=%H", "--", request_file("cr-revision")],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert log_lines == [result.sha]
    report = audit_queries.verify(url=database_url, audit_repo=tmp_path / "audit")
    assert report.ok, report.broken


def _as_json(batch: Any) -> Any:
    return dataclasses.asdict(batch)


def finish_from(database_url: str, repo_path: str, payload: str) -> None:
    """In the child: `finish_audit`'s database write, then death before the activity completes."""
    from temporalio.converter import DataConverter

    from workflows.audit import AuditAppend

    data = Path(payload).read_bytes()
    [batch] = DataConverter.default.payload_converter.from_payloads(
        DataConverter.default.payload_converter.to_payloads([json.loads(data)]), [AuditAppend]
    )
    ActivityEnvironment().run(AuditTrail(make_engine(database_url), AuditRepo(Path(repo_path))).append, batch)
    os.kill(os.getpid(), signal.SIGKILL)


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_migrations_run_forward_over_existing_data(postgres: Any) -> None:
    """A database at 0004 with a request, a decision and a refusal comes to head with all of
    them, the refusal as a decision row of kind `refusal`."""
    url = postgres.create_database("upgrade_with_data")
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0004")
            conn.execute(text(
                "INSERT INTO change_requests (id, request, requester, var_names, dry_run, phase, refused) VALUES "
                "('cr-old', 'Deploy hello', 'alice', '[]', false, 'succeeded', "
                "'[{\"name\": \"approve\", \"who\": \"alice\", \"reason\": \"four eyes\", \"at\": \"t\"}]')"
            ))  # fmt: skip
            conn.execute(text("INSERT INTO decisions (change_request_id, seq, who, verdict, decided_at) "
                              "VALUES ('cr-old', 0, 'bob', 'approve', 't')"))  # fmt: skip
        migrate(engine)
    finally:
        engine.dispose()
    rows = db_rows(url, "SELECT kind, seq, who, verdict, note FROM decisions ORDER BY kind, seq")
    assert rows == [
        {"kind": "decision", "seq": 0, "who": "bob", "verdict": "approve", "note": None},
        {"kind": "refusal", "seq": 0, "who": "alice", "verdict": "approve", "note": "four eyes"},
    ]
    [request] = db_rows(url, "SELECT phase, revision FROM change_requests")
    assert request == {"phase": "succeeded", "revision": 0}
    assert audit_queries.verify(url=url, audit_repo=None).ok


async def test_signoff_db_upgrade_migrates_an_empty_database(postgres: Any) -> None:
    url = postgres.create_database("upgrade_by_cli")
    code, out, err = await signoff({"SIGNOFF_DATABASE_URL": url}, "db", "upgrade")
    assert code == 0, err
    assert "up to date" in out
    tables = {r["tablename"] for r in db_rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"change_requests", "decisions", "steps", "tasks", "audit_events", "lint_suggestions"} <= tables
    [version] = db_rows(url, "SELECT version_num FROM alembic_version")
    assert version["version_num"] == SCHEMA_HEAD


def test_a_worker_migrates_in_a_child_and_never_loads_alembic(postgres: Any) -> None:
    """The worker's migration runs in a process of its own when the schema is behind; a worker
    whose database is at SCHEMA_HEAD does not run it at all. Alembic never stays resident."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD
    engine = make_engine(postgres.create_database("upgrade_by_worker"))
    try:
        assert schema_revision(engine) is None
        migrate_in_child(engine)
        assert schema_revision(engine) == SCHEMA_HEAD
        migrate_in_child(engine)  # at head: nothing to run
    finally:
        engine.dispose()
    for imported in ("workers.cli", "workers.worker"):
        loaded = subprocess.run(
            [sys.executable, "-c", f"import sys, {imported}; print('alembic' in sys.modules)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert loaded.stdout.strip() == "False", imported


def test_a_record_becomes_the_same_rows_as_with_asdict() -> None:
    """activities.records.plain stands in for dataclasses.asdict when rows are written."""
    record = RequestRecord(
        format=1,
        workflow_id="cr-1",
        request="Deploy kuma",
        requester="alice",
        requester_raw=None,
        inventory="homelab",
        vars={"port": 3001, "tags": ["a", "b"], "nested": {"k": [1, {"x": None}]}},
        dry_run=False,
        phase="executing",
        risk="low",
        plan={"steps": [{"playbook": "kuma.yml"}]},
        error=None,
        decisions=[DecisionFact(1, "bob", "approve", None, "2026-01-01T00:00:00+00:00", step=2)],
        steps=[StepFact(1, "kuma.yml", "succeeded", 1, 1, 2, 1, 0, None, None, None)],
    )
    assert plain(record) == dataclasses.asdict(record)
    assert plain((record, [record])) == [dataclasses.asdict(record), [dataclasses.asdict(record)]]
