"""Playbook discovery: which files of a playbook repository are playbooks, and what each does.

`discover` is `walk_playbook_files` (the tree: what to read, and what is settled unread) plus
`parse_playbook` on each file read, which judges it from its bytes alone; a cache keyed by path
and content hash can reuse the walk and parse only the files that changed, rebuilding the same
`Catalog` with `catalog_of`, which also resolves what each entry imports (`site.yml` runs on
the hosts of the playbooks it imports). Each YAML file becomes one of: an `Entry` (a list of
plays, see `plays.classify`); `Skipped`, quietly (role trees, vars, inventories, tool configs,
vault-encrypted `vault.yml`/`secrets.yml`, YAML that is no playbook); or `Broken`, with the
reason reported (invalid YAML, a YAML bomb, over 1 MiB, any other file vault-encrypted without
a header, not UTF-8, a symlink out of the repository, a bad `# signoff:` header). Nothing in a
file can crash or stall it. All three round-trip through JSON (activities/catalog_json.py).

A `# signoff:` header (`header.py`, DESIGN.md section 4) says what a playbook does; fields it
leaves out, and playbooks without one, are read from the path and play names by
`naming.read_name`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from activities import header as hdr
from activities import vocabulary as vocab
from activities.header import HeaderError, VarSpec
from activities.naming import read_name
from activities.plays import (
    Broken,
    Skipped,
    classify,
    first_line,
    may_be_plays,
    play_hosts,
    vault_file,
)
from activities.safe_yaml import InvalidYaml, YamlTooComplex, load

__all__ = [
    "MAX_BYTES",
    "SOURCES",
    "Broken",
    "Catalog",
    "Entry",
    "HeaderError",
    "Item",
    "Skipped",
    "Source",
    "VarSpec",
    "catalog_of",
    "discover",
    "parse_playbook",
    "read_candidate",
    "walk_playbook_files",
]

MAX_BYTES = 1 << 20
Source = Literal["header", "path"]
SOURCES: tuple[Source, ...] = ("header", "path")


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the playbook dir, posix
    service: str
    action: str  # canonical when the vocabulary knows the verb, else the verb itself
    sha256: str
    source: Source
    description: str = ""
    aliases: tuple[str, ...] = ()
    required_vars: tuple[str, ...] = ()
    risk: vocab.Risk = "medium"
    risk_explicit: bool = False  # set by the header: a request's sharper word cannot raise it
    after: tuple[str, ...] = ()  # file stems
    hosts: tuple[str, ...] = ()  # patterns; a templated one reads "set by var `target`"
    host_vars: tuple[str, ...] = ()
    vars: tuple[VarSpec, ...] = ()
    vars_declared: bool = False
    timeout: int | None = None  # seconds
    idle_timeout: int | None = None
    max_attempts: int | None = None  # header budget overrides
    max_execution_time: int | None = None  # seconds
    imports: tuple[str, ...] = ()
    vault: bool = False
    service_words: tuple[str, ...] = ()  # words of the path that chose the service
    action_words: tuple[str, ...] = ()  # ... and the action ("reboot" in reboot_hosts.yml)
    qualifiers: tuple[str, ...] = ()  # other words of the name ("app" in nextcloud_app_update)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem


Item = Entry | Skipped | Broken


@dataclass(frozen=True, eq=False)  # identity equality: usable as a cache key, cheap to hash
class Catalog:
    entries: tuple[Entry, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    broken: tuple[Broken, ...] = ()


_INVENTORY = "inventory"
SKIP_DIRS = {
    name: reason
    for reason, names in {
        "role part": "tasks handlers defaults meta",
        "variables": "vars",
        "templates": "templates",
        "static files": "files",
        "molecule scenarios": "molecule",
        "role tree": "roles",
        "collections": "collections",
        _INVENTORY: "inventory inventories group_vars host_vars",
        "plugins or modules": "library module_utils plugins filter_plugins lookup_plugins callback_plugins",
        "vendored": "node_modules venv __pycache__",
    }.items()
    for name in names.split()
}
SKIP_FILES = {
    name: reason
    for reason, names in {
        "galaxy requirements": "requirements",
        "collection metadata": "galaxy",
        "compose file": "docker-compose compose",
        _INVENTORY: "hosts inventory",
        "tool config": "mkdocs ansible-navigator execution-environment dependabot codecov "
        "renovate taskfile action netlify",
    }.items()
    for name in names.split()
}


def discover(playbook_dir: Path) -> Catalog:
    """Every YAML file under `playbook_dir`, judged once: the walk, then each file parsed."""
    files, skipped, broken = walk_playbook_files(playbook_dir)
    parsed = (_parse_file(rel, path) for rel, path in files)
    return catalog_of([*skipped, *broken, *parsed])


def walk_playbook_files(playbook_dir: Path) -> tuple[list[tuple[str, Path]], list[Skipped], list[Broken]]:
    """The files to parse, as (relative posix path, absolute path); what the walk itself skipped;
    and what it found broken.

    Depth first in sorted order, a folder's files before its subfolders. Settled without reading
    a byte: skipped folders and file names, hidden ones, symlinks leaving the repository or
    dangling, folders that cannot be listed, YAML that is no regular file or is over 1 MiB. A
    symlink inside the repository is listed at its own path with its resolved target as the
    absolute path. Raises OSError only when `playbook_dir` itself cannot be listed.
    """
    root = playbook_dir.resolve()
    files: list[tuple[str, Path]] = []
    skipped: list[Skipped] = []
    broken: list[Broken] = []
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as listing:
                items = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            if not rel:
                raise  # no playbook dir at all is the caller's problem, not a file's
            broken.append(Broken(rel, f"unreadable: {err.strerror}"))
            continue
        subdirs = []
        for item in items:
            try:
                verdict = _judge(root, item, rel + item.name)
            except OSError as err:
                verdict = Broken(rel + item.name, f"unreadable: {err.strerror}")
            if isinstance(verdict, str):
                subdirs.append((item.path, verdict))
            elif isinstance(verdict, tuple):
                files.append(verdict)
            elif isinstance(verdict, Skipped):
                skipped.append(verdict)
            elif isinstance(verdict, Broken):
                broken.append(verdict)
        stack.extend(reversed(subdirs))
    return files, skipped, broken


def _judge(root: Path, item: os.DirEntry[str], rel: str) -> tuple[str, Path] | Skipped | Broken | str | None:
    """A file to parse, a verdict, a folder to walk into (as its rel prefix), or None."""
    is_yaml = item.name.lower().endswith((".yml", ".yaml"))
    is_dir = item.is_dir()  # follows a symlink: judged below before anything walks into it
    path = Path(item.path)
    if item.name.startswith("."):
        return Skipped(rel + "/" * is_dir, "hidden") if is_yaml or is_dir else None
    if item.is_symlink():
        path = path.resolve()
        if not path.exists() or not path.is_relative_to(root):
            why = "dangling symlink" if not path.exists() else "symlink leaves the repository"
            return Broken(rel, why) if is_yaml or is_dir else None
        if is_dir:  # its files are catalogued at their real path; following could loop
            return Skipped(rel + "/", "symlinked directory inside the repository")
    if is_dir:
        try:
            names = set(os.listdir(item.path))
        except OSError as err:
            return Broken(rel + "/", f"unreadable: {err.strerror}")
        is_role = "tasks" in names and bool(names & {"meta", "defaults", "handlers", "vars"})
        part = SKIP_DIRS.get(item.name.lower()) or ("role tree" if is_role else None)
        return Skipped(rel + "/", part) if part else rel + "/"
    if not is_yaml:
        return None
    if (reason := _skip_by_name(item.name)) is not None:
        return Skipped(rel, reason)
    if not item.is_file():  # a FIFO named like a playbook would block the read forever
        return Broken(rel, "not a regular file")
    if item.stat().st_size > MAX_BYTES:  # judged before reading: a huge file is never loaded
        return Broken(rel, "larger than 1 MiB")
    return rel, path


def read_candidate(rel_path: str, path: Path) -> bytes | Broken:
    """A walked file's bytes, at most one more than `parse_playbook` accepts, or why not.

    Opened without blocking or following a last symlink, so a file swapped for a FIFO or a
    symlink since the walk is reported, never waited on or followed out of the repository.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return Broken(rel_path, "not a regular file")
            return handle.read(MAX_BYTES + 1)
    except OSError as err:
        return Broken(rel_path, f"unreadable: {err.strerror}")


