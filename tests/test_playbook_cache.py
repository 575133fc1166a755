"""The catalog cache in PostgreSQL (`playbook_cache`): an unchanged repo of 1,000 playbooks is
catalogued without parsing a file, a changed file is parsed again, and concurrent plans share
the cache without waiting for each other."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from activities import playbook_cache
from activities.db import make_engine
from activities.discovery import Item, discover
from activities.playbook_cache import CatalogCache
from tests.helpers import db_rows

SERVICES = ["grafana", "loki", "kuma", "nginx", "postgres", "redis", "minio", "traefik", "vault", "gitea"]
ACTIONS = ["deploy", "restart", "update", "remove", "verify"]


def generate_repo(root: Path, count: int) -> Path:
    for i in range(count):
        service, action = f"{SERVICES[i % len(SERVICES)]}{i // 50}", ACTIONS[(i // len(SERVICES)) % len(ACTIONS)]
        folder = root / service
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{action}_{service}-{i}.yml").write_text(
            f"- name: {action} {service}\n  hosts: all\n  gather_facts: false\n"
            f"  tasks:\n    - ansible.builtin.debug:\n        msg: {i}\n"
        )
    (root / "requirements.yml").write_text("collections: []\n")
    return root


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the files the cache hands to the real parser."""
    seen: list[str] = []
    real = playbook_cache.parse_playbook

    def counting(rel: str, data: bytes) -> Item:
        seen.append(rel)
        return real(rel, data)

    monkeypatch.setattr(playbook_cache, "parse_playbook", counting)
    return seen


def test_an_unchanged_repo_is_catalogued_without_parsing(
    engine: Engine, database_url: str, parses: list[str], tmp_path: Path
) -> None:
    repo = generate_repo(tmp_path / "repo", 1000)
    cache = CatalogCache(engine)

    cold = cache.load(repo)
    assert len(parses) == 1000
    warm = CatalogCache(engine).load(repo)  # another worker, or this one restarted: from the rows

    assert len(parses) == 1000, "the warm load parsed nothing"
    assert cache.load(repo) is cold, "unchanged files: the same catalog, without reading the rows"
    assert (warm.entries, warm.skipped, warm.broken) == (cold.entries, cold.skipped, cold.broken)
    plain = discover(repo)
    assert (cold.entries, cold.skipped, cold.broken) == (plain.entries, plain.skipped, plain.broken)
    [row] = db_rows(
        database_url, "SELECT count(*) AS n FROM playbook_cache WHERE root = :root", root=str(repo.resolve())
    )
    assert row["n"] == 1000


def test_a_changed_file_is_parsed_again_and_a_touched_one_is_not(
    engine: Engine, parses: list[str], tmp_path: Path
) -> None:
    repo = generate_repo(tmp_path / "repo", 20)
    cache = CatalogCache(engine)
    cache.load(repo)
    parses.clear()
    [touched, changed] = sorted(repo.rglob("*.yml"))[:2]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10_000_000_000))
    changed.write_text(changed.read_text().replace("hosts: all", "hosts: web"))

    catalog = cache.load(repo)

    assert parses == [changed.relative_to(repo).as_posix()]
    [entry] = [e for e in catalog.entries if e.path == changed.relative_to(repo).as_posix()]
    assert entry.hosts == ("web",)
    parses.clear()
    cache.load(repo)
    assert parses == [], "the new size and mtime were stored"


def test_rows_of_another_parser_version_are_not_trusted(
    engine: Engine, database_url: str, parses: list[str], tmp_path: Path
) -> None:
    repo = generate_repo(tmp_path / "repo", 10)
    cache = CatalogCache(engine)
    cache.load(repo)
    with engine.begin() as conn:
        conn.execute(text('UPDATE playbook_cache SET parser = 0, item = \'{"kind": "entry"}\''))
    parses.clear()

    catalog = CatalogCache(engine).load(repo)

    assert len(parses) == 10
    assert len(catalog.entries) == 10


def test_concurrent_loads_share_the_cache(engine: Engine, tmp_path: Path) -> None:
    repo = generate_repo(tmp_path / "repo", 200)
    cache = CatalogCache(engine)

    with ThreadPoolExecutor(max_workers=8) as pool:
        catalogs = list(pool.map(lambda _: cache.load(repo), range(8)))

    assert all(c.entries == catalogs[0].entries for c in catalogs)
    assert len(catalogs[0].entries) == 200
