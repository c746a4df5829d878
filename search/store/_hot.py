"""The driver's hot writes: SQL rendered once per dialect and row count, run on the DBAPI cursor of the store's
SQLAlchemy connection, inside its transaction.

A search driver records a unit (the results that arrived together, the candidates asked, the cache entries, the
checkpoint) every few milliseconds. Through SQLAlchemy Core each statement costs tens of microseconds of Python
(cache key, coercions, parameter construction, execution context) before the database sees it; the same SQL sent
on the DBAPI cursor costs a few. So the few statements of a unit are plain SQL text here, written once in the
portable subset SQLite (3.35+) and PostgreSQL share, with ``:name`` parameters rendered in the DBAPI's own
paramstyle. Values go through the column types' own bind processors (JSON text, UTC times, booleans), so a row
written here is byte for byte what Core would have written, and reads stay with Core.

Everything else about a statement stays as SQLAlchemy does it: it runs in the connection's transaction (rolled back
with it), its ``before_cursor_execute``/``after_cursor_execute`` events fire (statement counts, e.g. in
``bench/bench_driver.py`` and the tests, see these statements), and a DBAPI error is raised as SQLAlchemy's
``DBAPIError`` subclass, which the store turns into its one-line errors.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Any, Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa

from search.store._schema import checkpoints, evaluations

_NAME = re.compile(r"(?<![:\w]):(\w+)")  # ":name", not PostgreSQL's "::type" casts
MAX_PARAMETERS = 900  # bound parameters per statement: below SQLite's oldest limit (999)


class Sql:
    """A statement in the DBAPI's paramstyle; ``names``: the order of its parameters (positional styles), else None."""

    __slots__ = ("text", "names", "_get")

    def __init__(self, text: str, names: tuple[str, ...] | None) -> None:
        self.text, self.names = text, names
        # positional: the values in parameter order, taken by one C call (itemgetter of one name gives no tuple)
        self._get = None if not names else itemgetter(*names) if len(names) > 1 else lambda v: (v[names[0]],)

    def bind(self, values: Mapping[str, Any]) -> Any:
        if self.names is None:
            return values
        return self._get(values) if self._get is not None else ()


def render(sql: str, paramstyle: str) -> Sql:
    """``sql`` with ``:name`` parameters in ``paramstyle`` (PEP 249: qmark, numeric, named, format, pyformat)."""
    if paramstyle == "named":
        return Sql(sql, None)
    if paramstyle == "pyformat":
        return Sql(_NAME.sub(lambda m: f"%({m[1]})s", sql.replace("%", "%%")), None)
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        names.append(match[1])
        if paramstyle == "qmark":
            return "?"
        return f":{len(names)}" if paramstyle == "numeric" else "%s"

    if paramstyle not in ("qmark", "numeric", "format"):
        raise ValueError(f"unknown DBAPI paramstyle {paramstyle!r}")
    text = _NAME.sub(positional, sql if paramstyle != "format" else sql.replace("%", "%%"))
    return Sql(text, tuple(names))


def execute(conn: sa.Connection, sql: Sql, values: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
            many: bool = False) -> Any:
    """Run ``sql`` with ``values`` (``many``: one set per row, as one executemany; on psycopg2, whose executemany is a
    round trip per row, as one batch) on the DBAPI cursor of ``conn``, in its transaction; the cursor (rows of a
    RETURNING or SELECT are read from it)."""
    parameters = [sql.bind(v) for v in values] if many else sql.bind(values)  # type: ignore[union-attr,arg-type]
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    before, after = conn.dispatch.before_cursor_execute, conn.dispatch.after_cursor_execute
    if before:
        before(conn, cursor, sql.text, parameters, None, many)
    try:
        if many and conn.dialect.driver == "psycopg2":
            # psycopg2's executemany sends each row on its own; execute_batch sends them joined, in one round trip
            from psycopg2.extras import execute_batch

            execute_batch(cursor, sql.text, parameters, page_size=max(1, len(parameters)))
        elif many:
            cursor.executemany(sql.text, parameters)
        else:
            cursor.execute(sql.text, parameters)
    except dbapi.Error as error:
        cursor.close()
        raise sa.exc.DBAPIError.instance(sql.text, parameters, error, dbapi.Error, dialect=conn.dialect) from error
    if after:
        after(conn, cursor, sql.text, parameters, None, many)
    return cursor


