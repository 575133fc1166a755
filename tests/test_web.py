"""The web inbox over HTTP: login, inbox, a request's page, decisions signed by the server's
key and verified by a real worker, live progress, audit, and the refusals. Real Temporal,
PostgreSQL, ansible-runner, git and uvicorn; the browser-driven scenarios are in test_web_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import with_policy
from tests.helpers import assert_eventually, db_rows, wait_for_phase
from tests.web_stack import PASSWORD, browser_session, csrf_of, lint_findings, waiting_request, web_stack
from workers.settings import Settings
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import Phase

DEBUG_ONLY = "Configure hello"
LINT_FIXTURE = (
    Path(__file__).parent / "fixtures" / "lint" / "findings"
)  # plans hello-configure.yml alone: a debug task, quick to run


def _digest(page: str) -> str:
    found = re.search(r'name="plan_digest" value="([^"]+)"', page)
    assert found, "the page offers no decision"
    return found.group(1)


async def test_approve_from_the_web_is_signed_verified_run_and_audited(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY)
            async with browser_session(stack.url, "bob") as bob:
                assert (await bob.get(f"/requests/{handle.id}/decision")).status_code == 405, "no decision by GET"
                inbox = await bob.get("/")
                assert inbox.status_code == 200
                assert handle.id in inbox.text
                assert "(you)" in inbox.text
                page = await bob.get(f"/requests/{handle.id}")
                digest = _digest(page.text)
                assert digest == (await handle.query(ChangeRequestWorkflow.status)).plan.plan_digest  # type: ignore[union-attr]
                assert "hello-configure.yml" in page.text
                done = await bob.post(
                    f"/requests/{handle.id}/decision",
                    data={"verdict": "approve", "plan_digest": digest, "comment": "ok", "csrf": csrf_of(page.text)},
                )
                assert done.status_code == 303, done.text
                assert (await handle.result()).outcome == Phase.SUCCEEDED
                final = await handle.query(ChangeRequestWorkflow.status)
                [approval] = final.approvals
                assert (approval.who, approval.via, approval.subject) == ("bob", "web", "local:bob")
                assert approval.key_fingerprint
                assert approval.key_fingerprint.startswith("SHA256:")
                [row] = db_rows(
                    stack.settings.require_database_url(),
                    "SELECT who, via, subject, key_fingerprint FROM decisions "
                    "WHERE change_request_id = :id AND kind = 'decision'",
                    id=handle.id,
                )
                assert row == {
                    "who": "bob",
                    "via": "web",
                    "subject": "local:bob",
                    "key_fingerprint": approval.key_fingerprint,
                }
                audit = await bob.get(f"/requests/{handle.id}/audit")
                assert audit.status_code == 200
                assert "audit verify: intact" in audit.text
                assert final.audit_commit
                assert final.audit_commit in audit.text
                assert approval.key_fingerprint in audit.text


async def test_two_people_approve_from_the_web_under_one_key(env: WorkflowEnvironment, settings: Settings) -> None:
    """The server's key signs for both, over messages naming each: two approvals, not one
    signature sent twice (a quorum of 2 could not be met from the web otherwise)."""
    with env.with_time_skipping_disabled():
        async with web_stack(env, with_policy(settings, required_approvals=2)) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY)
            for approver in ("bob", "carol"):
                async with browser_session(stack.url, approver) as http:
                    page = await http.get(f"/requests/{handle.id}")
                    done = await http.post(
                        f"/requests/{handle.id}/decision",
                        data={"verdict": "approve", "plan_digest": _digest(page.text), "csrf": csrf_of(page.text)},
                    )
                    assert done.status_code == 303, done.text
            assert (await handle.result()).outcome == Phase.SUCCEEDED
            final = await handle.query(ChangeRequestWorkflow.status)

    assert final.refused == []
    assert [(a.who, a.via) for a in final.approvals] == [("bob", "web"), ("carol", "web")]
    assert len({a.key_fingerprint for a in final.approvals}) == 1
    assert len({a.signature_sha256 for a in final.approvals}) == 2


async def test_one_person_retries_each_failed_run_from_the_web_and_a_stale_page_is_refused(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    """The decide form carries the failed run the page showed, and the web signs for it: bob can
    retry a step that failed again (the same signed text would be refused as already used), and a
    page from before the step ran again is refused in words, reaching no worker."""
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, "Deploy doomed")

            async def failed(runs: int) -> None:
                status = await handle.query(ChangeRequestWorkflow.status)
                assert (status.phase, status.steps[0].runs) == (Phase.AWAITING_DECISION, runs)

            async with browser_session(stack.url, "bob") as bob:

                async def decide(verdict: str, page: str, run: str | None = None) -> httpx.Response:
                    data = {"verdict": verdict, "plan_digest": _digest(page), "csrf": csrf_of(page)}
                    if run is not None:
                        data["run"] = run
                    return await bob.post(f"/requests/{handle.id}/decision", data=data)

                page = await bob.get(f"/requests/{handle.id}")
                assert (await decide("approve", page.text)).status_code == 303
                await assert_eventually(lambda: failed(1))
                stale = (await bob.get(f"/requests/{handle.id}")).text
                for runs in (1, 2):
                    page = await bob.get(f"/requests/{handle.id}")
                    assert f'name="run" value="1.{runs}"' in page.text
                    done = await decide("retry", page.text, f"1.{runs}")
                    assert done.status_code == 303, done.text
                    await assert_eventually(lambda n=runs + 1: failed(n))
                refused = await decide("abort", stale, "1.1")
                assert refused.status_code == 409
                assert "The step ran again since this page was shown" in refused.text
                assert (await decide("abort", stale, "1.x")).status_code == 400
                assert (await decide("abort", (await bob.get(f"/requests/{handle.id}")).text, "1.3")).status_code == 303
            result = await handle.result()
            final = await handle.query(ChangeRequestWorkflow.status)

    assert result.outcome == Phase.FAILED
    assert [(d.who, d.verdict, d.via) for d in final.decisions] == [
        ("bob", "retry", "web"),
        ("bob", "retry", "web"),
        ("bob", "abort", "web"),
    ]
    assert len({d.signature_sha256 for d in final.decisions}) == 3
    assert final.refused == []


async def test_refusals_are_shown_in_words_and_change_nothing(env: WorkflowEnvironment, settings: Settings) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY, requester="bob")
            async with browser_session(stack.url, "bob") as bob:
                page = await bob.get(f"/requests/{handle.id}")
                form = {"verdict": "approve", "plan_digest": _digest(page.text), "csrf": csrf_of(page.text)}
                own = await bob.post(f"/requests/{handle.id}/decision", data=form)
                assert own.status_code == 409
                assert "four eyes" in own.text
                stale = await bob.post(
                    f"/requests/{handle.id}/decision", data={**form, "plan_digest": "sha256:" + "0" * 64}
                )
                assert stale.status_code == 409
                assert "plan" in stale.text
                forged = await bob.post(f"/requests/{handle.id}/decision", data={**form, "csrf": "x"})
                assert forged.status_code == 403
                no_csrf = await bob.post(f"/requests/{handle.id}/decision", data={"verdict": "approve"})
                assert no_csrf.status_code == 403
            status = await handle.query(ChangeRequestWorkflow.status)
            assert status.phase == Phase.AWAITING_APPROVAL
            assert status.approvals == []
            await handle.cancel()


async def test_no_session_redirects_to_login_and_login_is_rate_limited(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack, httpx.AsyncClient(base_url=stack.url) as anonymous:
            found = await anonymous.get("/requests/cr-x?tab=1")
            assert found.status_code == 303
            assert found.headers["location"] == "/login?next=/requests/cr-x%3Ftab%3D1"
            assert (await anonymous.post("/requests/cr-x/decision", data={})).status_code == 401
            csp = (await anonymous.get("/login")).headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            for _ in range(5):
                page = await anonymous.get("/login")
                wrong = await anonymous.post(
                    "/login", data={"username": "carol", "password": "nope", "csrf": csrf_of(page.text)}
                )
                assert wrong.status_code == 401
            page = await anonymous.get("/login")
            limited = await anonymous.post(
                "/login", data={"username": "carol", "password": PASSWORD, "csrf": csrf_of(page.text)}
            )
            assert limited.status_code == 429
            assert "Too many failed logins" in limited.text
            assert "signoff_session" not in limited.cookies or "user" not in limited.text


async def test_request_text_is_escaped_and_a_removed_user_is_logged_out(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY + " <script>alert('x')</script>")
            async with browser_session(stack.url, "carol") as carol:
                page = await carol.get(f"/requests/{handle.id}")
                assert "&lt;script&gt;alert(" in page.text
                assert "<script>alert" not in page.text
                stack.web.users.remove("carol")
                gone = await carol.get("/")
                assert gone.status_code == 303
                assert gone.headers["location"] == "/login"
            await handle.cancel()


async def test_live_progress_arrives_over_server_sent_events_and_ends_with_the_request(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY)
            async with browser_session(stack.url, "bob") as bob:
                page = await bob.get(f"/requests/{handle.id}")
                events: list[tuple[str, dict[str, object]]] = []
                async with bob.stream("GET", f"/requests/{handle.id}/events") as stream:
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    approve = {"verdict": "approve", "plan_digest": _digest(page.text), "csrf": csrf_of(page.text)}
                    assert (await bob.post(f"/requests/{handle.id}/decision", data=approve)).status_code == 303
                    kind = ""
                    async for line in stream.aiter_lines():
                        if line.startswith("event: "):
                            kind = line.removeprefix("event: ")
                        elif line.startswith("data: "):
                            events.append((kind, json.loads(line.removeprefix("data: "))))
                phases = [data["phase"] for _, data in events]
                assert phases[0] == "awaiting_approval"
                assert phases[-1] == "succeeded"
                assert events[-1][0] == "end"
                assert all(kind == "progress" for kind, _ in events[:-1])
                assert any(data["phase"] == "executing" for _, data in events)


def test_templates_escape_everything() -> None:
    templates = Path(__file__).parent.parent / "workers" / "web" / "templates"
    for template in templates.glob("*.html"):
        assert "|safe" not in template.read_text().replace(" ", ""), f"{template.name} marks output safe"
        assert "autoescape false" not in template.read_text(), template.name


@pytest.mark.slow
async def test_failures_page_shows_the_class_and_lets_an_approver_accept_a_suggestion(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, "Deploy doomed")
            async with browser_session(stack.url, "bob") as bob:
                page = await bob.get(f"/requests/{handle.id}")
                approve = {"verdict": "approve", "plan_digest": _digest(page.text), "csrf": csrf_of(page.text)}
                assert (await bob.post(f"/requests/{handle.id}/decision", data=approve)).status_code == 303
                await wait_for_phase(handle, Phase.AWAITING_DECISION)
                page = await bob.get(f"/requests/{handle.id}")
                assert "A step failed: decide" in page.text
                assert "task_failed" in page.text
                [finding] = [s for s in lint_findings(stack.settings, handle.id) if s.rule == "no-changed-when"]
                failures = await bob.get("/failures")
                assert handle.id in failures.text
                assert "task_failed" in failures.text
                assert f"/suggestions/{finding.id}/accept" in failures.text
                accepted = await bob.post(f"/suggestions/{finding.id}/accept", data={"csrf": csrf_of(failures.text)})
                assert accepted.status_code == 200
                assert f"acknowledged {finding.id}" in accepted.text
                abort = {"verdict": "abort", "plan_digest": approve["plan_digest"], "csrf": csrf_of(page.text)}
                assert (await bob.post(f"/requests/{handle.id}/decision", data=abort)).status_code == 303
            async with browser_session(stack.url, "alice") as alice:  # not an approver
                failures = await alice.get("/failures")
                assert "/accept" not in failures.text
                refused = await alice.post(f"/suggestions/{finding.id}/accept", data={"csrf": csrf_of(failures.text)})
                assert refused.status_code == 403
                assert "approvers only" in refused.text
            assert (await handle.result()).outcome == Phase.FAILED
            [row] = db_rows(
                stack.settings.require_database_url(),
                "SELECT state, decided_by FROM lint_suggestions WHERE id = :id",
                id=finding.id,
            )
            assert row == {"state": "acknowledged", "decided_by": "bob"}
