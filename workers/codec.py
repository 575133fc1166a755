"""Encrypted Temporal payloads: an AES-256-GCM payload codec keyed from SIGNOFF_PAYLOAD_KEYS_FILE.

The keys file is UTF-8 text, one key a line: `<key id> <base64 of 32 random bytes>`; blank
lines and `#` comments are ignored. The first key encrypts, every key decrypts, so a rotation
puts a new key first and keeps the old ones (`signoff payload-key new FILE` does exactly that).

An encrypted payload is the original `Payload` message, serialized and sealed with the key
whose id is in its metadata (the id is also the associated data, so a payload cannot be
passed off under another key's id). Payloads that are not encrypted pass through decoding
unchanged: a script may still start a workflow with a plain `temporal workflow start`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from workers.settings import ConfigError

log = logging.getLogger("signoff.codec")

KEYS_ENV = "SIGNOFF_PAYLOAD_KEYS_FILE"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
LINE_FORMAT = "<key id> <base64 of 32 random bytes>"


class PayloadCodecError(ConfigError):
    """A payload this process cannot decrypt: its key is not here, the key under its id is
    wrong, or the payload was altered. The message names the key id, never key material."""


def parse_keys(text: str, source: str) -> list[tuple[str, bytes]]:
    """The keys of a keys file's text, first (the encrypting key) first. Errors name `source`
    and the line number, and never repeat what the line holds beyond a valid key id."""
    keys: list[tuple[str, bytes]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{KEYS_ENV} {source} line {number}"
        fields = line.split()
        if len(fields) != 2:
            raise ConfigError(f"{where}: expected `{LINE_FORMAT}`, found {len(fields)} field(s)")
        key_id, encoded = fields
        if not KEY_ID.fullmatch(key_id):
            raise ConfigError(f"{where}: the key id must be 1 to 64 of A-Z a-z 0-9 . _ -")
        if key_id in seen:
            raise ConfigError(f"{where}: key id {key_id!r} is already on line {seen[key_id]}")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: the key of {key_id!r} is not valid base64") from None
        if len(key) != KEY_SIZE:
            raise ConfigError(f"{where}: the key of {key_id!r} is {len(key)} bytes, not {KEY_SIZE} (AES-256)")
        seen[key_id] = number
        keys.append((key_id, key))
    return keys


def read_keys(path: Path) -> list[tuple[str, bytes]]:
    """The keys in `path`; ConfigError when it is unreadable, malformed or holds no key."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{KEYS_ENV}: cannot read {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{KEYS_ENV} {path}: not UTF-8 text") from None
    keys = parse_keys(text, str(path))
    if not keys:
        raise ConfigError(f"{KEYS_ENV} {path} holds no key; create one with `signoff payload-key new {path}`")
    return keys


