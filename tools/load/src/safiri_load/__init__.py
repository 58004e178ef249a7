"""Load scenarios (Locust) with a metrics-versus-database check: ``safiri load SCENARIO``.

The scenarios are in :mod:`safiri_load.scenarios`, the locustfile in ``load/locustfile.py``.
"""
