"""Database upgrades: Alembic from a fresh database, from one made before migrations
(the committed tests/fixtures/data-v1), with a backup before a pending migration, and a
database newer than the code refused."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from assistant import migrate, tables  # noqa: F401
from sessions import Store, db

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "data-v1"


def revision(path: Path) -> str:
    return sqlite3.connect(path).execute("select version_num from alembic_version").fetchone()[0]


def test_a_fresh_database_gets_exactly_the_models_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'qec.db'}"
    done = migrate.upgrade(url)
    assert done == {"from": None, "to": migrate.BASELINE, "backup": None, "stamped": False}
    engine = db.make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == []  # the migrations and the table models agree


def test_a_database_made_before_migrations_is_stamped_and_kept(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "data")
    url = f"sqlite:///{tmp_path / 'data' / 'qec.db'}"
    done = migrate.upgrade(url)
    assert done["stamped"] and done["to"] == migrate.BASELINE
    assert revision(tmp_path / "data" / "qec.db") == migrate.BASELINE
    store = Store.open(database_url=url, blob_dir=tmp_path / "data" / "blobs")
    try:
        convs = store.conversations(owner="local")
        assert sorted(c.title for c in convs) == ["A cat at night", "A lighthouse"]
        cat = next(c for c in convs if c.title == "A cat at night")
        assert store.head(cat.id).number == 2 and store.image(store.node(cat.id, 1)).size == (64, 48)
        assert [j.status for j in store.jobs(cat.id)] in (["succeeded", "failed"], ["failed", "succeeded"])
    finally:
        store.close()
    assert migrate.upgrade(url)["stamped"] is False  # the second start changes nothing


def test_a_pending_migration_runs_after_a_backup(tmp_path):
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0002_note.py").write_text(
        'revision = "0002"\ndown_revision = "0001"\nbranch_labels = None\ndepends_on = None\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n\n"
        "def upgrade():\n    with op.batch_alter_table('nodes') as b:\n"
        "        b.add_column(sa.Column('note', sa.Text(), nullable=True))\n\n\n"
        "def downgrade():\n    with op.batch_alter_table('nodes') as b:\n        b.drop_column('note')\n")
    shutil.copytree(FIXTURE, tmp_path / "data")
    path = tmp_path / "data" / "qec.db"
    migrate.upgrade(f"sqlite:///{path}")  # stamped at the baseline, as a real install would be
    done = migrate.upgrade(f"sqlite:///{path}", script_location=scripts)
    assert (done["from"], done["to"]) == ("0001", "0002")
    backup = Path(done["backup"])
    assert backup.exists() and backup.parent == path.parent
    columns = {r[1] for r in sqlite3.connect(path).execute("pragma table_info(nodes)")}
    old_columns = {r[1] for r in sqlite3.connect(backup).execute("pragma table_info(nodes)")}
    assert "note" in columns and "note" not in old_columns
    assert revision(backup) == "0001"
    assert sqlite3.connect(path).execute("select count(*) from nodes").fetchone()[0] == 3


def test_a_database_newer_than_the_code_is_refused(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    migrate.upgrade(f"sqlite:///{data / 'qec.db'}")
    with sqlite3.connect(data / "qec.db") as conn:
        conn.execute("update alembic_version set version_num = '0099'")
    with pytest.raises(migrate.DatabaseTooNew, match="newer version"):
        migrate.upgrade(f"sqlite:///{data / 'qec.db'}")
    env = dict(os.environ, QEC_DATA_DIR=str(data), QEC_BACKEND="tiny")
    env.pop("QEC_DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-m", "assistant", "serve", "--port", "1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "newer version of qwen-edit-chat" in out.stderr
