"""Extra vars a requester may not set: every name Ansible gives a meaning of its own is refused
at input, naming the var (issue 5). The static list in workflows/types.py must cover what the
installed ansible-core reserves."""

from __future__ import annotations

import ansible.constants as C
import pytest
from ansible.vars.reserved import get_reserved_names

from workflows.validation import InvalidInput, parse_input, reserved_var

PROBES = [
    "ansible_ssh_common_args",  # ProxyCommand: a command on the worker host
    "ansible_connection",  # `local` moves a remote play onto the worker
    "ansible_become",
    "ansible_become_user",
    "ansible_become_password",
    "ansible_python_interpreter",
    "ansible_host",
    "hostvars",
    "groups",
    "group_names",
    "inventory_hostname",
    "inventory_dir",
    "playbook_dir",
    "role_path",
    "omit",
    "environment",
    "item",
    "lookup",
    "vars",
    "_ansible_no_log",
    "ANSIBLE_CONNECTION",
]


@pytest.mark.parametrize("name", PROBES)
def test_reserved_names_are_refused_naming_the_var(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_input({"request": "Deploy hello", "requester": "alice", "vars": {name: "x"}})

    assert caught.value.field == f"vars.{name}"
    assert "reserves" in caught.value.problem


def test_the_static_list_covers_what_ansible_core_reserves() -> None:
    magic = {alias for aliases in C.MAGIC_VARIABLE_MAPPING.values() for alias in aliases}
    ansible_names = set(get_reserved_names()) | set(C.INTERNAL_STATIC_VARS) | magic | set(C.COMMON_CONNECTION_VARS)

    missed = sorted(n for n in ansible_names if not reserved_var(n))

    assert missed == []


@pytest.mark.parametrize("name", ["greeting", "kuma_port", "db_password", "ansiblefoo", "my_ansible_var"])
def test_ordinary_names_pass(name: str) -> None:
    assert parse_input({"request": "x", "requester": "a", "vars": {name: 1}}).vars == {name: 1}
