"""What a YAML document of a playbook repository is, read from its plays.

`classify` tells a playbook (a list of plays: mappings with `hosts` or `import_playbook`) from
an inventory, a vars file or other YAML, which discovery skips quietly, and from a list that
is half plays, which it reports as broken. `play_hosts` reads the host patterns the plays
target, noting the vars that template them. `may_be_plays` judges text that is no YAML at all,
`vault_file` a file encrypted whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final

from activities import vocabulary as vocab


@dataclass(frozen=True)
class Skipped:
    path: str  # a folder's ends with "/"
    reason: str


@dataclass(frozen=True)
class Broken:
    path: str
    reason: str


_TEMPLATE_VAR: Final = re.compile(r"\{\{\s*([A-Za-z_]\w*)")
_MAGIC_VARS: Final = frozenset(
    {"groups", "hostvars", "inventory_hostname", "group_names", "play_hosts", "ansible_play_hosts", "omit"}
)


def is_play(item: object) -> bool:
    return isinstance(item, dict) and any(
        k in item for k in ("hosts", "import_playbook", "ansible.builtin.import_playbook")
    )


def classify(rel: str, docs: list[Any]) -> list[dict[str, Any]] | Skipped | Broken:
    """The plays of the YAML documents `docs` of file `rel`, or why they are none."""
    data = docs[0] if docs else None
    if len(docs) > 1:
        if isinstance(data, list) and any(is_play(p) for p in data):
            return Broken(rel, "more than one YAML document")
        return Skipped(rel, "not a playbook (several YAML documents)")
    if data is None:
        return Skipped(rel, "empty")
    if isinstance(data, dict):
        groups = [v for v in data.values() if isinstance(v, dict)]
        if "all" in data or any({"hosts", "children"} & set(g) for g in groups):
            return Skipped(rel, "an inventory")
        return Skipped(rel, "not a playbook (a mapping)")
    if not isinstance(data, list) or not any(is_play(p) for p in data):
        return Skipped(rel, "not a playbook (no plays)")
    bad = [str(i + 1) for i, p in enumerate(data) if not is_play(p)]
    if bad:
        return Broken(rel, f"item {', '.join(bad[:5])} of the playbook is not a play")
    return data


def play_hosts(plays: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Host patterns of every play in order, and the vars that template any of them."""
    hosts: dict[str, None] = {}
    host_vars: dict[str, None] = {}
    for play in plays:
        value = play.get("hosts")
        for item in value if isinstance(value, list) else [] if value is None else [value]:
            text = str(item).strip()
            if "{{" not in text and "{%" not in text:
                hosts.update(dict.fromkeys(p.strip() for p in re.split(r"[,:]", text) if p.strip()))
            elif (m := _TEMPLATE_VAR.search(text)) and m.group(1) not in _MAGIC_VARS:
                hosts[f"set by var `{m.group(1)}`"] = None
                host_vars[m.group(1)] = None
            else:
                hosts[f"templated: {text}"] = None
    return tuple(hosts), tuple(host_vars)


_PLAY_LIST: Final = re.compile(r"-(\s|$)|\[")  # a playbook is a top-level list
_SECRET_WORDS: Final = frozenset(
    vocab.normalise(w) for w in ("vault vaulted secret secrets credentials password passwords vars variables".split())
)


def first_line(text: str) -> str:
    """The first line of YAML content: no comment, directive or document marker."""
    return next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("#", "%", "---"))), "")


def may_be_plays(text: str) -> bool:
    """Whether text that is no valid YAML could still have been meant as a playbook: it opens
    a list. A Jinja-templated app config (`token: {{ x }}`) never was."""
    return bool(_PLAY_LIST.match(first_line(text)))


def vault_file(rel: str) -> Skipped | Broken:
    """An encrypted file named for secrets (`vault.yml`, `secrets.yml`) holds variables; any
    other could be a playbook that nobody can read without the key."""
    said = vocab.words(PurePosixPath(rel).stem)
    if set(said) & _SECRET_WORDS and not vocab.verbs_in(said):
        return Skipped(rel, "variables (vault-encrypted)")
    return Broken(rel, "vault-encrypted: add a signoff header")
