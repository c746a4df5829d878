"""Shared test settings: one torch thread (CI has 2 cores), deterministic seeds; the results-store fixtures.

``postgres_url`` is the private PostgreSQL server of ``.ci/postgres.sh`` (``AUTODISCO_TEST_POSTGRES_URL``): without
it the PostgreSQL tests skip, except in CI (``CI=true``), where they fail. ``fresh_postgres`` is a URL whose tables
live in a schema of their own, dropped after the test. ``store`` runs a test on every backend: a SQLite file,
in-memory SQLite and PostgreSQL; ``shared_url`` on those several processes can share (SQLite file, PostgreSQL).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

POSTGRES_ENV = "AUTODISCO_TEST_POSTGRES_URL"
STORE_BACKENDS = ["sqlite-file", "sqlite-memory", "postgresql"]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail(f"{POSTGRES_ENV} is not set in CI: .ci/run starts the server with .ci/postgres.sh")
    pytest.skip(f"set {POSTGRES_ENV} (e.g. from '.ci/postgres.sh start') to run the PostgreSQL tests")


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """A URL of the test server whose tables go to a new, empty schema (its ``search_path``), dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty results database on ``backend`` (one of ``STORE_BACKENDS``)."""
    if backend == "sqlite-file":
        (tmp_path / "run").mkdir(exist_ok=True)
        return f"sqlite:///{tmp_path / 'run' / 'results.db'}"
    if backend == "sqlite-memory":
        return "sqlite://"
    return str(request.getfixturevalue("fresh_postgres"))


@pytest.fixture(params=["sqlite-file", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty results database that several processes can share (a SQLite file, PostgreSQL)."""
    return store_url(request.param, tmp_path, request)


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    from search.store import Store

    opened = Store(store_url(request.param, tmp_path, request))
    yield opened
    opened.close()
