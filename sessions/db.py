"""Engines: SQLite in WAL mode with foreign keys on, or any SQLAlchemy URL.

Owns connection set-up and the write-transaction discipline. SQLite write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock
instead of failing half-way with "database is locked"; other databases use their
default transactions. Knows nothing of the tables' meaning.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

_immediate = threading.local()
_locks: "weakref.WeakKeyDictionary[Engine, threading.RLock]" = weakref.WeakKeyDictionary()


def make_engine(database_url: str) -> Engine:
    if not database_url.startswith("sqlite"):
        return create_engine(database_url, pool_pre_ping=True)
    in_memory = database_url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in database_url
    if not in_memory:
        path = database_url.split("///", 1)[-1].split("?", 1)[0]
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if in_memory:
        kwargs["poolclass"] = StaticPool  # one shared connection, or each thread sees its own db
    engine = create_engine(database_url, **kwargs)
    if in_memory:
        # That one connection cannot hold two transactions: sessions take turns.
        _locks[engine] = threading.RLock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if getattr(_immediate, "on", False) else "BEGIN")

    return engine


def create_tables(engine: Engine) -> None:
    from . import models  # noqa: F401  (registers the tables)

    SQLModel.metadata.create_all(engine)


@contextlib.contextmanager
def write_session(engine: Engine):
    """A session whose transaction takes the write lock up front (SQLite) and commits."""
    with _turn(engine):
        _immediate.on = True
        try:
            with Session(engine, expire_on_commit=False) as session:
                session.connection()  # begin now, while the flag is set
                _immediate.on = False
                yield session
                session.commit()
        finally:
            _immediate.on = False


@contextlib.contextmanager
def read_session(engine: Engine):
    with _turn(engine), Session(engine, expire_on_commit=False) as session:
        yield session


def _turn(engine: Engine):
    lock = _locks.get(engine)
    return lock if lock is not None else contextlib.nullcontext()
