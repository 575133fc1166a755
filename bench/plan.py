"""Planning speed and accuracy: the catalog cache, a plan on 1,000 playbooks, plans at once.

Run from the repository root: `.venv/bin/python -m bench.plan`. Every figure is printed beside
its anchor measured in the same run, and their ratio (figure ÷ anchor); see bench/README.md.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from activities.catalog import Draft, Planner
from activities.db import make_engine, migrate
from activities.discovery import discover
from activities.intent import plan_request
from activities.playbook_cache import CatalogCache
from bench.machine import machine
from tests.test_intent import PLANS, REPOS, TARGETS
from workers.devstack import EXAMPLES, EmbeddedPostgres, write_local_inventory

# 100 services, none of them a word of the request grammar or a verb.
_SERVICE_NAMES = """
    grafana loki kuma nginx postgres redis minio traefik vault gitea prometheus alertmanager
    jellyfin plex sonarr radarr lidarr prowlarr bazarr overseerr nextcloud immich paperless
    vaultwarden authelia authentik keycloak pihole adguard unbound wireguard tailscale headscale
    syncthing restic borg duplicati jenkins drone woodpecker harbor portainer rancher k3s
    longhorn ceph samba mosquitto zigbee2mqtt homeassistant nodered influxdb telegraf mariadb
    mysql mongodb elasticsearch kibana logstash opensearch graylog zabbix netdata cadvisor caddy
    haproxy keepalived coredns dnsmasq openldap freeipa postfix dovecot rspamd mailcow synapse
    mastodon wikijs bookstack hedgedoc gitlab forgejo sentry memcached rabbitmq kafka zookeeper
    nats etcd consul nomad fluentbit tempo mimir jaeger openvpn frigate calibre navidrome
    audiobookshelf"""
SERVICES = _SERVICE_NAMES.split()
# (canonical action, its word in `<service>-<word>.yml`, in `<word>_<service>.yml`, in folders)
ACTIONS = (
    ("deploy", "deploy", "install", "deploy"),
    ("restart", "restart", "restart", "restart"),
    ("update", "update", "upgrade", "update"),
    ("remove", "remove", "uninstall", "remove"),
    ("verify", "verify", "check", "check"),
    ("backup", "backup", "backup", "backup"),
    ("restore", "restore", "restore", "restore"),
    ("configure", "config-update", "configure", "configure"),
    ("stop", "stop", "stop", "stop"),
    ("start", "start", "start", "start"),
)
GROUPS = ("web", "db", "monitoring", "media")
INVENTORY_INI = """\
[web]
web1 ansible_host=10.0.0.11
web2 ansible_host=10.0.0.12

[db]
db1 ansible_host=10.0.0.21

[monitoring]
mon1 ansible_host=10.0.0.31

[media]
media1 ansible_host=10.0.0.41

[homelab:children]
web
db
monitoring
media

