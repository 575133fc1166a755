"""Encrypted payloads (issue 8, point 4): nothing signoff sends through Temporal is readable
without the key; `signoff codec-server` decodes for `temporal --codec-endpoint` and the Web UI;
a rotated key still decodes old histories."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from tests.helpers import assert_eventually, run_temporal, wait_for_phase
from tests.test_cli import signoff
from workers import cli
from workers.codec import (
    ENCODING,
    KEY_ID_METADATA,
    KEYS_ENV,
    PayloadCodecError,
    PayloadKeys,
    add_new_key,
    data_converter,
    data_converter_from_env,
    parse_keys,
)
from workers.codec_server import ORIGINS_ENV, TOKEN_ENV
from workers.devstack import dev_stack, free_port
from workers.settings import ConfigError, Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, ChangeRequestInput, Phase

SIGNOFF = str(Path(sys.executable).parent / "signoff")
UI_ORIGIN = "http://localhost:8233"  # a default of SIGNOFF_CODEC_ORIGINS
# What the server must read, and so stays in clear: search attributes (the server indexes them)
# and the SDK's patch markers (`workflow.patched` ids, names from the code).
LOCAL_ACTIVITY_MARKER = ".marker_recorded_event_attributes.details[data]"
# The SDK writes these itself, past the data converter: search attributes, which patches a run
# took, and a local activity's bookkeeping (its type, number and times; its result is sealed).
IN_CLEAR = (
    ".search_attributes.indexed_fields[",
    ".marker_recorded_event_attributes.details[patch-data]",
    LOCAL_ACTIVITY_MARKER,
)
LOCAL_ACTIVITY_FIELDS = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}
KEY = base64.b64encode(bytes(range(32))).decode()  # key material that must never be echoed


# --- helpers --------------------------------------------------------------------------------


def json_payload(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def base64_forms(marker: str) -> list[str]:
    """The marker's bytes as they show inside any base64 text, at each of the 3 alignments."""
    raw = marker.encode()
    forms = []
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        forms.append(encoded[-(-8 * pad // 6) : 8 * (pad + len(raw)) // 6])
    return forms


def assert_unreadable(marker: str, *texts: bytes | str) -> None:
    for text in texts:
        blob = text.encode() if isinstance(text, str) else text
        assert marker.encode() not in blob, f"{marker} in clear"
        for form in base64_forms(marker):
            assert form.encode() not in blob, f"{marker} base64-encoded ({form})"


def payloads_of(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a protobuf message, with the field path that holds it."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        where = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            items = [(f"{where}[{k}]", v) for k, v in value.items() if isinstance(v, Message)]
        elif field.is_repeated:
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(where, value)]
        for sub_path, sub in items:
            yield from payloads_of(sub, sub_path)


def json_payloads(value: Any) -> Iterator[Payload]:
    """The payloads in protobuf JSON (`temporal ... --output json`): objects with `data` and `metadata`."""
    if isinstance(value, dict):
        if isinstance(value.get("metadata"), dict) and "data" in value:
            yield json_format.ParseDict(value, Payload(), ignore_unknown_fields=True)
            return
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from json_payloads(item)


async def raw_history(client: Client, workflow_id: str) -> History:
    """The history as the server holds it: fetched by a client without the codec."""
    fetched = await client.get_workflow_handle(workflow_id).fetch_history()
    return History(events=fetched.events)


def encrypted_payloads(history: History) -> list[Payload]:
    return [p for _, p in payloads_of(history) if p.metadata.get("encoding") == ENCODING]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None) -> Response:
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(method, parts.path or "/", body=body, headers=dict(headers or {}))
        answer = conn.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        conn.close()


def post_payloads(url: str, payloads: list[Payload], headers: Mapping[str, str]) -> Response:
    body = json_format.MessageToJson(Payloads(payloads=payloads)).encode()
    return http("POST", url, body, {"Content-Type": "application/json", "X-Namespace": "default", **headers})


def decoded(response: Response) -> list[Payload]:
    assert response.status == 200, (response.status, response.body)
    return list(json_format.Parse(response.body, Payloads()).payloads)


def wait_serving(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Read the codec server's output until it says where it listens (it binds before it says
    so, so it answers from then on), or fail if it exits first."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"codec server on "):
            return
    raise AssertionError(f"codec server exited {proc.wait()}:\n{log.read_text()}")


@contextmanager
def codec_server(keys_file: Path, token: str, log: Path) -> Iterator[str]:
    """`signoff codec-server` as a real process, with the default Web UI origins; its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, KEYS_ENV: str(keys_file), TOKEN_ENV: token}
    env.pop(ORIGINS_ENV, None)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [SIGNOFF, "codec-server", "--address", url.removeprefix("http://")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
        )
    try:
        wait_serving(proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def run_signoff(*args: str) -> subprocess.CompletedProcess[str]:
    """`signoff` as a real process (seconds: the CLI imports Ansible); see `invoke` for quick checks."""
    return subprocess.run([SIGNOFF, *args], capture_output=True, text=True)


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """The same command in this process."""
    return CliRunner().invoke(cli.app, list(args), env=env)


# --- the codec ------------------------------------------------------------------------------


def test_payloads_are_sealed_under_the_first_key_and_plain_ones_pass() -> None:
    keys = PayloadKeys([("k-new", base64.b64decode(KEY)), ("k-old", os.urandom(32))])
    plain = json_payload({"request": "Deploy hello", "vars": {"greeting": "marker-1f2e"}})
    sealed = keys.encrypt(plain)
    assert dict(sealed.metadata) == {"encoding": b"binary/encrypted", "encryption-key-id": b"k-new"}
    assert_unreadable("marker-1f2e", sealed.data, sealed.SerializeToString())
    assert keys.encrypt(plain).data != sealed.data, "a fresh nonce every time"
    assert keys.decrypt(sealed) == plain
    assert keys.decrypt(plain) == plain, "a plain `temporal workflow start` input passes through"
    assert "k-new" in repr(keys)
    assert KEY not in repr(keys)


def test_altered_payloads_are_refused() -> None:
    keys = PayloadKeys([("k-a", os.urandom(32)), ("k-b", os.urandom(32))])
    sealed = keys.encrypt(json_payload("hello"))
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(PayloadCodecError, match=r"k-a.*tampered with, or the key"):
        keys.decrypt(flipped)
    # the key id is the associated data: relabelling a payload as another key's fails too
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"k-b"}, data=sealed.data)
    with pytest.raises(PayloadCodecError, match=r"k-b.*tampered with"):
        keys.decrypt(relabelled)
    with pytest.raises(PayloadCodecError, match="truncated"):
        keys.decrypt(Payload(metadata=sealed.metadata, data=sealed.data[:20]))
    other = PayloadKeys([("k-a", os.urandom(32))])
    with pytest.raises(PayloadCodecError, match=r"not the key it was encrypted with"):
        other.decrypt(sealed)


def test_an_unknown_key_id_is_named_with_the_keys_file(tmp_path: Path) -> None:
    old_file, new_file = tmp_path / "old-keys", tmp_path / "new-keys"
    old_id = add_new_key(old_file)
    add_new_key(new_file)
    sealed = PayloadKeys.load(old_file).encrypt(json_payload("x"))
    with pytest.raises(PayloadCodecError) as err:
        PayloadKeys.load(new_file).decrypt(sealed)
    assert old_id in str(err.value)
    assert str(new_file) in str(err.value)
    assert KEYS_ENV in str(err.value)
    for line in (old_file.read_text() + new_file.read_text()).splitlines():
        assert line.split()[1] not in str(err.value)


def test_a_key_deployed_to_a_running_process_is_read_when_first_met(tmp_path: Path) -> None:
    """A worker without a payload's key fails that workflow task, and Temporal retries it: once
    the key is in the file, the retry decodes without a restart."""
    keys_file, elsewhere = tmp_path / "keys", tmp_path / "elsewhere"
    add_new_key(keys_file)
    running = PayloadKeys.load(keys_file)
    new_id = add_new_key(elsewhere)
    sealed = PayloadKeys.load(elsewhere).encrypt(json_payload("from a rotated client"))
    with pytest.raises(PayloadCodecError, match=new_id):
        running.decrypt(sealed)
    keys_file.write_text(elsewhere.read_text() + keys_file.read_text())  # the key is deployed
    assert running.decrypt(sealed) == json_payload("from a rotated client")
    assert running.current_id == new_id


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (f"k1 {KEY}\nk2\n", 2, "expected `<key id> <base64 of 32 random bytes>`, found 1 field"),
        (f"{KEY}\n", 1, "found 1 field"),
        (f"# keys\n\nk1 {KEY} extra\n", 3, "found 3 field"),
        (f"k/1 {KEY}\n", 1, "the key id must be"),
        (f"{KEY} k1\n", 1, "the key id must be"),  # swapped: the key is not echoed as an id
        (f"k1 {KEY}\nk1 {KEY}\n", 2, "key id 'k1' is already on line 1"),
        (f"k1 {KEY[:-4]}!!!!\n", 1, "the key of 'k1' is not valid base64"),
        (f"k1 {base64.b64encode(bytes(16)).decode()}\n", 1, "is 16 bytes, not 32 (AES-256)"),
    ],
)
def test_keys_file_errors_name_the_line_and_never_echo_key_material(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        PayloadKeys.load(keys_file)
    message = str(err.value)
    assert f"{KEYS_ENV} {keys_file} line {line}: " in message
    assert problem in message
    for token in text.split():
        if len(token) > 8:  # every key-like token of the file
            assert token not in message
            assert token[:12] not in message


def test_keys_file_that_is_missing_empty_or_not_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=f"{KEYS_ENV}: cannot read {missing}"):
        data_converter_from_env({KEYS_ENV: str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("# no keys yet\n\n")
    with pytest.raises(ConfigError, match="holds no key; create one with `signoff payload-key new"):
        PayloadKeys.load(empty)
    binary = tmp_path / "binary"
    binary.write_bytes(b"k1 \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        PayloadKeys.load(binary)
    assert parse_keys("", "x") == []
    assert data_converter_from_env({}) is DataConverter.default


def test_data_converter_encrypts_failures_too(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    add_new_key(keys_file)
    converter = data_converter_from_env({KEYS_ENV: str(keys_file)})
    assert converter.payload_codec is not None
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)


def test_payload_key_new_creates_the_file_0600_and_prepends_for_rotation(tmp_path: Path) -> None:
    keys_file = tmp_path / "conf" / "payload-keys"
    first = invoke("payload-key", "new", str(keys_file))
    assert first.exit_code == 0, first.output
    first_id = first.stdout.strip()
    assert first.stdout == f"{first_id}\n", "prints the key id only"
    assert first_id.startswith("k-")
    assert len(first_id) == len("k-20250101-abcdef")
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    with keys_file.open("a") as f:
        f.write("# kept: a comment\n")
    second = invoke("payload-key", "new", str(keys_file))
    assert second.exit_code == 0, second.output
    second_id = second.stdout.strip()
    lines = keys_file.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [second_id, first_id, "#"]
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert PayloadKeys.load(keys_file).ids == (second_id, first_id)
    assert first.stdout.strip() not in lines[0]
    assert lines[0].split()[1] not in second.stdout + second.stderr

    keys_file.write_text(f"k1 {KEY}\nbroken\n")
    refused = invoke("payload-key", "new", str(keys_file))
    assert refused.exit_code == 1, "never adds to a broken file"
    assert "line 2" in refused.stderr
    assert keys_file.read_text() == f"k1 {KEY}\nbroken\n"


def test_codec_server_refuses_to_start_without_a_token_or_keys(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    add_new_key(keys_file)
    no_token = invoke("codec-server", env={KEYS_ENV: str(keys_file), TOKEN_ENV: ""})
    assert no_token.exit_code == 1
    assert f"{TOKEN_ENV} is not set" in no_token.stderr
    short = invoke("codec-server", env={KEYS_ENV: str(keys_file), TOKEN_ENV: "short"})
    assert short.exit_code == 1
    assert "at least 16 characters" in short.stderr
    no_keys = invoke("codec-server", env={KEYS_ENV: None, TOKEN_ENV: secrets.token_urlsafe()})
    assert no_keys.exit_code == 1
    assert f"{KEYS_ENV} is not set" in no_keys.stderr


def test_codec_server_protocol_auth_cors_and_limits(tmp_path: Path) -> None:
    keys_file, log = tmp_path / "keys", tmp_path / "codec.log"
    key_id = add_new_key(keys_file)
    keys = PayloadKeys.load(keys_file)
    token = secrets.token_urlsafe()
    sealed = keys.encrypt(json_payload({"request": "marker-5a1d"}))
    with codec_server(keys_file, token, log) as url:
        # the CLI's form: a bearer token
        bearer = {"Authorization": f"Bearer {token}"}
        assert decoded(post_payloads(f"{url}/decode", [sealed], bearer)) == [json_payload({"request": "marker-5a1d"})]
        [encoded] = decoded(post_payloads(f"{url}/encode", [json_payload("x")], bearer))
        assert encoded.metadata[KEY_ID_METADATA] == key_id.encode()
        assert keys.decrypt(encoded) == json_payload("x")

        # the Web UI's form: the token as the first path segment, from an allowed origin
        preflight = http(
            "OPTIONS",
            f"{url}/{token}/decode",
            headers={
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status == 204
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert preflight.headers["access-control-allow-methods"] == "POST, OPTIONS"
        assert preflight.headers["access-control-allow-headers"] == "Content-Type, X-Namespace, Authorization"
        assert preflight.headers["vary"] == "Origin"
        ui = post_payloads(f"{url}/{token}/decode", [sealed], {"Origin": UI_ORIGIN})
        assert ui.headers["access-control-allow-origin"] == UI_ORIGIN
        assert decoded(ui) == [json_payload({"request": "marker-5a1d"})]

        # wrong or missing token: 401, nothing else (CORS still lets the UI read the status)
        refusals = [
            (f"/{secrets.token_urlsafe()}/decode", {"Origin": UI_ORIGIN}),
            ("/decode", {"Origin": UI_ORIGIN}),
            ("/decode", {"Authorization": f"Bearer {token}x"}),
            ("/decode", {"Authorization": f"Basic {token}"}),
            (f"/{token}x/decode", {}),
        ]
        for path, headers in refusals:
            refused = post_payloads(url + path, [sealed], headers)
            assert (refused.status, refused.body) == (401, b""), path
            assert refused.headers.get("access-control-allow-origin") == headers.get("Origin"), path
        # a foreign origin gets no CORS headers, on the preflight or the request
        evil = {"Origin": "https://evil.example"}
        assert "access-control-allow-origin" not in http("OPTIONS", f"{url}/{token}/decode", headers=evil).headers
        assert "access-control-allow-origin" not in post_payloads(f"{url}/{token}/decode", [sealed], evil).headers

        # bad input
        assert http("POST", f"{url}/{token}/decode", b"not json").status == 400
        assert http("POST", f"{url}/{token}/decode", b'{"payloads": [{"data": 5}]}').status == 400
        assert http("POST", f"{url}/{token}/nope").status == 404
        assert http("POST", f"{url}/a/{token}/decode").status == 404
        assert http("GET", f"{url}/{token}/decode").status == 501
        unknown = post_payloads(
            f"{url}/{token}/decode", [PayloadKeys([("k-gone", os.urandom(32))]).encrypt(sealed)], {}
        )
        assert unknown.status == 400
        assert "k-gone" in unknown.json()["error"]
        conn = HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=30)
        try:  # announced as over 8 MiB: refused before a byte of it is read
            conn.putrequest("POST", f"/{token}/decode")
            conn.putheader("Content-Length", str(8 * 1024 * 1024 + 1))
            conn.endheaders()
            assert conn.getresponse().status == 413
        finally:
            conn.close()
    logged = log.read_text()
    assert "POST /<token>/decode" in logged, "an access log, without the token"
    assert token not in logged
    assert "marker-5a1d" not in logged


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_history_is_encrypted_and_decodes_through_the_codec_server_after_rotation(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path, tmp_path: Path
) -> None:
    keys_file = tmp_path / "payload-keys"
    old_id = add_new_key(keys_file)
    request_marker, var_marker = f"reqmark{uuid.uuid4().hex[:12]}", f"varmark{uuid.uuid4().hex[:12]}"
    markers = (request_marker, var_marker)
    # the same server as the session's client, through the converter every signoff process uses
    client = await env.connect_client(data_converter=data_converter_from_env({KEYS_ENV: str(keys_file)}))
    address = client.service_client.config.target_host
    request = ChangeRequestInput(
        request=f"Deploy hello for ticket {request_marker}", requester="alice", vars={"greeting": var_marker}
    )
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            ChangeRequestWorkflow.run,  # type: ignore[misc]  # run takes a RawValue; we send the typed input
            request,
            id=f"cr-test-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        status = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        assert status.request.request == request.request
        assert status.request.vars == {"greeting": var_marker}
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob", comment=f"ok {var_marker}"))
        result = await handle.result()
        # `signoff status` reads it with the keys file, and says what is missing without it
        cli_env = {"TEMPORAL_ADDRESS": address, KEYS_ENV: str(keys_file)}
        code, out, err = await signoff(cli_env, "status", handle.id)
        assert code == 0, err
        assert f"request:   {request.request}  (by alice)" in out.splitlines()
        code, out, err = await signoff({**cli_env, KEYS_ENV: ""}, "status", handle.id)
        assert (code, out) == (1, "")
        assert (
            err.strip()
            == "error: this request's payloads are encrypted: set SIGNOFF_PAYLOAD_KEYS_FILE to the keys file"
        )
    assert result.outcome == Phase.SUCCEEDED
    assert (out_dir / "hello.txt").read_text() == f"hello {var_marker}\n"

    # 1. the raw history: no marker anywhere, in clear or base64; every payload but the
    #    search attributes and patch markers is sealed with the key
    history = await raw_history(env.client, handle.id)
    everything = history.SerializeToString()
    for marker in markers:
        assert_unreadable(marker, everything, json_format.MessageToJson(history))
    in_clear = []
    for path, payload in payloads_of(history):
        for marker in markers:
            assert_unreadable(marker, payload.data, payload.SerializeToString())
        if payload.metadata.get("encoding") == ENCODING:
            assert payload.metadata[KEY_ID_METADATA] == old_id.encode()
        elif not any(part in path for part in IN_CLEAR):
            in_clear.append(f"{path}: {payload.data.decode()}")
        elif path.endswith(LOCAL_ACTIVITY_MARKER):
            assert set(json.loads(payload.data)) <= LOCAL_ACTIVITY_FIELDS, payload.data
    assert in_clear == [], "\n".join(in_clear)
    sealed = encrypted_payloads(history)
    assert len(sealed) >= 10, "input, signals, activity inputs and results, the result"

    # 2. the CLI: `temporal --codec-endpoint` shows it decoded through `signoff codec-server`
    token = secrets.token_urlsafe()
    log = tmp_path / "codec.log"
    with codec_server(keys_file, token, log) as url:
        _, shown, _ = await run_temporal(
            address,
            "workflow",
            "show",
            "--workflow-id",
            handle.id,
            "--output",
            "json",
            "--codec-endpoint",
            url,
            "--codec-auth",
            f"Bearer {token}",
        )
        shown_payloads = list(json_payloads(json.loads(shown)))
        assert all(p.metadata.get("encoding") != ENCODING for p in shown_payloads), "all decoded"
        texts = b"".join(p.data for p in shown_payloads)
        assert request_marker.encode() in texts
        assert var_marker.encode() in texts
        _, plain, _ = await run_temporal(address, "workflow", "show", "--workflow-id", handle.id, "--output", "json")
        for marker in markers:
            assert_unreadable(marker, plain)
        code, _, _ = await run_temporal(
            address,
            "workflow",
            "show",
            "--workflow-id",
            handle.id,
            "--codec-endpoint",
            url,
            "--codec-auth",
            "Bearer not-the-token",
            check=False,
        )
        assert code != 0, "a wrong token decodes nothing"
        # a script's `temporal workflow start` through the codec server sends its input encrypted
        scripted = f"cr-test-{uuid.uuid4().hex[:8]}"
        await run_temporal(
            address,
            "workflow",
            "start",
            "--type",
            "ChangeRequestWorkflow",
            "--task-queue",
            f"{settings.task_queue}-nobody",
            "--workflow-id",
            scripted,
            "--input",
            json.dumps({"request": f"Deploy hello for ticket {request_marker}", "requester": "alice"}),
            "--codec-endpoint",
            url,
            "--codec-auth",
            f"Bearer {token}",
        )
        started = await raw_history(env.client, scripted)
        [scripted_input] = started.events[0].workflow_execution_started_event_attributes.input.payloads
        assert scripted_input.metadata[KEY_ID_METADATA] == old_id.encode()
        assert_unreadable(request_marker, started.SerializeToString())
        assert request_marker.encode() in PayloadKeys.load(keys_file).decrypt(scripted_input).data
        await run_temporal(address, "workflow", "terminate", "--workflow-id", scripted, "--reason", "test done")

        # 3. the Web UI: a preflight, then POST /<token>/decode from its origin
        decode_url = f"{url}/{token}/decode"
        preflight = await asyncio.to_thread(
            http,
            "OPTIONS",
            decode_url,
            None,
            {
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-namespace",
            },
        )
        assert (preflight.status, preflight.headers["access-control-allow-origin"]) == (204, UI_ORIGIN)
        ui = await asyncio.to_thread(post_payloads, decode_url, sealed, {"Origin": UI_ORIGIN})
        assert ui.headers["access-control-allow-origin"] == UI_ORIGIN
        assert ui.headers["access-control-allow-credentials"] == "true"
        texts = b"".join(p.data for p in decoded(ui))
        assert request_marker.encode() in texts
        assert var_marker.encode() in texts
        wrong = await asyncio.to_thread(post_payloads, f"{url}/{token[:-1]}x/decode", sealed, {"Origin": UI_ORIGIN})
        assert wrong.status == 401
        assert wrong.body == b""
        foreign = await asyncio.to_thread(post_payloads, decode_url, sealed[:1], {"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers
    logged = log.read_text()
    assert token not in logged
    assert request_marker not in logged
    assert var_marker not in logged

    # 4. rotation: a new key first; the old history still decodes, new payloads use the new key
    rotated = await asyncio.to_thread(run_signoff, "payload-key", "new", str(keys_file))
    assert rotated.returncode == 0, rotated.stderr
    new_id = rotated.stdout.strip()
    assert [line.split()[0] for line in keys_file.read_text().splitlines()] == [new_id, old_id]
    keys = PayloadKeys.load(keys_file)
    texts = b"".join(keys.decrypt(p).data for p in sealed)
    assert request_marker.encode() in texts
    assert var_marker.encode() in texts
    rotated_client = await env.connect_client(data_converter=data_converter(keys))
    async with running_worker(rotated_client, settings):
        # a query of the closed workflow replays its old history on a worker with the new keys
        old = rotated_client.get_workflow_handle_for(ChangeRequestWorkflow.run, handle.id)  # type: ignore[arg-type]
        status = await old.query(ChangeRequestWorkflow.status)
        assert status.phase == Phase.SUCCEEDED
        assert status.request.vars == {"greeting": var_marker}
        dry = await rotated_client.start_workflow(
            ChangeRequestWorkflow.run,  # type: ignore[misc]
            ChangeRequestInput(request="Deploy hello", requester="alice", dry_run=True, vars={"greeting": var_marker}),
            id=f"cr-test-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        assert (await dry.result()).outcome == Phase.PLANNED
    new_history = await raw_history(env.client, dry.id)
    assert {p.metadata[KEY_ID_METADATA] for p in encrypted_payloads(new_history)} == {new_id.encode()}
    assert_unreadable(var_marker, new_history.SerializeToString())

    only_new = tmp_path / "only-new-key"
    only_new.write_text(keys_file.read_text().splitlines()[0] + "\n")
    with pytest.raises(PayloadCodecError, match=f"encrypted with key '{old_id}', which is not in {KEYS_ENV}"):
        PayloadKeys.load(only_new).decrypt(sealed[0])


@pytest.mark.slow
async def test_dev_stack_gives_the_web_ui_its_codec_endpoint(tmp_path: Path, settings: Settings) -> None:
    keys_file = tmp_path / "payload-keys"
    add_new_key(keys_file)
    env = {
        "SIGNOFF_DATA_DIR": str(tmp_path / "dev"),
        "SIGNOFF_DATABASE_URL": str(settings.database_url),
        "SIGNOFF_PLAYBOOK_DIR": str(settings.playbook_dir),
        "SIGNOFF_INVENTORY": str(settings.inventory),
        KEYS_ENV: str(keys_file),
    }
    sealed = PayloadKeys.load(keys_file).encrypt(json_payload("marker-d3v"))
    async with dev_stack(env, address=f"127.0.0.1:{free_port()}", ui_port=free_port()) as stack:
        assert stack.ui_url

        async def ui_settings() -> dict[str, Any]:
            try:
                answer = await asyncio.to_thread(http, "GET", f"{stack.ui_url}/api/v1/settings")
            except OSError as err:
                raise AssertionError(f"the Web UI does not answer yet: {err}") from None
            assert answer.status == 200
            return dict(answer.json())

        endpoint = (await assert_eventually(ui_settings, timeout=60))["Codec"]["Endpoint"]
        codec_url, _, token = endpoint.rpartition("/")
        assert codec_url.startswith("http://127.0.0.1:")
        assert len(token) >= 32
        [told] = [line for line in stack.started if line.startswith("codec server")]
        assert f"--codec-endpoint {codec_url} --codec-auth 'Bearer {token}'" in told
        # what the browser does, from the UI's own origin
        origin = stack.ui_url.replace("127.0.0.1", "localhost")
        ui = await asyncio.to_thread(post_payloads, f"{endpoint}/decode", [sealed], {"Origin": origin})
        assert ui.headers["access-control-allow-origin"] == origin
        assert decoded(ui) == [json_payload("marker-d3v")]
    with pytest.raises(ConnectionRefusedError):  # stopped with the stack
        await asyncio.to_thread(http, "OPTIONS", f"{codec_url}/decode")
