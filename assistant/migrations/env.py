"""Alembic's environment for the app's database: every table of sessions and assistant.

Run through ``assistant.migrate`` (``serve`` calls it at start), which hands over a
connection; ``alembic`` on the command line works too with ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from assistant import tables  # noqa: F401  (registers the chat's tables)
from sessions import models  # noqa: F401  (registers the history's tables)

target_metadata = SQLModel.metadata


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True,  # SQLite alters tables by copying them
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        run(conn)
