"""The Chainlit data layer on our tables: users, threads, steps, elements, deletion."""

from __future__ import annotations

import asyncio
import os
import concurrent.futures

import pytest
from chainlit.context import init_http_context
from chainlit.element import CustomElement, File, Image as ImageElement
from chainlit.types import Feedback, Pagination, ThreadFilter
from chainlit.user import User
from PIL import Image
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import assistant.tables  # noqa: F401
from assistant.datalayer import HistoryDataLayer, delete_feedback, save_feedback
from sessions import NotFound, Store


@pytest.fixture(params=["sqlite", "postgres"])
def layer(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/d.db"
    else:
        url = os.environ.get("QEC_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("no PostgreSQL here: `make test` starts one via tests/support/start_postgres.sh")
        engine = create_engine(url)
        with engine.begin() as c:
            c.execute(text("DROP SCHEMA public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    store = Store.open(database_url=url, blob_dir=tmp_path / "blobs")
    SQLModel.metadata.create_all(store.engine)
    yield HistoryDataLayer(store)
    store.close()


def run(coro):
    async def in_context():
        init_http_context()  # outside a websocket session nothing is queued
        return await coro

    # On a thread of its own: Playwright's sync API may hold an event loop on this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, in_context()).result(timeout=60)


def step(thread_id, sid, created, text, kind="assistant_message"):
    return {"id": sid, "threadId": thread_id, "createdAt": created, "output": text,
            "type": kind, "name": "x", "metadata": {}}


def test_users_round_trip(layer):
    assert run(layer.get_user("ann")) is None
    made = run(layer.create_user(User(identifier="ann", display_name="Ann", metadata={"a": 1})))
    assert made.id == made.identifier == "ann" and made.display_name == "Ann"
    again = run(layer.get_user("ann"))
    assert again.metadata == {"a": 1} and again.createdAt


def test_update_thread_creates_for_its_owner_and_never_hands_it_over(layer):
    run(layer.update_thread("t1", name="Fox", user_id="ann", metadata={"chat_settings": {"steps": 4}}))
    conv = layer.store.conversation("t1")
    assert (conv.owner, conv.title, conv.meta["chat_settings"]) == ("ann", "Fox", {"steps": 4})
    run(layer.update_thread("t1", name="Stolen", user_id="bob"))
    assert layer.store.conversation("t1").title == "Fox"
    assert run(layer.get_thread_author("t1")) == "ann"
    assert run(layer.get_thread_author("nope")) == ""
    run(layer.update_thread("t2", name="orphan"))  # no owner known yet: nothing made
    with pytest.raises(NotFound):
        layer.store.conversation("t2")


def test_steps_and_elements_come_back_in_order(layer):
    layer.store.ensure_conversation("t1", owner="ann")
    node = layer.store.add_node("t1", Image.new("RGB", (8, 8)), kind="upload")
    run(layer.create_step(step("t1", "s2", "2026-01-01T00:00:02Z", "second")))
    run(layer.create_step(step("t1", "s1", "2026-01-01T00:00:01Z", "first", "user_message")))
    run(layer.update_step({**step("t1", "s2", "2026-01-01T00:00:02Z", "second, updated")}))
    made = {}

    async def send_elements():
        # Elements read their thread from the Chainlit context, so they are made inside it.
        img = ImageElement(name="#1", url=f"/qec/images/t1/{node.number}.png", display="inline")
        custom = CustomElement(name="BeforeAfter", props={"before": "/a", "after": "/b"})
        download = File(name="x.zip", content=b"PK..", mime="application/zip")
        for el in (img, custom, download):
            el.thread_id, el.for_id = "t1", "s2"
            await layer.create_element(el)
        made["img"] = img

    run(send_elements())
    img = made["img"]
    thread = run(layer.get_thread("t1"))
    assert [s["output"] for s in thread["steps"]] == ["first", "second, updated"]
    assert thread["userIdentifier"] == "ann"
    by_name = {e["name"]: e for e in thread["elements"]}
    assert set(by_name) == {"#1", "BeforeAfter"}  # session-held bytes are not kept
    assert by_name["#1"]["url"] == "/qec/images/t1/1.png"
    assert by_name["BeforeAfter"]["props"] == {"before": "/a", "after": "/b"}
    assert run(layer.get_element("t1", img.id))["name"] == "#1"
    assert run(layer.get_element("other", img.id)) is None


def test_steps_of_unknown_threads_are_dropped(layer):
    run(layer.create_step(step("ghost", "s1", "2026-01-01T00:00:01Z", "hi")))
    assert run(layer.get_thread("ghost")) is None


def test_list_threads_only_own_with_messages_paged_and_searchable(layer):
    for i, owner in enumerate(["ann", "ann", "ann", "bob"]):
        tid = f"t{i}"
        layer.store.ensure_conversation(tid, owner=owner, title=f"Picture {i}")
        run(layer.create_step(step(tid, f"s{i}", f"2026-01-01T00:00:0{i}Z", "hi")))
    layer.store.ensure_conversation("empty", owner="ann")  # never used: not listed
    page = run(layer.list_threads(Pagination(first=2), ThreadFilter(userId="ann")))
    assert len(page.data) == 2 and page.pageInfo.hasNextPage
    rest = run(layer.list_threads(Pagination(first=2, cursor=page.pageInfo.endCursor),
                                  ThreadFilter(userId="ann")))
    ids = [t["id"] for t in page.data + rest.data]
    assert sorted(ids) == ["t0", "t1", "t2"] and not rest.pageInfo.hasNextPage
    found = run(layer.list_threads(Pagination(first=10), ThreadFilter(userId="ann", search="picture 1")))
    assert [t["id"] for t in found.data] == ["t1"]
    assert [t["id"] for t in run(layer.list_threads(Pagination(first=10), ThreadFilter(userId="bob"))).data] == ["t3"]
    assert run(layer.list_threads(Pagination(first=10), ThreadFilter())).data == []


def test_delete_thread_removes_rows_and_blobs(layer):
    layer.store.ensure_conversation("t1", owner="ann")
    node = layer.store.add_node("t1", Image.new("RGB", (8, 8), "red"), kind="upload")
    run(layer.create_step(step("t1", "s1", "2026-01-01T00:00:01Z", "hi")))
    fid = save_feedback(layer.store.engine, "ann", Feedback(forId="s1", value=1, comment="nice"))
    assert run(layer.get_thread("t1"))["steps"][0]["feedback"]["comment"] == "nice"
    # Only the owner's: bob can neither write nor delete it, and says so like a missing one.
    assert save_feedback(layer.store.engine, "bob", Feedback(forId="s1", value=0, comment="x")) is None
    assert delete_feedback(layer.store.engine, "bob", fid) is False
    assert delete_feedback(layer.store.engine, "ann", fid) is True
    assert "feedback" not in run(layer.get_thread("t1"))["steps"][0]
    run(layer.delete_thread("t1"))
    assert run(layer.get_thread("t1")) is None
    assert not layer.store.blobs.exists(node.sha256)
