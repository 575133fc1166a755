"""Logging in to the real web inbox with OpenID Connect, against a real provider served in the
test (tests/oidc_provider.py), then deciding: the decision records the OIDC subject. The
provider's misbehaviours and forged states are refused in test_web_auth.py."""

from __future__ import annotations

import re

import httpx
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
