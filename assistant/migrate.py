"""Database upgrades: the app's tables move forward by Alembic migrations, never by hand.

Owns bringing a database to the code's schema when ``serve`` starts: a new database
gets every migration; one made before migrations existed (tables, no
``alembic_version``) is stamped as the baseline; pending migrations on SQLite run
after a backup copy of the file; a database newer than the code is refused, since
this code would misread it. Migrations live in ``assistant/migrations/versions``.
Knows nothing of chainlit.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from sessions import db

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"


class DatabaseTooNew(RuntimeError):
    """The database was upgraded by a newer version of the app."""


def alembic_config(script_location: Optional[Path] = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or MIGRATIONS))
    return cfg


def current_revision(engine) -> Optional[str]:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database_url: str, *, script_location: Optional[Path] = None) -> dict:
    """Bring the database at ``database_url`` to the code's schema; says what it did."""
    cfg = alembic_config(script_location)
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    engine = db.make_engine(database_url)
    try:
        current = current_revision(engine)
        tables = set(inspect(engine).get_table_names())
        done = {"from": current, "to": head, "backup": None, "stamped": False}
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise DatabaseTooNew(
                f"The database is at schema revision {current}, made by a newer version of "
                "qwen-edit-chat than this one. Run that version, or restore a backup.")
        if current is None and "conversations" in tables:
            _run(cfg, engine, lambda c: command.stamp(c, BASELINE))  # made before migrations
            done["stamped"], current = True, BASELINE
        if current != head:
            if current is not None:
                done["backup"] = _backup_sqlite(database_url, current)
            _run(cfg, engine, lambda c: command.upgrade(c, "head"))
        return done
    finally:
        engine.dispose()


def _run(cfg: Config, engine, action) -> None:
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        try:
            action(cfg)
        finally:
            cfg.attributes.pop("connection", None)


def _backup_sqlite(database_url: str, revision: str) -> Optional[str]:
    """A consistent copy of a SQLite file beside it, before its schema changes."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    source = Path(url.database)
    if not source.exists():
        return None
    target = source.with_name(f"{source.name}.before-{revision}-{time.strftime('%Y%m%d-%H%M%S')}")
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)  # the SQLite online backup: consistent even with WAL and readers
    return str(target)
