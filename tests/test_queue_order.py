"""Playbooks that wait for a slot start in the order they were scheduled: a later step of one
request never jumps ahead of the first step of a request approved before it. This holds with
one partition on the playbook queue, which the dev server gets (workers/devstack.py) and
deploy/temporal/dynamicconfig.yaml sets; with Temporal's default four the order is random."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.conftest import with_policy
from tests.helpers import assert_eventually, scheduled_activities, start_request
from workers.settings import Settings
from workers.worker import running_worker
from workflows.types import Phase

PLAYBOOK = """# signoff:
#   service: {service}
#   action: {action}
#   risk: low
- name: {action} {service}
  hosts: {service}
  gather_facts: false
  tasks:
{gate}    - name: Stamp
      ansible.builtin.shell: echo "{service} {action}" >> "{{{{ out_dir }}}}/order.txt"
      changed_when: false
"""
GATE = """    - name: Wait for the gate
      ansible.builtin.wait_for:
        path: "{{ out_dir }}/gate"
        timeout: 120
"""
SERVICES = ("first", "second", "third", "fourth")


def one_slot_settings(settings: Settings, out_dir: Path) -> Settings:
    """One playbook at a time; four services, each on its own host (so no lock orders them).
    `first` has two steps, and its first one waits until the test opens the gate."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "out_dir": str(out_dir)}
    inventory = settings.inventory.parent / "four-hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": dict.fromkeys(SERVICES, local)}}))
    for service in SERVICES:
        gate = GATE if service == "first" else ""
        text = PLAYBOOK.format(service=service, action="deploy", gate=gate)
        (settings.playbook_dir / f"{service}-deploy.yml").write_text(text)
    configure = PLAYBOOK.format(service="first", action="configure", gate="")
    (settings.playbook_dir / "first-configure.yml").write_text(configure)
    settings = dataclasses.replace(settings, inventory=inventory, playbook_concurrency=1)
    return with_policy(settings, auto_approve_risk="low")


async def scheduled_playbooks(handle: WorkflowHandle[Any, Any]) -> None:
    assert "run_playbook" in await scheduled_activities(handle)


async def test_waiting_playbooks_start_in_the_order_they_were_scheduled(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    settings = one_slot_settings(settings, out_dir)
    async with running_worker(env.client, settings):
        first = await start_request(env, settings, "Deploy and configure first")
        await assert_eventually(lambda: scheduled_playbooks(first))
        others = []
        for service in SERVICES[1:]:  # each scheduled while the slot is taken, one after another
            others.append(await start_request(env, settings, f"Deploy {service}"))
            await assert_eventually(lambda: scheduled_playbooks(others[-1]))
        (out_dir / "gate").touch()
        results = [await h.result() for h in (first, *others)]

    assert [r.outcome for r in results] == [Phase.SUCCEEDED] * 4
    assert (out_dir / "order.txt").read_text().splitlines() == [
        "first deploy",
        "second deploy",
        "third deploy",
        "fourth deploy",
        "first configure",  # scheduled last: it waited behind the three
    ]
