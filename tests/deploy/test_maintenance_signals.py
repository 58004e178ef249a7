"""Maintenance mode's signals outside the gateway: its alert reaches chat (never the pager), and
the Control Tower and Engine Room mark it with an annotation on the gauge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.test_alertmanager import render, routes_to

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER = ROOT / "deploy" / "alertmanager"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
ALERT = ["severity=info", "alertname=SafiriMaintenanceMode", "job=safiri-gateway"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    return render(out, pager="http://127.0.0.1:9/pager", chat="http://127.0.0.1:9/chat")


def _routes_to(rendered: Path, receiver: str, labels: list[str]) -> bool:
    return routes_to(rendered, receiver, labels).returncode == 0


def test_the_maintenance_alert_reaches_chat_and_never_pages(rendered: Path) -> None:
    assert _routes_to(rendered, "chat", ALERT)
    assert not _routes_to(rendered, "pager", ALERT)
    # Other info alerts are still recorded only: the route is the maintenance alert's.
    assert _routes_to(rendered, "null", ["severity=info", "alertname=SafiriTelemetryExportFailing"])


@pytest.mark.parametrize("name", ["control-tower", "engine-room"])
def test_the_dashboard_marks_maintenance_with_an_annotation_on_the_gauge(name: str) -> None:
    dashboard = json.loads((DASHBOARDS / f"{name}.json").read_text())
    marks = [
        a
        for a in dashboard["annotations"]["list"]
        if "safiri_maintenance_mode" in a.get("expr", "")
    ]
    assert len(marks) == 1, f"{name}: one maintenance annotation"
    (mark,) = marks
    assert mark["enable"] is True
    assert mark["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    # Shown while the gauge is 1 (a region), not at every sample of the 0 series.
    assert mark["expr"].replace(" ", "") == "max(safiri_maintenance_mode)==1"
    assert mark["titleFormat"] == "Maintenance mode"
