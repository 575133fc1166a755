"""Reading a request: cut into clauses, and what each clause says.

The request is cut at "and", "then", ",", "before", "after", "but", "without"... (the connector
is kept for intent to give "before", "after" and "without" their meaning) and each clause is
read on its own: its verb (the first real one, see `vocabulary.choose_verb`), the services it
names (the longest catalog name wins: "grafana lab" over "grafana"), a pronoun or generic noun
pointing back ("it", "them", "the service"), negation ("do not", "without"), and leftover words
that are none of these. A target phrase ("on nas01", "on group media", "to homelab" when
homelab is an inventory name) is cut out first and kept as written; "on X" is a target whatever
X is, "to/in/from X" only when X is a known target name. A phrasal verb's particle may follow
its object ("back it up"). What the clauses mean together is intent's business.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from activities import grammar
from activities import vocabulary as vocab
from activities.vocabulary import Token, Verb

Key = tuple[str, ...]  # a normalised service name: ("grafana", "lab")


class NameIndex(Protocol):
    """What reading needs of a catalog: its service names and its own verbs."""

    @property
    def verbs(self) -> Mapping[Key, Verb]: ...  # verbs only this catalog has ("frobnicate")

    def match_name(self, norms: Sequence[str], i: int) -> tuple[int, Key] | None:
        """The longest service name starting at `norms[i]`, with how many words it spans."""
        ...


@dataclass
class Clause:
    """One clause of a request and what it says; intent plans from these."""

    text: str
    start: int  # offset of `text` in the request; tokens carry request offsets
    connector: str
    tokens: list[Token]
    target: str | None = None
    negated: bool = False
    verb: Verb | None = None
    verb_raw: str = ""
    services: list[tuple[Key, str]] = field(default_factory=list)
    pronoun: str = ""  # "it" or "them"
    pronoun_raw: str = ""
    leftovers: list[Token] = field(default_factory=list)
    lead: str = ""  # a leftover word before any verb or service
    words: set[str] = field(default_factory=set)


def read_clauses(request: str, index: NameIndex, target_names: Collection[str] = ()) -> list[Clause]:
    """Every clause of `request` in order, each read against `index` and the target names."""
    targets = {tuple(vocab.words(n)) for n in target_names} - {()}
    return [_read(c, index, targets) for c in _split(request, vocab.tokenize(request))]


def _split(request: str, tokens: list[Token]) -> list[Clause]:
    clauses: list[Clause] = []
    current: list[Token] = []
    connector: list[str] = []
    start: int | None = None  # a clause's text starts at its first word, connector included

    def close() -> None:
        if current and start is not None:
            clauses.append(Clause(request[start : current[-1].end], start, " ".join(connector), list(current)))

    i = 0
    while i < len(tokens):
        lows = tuple(t.raw.lower() for t in tokens[i : i + 3])
        hit = next((s for s in grammar.SPLITTERS if lows[: len(s)] == s), None)
        if hit is None:
            start = tokens[i].start if start is None else start
            current.append(tokens[i])
            i += 1
            continue
        if current:
            close()
            current, connector, start = [], [], None
        if start is None and hit[0][0].isalnum():
            start = tokens[i].start
        connector.extend(hit)
        i += len(hit)
    close()
    return clauses


def _read(c: Clause, index: NameIndex, targets: set[Key]) -> Clause:
    """What one clause says: its verb, services, pronoun, negation, target and leftovers."""
    c.negated = bool({"without", "except", "excluding"} & set(c.connector.split()))
    toks = _join_particles(_cut_target(c, targets, index))
    norms = [t.norm for t in toks]
    found: list[tuple[Verb, str]] = []
    owner = False  # "restore its database": the name after "its" is a part of what "it" is
    i = 0
    while i < len(toks):
        t, low = toks[i], toks[i].raw.lower()
        name = index.match_name(norms, i)
        if owner and name and set(name[1]) <= vocab.PART_NOUNS:
            c.words.update(norms[i : i + name[0]])
            owner, i = False, i + name[0]
            continue
        owner = owner and vocab.is_filler(t)
        verb = vocab.match_verb(norms, i, index.verbs)
        size = (verb[1] if verb else 0) - (name[0] if name else 0)
        if t.norm in grammar.NEGATIONS or low in grammar.NEGATIONS:
            c.negated = True
        elif verb and (size > 0 or (size == 0 and not found and not _object(c, toks, i))):
            found.append((verb[0], " ".join(t.raw for t in toks[i : i + verb[1]])))
            c.words.update(norms[i : i + verb[1]])
            i += verb[1]
            continue
        elif name:
            words = dict.fromkeys(t.raw for t in toks[i : i + name[0]])  # "Don't" yields two
            c.services.append((name[1], " ".join(words)))
            c.words.update(norms[i : i + name[0]])
            i += name[0]
            continue
        elif {low, t.norm} & grammar.PRONOUNS:
            c.pronoun, c.pronoun_raw = c.pronoun or "it", c.pronoun_raw or t.raw
            owner = low in grammar.OWNER_WORDS
        elif {low, t.norm} & grammar.GROUP_PRONOUNS:
            c.pronoun, c.pronoun_raw = "them", t.raw
            owner = low in grammar.OWNER_WORDS
        elif low in grammar.GENERIC_NOUNS and not c.pronoun:  # "the service(s)" points back too
            c.pronoun, c.pronoun_raw = ("them" if low.endswith("s") else "it"), t.raw
        elif not vocab.is_filler(t) and low not in grammar.GENERIC_NOUNS:
            c.leftovers.append(t)
            if not (found or c.services or c.lead):
                c.lead = t.raw  # in a verb's place: "and frobnicate B" names an unknown verb
        c.words.add(t.norm)
        i += 1
    c.services = _join_names(c.services, index)
    c.services = [
        n
        for i, n in enumerate(c.services)  # "the media services": of media
        if not (i and len(n[0]) == 1 and n[0][0] in _KIND_NOUNS)
    ]
    if not (found or c.services or c.pronoun) and tuple(t.norm for t in c.leftovers) in targets:
        c.target, c.leftovers = " ".join(t.raw for t in c.leftovers), []  # "... and nas02"
    c.verb = vocab.choose_verb([v for v, _ in found])
    nouns = [vocab.VERBS[(w,)] for w in c.words if w in vocab.NOUN_ACTIONS]
    if c.verb is not None and c.verb.phrase in vocab.LIGHT_VERBS and nouns:
        found.append((nouns[0], nouns[0].phrase))  # "create a vm snapshot": a backup
        c.verb = nouns[0]
    if c.verb is not None:
        said = next((r for v, r in found if v.phrase == c.verb.phrase), found[0][1])
        configured = c.verb.action == "configure" != found[0][0].action
        c.verb_raw = f"{said} … config" if configured else said
    return c


_KIND_NOUNS = frozenset(vocab.normalise(w) for w in grammar.TARGET_KINDS | grammar.GENERIC_NOUNS)


def _object(c: Clause, toks: list[Token], i: int) -> bool:
    """Whether a word that is a verb and a name is the name: "test grafana" tests and "and
    restart" restarts, but "install glances and healthchecks" names one more service: a
    plural, no imperative, closing a clause that goes on from the one before."""
    return bool(c.connector) and toks[i].raw.lower().endswith("s") and all(vocab.is_filler(t) for t in toks[i + 1 :])


def _join_particles(toks: list[Token]) -> list[Token]:
    """ "backing it up" reads as "backing up it": the particle moves next to its verb."""
    for i, t in enumerate(toks[:-2]):
        particles = vocab.PARTICLES.get(t.norm, frozenset())
        if particles and toks[i + 1].norm not in particles:
            j = next((j for j in range(i + 2, min(i + 5, len(toks))) if toks[j].norm in particles), None)
            if j is not None:
                toks = [*toks[: i + 1], toks[j], *toks[i + 1 : j], *toks[j + 1 :]]
    return toks


def _is_name(index: NameIndex, key: Key) -> bool:
    found = index.match_name(list(key), 0)
    return found is not None and found[0] == len(key)


def _join_names(named: list[tuple[Key, str]], index: NameIndex) -> list[tuple[Key, str]]:
    """Two names said apart that together are one ("convert the vm to a template" of the
    playbook `vms template`) are that one name."""
    for a in range(len(named)):
        for b in range(a + 1, len(named)):
            for first, second in ((a, b), (b, a)):
                key = named[first][0] + named[second][0]
                if _is_name(index, key):
                    found = index.match_name(list(key), 0)
                    joined = (found[1] if found else key, f"{named[a][1]} {named[b][1]}")
                    rest = [n for i, n in enumerate(named) if i not in (a, b)]
                    return _join_names([*rest[:a], joined, *rest[a:]], index)
    return named


def _names_in(toks: Sequence[Token], index: NameIndex) -> list[Key]:
    norms = [t.norm for t in toks]
    keys: list[Key] = []
    i = 0
    while i < len(norms):
        found = index.match_name(norms, i)
        if found is not None:
            keys.append(found[1])
        i += found[0] if found else 1
    return keys


def _keeps_name(c: Clause, prep: int, start: int, end: int, index: NameIndex) -> bool:
    """Whether "to X" names what the clause acts on rather than where: X is a catalog name and
    the clause names nothing else ("add a domain to dokku"), or X completes the name said
    before it ("convert the vm to a template")."""
    key = tuple(t.norm for t in c.tokens[start:end])
    if not _is_name(index, key):
        return False
    others = _names_in(c.tokens[:prep] + c.tokens[end:], index)
    return not others or any(_is_name(index, k + key) or _is_name(index, key + k) for k in others)


def _cut_target(c: Clause, targets: set[Key], index: NameIndex) -> list[Token]:
    """The clause without its target phrase, which is kept (as written) in `c.target`."""
    toks, out, i = c.tokens, [], 0
    longest = max(map(len, targets), default=1)
    while i < len(toks):
        prep = toks[i].raw.lower()
        if prep in grammar.TARGET_PREPOSITIONS | grammar.MAYBE_TARGET_PREPOSITIONS:
            j = i + 1
            while j < len(toks) and toks[j].raw.lower() in grammar.ARTICLES:
                j += 1
            kind = j < len(toks) and toks[j].raw.lower() in grammar.TARGET_KINDS  # "group media"
            j += kind
            size = next(
                (
                    n
                    for n in range(min(longest, len(toks) - j), 0, -1)
                    if tuple(t.norm for t in toks[j : j + n]) in targets
                ),
                0,
            )
            if size and not kind and prep not in grammar.TARGET_PREPOSITIONS and _keeps_name(c, i, j, j + size, index):
                size = 0
            if (
                kind
                and not size
                and (j == len(toks) or not toks[j].norm[0].isalnum())
                and (
                    prep in grammar.TARGET_PREPOSITIONS
                    or ((toks[j - 1].norm,) in targets and not _keeps_name(c, i, j - 1, j, index))
                )
            ):
                j, size = j - 1, 1  # "on the vms", "to the vms": the kind names the target
            if (
                not size
                and (kind or prep in grammar.TARGET_PREPOSITIONS)
                and j < len(toks)
                and toks[j].norm[0].isalnum()
            ):
                size = 1  # "on X" is a target whatever X is; the inventory judges it later
                while (
                    j + size < len(toks)
                    and toks[j + size].start == toks[j + size - 1].end + 1
                    and c.text[toks[j + size].start - 1 - c.start] in "-_."
                ):
                    size += 1  # "nas-01", split by the tokenizer, is one name
            if size:
                end = j + size + (j + size < len(toks) and toks[j + size].raw.lower() in grammar.TARGET_KINDS)
                phrase = c.text[toks[i + 1].start - c.start : toks[end - 1].end - c.start]
                c.target = f"{c.target} and {phrase}" if c.target else phrase
                i = end
                continue
        out.append(toks[i])
        i += 1
    return out
