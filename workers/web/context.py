"""What the web handlers share: the server's parts and how a page is rendered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse
from temporalio.client import Client

from activities.db import make_engine
from workers import audit_queries
from workers.settings import Settings
from workers.web import sessions
from workers.web.config import WebConfig
from workers.web.limiter import LoginLimiter
from workers.web.signer import WebSigner
from workers.web.users import UserFile
from workflows.identity import identify

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Web:
    """What the handlers share, at `request.app.state.web`."""

    config: WebConfig
    settings: Settings
    client: Client
    signer: WebSigner
    users: UserFile
    limiter: LoginLimiter
    templates: jinja2.Environment
    database_url: str | None  # the audit database, when there is one
    _engine: Engine | None = None

    def engine(self) -> Engine:
        if self.database_url is None:
            raise audit_queries.NotFound("no audit database: set SIGNOFF_DATABASE_URL, or start `signoff dev`")
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        user = sessions.current_user(request, self.config.idle_timeout)
        page = self.templates.get_template(template).render(
            user=user[0] if user else None,
            csrf=sessions.csrf_token(request),
            oidc=self.config.oidc is not None,
            **context,
        )
        return HTMLResponse(page, status_code=status_code)

    def may_accept_suggestions(self, user: str) -> bool:
        """Accepting an ansible-lint fix changes the playbook repo: approvers only, where there is
        an allowlist; otherwise anyone logged in."""
        allowed = self.settings.policy.approvers
        if not allowed:
            return True
        me = identify(user)
        return any(me.same_person(identify(name)) for name in allowed)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name: request text and task output are user input
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web
