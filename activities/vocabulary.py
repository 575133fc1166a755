"""The words signoff understands: actions with their synonyms and risk, and request grammar.

One table serves both sides of planning: `naming` reads verbs out of playbook names and play
names, `clauses` reads them out of requests. A word maps to a canonical action *and* its own risk,
because some synonyms are sharper than their action: "reboot" plans a restart playbook but is
high risk on its own.

Words are compared after `normalise`: lower case, a few noun spellings folded together
("certificates" = "cert"), verb inflections undone ("restarting" = "restart") and plurals
lemmatised with simplemma. Both the catalog and the request go through the same function, so
an odd lemma ("media" -> "medium") can never make the two sides disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

import simplemma

from activities import grammar

Risk = Literal["low", "medium", "high"]
RISKS: Final[tuple[Risk, ...]] = ("low", "medium", "high")


@dataclass(frozen=True)
class Verb:
    """What a verb word means: its canonical action and the risk the word itself carries."""

    phrase: str  # as written in the table, e.g. "tear down"
    action: str
    risk: Risk


SYNONYMS: Final[Mapping[str, tuple[str, ...]]] = {
    "deploy": (
        "install",
        "set up",
        "setup",
        "provision",
        "roll out",
        "rollout",
        "bootstrap",
        "create",
        "spin up",
        "redeploy",
        "reinstall",
    ),
    "configure": ("config", "reconfigure", "set", "add", "register", "change"),
    "update": ("upgrade", "patch", "bump"),
    "restart": ("reboot", "reload", "bounce"),
    "start": (),
    "stop": ("shut down", "shutdown", "spin down", "bring down", "take down"),
    "remove": ("uninstall", "tear down", "teardown", "decommission", "destroy", "delete", "purge", "deprovision"),
    "verify": ("check", "health check", "healthcheck", "test", "validate", "smoke test", "smoketest"),
    "backup": ("snapshot", "back up"),
    "restore": ("revert", "roll back", "rollback"),
    "renew": ("rotate",),
}
ACTIONS: Final[tuple[str, ...]] = tuple(SYNONYMS)

_ACTION_RISK: Final[Mapping[str, Risk]] = {"remove": "high", "restore": "high", "verify": "low", "backup": "low"}
_WORD_RISK: Final[Mapping[str, Risk]] = {"reboot": "high"}

# Verbs seen in real playbook names that are none of the actions above. They are recognised
# as verbs (so `postgres-migrate.yml` is not read as a service called "postgres migrate", and
# `leave_domain.yml` is no deploy of a "leave domain") but keep their own name as the action,
# with medium risk; a read-only verb is low risk, one that destroys data high.
OTHER_VERBS: Final = frozenset(
    """
    migrate scale sync flush clean cleanup prune drain cordon uncordon harden unseal seal mount
    unmount encrypt decrypt rekey promote demote failover import export enable disable pause
    resume suspend reset resize rebuild reindex vacuum compact revoke lock unlock generate init
    initialize sign join leave upload download fetch mirror build publish prepare stage
    distribute convert compile rename move copy apply push pull attach detach extend expand
    shrink clone""".split()
)
READ_ONLY_VERBS: Final = frozenset(
    """
    show list display print view inspect describe query report ping gather collect scan audit
    lint dump""".split()
)
DESTRUCTIVE_VERBS: Final = frozenset("wipe erase format drop truncate nuke shred".split())
# Other spellings of those verbs: "prep_ansible_node.yml" is "prepare".
OTHER_SYNONYMS: Final[Mapping[str, str]] = {"prep": "prepare"}
# "create a snapshot of the vm" is a backup: a light verb gives way to an action named as its
# object, in a name (`create_vm_snapshot.yml`) as in a request.
LIGHT_VERBS: Final = frozenset({"create"})
NOUN_ACTIONS: Final = frozenset({"snapshot", "backup"})
# "run this playbook": whatever the playbook does. Matched against every action of a service.
WILDCARD_ACTION: Final = "run"
WILDCARD_VERBS: Final = frozenset({"run", "execute"})
# Verbs whose object is a value rather than a service: in "add our portals to the config" the
# portals are data for the configure playbook of the service named before.
VALUE_VERBS: Final = frozenset({"add", "set", "register", "change"})
# "update the kuma config" is a human's way to say "configure kuma", not "upgrade kuma".
CONFIG_NOUN: Final = "config"
CONFIG_EDIT_ACTIONS: Final = frozenset({"update", "configure"})


_NOUN_SYNONYMS: Final[Mapping[str, str]] = {
    "configuration": CONFIG_NOUN,
    "configurations": CONFIG_NOUN,
    "conf": CONFIG_NOUN,
    "cfg": CONFIG_NOUN,
    "settings": CONFIG_NOUN,
    "configs": CONFIG_NOUN,
    "database": "db",
    "databases": "db",
    "dbs": "db",
    "certificate": "cert",
    "certificates": "cert",
    "certs": "cert",
    "application": "app",
    "applications": "app",
    "apps": "app",
    "vms": "vm",
    "hosts": "host",
}
_IRREGULAR: Final[Mapping[str, str]] = {
    "tore": "tear",
    "torn": "tear",
    "ran": "run",
    "built": "build",
    "rebuilt": "rebuild",
    "shut": "shut",
    "set": "set",
    "reset": "reset",
    "setting": "set",
    "resetting": "reset",
}


def _forms(word: str) -> set[str]:
    forms = {word, word + "s", word + "es", word + "ed", word + "ing"}
    if word.endswith("e"):
        forms |= {word[:-1] + "ing", word + "d", word + "s"}
    if word.endswith("y"):
        forms |= {word[:-1] + "ied", word[:-1] + "ies"}
    if re.fullmatch(r"[a-z]*[^aeiou][aeiou][bdgmnprt]", word):  # stop -> stopping, set -> setting
        forms |= {word + word[-1] + "ing", word + word[-1] + "ed"}
    return forms


def _build_verbs() -> tuple[dict[tuple[str, ...], Verb], dict[str, str]]:
    inflections: dict[str, str] = dict(_IRREGULAR)
    table: dict[str, Verb] = {}
    for action, words in SYNONYMS.items():
        for phrase in (action, *words):
            risk = _WORD_RISK.get(phrase) or _ACTION_RISK.get(action, "medium")
            table[phrase] = Verb(phrase, action, risk)
    for word in OTHER_VERBS:
        table[word] = Verb(word, word, "medium")
    for word in READ_ONLY_VERBS:
        table[word] = Verb(word, word, "low")
    for word in DESTRUCTIVE_VERBS:
        table[word] = Verb(word, word, "high")
    for word, verb in OTHER_SYNONYMS.items():
        table[word] = Verb(word, verb, table[verb].risk)
    for word in WILDCARD_VERBS:
        table[word] = Verb(word, WILDCARD_ACTION, "medium")
    for phrase in table:
        first = phrase.split()[0]
        for form in _forms(first):
            inflections.setdefault(form, first)
    # Noun spellings win over generated verb forms: "settings" is a noun, not "set" + s.
    for noun in _NOUN_SYNONYMS:
        inflections.pop(noun, None)
    verbs = {tuple(inflections.get(w, w) for w in phrase.split()): v for phrase, v in table.items()}
    return verbs, inflections


VERBS, _INFLECTIONS = _build_verbs()
MAX_VERB_WORDS: Final = max(len(k) for k in VERBS)
# Phrasal verbs whose particle may come after the object: "back it up", "tear foo down".
PARTICLES: Final[Mapping[str, frozenset[str]]] = {
    first: frozenset(k[1] for k in VERBS if len(k) == 2 and k[0] == first)
    for first in {k[0] for k in VERBS if len(k) == 2}
}


@lru_cache(maxsize=1 << 16)
def normalise(word: str) -> str:
    """The form a word is compared in; the same function for catalog names and requests."""
    low = word.lower().replace("’", "'")
    if not low:
        return low
    if low in _NOUN_SYNONYMS:
        return _NOUN_SYNONYMS[low]
    if low in _INFLECTIONS:
        return _INFLECTIONS[low]
    if not low.isalpha():
        return low  # host names, versions, numbers: lemmatising them only invents variants
    lemma = simplemma.lemmatize(low, lang="en").lower()
    if lemma == low and len(low) > 3 and low.endswith("s") and not low.endswith(("ss", "us", "is")):
        lemma = low[:-1]  # simplemma leaves unknown plurals ("vms", "portals" of a brand) alone
    return _NOUN_SYNONYMS.get(lemma, _INFLECTIONS.get(lemma, lemma))


@dataclass(frozen=True)
class Token:
    raw: str  # the word as written
    norm: str  # `normalise(raw)`, or the punctuation itself
    start: int  # offsets into the text, so clauses and targets are quoted exactly
    end: int


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’.][A-Za-z0-9]+)*|[,;.!?:]")
_CONTRACTIONS: Final[Mapping[str, str]] = {"ca": "can", "wo": "will", "sha": "shall"}
_JOINED_NOT: Final = re.compile(r"(do|does|did|wo|ca|should|is|are|was)nt")


def tokenize(text: str) -> list[Token]:
    """Words and clause punctuation; hyphens, underscores and slashes separate words."""
    out: list[Token] = []
    for m in _TOKEN.finditer(text):
        raw, start, end = m.group(), m.start(), m.end()
        low = raw.lower().replace("’", "'")
        base, _, suffix = low.partition("'")
        if not low[0].isalnum():
            out.append(Token(raw, low, start, end))
        elif ext := re.search(r"\.(ya?ml)$", low):  # "kuma-deploy.yml": ".yml" is a filler word
            cut = start + ext.start()
            out += [
                Token(raw[: ext.start()], normalise(raw[: ext.start()]), start, cut),
                Token(ext.group(1), ext.group(1), cut + 1, end),
            ]
        elif (suffix == "t" and base.endswith("n")) or _JOINED_NOT.fullmatch(low):
            stem = _CONTRACTIONS.get(base[:-1], base[:-1]) if suffix else "do"
            out += [Token(raw, normalise(stem), start, end), Token(raw, "not", start, end)]
        elif (
            out and out[-1].raw.lower() == "re" and out[-1].end == start - 1 and (normalise("re" + low),) in VERBS
        ):  # "re-deploy" is "redeploy"
            prev = out.pop()
            out.append(Token(text[prev.start : end], normalise("re" + low), prev.start, end))
        else:
            out.append(Token(raw, normalise(base), start, end))  # drops 's, 're, 'll
    return out


def words(text: str) -> list[str]:
    """Normalised words of a name such as `uptime-kuma` or `Grafana Lab`."""
    return [t.norm for t in tokenize(text) if t.norm[0].isalnum()]


def match_verb(
    norms: Sequence[str], i: int, extra: Mapping[tuple[str, ...], Verb] | None = None
) -> tuple[Verb, int] | None:
    """The longest verb phrase starting at `norms[i]`, with how many words it spans."""
    for length in range(min(MAX_VERB_WORDS, len(norms) - i), 0, -1):
        key = tuple(norms[i : i + length])
        verb = VERBS.get(key) or (extra.get(key) if extra else None)
        if verb is not None:
            return verb, length
    return None


def _verb_word(word: str) -> Verb | None:
    norms = words(word)
    found = match_verb(norms, 0)
    return found[0] if found and found[1] == len(norms) else None


def canonical_action(word: str) -> str | None:
    """The action a verb word stands for ("reboot" -> "restart"); None if it is no verb."""
    verb = _verb_word(word)
    return verb.action if verb else None


def core_action(word: str) -> str | None:
    """Like `canonical_action`, for the core actions only: a folder named `install/` holds
    deploys, but `staging/` is no folder of "stage" playbooks."""
    action = canonical_action(word)
    return action if action in ACTIONS else None


def default_risk(action_or_word: str) -> Risk:
    """Risk of an action or verb word: remove, restore and reboot high; verify, backup low."""
    verb = _verb_word(action_or_word)
    return verb.risk if verb else "medium"


def max_risk(risks: Iterable[Risk]) -> Risk:
    return max(risks, key=RISKS.index, default="low")


def choose_verb(found: Sequence[Verb]) -> Verb | None:
    """The verb a clause or a name means when it holds several verb words.

    The first real verb wins ("check the backups": verify); "run" only when nothing else is
    said, "create" not when its object is an action ("create a snapshot": backup). An
    update-like verb next to "config" means configure ("update the kuma config").
    """
    real = [v for v in found if v.action != WILDCARD_ACTION]
    if not real:
        return found[0] if found else None
    if any(v.phrase in NOUN_ACTIONS for v in real):  # "create a snapshot": backup
        real = [v for v in real if v.phrase not in LIGHT_VERBS]
    first = real[0]
    has_config = any(v.phrase == CONFIG_NOUN for v in real)
    if has_config and first.action in CONFIG_EDIT_ACTIONS and first.phrase != CONFIG_NOUN:
        return Verb(first.phrase, "configure", _ACTION_RISK.get("configure", "medium"))
    return first


def is_filler(token: Token) -> bool:
    low = token.raw.lower()
    return (
        low in grammar.FILLERS
        or token.norm in grammar.FILLERS
        or low in grammar.ARTICLES
        or token.norm in grammar.ARTICLES
        or not token.norm[0].isalnum()
    )


def verbs_in(norms: Sequence[str], extra: Mapping[tuple[str, ...], Verb] | None = None) -> list[tuple[int, int, Verb]]:
    """Every verb phrase in a word list as (start, length, verb), longest phrases first."""
    found: list[tuple[int, int, Verb]] = []
    i = 0
    while i < len(norms):
        hit = match_verb(norms, i, extra)
        if hit is None:
            i += 1
            continue
        found.append((i, hit[1], hit[0]))
        i += hit[1]
    return found


# Words that name a part or a flavour of a service rather than a service: trailing in a
# playbook's name they qualify the words before it (`backup_lidarr_db`: lidarr's db).
PART_NOUNS: Final = frozenset(
    normalise(w)
    for w in """
    db database data config cert key log secret snapshot version package volume schema os entry
    record domain app user plugin module extension image disk ubuntu debian rhel centos fedora
    rocky alma alpine windows linux macos arm arm64 amd64 x86 raspbian ce ee oss""".split()
)
