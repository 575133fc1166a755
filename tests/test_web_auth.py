"""The web inbox's authentication building blocks on their own, without Temporal: the local
users file, the login rate limit, and OpenID Connect login against a real provider
(tests/oidc_provider.py) with a minimal app in front, both served by uvicorn."""

from __future__ import annotations

import secrets
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, MODES, listening_socket, oidc_provider, serve, url_of
from workers.web.limiter import LoginLimiter
from workers.web.oidc import OidcConfig, oidc_routes
from workers.web.users import UserFile, generate_password

PASSWORD = "a long enough password"
OTHER_PASSWORD = "another long password!"  # the same length: a rewrite the same size as before

# ---- the users file ----


def test_a_user_is_added_authenticated_and_removed_by_normalised_name(tmp_path: Path) -> None:
    users = UserFile(tmp_path / "users")
    assert users.add("Alice", PASSWORD) == "alice"
    assert users.add("alice", OTHER_PASSWORD) == "alice", "`Alice` and `alice` are one user"
    assert users.names() == ["alice"]
    assert users.authenticate("ALICE", OTHER_PASSWORD) == "alice"
    assert users.authenticate("alice", PASSWORD) is None, "the old password was replaced"
    assert users.authenticate("nobody", OTHER_PASSWORD) is None
    assert users.authenticate("al ice", OTHER_PASSWORD) is None, "an un-normalisable name is just unknown"
    assert users.remove("Alice")
    assert users.authenticate("alice", OTHER_PASSWORD) is None
    assert not users.remove("alice")
    assert users.names() == []


def test_the_file_is_private_and_holds_only_argon2id_hashes(tmp_path: Path) -> None:
    path = tmp_path / "web" / "users"
    UserFile(path).add("alice", PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert PASSWORD not in path.read_text()
    [line] = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert line.startswith("alice:$argon2id$")
    assert [p.name for p in path.parent.iterdir()] == ["users"], "no temporary file left behind"


@pytest.mark.parametrize(
    ("name", "password", "reason"),
    [
        ("\u0430lice", PASSWORD, "look-alike characters"),  # U+0430, Cyrillic small a
        ("al ice", PASSWORD, "not a valid user name"),
        ("bob\u200b", PASSWORD, "not a valid user name"),
        ("#ops", PASSWORD, "may not start with '#'"),
        ("carol", "short pass", "at least 12"),
    ],
    ids=ascii,
)
def test_bad_names_and_passwords_are_refused(tmp_path: Path, name: str, password: str, reason: str) -> None:
    users = UserFile(tmp_path / "users")
    with pytest.raises(ValueError, match=reason):
        users.add(name, password)
    assert not (tmp_path / "users").exists()


def test_a_name_with_a_colon_survives_the_file(tmp_path: Path) -> None:
    UserFile(tmp_path / "users").add("ops:admin", PASSWORD)
    assert UserFile(tmp_path / "users").authenticate("ops:admin", PASSWORD) == "ops:admin"


def test_two_user_files_on_one_path_see_each_others_changes(tmp_path: Path) -> None:
    cli, server = UserFile(tmp_path / "users"), UserFile(tmp_path / "users")
    assert server.names() == []
    cli.add("bob", PASSWORD)
    assert server.authenticate("bob", PASSWORD) == "bob"
    cli.add("bob", OTHER_PASSWORD)  # same size, likely within the same timestamp tick
    assert server.authenticate("bob", PASSWORD) is None
    assert server.authenticate("bob", OTHER_PASSWORD) == "bob"
    cli.remove("bob")
    assert server.authenticate("bob", OTHER_PASSWORD) is None


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["# users", "", "no hash here"], r"users:3: expected name:<argon2 hash>"),
        (["alice:not-a-hash"], r"users:1: expected"),
        (["Alice:$argon2id$x"], r"users:1: user 'Alice' must be written 'alice'"),
        (["alice:$argon2id$x", "bob:$argon2id$y", "alice:$argon2id$z"], r"users:3: .* already on line 1"),
        (["al ice:$argon2id$x"], r"users:1: 'al ice' is not a valid user name"),
    ],
)
def test_a_malformed_file_is_an_error_naming_the_line(tmp_path: Path, lines: list[str], error: str) -> None:
    (tmp_path / "users").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=error):
        UserFile(tmp_path / "users").authenticate("alice", PASSWORD)


def test_an_outdated_hash_is_replaced_on_login(tmp_path: Path) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    (tmp_path / "users").write_text(f"alice:{weak}\n")
    assert UserFile(tmp_path / "users").authenticate("alice", PASSWORD) == "alice"
    [line] = [line for line in (tmp_path / "users").read_text().splitlines() if not line.startswith("#")]
    assert not PasswordHasher().check_needs_rehash(line.split(":", 1)[1])
    assert UserFile(tmp_path / "users").authenticate("alice", PASSWORD) == "alice"


def test_generated_passwords_are_long_and_fresh() -> None:
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) >= 16 for p in passwords)


# ---- the login rate limit (our own code: an injected clock is fine) ----


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_block_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=5, window_seconds=300, clock=clock)
    for _ in range(5):
        assert limiter.retry_after("ip:1", "user:bob") == 0
        limiter.failure("ip:1", "user:bob")
        clock.now += 10
    assert limiter.retry_after("user:bob") == pytest.approx(250)
    assert limiter.retry_after("ip:2", "user:bob") == pytest.approx(250), "any blocked key blocks"
    assert limiter.retry_after("ip:2", "user:carol") == 0
    clock.now = 1000 + 300  # the first failure leaves the window: four remain
    assert limiter.retry_after("ip:1", "user:bob") == 0
    limiter.failure("user:bob")
    assert limiter.retry_after("user:bob") == pytest.approx(10)