def _parse_file(rel_path: str, path: Path) -> Item:
    data = read_candidate(rel_path, path)
    return data if isinstance(data, Broken) else parse_playbook(rel_path, data)


def catalog_of(items: Iterable[Item]) -> Catalog:
    """The catalog of walked and parsed items: entries in the order given (`discover` gives the
    walk's), skipped and broken sorted by path, wherever they were found."""
    found = list(items)
    return Catalog(
        _with_imports([i for i in found if isinstance(i, Entry)]),
        tuple(sorted((i for i in found if isinstance(i, Skipped)), key=lambda i: i.path)),
        tuple(sorted((i for i in found if isinstance(i, Broken)), key=lambda i: i.path)),
    )


def _with_imports(entries: list[Entry]) -> tuple[Entry, ...]:
    """Entries whose `import_playbook`s are resolved: running `site.yml` runs the plays it
    imports, so their hosts and the vars those need are its own too, and it is high risk if
    one of them is (unless its header says otherwise). Paths are relative to the importing
    file, as Ansible reads them; a templated or missing one adds nothing."""
    by_path = {e.path: e for e in entries}

    def imported(entry: Entry, seen: set[str]) -> list[Entry]:
        out: list[Entry] = []
        for name in entry.imports:
            path = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), name))
            child = None if "{" in name else by_path.get(path)
            if child is not None and child.path not in seen:
                seen.add(child.path)
                out += [child, *imported(child, seen)]
        return out

    result: list[Entry] = []
    for entry in entries:
        kids = imported(entry, {entry.path}) if entry.imports else []
        result.append(
            replace(
                entry,
                hosts=_union(entry.hosts, *(k.hosts for k in kids)),
                host_vars=_union(entry.host_vars, *(k.host_vars for k in kids)),
                required_vars=_union(entry.required_vars, *(k.required_vars for k in kids)),
                risk="high" if not entry.risk_explicit and any(k.risk == "high" for k in kids) else entry.risk,
            )
            if kids
            else entry
        )
    return tuple(result)


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


