"""The pages of the web inbox, and the two forms that change something: a decision on a
request, and accepting an ansible-lint suggestion. Reads go through workers.web.data."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from itertools import groupby
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from activities.lint import SuggestionState, list_suggestions
from activities.lint_fix import SuggestionError
from activities.lint_fix import accept_suggestion as accept_fix
from workers import audit_queries, ops
from workers.signing import failed_run
from workers.web import data, sessions
from workers.web.context import Web, web_of
from workflows.types import ApproveInput, DecideInput, Phase, RejectInput

MAX_ID = 255
VERDICTS = ("approve", "reject", "retry", "skip", "abort")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
RUN = re.compile(r"[0-9]{1,6}\.[0-9]{1,6}")  # workflows.signatures.decision_run
DECIDE_TIMEOUT = 30.0  # seconds a decision waits for a worker to accept or refuse it
Handler = Callable[[Request, Web, str, str], Awaitable[Response]]


def authenticated(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The page for a logged-in user; without a session, the login page (then back here)."""

    @wraps(handler)
    async def page(request: Request) -> Response:
        web = web_of(request)
        found = sessions.current_user(request, web.config.idle_timeout)
        if found is None:
            if request.method != "GET" or request.url.path.endswith("/events"):
                return Response("not logged in", status_code=401, media_type="text/plain")
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        user, subject = found
        if len(str(request.path_params.get("id", ""))) > MAX_ID:  # no workflow has such an id
            return web.render(request, "error.html", 404, message="No such change request.")
        if subject.startswith("local:") and user not in web.users.names():  # removed since logging in
            sessions.log_out(request)
            return RedirectResponse("/login", status_code=303)
        return await handler(request, web, user, subject)

    return page


def _request_id(request: Request) -> str:
    return str(request.path_params["id"])


@authenticated
async def inbox_page(request: Request, web: Web, user: str, subject: str) -> Response:
    params = request.query_params
    try:
        filters = data.Filters.parse(params.get("phase"), params.get("requester"), params.get("service"))
        limit = min(max(int(params.get("limit") or 100), 1), 1000)
    except (ops.OperationError, ValueError) as err:
        return web.render(
            request, "inbox.html", 400, inbox=None, filters=data.Filters(), error=str(err), **_inbox_context(user)
        )
    found = await data.inbox(web.client, filters, limit)
    return web.render(request, "inbox.html", inbox=found, filters=filters, error=None, **_inbox_context(user))


def _inbox_context(user: str) -> dict[str, Any]:
    return {"me": user, "may_act": data.may_act, "phases": list(Phase)}


async def _request_page(request: Request, web: Web, user: str, message: str | None, status_code: int) -> Response:
    workflow_id = _request_id(request)
    try:
        view = await data.request_view(web.client, workflow_id)
    except data.NotFound as err:
        return web.render(request, "error.html", 404, message=str(err))
    except ops.OperationError as err:
        return web.render(request, "error.html", 503, message=str(err))
    status = view.status
    requester = status.request.requester if status.request else None
    return web.render(
        request,
        "request.html",
        status_code,
        view=view,
        s=status,
        wid=workflow_id,
        me=user,
        is_requester=requester == user,
        run=failed_run(status),  # what a retry, skip or abort from this page is signed for
        previews={p.step: p for p in status.plan.preview} if status.plan else {},
        message=message,
    )


@authenticated
async def request_page(request: Request, web: Web, user: str, subject: str) -> Response:
    return await _request_page(request, web, user, None, 200)


@authenticated
async def request_events(request: Request, web: Web, user: str, subject: str) -> Response:
    """Server-sent events: a `progress` event per change, then `end` when the request is over."""
    workflow_id = _request_id(request)

    async def stream() -> AsyncIterator[str]:
        try:
            async for snapshot in data.progress_events(web.client, workflow_id):
                kind = "end" if snapshot["end"] else "progress"
                yield f"event: {kind}\ndata: {json.dumps(snapshot)}\n\n"
        except (data.NotFound, ops.OperationError) as err:
            yield f"event: failure\ndata: {json.dumps({'error': str(err)})}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})


