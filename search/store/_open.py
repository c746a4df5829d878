"""Opening a results database: engine set-up (SQLite pragmas), detection of foreign, damaged, newer or older
databases, migration, creation.

Every check runs before anything is written: a file that is not a database, a database that belongs to something
else, holds SQL objects the schema does not define (a trigger would act on our writes), or was written by a newer
schema raises ``StoreError`` and is left byte-for-byte as it was. A read-only open (``read_only=True``) writes
nothing at all: no WAL switch, no migration, no table; it works on read-only media.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from search.store._records import DamagedError, StoreError
from search.store._schema import (
    CREATED_BY, LEASES_SINCE, LOGBOOK_SINCE, OPTUNA_TABLES, SCHEMA_VERSION, TABLE_NAMES, leases, logbook, meta,
    metadata, tables_of,
)

SQLITE_HEADER = b"SQLite format 3\x00"
WAL_AUTOCHECKPOINT_PAGES = 256  # checkpoint the WAL into the database every ~1 MB of changes (default: ~4 MB)
WAL_SIZE_LIMIT = 1 << 20  # and truncate the WAL file back to 1 MB after each checkpoint, so it stays bounded


@dataclass(frozen=True)
class Opened:
    """An engine on a checked database, and what the checks found."""

    engine: sa.Engine
    version: int

    @property
    def has_leases(self) -> bool:
        return self.version >= LEASES_SINCE


def describe(url: sa.URL) -> str:
    """Where the database is, for messages (a file path for SQLite, the URL without password otherwise)."""
    if is_sqlite(url):
        return url.database if not is_memory(url) else "in-memory SQLite"
    return url.render_as_string(hide_password=True)


def is_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite"


def is_memory(url: sa.URL) -> bool:
    return is_sqlite(url) and (url.database in (None, "", ":memory:") or "mode=memory" in str(url))


def open_engine(url: sa.URL, *, create: bool, busy_timeout_s: float, read_only: bool = False) -> Opened:
    """An engine on a checked (with ``create``, initialised; unless ``read_only``, migrated) results database."""
    create = create and not read_only
    if is_sqlite(url) and not is_memory(url):
        _check_sqlite_file(Path(url.database or ""), create=create)
    engine = _make_engine(url, busy_timeout_s, read_only=read_only)
    try:
        with engine.begin() as conn:
            version = _inspect(conn, describe(url), read_only=read_only)
            if version == 0 and not create:
                raise StoreError(f"{describe(url)}: no autodisco results database there; run a search job first")
            if version == 0:
                metadata.create_all(conn)
                conn.execute(sa.insert(meta), [
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    {"key": "created_by", "value": CREATED_BY},
                ])
                version = SCHEMA_VERSION
            elif version < SCHEMA_VERSION and not read_only:
                _migrate(conn, version)
                version = SCHEMA_VERSION
        if is_sqlite(url) and not is_memory(url) and not read_only:
            _enable_wal(engine)
    except sa.exc.DBAPIError as error:
        engine.dispose()
        first = first_line(error)
        fix = "move the file away or choose another run folder" if is_sqlite(url) else "check the URL and the server"
        if "locked" in first or "busy" in first:
            fix = "another process holds its write lock (a VACUUM, a sqlite3 shell?); try again once it is done"
        raise StoreError(f"{describe(url)}: cannot be opened as a results database ({first}); {fix}") from None
    except StoreError:
        engine.dispose()
        raise
    return Opened(engine=engine, version=version)


def first_line(error: BaseException) -> str:
    """The first line of a database error's own message (without SQLAlchemy's SQL and parameters)."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error) or type(error).__name__
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _check_sqlite_file(path: Path, *, create: bool) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        if not create:
            raise StoreError(f"{path}: no such database file; check the run folder or run a search job first") from None
        if not path.parent.is_dir():
            raise StoreError(f"{path.parent}: no such folder; create it first") from None
        return
    except OSError as error:
        raise StoreError(f"{path}: cannot be read ({error.strerror or error}); give the path of a results.db") from None
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path}: is a folder, not a database file; give the path of results.db")
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block for ever, a device reads garbage
        raise StoreError(f"{path}: is not a regular file (a pipe, device or socket); give the path of a results.db")
    if str(path.resolve()).startswith(("/proc/", "/sys/", "/dev/")):
        raise StoreError(f"{path}: is a system file, not a database; give the path of a results.db")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise StoreError(f"{path}: cannot be read ({error.strerror or error}); give the path of a results.db") from None
    if header and header != SQLITE_HEADER:
        raise StoreError(f"{path}: not a SQLite database (corrupt or another kind of file); move it away or choose "
                         "another run folder")
    if not header and not create:
        raise StoreError(f"{path}: an empty file, not a results database; run a search job first")