[all:vars]
ansible_user=ops
"""
# Eight realistic requests over the three naming conventions of the generated repo.
REQUESTS = (
    "deploy grafana and restart nginx",
    "back up postgres, then upgrade it",
    "restart jellyfin on homelab",
    "stop nextcloud, update it and start it again",
    "update the traefik config",
    "check prometheus before we patch it",
    "remove the old gitea and deploy it again",
    "install keycloak on homelab and restore vaultwarden",
)
KUMA = "Deploy Kuma Uptime to homelab and add our existing portals to the config"
TARGET_1000 = 0.300  # seconds: warm catalog + plan on 1,000 playbooks
TARGET_CONCURRENT = 1.0  # seconds: the slowest of 8 plans at once


# --- the workload ---------------------------------------------------------------------------


def generate_repo(root: Path) -> Path:
    """1,000 playbooks: 100 services × 10 actions, a third in each naming convention, every
    fourth with a `# signoff:` header; plus a role tree, vars and tool files to be skipped."""
    for i, service in enumerate(SERVICES):
        for j, (action, flat, prefix, folder) in enumerate(ACTIONS):
            if i < 33:
                rel = f"{service}-{flat}.yml"
            elif i < 66:
                rel = f"playbooks/{prefix}_{service}.yml"
            else:
                rel = f"{service}/{folder}_{service}.yml"
            header = (
                f"# signoff:\n#   service: {service}\n#   action: {action}\n"
                f"#   description: {action} {service}\n#   risk: medium\n"
                if (i * len(ACTIONS) + j) % 4 == 0
                else ""
            )
            _write(root / rel, header + _play(f"{action.capitalize()} {service}", GROUPS[i % len(GROUPS)]))
    for role in ("common", "docker", "firewall", "users", "backup_agent"):
        for part in ("tasks", "handlers", "defaults", "meta"):
            _write(root / "roles" / role / part / "main.yml", "---\n- name: a task\n  ansible.builtin.debug: {}\n")
        _write(root / "roles" / role / "templates" / "config.yml.j2", "key: {{ value }}\n")
    _write(root / "shared-role" / "tasks" / "main.yml", "- ansible.builtin.ping:\n")
    _write(root / "shared-role" / "meta" / "main.yml", "dependencies: []\n")
    for group in (*GROUPS, "all"):
        _write(root / "group_vars" / f"{group}.yml", f"{group}_port: 8080\nntp_server: ntp.example\n")
    _write(root / "host_vars" / "web1.yml", "nginx_workers: 4\n")
    _write(root / "requirements.yml", "collections:\n  - name: community.general\n")
    _write(root / "docker-compose.yml", "services:\n  app:\n    image: nginx\n")
    _write(root / "ansible.cfg", "[defaults]\nroles_path = roles\n")
    return root


def _play(name: str, hosts: str) -> str:
    return (
        f"- name: {name}\n  hosts: {hosts}\n  become: true\n  gather_facts: false\n  tasks:\n"
        f"    - name: Apply the common role\n      ansible.builtin.include_role:\n        name: common\n"
        f'    - name: Say what happens\n      ansible.builtin.debug:\n        msg: "{name}"\n'
    )


def _write(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


# --- timing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    median: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        return cls(statistics.median(samples), max(samples))


@dataclass(frozen=True)
class Row:
    figure: str
    value: Timing | str
    anchor_name: str = ""
    anchor: Timing | None = None
    target: str = ""


def timed(call: Callable[[], object], reps: int, before: Callable[[], None] = lambda: None) -> Timing:
    samples = []
    for _ in range(reps):
        before()  # untimed: e.g. emptying the cache
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return Timing.of(samples)


def checked(draft: Draft, request: str) -> Draft:
    """A benchmark of refusals would measure the wrong path: every request must plan."""
    if draft.error is not None or not draft.steps:
        raise RuntimeError(f"{request!r} did not plan: {draft.error}")
    return draft


# --- the measurements -----------------------------------------------------------------------


def catalog_rows(engine: Engine, repo: Path, inventory: Path) -> list[Row]:
    cache = CatalogCache(engine)

    def truncate() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE playbook_cache"))

    plain = timed(lambda: discover(repo), reps=5)
    # A new CatalogCache each time: the same one would answer from its in-memory catalog.
    cold = timed(lambda: CatalogCache(engine).load(repo), reps=5, before=truncate)
    cache.load(repo)
    from_rows = timed(lambda: CatalogCache(engine).load(repo), reps=10)
    warm = timed(lambda: cache.load(repo), reps=10)

    cached_planner = Planner(repo, inventory, cache.load)
    plain_planner = Planner(repo, inventory)
    request = REQUESTS[0]
    for planner in (cached_planner, plain_planner):  # warm: index built, inventory parsed
        checked(planner.plan(request), request)
    with_cache = timed(lambda: cached_planner.plan(request), reps=20)
    with_discover = timed(lambda: plain_planner.plan(request), reps=10)
    return [
        Row("cold catalog, 1,000 playbooks (CatalogCache.load, empty cache)", cold, "discover()", plain),
        Row("warm catalog from the rows, 1,000 playbooks (a new worker)", from_rows, "discover()", plain),
        Row("warm catalog, 1,000 playbooks (CatalogCache.load, unchanged repo)", warm, "discover()", plain),
        Row(
            f"warm catalog + plan, 1,000 playbooks ({request!r})",
            with_cache,
            "Planner with plain discover",
            with_discover,
            f"< {TARGET_1000 * 1000:.0f} ms",
        ),
    ]


def kuma_row(engine: Engine, work: Path) -> Row:
    inventory = write_local_inventory(work / "kuma-inventory.yml", ("homelab",), {})
    cached = Planner(EXAMPLES, inventory, CatalogCache(engine).load)
    plain = Planner(EXAMPLES, inventory)
    for planner in (cached, plain):
        steps = checked(planner.plan(KUMA), KUMA).steps
    print(f"Kuma plan: {[(s.playbook, s.action, s.host_list) for s in steps]}")
    return Row(
        "plan latency, Kuma request on workers/examples/playbooks (warm cache)",
        timed(lambda: cached.plan(KUMA), reps=30),
        "Planner with plain discover",
        timed(lambda: plain.plan(KUMA), reps=30),
    )


def concurrent_rows(engine: Engine, repo: Path, inventory: Path, rounds: int = 5) -> list[Row]:
    planner = Planner(repo, inventory, CatalogCache(engine).load)

    def one(request: str) -> float:
        start = time.perf_counter()
        checked(planner.plan(request), request)
        return time.perf_counter() - start

    for request in REQUESTS:  # warm, and proves each request plans
        one(request)
    slowest, walls, seq_slowest, seq_walls = [], [], [], []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(rounds):
            start = time.perf_counter()
            singles = list(pool.map(one, REQUESTS))
            walls.append(time.perf_counter() - start)
            slowest.append(max(singles))
            start = time.perf_counter()
            singles = [one(r) for r in REQUESTS]
            seq_walls.append(time.perf_counter() - start)
            seq_slowest.append(max(singles))
    return [
        Row(
            "8 plans at once, one shared Planner: slowest single plan",
            Timing.of(slowest),
            "slowest of the 8 one after another",
            Timing.of(seq_slowest),
            f"< {TARGET_CONCURRENT:.0f} s",
        ),
        Row(
            "8 plans at once, one shared Planner: wall time",
            Timing.of(walls),
            "the 8 one after another",
            Timing.of(seq_walls),
        ),
    ]


def accuracy_rows() -> list[Row]:
    """Right/total of tests/test_intent.py PLANS per fixture repo: with the inventory names the
    tests pass (`target_names`), and without them, as `plan_request(request, discover(repo))`."""
    rows = []
    for repo in sorted({r for r, _, _ in PLANS}):
        catalog = discover(REPOS / repo)
        cases = [(q, expected) for r, q, expected in PLANS if r == repo]
        scores = []
        for names in (TARGETS[repo], ()):
            right = 0
            for request, expected in cases:
                intent = plan_request(request, catalog, target_names=names)
                right += intent.error is None and [(s.playbook, s.action) for s in intent.steps] == expected
            scores.append(f"{right}/{len(cases)}")
        rows.append(
            Row(f"accuracy, tests/fixtures/repos/{repo}", f"{scores[0]} with inventory names, {scores[1]} without")
        )
    return rows


# --- the report -----------------------------------------------------------------------------


def _ms(t: Timing) -> str:
    return f"{t.median * 1000:.1f} / {t.max * 1000:.1f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| figure | median / max ms | anchor | anchor median / max ms | ratio (median) | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if isinstance(r.value, str):
            lines.append(f"| {r.figure} | {r.value} | | | | |")
            continue
        ratio = f"{r.value.median / r.anchor.median:.2f}×" if r.anchor else ""
        # judged on the max: a target is a bound on every plan, not on the typical one
        met = f"{r.target} {'met' if r.value.max < _seconds(r.target) else 'MISSED'}" if r.target else ""
        lines.append(
            f"| {r.figure} | {_ms(r.value)} | {r.anchor_name} | {_ms(r.anchor) if r.anchor else ''} | {ratio} | {met} |"
        )
    return "\n".join(lines)


def _seconds(target: str) -> float:
    number, unit = target.removeprefix("< ").split()
    return float(number) / (1000 if unit == "ms" else 1)


def main() -> None:
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="signoff-bench-") as tmp:
        work = Path(tmp)
        repo = generate_repo(work / "repo")
        found = discover(repo)
        pairs = {(e.service, e.action) for e in found.entries}
        if len(found.entries) != 1000 or len(pairs) != 1000:  # every name read as intended
            raise RuntimeError(f"the generated repo reads as {len(pairs)} distinct playbooks, not 1,000")
        print(
            f"generated repo: {len(found.entries)} playbooks, {len(found.skipped)} skipped, {len(found.broken)} broken"
        )
        inventory = work / "inventory" / "hosts.ini"
        _write(inventory, INVENTORY_INI)
        server = EmbeddedPostgres.start(work / "pgdata")
        try:
            engine = make_engine(server.create_database("bench"))
            migrate(engine)
            rows = catalog_rows(engine, repo, inventory)
            rows.append(kuma_row(engine, work))
            rows += concurrent_rows(engine, repo, inventory)
            engine.dispose()
        finally:
            server.stop()
    rows += accuracy_rows()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(table(rows))


if __name__ == "__main__":
    main()
