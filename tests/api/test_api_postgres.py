"""The same app on PostgreSQL: a whole conversation through the API, then a restart.

Runs when `make test` could start a throwaway PostgreSQL (QEC_TEST_POSTGRES_URL);
otherwise it is reported as skipped.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

from api_support import API, cleanup, png_bytes, poll_job, start_server

URL = os.environ.get("QEC_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="no PostgreSQL here: `make test` starts one")


def _fresh_database() -> str:
    engine = create_engine(URL)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return URL


def test_a_conversation_on_postgres_survives_a_restart(tmp_path):
    url = _fresh_database()
    data = tmp_path / "data"
    server = start_server("pg", data, QEC_DATABASE_URL=url)
    try:
        c = server.client(server.client().post(f"{API}/token").json()["access_token"])
        conv = c.post(f"{API}/conversations", json={"title": "on postgres"}).json()["id"]
        r = c.post(f"{API}/conversations/{conv}/messages",
                   data={"text": "make it darker"}, files={"images": ("a.png", png_bytes(), "image/png")})
        assert r.status_code == 202, r.text
        assert poll_job(c, r.json()["jobs"][0])["status"] == "succeeded"
        server.stop()
        server = start_server("pg-again", data, QEC_DATABASE_URL=url)
        c = server.client(server.client().post(f"{API}/token").json()["access_token"])
        tree = c.get(f"{API}/conversations/{conv}").json()
        assert tree["head"] == 2 and [n["number"] for n in tree["nodes"]] == [1, 2]
        image = c.get(f"{API}/conversations/{conv}/nodes/2/image")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    finally:
        cleanup(server)
