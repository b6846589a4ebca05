"""A fresh store per test, run against each database the contract must hold on."""

from __future__ import annotations

import os

import pytest

from sessions import Store

BACKENDS = ["sqlite-memory", "sqlite-file", "postgres"]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param == "sqlite-memory":
        url = "sqlite://"
    elif request.param == "sqlite-file":
        url = f"sqlite:///{tmp_path}/history.db"
    else:
        if not os.environ.get("QEC_TEST_POSTGRES_URL"):
            pytest.skip("no PostgreSQL here: `make test` starts one via tests/support/start_postgres.sh")
        url = _fresh_postgres(os.environ["QEC_TEST_POSTGRES_URL"])
    s = Store.open(database_url=url, blob_dir=tmp_path / "blobs")
    yield s
    s.close()


def _fresh_postgres(url: str) -> str:
    """Empty the test database: every table, whoever made it (the chat's ones too)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url
