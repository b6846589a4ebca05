"""Qwen-Image-2.1 through the chat's service, on its tiny offline model: an edit with four
references, a generation, the per-model picture limit, and the licence notice."""

from __future__ import annotations

import pytest

from assistant.queue import JobQueue
from assistant.router import route
from assistant.service import BackendPool, ChatService, ChatSettings
from pipelines import get_backend, licence
from sessions import Store

from .test_service import png

TINY21 = "tiny-2.1"


@pytest.fixture
def service(tmp_path):
    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    queue = JobQueue(workers=1)
    backends: dict = {}

    def make(name, model):
        if (name, model) not in backends:
            backends[(name, model)] = get_backend(name, model=model) if model else get_backend(name)
        return backends[(name, model)]

    yield ChatService(store, BackendPool("tiny", make), queue, job_timeout=300)
    queue.shutdown()
    store.close()


def _say(service, conv, text, files=(), settings=None):
    service.check_picture_count(settings or ChatSettings(), len(files))
    uploads = service.add_uploads(conv, list(files)) if files else []
    intent = route(text, has_image=service.store.head(conv) is not None, attachments=len(uploads))
    out = service.apply(conv, intent, uploads=uploads, settings=settings)
    return out, [r.wait(120) for r in out.runs]


def test_qwen21_edits_with_four_references_and_generates(service):
    store = service.store
    s21 = ChatSettings(model=TINY21, steps=2)
    conv = store.create_conversation(owner="ann").id
    out, [gen] = _say(service, conv, "a red fox in snow", settings=s21)
    assert gen.node.kind == "generate" and gen.node.params["model"]
    photos = [(f"{i}.png", png((40 * i, 90, 200 - 30 * i), (64, 64))) for i in range(4)]
    out, [res] = _say(service, conv, "put the fox together with all of these", files=photos, settings=s21)
    # Read as references for the fox (#1): the picture and four references.
    assert res.node.parent_number == 1 and res.node.input_numbers == [1, 2, 3, 4, 5]
    assert service.max_pictures(s21) == 10 and service.max_pictures(ChatSettings()) == 3


def test_the_limit_follows_the_model_and_nothing_is_kept_beyond_it(service):
    store = service.store
    conv = store.create_conversation(owner="ann").id
    photos = [(f"{i}.png", png((10 * i, 90, 9), (32, 32))) for i in range(4)]
    from sessions import HistoryError
    with pytest.raises(HistoryError, match="at most 3: the image to edit and 2 references"):
        _say(service, conv, "combine them", files=photos)
    assert store.nodes(conv) == []
    many = [(f"{i}.png", png((10 * i, 9, 9), (32, 32))) for i in range(11)]
    with pytest.raises(HistoryError, match="at most 10"):
        _say(service, conv, "combine them", files=many, settings=ChatSettings(model=TINY21))


def test_the_licence_notice_names_the_research_licence():
    assert "Qwen Research License" in licence("tiny", TINY21)
    assert licence("tiny", None) is None


def test_the_limit_follows_the_servers_configured_model_not_only_the_environment(tmp_path, monkeypatch):
    """QEC_MODEL may come from a .env file, which os.environ never sees: the pool says it."""
    monkeypatch.delenv("QEC_MODEL", raising=False)
    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    queue = JobQueue(workers=1)
    try:
        pool = BackendPool("qwen", lambda n, m: None, configured_model="Qwen/Qwen-Image-2.1")
        service = ChatService(store, pool, queue)
        assert service.max_pictures(ChatSettings()) == 10
        assert service.max_pictures(ChatSettings(model="Qwen/Qwen-Image-Edit-2511")) == 3
        assert service.max_pictures(ChatSettings(backend="tiny")) == 3  # tiny never runs QEC_MODEL
    finally:
        queue.shutdown()
        store.close()
