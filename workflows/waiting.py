"""Who a ChangeRequestWorkflow waits for, told to the world: the search attributes `signoff list`
reads, and the notification POSTed to SIGNOFF_NOTIFY_URL (workflows.inbox says what they hold).
Mixed into ChangeRequestWorkflow."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.identity import Identity
from workflows.inbox import Notification, inbox_attributes, notification
from workflows.options import NOTIFY_RETRY, NOTIFY_TIMEOUT
from workflows.payloads import describe
from workflows.types import ChangeRequestStatus

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities


class Waiting:
    _status: ChangeRequestStatus
    _requester: Identity | None
    _inbox: bool  # who it waits for, in search attributes ("inbox-attributes")
    _notifications: list[asyncio.Task[None]]

    def _show_inbox(self) -> None:
        """Approvals received and needed, and who may act now, for `signoff list`."""
        if self._inbox and self._requester is not None:
            workflow.upsert_search_attributes(inbox_attributes(self._status, self._requester))

    def _notify(self, step: int | None) -> None:
        """Tell SIGNOFF_NOTIFY_URL that the request waits for someone. Sent beside the request,
        never awaited: a receiver that is down delays no one."""
        plan = self._status.plan
        if plan is None or not plan.notify or self._requester is None or not workflow.patched("notify"):
            return
        sent = notification(self._status, self._requester, step)
        self._notifications.append(asyncio.create_task(self._send(sent)))

    def _stop_notifying(self) -> None:
        """The wait is over: a notification still retrying would announce it to no purpose."""
        for task in self._notifications:
            task.cancel()
        self._notifications.clear()

    async def _send(self, sent: Notification) -> None:
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify,
                sent,
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"notify: {sent.event}",
            )
        except ActivityError as err:
            if not is_cancelled_exception(err):
                workflow.logger.warning("notification %s not delivered: %s", sent.delivery, describe(err))
