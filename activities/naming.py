"""Reading a playbook's path: which of its words are the verb, which the service.

`read_name` serves discovery for every playbook without a `# signoff:` header, and for the
fields a header leaves out. Words are compared in `vocabulary.normalise` form, the same as in
requests, so a name and a request that says it can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

from activities.grammar import ARTICLES
from activities.vocabulary import (
    CONFIG_EDIT_ACTIONS,
    CONFIG_NOUN,
    LIGHT_VERBS,
    NOUN_ACTIONS,
    PART_NOUNS,
    VERBS,
    WILDCARD_ACTION,
    Verb,
    choose_verb,
    core_action,
    is_filler,
    normalise,
    tokenize,
    verbs_in,
    words,
)

CONTAINER_DIRS: Final = frozenset(
    """
    playbooks playbook plays play pb books ansible src automation infra infrastructure ops
    runbooks jobs services apps applications stacks site main common maintenance misc tools utils
    admin""".split()
)
ENTRY_POINTS: Final = frozenset("main site playbook all default index".split())
SITE_ALIASES: Final = ("everything", "whole site", "entire site")
ALL_ALIASES: Final = ("all services", "all hosts", "all nodes", "all servers", "everything")
QUANTIFIERS: Final = frozenset({"all", "every", "everything"})
PREPOSITIONS: Final = frozenset("to for with on from into in via using by of and".split())
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_VERBISH: Final = re.compile(r"[a-z]{3,}(ate|ize|ise|ify)")
_NOT_VERBS: Final = frozenset(
    """
    template private state estate climate candidate enterprise premise expertise corporate
    separate aggregate ultimate appropriate immediate""".split()
)


@dataclass(frozen=True)
class NameReading:
    service: str
    action: str
    verb_word: str  # the word that chose the action, for its risk; "" when none did
    service_words: tuple[str, ...]
    action_words: tuple[str, ...]
    qualifiers: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def _pick(found: list[tuple[int, int, Verb]], n: int) -> tuple[Verb, set[int]] | None:
    real = [f for f in found if f[2].action != WILDCARD_ACTION] or found
    if not real:
        return None
    spans = {f[0]: set(range(f[0], f[0] + f[1])) for f in real}
    if any(f[2].phrase in NOUN_ACTIONS for f in real):  # `create_vm_snapshot`: a backup
        light = [f for f in real if f[2].phrase in LIGHT_VERBS]
        noun = next(f for f in real if f[2].phrase in NOUN_ACTIONS)
        if light:
            return noun[2], spans[noun[0]] | spans[light[0][0]]
    config = [f for f in real if f[2].phrase == CONFIG_NOUN]
    edit = [f for f in real if f[2].phrase != CONFIG_NOUN and f[2].action in CONFIG_EDIT_ACTIONS]
    if config and edit:
        return Verb(edit[0][2].phrase, "configure", "medium"), spans[config[0][0]] | spans[edit[0][0]]
    # `check_backups` opens with its verb; `restic-backup-verify` ends with it.
    start, _, verb = ([f for f in real if f[0] == 0] or [f for f in real if f[0] + f[1] == n] or real)[0]
    return verb, spans[start]


def _split_rest(rest: list[str]) -> tuple[list[str], list[str]]:
    """The words naming the service, and those qualifying it.

    Articles go; a preposition starts the qualifiers (`install_docker_on_ubuntu`,
    `convert-subtitle-with-subtitletools`); so do trailing part nouns and platform words
    (`backup_lidarr_db`, `install_docker_ubuntu`), as long as one word is left to name it.
    """
    head: list[str] = []
    tail: list[str] = []
    for word in rest:
        low = word.lower()
        if low in ARTICLES:
            continue
        if low in PREPOSITIONS:
            if head:
                tail = tail or [""]  # a marker: everything after it qualifies
            continue
        (tail if tail else head).append(word)
    tail = [w for w in tail if w]
    while len(head) > 1 and normalise(head[-1]) in PART_NOUNS:
        tail.insert(0, head.pop())
    return head, tail


def _contains(words_: list[str], part: list[str]) -> int | None:
    """Where `part` starts inside `words_`, or None. A word said short or with a version
    counts (`semaphoreui/check_semaphore_version`, `python/deploy_python3`)."""
    return next(
        (
            i
            for i in range(len(words_) - len(part) + 1)
            if part and all(_same(w, p) for w, p in zip(words_[i : i + len(part)], part, strict=True))
        ),
        None,
    )


def _same(word: str, folder: str) -> bool:
    short, long = sorted((word, folder), key=len)
    rest = long[len(short) :]
    return long.startswith(short) and (not rest or (len(short) >= 4 and (len(rest) <= 3 or rest.isdigit())))


def _hosts_names(hosts: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    plain = [h for h in hosts if _HOST_NAME.fullmatch(h) and h != "all"]
    return (plain[0], ()) if plain else ("hosts", ("all hosts", "all"))


def read_name(rel_path: str, play_names: Sequence[str], hosts: Sequence[str]) -> NameReading:
    """Service and action of a playbook, from its path and play names (no header needed).

    - A known verb in the file name is the action, the other words the service: `kuma-deploy`,
      `install_docker`, `foo_teardown` (remove), `reboot_hosts` (restart, high risk),
      `leave_domain` (leave: an own verb, never read as a deploy). A name opening with a verb
      keeps it (`check_backups`: verify), else the closing verb wins (`restic-backup-verify`);
      "config" beside update means configure, so `kuma-config-update` is "configure kuma"
      while "update kuma" still means upgrade; "create" gives way to an action named as its
      object (`create_vm_snapshot`: backup).
    - `<service>_<noun>_<verb>` (`nextcloud_app_update`) and `<service>_<verb>_<noun>`
      (`dokku_setup_certificates`): the words before the verb are the service; the others
      qualifiers that pick this playbook when a request says them; all of them an alias. So are
      trailing part nouns and platforms (`backup_lidarr_db`: lidarr, db) and the words after a
      preposition (`install_docker_on_ubuntu`).
    - The nearest folder that is no container (`playbooks/`, ...) is the service when the name
      adds nothing (`grafana/restart.yml`), repeats it (`grafana/deploy_grafana.yml`,
      `vms/force_reboot_vm.yml`) or names only a part of it (`grafana/backup_db.yml`);
      otherwise the name is the service and "<folder> <name>" an alias.
    - No verb in the name: the first play's name decides ("Install Grafana": deploy, and
      "grafana" becomes an alias); a play name opening with the file's last word, or a
      verb-like ending (-ate, -ize, -ify), marks an unknown verb that is kept as it is:
      `foo-frobnicate.yml` is "frobnicate foo", medium risk, never relabelled as deploy.
    - Still no verb: a playbook named for what it sets up (`grafana/main.yml`, `docker.yml`)
      converges it, which is a deploy; `site.yml` and other top-level entry points are the
      service "site" ("everything"); `start_all.yml` is "all services". No service words at
      all (`reboot.yml`): its hosts.
    """
    path = PurePosixPath(rel_path)
    raw = [t.raw for t in tokenize(path.stem) if t.norm[0].isalnum()]
    norms = [normalise(w) for w in raw]
    entry_point = len(norms) == 1 and norms[0] in ENTRY_POINTS
    if entry_point:
        raw, norms = [], []
    folders = [p for p in reversed(path.parent.parts) if p.lower() not in CONTAINER_DIRS]
    folder_verb = next((v for p in folders if (v := core_action(p))), None)
    folder = next((p for p in folders if core_action(p) is None), None)
    picked = _pick(verbs_in(norms), len(norms))
    verb, used = picked if picked else (None, set())
    play_tokens = [t for t in tokenize(play_names[0]) if t.norm[0].isalnum()] if play_names else []
    first_play = [t.norm for t in play_tokens]
    if verb is None and folder_verb:
        verb = VERBS[(folder_verb,)]
    from_play = verb is None and bool(first_play)
    if verb is None and first_play:
        verb = choose_verb([f[2] for f in verbs_in(first_play)])
        # "Frobnicate the foo" in foo-frobnicate.yml: the imperative names the file's last word
        if verb is None and len(norms) > 1 and first_play[0] == norms[-1]:
            verb, used = Verb(norms[-1], norms[-1], "medium"), {len(norms) - 1}
    if verb is None and len(norms) > 1:
        hits = [i for i, w in enumerate(norms) if _VERBISH.fullmatch(w) and w not in _NOT_VERBS]
        if hits:
            verb, used = Verb(norms[hits[-1]], norms[hits[-1]], "medium"), {hits[-1]}
    rest = [raw[i] for i in range(len(raw)) if i not in used]
    rest_norm = [normalise(w) for w in rest]
    folder_norm = words(folder) if folder else []
    at = _contains(rest_norm, folder_norm)
    aliases: tuple[str, ...] = ()
    qualifiers: tuple[str, ...] = ()
    play_words = [
        t.raw.lower() for t in play_tokens if (t.norm,) not in VERBS and not is_filler(t) and t.norm not in PREPOSITIONS
    ]
    head, tail = _split_rest(rest)
    said = " ".join(head + tail)
    if not rest:
        if folder:
            service = folder
        elif entry_point:
            service, aliases = "site", SITE_ALIASES
        elif play_words:
            service = " ".join(play_words)
            rest = play_words
            host, more = _hosts_names(hosts)  # `ping.yml`: "ping all hosts"
            aliases = (host, *more, path.stem)  # "run the healthcheck playbook"
        else:
            service, aliases = _hosts_names(hosts)
            aliases += (path.stem,)
    elif rest_norm and set(rest_norm) <= QUANTIFIERS:  # `start_all.yml`
        service, aliases = (folder, (f"all {folder}",)) if folder else ("all", ALL_ALIASES)
        qualifiers = (rest[0],) if folder else ()
    elif folder and at is not None and at in (0, len(rest_norm) - len(folder_norm)):
        service = folder
        qualifiers = tuple(w for i, w in enumerate(rest) if not at <= i < at + len(folder_norm))
        aliases = (said,) if qualifiers or rest_norm != folder_norm else ()
    elif folder and all(normalise(w) in PART_NOUNS for w in head + tail):
        service, qualifiers = folder, tuple(head + tail)  # `grafana/backup_db.yml`
        aliases = (f"{folder} {said}",)  # "the db" alone: see `intent.CatalogIndex`
    elif folder:
        service, qualifiers = " ".join(head), tuple(tail)
        aliases = (f"{folder} {said}",) + ((said,) if tail else ())
    elif picked and min(used) > 0 and max(used) < len(norms) - 1:  # `dokku_setup_certificates`
        before = [raw[i] for i in range(min(used)) if i not in used]
        service = " ".join(before)
        qualifiers = tuple(w for w in rest[len(before) :] if w.lower() not in ARTICLES)
        aliases = (said,)
    elif picked and max(used) == len(norms) - 1 and len(head) >= 2:
        service, qualifiers, aliases = head[0], tuple(head[1:] + tail), (said,)
    else:
        service, qualifiers = " ".join(head), tuple(tail)
        aliases = (said,) if tail else ()
    if verb is not None and verb.phrase in NOUN_ACTIONS and {norms[i] for i in used} & LIGHT_VERBS:
        aliases += (" ".join([*rest, verb.phrase]),)  # `create_vm_snapshot`: "a vm snapshot"
    if from_play and verb is not None and play_words and " ".join(play_words) != service:
        aliases += (" ".join(play_words),)  # "Install Grafana" in monitoring.yml: grafana too
    return NameReading(
        service=service,
        action=verb.action if verb else "deploy",
        verb_word=verb.phrase if verb else "",
        service_words=tuple(rest) or ((folder,) if folder else ()),
        action_words=tuple(raw[i] for i in sorted(used)) or ((verb.phrase,) if verb else ()),
        qualifiers=qualifiers,
        aliases=tuple(dict.fromkeys(a for a in aliases if a and a != service)),
    )
