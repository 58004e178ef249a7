"""Reliable messaging for Safiri's services: topology, outbox, idempotent consumers, backlogs."""

from __future__ import annotations

from .backlog import BacklogMonitor
from .connection import connect, consumer_channel, publisher_channel
from .consumer import Envelope, PoisonMessage, consume
from .inbox import first_delivery
from .lifecycle import broker_connected, repeat_forever, running_messaging, stop_task
from .metrics import MessagingMetrics, sent_messages_counter
from .outbox import OUTBOX_SCHEMA, OutboxRelay, add_to_outbox
from .publisher import publish_event
from .single_active import SingleActive
from .topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    QueueSpec,
    declare_events_exchange,
    declare_queue,
)
from .unit_of_work import OutboxUnitOfWork

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "EVENTS_EXCHANGE",
    "OUTBOX_SCHEMA",
    "BacklogMonitor",
    "Envelope",
    "MessagingMetrics",
    "OutboxRelay",
    "OutboxUnitOfWork",
    "PoisonMessage",
    "QueueSpec",
    "SingleActive",
    "add_to_outbox",
    "broker_connected",
    "connect",
    "consume",
    "consumer_channel",
    "declare_events_exchange",
    "declare_queue",
    "first_delivery",
    "publish_event",
    "publisher_channel",
    "repeat_forever",
    "running_messaging",
    "sent_messages_counter",
    "stop_task",
]
