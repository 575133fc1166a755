"""One real Temporal dev server (time-skipping V2) and one embedded PostgreSQL per session;
a fresh database, playbook repo, inventory and audit repo per test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.audit_repo import init_repo
from activities.db import make_engine, migrate
from workers.devstack import DEV_DYNAMIC_CONFIG, EmbeddedPostgres, temporal_binary, write_local_inventory
from workers.settings import Settings
from workflows.change_request import SEARCH_ATTRIBUTES
from workflows.types import ApprovalPolicy

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE_DB = "signoff_template"


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=str(temporal_binary()),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            *DEV_DYNAMIC_CONFIG,  # playbooks start in the order they were scheduled, as with signoff dev
        ],
        search_attributes=SEARCH_ATTRIBUTES,
    ) as workflow_env:
        yield workflow_env


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres.start(tmp_path_factory.mktemp("postgres") / "data")
    url = server.create_database(TEMPLATE_DB)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> str:
    """A fresh, migrated database for this test, cloned from the migrated template."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}", template=TEMPLATE_DB)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Where fixture playbooks write their files."""
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, database_url: str, out_dir: Path) -> Settings:
    playbooks = tmp_path / "playbooks"
    shutil.copytree(FIXTURES / "playbooks" / "basic", playbooks)
    inventory = write_local_inventory(tmp_path / "inventory" / "hosts.yml", ("local",), {"out_dir": str(out_dir)})
    audit = tmp_path / "audit"
    init_repo(audit)
    return Settings(
        task_queue=f"signoff-test-{uuid.uuid4()}",
        data_dir=tmp_path,
        database_url=database_url,
        playbook_dir=playbooks,
        inventory=inventory,
        audit_repo=audit,
        policy=ApprovalPolicy(approvers=["bob", "carol"], required_approvals=1, timeout_seconds=3600),
        # A check-mode run per step doubles Ansible's cost; tests of the preview turn it on.
        check_mode_preview=False,
        # ansible-lint costs ~4 CPU-s per failed step; tests of the analysis turn it on.
        failure_analysis=False,
    )


def with_policy(settings: Settings, **changes: object) -> Settings:
    return replace(settings, policy=replace(settings.policy, **changes))
