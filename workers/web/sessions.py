"""Who is logged in, and the CSRF token of their session.

The session lives in a signed cookie (Starlette's SessionMiddleware: itsdangerous, HttpOnly,
SameSite=Lax, Secure under HTTPS). It holds the normalised user name, the authenticated subject
(`local:<name>` or `oidc:<issuer>#<sub>`), when it was last used, and a CSRF token. A session
unused for longer than the idle timeout is over.
"""

from __future__ import annotations

import hmac
import secrets
import time

from starlette.requests import Request

USER, SUBJECT, SEEN, CSRF = "user", "subject", "seen", "csrf"
CSRF_FIELD = "csrf"


def log_in(request: Request, user: str, subject: str) -> None:
    """Start a fresh session for `user` (a new CSRF token too: nothing carries over from before login)."""
    request.session.clear()
    request.session.update({USER: user, SUBJECT: subject, SEEN: time.time(), CSRF: secrets.token_urlsafe(32)})


def log_out(request: Request) -> None:
    request.session.clear()


def current_user(request: Request, idle_timeout: float) -> tuple[str, str] | None:
    """(user, subject) of a live session, refreshing its idle clock; None when there is none."""
    session = request.session
    user, subject, seen = session.get(USER), session.get(SUBJECT), session.get(SEEN)
    if not isinstance(user, str) or not isinstance(subject, str) or not isinstance(seen, (int, float)):
        return None
    now = time.time()
    if now - seen > idle_timeout:
        session.clear()
        return None
    if now - seen > 30:  # rewriting the cookie on every request would be wasted bytes
        session[SEEN] = now
    return user, subject


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF] = token
    return token


def csrf_ok(request: Request, sent: object) -> bool:
    token = request.session.get(CSRF)
    return isinstance(token, str) and isinstance(sent, str) and hmac.compare_digest(token, sent)


def safe_next(raw: object) -> str:
    """Where to go after login: a path on this site only (no `//host`, no scheme, no backslash)."""
    if (
        isinstance(raw, str)
        and raw.startswith("/")
        and not raw.startswith("//")
        and "\\" not in raw
        and not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw)  # browsers drop tabs: "/\t/x"
    ):
        return raw
    return "/"
