"""Chainlit's own routes with two users: "not found" alike, owner-only feedback, sharing
off, and sign-ins that end when an account is removed or its password is reset."""

from __future__ import annotations

import json
import time

import pytest

from api_support import API, MULTI_USERS
from test_api_multi_user import sign_in

MISSING = "f" * 32


@pytest.fixture(scope="module")
def users_db(multi_server):
    from sessions import db

    engine = db.make_engine(f"sqlite:///{(multi_server.data_dir / 'qec.db').as_posix()}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def pair(multi_server):
    clients = {}
    for name, password in MULTI_USERS.items():
        _, r = sign_in(multi_server, name, password)
        assert r.status_code == 200, r.text
        clients[name] = multi_server.client(r.cookies["access_token"])
    return clients


@pytest.fixture(scope="module")
def alices_thread(pair, users_db):
    """Alice's conversation with one chat message (a step) of hers."""
    from assistant.tables import StepRow
    from sessions import db

    conv = pair["alice"].post(f"{API}/conversations", json={"title": "Alice's"}).json()["id"]
    with db.write_session(users_db) as s:
        s.add(StepRow(id="alice-step", thread_id=conv, created_at="2026-12-04T10:00:00Z",
                      data=json.dumps({"id": "alice-step", "threadId": conv, "type": "user_message",
                                       "output": "make it blue"})))
    return conv


def same_404(client, method, theirs, missing, **kwargs):
    a = client.request(method, theirs.pop("url"), **theirs, **kwargs)
    b = client.request(method, missing.pop("url"), **missing, **kwargs)
    assert a.status_code == b.status_code == 404, (a.status_code, a.text)
    assert a.json() == b.json()


def test_someone_elses_thread_answers_like_a_missing_one(pair, alices_thread):
    bob, conv = pair["bob"], alices_thread
    same_404(bob, "GET", {"url": f"/project/thread/{conv}"}, {"url": f"/project/thread/{MISSING}"})
    same_404(bob, "GET", {"url": f"/project/thread/{conv}/element/e1"},
             {"url": f"/project/thread/{MISSING}/element/e1"})
    same_404(bob, "PUT", {"url": "/project/thread", "json": {"threadId": conv, "name": "Bob's now"}},
             {"url": "/project/thread", "json": {"threadId": MISSING, "name": "Bob's now"}})
    same_404(bob, "DELETE", {"url": "/project/thread", "json": {"threadId": conv}},
             {"url": "/project/thread", "json": {"threadId": MISSING}})
    alice = pair["alice"]
    assert alice.get(f"/project/thread/{conv}").status_code == 200
    assert alice.get(f"{API}/conversations/{conv}").json()["title"] == "Alice's"


def feedback(client, for_id, comment, fid=None):
    body = {"feedback": {"forId": for_id, "value": 0, "comment": comment}, "sessionId": "s"}
    if fid:
        body["feedback"]["id"] = fid
    return client.put("/feedback", json=body)


def stored_feedback(engine):
    from sqlmodel import Session, select

    from assistant.tables import FeedbackRow

    with Session(engine) as s:
        return {r.id: r.comment for r in s.exec(select(FeedbackRow)).all()}


def test_feedback_only_on_ones_own_messages(pair, alices_thread, users_db):
    alice, bob = pair["alice"], pair["bob"]
    theirs, missing = feedback(bob, "alice-step", "bob was here"), feedback(bob, "no-such-step", "x")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    mine = feedback(alice, "alice-step", "too blue")
    assert mine.status_code == 200, mine.text
    fid = mine.json()["feedbackId"]
    # Bob can neither overwrite it by id nor delete it; an unknown id answers the same.
    assert feedback(bob, "alice-step", "bob again", fid=fid).status_code == 404
    gone, unknown = (bob.request("DELETE", "/feedback", json={"feedbackId": i}) for i in (fid, MISSING))
    assert gone.status_code == unknown.status_code == 404 and gone.json() == unknown.json()
    assert stored_feedback(users_db)[fid] == "too blue"
    assert alice.request("DELETE", "/feedback", json={"feedbackId": fid}).status_code == 200
    assert fid not in stored_feedback(users_db)


def test_sharing_is_off_as_the_config_says(pair, alices_thread):
    alice, bob = pair["alice"], pair["bob"]
    r = alice.put("/project/thread/share", json={"threadId": alices_thread, "isShared": True})
    assert r.status_code == 404 and "sharing is off" in r.json()["detail"]
    assert bob.get(f"/project/share/{alices_thread}").status_code == 404
    assert alice.get(f"/project/share/{alices_thread}").status_code == 404


def test_a_password_reset_ends_the_old_sign_ins(multi_server, users_db):
    from assistant import users

    users.add_user(users_db, "dave", "dave-password-1")
    _, r = sign_in(multi_server, "dave", "dave-password-1")
    old = multi_server.client(r.cookies["access_token"])
    conv = old.post(f"{API}/conversations", json={"title": "Dave's"}).json()["id"]
    assert old.get(f"/project/thread/{conv}").status_code == 200
    time.sleep(1.1)  # token times are whole seconds
    users.remove_user(users_db, "dave")
    for path in (f"{API}/conversations", f"/project/thread/{conv}", "/user"):
        assert old.get(path).status_code == 401, path  # removed: ended everywhere
    users.add_user(users_db, "dave", "dave-password-2")  # the documented password reset
    for path in (f"{API}/conversations", f"/project/thread/{conv}", "/user"):
        r = old.get(path)
        assert r.status_code == 401 and "sign-in has ended" in r.json()["detail"], path
    _, r = sign_in(multi_server, "dave", "dave-password-2")
    new = multi_server.client(r.cookies["access_token"])
    assert new.get(f"{API}/conversations").status_code == 200
    assert new.get("/user").status_code == 200


def socket_connects(server, token: str) -> bool:
    """Whether Chainlit's websocket accepts a connection with this sign-in cookie."""
    import socketio

    client = socketio.Client(reconnection=False)
    try:
        client.connect(server.url, socketio_path="/ws/socket.io", transports=["polling"],
                       headers={"Cookie": f"access_token={token}"},
                       auth={"sessionId": f"test-{time.time_ns()}", "clientType": "webapp"},
                       wait=False)
        # A refusal shows as a namespace that never connects (the client would wait 30 s).
        deadline = time.monotonic() + 5
        while "/" not in client.namespaces and time.monotonic() < deadline:
            time.sleep(0.05)
        return "/" in client.namespaces
    finally:
        client.eio.disconnect(abort=True)  # no goodbye handshake: a long poll would wait it out


def test_a_removed_account_cannot_open_the_websocket(multi_server, users_db):
    from assistant import users

    users.add_user(users_db, "erin", "erin-password-1")
    _, r = sign_in(multi_server, "erin", "erin-password-1")
    token = r.cookies["access_token"]
    assert socket_connects(multi_server, token)
    users.remove_user(users_db, "erin")
    assert not socket_connects(multi_server, token)
