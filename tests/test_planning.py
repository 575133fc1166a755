"""The plan an approver signs, from the Planner that both the activity and `signoff plan` use:
where each step runs (targets resolved through Ansible's inventory, never widened), which
vars it needs and receives, and refusals that name what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.catalog import Planner, PlanningActivities
from tests.conftest import FIXTURES
from workflows.types import PLAN_VERSION, ApprovalPolicy, PlanInput, Risk


@pytest.fixture
def planner(tmp_path: Path) -> Planner:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "playbooks" / "planning", repo)
    return Planner(repo, repo / "inventory" / "hosts.ini")


def test_a_named_host_becomes_the_steps_limit(planner: Planner) -> None:
    draft = planner.plan("restart jellyfin on nas01")

    [step] = draft.steps
    assert (step.playbook, step.action, step.limit, step.host_list) == (
        "jellyfin/restart_jellyfin.yml",
        "restart",
        "nas01",
        ["nas01"],
    )
    assert "restart" in step.reason
    assert "jellyfin" in step.reason


def test_a_group_said_loosely_is_found(planner: Planner) -> None:
    [step] = planner.plan("restart jellyfin on the media servers").steps

    assert (step.limit, step.host_list) == ("media", ["nas01", "nas02"])


def test_a_target_that_matches_nothing_never_widens(planner: Planner) -> None:
    [step] = planner.plan("restart jellyfin on the moon").steps

    assert step.limit is None
    assert step.host_list == ["nas01", "nas02"], "the playbook's own hosts, not more"
    assert step.unmatched_target
    assert step.unmatched_target.startswith("'the moon'")


def test_an_empty_intersection_is_a_planning_error(planner: Planner) -> None:
    draft = planner.plan("restart jellyfin on group web")

    assert draft.steps == []
    assert draft.error
    assert "would touch no host" in draft.error
    assert "jellyfin/restart_jellyfin.yml" in draft.error


def test_the_requests_own_pattern_narrows_too(planner: Planner) -> None:
    assert planner.plan("restart jellyfin", limit="nas02").steps[0].host_list == ["nas02"]
    assert "would touch no host" in (planner.plan("restart jellyfin on nas01", limit="nas02").error or "")


def test_missing_required_vars_fail_planning_with_the_exact_list(planner: Planner) -> None:
    draft = planner.plan("deploy jellyfin")

    assert draft.error == (
        "step 1 (jellyfin/deploy_jellyfin.yml): needs vars jellyfin_port: "
        "set them in the request's vars or the inventory"
    )
    [step] = planner.plan("deploy jellyfin", request_vars={"jellyfin_port": 8096}).steps
    assert step.vars == ["jellyfin_port"]


def test_required_vars_the_inventory_sets_are_met(planner: Planner) -> None:
    [step] = planner.plan("upgrade nginx").steps

    assert (step.playbook, step.action, step.host_list) == ("upgrade-nginx.yml", "update", ["web1"])


def test_templated_hosts_are_set_by_a_var_the_request_must_give(planner: Planner) -> None:
    assert "needs vars patch_targets" in (planner.plan("patch the hosts").error or "")

    [step] = planner.plan("patch the hosts", request_vars={"patch_targets": "web"}).steps

    assert step.hosts == "set by var `patch_targets`"
    assert step.host_list == ["web1"]


def test_a_clause_that_maps_to_nothing_fails_the_whole_plan(planner: Planner) -> None:
    draft = planner.plan("restart jellyfin and deploy grafana")

    assert draft.steps == []
    [unmatched] = draft.unmatched
    assert "grafana" in unmatched.clause


def test_the_activity_returns_the_plan_with_the_policy(planner: Planner) -> None:
    policy = ApprovalPolicy(approvers=["bob"])
    activities = PlanningActivities(planner, policy, check_mode_preview=False)

    plan = ActivityEnvironment().run(activities.plan_change, PlanInput("Restart Jellyfin, then upgrade nginx"))

    assert [s.playbook for s in plan.steps] == ["jellyfin/restart_jellyfin.yml", "upgrade-nginx.yml"]
    assert (plan.risk, plan.policy, plan.version, plan.error) == (Risk.MEDIUM, policy, PLAN_VERSION, None)
    refused = ActivityEnvironment().run(activities.plan_change, PlanInput("restart jellyfin", vars={"x": 1}))
    assert refused.steps == []
    assert "var 'x' is not accepted" in (refused.error or "")
