"""Two `serve` processes on one PostgreSQL and one blob folder, as README's Scale section
describes: jobs from both commit, one's start-up leaves the other's running jobs alone,
and a conversation started in one continues in the other.

Runs when `make test` could start a throwaway PostgreSQL (QEC_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api_support import API, cleanup, png_bytes, poll_job, start_server

URL = os.environ.get("QEC_TEST_POSTGRES_URL")
pytestmark = [pytest.mark.skipif(not URL, reason="no PostgreSQL here: `make test` starts one"),
              pytest.mark.timeout(400)]
SECRET = "two-processes-share-this-signing-secret-" + "x" * 24


def _fresh_database(name: str) -> str:
    """A database of its own on the test server, so other tests' schemas stay apart."""
    admin = create_engine(URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(URL).set(database=name).render_as_string(hide_password=False)


def _client(server):
    return server.client(server.client().post(f"{API}/token").json()["access_token"])


def test_two_servers_share_one_database_and_blob_folder(tmp_path):
    url = _fresh_database("qec_two_processes")
    env = dict(QEC_DATABASE_URL=url, QEC_BLOB_DIR=str(tmp_path / "blobs"), CHAINLIT_AUTH_SECRET=SECRET)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = start_server("a", tmp_path / "a" / "data", **env)
    b = None
    try:
        ca = _client(a)
        conv = ca.post(f"{API}/conversations", json={"title": "shared"}).json()["id"]
        r = ca.post(f"{API}/conversations/{conv}/messages", files=[("images", ("a.png", png_bytes(), "image/png"))])
        assert r.status_code == 200, r.text
        r = ca.post(f"{API}/conversations/{conv}/messages", json={"text": "add a red hat"})
        assert poll_job(ca, r.json()["jobs"][0])["status"] == "succeeded"
        # Keep A busy while B starts: B's start-up must not fail A's running jobs.
        busy = []
        for _ in range(3):
            r = ca.post(f"{API}/conversations/{conv}/messages", json={"text": "give me 6 variations"})
            assert r.status_code == 202, r.text
            busy += r.json()["jobs"]
        b = start_server("b", tmp_path / "b" / "data", **env)
        cb = _client(b)
        unfinished = [j for j in busy if ca.get(f"{API}/jobs/{j}").json()["status"] in ("queued", "running")]
        assert unfinished, "A finished before B started: the overlap this test needs did not happen"
        states = [poll_job(ca, job)["status"] for job in busy]
        assert states == ["succeeded"] * len(busy), states
        # The conversation A started goes on in B: B sees the tree and adds to it.
        tree = cb.get(f"{API}/conversations/{conv}").json()
        assert len(tree["nodes"]) == 2 + len(busy)
        r = cb.post(f"{API}/conversations/{conv}/messages", json={"text": "/branch 1 make it darker"})
        assert r.status_code == 202, r.text
        assert poll_job(cb, r.json()["jobs"][0])["status"] == "succeeded"
        # ... and A sees what B made, image included (one blob folder).
        tree = ca.get(f"{API}/conversations/{conv}").json()
        last = tree["nodes"][-1]["number"]
        assert last == 3 + len(busy) and tree["head"] == last
        image = ca.get(f"{API}/conversations/{conv}/nodes/{last}/image")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        # A second start of A (a restart while B works) leaves B's jobs alone too.
        r = cb.post(f"{API}/conversations/{conv}/messages", json={"text": "give me 4 variations"})
        jobs_b = r.json()["jobs"]
        a.stop()
        a = start_server("a-again", tmp_path / "a" / "data", **env)
        assert [poll_job(cb, j)["status"] for j in jobs_b] == ["succeeded"] * 4
    finally:
        cleanup(a)
        if b is not None:
            cleanup(b)
