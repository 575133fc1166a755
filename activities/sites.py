"""Is a site's task queue served? A step whose hosts name a site (`signoff_site`) runs on
`<task queue>-<site>`, which only workers started with SIGNOFF_SITE=<site> poll. Before such a
step is scheduled, the workflow asks here, so a request whose site has no worker says so in
`status` instead of waiting unseen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

RECENT = timedelta(minutes=2)  # a poller seen this recently still serves the queue


class SiteActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="site_has_worker")
    async def has_worker(self, task_queue: str) -> bool:
        answer = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
        now = datetime.now(UTC)
        return any(now - poller.last_access_time.ToDatetime(UTC) < RECENT for poller in answer.pollers)
