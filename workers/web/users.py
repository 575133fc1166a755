"""The web inbox's local users (when no OIDC issuer is configured): a file of argon2id hashes.

One `name:hash` per line, names normalised as everywhere else (workflows.identity); `#` starts
a comment. A name may contain `:` (an argon2 hash never does, so the line splits at its last
one) but may not start with `#`. Written atomically with mode 0600. Read again whenever it
changed on disk, so `signoff web user add|remove` takes effect on a running server.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from workflows.identity import Identity, IdentityRefused, identify

MIN_PASSWORD = 12
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Checked when the name is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


class UserFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        # (inode, mtime, ctime, size) of what _users holds: every write is a new inode, so a
        # rewrite of the same size within one timestamp tick is still noticed.
        self._seen: tuple[int, int, int, int] | None = None
        self._users: dict[str, str] = {}

    def names(self) -> list[str]:
        return sorted(self._load())

    def add(self, name: str, password: str) -> str:
        """Add the user or set a new password; the normalised name. ValueError says what is wrong."""
        who = _identity(name)
        if who.name.startswith("#"):
            raise ValueError(f"{name!r}: a user name may not start with '#' (it would read as a comment)")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
        users = dict(self._load())
        for other in users:
            if other != who.name and identify(other).looks_like(who):
                raise ValueError(f"{name!r} looks like the existing user {other!r}; refused as a look-alike")
        users[who.name] = _hasher.hash(password)
        self._write(users)
        return who.name

    def remove(self, name: str) -> bool:
        who = _identity(name)
        users = dict(self._load())
        if users.pop(who.name, None) is None:
            return False
        self._write(users)
        return True

    def authenticate(self, name: str, password: str) -> str | None:
        """The normalised name when the password is this user's; None otherwise."""
        try:
            who: str | None = identify(name).name
        except IdentityRefused:
            who = None
        stored = self._load().get(who) if who else None
        try:
            _hasher.verify(stored or _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        if stored is None or who is None:
            return None
        if _hasher.check_needs_rehash(stored):
            users = dict(self._load())
            users[who] = _hasher.hash(password)
            self._write(users)
        return who

    def _load(self) -> dict[str, str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._users = None, {}
            return self._users
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        if self._seen != seen:
            self._users = _parse(self.path)
            self._seen = seen
        return self._users

    def _write(self, users: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = "# signoff web users: name:argon2 hash (signoff web user add|remove)\n"
        text += "".join(f"{name}:{hashed}\n" for name, hashed in sorted(users.items()))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())  # a crash leaves the old file or the new one, never an empty one
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._seen = None


def _identity(name: str) -> Identity:
    try:
        return identify(name)
    except IdentityRefused as err:
        raise ValueError(str(err)) from None


def _parse(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.rpartition(":")
        if not sep or not name or not hashed.startswith("$argon2"):
            raise ValueError(f"{path}:{number}: expected name:<argon2 hash>")
        # A hand-edited name that is not in normal form could never log in; say so instead.
        try:
            normal = identify(name).name
        except IdentityRefused as err:
            raise ValueError(f"{path}:{number}: {err}") from None
        if normal != name:
            raise ValueError(f"{path}:{number}: user {name!r} must be written {normal!r}")
        if name in lines:
            raise ValueError(f"{path}:{number}: user {name!r} is already on line {lines[name]}")
        users[name], lines[name] = hashed, number
    return users
