"""PostgreSQL going away never loses a change or its audit: requests wait out a 60 s outage
(bookkeeping retries without limit) and a dropped connection retries the transaction.

Black-box on real parts: submit, approve, wait for the phase; then rows, files, results."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import git
import psycopg
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from activities.db import make_engine, migrate
from tests.conftest import FIXTURES
from tests.helpers import assert_eventually, db_rows, start_request, wait_for_phase
from workers.devstack import EmbeddedPostgres
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, ChangeRequestResult, Phase, StepState

OUTAGE = 60.0  # seconds PostgreSQL stays down: the one deliberate wait in this module
APPROVE_INTO_OUTAGE = 2.0


class RestartablePostgres:
    """A PostgreSQL of this test's own, stopped and started again on the same data dir.
    devstack has no restart; a new start on the same pgdata reuses its socket dir, so the URL
    stays the same (checked on every start)."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.server: EmbeddedPostgres | None = EmbeddedPostgres.start(pgdata)
        self.url = self.server.create_database("signoff")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def start(self) -> None:
        assert self.server is None, "already running"
        self.server = EmbeddedPostgres.start(self.pgdata)
        assert self.server.url("signoff") == self.url, "restarted on another socket: clients would not find it"


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[RestartablePostgres]:
    """Not the session server: this one is stopped for a minute."""
    postgres = RestartablePostgres(tmp_path / "pg" / "data")
    engine = make_engine(postgres.url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    yield postgres
    postgres.stop()


def two_host_settings(settings: Settings, tmp_path: Path, out_dir: Path, database_url: str) -> Settings:
    """alpha-deploy runs on host alpha, beta-deploy on host beta (both local): they hold
    different locks, so both run while PostgreSQL is down."""
    playbooks = tmp_path / "outage-playbooks"
    shutil.copytree(FIXTURES / "playbooks" / "outage", playbooks)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "out_dir": str(out_dir)}
    inventory = tmp_path / "inventory" / "outage.yml"
    inventory.parent.mkdir(parents=True, exist_ok=True)
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"alpha": local, "beta": local}}}))
    return dataclasses.replace(settings, database_url=database_url, playbook_dir=playbooks, inventory=inventory)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def reachable(database_url: str) -> bool:
    try:
        with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql"), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


async def file_has_line(path: Path) -> None:
    assert lines(path), f"{path.name} is empty"


def assert_audit_commit(repo_path: Path, result: ChangeRequestResult, workflow_id: str) -> None:
    repo = git.Repo(repo_path)
    assert result.audit_commit, f"{workflow_id}: no audit commit"
    commit = repo.commit(result.audit_commit)
    assert repo.is_ancestor(commit, repo.head.commit), "the audit commit is on the audit branch"
    files = repo.git.ls_tree("-r", "--name-only", commit.hexsha).splitlines()
    assert any(workflow_id in name for name in files), "the commit holds this request"


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE + 240)
async def test_a_60s_postgresql_outage_loses_no_change_and_no_audit(
    env: WorkflowEnvironment, settings: Settings, tmp_path: Path, out_dir: Path, own_postgres: RestartablePostgres
) -> None:
    settings = two_host_settings(settings, tmp_path, out_dir, own_postgres.url)
    go = out_dir / "beta.go"
    async with running_worker(env.client, settings):
        try:
            a = await start_request(env, settings, "Deploy alpha")
            b = await start_request(env, settings, "Deploy beta")
            await wait_for_phase(a, Phase.AWAITING_APPROVAL)
            await wait_for_phase(b, Phase.AWAITING_APPROVAL)
            await b.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
            await assert_eventually(lambda: file_has_line(out_dir / "beta.started"), timeout=60)

            own_postgres.stop()
            down_since = time.monotonic()
            assert not reachable(own_postgres.url), "PostgreSQL is down"
            await asyncio.sleep(APPROVE_INTO_OUTAGE)  # deliberate: the approval lands inside the outage
            await a.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
            go.touch()  # beta's running step may finish now, with nowhere to write

            # Both playbooks run to their last task while PostgreSQL is down (whether each activity
            # then completes or waits inside to write its task rows is the code's choice).
            await assert_eventually(lambda: file_has_line(out_dir / "beta.runs"), timeout=OUTAGE - 10)
            await assert_eventually(lambda: file_has_line(out_dir / "alpha.runs"), timeout=OUTAGE - 10)
            both_ran_at = time.monotonic() - down_since
            await asyncio.sleep(max(0.0, OUTAGE - both_ran_at))  # deliberate: the outage lasts its full minute
            phases_at_end_of_outage = [(await h.query(ChangeRequestWorkflow.status)).phase for h in (a, b)]
            own_postgres.start()

            # Bookkeeping backs off to a try every 30 s: well within this, once PostgreSQL is back.
            result_a, result_b = await asyncio.wait_for(asyncio.gather(a.result(), b.result()), timeout=120)
        finally:
            go.touch()  # on failure too: a waiting playbook would hold up the worker's shutdown

    assert both_ran_at < OUTAGE, "both playbooks ran while PostgreSQL was down"
    assert phases_at_end_of_outage == [Phase.EXECUTING, Phase.EXECUTING], "waiting for PostgreSQL, not failed"
    assert (result_a.outcome, result_b.outcome) == (Phase.SUCCEEDED, Phase.SUCCEEDED), (result_a, result_b)
    assert [s.state for s in result_a.steps] == [StepState.SUCCEEDED]
    assert [s.state for s in result_b.steps] == [StepState.SUCCEEDED]
    # each step ran exactly once
    assert lines(out_dir / "alpha.runs") == [a.id]
    assert lines(out_dir / "beta.started") == [b.id]
    assert lines(out_dir / "beta.runs") == [b.id]

    url = own_postgres.url
    phases = db_rows(url, "SELECT id, phase FROM change_requests WHERE id IN (:a, :b) ORDER BY id", a=a.id, b=b.id)
    assert sorted((r["id"], r["phase"]) for r in phases) == sorted([(a.id, "succeeded"), (b.id, "succeeded")])
    tasks_b = db_rows(url, "SELECT step, attempt, status FROM tasks WHERE change_request_id = :id", id=b.id)
    assert sorted((t["step"], t["attempt"], t["status"]) for t in tasks_b) == [
        (1, 1, "changed"),  # Say it started
        (1, 1, "changed"),  # Record this run
        (1, 1, "ok"),  # Wait for the go file
    ], "the task rows of the step that finished during the outage"
    tasks_a = db_rows(url, "SELECT step, attempt, status FROM tasks WHERE change_request_id = :id", id=a.id)
    assert [(t["step"], t["attempt"], t["status"]) for t in tasks_a] == [(1, 1, "changed")]

    assert_audit_commit(settings.audit_repo, result_a, a.id)
    assert_audit_commit(settings.audit_repo, result_b, b.id)


