"""Where a step will run, resolved with Ansible's own inventory API.

The plan shows an approver which hosts each step touches, so the answer must be the one
ansible-playbook would give: host patterns go through `InventoryManager.get_hosts` (groups,
children, `web:&prod`, `!db`, globs, `~regex`, `web[0]`, the implicit localhost), never through
a re-implementation. Plain words ("the media servers") are a different matter: they are
matched against exact host and group names only and never become a pattern with wildcards or
operators, because a typo must not turn into more hosts than the requester named.

`names()` leaves out the implicit `all` and `ungrouped` groups and `match_target` never returns
them: "all" is every host, which plain words must not reach by accident ("all the web servers"
is the web group); every host takes an explicit pattern. A loaded `Inventory` is shared between
threads as is. Variable names are computed at load; values are never returned.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager, split_host_pattern
from ansible.vars.manager import VariableManager
from rapidfuzz import fuzz, process

from activities.inventory_source import Fingerprint, InventoryError, fingerprint, read, reason_of
from workflows.types import SITE_NAME

# Groups Ansible creates by itself; see the module docstring for why they are not targets.
IMPLICIT_GROUPS: Final = frozenset({"all", "ungrouped"})
MAX_SUGGESTIONS: Final = 5
SITE_VAR: Final = "signoff_site"
SUGGESTION_SCORE: Final = 65  # rapidfuzz WRatio: "wbe" still suggests "web", "dtabase" not "db"

_FILLERS: Final = frozenset({"the", "all", "of", "our", "my", "every", "each"})
_EVERYTHING: Final = frozenset({"all", "every", "everything", "everywhere"})
_PLURAL_NOUNS: Final = frozenset({"servers", "hosts", "boxes", "machines", "nodes", "vms", "instances", "groups"})
_SINGULAR_NOUNS: Final = frozenset({"server", "host", "box", "machine", "node", "vm", "instance"})
_SEPARATORS: Final = re.compile(r"[\s_-]+")
_PATTERN_SYNTAX: Final = re.compile(r"[*?\[\]~:,!&]")


class TargetKind(StrEnum):
    HOST = "host"
    GROUP = "group"


_ANY_KIND: Final = frozenset(TargetKind)


@dataclass(frozen=True)
class TargetMatch:
    """What a target phrase means: `pattern` is an exact inventory name, or None with `why`."""

    phrase: str
    pattern: str | None
    kind: TargetKind | None
    why: str
    suggestions: tuple[str, ...] = ()


class Inventory:
    """A loaded inventory. Build one with `Inventory.load`."""

    def __init__(
        self,
        path: Path,
        manager: InventoryManager,
        var_names: dict[str, frozenset[str]],
        vaulted: tuple[Path, ...] = (),
    ) -> None:
        self.path = path
        # Vault-encrypted vars files: read without the vault password, their names are unknown.
        self.vaulted_files = vaulted
        self._manager = manager
        self._var_names = var_names
        self._variables: VariableManager | None = None  # made when a site is first asked for
        self._lock = threading.RLock()
        # Ansible's hosts dict keeps file order, which is what "inventory order" means to users.
        self._position = {str(name): index for index, name in enumerate(manager.hosts)}
        self._members = {
            str(name): tuple(str(host.name) for host in group.get_hosts()) for name, group in manager.groups.items()
        }
        entries = [(name, TargetKind.HOST) for name in self._position]
        entries += [(name, TargetKind.GROUP) for name in self._members if name not in IMPLICIT_GROUPS]
        self._names = frozenset(name for name, _ in entries)
        self._sorted_names = sorted(self._names)
        # One index per matching tier, strictest first; see match_target.
        self._tiers = tuple((how, key, _index(entries, key)) for how, key in _TIERS)

    def __repr__(self) -> str:
        # Never the manager: its hosts carry variable values, and reprs end up in logs.
        return f"Inventory({str(self.path)!r}, hosts={len(self._position)}, groups={len(self._members)})"

    @classmethod
    def load(cls, path: Path) -> Inventory:
        """The inventory at `path` (a file, or a directory of them), parsed once per content."""
        return _CACHE.load(path)

    def names(self) -> frozenset[str]:
        """Every host and group name, without the implicit `all` and `ungrouped`."""
        return self._names

    def hosts(self, pattern: str) -> list[str]:
        """The hosts an Ansible host pattern selects, in inventory order.

        Raises InventoryError for a pattern Ansible rejects, a template, or one Ansible would read
        as every host although it names none (empty, ",", "[", a bare "~").
        """
        self._check_pattern(pattern)
        with self._lock:
            try:
                found = self._manager.get_hosts(pattern)
            except AnsibleError as exc:
                raise InventoryError(self.path, f"host pattern {pattern!r}: {reason_of(exc)}") from exc
        return self._in_order(str(host.name) for host in found)

    def step_hosts(self, playbook_patterns: list[str], limit: str | None) -> list[str]:
        """The hosts a playbook run touches: its plays' `hosts:` patterns, cut down to `limit`.

        One pattern per play; a play whose `hosts:` is a YAML list passes it joined with ','.
        """
        selected = {host for pattern in playbook_patterns for host in self.hosts(pattern)}
        if limit is not None:
            selected &= set(self.hosts(limit))
        return self._in_order(selected)

    def sites(self, hosts: list[str]) -> dict[str | None, list[str]]:
        """`hosts` by the site that runs their playbooks: the `signoff_site` Ansible gives each
        (its own, its groups', group_vars/, host_vars/); None where none is set. A site is a
        plain name (lowercase letters, digits, dashes; not `playbooks`), never a template."""
        found: dict[str | None, list[str]] = {}
        with self._lock:
            if self._variables is None:
                self._variables = VariableManager(loader=self._manager._loader, inventory=self._manager)
            for name in hosts:
                host = self._manager.get_host(name)
                if host is None:
                    raise InventoryError(self.path, f"no such host: {name}")
                value = self._variables.get_vars(host=host, include_hostvars=False).get(SITE_VAR)
                if value is not None and (not isinstance(value, str) or not SITE_NAME.fullmatch(value)):
                    raise InventoryError(
                        self.path,
                        f"host {name}: {SITE_VAR} must be a site name (lowercase letters, digits and dashes, "
                        "at most 40, not `playbooks`)",
                    )
                found.setdefault(value, []).append(name)
        return found

    def defined_vars(self, hosts: list[str]) -> frozenset[str]:
        """Names of the variables the inventory defines for every one of `hosts` (empty for none).

        Names inside `vaulted_files` are unknown here and not counted; an unknown host raises.
        """
        if not hosts:
            return frozenset()
        unknown = sorted(set(hosts) - self._var_names.keys())
        if unknown:
            raise InventoryError(self.path, f"no such host: {', '.join(unknown)}")
        return frozenset.intersection(*(self._var_names[host] for host in hosts))

    def match_target(self, phrase: str) -> TargetMatch:
        """What a target phrase ("nas01", "group media", "the media servers") names, exactly.

        Candidates are tried from the most literal (the phrase as typed) to the most stripped
        (without articles and nouns such as "servers"); each is compared by name, then ignoring
        case, then ignoring case, '-', '_' and spaces. The first tier with a hit decides: one
        hit is the answer, two are ambiguous and answer nothing.
        """
        text = " ".join(phrase.split())
        if not text:
            return TargetMatch(phrase, None, None, "is empty")
        literal, *readings = _candidates(text)
        if (found := self._lookup(phrase, text, *literal)) is not None:
            return found
        if _means_everything(text):
            return TargetMatch(phrase, None, None, "would select every host in the inventory; name a group or a host")
        for candidate, kinds in readings:
            if (found := self._lookup(phrase, text, candidate, kinds)) is not None:
                return found
        return self._no_match(phrase, (readings or [literal])[-1][0])

    def _lookup(self, phrase: str, text: str, candidate: str, kinds: frozenset[TargetKind]) -> TargetMatch | None:
        """The answer for one reading of the phrase, or None when it names nothing."""
        for how, key, index in self._tiers:
            hits = sorted({hit for hit in index.get(key(candidate), ()) if hit[1] in kinds})
            if len(hits) == 1:
                read_as = "" if candidate == text else f"read as {candidate!r}: "
                return self._exact(phrase, *hits[0], how, read_as)
            if hits:
                options = " or ".join(f"{kind} {name!r}" for name, kind in hits)
                return TargetMatch(phrase, None, None, f"is ambiguous: could be {options}; name one exactly")
        return None

    def _exact(self, phrase: str, name: str, kind: TargetKind, how: str, read_as: str) -> TargetMatch:
        # A name is only a safe pattern if Ansible reads it as exactly that host or group: a
        # group sharing a host's name is read as the host alone, and odd names may parse as syntax.
        expected = [name] if kind is TargetKind.HOST else list(self._members[name])
        try:
            selected = self.hosts(name)
        except InventoryError as exc:
            return TargetMatch(phrase, None, None, f"{kind} {name!r} cannot be used as a host pattern: {exc.reason}")
        if selected != self._in_order(expected):
            shown = ", ".join(selected[:5]) + (f" and {len(selected) - 5} more" if len(selected) > 5 else "")
            why = f"{kind} {name!r} cannot be targeted exactly: Ansible reads it as {shown or 'nothing'}"
            if name in self._position and name in self._members:
                why += " (a host and a group share that name)"
            return TargetMatch(phrase, None, None, why)
        return TargetMatch(phrase, name, kind, f"{read_as}{kind} {name!r} ({how})")

    def _no_match(self, phrase: str, query: str) -> TargetMatch:
        found = process.extract(
            _fold(query),
            self._sorted_names,
            scorer=fuzz.WRatio,
            processor=_fold,
            limit=MAX_SUGGESTIONS,
            score_cutoff=SUGGESTION_SCORE,
        )
        suggestions = tuple(str(choice) for choice, _score, _index in found)
        why = "matches no host or group in the inventory"
        if _PATTERN_SYNTAX.search(phrase):
            why += " (host patterns with wildcards or operators are not accepted here; name a host or a group)"
        if suggestions:
            why += f"; close names: {', '.join(suggestions)}"
        return TargetMatch(phrase, None, None, why, suggestions)

    def _check_pattern(self, pattern: str) -> None:
        # Ansible reads an empty pattern as `all`; a template needs variables we do not have,
        # and unrendered it would silently select nothing.
        if not pattern.strip():
            raise InventoryError(self.path, "empty host pattern")
        if "{{" in pattern or "{%" in pattern:
            raise InventoryError(self.path, f"host pattern {pattern!r} is a template; planning cannot render it")
        # Ansible drops what it cannot split ("[", ",") and reads what is left, possibly
        # nothing or a bare "~" (an empty regex), as every host.
        parts = split_host_pattern(pattern)
        if not parts or any(part.lstrip("!&") in ("", "~") for part in parts):
            raise InventoryError(self.path, f"host pattern {pattern!r} names no host or group")

    def _in_order(self, names: Iterable[str]) -> list[str]:
        # The implicit localhost is in no inventory position; it sorts after every real host.
        last = len(self._position)
        return sorted(set(names), key=lambda name: (self._position.get(name, last), name))


def _fold(text: str) -> str:
    return _SEPARATORS.sub("", text.casefold())


_TIERS: Final[tuple[tuple[str, Callable[[str], str]], ...]] = (
    ("exact name", str),
    ("same name but for case", str.casefold),
    ("same name but for case, '-', '_' and spaces", _fold),
)


def _index(entries: list[tuple[str, TargetKind]], key: Callable[[str], str]) -> dict[str, list[tuple[str, TargetKind]]]:
    index: dict[str, list[tuple[str, TargetKind]]] = {}
    for name, kind in entries:
        index.setdefault(key(name), []).append((name, kind))
    return index


def _candidates(text: str) -> list[tuple[str, frozenset[TargetKind]]]:
    """Readings of a phrase, most literal first, each with the kinds it may name."""
    words = text.split()
    start = 0
    while start < len(words) - 1 and words[start].casefold() in _FILLERS:
        start += 1
    rest = words[start:]
    found = [(text, _ANY_KIND)]
    head, last = rest[0].casefold(), rest[-1].casefold()
    if len(rest) > 1 and head in ("group", "host"):
        found.append((" ".join(rest[1:]), frozenset({TargetKind(head)})))
    else:
        found.append((" ".join(rest), _ANY_KIND))
        if len(rest) > 1 and last in _PLURAL_NOUNS | {"group"}:
            found.append((" ".join(rest[:-1]), frozenset({TargetKind.GROUP})))  # many of them: a group
        elif len(rest) > 1 and last in _SINGULAR_NOUNS:
            found.append((" ".join(rest[:-1]), _ANY_KIND))
    return list(dict.fromkeys(found))


def _means_everything(text: str) -> bool:
    words = {word.casefold() for word in text.split()}
    return bool(words & _EVERYTHING) and words <= _FILLERS | _EVERYTHING | _PLURAL_NOUNS | _SINGULAR_NOUNS


class _LoadCache:
    """Loaded inventories per resolved path, kept while the files under it stay unchanged.

    One lock for lookups and parses: Ansible's plugin loaders, vars plugin caches and display
    are process-wide, so parses could not safely run side by side anyway, and threads that ask
    for the same inventory at once must get one parse, not eight.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[Fingerprint, Inventory]] = {}

    def load(self, path: Path) -> Inventory:
        resolved = path.expanduser().resolve()
        with self._lock:
            stamp = fingerprint(resolved)
            entry = self._entries.get(resolved)
            if entry is not None and entry[0] == stamp:
                return entry[1]
            # Fingerprint first: a file changed during the parse makes the next load parse again.
            parsed = read(resolved)
            inventory = Inventory(parsed.path, parsed.manager, parsed.var_names, parsed.vaulted)
            self._entries[resolved] = (stamp, inventory)
            return inventory


_CACHE: Final = _LoadCache()
