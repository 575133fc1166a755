"""Logging in with OpenID Connect (authlib's Starlette client), when SIGNOFF_OIDC_ISSUER is set.

The authorization code flow with PKCE (S256), state and nonce kept in the session. authlib
checks the ID token's signature against the provider's published keys, its expiry and nonce;
it checks `iss` only when the discovery document names one and `aud` not at all (an `azp`
naming us was enough), so the claims an ID token for us must carry are spelled out here:
`iss` the configured issuer (which the discovery document must name exactly), `aud` our
client id, a `sub`. The user's name is one claim of it (`preferred_username` unless
configured), normalised as every name is; the subject recorded with decisions is
`oidc:<issuer>#<sub>`.

Every failure is a 400 with a one-line reason of our own words in plain text; what the
provider or the browser sent is logged (repr), never shown.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from typing import Any

import httpx

# authlib warns at import that its httpx integration will move to httpx2; it is what its
# Starlette client uses today, and the warning would only confuse whoever reads the log.
from authlib.deprecate import AuthlibDeprecationWarning  # installs its own "always" filter first

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.common.errors import AuthlibBaseError
    from authlib.integrations.base_client import MismatchingStateError, OAuthError
    from authlib.integrations.starlette_client import OAuth
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from workers.web.config import CALLBACK_PATH, OidcConfig
from workers.web.sessions import safe_next
from workflows.identity import IdentityRefused, identify

__all__ = ["CALLBACK_PATH", "LOGIN_PATH", "OidcConfig", "oidc_routes"]

LOGIN_PATH = "/login/oidc"
_NEXT = "oidc_next"
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # RFC 6749 error codes; anything else is not shown
log = logging.getLogger(__name__)


class LoginRefused(Exception):
    """The provider answered, but not with someone who may log in; the message says why."""


# What a provider, the network or a browser can make the flow raise. A provider's JSON that is
# not what authlib expects surfaces as KeyError or TypeError from inside it.
_FAILURES = (
    LoginRefused,
    AuthlibBaseError,
    JoseError,
    httpx.HTTPError,
    ValueError,
    KeyError,
    TypeError,
    RuntimeError,
)


def oidc_routes(config: OidcConfig, log_in: Callable[[Request, str, str], None]) -> list[Route]:
    """`GET /login/oidc?next=<path>` and its callback. `log_in(request, name, subject)` starts
    the session; the app must have Starlette's SessionMiddleware (authlib keeps state there)."""
    oauth = OAuth()
    client: Any = oauth.register(
        "signoff",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=config.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": config.scope, "code_challenge_method": "S256"},
    )

    async def login(request: Request) -> Response:
        next_page = safe_next(request.query_params.get("next"))
        try:
            await _check_issuer(client, config)
            response: Response = await client.authorize_redirect(request, config.redirect_uri)
        except _FAILURES as err:
            return _refused(err)
        request.session[_NEXT] = next_page
        return response

    async def callback(request: Request) -> Response:
        error = request.query_params.get("error")
        if error is not None:
            log.warning("OIDC login refused by the provider: %r", dict(request.query_params))
            code = error if _ERROR_CODE.fullmatch(error) else "an error"
            return _refused(LoginRefused(f"the provider answered {code}"), logged=True)
        try:
            await _check_issuer(client, config)
            token = await client.authorize_access_token(request, claims_options=_claims_options(config))
            name, sub = _person(token, config.username_claim)
        except _FAILURES as err:
            return _refused(err)
        next_page = safe_next(request.session.pop(_NEXT, None))
        log_in(request, name, f"oidc:{config.issuer}#{sub}")
        return RedirectResponse(next_page, status_code=303)

    return [Route(LOGIN_PATH, login, methods=["GET"]), Route(CALLBACK_PATH, callback, methods=["GET"])]


def _claims_options(config: OidcConfig) -> dict[str, dict[str, Any]]:
    # A fresh dict per call: authlib pops entries out of the options it is given.
    return {
        "iss": {"essential": True, "value": config.issuer},
        "aud": {"essential": True, "value": config.client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }


async def _check_issuer(client: Any, config: OidcConfig) -> None:
    metadata = await client.load_server_metadata()  # fetched once, then cached by authlib
    if metadata.get("issuer") != config.issuer:
        raise LoginRefused(
            f"the provider's discovery document names issuer {metadata.get('issuer')!r}, not {config.issuer!r}"
        )


def _person(token: dict[str, Any], username_claim: str) -> tuple[str, str]:
    """(normalised name, sub) from the ID token authlib validated."""
    claims = token.get("userinfo")  # only set when there was an ID token and it passed
    if not claims:
        raise LoginRefused("the provider sent no ID token")
    raw, sub = claims.get(username_claim), claims.get("sub")
    if not isinstance(raw, str) or not raw:
        raise LoginRefused(f"the ID token has no {username_claim!r} claim")
    if not isinstance(sub, str) or not sub:
        raise LoginRefused("the ID token has no 'sub' claim")
    try:
        return identify(raw).name, sub
    except IdentityRefused as err:
        raise LoginRefused(f"the ID token's {username_claim!r} is not a user name signoff accepts: {err}") from None


def _refused(err: Exception, *, logged: bool = False) -> Response:
    reason = _reason(err)
    if not logged:
        expected = isinstance(err, (LoginRefused, AuthlibBaseError, JoseError, httpx.HTTPError))
        log.warning("OIDC login refused: %s (%r)", reason, err, exc_info=not expected)
    return PlainTextResponse(f"login refused: {reason}", status_code=400)


def _reason(err: Exception) -> str:
    """One line in our words: what the provider or the browser sent is not repeated to the browser."""
    if isinstance(err, LoginRefused):
        return str(err).splitlines()[0][:300]
    if isinstance(err, MismatchingStateError):
        return "this login was not started in this browser, or was already used (state mismatch)"
    if isinstance(err, OAuthError):  # the token endpoint's answer
        error = str(err.error or "")
        return f"the provider's token endpoint answered {error if _ERROR_CODE.fullmatch(error) else 'an error'}"
    if isinstance(err, JoseError):  # joserfc's description names the claim or the check, not its value
        return f"the ID token is not valid: {err.description or err.error}".splitlines()[0][:300]
    if isinstance(err, httpx.HTTPStatusError):
        return f"the provider answered HTTP {err.response.status_code}"
    if isinstance(err, httpx.HTTPError):
        return "the provider could not be reached"
    return "the provider's answer could not be used"