# --- dropped connections ---------------------------------------------------------------------

# Each write of a change_requests row then lasts long enough for a terminate to land inside its
# transaction (a slow-down only: PostgreSQL itself drops the connection).
SLOW_AUDIT_WRITES = """
CREATE FUNCTION test_slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
CREATE TRIGGER test_slow_write BEFORE INSERT OR UPDATE ON change_requests
    FOR EACH ROW EXECUTE FUNCTION test_slow_write();
"""


class ConnectionKiller:
    """Terminates every connection of the database, every 50 ms, until stopped. A transaction
    caught in flight is cut too, up to `budget` of them, `gap` seconds apart at least: one try
    of a write may take several transactions (rows, then the commit's fact after git), and
    cutting one of them on every try for ever would stop any code, right or wrong. The gap is
    under the bookkeeping retry's first interval (1 s), so the retries of one cut write are cut
    again until the budget is spent: the cuts no longer depend on how the request's own writes
    happen to fall (with 1.5 s, a run could see only 2)."""

    def __init__(self, database_url: str, budget: int = 4, gap: float = 0.9) -> None:
        self._url = database_url.replace("postgresql+psycopg", "postgresql")
        self._budget = budget
        self._gap = gap
        self.stopping = threading.Event()
        self.dropped_in_flight = 0
        self.dropped_idle = 0

    def run(self) -> None:
        last_cut = 0.0
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self.stopping.wait(0.05):
                backends = conn.execute(
                    "SELECT pid, xact_start IS NOT NULL FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                ).fetchall()
                for pid, in_flight in backends:
                    if in_flight and (
                        self.dropped_in_flight >= self._budget or time.monotonic() - last_cut < self._gap
                    ):
                        continue
                    if conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() != (True,):
                        continue
                    if in_flight:
                        self.dropped_in_flight += 1
                        last_cut = time.monotonic()
                    else:
                        self.dropped_idle += 1


@pytest.mark.slow
async def test_connections_dropped_again_and_again_lose_no_row(
    env: WorkflowEnvironment, settings: Settings, database_url: str, tmp_path: Path, out_dir: Path
) -> None:
    url = database_url
    settings = two_host_settings(settings, tmp_path, out_dir, url)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(SLOW_AUDIT_WRITES)
    killer = ConnectionKiller(url)
    async with running_worker(env.client, settings):
        killing = asyncio.create_task(asyncio.to_thread(killer.run))
        try:
            handle = await start_request(env, settings, "Deploy alpha")
            await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
            await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
            result = await asyncio.wait_for(handle.result(), timeout=90)
        finally:
            killer.stopping.set()
            await killing

    assert killer.dropped_in_flight >= 3, f"only {killer.dropped_in_flight} transactions were cut"
    assert result.outcome == Phase.SUCCEEDED, result
    assert lines(out_dir / "alpha.runs") == [handle.id], "the step ran exactly once"
    [row] = db_rows(url, "SELECT phase FROM change_requests WHERE id = :id", id=handle.id)
    assert row["phase"] == "succeeded"
    tasks = db_rows(url, "SELECT step, attempt, status FROM tasks WHERE change_request_id = :id", id=handle.id)
    assert [(t["step"], t["attempt"], t["status"]) for t in tasks] == [(1, 1, "changed")]
    assert_audit_commit(settings.audit_repo, result, handle.id)
