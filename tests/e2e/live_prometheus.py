"""A real Prometheus scraping the running suite, with a test copy of the repository's rules.

The copy keeps every expression and runs time 60 times faster, in proportion: rate windows,
``for`` durations and age thresholds (``safiri_chaos.prometheus.fast_rules``), so an alert that
takes minutes in production fires within seconds here, for the same combination of windows.
The shipped rules are never changed. Prometheus itself is started by
``safiri_chaos.prometheus.running_prometheus``, the one runner the chaos tooling and
``safiri up`` use too.
"""

from __future__ import annotations

from safiri_chaos.prometheus import RULES_DIR

from .conftest import Running

RULES = sorted(RULES_DIR.glob("*.yml"))


def scrape_config(running: Running) -> dict[str, list[str]]:
    """What Prometheus scrapes in ``running`` (job → one target per replica), as
    ``running_prometheus`` takes it: the same targets ``safiri up``'s Prometheus scrapes."""
    return running.suite.scrape_targets()
