"""The playbook catalog: headers, file-name fallbacks, broken files, matching and planning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.catalog import CatalogEntry, PlanningActivities, discover, match
from workflows.types import Action, ApprovalPolicy, Plan, PlanInput, Risk

BASIC = Path(__file__).parent / "fixtures" / "playbooks" / "basic"
PLAY = "- name: {name}\n  hosts: local\n  gather_facts: false\n  tasks: []\n"


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    """A private copy of the basic fixture playbooks that a test may add files to."""
    return Path(shutil.copytree(BASIC, tmp_path / "playbooks"))


def write(playbook_dir: Path, name: str, header: str = "", play: str = "") -> None:
    (playbook_dir / name).write_text(header + (play or PLAY.format(name=name)))


def entry(playbook_dir: Path, path: str) -> CatalogEntry:
    [found] = [e for e in discover(playbook_dir).entries if e.path == path]
    return found


def test_header_sets_every_field(playbooks: Path) -> None:
    write(
        playbooks,
        "whatever.yml",
        "# signoff:\n"
        "#   service: billing\n"
        "#   action: Update\n"
        "#   description: Upgrade the billing service\n"
        "#   aliases: [invoices, payments api]\n"
        "#   risk: HIGH\n"
        "#   after: [billing-deploy]\n"
        "#   required_vars: [version, region]\n",
    )

    found = entry(playbooks, "whatever.yml")

    assert found.broken is None
    assert found.service == "billing"
    assert found.action == Action.UPDATE
    assert found.description == "Upgrade the billing service"
    assert found.aliases == ("invoices", "payments api")
    assert found.risk == Risk.HIGH
    assert found.after == ("billing-deploy",)
    assert found.required_vars == ("version", "region")
    assert found.hosts == "local"


def test_fixture_header_is_read() -> None:
    found = entry(BASIC, "hello-configure.yml")

    assert (found.service, found.action, found.risk, found.after) == (
        "hello", Action.CONFIGURE, Risk.LOW, ("hello-deploy",)
    )


def test_headerless_playbook_is_catalogued_from_its_file_name() -> None:
    found = entry(BASIC, "doomed-deploy.yml")

    assert found.broken is None
    assert found.service == "doomed"
    assert found.action == Action.DEPLOY
    assert found.risk == Risk.MEDIUM, "the default risk of a deploy"
    assert found.description == "Deploy doomed", "the first play's name"
    assert found.hosts == "local"


def test_headerless_remove_defaults_to_high_risk(playbooks: Path) -> None:
    write(playbooks, "cache-remove.yml")

    found = entry(playbooks, "cache-remove.yml")

    assert (found.service, found.action, found.risk) == ("cache", Action.REMOVE, Risk.HIGH)


def test_file_name_without_a_known_action_is_a_deploy_of_the_whole_stem(playbooks: Path) -> None:
    write(playbooks, "my-app.yml")

    found = entry(playbooks, "my-app.yml")

    assert found.broken is None
    assert (found.service, found.action) == ("my-app", Action.DEPLOY)
    assert [e.path for e in match("deploy my app", discover(playbooks))] == ["my-app.yml"]


def test_broken_yaml_is_reported_not_raised() -> None:
    found = entry(BASIC, "broken-update.yml")

    assert found.broken is not None
    assert found.broken.startswith("not valid YAML")
    assert found not in discover(BASIC).usable


@pytest.mark.parametrize(
    "header, problem",
    [
        ("# signoff:\n#   action: explode\n", "explode"),
        ("# signoff:\n#   risk: extreme\n", "extreme"),
        ("# signoff:\n#   aliases: 5\n", "list of strings"),
        ("# signoff:\n#   - a list\n", "must be a mapping"),
        ("# signoff: nope\n", "must be a mapping"),
    ],
)
def test_bad_header_is_reported_as_broken(playbooks: Path, header: str, problem: str) -> None:
    write(playbooks, "shaky-deploy.yml", header)

    found = entry(playbooks, "shaky-deploy.yml")

    assert found.broken is not None
    assert found.broken.startswith("bad signoff header")
    assert problem in found.broken


@pytest.mark.parametrize(
    "content",
    ["name: a mapping, not a list of plays\nhosts: all\n", "[]\n", "- just a string\n", ""],
    ids=["mapping", "empty-list", "list-of-strings", "empty-file"],
)
def test_yaml_that_is_not_a_playbook_is_broken(playbooks: Path, content: str) -> None:
    (playbooks / "odd-configure.yml").write_text(content)

    found = entry(playbooks, "odd-configure.yml")

    assert found.broken == "not a playbook: expected a list of plays"


def test_match_orders_by_action() -> None:
    chosen = match("Deploy hello and configure hello", discover(BASIC))

    assert [e.path for e in chosen] == ["hello-deploy.yml", "hello-configure.yml"]


def test_match_orders_by_action_whatever_order_the_request_uses() -> None:
    chosen = match("verify ping, then restart slow", discover(BASIC))

    assert [e.path for e in chosen] == ["slow-restart.yml", "ping-verify.yml"]


def test_match_by_alias_needs_an_action_word() -> None:
    catalog = discover(BASIC)

    assert [e.path for e in match("please install Hello World", catalog)] == ["hello-deploy.yml"]
    assert match("hello world", catalog) == []


def test_after_overrides_action_order(tmp_path: Path) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    write(playbooks, "cache-restart.yml")
    write(playbooks, "cache-update.yml", "# signoff:\n#   after: [cache-restart]\n")
    write(playbooks, "web-update.yml")

    chosen = match("update cache and web, restart cache", discover(playbooks))

    assert [e.path for e in chosen] == ["web-update.yml", "cache-restart.yml", "cache-update.yml"]


def test_cycle_in_after_falls_back_to_action_order(tmp_path: Path) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    write(playbooks, "db-deploy.yml", "# signoff:\n#   after: [db-configure]\n")
    write(playbooks, "db-configure.yml", "# signoff:\n#   after: [db-deploy]\n")

    chosen = match("deploy db and configure db", discover(playbooks))

    assert [e.path for e in chosen] == ["db-deploy.yml", "db-configure.yml"]


def test_broken_playbooks_are_never_matched() -> None:
    assert match("update broken", discover(BASIC)) == []


def test_request_naming_nothing_matches_nothing() -> None:
    assert match("make me a coffee", discover(BASIC)) == []


POLICY = ApprovalPolicy(approvers=["bob"], required_approvals=2, timeout_seconds=60)


def plan(playbook_dir: Path, inp: PlanInput) -> Plan:
    return ActivityEnvironment().run(PlanningActivities(playbook_dir, POLICY).plan_change, inp)


def test_plan_risk_is_the_highest_step_risk(playbooks: Path) -> None:
    write(playbooks, "hello-remove.yml")

    result = plan(playbooks, PlanInput(request="Configure hello, then remove hello"))

    assert [(s.playbook, s.risk) for s in result.steps] == [
        ("hello-configure.yml", Risk.LOW),
        ("hello-remove.yml", Risk.HIGH),
    ]
    assert result.risk == Risk.HIGH
    assert result.policy == POLICY
    assert result.unmatched is None
    assert result.services == ["hello"]


def test_plan_of_low_risk_steps_is_low_and_uses_the_requested_inventory() -> None:
    result = plan(BASIC, PlanInput(request="restart slow and verify ping", inventory="web01"))

    assert result.risk == Risk.LOW
    assert [s.hosts for s in result.steps] == ["web01", "web01"]
    assert [s.action for s in result.steps] == [Action.RESTART, Action.VERIFY]


def test_plan_carries_required_vars_and_default_hosts(playbooks: Path) -> None:
    write(playbooks, "api-deploy.yml", "# signoff:\n#   required_vars: [version]\n")

    [step] = plan(playbooks, PlanInput(request="deploy api")).steps

    assert (step.service, step.required_vars, step.hosts, step.risk) == ("api", ["version"], "local", Risk.MEDIUM)


def test_plan_explains_when_nothing_matched() -> None:
    result = plan(BASIC, PlanInput(request="make me a coffee"))

    assert result.steps == []
    assert result.risk == Risk.LOW
    assert result.unmatched is not None
    assert "'make me a coffee'" in result.unmatched
    assert "hello (deploy)" in result.unmatched and "ping (verify)" in result.unmatched
    assert "broken" not in result.unmatched, "broken playbooks are not offered as known"
