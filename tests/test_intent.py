"""Planning requests against the fixture repositories: exact plans, refusals and their reasons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from activities import vocabulary as vocab
from activities.discovery import Catalog, discover
from activities.intent import CatalogIndex, Intent, intent_to_dict, plan_request

REPOS = Path(__file__).parent / "fixtures" / "repos"
TARGETS = {
    "flat-service-action": ["homelab", "web", "dns", "nas01"],
    "action-service": ["docker_hosts", "proxmox", "media", "nas01"],
    "per-service": ["monitoring", "lab", "media"],
    "service-noun-action": ["cloud", "db", "proxy"],
    "topic-folders": ["vms", "template", "forge", "nas01", "nas02"],
}
Plan = list[tuple[str, str]]


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Catalog]:
    root = tmp_path_factory.mktemp("repos")
    shutil.copytree(REPOS, root, dirs_exist_ok=True)
    return {name: discover(root / name) for name in TARGETS}


def plan(catalogs: dict[str, Catalog], repo: str, request: str) -> Intent:
    return plan_request(request, catalogs[repo], target_names=TARGETS[repo])


def steps(intent: Intent) -> Plan:
    assert intent.error is None, intent.error
    return [(s.playbook, s.action) for s in intent.steps]


PLANS: list[tuple[str, str, Plan]] = [
    # flat <service>-<action>.yml, some with headers
    (
        "flat-service-action",
        "Deploy Kuma Uptime to homelab and add our existing portals to the config",
        [("kuma-deploy.yml", "deploy"), ("kuma-config-update.yml", "configure")],
    ),
    ("flat-service-action", "restart nginx but do not remove it", [("nginx-restart.yml", "restart")]),
    ("flat-service-action", "restart nginx but don't remove it", [("nginx-restart.yml", "restart")]),
    (
        "flat-service-action",
        "remove the old kuma and deploy it again",
        [("kuma-remove.yml", "remove"), ("kuma-deploy.yml", "deploy")],
    ),
    (
        "flat-service-action",
        "deploy kuma and restart nginx",
        [("kuma-deploy.yml", "deploy"), ("nginx-restart.yml", "restart")],
    ),
    ("flat-service-action", "reload nginx", [("nginx-reload.yml", "restart")]),
    ("flat-service-action", "Restart the Pi-hole", [("pihole-reboot.yml", "restart")]),
    ("flat-service-action", "frobnicate foo", [("foo-frobnicate.yml", "frobnicate")]),
    ("flat-service-action", "update pihole without restarting it", [("pihole-update.yml", "update")]),
    ("flat-service-action", "please update the kuma config, thanks", [("kuma-config-update.yml", "configure")]),
    (
        "flat-service-action",
        "deploy kuma and docker",  # kuma's header: after docker-install
        [("docker-install.yml", "deploy"), ("kuma-deploy.yml", "deploy")],
    ),
    (
        "flat-service-action",
        "back up pihole, then upgrade it",
        [("pihole-backup.yml", "backup"), ("pihole-update.yml", "update")],
    ),
    ("flat-service-action", "install UptimeKuma", [("kuma-deploy.yml", "deploy")]),
    # <action>_<service>.yml in playbooks/ with roles/ beside
    ("action-service", "remove the vm", [("playbooks/remove_vm.yml", "remove")]),
    ("action-service", "tear down foo", [("playbooks/foo_teardown.yml", "remove")]),
    ("action-service", "reboot all hosts", [("playbooks/reboot_hosts.yml", "restart")]),
    (
        "action-service",
        "provision a vm and snapshot it",
        [("playbooks/provision_vm.yml", "deploy"), ("playbooks/backup-vm.yml", "backup")],
    ),
    (
        "action-service",
        "restore the vm after removing it",
        [("playbooks/remove_vm.yml", "remove"), ("playbooks/restore-vm.yml", "restore")],
    ),
    ("action-service", "uninstall docker but do not remove the vm", [("playbooks/uninstall_docker.yml", "remove")]),
    (
        "action-service",
        "check the backups before we update the packages",
        [("playbooks/check_backups.yml", "verify"), ("playbooks/update_packages.yml", "update")],
    ),
    ("action-service", "migrate postgres", [("playbooks/migrate_postgres.yml", "migrate")]),
    (
        "action-service",
        "set up nextcloud and vscode server",
        [("playbooks/setup_nextcloud.yml", "deploy"), ("playbooks/deploy-vscode-server.yml", "deploy")],
    ),
    ("action-service", "deploy everything", [("playbooks/site.yml", "deploy")]),
    ("action-service", "run the site playbook", [("playbooks/site.yml", "deploy")]),
    ("action-service", "update packages except rebooting", [("playbooks/update_packages.yml", "update")]),
    (
        "action-service",
        "destroy the vm, then provision it again",
        [("playbooks/remove_vm.yml", "remove"), ("playbooks/provision_vm.yml", "deploy")],
    ),
    # per-service folders, overlapping names, site.yml
    ("per-service", "deploy grafana", [("grafana/deploy_grafana.yml", "deploy")]),
    ("per-service", "deploy the grafana lab", [("grafana-lab/deploy.yml", "deploy")]),
    (
        "per-service",
        "remove grafana lab and deploy grafana",
        [("grafana-lab/remove.yml", "remove"), ("grafana/deploy_grafana.yml", "deploy")],
    ),
    ("per-service", "deploy grafana dashboards", [("grafana/deploy_dashboards.yml", "deploy")]),
    ("per-service", "install grafana agent", [("monitoring.yml", "deploy")]),
    (
        "per-service",
        "deploy prometheus then install node exporter",
        [("prometheus/main.yml", "deploy"), ("prometheus/node_exporter_install.yml", "deploy")],
    ),
    ("per-service", "deploy loki", [("loki/playbook.yml", "deploy")]),
    ("per-service", "restart jellyfin", [("media/jellyfin-restart.yml", "restart")]),
    ("per-service", "deploy the whole site", [("site.yml", "deploy")]),
    (
        "per-service",
        "update grafana after checking it",
        [("grafana/check_grafana.yml", "verify"), ("grafana/update_grafana.yml", "update")],
    ),
    (
        "per-service",
        "check grafana before we patch it",
        [("grafana/check_grafana.yml", "verify"), ("grafana/update_grafana.yml", "update")],
    ),
    ("per-service", "restart grafana but not prometheus", [("grafana/restart_grafana.yml", "restart")]),
    (
        "per-service",
        "deploy grafana and restart",
        [("grafana/deploy_grafana.yml", "deploy"), ("grafana/restart_grafana.yml", "restart")],
    ),
    (
        "per-service",
        "check and update grafana",
        [("grafana/check_grafana.yml", "verify"), ("grafana/update_grafana.yml", "update")],
    ),
    (
        "per-service",
        "deploy prometheus and grafana, then restart them",
        [
            ("prometheus/main.yml", "deploy"),
            ("grafana/deploy_grafana.yml", "deploy"),
            ("prometheus/restart.yml", "restart"),
            ("grafana/restart_grafana.yml", "restart"),
        ],
    ),
    # <service>_<noun>_<action>.yml
    ("service-noun-action", "update nextcloud", [("nextcloud_update.yml", "update")]),
    ("service-noun-action", "update the nextcloud apps", [("nextcloud_app_update.yml", "update")]),
    ("service-noun-action", "update the nextcloud config", [("nextcloud_config_update.yml", "configure")]),
    ("service-noun-action", "back up the postgres database", [("postgres_db_backup.yml", "backup")]),
    ("service-noun-action", "back up the postgres WAL", [("postgres_wal_backup.yml", "backup")]),
    (
        "service-noun-action",
        "restore the postgres database after backing it up",
        [("postgres_db_backup.yml", "backup"), ("postgres_db_restore.yml", "restore")],
    ),
    ("service-noun-action", "renew the tls certs", [("certs_tls_renew.yml", "renew")]),
    ("service-noun-action", "rotate certificates", [("certs_tls_renew.yml", "renew")]),
    ("service-noun-action", "flush the redis cache", [("redis_cache_flush.yml", "flush")]),
    (
        "service-noun-action",
        "stop nextcloud, update it and start it again",
        [
            ("nextcloud_maintenance_stop.yml", "stop"),
            ("nextcloud_update.yml", "update"),
            ("nextcloud_maintenance_start.yml", "start"),
        ],
    ),
    ("service-noun-action", "vacuum postgres", [("postgres_db_vacuum.yml", "vacuum")]),
    # service folders whose playbooks name a part of the service (`wiki/backup_db.yml`)
    ("topic-folders", "back up the wiki", [("playbooks/wiki/backup_db.yml", "backup")]),
    ("topic-folders", "create the wiki database", [("playbooks/wiki/create_db.yml", "deploy")]),
    (
        "topic-folders",
        "deploy the tracker and back it up",
        [("playbooks/tracker/deploy_tracker.yml", "deploy"), ("playbooks/tracker/backup_db.yml", "backup")],
    ),
    (
        "topic-folders",
        "stop readarr, restore its database, then start it again",
        [
            ("playbooks/services/stop_readarr.yml", "stop"),
            ("playbooks/services/restore_readarr_db.yml", "restore"),
            ("playbooks/services/start_readarr.yml", "start"),
        ],
    ),
    (
        "topic-folders",
        "stop readarr and prowlarr, back up both databases",
        [
            ("playbooks/services/stop_readarr.yml", "stop"),
            ("playbooks/services/stop_prowlarr.yml", "stop"),
            ("playbooks/services/backup_readarr_db.yml", "backup"),
            ("playbooks/services/backup_prowlarr_db.yml", "backup"),
        ],
    ),
    ("topic-folders", "stop all services", [("playbooks/services/stop_all.yml", "stop")]),
    # machine operations: the rest of a name qualifies the folder's service
    ("topic-folders", "reboot the vm but do not remove it", [("playbooks/vms/reboot_vm.yml", "restart")]),
    ("topic-folders", "force reboot the vm", [("playbooks/vms/force_reboot_vm.yml", "restart")]),
    ("topic-folders", "take a snapshot of the vm", [("playbooks/vms/create_vm_snapshot.yml", "backup")]),
    ("topic-folders", "create a vm snapshot", [("playbooks/vms/create_vm_snapshot.yml", "backup")]),
    ("topic-folders", "roll back the vm snapshot", [("playbooks/vms/revert_vm_snapshot.yml", "restore")]),
    ("topic-folders", "list the vm snapshots", [("playbooks/vms/list_vm_snapshot.yml", "list")]),
    ("topic-folders", "shut down the vm", [("playbooks/vms/shutdown_vm.yml", "stop")]),
    ("topic-folders", "stop the vm", [("playbooks/vms/stop_vm.yml", "stop")]),
    ("topic-folders", "remove the vm but keep the snapshots", [("playbooks/vms/remove_vm.yml", "remove")]),
    (
        "topic-folders",
        "convert the vm to a template",  # "template" is an inventory group too
        [("playbooks/vms/convert_to_template.yml", "convert")],
    ),
    ("topic-folders", "add a disk to the vm", [("playbooks/vms/add_disk.yml", "configure")]),
    # verbs beyond the core actions, in names and requests alike
    ("topic-folders", "show the dns config", [("playbooks/dns/show_config.yml", "show")]),
    ("topic-folders", "leave the sso domain", [("playbooks/sso/leave_domain.yml", "leave")]),
    ("topic-folders", "join the domain", [("playbooks/sso/join_domain.yml", "join")]),
    ("topic-folders", "prep the build node", [("playbooks/prep_build_node.yml", "prepare")]),
    (
        "topic-folders",
        "stage the certs and distribute the proxy certs",
        [("playbooks/tls/stage_certs.yml", "stage"), ("playbooks/tls/distribute_proxy_certs.yml", "distribute")],
    ),
    ("topic-folders", "convert the notes", [("playbooks/convert-notes-with-pandoc.yml", "convert")]),
    # <service>_<verb>_<part>, platforms, a catalog name after "to"
    (
        "topic-folders",
        "install the forge and set up its runners",
        [("playbooks/install_forge.yml", "deploy"), ("playbooks/forge_setup_runners.yml", "deploy")],
    ),
    (
        "topic-folders",
        "add a domain to forge",  # "forge" is an inventory group too
        [("playbooks/add_forge_domain.yml", "configure")],
    ),
    (
        "topic-folders",
        "add the forge domain and set up the runners",
        [("playbooks/add_forge_domain.yml", "configure"), ("playbooks/forge_setup_runners.yml", "deploy")],
    ),
    ("topic-folders", "install docker", [("playbooks/install_docker_debian.yml", "deploy")]),
    ("topic-folders", "spin up the wiki", [("playbooks/wiki/deploy_wiki.yml", "deploy")]),
    # verb-only file names
    ("topic-folders", "ping all hosts", [("playbooks/ping.yml", "ping")]),
    ("topic-folders", "run the healthcheck playbook", [("playbooks/healthcheck.yml", "verify")]),
    ("topic-folders", "deploy everything", [("playbooks/site.yml", "deploy")]),
]


@pytest.mark.parametrize(("repo", "request_text", "expected"), PLANS, ids=[f"{r}: {q}" for r, q, _ in PLANS])
def test_plan(catalogs: dict[str, Catalog], repo: str, request_text: str, expected: Plan) -> None:
    assert steps(plan(catalogs, repo, request_text)) == expected


REFUSALS: list[tuple[str, str, str, str]] = [
    # repo, request, the clause named, words its reason must hold
    ("flat-service-action", "deploy kuma and restart grafana", "and restart grafana", 'no service called "grafana"'),
    (
        "flat-service-action",
        "bounce nginx",
        "bounce nginx",
        '2 playbooks fit "bounce nginx" equally: nginx-reload.yml, nginx-restart.yml',
    ),
    (
        "flat-service-action",
        "upgrade nginx",
        "upgrade nginx",
        "nginx has no playbook to update; it has: deploy, restart",
    ),
    ("flat-service-action", "deploy foo", "deploy foo", "foo has no playbook to deploy; it has: frobnicate"),
    ("flat-service-action", "deploy loki and promtail", "deploy loki", "`after:` cycle"),
    ("action-service", "install dokcer", "install dokcer", "closest: docker"),
    (
        "action-service",
        "restart nextcloud",
        "restart nextcloud",
        "nextcloud has no playbook to restart; it has: deploy",
    ),
    ("per-service", "deploy grafna", "deploy grafna", "closest: grafana"),
    (
        "per-service",
        "restart grafana lab",
        "restart grafana lab",
        "grafana-lab has no playbook to restart; it has: deploy, remove",
    ),
    ("per-service", "restart it", "restart it", '"it" refers to no service named before'),
    ("service-noun-action", "back up postgres", "back up postgres", "postgres_db_backup.yml, postgres_wal_backup.yml"),
    ("service-noun-action", "renew the certs and reload haproxy", "renew the certs", "`after:` cycle"),
    ("service-noun-action", "backup mysql", "backup mysql", "services with a backup playbook: postgres"),
    ("service-noun-action", "update nextcloud and frobnicate", "and frobnicate", 'no service called "frobnicate"'),
    ("service-noun-action", "restart", "restart", '"restart" names no service'),
    (
        "per-service",
        "deploy grafana and frobnicate loki",
        "and frobnicate loki",
        'no playbook action called "frobnicate"; "loki" has: deploy',
    ),
    (
        "topic-folders",
        "restore the db",
        "restore the db",  # every folder has one
        '3 playbooks fit "restore db" equally',
    ),
    (
        "topic-folders",
        "restart the wiki",
        "restart the wiki",
        "wiki has no playbook to restart; it has: backup, deploy, restore",
    ),
    ("topic-folders", "stop readarr and then restart it", "and then restart it", "readarr has no playbook to restart"),
]


@pytest.mark.parametrize(
    ("repo", "request_text", "clause", "reason"), REFUSALS, ids=[f"{r}: {q}" for r, q, _, _ in REFUSALS]
)
def test_refusal_names_the_clause(
    catalogs: dict[str, Catalog], repo: str, request_text: str, clause: str, reason: str
) -> None:
    intent = plan(catalogs, repo, request_text)
    assert intent.steps == ()  # half a request is never planned
    assert intent.error is not None
    assert reason in intent.error
    assert [u for u in intent.unmatched if u.clause == clause and reason in u.reason]


def test_cycle_names_every_playbook_in_it(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "service-noun-action", "renew the certs and reload haproxy")
    assert intent.error is not None
    assert "haproxy_proxy_reload → certs_tls_renew → haproxy_proxy_reload" in intent.error


def test_unknown_service_suggests_closest(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "per-service", "deploy grafna")
    assert intent.unmatched[0].suggestions[0] == "grafana"
    assert len(intent.unmatched[0].suggestions) <= 5


def test_a_verb_binds_only_to_its_own_clause(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "flat-service-action", "deploy kuma and restart nginx")
    assert [(s.service, s.action) for s in intent.steps] == [("kuma", "deploy"), ("nginx", "restart")]


def test_reason_quotes_the_request(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "per-service", "deploy grafana and then restart it")
    assert [s.reason for s in intent.steps] == [
        '"deploy" + "grafana" in clause "deploy grafana"',
        '"restart" + "it" (= grafana) in clause "and then restart it"',
    ]


def test_negated_clause_is_reported_as_excluded(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "flat-service-action", "restart nginx but do not remove it")
    assert intent.excluded == ("but do not remove it",)


def test_filler_clauses_are_ignored_not_refused(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "flat-service-action", "please reload nginx asap, thanks!")
    assert steps(intent) == [("nginx-reload.yml", "restart")]
    assert intent.ignored == ("thanks",)


def test_nothing_to_do_is_an_error(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "flat-service-action", "do not restart nginx")
    assert intent.steps == ()
    assert intent.error is not None


def test_risk_follows_the_word(catalogs: dict[str, Catalog]) -> None:
    risks = {
        s.playbook: s.risk
        for s in plan(catalogs, "action-service", "reboot the hosts, remove the vm and check the backups").steps
    }
    assert risks == {
        "playbooks/reboot_hosts.yml": "high",
        "playbooks/remove_vm.yml": "high",
        "playbooks/check_backups.yml": "low",
    }
    # "reboot" said of a restart playbook without a header risk raises it to high
    assert plan(catalogs, "flat-service-action", "reboot nginx").error is not None  # ambiguous
    assert plan(catalogs, "per-service", "reboot grafana").steps[0].risk == "high"


@pytest.mark.parametrize(
    ("request_text", "phrases"),
    [
        ("reboot the hosts on nas01", ["nas01"]),
        ("reboot the hosts on group media", ["group media"]),
        ("reboot the hosts on host web1", ["host web1"]),
        ("reboot the hosts on the media servers", ["the media servers"]),
        ("install docker to docker_hosts", ["docker_hosts"]),
        ("install docker in proxmox and remove the vm", ["proxmox", None]),
        ("install docker on nas-01", ["nas-01"]),
    ],
)
def test_target_phrases(catalogs: dict[str, Catalog], request_text: str, phrases: list[str | None]) -> None:
    intent = plan(catalogs, "action-service", request_text)
    assert [s.target_phrase for s in intent.steps] == phrases


def test_a_second_target_joins_the_first(catalogs: dict[str, Catalog]) -> None:
    intent = plan_request(
        "reboot the hosts on nas01 and nas02", catalogs["action-service"], target_names=["nas01", "nas02"]
    )
    assert [(s.playbook, s.target_phrase) for s in intent.steps] == [("playbooks/reboot_hosts.yml", "nas01 and nas02")]
    assert intent.ignored == ()


def test_a_broken_playbook_is_named_in_the_refusal(tmp_path: Path) -> None:
    (tmp_path / "vault-deploy.yml").write_text("- hosts: all\n  tasks: [\n")
    (tmp_path / "nginx-deploy.yml").write_text("- hosts: all\n  tasks: []\n")
    intent = plan_request("deploy nginx and deploy vault", discover(tmp_path))
    assert intent.steps == ()
    assert [u.clause for u in intent.unmatched] == ["and deploy vault"]
    assert "vault-deploy.yml) is broken: invalid YAML" in intent.unmatched[0].reason


def test_to_is_a_target_only_for_inventory_names(catalogs: dict[str, Catalog]) -> None:
    request = "deploy kuma uptime to homelab"
    assert (
        plan_request(request, catalogs["flat-service-action"], target_names=["homelab"]).steps[0].target_phrase
        == "homelab"
    )
    assert plan_request(request, catalogs["flat-service-action"]).steps[0].target_phrase is None


def test_one_target_covers_its_verb_group(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "per-service", "restart prometheus and grafana on monitoring")
    assert [s.target_phrase for s in intent.steps] == ["monitoring", "monitoring"]


def test_intent_to_dict_is_json(catalogs: dict[str, Catalog]) -> None:
    ok = intent_to_dict(plan(catalogs, "flat-service-action", "reload nginx on web"))
    assert json.loads(json.dumps(ok))["steps"][0] == {
        "playbook": "nginx-reload.yml",
        "action": "restart",
        "service": "nginx",
        "risk": "medium",
        "reason": '"reload" + "nginx" in clause "reload nginx on web"',
        "clause": "reload nginx on web",
        "target_phrase": "web",
    }
    refused = intent_to_dict(plan(catalogs, "flat-service-action", "deploy kuma and zap"))
    assert refused["steps"] == []
    assert refused["error"]
    assert refused["unmatched"][0]["clause"] == "and zap"


def test_index_is_reusable(catalogs: dict[str, Catalog]) -> None:
    index = CatalogIndex(catalogs["per-service"])
    first = plan_request("deploy grafana", index)
    assert first == plan_request("deploy grafana", index)
    assert steps(first) == [("grafana/deploy_grafana.yml", "deploy")]


def test_a_target_kind_alone_is_the_target(catalogs: dict[str, Catalog]) -> None:
    intent = plan_request("deploy the wiki on the vms", catalogs["topic-folders"])
    assert [(s.playbook, s.target_phrase) for s in intent.steps] == [("playbooks/wiki/deploy_wiki.yml", "the vms")]


def test_to_an_inventory_name_is_still_a_target(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "topic-folders", "install docker to forge")  # docker is the object
    assert [(s.playbook, s.target_phrase) for s in intent.steps] == [("playbooks/install_docker_debian.yml", "forge")]
    intent = plan(catalogs, "topic-folders", "deploy the tracker to the vms")
    assert [(s.playbook, s.target_phrase) for s in intent.steps] == [
        ("playbooks/tracker/deploy_tracker.yml", "the vms")
    ]


def write_playbooks(root: Path, *paths: str) -> Catalog:
    for name in paths:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("- hosts: all\n  tasks: []\n")
    return discover(root)


def test_a_name_said_short(tmp_path: Path) -> None:
    catalog = write_playbooks(
        tmp_path,
        "semaphoreui/deploy_semaphoreui.yml",
        "semaphoreui/restore_db.yml",
        "semaphoreui/check_semaphore_version.yml",
        "postgresql/deploy_postgresql.yml",
        "exporters/deploy_postgres_exporter.yml",
        "checkmk/deploy_checkmk.yml",
    )
    for request, playbook in [
        ("restore semaphore", "semaphoreui/restore_db.yml"),
        ("check the semaphore version", "semaphoreui/check_semaphore_version.yml"),
        ("deploy postgres", "postgresql/deploy_postgresql.yml"),
        ("deploy the postgres exporter", "exporters/deploy_postgres_exporter.yml"),
    ]:
        assert [s.playbook for s in plan_request(request, catalog).steps] == [playbook], request
    assert "check" not in CatalogIndex(catalog).short  # a verb is never a short name


def test_a_kind_of_thing_after_a_name_is_no_second_name(tmp_path: Path) -> None:
    (tmp_path / "media.yml").write_text("- name: Media management services\n  hosts: all\n")
    (tmp_path / "services.yml").write_text("- name: User services\n  hosts: all\n")
    catalog = discover(tmp_path)
    assert steps(plan_request("deploy the media services", catalog)) == [("media.yml", "deploy")]
    assert steps(plan_request("deploy the services", catalog)) == [("services.yml", "deploy")]


def test_a_plural_closing_a_clause_names_a_service(tmp_path: Path) -> None:
    catalog = write_playbooks(
        tmp_path,
        "install_glances.yml",
        "install_healthchecks.yml",
        "update_server.yml",
        "reboot_server.yml",
        "check_reboots.yml",
    )
    assert steps(plan_request("install glances and healthchecks", catalog)) == [
        ("install_glances.yml", "deploy"),
        ("install_healthchecks.yml", "deploy"),
    ]
    assert steps(plan_request("update the server and then reboot it", catalog)) == [
        ("update_server.yml", "update"),
        ("reboot_server.yml", "restart"),
    ]


def test_a_part_said_beside_a_service_qualifies_it(tmp_path: Path) -> None:
    catalog = write_playbooks(tmp_path, "postgresql/deploy_postgresql.yml", "wiki/create_db.yml", "wiki/restore_db.yml")
    assert steps(plan_request("deploy the postgresql database", catalog)) == [
        ("postgresql/deploy_postgresql.yml", "deploy")
    ]
    assert steps(plan_request("restore the db", catalog)) == [("wiki/restore_db.yml", "restore")]


def test_a_name_without_its_version(tmp_path: Path) -> None:
    for name in ("python/deploy_python3.yml", "python/compile_python3.yml", "install_bind9.yml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("- hosts: all\n  tasks: []\n")
    catalog = discover(tmp_path)
    assert steps(plan_request("compile python", catalog)) == [("python/compile_python3.yml", "compile")]
    assert steps(plan_request("install bind", catalog)) == [("install_bind9.yml", "deploy")]


def test_an_alias_shared_by_services_is_named_in_the_refusal(catalogs: dict[str, Catalog]) -> None:
    intent = plan(catalogs, "topic-folders", "restart the db")
    assert intent.unmatched[0].reason.startswith("db has no playbook to restart")


@pytest.mark.parametrize(
    ("word", "action", "risk"),
    [
        ("revert", "restore", "high"),
        ("roll back", "restore", "high"),
        ("rollback", "restore", "high"),
        ("create", "deploy", "medium"),
        ("spin up", "deploy", "medium"),
        ("prep", "prepare", "medium"),
        ("leave", "leave", "medium"),
        ("show", "show", "low"),
        ("list", "list", "low"),
        ("ping", "ping", "low"),
        ("wipe", "wipe", "high"),
        ("shut down", "stop", "medium"),
        ("install", "deploy", "medium"),
        ("set up", "deploy", "medium"),
        ("roll out", "deploy", "medium"),
        ("reboot", "restart", "high"),
        ("reload", "restart", "medium"),
        ("bounce", "restart", "medium"),
        ("tear down", "remove", "high"),
        ("decommission", "remove", "high"),
        ("health check", "verify", "low"),
        ("smoke test", "verify", "low"),
        ("back up", "backup", "low"),
        ("snapshot", "backup", "low"),
        ("restore", "restore", "high"),
        ("rotate", "renew", "medium"),
        ("bump", "update", "medium"),
        ("register", "configure", "medium"),
        ("restarting", "restart", "medium"),
        ("deployed", "deploy", "medium"),
    ],
)
def test_vocabulary(word: str, action: str, risk: str) -> None:
    assert vocab.canonical_action(word) == action
    assert vocab.default_risk(word) == risk


def test_unknown_verb_keeps_its_name() -> None:
    assert vocab.canonical_action("frobnicate") is None
    assert vocab.default_risk("frobnicate") == "medium"


def test_thousand_playbooks_refuse_briefly(tmp_path: Path) -> None:
    for n in range(1000):
        folder = tmp_path / f"team{n % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"service{n:04d}-{('deploy', 'restart', 'update', 'remove')[n % 4]}.yml").write_text(
            f"- name: play {n}\n  hosts: all\n  tasks: []\n"
        )
    catalog = discover(tmp_path)
    assert len(catalog.entries) == 1000
    index = CatalogIndex(catalog)
    intent = plan_request("deploy service and restart servic0042 and frobnicate service0007", index)
    assert intent.error is not None
    assert intent.steps == ()
    assert all(len(u.suggestions) <= 20 for u in intent.unmatched)
    assert len(intent.error) < 1500
    ok = plan_request("deploy service0004 and update service0006", index)
    assert steps(ok) == [("team4/service0004-deploy.yml", "deploy"), ("team6/service0006-update.yml", "update")]
