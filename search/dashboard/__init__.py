"""``autodisco dashboard``: a local, read-only web page over the results database, live while jobs run.

``create_app(Source(root="runs"))`` is the Flask application; ``make_dashboard_server`` serves it (bound to
127.0.0.1 unless told otherwise). ``run_report`` and ``lineage`` are the data behind the run page, as JSON-ready
values. Importing this package imports Flask: the CLI imports it only when the command runs.
"""

from __future__ import annotations

from search.dashboard._app import create_app, make_dashboard_server
from search.dashboard._report import lineage, run_report
from search.dashboard._source import DashboardError, RunRef, Source

__all__ = ["DashboardError", "RunRef", "Source", "create_app", "lineage", "make_dashboard_server", "run_report"]
