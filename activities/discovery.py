"""Playbook discovery: which files of a playbook repository are playbooks, and what each does.

`discover` is `walk_playbook_files` (the tree: what to read, and what is settled unread) plus
`parse_playbook` on each file read, which judges it from its bytes alone; a cache keyed by path
and content hash can reuse the walk and parse only the files that changed, rebuilding the same
`Catalog` with `catalog_of`. Each YAML file becomes one of: an `Entry` (a list of plays:
mappings with `hosts` or `import_playbook`); `Skipped`, quietly (role trees, vars, inventories,
tool configs, YAML that is no playbook); or `Broken`, with the reason reported (invalid YAML, a
YAML bomb, over 1 MiB, vault-encrypted without a header, not UTF-8, a symlink out of the
repository, a bad `# signoff:` header). Nothing in a file can crash or stall it. All three
round-trip through JSON with `item_to_json` and `item_from_json`.

A `# signoff:` header (DESIGN.md section 4) says what a playbook does; fields it leaves out, and
playbooks without one, are read from the path and play names by `naming.read_name`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from activities import vocabulary as vocab
from activities.naming import read_name
from activities.safe_yaml import InvalidYaml, YamlTooComplex, load

MAX_BYTES = 1 << 20
Source = Literal["header", "path"]
SOURCES: tuple[Source, ...] = ("header", "path")


@dataclass(frozen=True)
class VarSpec:
    name: str
    type: str | None = None  # str | int | bool | list | dict | float; None: any
    secret: bool = False


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
    imports: tuple[str, ...] = ()
    vault: bool = False
    service_words: tuple[str, ...] = ()  # words of the path that chose the service
    action_words: tuple[str, ...] = ()  # ... and the action ("reboot" in reboot_hosts.yml)
    qualifiers: tuple[str, ...] = ()  # other words of the name ("app" in nextcloud_app_update)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem


@dataclass(frozen=True)
class Skipped:
    path: str  # a folder's ends with "/"
    reason: str


@dataclass(frozen=True)
class Broken:
    path: str
    reason: str


Item = Entry | Skipped | Broken


@dataclass(frozen=True, eq=False)  # identity equality: usable as a cache key, cheap to hash
class Catalog:
    entries: tuple[Entry, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    broken: tuple[Broken, ...] = ()


_INVENTORY = "inventory"
SKIP_DIRS = {name: reason for reason, names in {
    "role part": "tasks handlers defaults meta", "variables": "vars", "templates": "templates",
    "static files": "files", "molecule scenarios": "molecule", "role tree": "roles",
    "collections": "collections", _INVENTORY: "inventory inventories group_vars host_vars",
    "plugins or modules": "library module_utils plugins filter_plugins lookup_plugins "
                          "callback_plugins", "vendored": "node_modules venv __pycache__",
}.items() for name in names.split()}
SKIP_FILES = {name: reason for reason, names in {
    "galaxy requirements": "requirements", "collection metadata": "galaxy",
    "compose file": "docker-compose compose", _INVENTORY: "hosts inventory",
    "tool config": "mkdocs ansible-navigator execution-environment dependabot codecov "
                   "renovate taskfile action netlify",
}.items() for name in names.split()}


def discover(playbook_dir: Path) -> Catalog:
    """Every YAML file under `playbook_dir`, judged once: the walk, then each file parsed."""
    files, skipped, broken = walk_playbook_files(playbook_dir)
    parsed = (_parse_file(rel, path) for rel, path in files)
    return catalog_of([*skipped, *broken, *parsed])


def walk_playbook_files(playbook_dir: Path
                        ) -> tuple[list[tuple[str, Path]], list[Skipped], list[Broken]]:
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


def _judge(root: Path, item: os.DirEntry[str], rel: str
           ) -> tuple[str, Path] | Skipped | Broken | str | None:
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
        tuple(i for i in found if isinstance(i, Entry)),
        tuple(sorted((i for i in found if isinstance(i, Skipped)), key=lambda i: i.path)),
        tuple(sorted((i for i in found if isinstance(i, Broken)), key=lambda i: i.path)),
    )


def _skip_by_name(name: str) -> str | None:
    stem = PurePosixPath(name).stem.lower()
    if name.startswith("."):
        return "hidden"
    return _INVENTORY if stem.endswith(("inventory", "inventories")) else SKIP_FILES.get(stem)


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
        header = _header(text)
        vault = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")),
                     "").startswith("$ANSIBLE_VAULT;")
        if vault and header is None:
            return Broken(rel_path, "vault-encrypted: add a signoff header")
        verdict = [] if vault else _classify(rel_path, load(text))
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
        return Broken(rel_path, f"invalid YAML: {err}")


class HeaderError(Exception):
    """The `# signoff:` header is there but wrong; the message says which field and why."""


def _is_play(item: object) -> bool:
    return isinstance(item, dict) and any(
        k in item for k in ("hosts", "import_playbook", "ansible.builtin.import_playbook"))


def _classify(rel: str, docs: list[Any]) -> list[dict[str, Any]] | Skipped | Broken:
    data = docs[0] if docs else None
    if len(docs) > 1:
        if isinstance(data, list) and any(_is_play(p) for p in data):
            return Broken(rel, "more than one YAML document")
        return Skipped(rel, "not a playbook (several YAML documents)")
    if data is None:
        return Skipped(rel, "empty")
    if isinstance(data, dict):
        groups = [v for v in data.values() if isinstance(v, dict)]
        if "all" in data or any({"hosts", "children"} & set(g) for g in groups):
            return Skipped(rel, "an inventory")
        return Skipped(rel, "not a playbook (a mapping)")
    if not isinstance(data, list) or not any(_is_play(p) for p in data):
        return Skipped(rel, "not a playbook (no plays)")
    bad = [str(i + 1) for i, p in enumerate(data) if not _is_play(p)]
    if bad:
        return Broken(rel, f"item {', '.join(bad[:5])} of the playbook is not a play")
    return data


_HEADER_FIELDS = frozenset({"service", "action", "description", "aliases", "required_vars",
                            "risk", "after", "vars", "timeout", "idle_timeout"})
_VAR_TYPES = frozenset({"str", "int", "bool", "list", "dict", "float"})
_TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_]\w*)")
_MAGIC_VARS = frozenset({"groups", "hostvars", "inventory_hostname", "group_names",
                         "play_hosts", "ansible_play_hosts", "omit"})
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _header(text: str) -> dict[str, Any] | None:
    """The `# signoff:` block among the leading comments, parsed as YAML."""
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not block:
            if stripped.startswith("#") and stripped[1:].strip().startswith("signoff:"):
                block.append(stripped[1:].strip())
            elif stripped and not stripped.startswith(("#", "---", "%")):
                return None  # a header must come before the plays
            continue
        body = line[2:] if line.startswith("# ") else line[1:]
        if not line.startswith("#") or (body.strip() and not body[0].isspace()):
            break  # the block ends at the first line that is not an indented comment
        block.append(body)
    if not block:
        return None
    try:
        docs = load("\n".join(block))
    except (YamlTooComplex, InvalidYaml) as err:
        raise HeaderError(f"not valid YAML: {err}") from err
    header = docs[0].get("signoff") if docs and isinstance(docs[0], dict) else None
    if not isinstance(header, dict):
        raise HeaderError("`signoff:` must be a mapping of fields")
    unknown = sorted(str(k) for k in header if k not in _HEADER_FIELDS)
    if unknown:
        raise HeaderError(f"unknown field {unknown[0]!r}")
    return header


def _text(header: dict[str, Any], key: str) -> str:
    value = header.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        raise HeaderError(f"{key} must be text, got {value!r}")
    return "" if value is None else str(value).strip()


def _names(header: dict[str, Any], key: str) -> tuple[str, ...]:
    value = header.get(key)
    items = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, (str, int)) for v in items):
        raise HeaderError(f"{key} must be a list of names, got {value!r}")
    return tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))


def _duration(header: dict[str, Any], key: str) -> int | None:
    """Seconds in `30m`, `90s`, `2h`, `1h30m`, `1d` or a bare number of seconds."""
    value = header.get(key)
    if value is None:
        return None
    m = _DURATION.fullmatch(str(value).strip().lower().replace(" ", ""))
    seconds = value if isinstance(value, int) and not isinstance(value, bool) else sum(
        int(n or 0) * unit for n, unit in zip(m.groups(), (86400, 3600, 60, 1), strict=True)
    ) if m else 0
    if seconds <= 0:
        raise HeaderError(f"{key} must be a duration like 30m, 90s or 2h, got {value!r}")
    return seconds


def _vars(value: object) -> tuple[VarSpec, ...]:
    """`vars:` as a mapping name -> {type?, secret?}, or a bare list of names."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(VarSpec(v) for v in value)
    if not isinstance(value, dict):
        raise HeaderError("vars must map names to {type, secret} or list names")
    specs = []
    for name, given in value.items():
        spec = {} if given is None else given
        if not isinstance(spec, dict) or set(spec) - {"type", "secret", "description"}:
            raise HeaderError(f"vars.{name} may only set type, secret and description")
        kind, secret = spec.get("type"), spec.get("secret", False)
        if kind is not None and kind not in _VAR_TYPES:
            raise HeaderError(f"vars.{name}.type must be one of {', '.join(sorted(_VAR_TYPES))}")
        if not isinstance(secret, bool):
            raise HeaderError(f"vars.{name}.secret must be true or false")
        specs.append(VarSpec(str(name), kind, secret))
    return tuple(specs)


