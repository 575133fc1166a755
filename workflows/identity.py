"""Who someone is, for four eyes, allowlists and quorums: names compared as people, not strings.

A name is normalised with the PRECIS UsernameCaseMapped profile (RFC 8265): width and case
are mapped, and control, format and zero-width characters, spaces and compatibility forms are
refused. That alone still lets `аlice` (Cyrillic а) or `alicé` pass as someone new, so a name
that mixes scripts confusably is refused, and two names are the same person when their
*skeletons* agree: accents dropped and each character folded to the Latin letter it looks like.

Pure and deterministic (Unicode tables only), so the workflow may run it and replay agrees.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

from temporalio import workflow

# Pure Unicode tables, loaded once per process instead of once per sandboxed workflow run.
with workflow.unsafe.imports_passed_through():
    import precis_i18n
    from confusable_homoglyphs import categories, confusables

MAX_NAME_CHARS = 256
_PROFILE = precis_i18n.get_profile("UsernameCaseMapped")


class IdentityRefused(ValueError):
    """The name cannot stand for a person; the message says why."""


@dataclass(frozen=True)
class Identity:
    raw: str  # as sent
    name: str  # PRECIS-normalised: the form every comparison uses
    skeleton: str  # what the name looks like: equal skeletons are look-alikes

    def same_person(self, other: Identity) -> bool:
        return self.name == other.name

    def looks_like(self, other: Identity) -> bool:
        return self.skeleton == other.skeleton


def identify(raw: str) -> Identity:
    """Normalise `raw`, or raise IdentityRefused naming the problem."""
    text = raw.strip(" \t\r\n")
    if len(text) > MAX_NAME_CHARS:
        raise IdentityRefused(f"name is longer than {MAX_NAME_CHARS} characters")
    try:
        name = _PROFILE.enforce(text)
    except UnicodeError as err:
        raise IdentityRefused(f"{text!r} is not a valid user name: {_precis_reason(err)}") from None
    if confusables.is_dangerous(name):
        scripts = ", ".join(sorted(categories.unique_aliases(name))).lower()
        raise IdentityRefused(f"{text!r} mixes look-alike characters from several scripts ({scripts})")
    return Identity(raw=raw, name=name, skeleton=skeleton(name))


def skeleton(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(_latin(ch) for ch in decomposed if unicodedata.category(ch) != "Mn").casefold()


@functools.lru_cache(maxsize=4096)
def _latin(ch: str) -> str:
    if ch.isascii():
        return ch
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"])
    if found:
        for glyph in found[0]["homoglyphs"]:
            if glyph["c"].isascii():
                return str(glyph["c"])
    return ch


def _precis_reason(err: UnicodeError) -> str:
    # precis-i18n puts the rule in `reason`, e.g. "DISALLOWED/precis_ignorable_properties"
    reason = str(getattr(err, "reason", err))
    if isinstance(err, UnicodeEncodeError):
        bad = err.object[err.start : err.end]
        if bad:
            return f"character U+{ord(bad[0]):04X} is not allowed ({reason})"
    return reason
