"""The web inbox in a real browser: Playwright driving Debian's Chromium against a real
`signoff web` app, worker, Temporal dev server, PostgreSQL, ansible-runner and git.

Each page is kept as a screenshot under test-artifacts/web/ (SIGNOFF_TEST_ARTIFACTS). Without a
Chromium (`apt-get install chromium`, or SIGNOFF_TEST_CHROMIUM=/path) these tests are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.web_stack import PASSWORD, lint_findings, waiting_request, web_stack
from workers.settings import Settings
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import Phase

CHROMIUM = os.environ.get("SIGNOFF_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("SIGNOFF_TEST_ARTIFACTS") or Path(__file__).parent.parent / "test-artifacts") / "web"
DEBUG_ONLY = "Configure hello"
LINT_FIXTURE = Path(__file__).parent / "fixtures" / "lint" / "findings"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="browser tests skipped: no Chromium (apt-get install chromium, or SIGNOFF_TEST_CHROMIUM)"
)

if CHROMIUM is not None:
    from playwright.async_api import Browser, Page, async_playwright, expect


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses its sandbox as root
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield launched
        await launched.close()


async def _page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(base_url=url)
    page = await context.new_page()
    page.set_default_timeout(30_000)
    return page


async def _log_in(page: Page, user: str) -> None:
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login"))
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


async def test_log_in_approve_watch_it_succeed_and_open_its_audit(
    env: WorkflowEnvironment, settings: Settings, browser: Browser
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY)
            page = await _page(browser, stack.url)
            await page.goto("/")
            await _shot(page, "login")
            await _log_in(page, "bob")
            await expect(page.locator("h1")).to_have_text("Waiting for a decision")
            row = page.locator("tr", has=page.get_by_role("link", name=handle.id))
            await expect(row).to_contain_text("(you)")
            await _shot(page, "inbox")
            await page.get_by_role("link", name=handle.id).click()
            await expect(page.locator("#phase")).to_have_text("awaiting_approval")
            status = await handle.query(ChangeRequestWorkflow.status)
            assert status.plan is not None
            await expect(page.locator("#plan-digest")).to_have_text(status.plan.plan_digest)
            await _shot(page, "request")
            await page.fill("input[name=comment]", "looks right")
            await page.click("#approve")
            # The page follows the run over server-sent events, then reloads on its end.
            await expect(page.locator("#phase")).to_have_text("succeeded", timeout=60_000)
            await expect(page.locator("#audit-commit")).to_be_visible()
            await expect(page.locator("#decisions")).to_contain_text("approved by bob")
            await _shot(page, "request-succeeded")
            await page.get_by_role("link", name="audit record").click()
            await expect(page.locator("#verify")).to_contain_text("audit verify: intact")
            final = await handle.query(ChangeRequestWorkflow.status)
            assert final.audit_commit is not None
            await expect(page.locator("#commit")).to_have_text(final.audit_commit)
            await _shot(page, "audit")


async def test_refusals_escaping_and_login_redirect_in_the_browser(
    env: WorkflowEnvironment, settings: Settings, browser: Browser
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY + " <script>alert('pwned')</script>", "bob")
            page = await _page(browser, stack.url)
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))

            # No session: the request's page sends you to log in, then back to it.
            await page.goto(f"/requests/{handle.id}")
            await expect(page).to_have_url(re.compile(r"/login\?next="))
            await page.fill("input[name=username]", "bob")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await expect(page.locator("#phase")).to_have_text("awaiting_approval")

            # The request's text is shown as text, and no script of it ran.
            await expect(page.locator("#request-text")).to_contain_text("<script>alert('pwned')</script>")
            assert dialogs == []

            # The requester's own approval is refused, in words.
            await page.click("#approve")
            await expect(page.locator("#message")).to_contain_text("four eyes")
            await _shot(page, "refused-own-approval")

            # A POST without the CSRF token is refused, whatever the session.
            answer = await page.request.post(
                f"/requests/{handle.id}/decision", form={"verdict": "reject", "plan_digest": "x"}
            )
            assert answer.status == 403
            status = await handle.query(ChangeRequestWorkflow.status)
            assert status.approvals == []
            assert status.rejection is None
            await handle.cancel()


async def test_a_stale_page_is_refused(env: WorkflowEnvironment, settings: Settings, browser: Browser) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, DEBUG_ONLY)
            page = await _page(browser, stack.url)
            await _log_in(page, "carol")
            await page.goto(f"/requests/{handle.id}")
            # The page was loaded for another plan than the one waiting now.
            stale = "sha256:" + "0" * 64
            await page.locator("input[name=plan_digest]").first.evaluate("(el, v) => el.value = v", stale)
            await page.click("#approve")
            await expect(page.locator("#message")).to_contain_text("plan")
            await _shot(page, "refused-stale-page")
            status = await handle.query(ChangeRequestWorkflow.status)
            assert status.approvals == []
            await handle.cancel()


async def test_a_failed_step_is_decided_and_its_suggestion_acknowledged_in_the_browser(
    env: WorkflowEnvironment, settings: Settings, browser: Browser
) -> None:
    with env.with_time_skipping_disabled():
        async with web_stack(env, settings) as stack:
            handle = await waiting_request(env, stack, "Deploy doomed")
            page = await _page(browser, stack.url)
            await _log_in(page, "carol")
            await page.goto(f"/requests/{handle.id}")
            await page.click("#approve")
            await expect(page.locator("#phase")).to_have_text("awaiting_decision", timeout=60_000)
            await page.reload()
            await expect(page.locator("section.decide")).to_contain_text("task_failed")
            await _shot(page, "request-awaiting-decision")
            lint_findings(stack.settings, handle.id)  # as the failure analysis stores them
            await page.get_by_role("link", name="Failures").click()
            finding = page.locator("li", has_text="no-changed-when")
            await expect(finding).to_contain_text("open")
            await _shot(page, "failures")
            await finding.get_by_role("button", name="Acknowledge").click()
            await expect(page.locator("#message")).to_contain_text("acknowledged")
            await page.goto(f"/requests/{handle.id}")
            await page.click("#abort")
            await expect(page.locator("#phase")).to_have_text("failed", timeout=60_000)
            assert (await handle.result()).outcome == Phase.FAILED
