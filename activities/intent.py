"""Planning: which catalog playbooks a plain-words request asks for, in what order, and why.

The request is cut into clauses, each read on its own (`clauses.read_clauses`): a verb binds
only to the services of its clause. A clause without a verb takes the previous one's ("deploy A
and B"); a clause without a service takes the previous ones ("deploy grafana and restart it",
"...and restart"). Negated clauses ("but do not remove it", "without restarting") plan nothing
and exclude what they name. Steps run in the order the request says them ("patch A after
checking it" checks first), then `after:` header constraints apply on top. Every clause must be
accounted for: if one names an unknown service, a verb its service has no playbook for, or fits
two playbooks equally, planning fails naming that clause, and no step is planned at all.

Target phrases ("on nas01", "on group media", "to homelab" when homelab is an inventory name)
are cut out before matching and returned per step as the words after the preposition; when a
clause group ("restart A and B on nas01") names one target it applies to every clause in it.
A repeated playbook is planned once, where first asked for.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from activities import vocabulary as vocab
from activities.clauses import Clause, Key, read_clauses
from activities.discovery import Catalog, Entry
from activities.names import CLOSEST, CatalogIndex, spellings
from activities.vocabulary import Verb

__all__ = ["MAX_SUGGESTIONS", "CatalogIndex", "Intent", "Step", "Unmatched", "intent_to_dict", "plan_request"]

MAX_SUGGESTIONS = 20
_ANY = vocab.WILDCARD_ACTION


@dataclass(frozen=True)
class Step:
    playbook: str  # path relative to the playbook dir
    action: str
    service: str
    risk: vocab.Risk
    reason: str  # the words of the request that chose this step
    clause: str
    target_phrase: str | None  # the words after "on"/"to"/"in", for the inventory to resolve
    entry: Entry = field(repr=False, compare=False)


@dataclass(frozen=True)
class Unmatched:
    clause: str
    reason: str
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Intent:
    request: str
    steps: tuple[Step, ...] = ()
    error: str | None = None
    unmatched: tuple[Unmatched, ...] = ()
    excluded: tuple[str, ...] = ()  # negated clauses: what the requester said not to do
    ignored: tuple[str, ...] = ()  # clauses with neither verb nor service ("thanks")


def plan_request(request: str, catalog: Catalog | CatalogIndex, *, target_names: Collection[str] = ()) -> Intent:
    """Steps for every clause of `request`, or an error naming each clause that maps to none.

    Pass a `CatalogIndex` to plan many requests against one catalog without re-indexing it.
    """
    index = catalog if isinstance(catalog, CatalogIndex) else CatalogIndex(catalog)
    return _Planner(request, index).plan(read_clauses(request, index, target_names))


@dataclass
class _Pending:
    clause: int
    entry: Entry
    verb: Verb
    reason: str


class _Planner:
    """Walks the clauses in request order, carrying the verb and services they refer back to."""

    def __init__(self, request: str, index: CatalogIndex) -> None:
        self.request, self.index = request, index
        self.unmatched: list[Unmatched] = []
        self.excluded: list[str] = []
        self.ignored: list[str] = []
        self.pending: list[_Pending] = []
        self.negated: set[str] = set()  # paths a negated clause named
        self.last: tuple[Verb, str, bool, str] | None = None  # verb, its words, negated, clause
        self.group: list[tuple[Key, str]] = []  # what "them" and "it" point back to

    def plan(self, clauses: list[Clause]) -> Intent:
        group_of: list[int] = []  # clauses sharing one verb ("restart A and B on X")
        for n, c in enumerate(clauses):
            if c.verb is not None:
                self.last = (c.verb, c.verb_raw, c.negated, c.text)
            group_of.append(n if c.verb or not group_of else group_of[-1])
            negated = c.negated or (c.verb is None and self.last is not None and self.last[2])
            if any(key not in self.index.parts for key, _ in c.services):  # "postgres database"
                c.services = [(k, raw) for k, raw in c.services if k not in self.index.parts]
            services = self._services(c, n, clauses)
            if c.services:
                self.group = c.services if c.verb else self.group + c.services
            if services is not None and c.lead and not c.verb:  # "and frobnicate B"
                self._fail(
                    c,
                    negated,
                    f'no playbook action called "{c.lead}"; '
                    f"{services[0][1]} has: " + ", ".join(self.index.actions_of(services[0][0])),
                )
            elif services is not None and self.last is None:
                self._fail(
                    c,
                    negated,
                    f"no action named for {services[0][1]}; it has: "
                    + ", ".join(self.index.actions_of(services[0][0])),
                )
            elif services is not None and self.last is not None:
                verb, said, _, where = self.last
                how = "" if c.verb else f' (from "{where}")'
                for key, label in services:
                    self._step(n, c, negated, verb, key, f'"{said}"{how} + {label}')
        return self._refuse() if self.unmatched else self._finish(clauses, group_of)

    def _services(self, c: Clause, n: int, clauses: list[Clause]) -> list[tuple[Key, str]] | None:
        """The services clause `c` is about, each with its label, or None if it is settled."""

        def labelled(named: list[tuple[Key, str]]) -> list[tuple[Key, str]]:
            return [(key, f'"{raw}"') for key, raw in named]

        if c.services:
            return labelled(c.services)
        if c.pronoun and self.group:
            chosen = self.group[-1:] if c.pronoun == "it" else self.group
            return [(key, f'"{c.pronoun_raw}" (= {raw})') for key, raw in chosen]
        if c.pronoun:
            self._fail(c, c.negated, f'"{c.pronoun_raw}" refers to no service named before')
            return None
        if c.verb is None and not c.leftovers:
            if c.target and self.pending and self.pending[-1].clause == n - 1:
                prev = clauses[n - 1]  # "on nas01 and nas02": one more target, not a service
                prev.target = f"{prev.target} and {c.target}" if prev.target else c.target
            else:
                (self.excluded if c.negated else self.ignored).append(c.text)
            return None
        if c.leftovers:
            data = self.last and self.last[0].phrase in vocab.VALUE_VERBS
            if self.group and data:
                return labelled(self.group)  # "add our portals to the config": portals are data
            if self.group and (owners := self._qualified(c)):
                return owners  # "... and set up the certificates" of the service named before
            self._unknown(c, " ".join(t.raw for t in c.leftovers))
            return None
        ahead = next((d.services for d in clauses[n + 1 :] if d.services), [])
        if self.group or ahead:  # "deploy grafana and restart", "check and patch grafana"
            return labelled(self.group or ahead)
        verb = c.verb.phrase if c.verb else "?"
        having = self.index.having(c.verb.action) if c.verb else ()
        self._fail(c, c.negated, f'"{verb}" names no service', having)
        return None

    def _qualified(self, c: Clause) -> list[tuple[Key, str]]:
        """The services named before whose playbooks the clause's leftover words qualify, by
        their own names: after "the dokku domain", "the certificates" are dokku's."""
        said = {t.norm for t in c.leftovers}
        owners: dict[Key, str] = {}
        for key, raw in self.group:
            for service in {e.service for e, _ in self.index.names[key].values()}:
                own = tuple(vocab.words(service))
                quals = {q for path in self.index.names.get(own, {}) for q in self.index.qualifiers[path]}
                if own in self.index.names and said <= quals:
                    owners.setdefault(own, f'"{raw}"')
        return list(owners.items())

    def _unknown(self, c: Clause, phrase: str) -> None:
        words = {t.norm for t in c.leftovers}
        broken = next((b for stem, b in self.index.broken if words <= stem), None)
        if broken is not None:
            return self._fail(c, c.negated, f'the playbook for "{phrase}" ({broken.path}) is broken: {broken.reason}')
        if self.last is None:
            return self._fail(c, c.negated, f'no action and no known service in "{phrase}"', self.index.closest(phrase))
        closest = self.index.closest(phrase)
        hint = f"; closest: {', '.join(closest)}" if closest else ""
        if not closest:  # nothing alike: say what takes this verb
            closest = self.index.having(self.last[0].action)
            hint = (
                (f"; services with a {self.last[0].action} playbook: {', '.join(closest[:CLOSEST])}") if closest else ""
            )
        return self._fail(c, c.negated, f'no service called "{phrase}"{hint}', closest)

    def _fail(self, c: Clause, negated: bool, reason: str, suggestions: Sequence[str] = ()) -> None:
        if negated:  # naming something unknown only to exclude it harms nothing
            self.excluded.append(c.text)
        else:
            self.unmatched.append(Unmatched(c.text, reason, tuple(suggestions[:MAX_SUGGESTIONS])))

    def _step(self, n: int, c: Clause, negated: bool, verb: Verb, key: Key, why: str) -> None:
        by_path = self.index.names[key]
        services = {e.service for e, _ in by_path.values()}
        service = services.pop() if len(services) == 1 else self.index.display[" ".join(key)]
        fits = [(e, own) for e, own in by_path.values() if verb.action in (_ANY, e.action)]
        if not fits:
            return self._fail(
                c,
                negated,
                f"{service} has no playbook to {verb.action}; it has: " + ", ".join(self.index.actions_of(key)),
                [f"{e.action} {e.service} ({e.path})" for e, _ in by_path.values()],
            )
        said = spellings(verb.phrase)

        def fit(e: Entry, own: bool) -> tuple[int, int, bool, bool]:
            """Qualifiers said ("apps"), qualifiers not said, the very verb word, own name."""
            q = self.index.qualifiers[e.path]
            return len(q & c.words), -len(q - c.words), bool(said & self.index.action_words[e.path]), own

        best = max(fit(e, own) for e, own in fits)
        top = [e for e, own in fits if fit(e, own) == best]
        if len(top) > 1:
            return self._fail(
                c,
                negated,
                f'{len(top)} playbooks fit "{verb.phrase} {service}" '
                f"equally: {', '.join(e.path for e in top[:CLOSEST])}",
                [e.path for e in top],
            )
        if negated:
            self.negated.add(top[0].path)
            self.excluded.append(c.text)
        else:
            self.pending.append(_Pending(n, top[0], verb, f'{why} in clause "{c.text}"'))
        return None

    def _intent(self, steps: Sequence[Step] = (), error: str | None = None) -> Intent:
        return Intent(
            self.request,
            tuple(steps),
            error,
            tuple(self.unmatched),
            tuple(dict.fromkeys(self.excluded)),
            tuple(self.ignored),
        )

    def _refuse(self) -> Intent:
        shown = "; ".join(f'"{u.clause}": {u.reason}' for u in self.unmatched[:10])
        more = f" (and {len(self.unmatched) - 10} more)" if len(self.unmatched) > 10 else ""
        return self._intent(error=f"cannot plan {len(self.unmatched)} clause(s): {shown}{more}")

    def _finish(self, clauses: list[Clause], group_of: list[int]) -> Intent:
        for g in set(group_of):  # one target said in a verb group applies to all of it
            named = {c.target for c, h in zip(clauses, group_of, strict=True) if h == g} - {None}
            for c, h in zip(clauses, group_of, strict=True):
                c.target = c.target or (next(iter(named)) if h == g and len(named) == 1 else None)
        order: list[int] = []
        for n, c in enumerate(clauses):
            if "after" in c.connector.split() and n > 0:
                order.insert(order.index(n - 1), n)  # "patch A after checking it"
            elif n == 1 and clauses[0].connector.split()[:1] == ["before"]:
                order.insert(0, n)  # "before patching A, check it"
            else:
                order.append(n)
        rank = {n: i for i, n in enumerate(order)}
        steps: dict[str, Step] = {}  # a playbook asked for twice runs once, where first asked
        for p in sorted(self.pending, key=lambda p: rank[p.clause]):  # stable within a clause
            e, c = p.entry, clauses[p.clause]
            if e.path not in steps and e.path not in self.negated:
                risk = (
                    e.risk if e.risk_explicit or p.verb.action == _ANY else vocab.max_risk([e.risk, p.verb.risk])
                )  # "reboot" said of a restart playbook is high
                steps[e.path] = Step(e.path, e.action, e.service, risk, p.reason, c.text, c.target, e)
        ordered, cycle = _after_order(list(steps.values()))
        if cycle:
            loop = " → ".join(s.entry.stem for s in [*cycle, cycle[0]])
            self.unmatched = [Unmatched(s.clause, f"`after:` cycle {loop}") for s in cycle]
            return self._intent(error=f"cannot order the plan: `after:` cycle {loop}")
        if not ordered:
            return self._intent(error="nothing to plan: the request names no step to run")
        return self._intent(ordered)


