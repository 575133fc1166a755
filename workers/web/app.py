"""The web approval inbox (`signoff web`): a Starlette app rendered on the server.

Everything that changes state is a POST carrying the session's CSRF token; nothing changes on a
GET. The identity in a decision is the session's user, never a form field, and the server signs
the decision with its own key (workers.web.signer) over the plan digest the page showed.
Templates autoescape everything; the Content-Security-Policy allows scripts from this origin only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.web import pages, sessions
from workers.web.context import Web, web_of
from workers.web.sessions import safe_next
from workflows.identity import IdentityRefused, identify

HERE = Path(__file__).parent
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(web: Web) -> Starlette:
    routes: list[Route | Mount] = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", pages.inbox_page, methods=["GET"]),
        Route("/requests/{id}", pages.request_page, methods=["GET"]),
        Route("/requests/{id}/events", pages.request_events, methods=["GET"]),
        Route("/requests/{id}/decision", pages.decide, methods=["POST"]),
        Route("/requests/{id}/audit", pages.audit_page, methods=["GET"]),
        Route("/failures", pages.failures_page, methods=["GET"]),
        Route("/suggestions/{sid}/accept", pages.accept_suggestion, methods=["POST"]),
        Route("/healthz", lambda _: PlainTextResponse("ok"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    if web.config.oidc is not None:
        from workers.web.oidc import oidc_routes  # authlib only where OIDC is configured

        routes += oidc_routes(web.config.oidc, sessions.log_in)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=web.config.session_key,
                session_cookie="signoff_session",
                max_age=int(web.config.idle_timeout),
                same_site="lax",
                https_only=web.config.secure,
            ),
        ],
    )
    app.state.web = web
    return app


async def login_page(request: Request) -> Response:
    web = web_of(request)
    return web.render(request, "login.html", next=safe_next(request.query_params.get("next")), error=None)


async def login(request: Request) -> Response:
    web = web_of(request)
    form = await request.form()
    target = safe_next(form.get("next"))
    if web.config.oidc is not None:
        return RedirectResponse(f"/login/oidc?next={quote(target)}", status_code=303)
    if not sessions.csrf_ok(request, form.get(sessions.CSRF_FIELD)):
        return web.render(request, "login.html", 403, next=target, error="The form expired; please try again.")
    name, password = str(form.get("username") or ""), str(form.get("password") or "")
    keys = [f"ip:{request.client.host if request.client else '?'}", f"user:{_login_key(name)}"]
    wait = web.limiter.retry_after(*keys)
    if wait > 0:
        error = f"Too many failed logins. Try again in {int(wait) + 1} seconds."
        response = web.render(request, "login.html", 429, next=target, error=error)
        response.headers["retry-after"] = str(int(wait) + 1)
        return response
    user = web.users.authenticate(name, password)
    if user is None:
        web.limiter.failure(*keys)
        return web.render(request, "login.html", 401, next=target, error="Wrong name or password.")
    web.limiter.success(keys[1])  # not the address: logging in as yourself must not reset guesses at others
    sessions.log_in(request, user, f"local:{user}")
    return RedirectResponse(target, status_code=303)


def _login_key(name: str) -> str:
    try:
        return identify(name).name
    except IdentityRefused:
        return name.strip().lower()[:64]


async def logout(request: Request) -> Response:
    form = await request.form()
    if sessions.csrf_ok(request, form.get(sessions.CSRF_FIELD)):
        sessions.log_out(request)
    return RedirectResponse("/login", status_code=303)
