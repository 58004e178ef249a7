"""bench/memory_soak.py: each process's RSS over a sustained run, judged against #16's targets.

Hand-made time series stand for a run: each service <= 100 MB under load, RSS at the end within
1.10 of the end of warm-up, and telemetry on within 1.10 of off (idle and max under load). Each
target has a series that fails it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
soak = load_script(ROOT / "bench" / "memory_soak.py")
render = load_script(ROOT / "bench" / "render.py")

STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t  300000 kB
VmHWM:\t   65536 kB
VmRSS:\t   58368 kB
RssAnon:\t   40000 kB
Threads:\t4
"""

IDLE = {
    "gateway": 57.0,
    "ticketing": 58.0,
    "payment": 56.0,
    "mpesa-simulator": 50.0,
    "fleet-simulator": 45.0,
}


def _series(
    grow: dict[str, float] | None = None, base: dict[str, float] | None = None
) -> list[tuple[float, dict[str, float | None]]]:
    """Samples every 10 s over 60 s, warm-up 20 s: each process at ``base`` + 5 MB by the end
    of warm-up, then growing by ``grow[process]`` MB in all by the end."""
    base = base or IDLE
    grow = grow or {}
    out: list[tuple[float, dict[str, float | None]]] = []
    for t in (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0):
        warm = min(t, 20.0) / 20.0 * 5.0
        later = max(t - 20.0, 0.0) / 40.0
        out.append((t, {p: mb + warm + later * grow.get(p, 0.0) for p, mb in base.items()}))
    return out


def _failed(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["target"], c["variant"], c["process"]) for c in result["checks"] if not c["met"]]


def test_rss_and_peak_are_read_from_proc_status_in_mb() -> None:
    assert soak.status_mb(STATUS) == 57.0
    assert soak.status_mb(STATUS, "VmHWM") == 64.0
    assert soak.status_mb("Name:\tkthreadd\n") is None  # a kernel thread has no VmRSS


def test_samples_fall_every_step_and_exactly_at_the_end_of_warm_up_and_of_the_run() -> None:
    assert soak.sample_times(60, 10, 20) == [0, 10, 20, 30, 40, 50, 60]
    assert soak.sample_times(60, 25, 20) == [0, 20, 25, 50, 60]


def test_each_process_max_under_load_rss_at_warm_up_and_end_and_growth() -> None:
    figures = soak.variant_figures(IDLE, _series({"ticketing": 6.3}), warmup_seconds=20)

    ticketing = figures["processes"]["ticketing"]
    assert ticketing["idle_mb"] == 58.0
    assert ticketing["at_warmup_mb"] == 63.0
    assert ticketing["at_end_mb"] == 69.3
    assert ticketing["max_under_load_mb"] == 69.3
    assert ticketing["growth"] == 1.1
    assert figures["processes"]["gateway"]["growth"] == 1.0
    services = figures["services_total"]
    assert services["idle_mb"] == 171.0
    assert services["at_warmup_mb"] == 186.0
    assert services["max_under_load_mb"] == 192.3
    assert figures["suite_total"]["idle_mb"] == 266.0


def test_the_end_of_warm_up_is_the_first_sample_at_or_after_it() -> None:
    series = [(0.0, {"gateway": 60.0}), (15.0, {"gateway": 70.0}), (30.0, {"gateway": 77.0})]

    gateway = soak.variant_figures({"gateway": 55.0}, series, warmup_seconds=10)["processes"][
        "gateway"
    ]

    assert gateway["at_warmup_mb"] == 70.0
    assert gateway["growth"] == 1.1


def test_a_run_within_every_target_meets_them_all() -> None:
    on = soak.variant_figures(IDLE, _series({"payment": 3.0}), warmup_seconds=20)
    off = soak.variant_figures(IDLE, _series(), warmup_seconds=20)

    result = soak.evaluate({"on": on, "off": off})

    assert _failed(result) == []
    assert result["met"] is True
    assert result["not_evaluated"] == []
    checked = {(c["target"], c["process"]) for c in result["checks"]}
    assert {p for _, p in checked} == {"gateway", "ticketing", "payment"}  # not the simulators
    assert len(result["checks"]) == 2 * 2 * 3 + 2 * 3  # max, growth per variant; on/off ratios