def _hosts(plays: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
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


def _entry(rel: str, data: bytes, header: dict[str, Any] | None, plays: list[dict[str, Any]],
           *, vault: bool) -> Entry:
    h = header or {}
    play_names = [p["name"] for p in plays if isinstance(p.get("name"), str)]
    hosts, host_vars = _hosts(plays)
    name = read_name(rel, play_names, hosts)
    verb = _text(h, "action").lower()
    if len(verb.split()) > 1 and vocab.canonical_action(verb) is None:
        raise HeaderError(f"action must be one verb, got {verb!r}")
    risk = _text(h, "risk").lower()
    if risk and risk not in vocab.RISKS:
        raise HeaderError(f"risk must be low, medium or high, got {risk!r}")
    service = _text(h, "service")
    declared = h.get("vars")
    return Entry(
        path=rel,
        service=service or name.service,
        action=vocab.canonical_action(verb) or vocab.normalise(verb) if verb else name.action,
        sha256=hashlib.sha256(data).hexdigest(),
        source="header" if header is not None else "path",
        description=_text(h, "description") or (play_names[0] if play_names else ""),
        # the path's aliases describe the path's service, not one the header names
        aliases=_names(h, "aliases") if "aliases" in h or service else name.aliases,
        required_vars=tuple(dict.fromkeys(_names(h, "required_vars") + host_vars)),
        risk=next((r for r in vocab.RISKS if r == risk),
                  vocab.default_risk(verb or name.verb_word or name.action)),
        risk_explicit=bool(risk),
        after=tuple(a.removesuffix(".yml").removesuffix(".yaml") for a in _names(h, "after")),
        hosts=hosts,
        host_vars=host_vars,
        vars=_vars(declared) if declared is not None else (),
        vars_declared=declared is not None,
        timeout=_duration(h, "timeout"),
        idle_timeout=_duration(h, "idle_timeout"),
        imports=tuple(str(p.get("import_playbook") or p.get("ansible.builtin.import_playbook"))
                      for p in plays if "hosts" not in p),
        vault=vault,
        service_words=(service,) if service else name.service_words,
        action_words=(verb,) if verb else name.action_words,
        qualifiers=name.qualifiers,
    )


_ENTRY_FIELDS = {f.name: str(f.type) for f in fields(Entry)}
_VAR_KEYS = frozenset(f.name for f in fields(VarSpec))


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """Every field of `entry` as JSON values: tuples as lists, each of `vars` as a mapping."""
    out = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    out.update({k: list(v) for k, v in out.items() if isinstance(v, tuple)})
    out["vars"] = [{"name": v.name, "type": v.type, "secret": v.secret} for v in entry.vars]
    return out


def entry_from_json(d: Mapping[str, Any]) -> Entry:
    """The `Entry` that `entry_to_json` gave `d` (a "kind" key is ignored).

    Raises ValueError unless `d` has exactly the fields of today's `Entry`, each of its type:
    a cache row from an older shape is a miss, never a half-filled entry.
    """
    data = {k: v for k, v in d.items() if k != "kind"}
    if set(data) != set(_ENTRY_FIELDS):
        raise ValueError(f"not an entry: fields {sorted(set(data) ^ set(_ENTRY_FIELDS))} differ")
    bad = [name for name, kind in _ENTRY_FIELDS.items() if not _fits(data[name], kind)]
    if bad:
        raise ValueError(f"not an entry: bad {', '.join(bad)}")
    data.update({k: tuple(v) for k, v in data.items() if isinstance(v, list)})
    data["vars"] = tuple(VarSpec(v["name"], v["type"], v["secret"]) for v in data["vars"])
    return Entry(**data)


def _fits(value: Any, kind: str) -> bool:
    """Whether a JSON value fits an `Entry` field annotated `kind`."""
    if kind == "tuple[VarSpec, ...]":
        return isinstance(value, list) and all(
            isinstance(v, dict) and set(v) == _VAR_KEYS and isinstance(v["name"], str)
            and (v["type"] is None or v["type"] in _VAR_TYPES) and isinstance(v["secret"], bool)
            for v in value)
    if kind == "tuple[str, ...]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "int | None":
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "Source":
        return value in SOURCES
    if kind == "vocab.Risk":
        return value in vocab.RISKS
    return isinstance(value, str)


def item_to_json(item: Item) -> dict[str, Any]:
    """An entry, skipped or broken file as JSON, its class named by "kind"."""
    if isinstance(item, Entry):
        return {"kind": "entry", **entry_to_json(item)}
    return {"kind": "skipped" if isinstance(item, Skipped) else "broken",
            "path": item.path, "reason": item.reason}


def item_from_json(d: Mapping[str, Any]) -> Item:
    """What `item_to_json` gave `d`; ValueError for any other shape."""
    name = d.get("kind")
    if name == "entry":
        return entry_from_json(d)
    kinds: dict[str, type[Skipped] | type[Broken]] = {"skipped": Skipped, "broken": Broken}
    kind = kinds.get(name) if isinstance(name, str) else None
    if kind is None or set(d) != {"kind", "path", "reason"} or not all(
            isinstance(d[k], str) for k in ("path", "reason")):
        raise ValueError(f"not an entry, skipped or broken item: {sorted(d)}")
    return kind(d["path"], d["reason"])
