"""Discovery: which files are playbooks, what each does, and which files are skipped or broken."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from activities import discovery
from activities.catalog_json import entry_from_json, entry_to_json, item_from_json, item_to_json
from activities.discovery import (
    Broken,
    Catalog,
    Entry,
    Skipped,
    VarSpec,
    catalog_of,
    discover,
    parse_playbook,
    read_candidate,
    walk_playbook_files,
)

REPOS = Path(__file__).parent / "fixtures" / "repos"
PLAY = b"- name: Say hello\n  hosts: all\n  tasks:\n    - ansible.builtin.debug:\n        msg: hi\n"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repos")
    shutil.copytree(REPOS, root, dirs_exist_ok=True)
    return root


def table(catalog: Catalog) -> dict[str, tuple[str, str, str]]:
    return {e.path: (e.service, e.action, e.risk) for e in catalog.entries}


EXPECTED: dict[str, dict[str, tuple[str, str, str]]] = {
    "flat-service-action": {
        "docker-install.yml": ("docker", "deploy", "medium"),
        "foo-frobnicate.yml": ("foo", "frobnicate", "medium"),  # never relabelled as deploy
        "homeassistant-deploy.yml": ("homeassistant", "deploy", "medium"),
        "kuma-config-update.yml": ("kuma", "configure", "medium"),
        "kuma-deploy.yml": ("kuma", "deploy", "medium"),
        "kuma-remove.yml": ("kuma", "remove", "high"),
        "loki-deploy.yml": ("loki", "deploy", "medium"),
        "nginx-deploy.yml": ("nginx", "deploy", "medium"),
        "nginx-reload.yml": ("nginx", "restart", "medium"),
        "nginx-restart.yml": ("nginx", "restart", "medium"),
        "pihole-backup.yml": ("pihole", "backup", "low"),
        "pihole-reboot.yml": ("pihole", "restart", "high"),
        "pihole-update.yml": ("pihole", "update", "medium"),
        "promtail-deploy.yml": ("promtail", "deploy", "medium"),
    },
    "action-service": {
        "playbooks/backup-vm.yml": ("vm", "backup", "low"),
        "playbooks/check_backups.yml": ("backups", "verify", "low"),
        "playbooks/deploy-vscode-server.yml": ("vscode server", "deploy", "medium"),
        "playbooks/foo_teardown.yml": ("foo", "remove", "high"),
        "playbooks/install_docker.yml": ("docker", "deploy", "medium"),
        "playbooks/migrate_postgres.yml": ("postgres", "migrate", "medium"),
        "playbooks/provision_vm.yml": ("vm", "deploy", "medium"),
        "playbooks/reboot_hosts.yml": ("hosts", "restart", "high"),
        "playbooks/remove_vm.yml": ("vm", "remove", "high"),
        "playbooks/restore-vm.yml": ("vm", "restore", "high"),
        "playbooks/setup_nextcloud.yml": ("nextcloud", "deploy", "medium"),
        "playbooks/site.yml": ("site", "deploy", "medium"),
        "playbooks/uninstall_docker.yml": ("docker", "remove", "high"),
        "playbooks/update_packages.yml": ("packages", "update", "medium"),
        "playbooks/upgrade-docker.yml": ("docker", "update", "medium"),
    },
    "per-service": {
        "monitoring.yml": ("monitoring", "deploy", "medium"),
        "site.yml": ("site", "deploy", "medium"),
        "grafana/check_grafana.yml": ("grafana", "verify", "low"),
        "grafana/deploy_dashboards.yml": ("dashboards", "deploy", "medium"),
        "grafana/deploy_grafana.yml": ("grafana", "deploy", "medium"),
        "grafana/remove_grafana.yml": ("grafana", "remove", "high"),
        "grafana/restart_grafana.yml": ("grafana", "restart", "medium"),
        "grafana/update_grafana.yml": ("grafana", "update", "medium"),
        "grafana-lab/deploy.yml": ("grafana-lab", "deploy", "medium"),
        "grafana-lab/remove.yml": ("grafana-lab", "remove", "high"),
        "loki/playbook.yml": ("loki", "deploy", "medium"),
        "media/jellyfin-deploy.yml": ("jellyfin", "deploy", "medium"),
        "media/jellyfin-restart.yml": ("jellyfin", "restart", "medium"),
        "prometheus/main.yml": ("prometheus", "deploy", "medium"),
        "prometheus/node_exporter_install.yml": ("node exporter", "deploy", "medium"),
        "prometheus/restart.yml": ("prometheus", "restart", "medium"),
    },
    "service-noun-action": {
        "certs_tls_renew.yml": ("certs", "renew", "medium"),
        "haproxy_proxy_reload.yml": ("haproxy", "restart", "medium"),
        "nextcloud_app_update.yml": ("nextcloud", "update", "medium"),
        "nextcloud_config_update.yml": ("nextcloud", "configure", "medium"),
        "nextcloud_maintenance_start.yml": ("nextcloud", "start", "medium"),
        "nextcloud_maintenance_stop.yml": ("nextcloud", "stop", "medium"),
        "nextcloud_update.yml": ("nextcloud", "update", "medium"),
        "postgres_db_backup.yml": ("postgres", "backup", "low"),
        "postgres_db_restore.yml": ("postgres", "restore", "high"),
        "postgres_db_vacuum.yml": ("postgres", "vacuum", "medium"),
        "postgres_wal_backup.yml": ("postgres", "backup", "low"),
        "redis_cache_flush.yml": ("redis", "flush", "medium"),
    },
    # service folders of parts and machine operations, verbs that are no core action
    "topic-folders": {
        "playbooks/add_forge_domain.yml": ("forge", "configure", "medium"),
        "playbooks/convert-notes-with-pandoc.yml": ("notes", "convert", "medium"),
        "playbooks/forge_setup_runners.yml": ("forge", "deploy", "medium"),
        "playbooks/healthcheck.yml": ("node container", "verify", "low"),
        "playbooks/install_docker_debian.yml": ("docker", "deploy", "medium"),
        "playbooks/install_forge.yml": ("forge", "deploy", "medium"),
        "playbooks/ping.yml": ("connectivity host", "ping", "low"),  # read-only: low
        "playbooks/prep_build_node.yml": ("build node", "prepare", "medium"),
        "playbooks/rollback.yml": ("previous release everywhere", "restore", "high"),
        "playbooks/site.yml": ("site", "deploy", "high"),  # it imports a teardown
        "playbooks/tls/distribute_proxy_certs.yml": ("proxy", "distribute", "medium"),
        "playbooks/tls/stage_certs.yml": ("tls", "stage", "medium"),
        "playbooks/dns/add_dns_record.yml": ("dns", "configure", "medium"),
        "playbooks/dns/show_config.yml": ("dns", "show", "low"),  # "config" is no verb here
        "playbooks/services/backup_prowlarr_db.yml": ("prowlarr", "backup", "low"),
        "playbooks/services/backup_readarr_db.yml": ("readarr", "backup", "low"),
        "playbooks/services/deploy_prowlarr.yml": ("prowlarr", "deploy", "medium"),
        "playbooks/services/deploy_readarr.yml": ("readarr", "deploy", "medium"),
        "playbooks/services/restore_prowlarr_db.yml": ("prowlarr", "restore", "high"),
        "playbooks/services/restore_readarr_db.yml": ("readarr", "restore", "high"),
        "playbooks/services/start_all.yml": ("all", "start", "medium"),
        "playbooks/services/start_prowlarr.yml": ("prowlarr", "start", "medium"),
        "playbooks/services/start_readarr.yml": ("readarr", "start", "medium"),
        "playbooks/services/stop_all.yml": ("all", "stop", "medium"),
        "playbooks/services/stop_prowlarr.yml": ("prowlarr", "stop", "medium"),
        "playbooks/services/stop_readarr.yml": ("readarr", "stop", "medium"),
        "playbooks/sso/join_domain.yml": ("sso", "join", "medium"),
        "playbooks/sso/leave_domain.yml": ("sso", "leave", "medium"),  # never a deploy
        "playbooks/tracker/backup_db.yml": ("tracker", "backup", "low"),
        "playbooks/tracker/deploy_tracker.yml": ("tracker", "deploy", "medium"),
        "playbooks/vms/add_disk.yml": ("vms", "configure", "medium"),
        "playbooks/vms/convert_to_template.yml": ("template", "convert", "medium"),
        "playbooks/vms/create_vm_snapshot.yml": ("vms", "backup", "low"),
        "playbooks/vms/force_reboot_vm.yml": ("vms", "restart", "high"),
        "playbooks/vms/list_vm_snapshot.yml": ("vms", "list", "low"),
        "playbooks/vms/reboot_vm.yml": ("vms", "restart", "high"),
        "playbooks/vms/remove_vm.yml": ("vms", "remove", "high"),
        "playbooks/vms/remove_vm_snapshot.yml": ("vms", "remove", "high"),
        "playbooks/vms/revert_vm_snapshot.yml": ("vms", "restore", "high"),
        "playbooks/vms/show_vm_node.yml": ("vms", "show", "low"),
        "playbooks/vms/shutdown_vm.yml": ("vms", "stop", "medium"),
        "playbooks/vms/stop_vm.yml": ("vms", "stop", "medium"),
        "playbooks/wiki/backup_db.yml": ("wiki", "backup", "low"),
        "playbooks/wiki/create_db.yml": ("wiki", "deploy", "medium"),
        "playbooks/wiki/deploy_wiki.yml": ("wiki", "deploy", "medium"),
        "playbooks/wiki/restore_db.yml": ("wiki", "restore", "high"),
    },
}
SKIPPED: dict[str, set[str]] = {
    "flat-service-action": {
        ".github/",
        "inventory/",
        "roles/",
        "requirements.yml",
        "docker-compose.yml",
        "mkdocs.yml",
        "vars.yml",
    },
    "action-service": {
        ".github/",
        ".pre-commit-config.yaml",
        "collections/",
        "inventories/",
        "molecule/",
        "roles/",
        "requirements.yml",
        "execution-environment.yml",
        "homelab.yml",
        "playbooks/tasks/",
        "playbooks/common-tasks.yml",
    },
    "per-service": {
        ".github/",
        "group_vars/",
        "host_vars/",
        "roles/",
        "grafana/files/",
        "grafana/templates/",
        "grafana/vars/",
        "prometheus/files/",
    },
    "service-noun-action": {
        ".gitlab-ci.yml",
        "galaxy.yml",
        "group_vars/",
        "inventories/",
        "requirements.yml",
        "roles/",
        "vars/",
    },
    "topic-folders": {"config/notes/settings.yml", "docker-compose.dev.yml", "inventory/", "playbooks/secrets.yml"},
}


@pytest.mark.parametrize("repo", sorted(EXPECTED))
def test_fixture_repo(repos: Path, repo: str) -> None:
    catalog = discover(repos / repo)
    assert table(catalog) == EXPECTED[repo]
    assert {s.path for s in catalog.skipped} == SKIPPED[repo]
    assert catalog.broken == ()


def test_order_is_deterministic(repos: Path) -> None:
    paths = [e.path for e in discover(repos / "per-service").entries]
    assert paths == [e.path for e in discover(repos / "per-service").entries]
    assert paths[:2] == ["monitoring.yml", "site.yml"]  # a folder's files before its subfolders


def test_header_fields(repos: Path) -> None:
    entry = next(e for e in discover(repos / "flat-service-action").entries if e.path == "kuma-deploy.yml")
    assert entry.source == "header"
    assert entry.description == "Deploy Uptime Kuma on the homelab docker host"
    assert entry.aliases == ("uptime kuma", "uptime-kuma")
    assert entry.required_vars == ("kuma_port",)
    assert entry.after == ("docker-install",)
    assert entry.vars == (VarSpec("kuma_port", "int"), VarSpec("kuma_admin_password", None, True))
    assert entry.vars_declared
    assert (entry.timeout, entry.idle_timeout) == (1800, 300)
    assert entry.hosts == ("homelab",)
    data = (repos / "flat-service-action" / "kuma-deploy.yml").read_bytes()
    assert entry.sha256 == hashlib.sha256(data).hexdigest()


def test_path_entry_explains_its_words(repos: Path) -> None:
    by_path = {e.path: e for e in discover(repos / "service-noun-action").entries}
    app = by_path["nextcloud_app_update.yml"]
    assert (app.source, app.service_words, app.action_words, app.qualifiers) == (
        "path",
        ("nextcloud", "app"),
        ("update",),
        ("app",),
    )
    assert by_path["nextcloud_config_update.yml"].action_words == ("config", "update")
    assert not by_path["nextcloud_update.yml"].vars_declared


def test_templated_hosts_make_a_required_var(repos: Path) -> None:
    by_path = {e.path: e for e in discover(repos / "flat-service-action").entries}
    hass = by_path["homeassistant-deploy.yml"]
    assert hass.hosts == ("set by var `target`",)
    assert hass.required_vars == ("target",)
    vacuum = next(e for e in discover(repos / "service-noun-action").entries if e.path == "postgres_db_vacuum.yml")
    assert vacuum.required_vars == ("pg_database", "pg_hosts")
    assert vacuum.vars == (VarSpec("pg_database"),)


def test_import_playbook_only_site(repos: Path) -> None:
    site = next(e for e in discover(repos / "per-service").entries if e.path == "site.yml")
    assert site.imports == ("grafana/deploy_grafana.yml", "prometheus/main.yml", "loki/playbook.yml")
    assert (site.hosts, site.risk) == (("monitoring",), "medium")  # the imported plays' hosts


def test_imports_give_their_hosts_and_a_high_risk(repos: Path) -> None:
    by_path = {e.path: e for e in discover(repos / "topic-folders").entries}
    site = by_path["playbooks/site.yml"]  # imports deploy_wiki.yml and vms/remove_vm.yml
    assert (site.hosts, site.risk, site.action) == (("wiki", "vms"), "high", "deploy")
    start_all = by_path["playbooks/services/start_all.yml"]  # paths relative to the importer
    assert start_all.hosts == ("readarr", "prowlarr")
    assert start_all.risk == "medium"
    alone = parse_playbook("playbooks/site.yml", (repos / "topic-folders/playbooks/site.yml").read_bytes())
    assert isinstance(alone, Entry)
    assert alone.hosts == ()


def test_imports_resolve_templated_loops_and_missing(tmp_path: Path) -> None:
    write(tmp_path, "a-deploy.yml", b"- import_playbook: b-deploy.yml\n- hosts: web\n")
    write(tmp_path, "b-deploy.yml", b"- import_playbook: a-deploy.yml\n- hosts: '{{ target }}'\n")
    write(tmp_path, "c-deploy.yml", b"- import_playbook: '{{ which }}.yml'\n- import_playbook: gone.yml\n")
    by_path = {e.path: e for e in discover(tmp_path).entries}
    assert by_path["a-deploy.yml"].hosts == ("web", "set by var `target`")
    assert by_path["a-deploy.yml"].required_vars == ("target",)
    assert by_path["c-deploy.yml"].hosts == ()


@pytest.mark.parametrize(
    ("path", "service", "qualifiers", "aliases"),
    [
        ("python/deploy_python3.yml", "python", (), ("python3",)),  # the folder, with a version
        (
            "semaphoreui/check_semaphore_version.yml",
            "semaphoreui",
            ("version",),
            ("semaphore version",),
        ),  # the folder, said short
        (
            "metrics/deploy_nginx_metrics_exporter.yml",
            "nginx metrics exporter",
            (),
            ("metrics nginx metrics exporter",),
        ),  # the folder inside a longer name: that name
        ("services/backup_sonarr_db.yml", "sonarr", ("db",), ("sonarr db",)),
        ("install_docker_on_ubuntu.yml", "docker", ("ubuntu",), ("docker ubuntu",)),
        ("check_for_updates.yml", "updates", (), ()),
    ],
)
def test_names_qualified_by_parts_folders_and_prepositions(
    path: str, service: str, qualifiers: tuple[str, ...], aliases: tuple[str, ...]
) -> None:
    entry = parse_playbook(path, PLAY)
    assert isinstance(entry, Entry)
    assert (entry.service, entry.qualifiers, entry.aliases) == (service, qualifiers, aliases)


def test_an_import_play_name_is_no_verb() -> None:
    entry = parse_playbook(
        "site.yml", b"- name: Import wiki/remove_wiki.yml\n  import_playbook: wiki/remove_wiki.yml\n"
    )
    assert isinstance(entry, Entry)
    assert (entry.service, entry.action) == ("site", "deploy")


def test_encrypted_vars_and_templated_configs_are_skipped(tmp_path: Path) -> None:
    vault = b"$ANSIBLE_VAULT;1.1;AES256\n6162636465666768\n"
    write(tmp_path, "vault.yml", vault)
    write(tmp_path, "group_secrets.yml", vault)
    write(tmp_path, "backup-restore.yml", vault)  # named like a playbook: can't tell, say so
    write(tmp_path, "app/config.yml", b"db:\n  password: {{ vault_db_password }}\n")
    write(tmp_path, "bad-deploy.yml", b"---\n# a broken playbook stays broken\n- hosts: [\n")
    write(tmp_path, "docker-compose.override.yml", b"services: {}\n")
    catalog = discover(tmp_path)
    assert {s.path: s.reason for s in catalog.skipped} == {
        "vault.yml": "variables (vault-encrypted)",
        "group_secrets.yml": "variables (vault-encrypted)",
        "app/config.yml": "not a playbook (not valid YAML, and no list of plays)",
        "docker-compose.override.yml": "compose file",
    }
    assert {b.path for b in catalog.broken} == {"backup-restore.yml", "bad-deploy.yml"}


def write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


BILLION_LAUGHS = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
PLAY_BOMB = b"- hosts: all\n  vars:\n" + b"".join(b"    " + line + b"\n" for line in BILLION_LAUGHS.splitlines())


def test_bad_files_are_broken_and_never_stop_discovery(tmp_path: Path) -> None:
    write(tmp_path, "good-deploy.yml", PLAY)
    write(tmp_path, "invalid-deploy.yml", b"- hosts: all\n  tasks: [\n")
    write(tmp_path, "bomb-deploy.yml", BILLION_LAUGHS)
    write(tmp_path, "playbomb-deploy.yml", PLAY_BOMB)
    write(tmp_path, "many-aliases.yml", b"- &x {hosts: all}\n" + b"- *x\n" * 200)
    write(tmp_path, "deep-deploy.yml", b"- hosts: all\n  vars: {x: " + b"[" * 5000 + b"]" * 5000 + b"}\n")
    write(tmp_path, "huge-deploy.yml", PLAY + b"# " + b"x" * (1 << 20) + b"\n")
    write(tmp_path, "secret-deploy.yml", b"$ANSIBLE_VAULT;1.1;AES256\n6162636465666768\n")
    write(tmp_path, "latin1-deploy.yml", "- name: Café\n  hosts: all\n".encode("latin-1"))
    write(tmp_path, "recursive-deploy.yml", b"- &p {hosts: all, vars: {me: *p}}\n")
    write(tmp_path, "mixed-deploy.yml", PLAY + b"- debug: {msg: not a play}\n")
    write(tmp_path, "twodocs-deploy.yml", PLAY + b"---\n" + PLAY)
    write(tmp_path, "forever-deploy.yml", b"# signoff:\n#   timeout: " + b"9" * 5000 + b"d\n" + PLAY)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    write(outside, "stolen.yml", PLAY)
    os.symlink(outside / "stolen.yml", tmp_path / "stolen-deploy.yml")
    os.symlink(outside, tmp_path / "elsewhere")
    os.symlink(tmp_path / "nowhere.yml", tmp_path / "dangling-deploy.yml")
    catalog = discover(tmp_path)
    assert [e.path for e in catalog.entries] == ["good-deploy.yml"]
    reasons = {b.path: b.reason for b in catalog.broken}
    assert reasons.pop("invalid-deploy.yml").startswith("invalid YAML: line ")
    assert reasons.pop("bomb-deploy.yml").startswith("YAML bomb refused: expands to more than")
    assert reasons.pop("playbomb-deploy.yml").startswith("YAML bomb refused")
    assert reasons.pop("many-aliases.yml") == "YAML bomb refused: more than 100 aliases"
    assert reasons.pop("deep-deploy.yml") == "YAML bomb refused: nested deeper than 64 levels"
    assert reasons.pop("huge-deploy.yml") == "larger than 1 MiB"
    assert reasons.pop("secret-deploy.yml") == "vault-encrypted: add a signoff header"
    assert reasons.pop("latin1-deploy.yml").startswith("not UTF-8 text")
    assert reasons.pop("recursive-deploy.yml") == "YAML bomb refused: recursive alias"
    assert reasons.pop("mixed-deploy.yml") == "item 2 of the playbook is not a play"
    assert reasons.pop("twodocs-deploy.yml") == "more than one YAML document"
    assert reasons.pop("forever-deploy.yml").startswith("bad signoff header: timeout must be at most 36500d")
    assert reasons.pop("stolen-deploy.yml") == "symlink leaves the repository"
    assert reasons.pop("elsewhere") == "symlink leaves the repository"
    assert reasons.pop("dangling-deploy.yml") == "dangling symlink"
    assert reasons == {}


def test_an_error_no_check_foresaw_breaks_one_file_not_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever one file makes the parser raise, it is listed as broken and the rest plans."""
    real = discovery.play_hosts

    def fails_on_odd(plays: list[dict[str, Any]]) -> Any:
        if any(p.get("name") == "odd" for p in plays):
            raise ValueError("something nobody checked for")
        return real(plays)

    monkeypatch.setattr(discovery, "play_hosts", fails_on_odd)
    write(tmp_path, "good-deploy.yml", PLAY)
    write(tmp_path, "odd-deploy.yml", b"- name: odd\n  hosts: all\n  tasks: []\n")

    catalog = discover(tmp_path)

    assert [e.path for e in catalog.entries] == ["good-deploy.yml"]
    assert {b.path: b.reason for b in catalog.broken} == {
        "odd-deploy.yml": "cannot be read: ValueError: something nobody checked for"
    }