def _make_engine(url: sa.URL, busy_timeout_s: float, *, read_only: bool) -> sa.Engine:
    if not is_sqlite(url):
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.drivername == "postgresql":  # no driver named: the one installed ([postgres] installs psycopg2)
            url = url.set(drivername=_postgres_driver())
        if read_only and url.get_backend_name() == "postgresql":
            kwargs["execution_options"] = {"postgresql_readonly": True}
        try:
            return sa.create_engine(url, **kwargs)
        except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError):
            raise StoreError(f"{describe(url)}: unknown kind of database {url.drivername!r}; use sqlite:///PATH or "
                             "postgresql://USER@HOST/DB") from None
        except ImportError as error:
            raise StoreError(f"{describe(url)}: the database driver is not installed ({error}); install it with "
                             "pip install -e '.[postgres]' (psycopg2-binary, for postgresql://)") from None
    memory = is_memory(url)
    kwargs = {"connect_args": {"check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared connection: otherwise each connection is a new empty database
    elif read_only:
        path = os.path.abspath(url.database or "")
        kwargs["creator"] = lambda: _connect_read_only(path)
    engine = sa.create_engine(url, **kwargs)
    _install_sqlite_hooks(engine, busy_timeout_ms=int(busy_timeout_s * 1000), read_only=read_only)
    return engine


def _postgres_driver() -> str:
    """``postgresql+psycopg2`` where psycopg2 is installed (SQLAlchemy 2.1 would pick psycopg 3 for a bare
    ``postgresql://``), else ``postgresql`` (SQLAlchemy's default)."""
    import importlib.util

    return "postgresql+psycopg2" if importlib.util.find_spec("psycopg2") is not None else "postgresql"


def _connect_read_only(path: str) -> sqlite3.Connection:
    """SQLite's read-only mode; on read-only media (no -shm file can be made beside a WAL database) the file is
    opened as immutable — nobody can be writing it there."""
    quoted = urllib.parse.quote(path)
    conn = sqlite3.connect(f"file:{quoted}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as error:
        conn.close()
        # Only where the file cannot be opened for shared reading at all: immutable reads ignore a live writer's WAL
        if not any(mark in str(error).lower() for mark in ("unable to open", "readonly", "read-only")):
            raise
        return sqlite3.connect(f"file:{quoted}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def _install_sqlite_hooks(engine: sa.Engine, *, busy_timeout_ms: int, read_only: bool) -> None:
    """Pragmas on every connection, and explicit BEGIN so that transactions are real (SQLAlchemy's pysqlite recipe)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            cursor.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across process crashes, fast commits
            cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            cursor.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front, waiting up to busy_timeout for it. A deferred BEGIN would fail at
        # once ("database is locked") when its first write follows a read and another process (an Optuna worker of
        # `autodisco validate`) committed in between. A read-only store never writes: a plain BEGIN takes no lock.
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _enable_wal(engine: sa.Engine) -> None:
    """WAL lets readers (CLI, plain SQL) read while the driver writes. The mode is stored in the file itself."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()
    finally:
        raw.close()


def checkpoint_wal(engine: sa.Engine) -> None:
    """Copy the WAL into the database file and truncate it (best effort: readers may hold it; it is retried later)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    except sqlite3.Error:
        pass
    finally:
        raw.close()


def _inspect(conn: sa.Connection, where: str, *, read_only: bool) -> int:
    """The schema version of an autodisco database (0: empty, no tables of ours yet); ``StoreError`` for anything
    else. Unless ``read_only``, SQL objects the schema does not define are refused too."""
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names())
    if "meta" not in names:
        foreign = sorted(names - OPTUNA_TABLES)
        if foreign:
            raise StoreError(f"{where}: not an autodisco results database (tables {', '.join(foreign[:5])} and no "
                             "'meta' table); choose another database or run folder")
        if not read_only:
            _refuse_foreign_objects(conn, inspector, names, where)
        return 0
    try:
        rows = dict(conn.execute(sa.select(meta.c.key, meta.c.value)).all())
    except sa.exc.DBAPIError:
        raise StoreError(f"{where}: its 'meta' table is not autodisco's; choose another database or run folder") from None
    if rows.get("created_by") != CREATED_BY:
        raise StoreError(f"{where}: not an autodisco results database (meta.created_by is "
                         f"{rows.get('created_by')!r}); choose another database or run folder")
    version = _version(rows.get("schema_version"), where)
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where}: written by a newer autodisco (schema {version} > {SCHEMA_VERSION}); "
                         "upgrade autodisco to read it")
    if version < 1:
        raise StoreError(f"{where}: meta.schema_version is {version}, which no autodisco wrote; the database is "
                         "damaged")
    expected = tables_of(version)
    missing = sorted(expected - names)
    if missing:
        raise DamagedError(f"{where}: damaged results database (missing tables {', '.join(missing)}); restore it "
                           "from a copy or start a new run folder")
    _check_columns(inspector, expected, where)
    if not read_only:
        _refuse_foreign_objects(conn, inspector, names, where)
    return version


def _check_columns(inspector: Any, tables: frozenset[str], where: str) -> None:
    for name in sorted(tables):
        present = {column["name"] for column in inspector.get_columns(name)}
        missing = [c.name for c in metadata.tables[name].columns if c.name not in present]
        if missing:
            raise DamagedError(f"{where}: damaged results database (table {name} has no column "
                               f"{', '.join(missing)}); restore it from a copy or start a new run folder")


def _refuse_foreign_objects(conn: sa.Connection, inspector: Any, tables: set[str], where: str) -> None:
    """Triggers, rules and views act on or stand in for our tables; tables of others have no business here. A
    database from elsewhere that holds any is refused before anything is written."""
    found = [f"table {t}" for t in sorted(tables - TABLE_NAMES - OPTUNA_TABLES) if not t.startswith("sqlite_")]
    found += [f"view {v}" for v in sorted(inspector.get_view_names())]
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        found += [f"trigger {name} (on {table})" for name, table in rows]
    elif conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND n.nspname = current_schema() "
            "ORDER BY 1")
        found += [f"trigger {name} (on {table})" for name, table in rows]
        rules = conn.exec_driver_sql("SELECT rulename, tablename FROM pg_rules WHERE schemaname = current_schema() "
                                     "ORDER BY 1")
        found += [f"rule {name} (on {table})" for name, table in rules]
        found += [f"materialized view {v}" for v in sorted(inspector.get_materialized_view_names())]
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise StoreError(f"{where}: holds SQL objects that autodisco's schema does not define ({shown}); they could "
                         "act on its writes, so nothing was written — drop them (or read the run with read-only "
                         "commands)")


def _migrate(conn: sa.Connection, version: int) -> None:
    """Bring an older schema up to ``SCHEMA_VERSION`` (inside the opening transaction: all or nothing)."""
    if version < LEASES_SINCE:
        leases.create(conn)
    if version < LOGBOOK_SINCE:
        logbook.create(conn, checkfirst=True)
    conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def _version(text: str | None, where: str) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise StoreError(f"{where}: meta.schema_version is {text!r}, not a number; the database is damaged") from None