def _after_order(steps: list[Step]) -> tuple[list[Step], list[Step]]:
    """Steps with `after:` constraints applied, otherwise in request order; or a cycle."""
    by_stem: dict[str, list[int]] = {}
    for i, s in enumerate(steps):
        by_stem.setdefault(s.entry.stem, []).append(i)
    preds = [{j for a in s.entry.after for j in by_stem.get(a, []) if j != i} for i, s in enumerate(steps)]
    waiting = [len(p) for p in preds]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    out: list[int] = []
    while ready:
        i = heapq.heappop(ready)  # the earliest ready step keeps the request's order
        out.append(i)
        for j, p in enumerate(preds):
            if i in p:
                waiting[j] -= 1
                if waiting[j] == 0:
                    heapq.heappush(ready, j)
    if len(out) == len(steps):
        return [steps[i] for i in out], []
    left = set(range(len(steps))) - set(out)
    walk = [min(left)]
    while (node := min(preds[walk[-1]] & left)) not in walk:  # each step left waits on another
        walk.append(node)
    return [], [steps[i] for i in reversed(walk[walk.index(node) :])]


def intent_to_dict(intent: Intent) -> dict[str, Any]:
    """The JSON shape `signoff plan --json` prints (DESIGN.md section 3)."""
    return {
        "request": intent.request,
        "steps": [
            {
                "playbook": s.playbook,
                "action": s.action,
                "service": s.service,
                "risk": s.risk,
                "reason": s.reason,
                "clause": s.clause,
                "target_phrase": s.target_phrase,
            }
            for s in intent.steps
        ],
        "error": intent.error,
        "unmatched": [
            {"clause": u.clause, "reason": u.reason, "suggestions": list(u.suggestions)} for u in intent.unmatched
        ],
        "excluded": list(intent.excluded),
        "ignored": list(intent.ignored),
    }
