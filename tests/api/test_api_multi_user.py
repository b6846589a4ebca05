"""The HTTP API with two users (QEC_MODE=multi): sign-in, and nobody sees anyone else's.

Someone else's conversation, image, export and job answer exactly as an id that does
not exist does; the chat's own image route answers the same.
"""

from __future__ import annotations

import pytest

from api_support import API, MULTI_USERS, png_bytes, poll_job

MISSING = "f" * 32


def sign_in(server, name: str, password: str):
    c = server.client()
    return c, c.post("/login", data={"username": name, "password": password})


@pytest.fixture(scope="module")
def tokens(multi_server) -> dict:
    out = {}
    for name, password in MULTI_USERS.items():
        _, r = sign_in(multi_server, name, password)
        assert r.status_code == 200, r.text
        out[name] = r.cookies["access_token"]
    return out


@pytest.fixture(scope="module")
def alice(multi_server, tokens):
    return multi_server.client(tokens["alice"])


@pytest.fixture(scope="module")
def bob(multi_server, tokens):
    return multi_server.client(tokens["bob"])


@pytest.fixture(scope="module")
def alices(alice) -> dict:
    """Alice's conversation with an upload (#1) and a finished generation job."""
    conv = alice.post(f"{API}/conversations", json={"title": "Alice's"}).json()["id"]
    r = alice.post(f"{API}/conversations/{conv}/messages",
                   files=[("images", ("a.png", png_bytes(), "image/png"))])
    assert r.status_code == 200, r.text
    r = alice.post(f"{API}/conversations/{conv}/messages", json={"text": "/new a lighthouse at dusk"})
    assert r.status_code == 202, r.text
    job = poll_job(alice, r.json()["jobs"][0])
    assert job["status"] == "succeeded", job
    return {"conv": conv, "job": job["id"]}


def test_wrong_password_is_401(multi_server):
    _, r = sign_in(multi_server, "alice", "not-her-password")
    assert r.status_code == 401
    _, r = sign_in(multi_server, "nobody", "whatever-password")
    assert r.status_code == 401
    c = multi_server.client()
    assert c.post(f"{API}/token", data={"username": "alice", "password": "wrong-password"}).status_code == 401
    assert c.post(f"{API}/token").status_code == 422


def test_token_route_signs_in_like_login(multi_server):
    c = multi_server.client()
    r = c.post(f"{API}/token", data={"username": "bob", "password": MULTI_USERS["bob"]})
    assert r.status_code == 200, r.text
    assert multi_server.client(r.json()["access_token"]).get(f"{API}/conversations").status_code == 200


def test_cookie_sign_in_reaches_the_api(multi_server):
    c, r = sign_in(multi_server, "alice", MULTI_USERS["alice"])
    assert r.status_code == 200
    assert c.get(f"{API}/conversations").status_code == 200


def test_each_sees_only_their_own(alice, bob, alices):
    assert [c["id"] for c in alice.get(f"{API}/conversations").json()] == [alices["conv"]]
    assert bob.get(f"{API}/conversations").json() == []
    assert alice.get(f"{API}/conversations/{alices['conv']}").status_code == 200
    assert alice.get(f"{API}/jobs/{alices['job']}").status_code == 200


def same_404(client, path_theirs: str, path_missing: str, method="GET", **kwargs):
    theirs = client.request(method, API + path_theirs, **kwargs)
    missing = client.request(method, API + path_missing, **kwargs)
    assert theirs.status_code == missing.status_code == 404, (path_theirs, theirs.text)
    assert theirs.json() == missing.json()


def test_someone_elses_answers_like_nothing(alice, bob, alices):
    conv, job = alices["conv"], alices["job"]
    same_404(bob, f"/conversations/{conv}", f"/conversations/{MISSING}")
    same_404(bob, f"/conversations/{conv}/nodes/1/image", f"/conversations/{MISSING}/nodes/1/image")
    same_404(bob, f"/conversations/{conv}/export", f"/conversations/{MISSING}/export")
    same_404(bob, f"/conversations/{conv}/export?format=history",
             f"/conversations/{MISSING}/export?format=history")
    same_404(bob, f"/jobs/{job}", f"/jobs/{MISSING}")
    same_404(bob, f"/conversations/{conv}", f"/conversations/{MISSING}", "PATCH", json={"title": "Mine"})
    same_404(bob, f"/conversations/{conv}/messages", f"/conversations/{MISSING}/messages", "POST",
             json={"text": "/undo"})
    same_404(bob, f"/conversations/{conv}", f"/conversations/{MISSING}", "DELETE")
    # Nothing of Alice's changed.
    tree = alice.get(f"{API}/conversations/{conv}").json()
    assert tree["title"] == "Alice's" and len(tree["nodes"]) == 2
    assert alice.get(f"{API}/conversations/{conv}/nodes/1/image").status_code == 200


def test_chat_image_route_is_owner_checked_too(multi_server, tokens, alices):
    url = f"/qec/images/{alices['conv']}/1.png"
    assert multi_server.client(tokens["alice"]).get(url).status_code == 200
    assert multi_server.client(tokens["bob"]).get(url).status_code == 404


def test_a_removed_account_loses_access_at_once(multi_server):
    from assistant import users
    from sessions import db

    engine = db.make_engine(f"sqlite:///{(multi_server.data_dir / 'qec.db').as_posix()}")
    try:
        users.add_user(engine, "carol", "carol-password-3")
        _, r = sign_in(multi_server, "carol", "carol-password-3")
        assert r.status_code == 200, r.text
        carol = multi_server.client(r.cookies["access_token"])
        assert carol.get(f"{API}/conversations").status_code == 200
        users.remove_user(engine, "carol")
        gone = carol.get(f"{API}/conversations")
        assert gone.status_code == 401 and "sign-in has ended" in gone.json()["detail"]
        assert sign_in(multi_server, "carol", "carol-password-3")[1].status_code == 401
    finally:
        engine.dispose()