def test_a_service_over_100_mb_under_load_fails_the_limit() -> None:
    big = {**IDLE, "gateway": 96.0}  # 101 MB by the end of warm-up
    on = soak.variant_figures(big, _series(base=big), warmup_seconds=20)

    result = soak.evaluate({"on": on})

    assert _failed(result) == [("max_under_load_mb", "on", "gateway")]
    assert result["met"] is False


def test_growth_after_warm_up_over_10_per_cent_fails_flatness() -> None:
    on = soak.variant_figures(IDLE, _series({"payment": 6.2}), warmup_seconds=20)

    result = soak.evaluate({"on": on})

    assert _failed(result) == [("growth", "on", "payment")]
    assert result["met"] is False


def test_telemetry_adding_over_10_per_cent_under_load_fails() -> None:
    lighter = {**IDLE, "ticketing": 52.0}  # off: 57 MB at most under load, on: 63 MB (1.105)
    on = soak.variant_figures(IDLE, _series(), warmup_seconds=20)
    off = soak.variant_figures(IDLE, _series(base=lighter), warmup_seconds=20)

    result = soak.evaluate({"on": on, "off": off})

    assert _failed(result) == [("telemetry_max_ratio", "on", "ticketing")]
    assert result["met"] is False


def test_telemetry_adding_over_10_per_cent_idle_fails() -> None:
    light = {**IDLE, "payment": 50.0}  # on: 56 MB idle, off: 50 MB (ratio 1.12)
    on = soak.variant_figures(IDLE, _series(base=light), warmup_seconds=20)
    off = soak.variant_figures(light, _series(base=light), warmup_seconds=20)

    result = soak.evaluate({"on": on, "off": off})

    assert _failed(result) == [("telemetry_idle_ratio", "on", "payment")]


def test_without_the_off_variant_the_telemetry_targets_are_said_to_be_not_evaluated() -> None:
    on = soak.variant_figures(IDLE, _series(), warmup_seconds=20)

    result = soak.evaluate({"on": on})

    assert result["met"] is True
    assert result["not_evaluated"] == ["telemetry on/off: variant off was not run"]


def test_a_service_missing_from_a_sample_fails_rather_than_passing_unmeasured() -> None:
    series = _series()
    series[-1][1]["ticketing"] = None  # died and not yet restarted when sampled
    on = soak.variant_figures(IDLE, series, warmup_seconds=20)

    result = soak.evaluate({"on": on})

    assert on["processes"]["ticketing"]["at_end_mb"] is None
    assert _failed(result) == [("growth", "on", "ticketing")]


def test_render_shows_each_process_of_each_variant_and_the_targets() -> None:
    report = {
        "parameters": {
            "rate": 50.0,
            "minutes": 10.0,
            "warmup_seconds": 120.0,
            "sample_seconds": 10.0,
        },
        "variants": {
            "on": soak.variant_figures(IDLE, _series({"payment": 6.2}), warmup_seconds=20),
            "off": soak.variant_figures(IDLE, _series(), warmup_seconds=20),
        },
    }
    report["targets"] = soak.evaluate(report["variants"])
    for v in report["variants"].values():
        v["load"] = {"posts": 30000, "post_errors": 0, "confirmed": 30000}

    lines = render.memory_soak({"m.json": report}, "m.json")

    text = "\n".join(lines)
    assert "| on | payment | 56 | 61 | 67.2 | 1.1016 | 67.2 | 1.1016, 1 |" in text
    assert "| off | fleet-simulator | 45 | 50 | 50 | 1 | 50 |  |" in text
    assert "| on | services (sum) | 171 | 186 | 192.2 | 1.0333 | 192.2 |" in text
    assert (
        "not met: growth end/warm-up payment (on) 1.1016 > 1.1;"
        " telemetry on/off, max under load payment (on) 1.1016 > 1.1" in text
    )
