"""What a request may call each playbook of a catalog: the index planning matches words against.

A playbook answers to its service's name and aliases (`naming`), and to the forms people say
them in: joined or apart ("uptime kuma" for `uptimekuma`), without a version ("python" for
`python3`), said short ("postgres" for `postgresql`), or by a part alone ("join the domain",
"restore the db") when that part qualifies it. A name said exactly always wins over these.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from rapidfuzz import fuzz, process

from activities import vocabulary as vocab
from activities.clauses import Key
from activities.discovery import Catalog, Entry
from activities.vocabulary import Verb

CLOSEST = 5


class CatalogIndex:
    """A catalog's names, verbs and qualifiers, normalised once and reused by every request."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.names: dict[Key, dict[str, tuple[Entry, bool]]] = {}  # -> path -> (entry, own name)
        self.joined: dict[str, Key] = {}  # "uptimekuma" -> ("uptime", "kuma")
        self.display: dict[str, str] = {}
        self.qualifiers: dict[str, frozenset[str]] = {}
        self.action_words: dict[str, frozenset[str]] = {}
        self.verbs: dict[Key, Verb] = {}  # the catalog's own verbs, such as "frobnicate"
        self.parts: frozenset[Key] = frozenset()  # names that are only a part ("db")
        for e in catalog.entries:
            own = tuple(vocab.words(e.service))
            for name in (e.service, *e.aliases):
                if key := tuple(vocab.words(name)):
                    self.names.setdefault(key, {}).setdefault(e.path, (e, key == own))
                    self.joined.setdefault("".join(key), key)
                    self.display.setdefault(" ".join(key), name)
            self.qualifiers[e.path] = frozenset(vocab.words(" ".join(e.qualifiers)))
            self.action_words[e.path] = spellings(" ".join(e.action_words))
            if e.action and vocab.match_verb([e.action], 0) is None:
                self.verbs[(e.action,)] = Verb(e.action, e.action, "medium")
        self._add_unversioned()
        self.short = self._short_forms()
        self._add_parts()
        self.longest = max(map(len, self.names), default=1)
        self.choices = list(self.display)
        self.broken = [(frozenset(vocab.words(str(PurePosixPath(b.path).with_suffix("")))), b) for b in catalog.broken]

    def _add_parts(self) -> None:
        """A part said alone ("join the domain", "restore the db") names every playbook it
        qualifies, whichever service: one that fits the verb is planned, several are refused."""
        parts: dict[Key, dict[str, tuple[Entry, bool]]] = {}
        for e in self.catalog.entries:
            for word in self.qualifiers[e.path] & vocab.PART_NOUNS:
                if (word,) not in self.names:
                    parts.setdefault((word,), {})[e.path] = (e, False)
        for key, by_path in parts.items():
            self.names[key] = by_path
            self.display[key[0]] = key[0]
        self.parts = frozenset(parts)

    def _add_unversioned(self) -> None:
        """Names said without their version: "python" for `python3`, "bind" for `bind9`."""
        bare_names: dict[Key, dict[str, tuple[Entry, bool]]] = {}
        for key, by_path in self.names.items():
            bare = tuple(w.rstrip("0123456789") or w for w in key)
            if bare != key and bare not in self.names:
                for path, (e, _) in by_path.items():
                    bare_names.setdefault(bare, {}).setdefault(path, (e, False))
        for bare, by_path in bare_names.items():
            self.names[bare] = by_path
            self.display[" ".join(bare)] = " ".join(bare)

    def _short_forms(self) -> dict[str, Key]:
        """One-word names said short, when only one name starts so: "postgres" for
        `postgresql`, "semaphore" for `semaphoreui`, "mongo" for `mongodb` (at most three
        letters left off, four or more said). Used only where no name matches exactly."""
        starts: dict[str, set[Key]] = {}
        for key in self.names:
            if len(key) == 1:
                word = key[0]
                for n in range(max(4, len(word) - 3), len(word)):
                    starts.setdefault(word[:n], set()).add(key)
        return {
            short: next(iter(keys))
            for short, keys in starts.items()
            if len(keys) == 1 and (short,) not in self.names and vocab.match_verb([short], 0, self.verbs) is None
        }

    def match_name(self, norms: Sequence[str], i: int) -> tuple[int, Key] | None:
        """The longest service name at `norms[i]`: "grafana lab" beats "grafana"."""
        for length in range(min(self.longest + 2, len(norms) - i), 0, -1):
            key = tuple(norms[i : i + length])
            joined = "".join(key)  # "uptime kuma" said of "uptimekuma", and the other way round
            if key in self.names or (joined,) in self.names:
                return length, key if key in self.names else (joined,)
            if length == 1 and joined in self.joined:
                return 1, self.joined[joined]
            if length == 1 and joined in self.short:
                return 1, self.short[joined]
        return None

    def closest(self, phrase: str) -> tuple[str, ...]:
        hits = process.extract(phrase, self.choices, scorer=fuzz.WRatio, limit=CLOSEST, score_cutoff=60)
        return tuple(self.display[h[0]] for h in hits)

    def actions_of(self, key: Key) -> list[str]:
        return sorted({e.action for e, _ in self.names[key].values()})

    def having(self, action: str) -> tuple[str, ...]:
        return tuple(sorted({e.service for e in self.catalog.entries if e.action == action}))


def spellings(phrase: str) -> frozenset[str]:
    """A verb's words, and them written as one: "shut down" is the verb of `shutdown_vm`."""
    said = vocab.words(phrase)
    return frozenset([*said, vocab.normalise("".join(said))])
