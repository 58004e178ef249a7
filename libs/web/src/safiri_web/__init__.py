"""HTTP plumbing shared by Safiri's services."""

from __future__ import annotations

from .database import database_pool, keep_session
from .health import ReadinessCheck, add_health_routes
from .operations import add_operations_routes
from .problem import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    invalid_request,
    problem_middleware,
    problem_response,
)
from .runner import DEFAULT_EVENT_LOOP, EVENT_LOOPS, event_loop, exit_on_bad_settings, run_service
from .schema import apply_schema, schema_digest
from .settings import EnvReader, Secret, log_level

__all__ = [
    "DEFAULT_EVENT_LOOP",
    "EVENT_LOOPS",
    "PROBLEM_CONTENT_TYPE",
    "EnvReader",
    "Problem",
    "ReadinessCheck",
    "Secret",
    "add_health_routes",
    "add_operations_routes",
    "apply_schema",
    "database_pool",
    "event_loop",
    "exit_on_bad_settings",
    "invalid_request",
    "keep_session",
    "log_level",
    "problem_middleware",
    "problem_response",
    "run_service",
    "schema_digest",
]
