"""Prompt polish through the service: inside the job, visible, reversible.

The tiny backend's local engine runs the real generate() on its random text encoder,
gets unusable text and falls back; a fake OpenAI-compatible chat server stands in for
a remote engine; "!" sends the words as typed; "Use my words" re-runs without polish.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import pytest

from assistant.queue import JobQueue
from assistant.router import route
from assistant.service import BackendPool, ChatService, ChatSettings
from pipelines import get_backend
from sessions import Store

from .test_service import png

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from fake_chat_server import FakeChatServer  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return get_backend("tiny")


@contextlib.contextmanager
def _conversation(tmp_path, backend, **polish):
    """A service with these polish settings and a conversation holding one upload (#1)."""
    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    queue = JobQueue(workers=1)
    service = ChatService(store, BackendPool("tiny", lambda name, model: backend), queue, job_timeout=300,
                          polish_settings=polish)
    try:
        conv = store.create_conversation(owner="ann").id
        say(service, conv, "", files=[("a.png", png("blue", (64, 48)))])
        yield store, service, conv
    finally:
        queue.shutdown()
        store.close()


def say(service, conv, text, files=(), settings=ChatSettings(steps=2), events=None):
    uploads = service.add_uploads(conv, list(files)) if files else []
    intent = route(text, has_image=service.store.head(conv) is not None, attachments=len(uploads))
    out = service.apply(conv, intent, uploads=uploads, settings=settings,
                        on_event=(lambda r, e: events.append(e.kind)) if events is not None else None)
    return out, [r.wait(120) for r in out.runs]


def test_local_polish_on_the_tiny_model_falls_back_and_says_why(tmp_path, tiny, monkeypatch):
    calls = []
    real = type(tiny.polisher().model).generate

    def spy(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(type(tiny.polisher().model), "generate", spy)
    with _conversation(tmp_path, tiny, engine="local") as (store, service, conv):
        events = []
        out, [res] = say(service, conv, "add a red hat", events=events)
        assert calls, "generate() never ran on the tiny text encoder"
        assert "polishing" in events and events.index("polishing") < events.index("progress")
        p = res.node.params["polish"]
        assert p["engine"] == "local" and p["polished"] is False and p["reason"]
        assert res.node.prompt == "add a red hat" == res.node.instruction
        from assistant.render import polish_lines
        assert "fell back" in polish_lines(res.node) and p["reason"] in polish_lines(res.node)


def test_remote_polish_sends_the_picture_and_the_branch_and_uses_the_answer(tmp_path, tiny):
    answer = {"prompt": "Add heavy rain falling over the whole street; keep everything else unchanged."}
    with FakeChatServer(answer=answer) as server:
        with _conversation(tmp_path, tiny, engine="remote", url=server.url, model="qwen-vl",
                           api_key="sk-test", timeout=5) as (store, service, conv):
            say(service, conv, "!make it night")  # word for word: the server is not asked
            assert server.requests == []
            out, [res] = say(service, conv, "now add rain")
            (req,) = server.requests
            body = req["body"]
            assert req["headers"]["authorization"] == "Bearer sk-test" and body["model"] == "qwen-vl"
            system = body["messages"][0]
            assert system["role"] == "system" and "JSON" in str(system["content"])
            user = body["messages"][-1]["content"]
            text = " ".join(part.get("text", "") for part in user if isinstance(part, dict))
            images = [part["image_url"]["url"] for part in user if part.get("type") == "image_url"]
            assert "make it night" in text and "add rain" in text
            assert images and images[0].startswith("data:image/")
            assert res.node.prompt == answer["prompt"] and res.node.instruction == "add rain"
            assert res.node.params["polish"]["polished"] is True

            # Variations reuse the prompt that was sent: no second request.
            out = service.apply(conv, route("one more", has_image=True), settings=ChatSettings(steps=2))
            var = out.runs[0].wait(60)
            assert var.node.prompt == answer["prompt"] and len(server.requests) == 1

            # "Use my words": the same seed, the user's words, no polish.
            out = service.use_my_words(conv, res.node.number, settings=ChatSettings(steps=2))
            mine = out.runs[0].wait(60)
            assert mine.node.prompt == "add rain" and mine.node.params["seed"] == res.node.params["seed"]
            assert mine.node.parent_number == res.node.parent_number and len(server.requests) == 1


def test_a_slow_server_is_cut_off_and_the_edit_runs_with_the_users_words(tmp_path, tiny):
    with FakeChatServer(answer={"prompt": "too late"}, delay=10) as server:
        with _conversation(tmp_path, tiny, engine="remote", url=server.url, model="m",
                           timeout=1) as (store, service, conv):
            started = time.monotonic()
            out, [res] = say(service, conv, "add snow")
            assert res.node.prompt == "add snow"
            p = res.node.params["polish"]
            assert p["polished"] is False and "timed out" in p["reason"] and p["elapsed_s"] < 2.5
            assert time.monotonic() - started < 60


def test_stop_cancels_a_polish_in_flight(tmp_path, tiny):
    with FakeChatServer(answer={"prompt": "x"}, delay=10) as server:
        with _conversation(tmp_path, tiny, engine="remote", url=server.url, model="m",
                           timeout=30) as (store, service, conv):
            out = service.apply(conv, route("add snow", has_image=True), settings=ChatSettings(steps=2))
            deadline = time.monotonic() + 10
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            started = time.monotonic()
            assert service.cancel(conv) == 1
            with pytest.raises(Exception):
                out.runs[0].wait(10)
            assert time.monotonic() - started < 3
            assert store.job(out.runs[0].job.id).status == "cancelled"


def test_the_panel_setting_and_the_default():
    from assistant.service import settings_from_panel
    assert settings_from_panel({"polish": "remote"}).polish == "remote"
    assert settings_from_panel({}).polish is None
    from sessions import HistoryError
    with pytest.raises(HistoryError):
        ChatSettings(polish="cloud")
