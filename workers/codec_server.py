"""`signoff codec-server`: Temporal's codec-server HTTP protocol over the payload codec, so
`temporal --codec-endpoint` and the Web UI show decoded payloads to those holding the token.

`POST /encode` and `POST /decode` take and give `{"payloads": [{"metadata": {...}, "data": ...}]}`
(the protobuf JSON of `temporal.api.common.v1.Payloads`). The token comes as
`Authorization: Bearer <token>` or, for the Web UI (which can only be given a URL), as the
first path segment: `/<token>/decode`. CORS answers the configured Web UI origins only.
Payload contents and the token are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from workers.codec import PayloadCodecError, PayloadKeys
from workers.settings import ConfigError

log = logging.getLogger("signoff.codec_server")

TOKEN_ENV = "SIGNOFF_CODEC_TOKEN"
ORIGINS_ENV = "SIGNOFF_CODEC_ORIGINS"
ADDRESS_ENV = "SIGNOFF_CODEC_ADDRESS"
DEFAULT_ADDRESS = "127.0.0.1:8081"
DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
MAX_BODY = 8 * 1024 * 1024
MIN_TOKEN = 16
OPERATIONS = ("encode", "decode")
CORS_HEADERS = {
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, X-Namespace, Authorization",
    "Access-Control-Max-Age": "600",
}


@dataclass(frozen=True)
class CodecServerConfig:
    host: str
    port: int
    token: str = field(repr=False)
    origins: tuple[str, ...] = DEFAULT_ORIGINS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, address: str | None = None) -> CodecServerConfig:
        env = os.environ if env is None else env
        token = env.get(TOKEN_ENV, "")
        check_token(token)
        host, port = parse_address(address or env.get(ADDRESS_ENV) or DEFAULT_ADDRESS)
        origins = parse_origins(env.get(ORIGINS_ENV)) or DEFAULT_ORIGINS
        return cls(host, port, token, origins)


def check_token(token: str) -> None:
    if not token.strip():
        raise ConfigError(
            f"{TOKEN_ENV} is not set: the codec server decrypts for anyone holding its token, so it needs one "
            "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    if len(token) < MIN_TOKEN or token != token.strip():
        raise ConfigError(f"{TOKEN_ENV} must be at least {MIN_TOKEN} characters, without surrounding spaces")


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{ADDRESS_ENV} / --address: expected host:port, got {address!r}")
    return host, int(port)


def parse_origins(text: str | None) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in (text or "").split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
            raise ConfigError(f"{ORIGINS_ENV}: {origin!r} is not an origin like http://localhost:8233")
    return origins


class _Handler(BaseHTTPRequestHandler):
    server: CodecHTTPServer

    def version_string(self) -> str:
        return "signoff-codec"

    def do_OPTIONS(self) -> None:  # a CORS preflight: no token needed, none sent
        if self._operation() is None:
            self._reply(HTTPStatus.NOT_FOUND)
        else:
            self._reply(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        operation = self._operation()
        if operation is None:
            self._reply(HTTPStatus.NOT_FOUND)
            return
        if not self._authorized():
            self._reply(HTTPStatus.UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"bodies are limited to {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        try:
            payloads = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, ValueError):
            self._error(HTTPStatus.BAD_REQUEST, 'expected JSON {"payloads": [{"metadata": {...}, "data": "..."}]}')
            return
        convert: Callable[[Payload], Payload] = (
            self.server.keys.encrypt if operation == "encode" else self.server.keys.decrypt
        )
        try:
            result = Payloads(payloads=[convert(p) for p in payloads.payloads])
        except PayloadCodecError as err:  # names the key id, never key material or content
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        self._reply(HTTPStatus.OK, json_format.MessageToJson(result, indent=None).encode())

    def _operation(self) -> str | None:
        """`encode` or `decode`, for `/<op>` and `/<token>/<op>`; None for any other path."""
        segments = urlsplit(self.path).path.strip("/").split("/")
        if segments[-1] in OPERATIONS and len(segments) <= 2:
            return segments[-1]
        return None

    def _authorized(self) -> bool:
        expected = self.server.token.encode()
        offered = []
        segments = urlsplit(self.path).path.strip("/").split("/")
        if len(segments) == 2:
            offered.append(unquote(segments[0]))
        scheme, _, credentials = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer":
            offered.append(credentials.strip())
        # Compare every offer, each in constant time: which one matched is not observable.
        matches = [hmac.compare_digest(o.encode(), expected) for o in offered]
        return any(matches)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, json.dumps({"error": message}).encode())

    def _reply(self, status: HTTPStatus, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin and origin.rstrip("/") in self.server.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            for name, value in CORS_HEADERS.items():
                self.send_header(name, value)
        self.send_header("Vary", "Origin")
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Access log without the token (it may be the path's first segment); bodies never are."""
        message = (format % args).replace(self.server.token, "<token>")
        log.info("%s %s", self.address_string(), message)


class CodecHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: CodecServerConfig, keys: PayloadKeys) -> None:
        self.keys = keys
        self.token = config.token
        self.origins = frozenset(config.origins)
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((config.host, config.port), _Handler)
        except OSError as err:
            raise ConfigError(f"codec server cannot listen on {config.host}:{config.port}: {err.strerror}") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class BackgroundCodecServer:
    """A codec server in a daemon thread (for `signoff dev`)."""

    server: CodecHTTPServer
    thread: threading.Thread

    @classmethod
    def start(cls, config: CodecServerConfig, keys: PayloadKeys) -> BackgroundCodecServer:
        server = CodecHTTPServer(config, keys)
        thread = threading.Thread(target=server.serve_forever, name="signoff-codec-server", daemon=True)
        thread.start()
        return cls(server, thread)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def endpoint(url: str, token: str) -> str:
    """The codec endpoint for the Web UI: the token as the first path segment."""
    return f"{url}/{token}"


def origins_for_ui(ui_port: int, extra: Sequence[str] = ()) -> tuple[str, ...]:
    return (f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}", *extra)