def test_symlinks_inside_the_repo(tmp_path: Path) -> None:
    write(tmp_path, "apps/grafana/deploy.yml", PLAY)
    os.symlink(tmp_path / "apps", tmp_path / "current")  # a loop if it were followed
    os.symlink(tmp_path / "apps" / "grafana", tmp_path / "apps" / "grafana" / "self")
    os.symlink(tmp_path / "apps/grafana/deploy.yml", tmp_path / "grafana-deploy.yml")
    catalog = discover(tmp_path)
    assert [e.path for e in catalog.entries] == ["grafana-deploy.yml", "apps/grafana/deploy.yml"]
    assert {s.path for s in catalog.skipped} == {"current/", "apps/grafana/self/"}


def test_quiet_skips(tmp_path: Path) -> None:
    write(tmp_path, "deploy_app.yml", PLAY)
    write(tmp_path, "myrole/tasks/main.yml", b"- debug: {msg: task}\n")  # a role outside roles/
    write(tmp_path, "myrole/meta/main.yml", b"galaxy_info: {author: me}\n")
    write(tmp_path, "myrole/tests/test.yml", b"- hosts: localhost\n  roles: [myrole]\n")
    write(tmp_path, "prod.inventory.yml", b"all:\n  hosts:\n    web1:\n")
    write(tmp_path, "lab.yml", b"web:\n  hosts:\n    web1:\nmedia:\n  children:\n    web:\n")
    write(tmp_path, "empty.yml", b"")
    write(tmp_path, "list.yml", b"- 1\n- 2\n")
    write(tmp_path, "k8s.yml", b"kind: A\n---\nkind: B\n")
    write(tmp_path, ".hidden/deploy.yml", PLAY)
    write(tmp_path, "notes.txt", b"not yaml at all: [")
    catalog = discover(tmp_path)
    assert [e.path for e in catalog.entries] == ["deploy_app.yml"]
    assert catalog.broken == ()
    assert {s.path: s.reason for s in catalog.skipped} == {
        ".hidden/": "hidden",
        "empty.yml": "empty",
        "k8s.yml": "not a playbook (several YAML documents)",
        "lab.yml": "an inventory",
        "list.yml": "not a playbook (no plays)",
        "myrole/": "role tree",
        "prod.inventory.yml": "inventory",
    }