class PayloadKeys:
    """The keys of one keys file: the first encrypts, all decrypt. Meeting a key id it does
    not have, it reads the file again (once per change of the file), so a key deployed to a
    running worker is used by the workflow task's next retry."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], source: Path | None = None) -> None:
        if not keys:
            raise ConfigError(f"{KEYS_ENV}: no key")
        self.source = source
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._set(keys)

    @classmethod
    def load(cls, path: Path) -> PayloadKeys:
        keys = cls(read_keys(path), path)
        try:
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning("%s %s is readable by others than its owner; chmod 600 it", KEYS_ENV, path)
        except OSError:
            pass
        return keys

    def _set(self, keys: Sequence[tuple[str, bytes]]) -> None:
        # One assignment, so a thread encrypting while another reloads sees old or new keys.
        self._state = (keys[0][0], {key_id: AESGCM(key) for key_id, key in keys})

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.source is None:
            return None
        try:
            found = self.source.stat()
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino)

    @property
    def current_id(self) -> str:
        """The id of the key that encrypts."""
        return self._state[0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._state[1])

    def __repr__(self) -> str:
        return f"PayloadKeys(ids={list(self.ids)!r}, source={self.source!r})"

    def encrypt(self, payload: Payload) -> Payload:
        key_id, keys = self._state
        aead = keys[key_id]
        nonce = os.urandom(NONCE_SIZE)
        sealed = aead.encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # never encrypted: e.g. a plain `temporal workflow start`
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode("utf-8", "replace")
        if not KEY_ID.fullmatch(key_id):
            raise PayloadCodecError(f"an encrypted payload carries no valid {KEY_ID_METADATA}: it was tampered with")
        aead = self._state[1].get(key_id) or self._reload(key_id)
        if aead is None:
            raise PayloadCodecError(
                f"a payload is encrypted with key {key_id!r}, which is not in {KEYS_ENV} "
                f"({self.source or 'not a file'}): add that key to the file (a rotation keeps old keys)"
            )
        data = payload.data
        if len(data) < NONCE_SIZE + TAG_SIZE:
            raise PayloadCodecError(f"a payload encrypted with key {key_id!r} is truncated: it was tampered with")
        try:
            plain = aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], key_id.encode())
        except InvalidTag:
            raise PayloadCodecError(
                f"a payload encrypted with key {key_id!r} fails its integrity check: it was tampered with, "
                f"or the key under that id in {KEYS_ENV} is not the key it was encrypted with"
            ) from None
        decoded = Payload()
        try:
            decoded.ParseFromString(plain)
        except DecodeError:
            raise PayloadCodecError(f"a payload encrypted with key {key_id!r} holds no payload message") from None
        return decoded

    def _reload(self, key_id: str) -> AESGCM | None:
        """Read the file again if it changed since it was read; the key `key_id`, if now there."""
        with self._lock:
            if key_id in self._state[1]:
                return self._state[1][key_id]
            stamp = self._file_stamp()
            if self.source is None or stamp is None or stamp == self._stamp:
                return None
            self._stamp = stamp
            self._set(read_keys(self.source))
            log.info("%s %s read again: keys %s", KEYS_ENV, self.source, ", ".join(self.ids))
            return self._state[1].get(key_id)


class EncryptionCodec(PayloadCodec):
    """The payload codec: AES-GCM is fast enough (GB/s) to run inline on the event loop."""

    def __init__(self, keys: PayloadKeys) -> None:
        self.keys = keys

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.keys.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.keys.decrypt(p) for p in payloads]


def data_converter(keys: PayloadKeys | None) -> DataConverter:
    """Temporal's default converter, with every payload encrypted under `keys`; failure
    messages and stack traces move into an (encrypted) payload too."""
    if keys is None:
        return DataConverter.default
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def keys_from_env(env: Mapping[str, str] | None = None) -> PayloadKeys | None:
    env = os.environ if env is None else env
    path = env.get(KEYS_ENV)
    return PayloadKeys.load(Path(path).expanduser()) if path else None


def data_converter_from_env(env: Mapping[str, str] | None = None) -> DataConverter:
    """The converter every signoff client uses: encrypting when SIGNOFF_PAYLOAD_KEYS_FILE is set."""
    return data_converter(keys_from_env(env))


# --- key generation -------------------------------------------------------------------------


def new_key_id(taken: Iterable[str] = (), today: datetime | None = None) -> str:
    day = (today or datetime.now(UTC)).strftime("%Y%m%d")
    taken = set(taken)
    while True:
        key_id = f"k-{day}-{secrets.token_hex(3)}"
        if key_id not in taken:
            return key_id


def add_new_key(path: Path) -> str:
    """Put a new random key first in the keys file `path`, creating it with mode 0600 if it is
    missing; old keys stay (they still decrypt). Returns the new key's id."""
    path = path.expanduser()
    try:
        old_text = path.read_bytes().decode("utf-8")
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        old_text, mode = "", 0o600
    except UnicodeDecodeError:
        raise ConfigError(f"{KEYS_ENV} {path}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    taken = [key_id for key_id, _ in parse_keys(old_text, str(path))]  # never add to a broken file
    key_id = new_key_id(taken)
    line = f"{key_id} {base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode()}\n"
    target = path.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(line + old_text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, mode)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}") from None
    return key_id
