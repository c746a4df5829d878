"""Run folders for the CLI tests, written directly with the Store API (no search is run).

The run "lion-hunt" holds eight candidates with real program texts from ``programs.library``:

    birth id  program          parents   mutation     evaluation               hash
    0     c0  adamw            -         initial      ok 1.0                   0a0a...
    1     c1  momentum         c0        delete       ok 0.8                   1b1b...
    2     c2  lion             c1        modify       ok 1.3                   5c5c11...
    3     c3  sgd              c2        insert       failed (nan loss)        7d7d...
    4     c4  lion + dead code c2        insert       cached 1.3               5c5c11... (= c2)
    5     c5  signsgd          c2, c1    crossover    ok 1.1                   5c5c22...
    6     c6  sgd (written *1) c3        modify       cached, failed (= c3)    7d7d...
    7     c7  rmsprop          c5        modify       pending                  8e8e...

Results finish in birth order (c7 never does): 5 evaluations run (4 ok, 1 failed), 2 cache hits, 1 pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from programs import library, parse
from search.store import Store

NAME = "lion-hunt"
CONFIG = {"tasks": ["mnist1d-mlp"], "population": 8, "tournament": 2, "strategy": "evolution", "seed": 3}
LION_WITH_DEAD_CODE = parse("""\
def train(w, g, m, v, lr):
    c = interp(g, m, 0.9)
    d = cosh(g)
    update = sign(c) * lr
    m = interp(g, m, 0.99)
    return update, m, v
""").to_text()
SGD_TIMES_ONE = parse("""\
def train(w, g, m, v, lr):
    x = g * 1.0
    update = x * lr
    return update, m, v
""").to_text()


def _hash(stem: str) -> str:
    return (stem * 16)[:32]


# (text, hash, parent births, mutation, status, fitness, error)
CANDIDATES = [
    (library.get("adamw").to_text(), _hash("0a"), (), "initial", "ok", 1.0, None),
    (library.get("momentum").to_text(), _hash("1b"), (0,), "delete statement 3", "ok", 0.8, None),
    (library.get("lion").to_text(), "5c5c11" + _hash("11")[6:], (1,), "modify argument of statement 1", "ok", 1.3,
     None),
    (library.get("sgd").to_text(), _hash("7d"), (2,), "insert statement 1", "failed", None, "nan loss at step 12"),
    (LION_WITH_DEAD_CODE, "5c5c11" + _hash("11")[6:], (2,), "insert statement 2", "cached", 1.3, None),
    (library.get("signsgd").to_text(), "5c5c22" + _hash("22")[6:], (2, 1), "crossover", "ok", 1.1, None),
    (SGD_TIMES_ONE, _hash("7d"), (3,), "modify argument of statement 1", "cached", None,
     "an equivalent candidate failed"),
    (library.get("rmsprop").to_text(), _hash("8e"), (5,), "modify argument of statement 2", "pending", None, None),
]


@dataclass(frozen=True)
class BuiltRun:
    """A run folder and its candidates' ids in birth order."""

    path: Path
    ids: tuple[int, ...]

    @property
    def db(self) -> Path:
        return self.path / "results.db"


def make_run(root: Path, name: str = NAME) -> BuiltRun:
    """The run above in ``root/name``."""
    with Store.for_run(root / name) as store:
        job = store.create_job(name, kind="optimizer", config=CONFIG, seed=3)
        ids: list[int] = []
        for birth, (text, digest, parents, mutation, status, fitness, error) in enumerate(CANDIDATES):
            cid = store.add_candidate(job.id, kind="optimizer", text=text, hash=digest,
                                      parent_ids=[ids[p] for p in parents], mutation=mutation, birth=birth)
            ids.append(cid)
            ev = store.add_evaluation(job.id, cid, key=f"c{cid}", task="mnist1d-mlp", seed=3)
            if status != "pending":
                store.finish_evaluation(ev, status=status, fitness=fitness, error=error,
                                        metrics={"scores": {"mnist1d-mlp": fitness}}, attempts=1)
        store.set_job_status(job.id, "finished")
    return BuiltRun(root / name, tuple(ids))


def make_architecture_run(root: Path, name: str = "nas-run") -> BuiltRun:
    """A finished architecture search with one evaluated genotype."""
    with Store.for_run(root / name) as store:
        job = store.create_job(name, kind="architecture", config={"space": "darts"}, seed=0)
        cid = store.add_candidate(job.id, kind="architecture", text="Genotype(normal=[('skip_connect', 0)])",
                                  hash=_hash("ab"), mutation="initial")
        ev = store.add_evaluation(job.id, cid, key=f"c{cid}", task="cifar10-proxy", seed=0)
        store.finish_evaluation(ev, status="ok", fitness=0.9)
    return BuiltRun(root / name, (cid,))


def make_empty_run(root: Path, name: str = "fresh") -> BuiltRun:
    """A run whose job has not finished any evaluation yet."""
    with Store.for_run(root / name) as store:
        store.create_job(name, kind="optimizer", config={}, seed=0)
    return BuiltRun(root / name, ())


def make_garbage(root: Path, name: str = "garbage") -> Path:
    """A run folder whose results.db is not a database; returns the file."""
    (root / name).mkdir(parents=True)
    path = root / name / "results.db"
    path.write_bytes(b"this is not a database\x00\xff" * 100)
    return path


def make_foreign(root: Path, name: str = "foreign") -> Path:
    """A run folder whose results.db is someone else's SQLite database; returns the file."""
    import sqlite3

    (root / name).mkdir(parents=True)
    path = root / name / "results.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    connection.execute("INSERT INTO invoices (total) VALUES (12.5)")
    connection.commit()
    connection.close()
    return path


@pytest.fixture
def run(tmp_path: Path) -> BuiltRun:
    """A run folder holding the run ``make_run`` builds (import it into a test module to use it)."""
    return make_run(tmp_path / "runs")


def ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """``autodisco argv``'s stdout; the command must succeed (its stderr is the failure message)."""
    from search.cli import main

    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out