class Binder:
    """Turns Python values into what the DBAPI takes for the columns of one table, as Core's bind processing does
    (the column types' own processors for this dialect)."""

    def __init__(self, table: sa.Table, dialect: sa.Dialect) -> None:
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for column in table.columns:
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[column.name] = processor

    def row(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` processed."""
        return self.rows([values])[0]

    def rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each of ``rows`` processed (all with the same columns). A value all rows share (the same object: the
        timestamp of a call) is processed once."""
        processors = self.processors
        first = rows[0]
        shared: dict[str, Any] = {}
        own: list[tuple[str, Callable[[Any], Any]]] = []
        for name in first:
            processor = processors.get(name)
            if processor is None:
                continue
            value = first[name]
            if all(row[name] is value for row in rows):
                shared[name] = None if value is None else processor(value)
            else:
                own.append((name, processor))
        out = []
        for row in rows:
            processed = {**row, **shared}
            for name, processor in own:
                value = row[name]
                if value is not None:
                    processed[name] = processor(value)
            out.append(processed)
        return out

    def values(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The parameters of a multi-row ``VALUES`` of ``rows``: row ``i``'s processed values keyed ``name_i``."""
        return {f"{name}_{i}": value for i, row in enumerate(self.rows(rows)) for name, value in row.items()}


class HotStatements:
    """The hot statements of one dialect, rendered once each (per row count for multi-row ones)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.paramstyle = dialect.paramstyle
        self.has_returning = bool(dialect.insert_returning)  # SQLite 3.35+, PostgreSQL: ids of a multi-row insert
        self.has_upsert = dialect.name in ("sqlite", "postgresql")  # INSERT ... ON CONFLICT ... DO UPDATE
        self.for_update = " FOR UPDATE" if dialect.name == "postgresql" else ""  # SQLite: BEGIN IMMEDIATE locks
        self._binders: dict[str, Binder] = {}
        self._rendered: dict[tuple[Any, ...], Sql] = {}

    def binder(self, table: sa.Table) -> Binder:
        binder = self._binders.get(table.name)
        if binder is None:
            binder = self._binders[table.name] = Binder(table, self.dialect)
        return binder

    def sql(self, key: tuple[Any, ...], build: Callable[[], str]) -> Sql:
        """The statement ``key`` (built by ``build`` the first time), rendered for this dialect."""
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = self._rendered[key] = render(build(), self.paramstyle)
        return rendered

    def insert_values(self, table: sa.Table, columns: Sequence[str], rows: int, returning: Sequence[str]) -> Sql:
        """``INSERT INTO table (columns) VALUES (...), ... [RETURNING ...]`` for ``rows`` rows; the parameters of row
        ``i`` are the column names suffixed ``_i``."""
        def build() -> str:
            values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in columns) + ")" for i in range(rows))
            tail = f" RETURNING {', '.join(returning)}" if returning else ""
            return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {values}{tail}"

        return self.sql(("insert", table.name, tuple(columns), rows, tuple(returning)), build)

    def rows_per_statement(self, columns: int) -> int:
        return max(1, MAX_PARAMETERS // max(columns, 1))

    # -- the statements of a unit -----------------------------------------------------------------------------------

    def insert_ids(self, conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]],
                   key: str) -> list[int]:
        """Insert ``rows`` (all with the same columns; ``key`` unique among them and in the table's job) and return
        their ids in row order: one multi-row ``INSERT ... RETURNING id, key`` per ``MAX_PARAMETERS`` values, the ids
        matched to the rows by ``key`` (neither backend promises the order of RETURNING rows)."""
        columns = list(rows[0])
        binder = self.binder(table)
        found: dict[Any, int] = {}
        for chunk in chunks(rows, self.rows_per_statement(len(columns))):
            sql = self.insert_values(table, columns, len(chunk), ("id", key))
            cursor = execute(conn, sql, binder.values(chunk))
            found.update((k, int(i)) for i, k in cursor.fetchall())
            cursor.close()
        return [found[row[key]] for row in rows]

    def statuses(self, conn: sa.Connection, job_id: int, ids: Sequence[int]) -> dict[int, str]:
        """``{id: status}`` of those of the evaluations ``ids`` (distinct) that belong to the job.

        Selected by id alone, the job checked here: SQLite (no ANALYZE statistics) answers ``job_id = ? AND id IN
        (...)`` from the (job_id, status) index, reading every evaluation of the job; by id it reads these rows."""
        found: dict[int, str] = {}
        for chunk in chunks(ids, MAX_PARAMETERS):
            sql = self.sql(("statuses", len(chunk)), lambda: (
                "SELECT id, job_id, status FROM evaluations WHERE id IN ("
                + ", ".join(f":id_{i}" for i in range(len(chunk))) + ")"))
            cursor = execute(conn, sql, {f"id_{i}": evaluation_id for i, evaluation_id in enumerate(chunk)})
            found.update((int(i), status) for i, job, status in cursor.fetchall() if job == job_id)
            cursor.close()
        return found

    def next_order(self, conn: sa.Connection, job_id: int) -> int:
        """The job's next free ``finished_order`` (the index on (job_id, finished_order) answers it in one step)."""
        sql = self.sql(("next_order",), lambda: (
            "SELECT finished_order FROM evaluations WHERE job_id = :job_id AND finished_order IS NOT NULL "
            "ORDER BY finished_order DESC LIMIT 1"))
        return 1 + _scalar(execute(conn, sql, {"job_id": job_id}), 0)

    def finish(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record finished evaluations: each row ``id`` and the columns of a result (one executemany)."""
        columns = [c for c in rows[0] if c != "id"]
        sql = self.sql(("finish", tuple(columns)), lambda: (
            f"UPDATE evaluations SET {', '.join(f'{c} = :{c}' for c in columns)} WHERE id = :id"))
        binder = self.binder(evaluations)
        execute(conn, sql, binder.rows(rows), many=True).close()

    def upsert(self, conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
               updated: Sequence[str]) -> None:
        """Insert ``rows``, replacing the ``updated`` columns of rows whose ``keys`` exist already (one multi-row
        ``INSERT ... ON CONFLICT (keys) DO UPDATE`` per ``MAX_PARAMETERS`` values; keys distinct among ``rows``)."""
        columns = list(rows[0])
        binder = self.binder(table)
        for chunk in chunks(rows, self.rows_per_statement(len(columns))):
            def build(n: int = len(chunk)) -> str:
                values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in columns) + ")" for i in range(n))
                return (f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {values} ON CONFLICT "
                        f"({', '.join(keys)}) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in updated)}")

            sql = self.sql(("upsert", table.name, tuple(columns), len(chunk)), build)
            execute(conn, sql, binder.values(chunk)).close()

    def checkpoint_slots(self, conn: sa.Connection, job_id: int, owner: str | None) -> tuple[str | None, int, int, int]:
        """``(lease owner, newest seq, oldest seq, count)`` of the job's checkpoints (0, 0, 0: none), in one
        statement. With ``owner`` (this driver holds the lease) the lease row is read ``FOR UPDATE`` too: the fence;
        its owner is None if the row is gone."""
        stats = ("(SELECT max(seq) FROM checkpoints WHERE job_id = :job_id), "
                 "(SELECT min(seq) FROM checkpoints WHERE job_id = :job_id), "
                 "(SELECT count(*) FROM checkpoints WHERE job_id = :job_id)")
        if owner is None:
            sql = self.sql(("slots",), lambda: f"SELECT NULL, {stats}")
            row = execute_one(conn, sql, {"job_id": job_id})
        else:
            sql = self.sql(("fenced_slots",), lambda: (
                f"SELECT owner, {stats} FROM leases WHERE job_id = :job_id{self.for_update}"))
            row = execute_one(conn, sql, {"job_id": job_id})
            if row is None:
                return None, 0, 0, 0
        return row[0], int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)

    def write_checkpoint(self, conn: sa.Connection, job_id: int, seq: int, state: Any, stamp: Any, *,
                         replace: int | None, drop_upto: int) -> None:
        """Write checkpoint ``seq``: in place of checkpoint ``replace`` (the oldest of a full set: one statement,
        and the database reuses its pages), else as a new row, dropping those up to ``drop_upto``."""
        binder = self.binder(checkpoints)
        values = binder.row({"job_id": job_id, "seq": seq, "state": state, "created_at": stamp})
        if replace is not None:
            sql = self.sql(("replace_checkpoint",), lambda: (
                "UPDATE checkpoints SET seq = :seq, state = :state, created_at = :created_at "
                "WHERE job_id = :job_id AND seq = :oldest"))
            cursor = execute(conn, sql, {**values, "oldest": replace})
            done = cursor.rowcount == 1
            cursor.close()
            if done:
                return
        sql = self.sql(("insert_checkpoint",), lambda: (
            "INSERT INTO checkpoints (job_id, seq, state, created_at) VALUES (:job_id, :seq, :state, :created_at)"))
        execute(conn, sql, values).close()
        sql = self.sql(("drop_checkpoints",), lambda: "DELETE FROM checkpoints WHERE job_id = :job_id AND seq <= :upto")
        execute(conn, sql, {"job_id": job_id, "upto": drop_upto}).close()


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def execute_one(conn: sa.Connection, sql: Sql, values: Mapping[str, Any]) -> Any:
    """The first row of ``sql`` (None if none)."""
    cursor = execute(conn, sql, values)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def _scalar(cursor: Any, default: Any) -> Any:
    try:
        row = cursor.fetchone()
    finally:
        cursor.close()
    return default if row is None or row[0] is None else row[0]