def _skip_by_name(name: str) -> str | None:
    stem = PurePosixPath(name).stem.lower()
    if name.startswith("."):
        return "hidden"
    if stem.endswith(("inventory", "inventories")):
        return _INVENTORY
    base = stem.split(".")[0]  # `docker-compose.dev.yml` is a compose file too
    return SKIP_FILES.get(stem) or (SKIP_FILES.get(base) if "." in stem else None)


def parse_playbook(rel_path: str, data: bytes) -> Item:
    """Judge one file from its content alone (pure: cache it by path and sha256)."""
    if (reason := _skip_by_name(PurePosixPath(rel_path).name)) is not None:
        return Skipped(rel_path, reason)
    if len(data) > MAX_BYTES:
        return Broken(rel_path, "larger than 1 MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return Broken(rel_path, f"not UTF-8 text (bad byte at offset {err.start})")
    try:
        header = hdr.read_header(text)
        vault = first_line(text).startswith("$ANSIBLE_VAULT;")
        if vault and header is None:
            return vault_file(rel_path)
        verdict = [] if vault else classify(rel_path, load(text))
        if isinstance(verdict, Skipped) and header is not None:
            return Broken(rel_path, f"has a signoff header but is {verdict.reason}")
        if not isinstance(verdict, list):
            return verdict
        return _entry(rel_path, data, header, verdict, vault=vault)
    except HeaderError as err:
        return Broken(rel_path, f"bad signoff header: {err}")
    except YamlTooComplex as err:
        return Broken(rel_path, f"YAML bomb refused: {err}")
    except InvalidYaml as err:
        if not may_be_plays(text):  # a templated app config, say
            return Skipped(rel_path, "not a playbook (not valid YAML, and no list of plays)")
        return Broken(rel_path, f"invalid YAML: {err}")
    except (ValueError, TypeError, ArithmeticError, RecursionError) as err:
        # What no check above foresaw: this file is broken, and the rest of the catalog stands.
        return Broken(rel_path, f"cannot be read: {type(err).__name__}: {str(err)[:200]}")


def _entry(rel: str, data: bytes, header: dict[str, Any] | None, plays: list[dict[str, Any]], *, vault: bool) -> Entry:
    h = hdr.fields_of(header)
    play_names = [p["name"] for p in plays if isinstance(p.get("name"), str)]
    hosts, host_vars = play_hosts(plays)
    # "Import wiki/deploy_wiki.yml" names an import, not what this playbook does
    name = read_name(rel, [p["name"] for p in plays if isinstance(p.get("name"), str) and "hosts" in p], hosts)
    return Entry(
        path=rel,
        service=h.service or name.service,
        action=h.action or name.action,
        sha256=hashlib.sha256(data).hexdigest(),
        source="header" if h.present else "path",
        description=h.description or (play_names[0] if play_names else ""),
        # the path's aliases describe the path's service, not one the header names
        aliases=h.aliases if h.aliases is not None else () if h.service else name.aliases,
        required_vars=tuple(dict.fromkeys(h.required_vars + host_vars)),
        risk=h.risk or vocab.default_risk(h.verb or name.verb_word or name.action),
        risk_explicit=h.risk is not None,
        after=h.after,
        hosts=hosts,
        host_vars=host_vars,
        vars=h.vars or (),
        vars_declared=h.vars is not None,
        timeout=h.timeout,
        idle_timeout=h.idle_timeout,
        max_attempts=h.max_attempts,
        max_execution_time=h.max_execution_time,
        imports=tuple(
            str(p.get("import_playbook") or p.get("ansible.builtin.import_playbook")) for p in plays if "hosts" not in p
        ),
        vault=vault,
        service_words=(h.service,) if h.service else name.service_words,
        action_words=(h.verb,) if h.verb else name.action_words,
        qualifiers=name.qualifiers,
    )