def test_vault_values_and_custom_tags_parse() -> None:
    data = (
        b"- hosts: db\n  vars:\n    password: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n"
        b"      6162\n    raw: !unsafe '{{ x }}'\n  tasks: []\n"
    )
    entry = parse_playbook("db-configure.yml", data)
    assert isinstance(entry, Entry)
    assert (entry.service, entry.action) == ("db", "configure")


def test_vault_encrypted_with_header_is_listed() -> None:
    data = b"# signoff:\n#   service: secrets\n#   action: rotate\n$ANSIBLE_VAULT;1.1;AES256\n6162\n"
    entry = parse_playbook("secrets.yml", data)
    assert isinstance(entry, Entry)
    assert (entry.service, entry.action, entry.vault, entry.hosts) == ("secrets", "renew", True, ())


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("#   risk: extreme", "risk must be low, medium or high"),
        ("#   timeout: soon", "timeout must be a duration"),
        ("#   idle_timeout: -5", "idle_timeout must be a duration"),
        ("#   requried_vars: [a]", "unknown field 'requried_vars'"),
        ("#   vars: {port: {type: integer}}", "vars.port.type must be one of"),
        ("#   vars: {port: {secret: maybe}}", "vars.port.secret must be true or false"),
        ("#   aliases: {a: b}", "aliases must be a list of names"),
        ("#   action: do many things", "action must be one verb"),
        ("#   service: [x, y", "not valid YAML"),
        ("#   max_attempts: 0", "max_attempts must be a whole number above 0"),
        ("#   max_attempts: many", "max_attempts must be a whole number above 0"),
        ("#   max_execution_time: forever", "max_execution_time must be a duration"),
        # past what timedelta holds: once, every workflow task of a request that planned it failed
        ("#   timeout: 99999999999d", "timeout must be at most 36500d, got '99999999999d'"),
        ("#   idle_timeout: 10000000000000000", "idle_timeout must be at most 36500d"),
        (f"#   max_execution_time: {'9' * 5000}d", "max_execution_time must be at most 36500d, got '9999"),
    ],
)
def test_bad_header_is_broken(header: str, reason: str) -> None:
    data = f"# signoff:\n#   service: app\n{header}\n".encode() + PLAY
    verdict = parse_playbook("app.yml", data)
    assert isinstance(verdict, Broken), verdict
    assert reason in verdict.reason, verdict


