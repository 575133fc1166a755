"""A small but real OpenID provider for tests: discovery, an authorization endpoint that
consents at once as its configured user, a token endpoint issuing RS256 ID tokens, and its
JWKS. Served by uvicorn on a port of its own. `mode` makes it misbehave the ways a login must
refuse. `serve` serves any ASGI app the same way, for the app under test."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

CLIENT_ID = "signoff-web"
CLIENT_SECRET = "provider-test-secret"
# Each misbehaviour a login must refuse:
MODES = (
    "wrong_aud",  # aud is another client
    "foreign_aud",  # aud is another client, azp names ours: only an aud check catches it
    "wrong_iss",  # the ID token's iss is not the issuer
    "discovery_issuer",  # the discovery document names another issuer than the one configured
    "bad_signature",  # signed by a key that is not in the JWKS (same kid)
    "no_username",  # no username claim
    "expired",  # exp long past
    "deny",  # /authorize answers with an error, and a description with markup in it
)


@dataclass
class Provider:
    issuer: str
    username: str = "dana"
    sub: str = "248289761001"
    mode: str = "ok"  # "ok" or one of MODES
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    other_key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)  # what clients sent to /authorize

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        issuer = self.issuer + "/other" if self.mode == "discovery_issuer" else self.issuer
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        if params.get("client_id") != CLIENT_ID or params.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        back = params["redirect_uri"]
        state = params.get("state") or ""
        if self.mode == "deny":
            query = {"error": "access_denied", "error_description": "<b>denied</b> by policy", "state": state}
            return RedirectResponse(f"{back}?{urlencode(query)}", status_code=302)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "nonce": params.get("nonce") or "",
            "redirect_uri": back,
            "code_challenge": params.get("code_challenge") or "",
        }
        return RedirectResponse(f"{back}?{urlencode({'code': code, 'state': state})}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(str(form.get("code")), None)
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if grant["code_challenge"] and grant["code_challenge"] != _s256(str(form.get("code_verifier") or "")):
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verifier"}, status_code=400)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer + "/evil" if self.mode == "wrong_iss" else self.issuer,
            "aud": "someone-else" if self.mode in ("wrong_aud", "foreign_aud") else CLIENT_ID,
            "sub": self.sub,
            "iat": now - 3600 if self.mode == "expired" else now,
            "exp": now - 3000 if self.mode == "expired" else now + 300,
            "nonce": grant["nonce"],
        }
        if self.mode == "foreign_aud":
            claims["azp"] = CLIENT_ID
        if self.mode != "no_username":
            claims["preferred_username"] = self.username
        key = self.other_key if self.mode == "bad_signature" else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        return JSONResponse(
            {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False) | {"use": "sig", "alg": "RS256"}]})


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def listening_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1, held until served: no other process can take
    the port between choosing it and serving on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, with an event set once it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


@asynccontextmanager
async def serve(app: ASGIApp, sock: socket.socket) -> AsyncIterator[None]:
    """Serve `app` on `sock` with uvicorn in this event loop until the block ends."""
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    with sock:  # uvicorn closes it on shutdown; this closes it when it never started
        task = asyncio.create_task(server.serve(sockets=[sock]))
        started = asyncio.create_task(server.ready.wait())
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await task  # raises what stopped it
            raise RuntimeError(f"uvicorn stopped before serving on {url_of(sock)}")
        try:
            yield
        finally:
            server.should_exit = True
            await task


@asynccontextmanager
async def oidc_provider() -> AsyncIterator[Provider]:
    sock = listening_socket()
    provider = Provider(issuer=url_of(sock))
    async with serve(provider.app(), sock):
        yield provider
