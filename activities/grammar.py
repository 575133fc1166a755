"""The grammar words of a request: articles, pronouns, fillers, negations, clause splitters and
target prepositions. Checked against both the lower-cased word and its normalised form
(activities/clauses.py); the verbs and their synonyms are activities/vocabulary.py.
"""

from __future__ import annotations

from typing import Final

# Request grammar, checked against both the lower-cased word and its normalised form.
ARTICLES: Final = frozenset(
    """
    the a an our my your their old new existing current some any same whole entire every each
    his her""".split()
)
PRONOUNS: Final = frozenset("it its that this itself".split())
GROUP_PRONOUNS: Final = frozenset("them they those these both their themselves all".split())
# Nouns that name no particular service; alone they point back like a pronoun ("the service").
GENERIC_NOUNS: Final = frozenset(
    """
    service services server servers stack container instance playbook yml yaml box machine thing
    one ones system""".split()
)
FILLERS: Final = frozenset(
    """
    please pls plz kindly now asap today tonight tomorrow thanks thank thx ty cheers you also
    again too first finally next last we i us let can could would should will shall must want
    wanna need needs to do does did make sure go ahead just quickly right away immediately soon
    later when done is are be been being so which of for with up as well via using by at into
    onto about here there ok okay hey hi hello team folks if possible once more lot much very or
    in on from exist morning evening noon midnight weekend bit little going anyway afterwards
    """.split()
)
NEGATIONS: Final = frozenset(
    """
    not never no without except excluding skip avoid keep preserve spare retain""".split()
)
# "restore its database", "back up both databases": a part of the services named before.
OWNER_WORDS: Final = frozenset({"its", "their", "both"})
# Clause separators, longest first; intent gives "before", "after" and "without" their meaning.
SPLITTERS: Final = tuple(
    tuple(s.split())
    for s in (
        "as well as",
        "and then",
        "and also",
        "followed by",
        "and",
        "then",
        "but",
        "before",
        "after",
        "plus",
        "without",
        "except",
        "excluding",
        ",",
        ";",
        ".",
        "!",
        "?",
        ":",
    )
)
TARGET_PREPOSITIONS: Final = frozenset({"on"})
# "to X", "in X", "from X" name a target only when X is a known inventory name.
MAYBE_TARGET_PREPOSITIONS: Final = frozenset({"to", "in", "into", "onto", "from"})
TARGET_KINDS: Final = frozenset(
    """
    host hosts group groups node nodes server servers machine machines box boxes cluster
    clusters vm vms""".split()
)