@authenticated
async def decide(request: Request, web: Web, user: str, subject: str) -> Response:
    """Approve, reject, retry, skip or abort as the logged-in user, signed over the digest shown."""
    workflow_id = _request_id(request)
    form = await request.form()
    if not sessions.csrf_ok(request, form.get(sessions.CSRF_FIELD)):
        return web.render(request, "error.html", 403, message="The form expired or did not come from this site.")
    verdict, digest = str(form.get("verdict") or ""), str(form.get("plan_digest") or "")
    comment = str(form.get("comment") or "").strip() or None
    if verdict not in VERDICTS or not DIGEST.fullmatch(digest):
        return web.render(request, "error.html", 400, message="Unknown decision, or no plan digest.")
    decision: ApproveInput | RejectInput | DecideInput
    if verdict == "approve":
        decision = ApproveInput(approver=user, comment=comment, plan_digest=digest, via="web", subject=subject)
    elif verdict == "reject":
        decision = RejectInput(approver=user, reason=comment, plan_digest=digest, via="web", subject=subject)
    else:
        decision = DecideInput(
            operator=user, action=verdict, comment=comment, plan_digest=digest, via="web", subject=subject
        )
    shown = str(form.get("run") or "")
    if shown and not RUN.fullmatch(shown):
        return web.render(request, "error.html", 400, message="Unknown step run.")
    try:
        run = None
        if isinstance(decision, DecideInput):  # signed for the failed run the page showed
            run = failed_run(await asyncio.wait_for(ops.status_of(web.client, workflow_id), DECIDE_TIMEOUT))
            if shown and run != shown:
                message = "The step ran again since this page was shown: look at its failure now and decide again."
                return await _request_page(request, web, user, f"Refused: {message}", 409)
        signature = await web.signer.sign(verdict, workflow_id, digest, user, run)
        signed = dataclasses.replace(decision, signature=signature)
        await asyncio.wait_for(ops.decide(web.client, workflow_id, signed), DECIDE_TIMEOUT)
    except ops.OperationError as err:
        return await _request_page(request, web, user, f"Refused: {err}", 409)
    except TimeoutError:
        message = (
            f"No worker answered within {DECIDE_TIMEOUT:.0f} s. The decision may still be applied or refused "
            "when a worker picks it up: reload this page to see which before you decide again."
        )
        return await _request_page(request, web, user, message, 504)
    return RedirectResponse(f"/requests/{quote(workflow_id, safe='')}", status_code=303)


@authenticated
async def audit_page(request: Request, web: Web, user: str, subject: str) -> Response:
    workflow_id = _request_id(request)
    try:
        found = await asyncio.to_thread(data.audit_view, workflow_id, web.database_url, web.settings.audit_repo)
    except data.NotFound as err:
        return web.render(request, "error.html", 404, message=str(err))
    except audit_queries.NotFound as err:  # no database configured
        return web.render(request, "error.html", 503, message=str(err))
    return web.render(request, "audit.html", wid=workflow_id, audit=found)


@authenticated
async def failures_page(request: Request, web: Web, user: str, subject: str) -> Response:
    return await _failures(request, web, user, None, 200)


async def _failures(request: Request, web: Web, user: str, message: str | None, status_code: int) -> Response:
    try:
        days = min(max(float(request.query_params.get("days") or 7), 0.01), 366)
    except ValueError:
        days = 7
    try:
        failures = await asyncio.to_thread(audit_queries.get_failures, days, web.database_url)
        suggestions = await asyncio.to_thread(list_suggestions, web.engine()) if web.database_url else []
    except audit_queries.NotFound as err:
        return web.render(request, "error.html", 503, message=str(err))
    by_step: dict[tuple[str, int], list[Any]] = {}
    for key, group in groupby(suggestions, key=lambda s: (s.change_request_id, s.step)):
        by_step.setdefault(key, []).extend(group)
    steps = [
        (key, list(rows), by_step.get(key, []))
        for key, rows in groupby(failures, key=lambda f: (f["change_request_id"], f["step"]))
    ]
    return web.render(
        request,
        "failures.html",
        status_code,
        steps=steps,
        days=days,
        message=message,
        may_accept=web.may_accept_suggestions(user),
        open_state=SuggestionState.OPEN,
    )


@authenticated
async def accept_suggestion(request: Request, web: Web, user: str, subject: str) -> Response:
    form = await request.form()
    if not sessions.csrf_ok(request, form.get(sessions.CSRF_FIELD)):
        return web.render(request, "error.html", 403, message="The form expired or did not come from this site.")
    if not web.may_accept_suggestions(user):
        return await _failures(request, web, user, f"Refused: {user} may not accept suggestions (approvers only).", 403)
    sid = str(request.path_params["sid"])[:64]
    try:
        result = await asyncio.to_thread(accept_fix, web.engine(), web.settings.playbook_dir, sid, user)
    except SuggestionError as err:
        return await _failures(request, web, user, f"Refused: {err}", 409)
    done = f"{result.state} {result.suggestion_id}: {result.message}"
    if result.branch:
        done += f" (review it: git log -p -1 {result.branch})"
    return await _failures(request, web, user, done, 200 if result.state != SuggestionState.OPEN else 409)
