"""Logging in to the web inbox with OpenID Connect, against a real provider served in the test
(tests/oidc_provider.py): the decision then records the OIDC subject. Every misbehaviour of the
provider, and a tampered state, is refused and logs nobody in."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import with_policy
from tests.helpers import db_rows, start_request, wait_for_phase
from tests.oidc_provider import oidc_provider
from tests.web_stack import csrf_of, web_stack
from workers.settings import Settings
from workflows.types import Phase


async def test_an_oidc_login_decides_as_the_providers_user(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, approvers=[])  # anyone but the requester
    with env.with_time_skipping_disabled():
        async with oidc_provider() as provider, web_stack(env, settings, oidc_issuer=provider.issuer) as stack:
            handle = await start_request(env, stack.settings, "Configure hello")
            await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
            async with httpx.AsyncClient(base_url=stack.url, follow_redirects=True) as http:
                login = await http.get("/login")
                assert "/login/oidc" in login.text
                assert 'name="password"' not in login.text, "no local passwords when OIDC is configured"
                page = await http.get(f"/login/oidc?next=/requests/{handle.id}")
                assert page.url.path == f"/requests/{handle.id}"
                assert '<span class="who">dana</span>' in page.text
                digest = re.search(r'name="plan_digest" value="([^"]+)"', page.text)
                assert digest
                done = await http.post(
                    f"/requests/{handle.id}/decision",
                    data={"verdict": "approve", "plan_digest": digest.group(1), "csrf": csrf_of(page.text)},
                )
                assert done.status_code == 200
                assert done.url.path == f"/requests/{handle.id}"
            await handle.result()
            [row] = db_rows(
                stack.settings.require_database_url(),
                "SELECT who, via, subject FROM decisions WHERE change_request_id = :id AND kind = 'decision'",
                id=handle.id,
            )
            assert row == {"who": "dana", "via": "web", "subject": f"oidc:{provider.issuer}#248289761001"}


@pytest.mark.parametrize("mode", ["wrong_aud", "wrong_iss", "bad_signature", "no_username", "discovery_issuer"])
async def test_a_misbehaving_provider_logs_nobody_in(env: WorkflowEnvironment, settings: Settings, mode: str) -> None:
    with env.with_time_skipping_disabled():
        async with oidc_provider() as provider, web_stack(env, settings, oidc_issuer=provider.issuer) as stack:
            provider.mode = mode
            async with httpx.AsyncClient(base_url=stack.url, follow_redirects=True) as http:
                refused = await http.get("/login/oidc?next=/")
                assert refused.status_code == 400
                assert refused.text.startswith("login refused"), refused.text
                inbox = await http.get("/")
                assert inbox.url.path == "/login"


async def test_a_tampered_state_and_a_foreign_next_are_refused(env: WorkflowEnvironment, settings: Settings) -> None:
    with env.with_time_skipping_disabled():
        async with oidc_provider() as provider, web_stack(env, settings, oidc_issuer=provider.issuer) as stack:
            async with httpx.AsyncClient(base_url=stack.url) as http:
                to_provider = await http.get("/login/oidc?next=//evil.example/x")
                back = await http.get(to_provider.headers["location"])
                callback = urlsplit(back.headers["location"])
                query = dict(parse_qsl(callback.query))
                tampered = await http.get(f"{callback.path}?{urlencode({**query, 'state': 'forged'})}")
                assert tampered.status_code == 400
                assert (await http.get("/")).headers["location"].startswith("/login")
            async with httpx.AsyncClient(base_url=stack.url, follow_redirects=True) as http:
                landed = await http.get("/login/oidc?next=//evil.example/x")
                assert landed.url.host == "127.0.0.1"
                assert landed.url.path == "/"
