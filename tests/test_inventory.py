"""Inventory resolution through Ansible's own inventory API: patterns, target phrases, step
hosts, inventory variable names, the load cache and errors. Real inventory files throughout."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from activities.inventory import MAX_SUGGESTIONS, Inventory, InventoryError, TargetKind

INVENTORIES = Path(__file__).parent / "fixtures" / "inventories"
HOMELAB_HOSTS = ["nas01", "jellyfin01", "plex01", "web1", "web2", "web-3", "db1", "db2"]


@pytest.fixture
def homelab() -> Inventory:
    return Inventory.load(INVENTORIES / "homelab.ini")


@pytest.fixture
def cluster() -> Inventory:
    return Inventory.load(INVENTORIES / "cluster.yml")


@pytest.fixture
def site() -> Inventory:
    return Inventory.load(INVENTORIES / "site")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def generated(path: Path, hosts: int, groups: int) -> Path:
    """An INI inventory of `hosts` hosts spread over `groups` groups, the even ones children of `even`."""
    lines = []
    for group in range(groups):
        lines.append(f"[g{group:02d}]")
        lines += [f"h{number:04d} slot={number}" for number in range(group, hosts, groups)]
    lines.append("[even:children]")
    lines += [f"g{group:02d}" for group in range(0, groups, 2)]
    lines.append("[even:vars]")
    lines.append("parity=even")
    return write(path, "\n".join(lines) + "\n")


# --- loading ---------------------------------------------------------------------------------


def test_names_are_hosts_and_groups_without_the_implicit_groups(homelab: Inventory) -> None:
    assert homelab.names() == {*HOMELAB_HOSTS, "media", "web", "db", "staging", "prod"}


def test_directory_inventory_reads_every_file_and_skips_ignored_ones(site: Inventory) -> None:
    assert site.hosts("all") == ["web1", "web2", "db1", "lab1"]
    assert site.names() == {"web1", "web2", "db1", "lab1", "web", "db", "prod", "lab"}


def test_repr_shows_no_variable_values(homelab: Inventory) -> None:
    assert "192.0.2" not in repr(homelab)
    assert "homelab.ini" in repr(homelab)


# --- host patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("all", HOMELAB_HOSTS),
        ("prod", ["web1", "web2", "web-3", "db1", "db2"]),
        ("web:&prod", ["web1", "web2", "web-3"]),
        ("prod:!staging", ["web1", "web2", "db1", "db2"]),
        ("!db", ["nas01", "jellyfin01", "plex01", "web1", "web2", "web-3"]),
        ("web*", ["web1", "web2", "web-3"]),
        ("db1,web1, nas01", ["nas01", "web1", "db1"]),  # inventory order, not the pattern's
        ("~^(plex|jelly)", ["jellyfin01", "plex01"]),
        ("web[0]", ["web1"]),
        ("nosuchgroup", []),
        ("localhost", ["localhost"]),  # Ansible's implicit localhost, as ansible-playbook sees it
    ],
)
def test_hosts_follows_ansible_pattern_semantics(homelab: Inventory, pattern: str, expected: list[str]) -> None:
    assert homelab.hosts(pattern) == expected


def test_yaml_inventory_nested_children(cluster: Inventory) -> None:
    assert cluster.hosts("k8s") == ["cp1", "worker1", "worker2"]
    assert cluster.hosts("k8s:!control_plane") == ["worker1", "worker2"]
    assert cluster.hosts("all:!k8s") == ["grafana01"]


@pytest.mark.parametrize("pattern", ["", "  ", "[", ",", "~[", "!", "{{ target }}", "web{% if x %}1{% endif %}"])
def test_patterns_read_as_everything_or_unrenderable_are_errors(homelab: Inventory, pattern: str) -> None:
    with pytest.raises(InventoryError, match="host pattern"):
        homelab.hosts(pattern)


# --- target phrases --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "pattern", "kind"),
    [
        ("nas01", "nas01", TargetKind.HOST),
        ("NAS01", "nas01", TargetKind.HOST),
        ("web 3", "web-3", TargetKind.HOST),
        ("Web_3", "web-3", TargetKind.HOST),
        ("host web1", "web1", TargetKind.HOST),
        ("the nas01 box", "nas01", TargetKind.HOST),
        ("group media", "media", TargetKind.GROUP),
        ("media", "media", TargetKind.GROUP),
        ("the media server", "media", TargetKind.GROUP),
        ("the media servers", "media", TargetKind.GROUP),
        ("media hosts", "media", TargetKind.GROUP),
        ("media boxes", "media", TargetKind.GROUP),
        ("all the web servers", "web", TargetKind.GROUP),
        ("the prod group", "prod", TargetKind.GROUP),
    ],
)
def test_match_target_names_exactly_one_host_or_group(
    homelab: Inventory, phrase: str, pattern: str, kind: TargetKind
) -> None:
    match = homelab.match_target(phrase)
    assert (match.phrase, match.pattern, match.kind) == (phrase, pattern, kind), match.why
    assert pattern in match.why


def test_match_target_folds_underscores_in_group_names(cluster: Inventory) -> None:
    assert cluster.match_target("control plane nodes").pattern == "control_plane"
    assert cluster.match_target("the workers").pattern == "workers"


@pytest.mark.parametrize("phrase", ["*", "all:!db", "web*", "web,db", "~web", "prod:&web", "!db", "web[0]"])
def test_match_target_never_reads_a_phrase_as_a_host_pattern(homelab: Inventory, phrase: str) -> None:
    match = homelab.match_target(phrase)
    assert (match.pattern, match.kind) == (None, None)
    assert match.why.startswith("matches no host or group in the inventory")
    assert "not accepted" in match.why


@pytest.mark.parametrize("phrase", ["all", "all hosts", "All the servers", "everything", "every host"])
def test_match_target_never_means_every_host(homelab: Inventory, phrase: str) -> None:
    match = homelab.match_target(phrase)
    assert (match.pattern, match.kind) == (None, None)
    assert "every host" in match.why


@pytest.mark.parametrize(
    ("phrase", "why"), [("group web1", "matches no host"), ("host media", "matches no host"), ("", "empty")]
)
def test_match_target_respects_the_kind_the_user_said(homelab: Inventory, phrase: str, why: str) -> None:
    match = homelab.match_target(phrase)
    assert match.pattern is None
    assert why in match.why


def test_unknown_name_suggests_close_names(homelab: Inventory) -> None:
    match = homelab.match_target("the meda servers")
    assert (match.pattern, match.kind) == (None, None)
    assert match.why.startswith("matches no host or group in the inventory")
    assert "media" in match.suggestions
    assert "media" in match.why


def test_suggestions_are_at_most_five(tmp_path: Path) -> None:
    inventory = Inventory.load(generated(tmp_path / "hosts.ini", hosts=40, groups=4))
    match = inventory.match_target("h000")
    assert match.pattern is None
    assert 0 < len(match.suggestions) <= MAX_SUGGESTIONS


def test_names_differing_only_in_separators_are_ambiguous_unless_exact(tmp_path: Path) -> None:
    inventory = Inventory.load(write(tmp_path / "hosts.ini", "[app_1]\napp-1\nother\n[apps]\nWeb1\nweb1\n"))
    ambiguous = inventory.match_target("app 1")
    assert ambiguous.pattern is None
    assert "ambiguous" in ambiguous.why
    assert "host 'app-1'" in ambiguous.why
    assert "group 'app_1'" in ambiguous.why
    assert inventory.match_target("app-1").kind is TargetKind.HOST
    assert inventory.match_target("APP-1").kind is TargetKind.HOST  # case-insensitive beats separator folding
    assert inventory.match_target("app_1").kind is TargetKind.GROUP
    assert inventory.match_target("WEB1").pattern is None  # Web1 or web1
    assert inventory.match_target("web1").pattern == "web1"


def test_a_group_named_like_a_host_is_never_targeted(tmp_path: Path) -> None:
    # Ansible reads the pattern "media" as the host alone when a host has that name.
    inventory = Inventory.load(write(tmp_path / "hosts.ini", "[media]\nmedia\njellyfin\n"))
    assert inventory.hosts("media") == ["media"]
    both = inventory.match_target("media")
    assert both.pattern is None
    assert "ambiguous" in both.why
    group = inventory.match_target("group media")
    assert group.pattern is None
    assert "share that name" in group.why
    host = inventory.match_target("host media")
    assert (host.pattern, host.kind) == ("media", TargetKind.HOST)


# --- step hosts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plays", "limit", "expected"),
    [
        (["web", "db"], None, ["web1", "web2", "web-3", "db1", "db2"]),
        (["media", "nas01"], None, ["nas01", "jellyfin01", "plex01"]),
        (["all:!prod"], None, ["nas01", "jellyfin01", "plex01"]),
        (["prod"], "staging", ["web-3"]),
        (["prod"], "web:!staging", ["web1", "web2"]),
        (["web", "localhost"], "web", ["web1", "web2", "web-3"]),
        (["localhost"], None, ["localhost"]),
        (["media"], "prod", []),
        (["nosuchgroup"], None, []),
        ([], None, []),
    ],
)
def test_step_hosts_is_the_union_of_plays_cut_to_the_limit(
    homelab: Inventory, plays: list[str], limit: str | None, expected: list[str]
) -> None:
    assert homelab.step_hosts(plays, limit) == expected


def test_step_hosts_refuses_templated_play_hosts(homelab: Inventory) -> None:
    with pytest.raises(InventoryError, match="template"):
        homelab.step_hosts(["{{ target_hosts }}"], None)


# --- variable names --------------------------------------------------------------------------


def test_defined_vars_follow_group_inheritance(homelab: Inventory) -> None:
    # env/backup_schedule come from [prod:vars] through prod's children; ntp_server from [all:vars]
    assert homelab.defined_vars(["web1", "db1"]) == {"env", "backup_schedule", "ntp_server"}
    assert "http_port" in homelab.defined_vars(["web1", "web2"])
    assert "http_port" not in homelab.defined_vars(["web1", "web-3"])
    assert homelab.defined_vars(["jellyfin01", "plex01"]) == {"ansible_host", "media_root", "ntp_server"}


def test_defined_vars_read_group_vars_and_host_vars_directories(site: Inventory) -> None:
    web1 = {"backup_schedule", "env", "http_port", "ntp_server", "timezone", "tls_cert"}
    assert site.defined_vars(["web1"]) == web1
    assert site.defined_vars(["web2", "db1"]) == {"backup_schedule", "env", "ntp_server", "timezone"}
    assert site.defined_vars(["lab1"]) == {"lab_only", "ntp_server", "timezone"}


def test_defined_vars_in_yaml_inventory(cluster: Inventory) -> None:
    assert cluster.defined_vars(["cp1", "worker2"]) == {"dns_domain", "kube_version", "node_role"}


def test_defined_vars_edge_cases(homelab: Inventory) -> None:
    assert homelab.defined_vars([]) == frozenset()
    assert "ntp_server" in homelab.defined_vars(["localhost"])  # the implicit localhost gets `all` vars
    with pytest.raises(InventoryError, match="no such host: ghost"):
        homelab.defined_vars(["web1", "ghost"])


def vault_encrypted(text: str) -> str:
    return str(VaultLib([("default", VaultSecret(b"not-known-to-signoff"))]).encrypt(text.encode()).decode())


def test_vault_encrypted_vars_files_do_not_fail_the_inventory(tmp_path: Path) -> None:
    # Planning has no vault password: names in an encrypted file are unknown, the rest still count.
    source = write(tmp_path / "hosts.ini", "[db]\ndb1\n")
    write(tmp_path / "group_vars" / "db" / "main.yml", "pg_version: 16\n")
    vault = write(tmp_path / "group_vars" / "db" / "vault.yml", vault_encrypted("pg_password: hunter2\n"))
    inventory = Inventory.load(source)
    assert inventory.defined_vars(["db1"]) == {"pg_version"}
    assert inventory.vaulted_files == (vault,)
    assert "hunter2" not in repr(inventory)


def test_inline_vaulted_values_are_defined_names(tmp_path: Path) -> None:
    blob = "\n".join("        " + line for line in vault_encrypted("hunter2").splitlines())
    source = write(tmp_path / "hosts.yml", f"all:\n  hosts:\n    db1:\n      pg_password: !vault |\n{blob}\n")
    assert Inventory.load(source).defined_vars(["db1"]) == {"pg_password"}


def test_unparsable_group_vars_name_whose_variables_failed(tmp_path: Path) -> None:
    source = write(tmp_path / "hosts.ini", "[web]\nweb1\n")
    write(tmp_path / "group_vars" / "web.yml", "http_port: [80\n")
    with pytest.raises(InventoryError, match="variables of 'web': YAML parsing failed"):
        Inventory.load(source)


# --- cache -----------------------------------------------------------------------------------


def test_unchanged_inventory_is_parsed_once(tmp_path: Path) -> None:
    source = shutil.copy(INVENTORIES / "homelab.ini", tmp_path / "hosts.ini")
    assert Inventory.load(Path(source)) is Inventory.load(tmp_path / "." / "hosts.ini")


def test_rewritten_inventory_is_reloaded(tmp_path: Path) -> None:
    source = write(tmp_path / "hosts.ini", "[web]\nweb1\n")
    first = Inventory.load(source)
    write(source, "[web]\nweb1\nweb2\n[db]\ndb1\n")
    second = Inventory.load(source)
    assert first.hosts("all") == ["web1"]
    assert second.hosts("all") == ["web1", "web2", "db1"]
    assert second.match_target("the db servers").pattern == "db"


def test_new_group_vars_and_host_vars_files_are_seen(tmp_path: Path) -> None:
    # Ansible's host_group_vars remembers found files and missing directories per process.
    source = write(tmp_path / "hosts.ini", "[db]\ndb1\n")
    write(tmp_path / "group_vars" / "all.yml", "ntp_server: pool.ntp.org\n")
    assert Inventory.load(source).defined_vars(["db1"]) == {"ntp_server"}
    write(tmp_path / "group_vars" / "db.yml", "pg_version: 16\n")
    write(tmp_path / "host_vars" / "db1.yml", "pg_port: 5433\n")
    assert Inventory.load(source).defined_vars(["db1"]) == {"ntp_server", "pg_version", "pg_port"}


def test_concurrent_loads_give_one_identical_inventory(tmp_path: Path) -> None:
    source = generated(tmp_path / "hosts.ini", hosts=300, groups=10)
    start = threading.Barrier(8)

    def plan() -> tuple[Inventory, list[str], list[str], str | None, frozenset[str]]:
        start.wait()
        inventory = Inventory.load(source)
        return (
            inventory,
            inventory.hosts("even:!g00"),
            inventory.step_hosts(["g01", "g02"], "even"),
            inventory.match_target("the g03 servers").pattern,
            inventory.defined_vars(inventory.hosts("g04")),
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: plan(), range(8)))
    assert all(result[0] is results[0][0] for result in results)
    assert all(result[1:] == results[0][1:] for result in results)
    assert results[0][2] == [f"h{number:04d}" for number in range(2, 300, 10)]
    assert results[0][3] == "g03"
    assert results[0][4] == {"slot", "parity"}


# --- errors ----------------------------------------------------------------------------------


def test_broken_ini_names_the_file_and_the_reason() -> None:
    with pytest.raises(InventoryError) as error:
        Inventory.load(INVENTORIES / "broken.ini")
    assert error.value.path == INVENTORIES / "broken.ini"
    assert "broken.ini" in str(error.value)
    assert "Expected key=value, got: http_port" in error.value.reason


def test_broken_yaml_is_an_error_not_an_empty_inventory(tmp_path: Path) -> None:
    source = write(tmp_path / "hosts.yml", "all:\n  hosts:\n    web1:\n   bad: indent\n")
    with pytest.raises(InventoryError, match=r"hosts\.yml: cannot be parsed as an inventory .*YAML parsing failed"):
        Inventory.load(source)


def test_one_broken_file_fails_the_whole_directory(tmp_path: Path) -> None:
    shutil.copytree(INVENTORIES / "site", tmp_path / "site")
    write(tmp_path / "site" / "30-broken.ini", "[web:vars]\nhttp_port\n")
    with pytest.raises(InventoryError, match=r"30-broken\.ini: cannot be parsed"):
        Inventory.load(tmp_path / "site")


@pytest.mark.parametrize(("name", "why"), [("missing.ini", "does not exist"), ("empty", "holds no inventory file")])
def test_missing_or_empty_inventory_is_an_error(tmp_path: Path, name: str, why: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InventoryError, match=why):
        Inventory.load(tmp_path / name)


def test_scale_1000_hosts_in_50_groups(tmp_path: Path) -> None:
    inventory = Inventory.load(generated(tmp_path / "hosts.ini", hosts=1000, groups=50))
    assert len(inventory.hosts("all")) == 1000
    assert len(inventory.names()) == 1000 + 50 + 1
    assert inventory.hosts("g07:&even") == []
    assert len(inventory.step_hosts(["even", "g01"], "!g00")) == 500
    assert inventory.match_target("the g49 servers").pattern == "g49"