def test_header_details() -> None:
    flow = parse_playbook("x.yml", b"---\n# signoff: {service: nas, action: reboot}\n" + PLAY)
    assert isinstance(flow, Entry)
    assert (flow.service, flow.action, flow.risk) == ("nas", "restart", "high")
    low = parse_playbook(
        "nas-reboot.yml",
        b"# signoff:\n#   risk: low\n#   timeout: 1h30m\n# Reboots the NAS. Not part of the header.\n" + PLAY,
    )
    assert isinstance(low, Entry)
    assert (low.action, low.risk, low.risk_explicit, low.timeout) == ("restart", "low", True, 5400)
    unknown = parse_playbook("x.yml", b"# signoff:\n#   service: db\n#   action: Frobnicate\n" + PLAY)
    assert isinstance(unknown, Entry)
    assert (unknown.action, unknown.risk) == ("frobnicate", "medium")
    mapping = parse_playbook("x.yml", b"# signoff:\n#   service: db\nkey: value\n")
    assert isinstance(mapping, Broken)
    assert "has a signoff header but is" in mapping.reason


def test_parse_is_pure() -> None:
    assert parse_playbook("a/b-deploy.yml", PLAY) == parse_playbook("a/b-deploy.yml", PLAY)
    assert isinstance(parse_playbook("requirements.yml", PLAY), Skipped)


