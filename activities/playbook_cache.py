"""The playbook catalog, cached in PostgreSQL (`playbook_cache`), keyed by repo and path.

Discovery parses YAML, which costs about a millisecond a file: a repo of 1,000 playbooks would
be re-parsed by every plan. Here a file is re-parsed only when it changed: a row whose size
and mtime match is used as it is (a stat, no read); otherwise the file is read and hashed, and
a row with the same content hash is reused. Rows remember which parser wrote them (a hash of
the discovery code), so a new release re-reads everything once.

Plans running at once never wait for each other here: each reads the rows it needs and writes
only what it parsed; two plans that parse the same new file write the same row.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from activities import catalog_json, discovery, grammar, header, naming, plays, safe_yaml, vocabulary
from activities.catalog_json import item_from_json, item_to_json
from activities.db import PlaybookCacheRow
from activities.discovery import (
    Broken,
    Catalog,
    Entry,
    Skipped,
    catalog_of,
    parse_playbook,
    read_candidate,
    walk_playbook_files,
)

_BATCH = 500


def _parser_version() -> int:
    modules = (catalog_json, discovery, grammar, header, naming, plays, safe_yaml, vocabulary)
    source = "".join(inspect.getsource(module) for module in modules)
    return int(hashlib.sha256(source.encode()).hexdigest()[:7], 16)


PARSER_VERSION = _parser_version()


class CatalogCache:
    """Also keeps the last catalog of each repo in memory: while no file's size or mtime
    changed, a plan costs one walk of the tree, with no database read and no parse; plans
    running at once no longer each rebuild 1,000 entries under the GIL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._last: dict[str, tuple[tuple[Any, ...], Catalog]] = {}

    def load(self, playbook_dir: Path) -> Catalog:
        root = str(playbook_dir.resolve())
        files, skipped, broken = walk_playbook_files(playbook_dir)
        stats = [_stat(path) for _, path in files]
        signature = (tuple(rel for rel, _ in files), tuple(stats), tuple(skipped), tuple(broken))
        with self._lock:
            last = self._last.get(root)
        if last is not None and last[0] == signature and None not in stats:
            return last[1]
        catalog = self._load(root, files, stats, skipped, broken)
        with self._lock:
            self._last[root] = (signature, catalog)
        return catalog

    def _load(
        self,
        root: str,
        files: list[tuple[str, Path]],
        stats: list[tuple[int, int] | None],
        skipped: list[Skipped],
        broken: list[Broken],
    ) -> Catalog:
        with Session(self._engine) as session:
            rows = {
                row.path: row
                for row in session.scalars(
                    select(PlaybookCacheRow).where(
                        PlaybookCacheRow.root == root, PlaybookCacheRow.parser == PARSER_VERSION
                    )
                )
            }
            session.expunge_all()
        items: list[Entry | Skipped | Broken] = []
        fresh: list[dict[str, Any]] = []
        for (rel, path), stat in zip(files, stats, strict=True):
            if stat is None:
                items.append(_unreadable(rel, path))
                continue
            row = rows.get(rel)
            cached = _from_row(row) if row is not None else None
            if cached is not None and row is not None and (row.size, row.mtime_ns) == stat:
                items.append(cached)
                continue
            data = read_candidate(rel, path)
            if isinstance(data, Broken):
                items.append(data)
                continue
            sha = hashlib.sha256(data).hexdigest()
            item = cached if cached is not None and row is not None and row.sha256 == sha else parse_playbook(rel, data)
            items.append(item)
            fresh.append(
                {
                    "root": root,
                    "path": rel,
                    "size": stat[0],
                    "mtime_ns": stat[1],
                    "sha256": sha,
                    "parser": PARSER_VERSION,
                    "item": item_to_json(item),
                }
            )
        if fresh:
            self._store(fresh)
        return catalog_of([*skipped, *broken, *items])

    def _store(self, rows: list[dict[str, Any]]) -> None:
        """Upsert in batches: one statement for 1,000 rows would pass PostgreSQL's parameter limit."""
        table = PlaybookCacheRow.__table__
        assert isinstance(table, Table)
        with Session(self._engine) as session, session.begin():
            for start in range(0, len(rows), _BATCH):
                batch = rows[start : start + _BATCH]
                stmt = insert(table).values(batch)
                session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["root", "path"],
                        set_={c: stmt.excluded[c] for c in ("size", "mtime_ns", "sha256", "parser", "item")},
                    )
                )


def _unreadable(rel: str, path: Path) -> Broken:
    try:
        path.stat()
    except OSError as err:
        return Broken(rel, f"unreadable: {err.strerror}")
    return Broken(rel, "unreadable: changed while it was read")


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)


def _from_row(row: PlaybookCacheRow) -> Entry | Skipped | Broken | None:
    """A cached item, or None when the row no longer fits today's types (then: re-parse)."""
    try:
        return item_from_json(row.item)
    except (ValueError, KeyError, TypeError):
        return None