def test_success_clears_only_its_keys() -> None:
    limiter = LoginLimiter(clock=Clock())
    for _ in range(5):
        limiter.failure("ip:1", "user:bob")
    limiter.success("user:bob")
    assert limiter.retry_after("user:bob") == 0
    assert limiter.retry_after("ip:1") > 0


def test_memory_stays_bounded_under_a_flood_of_keys() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock=clock, max_keys=100)
    for _ in range(5):
        limiter.failure("user:target")
    for n in range(1000):
        limiter.failure(f"ip:{n}")
    assert limiter.tracked_keys == 100
    assert limiter.retry_after("ip:999") == 0
    assert limiter.tracked_keys == 100, "asking adds no key"
    clock.now += 301
    limiter.failure("ip:late")
    assert limiter.tracked_keys == 1, "keys whose failures all expired are dropped"


# ---- OpenID Connect ----


def login_app(config: OidcConfig) -> Starlette:
    """The smallest app that logs in with oidc_routes: it keeps who logged in in the session."""

    def log_in(request: Request, user: str, subject: str) -> None:
        request.session.clear()
        request.session.update(user=user, subject=subject)

    async def whoami(request: Request) -> Response:
        return JSONResponse({"user": request.session.get("user"), "subject": request.session.get("subject")})

    async def page(request: Request) -> Response:
        return PlainTextResponse(f"page {request.url.path}")

    return Starlette(
        routes=[
            *oidc_routes(config, log_in),
            Route("/whoami", whoami),
            Route("/", page),
            Route("/requests/{id}", page),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32))],
    )


@asynccontextmanager
async def browser(issuer: str, *, follow: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """The app under test, configured for `issuer`, served; and a client with a cookie jar."""
    sock = listening_socket()
    url = url_of(sock)
    config = OidcConfig(issuer, CLIENT_ID, CLIENT_SECRET, f"{url}/auth/oidc/callback")
    async with serve(login_app(config), sock), httpx.AsyncClient(base_url=url, follow_redirects=follow) as http:
        yield http


async def whoami(http: httpx.AsyncClient) -> dict[str, str | None]:
    found: dict[str, str | None] = (await http.get("/whoami")).json()
    return found


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("login refused: ")
    assert "\n" not in response.text.strip()
    assert "<" not in response.text, "nothing sent to us is echoed as markup"


async def test_an_oidc_login_is_the_providers_user_with_its_subject() -> None:
    async with oidc_provider() as provider, browser(provider.issuer) as http:
        provider.username = "Dana"
        landed = await http.get("/login/oidc", params={"next": "/requests/x"})
        assert landed.status_code == 200
        assert landed.url.path == "/requests/x"
        assert [r.status_code for r in landed.history] == [302, 302, 303]
        assert await whoami(http) == {"user": "dana", "subject": f"oidc:{provider.issuer}#{provider.sub}"}
        [sent] = provider.authorize_requests
        assert sent["code_challenge_method"] == "S256", "PKCE, checked by the provider's token endpoint"
        assert sent["nonce"]


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example/", "/\t/evil", "x"])
async def test_a_next_page_off_this_site_becomes_the_inbox(target: str) -> None:
    async with oidc_provider() as provider, browser(provider.issuer) as http:
        landed = await http.get("/login/oidc", params={"next": target})
        assert landed.status_code == 200
        assert landed.url == http.base_url.join("/")
        assert (await whoami(http))["user"] == "dana"


@pytest.mark.parametrize("mode", MODES)
async def test_a_misbehaving_provider_logs_nobody_in(mode: str) -> None:
    async with oidc_provider() as provider, browser(provider.issuer) as http:
        provider.mode = mode
        assert_refused(await http.get("/login/oidc", params={"next": "/requests/x"}))
        assert await whoami(http) == {"user": None, "subject": None}


async def test_the_issuer_must_be_the_discovery_documents_exactly() -> None:
    async with oidc_provider() as provider, browser(provider.issuer + "/") as http:
        refused = await http.get("/login/oidc")
        assert_refused(refused)
        assert "issuer" in refused.text
        assert provider.authorize_requests == [], "refused before sending anyone to the provider"


async def test_a_name_that_is_not_a_person_is_refused() -> None:
    async with oidc_provider() as provider, browser(provider.issuer) as http:
        provider.username = "\u0430lice"  # U+0430, Cyrillic small a
        assert_refused(await http.get("/login/oidc"))
        assert (await whoami(http))["user"] is None


async def test_an_unreachable_provider_is_a_refusal_not_an_error() -> None:
    with listening_socket() as closed:  # bound, never listening: connections are refused
        async with browser(url_of(closed)) as http:
            assert_refused(await http.get("/login/oidc"))


async def test_a_tampered_replayed_or_foreign_state_is_refused() -> None:
    async with oidc_provider() as provider, browser(provider.issuer, follow=False) as http:
        to_provider = await http.get("/login/oidc")
        back = await http.get(to_provider.headers["location"])
        callback = httpx.URL(back.headers["location"])
        assert_refused(await http.get(callback.copy_set_param("state", "forged")))
        async with httpx.AsyncClient() as elsewhere:  # another browser: the state is not in its session
            assert_refused(await elsewhere.get(callback))
        done = await http.get(callback)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/"
        assert (await whoami(http))["user"] == "dana"
        assert_refused(await http.get(callback))  # the same code and state again