def test_play_name_decides_when_the_name_has_no_verb() -> None:
    entry = parse_playbook("monitoring.yml", b"- name: Install Grafana\n  hosts: all\n")
    assert isinstance(entry, Entry)
    assert (entry.service, entry.action, entry.aliases) == ("monitoring", "deploy", ("grafana",))
    verb = parse_playbook("foo-polish.yml", b"- name: Polish the foo\n  hosts: all\n")
    assert isinstance(verb, Entry)
    assert (verb.service, verb.action) == ("foo", "polish")


def test_walk_lists_what_to_parse(repos: Path) -> None:
    root = repos / "action-service"
    files, skipped, broken = walk_playbook_files(root)
    catalog = discover(root)
    rels = [rel for rel, _ in files]
    entries = {e.path for e in catalog.entries}
    assert broken == []
    assert entries <= set(rels)
    assert [e.path for e in catalog.entries] == [r for r in rels if r in entries]  # walk order
    for rel, path in files:
        assert path.is_absolute()
        assert path == (root / rel).resolve()
    # what the walk settles unread, and what only parsing tells (a task list, an inventory)
    assert {s.path for s in skipped} == SKIPPED["action-service"] - {"homelab.yml", "playbooks/common-tasks.yml"}
    assert {"homelab.yml", "playbooks/common-tasks.yml"} <= set(rels)


