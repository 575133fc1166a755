"""`parse_input` and the decision parsers: strict validation of the workflow input and of
approve, reject and decide payloads, with errors that name the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from workflows.types import ApproveInput, ChangeRequestInput, DecideInput, RejectInput
from workflows.validation import InvalidInput, parse_approve, parse_decide, parse_input, parse_reject

MINIMAL = {"request": "Deploy hello", "requester": "alice"}


def invalid(value: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_input(value)
    return caught.value


def test_minimal_input_gets_defaults() -> None:
    assert parse_input(dict(MINIMAL)) == ChangeRequestInput(
        request="Deploy hello", requester="alice", inventory=None, vars={}, dry_run=False
    )


def test_full_input_is_trimmed() -> None:
    parsed = parse_input(
        {
            "request": "  Deploy hello ",
            "requester": " alice ",
            "inventory": " web ",
            "vars": {"greeting": "hi", "ports": [80, 443], "tls": {"enabled": True}},
            "dry_run": True,
        }
    )

    assert parsed == ChangeRequestInput(
        request="Deploy hello",
        requester="alice",
        inventory="web",
        vars={"greeting": "hi", "ports": [80, 443], "tls": {"enabled": True}},
        dry_run=True,
    )


def test_a_dataclass_is_accepted_as_well_as_a_dict() -> None:
    value = ChangeRequestInput(request="Deploy hello", requester="alice", vars={"a": 1})

    assert parse_input(value) == value


@pytest.mark.parametrize("missing", ["request", "requester"])
def test_missing_required_field(missing: str) -> None:
    value = {k: v for k, v in MINIMAL.items() if k != missing}

    err = invalid(value)

    assert (err.field, err.problem) == (missing, "is required")


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("request", 5, "must be a string, got a number"),
        ("request", None, "must be a string, got null"),
        ("request", "   ", "must not be empty"),
        ("requester", ["alice"], "must be a string, got an array"),
        ("requester", "", "must not be empty"),
        ("inventory", 7, "must be a non-empty string"),
        ("inventory", " ", "must be a non-empty string"),
        ("vars", ["greeting"], "must be an object, got an array"),
        ("vars", "greeting=hi", "must be an object, got a string"),
        ("dry_run", "yes", "must be true or false, got a string"),
        ("dry_run", 1, "must be true or false, got a number"),
        ("dry_run", None, "must be true or false, got null"),
    ],
)
def test_wrong_type_names_the_field(field: str, value: object, problem: str) -> None:
    err = invalid({**MINIMAL, field: value})

    assert err.field == field
    assert err.problem.startswith(problem)
    assert str(err).startswith(f"{field}: ")


def test_unknown_field_is_an_error_naming_it() -> None:
    err = invalid({**MINIMAL, "dryrun": True})

    assert err.field == "dryrun"
    assert "dryrun" in str(err)
    assert "dry_run" in err.problem, "the message lists the fields that are known"


@pytest.mark.parametrize(
    ("value", "kind"),
    [([MINIMAL], "an array"), ("Deploy hello", "a string"), (None, "null"), (3, "a number")],
)
def test_non_object_input(value: object, kind: str) -> None:
    err = invalid(value)

    assert err.field == ""
    assert str(err) == f"input must be a JSON object, got {kind}"


@pytest.mark.parametrize(
    ("extra_vars", "path"),
    [
        ({"who": "{{ lookup('pipe','id') }}"}, "vars.who"),
        ({"users": [{"name": "ok"}, {"name": "{{ lookup('pipe','id') }}"}]}, "vars.users[1].name"),
        ({"cfg": {"when": "{% if %}"}}, "vars.cfg.when"),
        ({"cfg": {"list": [["x", "{# note #}"]]}}, "vars.cfg.list[0][1]"),
    ],
)
def test_jinja_anywhere_in_vars_is_rejected_with_its_path(extra_vars: dict[str, Any], path: str) -> None:
    err = invalid({**MINIMAL, "vars": extra_vars})

    assert err.field == path
    assert "Jinja" in err.problem


def test_braces_that_are_not_jinja_are_plain_data() -> None:
    extra_vars = {"json": '{"a": {"b": 1}}', "shell": "${HOME}", "pct": "100%"}

    assert parse_input({**MINIMAL, "vars": extra_vars}).vars == extra_vars


@pytest.mark.parametrize("name", ["bad-name", "1st", "has space", "", "dollar$"])
def test_invalid_var_name(name: str) -> None:
    err = invalid({**MINIMAL, "vars": {name: "x"}})

    assert err.field == f"vars.{name}"
    assert "not a valid Ansible variable name" in err.problem


def test_parsed_vars_are_a_copy() -> None:
    extra_vars = {"greeting": "hi"}

    parsed = parse_input({**MINIMAL, "vars": extra_vars})
    extra_vars["greeting"] = "changed later"

    assert parsed.vars == {"greeting": "hi"}


# The three decision payloads, each with its required fields; `via` and `subject` are parsed
# the same way in all of them.
DECISIONS = [
    pytest.param(parse_approve, {"approver": "bob"}, id="approve"),
    pytest.param(parse_reject, {"approver": "bob"}, id="reject"),
    pytest.param(parse_decide, {"operator": "bob", "action": "retry"}, id="decide"),
]
Parser = Callable[[object], ApproveInput | RejectInput | DecideInput]


@pytest.mark.parametrize(("parse", "base"), DECISIONS)
def test_via_and_subject_are_optional_and_kept_as_sent(parse: Parser, base: dict[str, Any]) -> None:
    for absent in (base, {**base, "via": None, "subject": None}):
        parsed = parse(dict(absent))
        assert (parsed.via, parsed.subject) == (None, None)
    for via in ("web", "cli", "script", "a", "a" + "-" * 31, "web2-inbox"):
        assert parse({**base, "via": via}).via == via
    for subject in ("local:alice", "oidc:https://idp.example#248289761001", "local:zoë", " padded ", "s" * 256):
        assert parse({**base, "subject": subject}).subject == subject


@pytest.mark.parametrize(("parse", "base"), DECISIONS)
@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("via", "", "must be a channel name"),
        ("via", "Web", "must be a channel name"),
        ("via", "1web", "must be a channel name"),
        ("via", "-web", "must be a channel name"),
        ("via", " web", "must be a channel name"),
        ("via", "web\n", "must be a channel name"),
        ("via", "wéb", "must be a channel name"),
        ("via", "web_inbox", "must be a channel name"),
        ("via", "w" * 33, "must be a channel name"),
        ("via", 3, "must be a string"),
        ("via", ["web"], "must be a string"),
        ("subject", "", "must be 1 to 256 characters"),
        ("subject", "   ", "must be 1 to 256 characters"),
        ("subject", "s" * 257, "must be 1 to 256 characters"),
        ("subject", "local:bob\napproved: mallory", "must not contain control"),
        ("subject", "local:bob\r", "must not contain control"),
        ("subject", "local:\x1b[31mbob", "must not contain control"),
        ("subject", "local:\x00bob", "must not contain control"),
        ("subject", "local:\u202ebob", "must not contain control"),  # a bidi override
        ("subject", "local:\u200bbob", "must not contain control"),  # zero width space
        ("subject", "local:bob\u2028approved: mallory", "line separator"),
        ("subject", 42, "must be a string"),
    ],
)
def test_a_bad_via_or_subject_is_refused_naming_the_field(
    parse: Parser, base: dict[str, Any], field: str, value: object, problem: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse({**base, field: value})

    assert caught.value.field == field
    assert problem in caught.value.problem
