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

from activities.vocabulary import (
    CONFIG_EDIT_ACTIONS,
    CONFIG_NOUN,
    VERBS,
    WILDCARD_ACTION,
    Verb,
    canonical_action,
    choose_verb,
    is_filler,
    normalise,
    tokenize,
    verbs_in,
    words,
)

CONTAINER_DIRS: Final = frozenset("""
    playbooks playbook plays play pb books ansible src automation infra infrastructure ops
    runbooks jobs services apps applications stacks site main common maintenance misc tools utils
    admin""".split())
ENTRY_POINTS: Final = frozenset("main site playbook all default index".split())
SITE_ALIASES: Final = ("everything", "whole site", "entire site")
_VERBISH: Final = re.compile(r"[a-z]{3,}(ate|ize|ise|ify)")
_NOT_VERBS: Final = frozenset("""
    template private state estate climate candidate enterprise premise expertise corporate
    separate aggregate ultimate appropriate immediate""".split())


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
    config = [f for f in real if f[2].phrase == CONFIG_NOUN]
    edit = [f for f in real if f[2].phrase != CONFIG_NOUN and f[2].action in CONFIG_EDIT_ACTIONS]
    if config and edit:
        used = set(range(config[0][0], config[0][0] + config[0][1]))
        return Verb(edit[0][2].phrase, "configure", "medium"), used | set(
            range(edit[0][0], edit[0][0] + edit[0][1]))
    # `check_backups` opens with its verb; `restic-backup-verify` ends with it.
    start, length, verb = ([f for f in real if f[0] == 0] or [f for f in real if f[0] + f[1] == n]
                           or real)[0]
    return verb, set(range(start, start + length))


def read_name(rel_path: str, play_names: Sequence[str], hosts: Sequence[str]) -> NameReading:
    """Service and action of a playbook, from its path and play names (no header needed).

    - A known verb in the file name is the action, the other words the service: `kuma-deploy`,
      `install_docker`, `foo_teardown` (remove), `reboot_hosts` (restart, high risk). A name
      opening with a verb keeps it (`check_backups`: verify), else the closing verb wins
      (`restic-backup-verify`); "config" beside update means configure, so
      `kuma-config-update` is "configure kuma" while "update kuma" still means upgrade.
    - `<service>_<noun>_<verb>` (`nextcloud_app_update`): service "nextcloud"; "app" is a
      qualifier that picks this playbook when a request says it; "nextcloud app" an alias.
    - The nearest folder that is no container (`playbooks/`, ...) is the service when the name
      adds nothing (`grafana/restart.yml`) or repeats it (`grafana/deploy_grafana.yml`);
      otherwise the name is the service and "<folder> <name>" an alias.
    - No verb in the name: the first play's name decides ("Install Grafana": deploy, and
      "grafana" becomes an alias); a play name opening with the file's last word, or a
      verb-like ending (-ate, -ize, -ify), marks an unknown verb that is kept as it is:
      `foo-frobnicate.yml` is "frobnicate foo", medium risk, never relabelled as deploy.
    - Still no verb: a playbook named for what it sets up (`grafana/main.yml`, `docker.yml`)
      converges it, which is a deploy; `site.yml` and other top-level entry points are the
      service "site" ("everything"). No service words at all (`reboot.yml`): its hosts.
    """
    path = PurePosixPath(rel_path)
    raw = [t.raw for t in tokenize(path.stem) if t.norm[0].isalnum()]
    norms = [normalise(w) for w in raw]
    entry_point = len(norms) == 1 and norms[0] in ENTRY_POINTS
    if entry_point:
        raw, norms = [], []
    folders = [p for p in reversed(path.parent.parts) if p.lower() not in CONTAINER_DIRS]
    folder_verb = next((v for p in folders if (v := canonical_action(p))), None)
    folder = next((p for p in folders if canonical_action(p) is None), None)
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
    aliases: tuple[str, ...] = ()
    qualifiers: tuple[str, ...] = ()
    play_words = [t.raw.lower() for t in play_tokens if (t.norm,) not in VERBS
                  and not is_filler(t)]
    if not rest:
        if folder:
            service = folder
        elif entry_point:
            service, aliases = "site", SITE_ALIASES
        elif play_words:
            service = " ".join(play_words)
            rest = play_words
        else:
            plain = [h for h in hosts if h.isidentifier() and h != "all"]
            service, aliases = (plain[0], ()) if plain else ("hosts", ("all hosts", "all"))
    elif folder and rest_norm[:len(folder_norm)] == folder_norm:
        service, qualifiers = folder, tuple(rest[len(folder_norm):])
    elif folder:
        service = " ".join(rest)
        aliases = (f"{folder} {service}",)
    elif picked and max(used) == len(norms) - 1 and len(rest) >= 2:
        service, qualifiers, aliases = rest[0], tuple(rest[1:]), (" ".join(rest),)
    else:
        service = " ".join(rest)
    if from_play and verb is not None and play_words and " ".join(play_words) != service:
        aliases += (" ".join(play_words),)  # "Install Grafana" in monitoring.yml: grafana too
    return NameReading(
        service=service,
        action=verb.action if verb else "deploy",
        verb_word=verb.phrase if verb else "",
        service_words=tuple(rest) or ((folder,) if folder else ()),
        action_words=tuple(raw[i] for i in sorted(used)) or ((verb.phrase,) if verb else ()),
        qualifiers=qualifiers,
        aliases=aliases,
    )
