"""``autodisco dashboard``: serve the read-only dashboard of the runs under ``--root`` (or of ``--db``) locally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.cli._common import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(commands: argparse._SubParsersAction) -> None:
    dashboard = commands.add_parser(
        "dashboard", help="a local web page of the runs, live while jobs run (read-only)")
    dashboard.add_argument("--root", default="runs", help="folder holding the run folders (default runs)")
    dashboard.add_argument("--db", metavar="URL", help="show the jobs of this database instead of run folders")
    dashboard.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050; 0: any free one)")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to bind (default 127.0.0.1: this machine only)")
    dashboard.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.db is not None:
        import sqlalchemy

        from search.store import Store

        try:
            Store(args.db, create=False, read_only=True).close()  # a bad URL or database: one line, exit 2, now
        except sqlalchemy.exc.ArgumentError as error:  # e.g. an unknown dialect ("sqlit://")
            raise UsageError(f"--db {args.db!r} is not a usable database URL ({error}); use e.g. "
                             "sqlite:///runs/job/results.db or postgresql://user@host/db") from None
    elif not Path(args.root).is_dir():
        raise UsageError(f"no folder {args.root!r} to show runs from; give --root or start a search first")
    try:
        from search.dashboard import Source, make_dashboard_server
    except ImportError as error:
        raise UsageError(f"the dashboard needs {error.name or 'Flask'}: pip install -e '.[dashboard]'") from None

    try:
        server = make_dashboard_server(Source(args.root, args.db), args.host, args.port)
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); "
                         "give another --port or --host") from None
    where = args.db if args.db is not None else f"runs under {args.root}"
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"dashboard of {where} at http://{host}:{server.port}/ (read-only; Ctrl-C stops)", flush=True)
    if args.host not in LOOPBACK:
        print(f"note: bound to {args.host}, so other machines can reach it; the default 127.0.0.1 keeps it local",
              file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
