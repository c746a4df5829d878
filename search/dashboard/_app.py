"""The dashboard's web application (Flask) and its server (Werkzeug's threaded WSGI server).

Pages are skeletons filled in by ``static/dashboard.js`` from the JSON endpoints, which it polls every few seconds:
the page follows a running job without a reload. The JSON endpoints are the contract (and what the tests check):

    GET /api/runs                         {"source", "runs": [job summary | {"name", "error"}], "error"}
    GET /api/run?folder=F&job=J           {"ref", "report": run_report(...), "error"}
    GET /api/lineage?folder=F&job=J&candidate=C   {"ref", "lineage": {"candidate", "rows"}, "error"}

A run that cannot be read answers ``{"error": "<one line>"}`` (status 404), and its page shows that line. Strings
read from a database are untrusted: templates escape them, the script only ever sets ``textContent``.
"""

from __future__ import annotations

import json
import socket
from importlib import resources
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from search.cli._common import _strict
from search.dashboard._report import lineage, run_report
from search.dashboard._source import DashboardError, RunRef, Source

POLL_MS = 2000
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def create_app(source: Source, *, poll_ms: int = POLL_MS, trusted_hosts: list[str] | None = None) -> Flask:
    """The dashboard over ``source``'s runs; read-only. With ``trusted_hosts``, a request whose ``Host`` is another
    name gets 400 (a page elsewhere cannot read the dashboard by pointing its own name at 127.0.0.1)."""
    app = Flask(__name__)
    app.config.update(TRUSTED_HOSTS=trusted_hosts)

    def page(template: str, ref: RunRef | None = None, error: str | None = None) -> str:
        return render_template(template, source=source.describe(), ref=ref, error=error, poll_ms=poll_ms)

    @app.get("/")
    def runs_page() -> str:
        return page("runs.html")

    @app.get("/run")
    def run_page() -> tuple[str, int]:
        ref = _ref(source)
        try:
            with source.open(ref):
                pass
        except DashboardError as error:
            return page("run.html", ref, str(error)), 404
        return page("run.html", ref), 200

    @app.get("/api/runs")
    def runs_json() -> Response:
        try:
            return _json({"source": source.describe(), "runs": source.runs(), "error": None})
        except DashboardError as error:
            return _json({"source": source.describe(), "runs": [], "error": str(error)}, 404)

    @app.get("/api/run")
    def run_json() -> Response:
        ref = _ref(source)
        try:
            with source.open(ref) as (store, job):
                return _json({"ref": _ref_json(ref), "report": run_report(store, job), "error": None})
        except DashboardError as error:
            return _json({"ref": _ref_json(ref), "error": str(error)}, 404)

    @app.get("/api/lineage")
    def lineage_json() -> Response:
        ref = _ref(source)
        candidate = request.args.get("candidate", "")
        try:
            with source.open(ref) as (store, job):
                return _json({"ref": _ref_json(ref), "lineage": lineage(store, job, candidate), "error": None})
        except DashboardError as error:
            return _json({"ref": _ref_json(ref), "error": str(error)}, 404)

    @app.get("/plotly.min.js")
    def plotly_js() -> Response:
        script = resources.files("plotly") / "package_data" / "plotly.min.js"  # ships inside the plotly package
        response = Response(script.read_bytes(), mimetype="text/javascript")
        response.cache_control.max_age = 86400
        return response

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                       "img-src 'self' data:")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return app


def _ref(source: Source) -> RunRef:
    """The run a request names: ``folder`` (a folder under the root; not with a database URL) and ``job`` (default:
    the folder's name, which is the name of the job a search records there)."""
    folder = None if source.db is not None else request.args.get("folder", "")
    job = request.args.get("job") or (folder or "")
    return RunRef(folder=folder, job=job)


def _ref_json(ref: RunRef) -> dict[str, Any]:
    return {"folder": ref.folder, "job": ref.job}


def _json(value: Any, status: int = 200) -> Response:
    """Strict JSON (NaN and infinities, which JSON lacks, become null; times and the like, text)."""
    text = json.dumps(_strict(value), default=str, allow_nan=False)
    return Response(text, status=status, mimetype="application/json")


class _QuietHandler(WSGIRequestHandler):
    """No line per request: the page polls every few seconds."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def make_dashboard_server(source: Source, host: str = "127.0.0.1", port: int = 0,
                          *, poll_ms: int = POLL_MS) -> BaseWSGIServer:
    """A threaded server of the dashboard bound to ``host:port`` (port 0: any free port; ``server.port`` says
    which); ``OSError`` if it cannot bind (the port is taken, say). Call ``serve_forever()``; ``shutdown()`` from
    another thread stops it. Bound to the loopback address, it answers only requests addressed to 127.0.0.1 or
    localhost."""
    trusted = list(LOOPBACK_NAMES) if host in LOOPBACK_NAMES else None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Bound here, not by Werkzeug, which prints and exits on a taken port instead of raising.
    with socket.create_server((host, port), family=family, backlog=128) as listening:
        return make_server(host, port, create_app(source, poll_ms=poll_ms, trusted_hosts=trusted), threaded=True,
                           request_handler=_QuietHandler, fd=listening.fileno())
