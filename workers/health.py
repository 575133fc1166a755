"""`signoff worker --check`: is everything a worker needs usable? Temporal, PostgreSQL, the
playbook dir, the inventory and the audit repository, in that order; for a readiness probe or an
operator before a rollout. Each check says what it found; the first that fails is named."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError

from activities.db import SCHEMA_HEAD, make_engine, schema_revision
from activities.discovery import discover
from workers.settings import Settings
from workers.worker import connect

TIMEOUT = 10.0  # seconds per check


class Unusable(Exception):
    """What is wrong, in words an operator can act on."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def check_all(settings: Settings, address: str | None = None) -> list[Check]:
    async def temporal() -> str:
        try:
            client = await connect(address)
        except RuntimeError as err:
            raise Unusable(f"cannot connect: {err}") from None
        try:
            await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
        except RPCError as err:
            raise Unusable(f"namespace {client.namespace!r}: {err.message}") from None
        return f"{client.service_client.config.target_host}, namespace {client.namespace!r}"

    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("Temporal", temporal),
        ("PostgreSQL", lambda: asyncio.to_thread(_postgres, settings)),
        ("playbook dir", lambda: asyncio.to_thread(_playbooks, settings.playbook_dir)),
        ("inventory", lambda: asyncio.to_thread(_inventory, settings.inventory)),
        ("audit repo", lambda: asyncio.to_thread(_audit_repo, settings.audit_repo, settings.audit_remote)),
    ]
    found = []
    for name, check in checks:
        try:
            found.append(Check(name, True, await asyncio.wait_for(check(), TIMEOUT)))
        except Unusable as err:
            found.append(Check(name, False, str(err)))
        except TimeoutError:
            found.append(Check(name, False, f"no answer within {TIMEOUT:.0f}s"))
    return found


def _postgres(settings: Settings) -> str:
    if not settings.database_url:
        raise Unusable("SIGNOFF_DATABASE_URL is not set")
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        revision = schema_revision(engine)
    except Exception as err:  # the driver's many errors: all mean "not usable", with its words
        raise Unusable(f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    finally:
        engine.dispose()
    where = f"{engine.url.host or 'local socket'}/{engine.url.database}"
    if revision == SCHEMA_HEAD:
        return f"{where}, schema {revision}"
    return f"{where}, schema {revision or 'empty'}; the worker migrates it to {SCHEMA_HEAD} when it starts"


def _playbooks(path: Path) -> str:
    if not path.is_dir() or not os.access(path, os.R_OK | os.X_OK):
        raise Unusable(f"{path} is not a readable directory (SIGNOFF_PLAYBOOK_DIR)")
    catalog = discover(path)
    if not catalog.entries:
        raise Unusable(f"{path} holds no playbook (SIGNOFF_PLAYBOOK_DIR)")
    broken = f", {len(catalog.broken)} broken (see `signoff playbooks`)" if catalog.broken else ""
    return f"{path}, {len(catalog.entries)} playbooks{broken}"


def _inventory(path: Path) -> str:
    if not (path.is_file() or path.is_dir()) or not os.access(path, os.R_OK):
        raise Unusable(f"{path} is not readable (SIGNOFF_INVENTORY)")
    return str(path)


def _audit_repo(path: Path, remote: str | None) -> str:
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            raise Unusable(f"{path} does not exist and cannot be created (SIGNOFF_AUDIT_REPO)")
        return f"{path}, created when the worker starts"
    if not os.access(path, os.W_OK | os.X_OK):
        raise Unusable(f"{path} is not writable (SIGNOFF_AUDIT_REPO)")
    if _git(path, "rev-parse", "--verify", "--quiet", "refs/heads/main").returncode != 0:
        raise Unusable(f"{path} is not a signoff audit repository: no branch main (SIGNOFF_AUDIT_REPO)")
    if remote:
        reached = _git(path, "ls-remote", "--heads", remote, "main")
        if reached.returncode != 0:
            raise Unusable(f"remote {remote} cannot be reached: {reached.stderr.strip()[:300]} (SIGNOFF_AUDIT_REMOTE)")
        return f"{path}, pushes to {remote}"
    return str(path)


def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(
            ["git", "--git-dir", str(path), *args], capture_output=True, text=True, env=env, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise Unusable(f"`git {args[0]}` did not answer within {TIMEOUT:.0f}s") from None