def test_discover_is_the_walk_plus_a_cacheable_parse(repos: Path) -> None:
    """What a cache keyed by path and content hash does: parse only what changed."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    parsed: list[str] = []

    def cached_catalog(root: Path) -> Catalog:
        files, skipped, broken = walk_playbook_files(root)
        items: list[Entry | Skipped | Broken] = [*skipped, *broken]
        for rel, path in files:
            data = read_candidate(rel, path)
            if isinstance(data, Broken):
                items.append(data)
                continue
            key = (rel, hashlib.sha256(data).hexdigest())
            if key not in cache:
                parsed.append(rel)
                cache[key] = item_to_json(parse_playbook(rel, data))
            items.append(item_from_json(json.loads(json.dumps(cache[key]))))
        return catalog_of(items)

    def same(a: Catalog, b: Catalog) -> bool:
        return (a.entries, a.skipped, a.broken) == (b.entries, b.skipped, b.broken)

    root = repos / "per-service"
    work = root.parent / "per-service-cached"
    shutil.copytree(root, work)
    assert same(cached_catalog(work), discover(work))
    first = len(parsed)
    assert first > 0
    assert same(cached_catalog(work), discover(work))
    assert len(parsed) == first
    (work / "grafana" / "restart_grafana.yml").write_bytes(PLAY)
    assert same(cached_catalog(work), discover(work))
    assert parsed[first:] == ["grafana/restart_grafana.yml"]


@pytest.mark.parametrize("repo", sorted(EXPECTED))
def test_every_item_round_trips_through_json(repos: Path, repo: str) -> None:
    catalog = discover(repos / repo)
    for entry in catalog.entries:
        assert entry_from_json(json.loads(json.dumps(entry_to_json(entry)))) == entry
    items: list[Entry | Skipped | Broken] = [*catalog.entries, *catalog.skipped, *catalog.broken]
    for item in items:
        back = item_from_json(json.loads(json.dumps(item_to_json(item))))
        assert back == item
        assert type(back) is type(item)


def test_broken_items_and_var_specs_round_trip() -> None:
    entry = parse_playbook(
        "app-deploy.yml",
        b"# signoff:\n#   vars: {pw: {type: str, secret: true}, n: {type: int}}\n#   timeout: 5m\n" + PLAY,
    )
    broken = parse_playbook("bad-deploy.yml", b"- hosts: [\n")
    assert isinstance(entry, Entry)
    assert isinstance(broken, Broken)
    assert entry.vars == (VarSpec("pw", "str", True), VarSpec("n", "int"))
    for item in (entry, broken, Skipped("roles/", "role tree")):
        assert item_from_json(json.loads(json.dumps(item_to_json(item)))) == item


@pytest.mark.parametrize(
    "change",
    [
        {"timeout": "30"},
        {"risk": "extreme"},
        {"source": "guess"},
        {"aliases": "kuma"},
        {"vars": [{"name": "x"}]},
        {"vars": [{"name": "x", "type": "integer", "secret": False}]},
        {"vault": 1},
        {"surprise": True},
        {"path": None},
    ],
)
def test_json_of_another_shape_is_refused(change: dict[str, Any]) -> None:
    entry = parse_playbook("kuma-deploy.yml", PLAY)
    assert isinstance(entry, Entry)
    with pytest.raises(ValueError, match="not an entry"):
        entry_from_json({**entry_to_json(entry), **change})
    old = entry_to_json(entry)
    del old["qualifiers"]  # a row written before a field was added: a miss, not a guess
    with pytest.raises(ValueError, match="not an entry"):
        item_from_json({"kind": "entry", **old})
    for other in (
        {"kind": "lost", "path": "a", "reason": "b"},
        {"kind": "broken", "path": "a"},
        {"kind": ["x"], "path": "a", "reason": "b"},
        {"path": "a", "reason": "b"},
    ):
        with pytest.raises(ValueError, match="not an entry, skipped or broken item"):
            item_from_json(other)
    assert {f.name for f in dataclasses.fields(Entry)} == set(entry_to_json(entry))


def test_walk_reports_what_it_cannot_enter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "good-deploy.yml", PLAY)
    write(tmp_path, "locked/app-deploy.yml", PLAY)
    write(tmp_path, "huge-deploy.yml", PLAY + b"#" * (1 << 20))
    os.mkfifo(tmp_path / "fifo-deploy.yml")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    write(outside, "x-deploy.yml", PLAY)
    os.symlink(outside, tmp_path / "elsewhere")
    real_scandir = os.scandir
    locked = str((tmp_path / "locked").resolve())

    real_listdir = os.listdir

    def scandir(path: Any) -> Any:
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    def listdir(path: Any) -> Any:  # an unreadable folder fails here first, before scandir
        if str(path) == locked and listing_fails:
            raise PermissionError(13, "Permission denied", path)
        return real_listdir(path)

    listing_fails = False
    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    files, skipped, broken = walk_playbook_files(tmp_path)
    assert files == [("good-deploy.yml", tmp_path.resolve() / "good-deploy.yml")]
    assert skipped == []
    assert {b.path: b.reason for b in broken} == {
        "elsewhere": "symlink leaves the repository",
        "fifo-deploy.yml": "not a regular file",
        "huge-deploy.yml": "larger than 1 MiB",
        "locked/": "unreadable: Permission denied",
    }
    catalog = discover(tmp_path)
    assert [b.path for b in catalog.broken] == sorted(b.path for b in broken)
    listing_fails = True
    assert walk_playbook_files(tmp_path)[2] == broken
    with pytest.raises(FileNotFoundError):
        walk_playbook_files(tmp_path / "missing")


def test_read_candidate_refuses_a_file_swapped_since_the_walk(tmp_path: Path) -> None:
    write(tmp_path, "a-deploy.yml", PLAY)
    write(tmp_path, "b-deploy.yml", PLAY)
    write(tmp_path.parent / f"{tmp_path.name}-secret", "s.yml", PLAY)
    (rel_a, path_a), (rel_b, path_b) = walk_playbook_files(tmp_path)[0]
    assert read_candidate(rel_a, path_a) == PLAY
    path_a.unlink()
    os.mkfifo(path_a)  # would block a plain open() forever
    assert read_candidate(rel_a, path_a) == Broken(rel_a, "not a regular file")
    path_b.unlink()
    os.symlink(tmp_path.parent / f"{tmp_path.name}-secret" / "s.yml", path_b)
    verdict = read_candidate(rel_b, path_b)
    assert isinstance(verdict, Broken)
    assert verdict.reason.startswith("unreadable: ")
    assert read_candidate("gone.yml", tmp_path / "gone.yml") == Broken(
        "gone.yml", "unreadable: No such file or directory"
    )
