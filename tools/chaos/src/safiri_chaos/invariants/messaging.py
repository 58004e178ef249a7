"""Messages: the outboxes drained, and every dead-lettered message accounted for."""

from __future__ import annotations

from .model import Limits, Snapshot
from .report import Check

__all__ = ["check_dead_letters", "check_outboxes_drained"]


def check_outboxes_drained(snapshot: Snapshot, limits: Limits) -> Check:
    check = Check("outboxes drained")
    for row in snapshot.outbox:
        if row.age_seconds > limits.outbox_max_age_seconds:
            check.violate(
                "event not published",
                f"{row.service} outbox {row.message_id}",
                f"{row.routing_key} unpublished for {row.age_seconds:.0f} s"
                f" (limit {limits.outbox_max_age_seconds:.0f} s)",
            )
    unpublished: dict[str, int] = {}
    for row in snapshot.outbox:
        unpublished[row.service] = unpublished.get(row.service, 0) + 1
    check.facts = {"unpublished": unpublished or 0}
    return check


def check_dead_letters(snapshot: Snapshot, limits: Limits) -> Check:
    """Dead-lettered messages are not lost, but each needs a person: list every queue's depth."""
    check = Check("dead letters accounted for")
    if limits.strict and not snapshot.dead_letters:
        check.violate("dead-letter queues not read", "the broker", "no queue depth was read")
    for queue, depth in sorted(snapshot.dead_letters.items()):
        if depth is None:
            check.facts[queue] = "not declared"
            if limits.strict:
                check.violate(
                    "dead-letter queue missing",
                    queue,
                    "not declared on the broker: a message dead-lettered now would be dropped",
                )
        else:
            check.facts[queue] = depth
            if depth and not limits.allow_dead_letters:
                check.violate(
                    "messages dead-lettered",
                    queue,
                    f"{depth} message(s) parked; inspect and replay them"
                    " (docs/runbooks/SafiriMessagesDeadLettered.md)",
                )
    return check
