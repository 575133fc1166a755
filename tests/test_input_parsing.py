"""`parse_input`: strict validation of the workflow input, with errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.types import ChangeRequestInput
from workflows.validation import InvalidInput, parse_input

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
