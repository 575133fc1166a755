"""A real web inbox for tests: `signoff web`'s app served by uvicorn on a free port, beside a
real worker, on the session's Temporal dev server and a fresh PostgreSQL database. Its SSH
signing key is made by ssh-keygen and trusted by the worker's allowed_signers file, so every
decision from the web is verified as a signed one."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.db import make_engine
from activities.lint import LintActivities, Suggestion, list_suggestions
from tests.helpers import start_request, wait_for_phase
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET
from workers.devstack import free_port
from workers.settings import Settings
from workers.web.config import CALLBACK_PATH, OidcConfig, WebConfig
from workers.web.context import Web
from workers.web.server import build, serving
from workers.web.signer import WebSigner
from workers.worker import running_worker
from workflows.runs import AnalyzeFailureInput
from workflows.types import Phase

PASSWORD = "correct horse battery staple"
LINT_FIXTURE = Path(__file__).parent / "fixtures" / "lint" / "findings"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class WebStack:
    url: str
    settings: Settings
    web: Web


@asynccontextmanager
async def web_stack(
    env: WorkflowEnvironment,
    settings: Settings,
    users: Mapping[str, str] | None = None,
    *,
    principals: str = "*",
    oidc_issuer: str | None = None,
) -> AsyncIterator[WebStack]:
    """Users `alice`, `bob` and `carol` by default, all with PASSWORD. The web key signs for
    `principals` (an OpenSSH pattern list) in the worker's allowed_signers. With `oidc_issuer`,
    people log in there instead (tests/oidc_provider.py's client)."""
    web_dir = settings.data_dir / "web"
    address = f"127.0.0.1:{free_port()}"
    config = WebConfig(
        address=address,
        public_url=f"http://{address}",
        session_key=secrets.token_urlsafe(48),
        users_file=web_dir / "users",
        signing_key=web_dir / "signing-key",
        idle_timeout=1800,
        oidc=OidcConfig(oidc_issuer, CLIENT_ID, CLIENT_SECRET, f"http://{address}{CALLBACK_PATH}")
        if oidc_issuer
        else None,
    )
    signer = await WebSigner.ensure(config.signing_key)
    allowed = web_dir / "allowed_signers"
    allowed.write_text(signer.allowed_signers_line(principals) + "\n")
    settings = replace(settings, allowed_signers=allowed, policy=replace(settings.policy, signatures_required=True))
    web = await build(settings, config, env.client)
    for name, password in (users or dict.fromkeys(("alice", "bob", "carol"), PASSWORD)).items():
        web.users.add(name, password)
    async with running_worker(env.client, settings), serving(web):
        yield WebStack(config.public_url, settings, web)


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no CSRF token"
    return found.group(1)


@asynccontextmanager
async def browser_session(url: str, user: str, password: str = PASSWORD) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client logged in as `user` through the login form."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        page = await http.get("/login")
        done = await http.post(
            "/login", data={"username": user, "password": password, "csrf": csrf_of(page.text), "next": "/"}
        )
        assert done.status_code == 303, done.text
        cookie = done.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        yield http


async def waiting_request(
    env: WorkflowEnvironment, stack: WebStack, request: str = "Configure hello", requester: str = "alice"
) -> WorkflowHandle[Any, Any]:
    """A change request started on the stack's worker and waiting for approval."""
    handle = await start_request(env, stack.settings, request, requester)
    await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
    return handle


def lint_findings(settings: Settings, workflow_id: str) -> list[Suggestion]:
    """Real ansible-lint findings stored for step 1 of `workflow_id`, as the failure analysis
    stores them, on tests/fixtures/lint/findings/site.yml."""
    shutil.copy(LINT_FIXTURE / "site.yml", settings.playbook_dir / "site.yml")
    engine = make_engine(settings.require_database_url())
    try:
        inp = AnalyzeFailureInput(workflow_id, 1, 1, f"{workflow_id}.1.1.1", "site.yml")
        ActivityEnvironment().run(LintActivities(engine, settings.playbook_dir).analyze_failure, inp)
        return list_suggestions(engine, workflow_id)
    finally:
        engine.dispose()
