"""The web inbox's settings (`signoff web`), read from the environment beside the worker's.

Secrets the server needs and nobody configured (the session key, its SSH signing key) are made
on first start under `<data dir>/web`, readable by the server's user only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from workers.settings import ConfigError, Settings, _address, _seconds

DEFAULT_ADDRESS = "127.0.0.1:8080"
CALLBACK_PATH = "/auth/oidc/callback"


@dataclass(frozen=True)
class OidcConfig:
    issuer: str  # exactly as the provider's discovery document names itself
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str  # <SIGNOFF_WEB_URL>/auth/oidc/callback
    username_claim: str = "preferred_username"
    scope: str = "openid profile email"


@dataclass(frozen=True)
class WebConfig:
    address: str  # host:port to listen on (SIGNOFF_WEB_ADDRESS)
    public_url: str  # how browsers reach it (SIGNOFF_WEB_URL); https:// makes cookies Secure
    session_key: str = field(repr=False)  # signs session cookies (SIGNOFF_WEB_SESSION_KEY_FILE)
    users_file: Path  # local users with argon2 hashes (SIGNOFF_WEB_USERS), when there is no OIDC
    signing_key: Path  # the server's SSH key: it signs its users' decisions (SIGNOFF_WEB_SIGNING_KEY)
    idle_timeout: float  # seconds without a request that end a session (SIGNOFF_WEB_IDLE_TIMEOUT)
    oidc: OidcConfig | None = None  # SIGNOFF_OIDC_ISSUER, _CLIENT_ID, _CLIENT_SECRET, _USERNAME_CLAIM

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str] | None = None) -> WebConfig:
        env = os.environ if env is None else env
        web_dir = settings.data_dir / "web"
        address = _address(env, "SIGNOFF_WEB_ADDRESS") or DEFAULT_ADDRESS
        public_url = (env.get("SIGNOFF_WEB_URL") or f"http://{address}").strip().rstrip("/")
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ConfigError(f"SIGNOFF_WEB_URL={public_url!r}: expected http(s)://host[:port], without a path")
        key_file = Path(env.get("SIGNOFF_WEB_SESSION_KEY_FILE") or web_dir / "session-key").expanduser()
        return cls(
            address=address,
            public_url=public_url,
            session_key=_session_key(key_file),
            users_file=Path(env.get("SIGNOFF_WEB_USERS") or web_dir / "users").expanduser(),
            signing_key=Path(env.get("SIGNOFF_WEB_SIGNING_KEY") or web_dir / "signing-key").expanduser(),
            idle_timeout=_seconds(env, "SIGNOFF_WEB_IDLE_TIMEOUT", "30m"),
            oidc=_oidc(env, public_url),
        )


def _session_key(path: Path) -> str:
    """The key that signs session cookies: kept in a file so sessions survive a restart, made on
    first use. Rotating it (deleting the file) logs everyone out."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if len(key) >= 32:
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def _oidc(env: Mapping[str, str], public_url: str) -> OidcConfig | None:
    names = ("SIGNOFF_OIDC_ISSUER", "SIGNOFF_OIDC_CLIENT_ID", "SIGNOFF_OIDC_CLIENT_SECRET")
    values = [(env.get(name) or "").strip() for name in names]
    if not any(values):
        return None
    if not all(values):
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        raise ConfigError(f"OIDC needs {', '.join(names)}: {', '.join(missing)} not set")
    issuer, client_id, client_secret = values
    if urlsplit(issuer).scheme not in ("http", "https"):
        raise ConfigError(f"SIGNOFF_OIDC_ISSUER={issuer!r}: expected an http(s) URL")
    return OidcConfig(
        issuer=issuer,  # exactly as the discovery document says it, trailing slash and all
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=public_url + CALLBACK_PATH,
        username_claim=(env.get("SIGNOFF_OIDC_USERNAME_CLAIM") or "preferred_username").strip(),
    )
