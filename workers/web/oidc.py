"""Logging in with OpenID Connect (authlib's Starlette client), when SIGNOFF_OIDC_ISSUER is set.

The authorization code flow with state and nonce kept in the session. The ID token is checked
by authlib against the provider's published keys: signature, `iss` (the discovery document's,
which must be the configured issuer exactly), `aud` (our client id), expiry and nonce. The
user's name is one claim of it (`preferred_username` unless configured), normalised as every
name is; the subject recorded with decisions is `oidc:<issuer>#<sub>`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

# authlib warns at import that its httpx integration will move to httpx2; it is what its
# Starlette client uses today, and the warning would only confuse whoever reads the log.
from authlib.deprecate import AuthlibDeprecationWarning  # installs its own "always" filter first

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.starlette_client import OAuth
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from workers.web.config import CALLBACK_PATH, OidcConfig
from workers.web.sessions import safe_next
from workflows.identity import IdentityRefused, identify

LOGIN_PATH = "/login/oidc"
_NEXT = "oidc_next"


def oidc_routes(config: OidcConfig, log_in: Callable[[Request, str, str], None]) -> list[Route]:
    oauth = OAuth()
    client: Any = oauth.register(
        "signoff",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=config.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": config.scope},
    )

    async def login(request: Request) -> Response:
        next_page = safe_next(request.query_params.get("next"))
        try:
            await _check_issuer(client, config)
            response: Response = await client.authorize_redirect(request, config.redirect_uri)
        except (OAuthError, OSError, ValueError) as err:
            return _refused(err)
        request.session[_NEXT] = next_page
        return response

    async def callback(request: Request) -> Response:
        try:
            await _check_issuer(client, config)
            token = await client.authorize_access_token(request)
        except (OAuthError, OSError, ValueError) as err:
            return _refused(err)
        except Exception as err:  # joserfc's and httpx's errors: a bad token or an unreachable provider
            return _refused(err)
        claims = token.get("userinfo")
        if not claims:
            return _refused("the provider sent no ID token")
        raw, sub = claims.get(config.username_claim), claims.get("sub")
        if not isinstance(raw, str) or not isinstance(sub, str):
            return _refused(f"the ID token has no {config.username_claim!r} or no 'sub' claim")
        try:
            name = identify(raw).name
        except IdentityRefused as err:
            return _refused(err)
        next_page = safe_next(request.session.get(_NEXT))
        log_in(request, name, f"oidc:{config.issuer}#{sub}")
        return RedirectResponse(next_page, status_code=303)

    return [Route(LOGIN_PATH, login, methods=["GET"]), Route(CALLBACK_PATH, callback, methods=["GET"])]


async def _check_issuer(client: Any, config: OidcConfig) -> None:
    metadata = await client.load_server_metadata()
    if metadata.get("issuer") != config.issuer:
        raise ValueError(
            f"the provider's discovery document names issuer {metadata.get('issuer')!r}, not {config.issuer!r}"
        )


def _refused(err: object) -> Response:
    reason = getattr(err, "description", None) or str(err) or type(err).__name__
    return PlainTextResponse(f"login refused: {reason}".splitlines()[0][:300], status_code=400)
