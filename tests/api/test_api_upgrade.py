"""An install made by the code of 2026-12-04 (tests/fixtures/data-v1) keeps working:
the server upgrades a copy of it at start, and the API finds and continues its work."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from api_support import API, cleanup, png_bytes, poll_job, start_server

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "data-v1"


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    data = tmp_path_factory.mktemp("upgrade") / "data"
    shutil.copytree(FIXTURE, data)
    server = start_server("upgrade", data)
    try:
        yield server
    finally:
        cleanup(server)


def test_the_old_data_folder_is_upgraded_and_used_through_the_api(upgraded):
    db = upgraded.data_dir / "qec.db"
    assert sqlite3.connect(db).execute("select version_num from alembic_version").fetchone()[0]
    c = upgraded.client(upgraded.client().post(f"{API}/token").json()["access_token"])
    convs = {conv["title"]: conv for conv in c.get(f"{API}/conversations").json()}
    assert set(convs) == {"A cat at night", "A lighthouse"}
    cat = convs["A cat at night"]["id"]
    tree = c.get(f"{API}/conversations/{cat}").json()
    assert tree["head"] == 2 and [n["kind"] for n in tree["nodes"]] == ["upload", "edit"]
    assert c.get(f"{API}/conversations/{cat}/nodes/2/image").status_code == 200
    # The old work continues: a move, an edit (a job), a new upload.
    assert c.post(f"{API}/conversations/{cat}/messages", json={"text": "/undo"}).status_code == 200
    r = c.post(f"{API}/conversations/{cat}/messages", json={"text": "add rain"})
    assert r.status_code == 202, r.text
    assert poll_job(c, r.json()["jobs"][0])["status"] == "succeeded"
    r = c.post(f"{API}/conversations/{cat}/messages", files=[("images", ("b.png", png_bytes(), "image/png"))])
    assert r.status_code == 200, r.text
    tree = c.get(f"{API}/conversations/{cat}").json()
    assert [n["number"] for n in tree["nodes"]] == [1, 2, 3, 4]
    assert tree["nodes"][2]["parent"] == 1  # the edit was made from #1, after the undo
    # The chat's old history is still there for the page.
    assert c.get(f"/project/thread/{cat}").json()["steps"][0]["output"] == "make it night"
