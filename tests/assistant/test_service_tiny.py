"""Every intent through the service on the real tiny backend (the diffusers code path)."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from assistant.queue import JobQueue
from assistant.router import route
from assistant.service import BackendPool, ChatService, ChatSettings
from pipelines import get_backend
from sessions import Store, read_recipe


@pytest.fixture(scope="module")
def tiny():
    return get_backend("tiny")


@pytest.fixture
def service(tmp_path, tiny):
    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    queue = JobQueue(workers=1)
    yield ChatService(store, BackendPool("tiny", lambda name, model: tiny), queue, job_timeout=300)
    queue.shutdown()
    store.close()


def png(path) -> bytes:
    return path.read_bytes()


def say(service, conv, text, files=(), settings=ChatSettings(steps=2)):
    uploads = service.add_uploads(conv, list(files)) if files else []
    intent = route(text, has_image=service.store.head(conv) is not None, attachments=len(uploads))
    out = service.apply(conv, intent, uploads=uploads, settings=settings)
    return out, [r.wait(120) for r in out.runs]


def test_every_intent_on_the_tiny_model(service, fixtures_dir):
    store = service.store
    conv = store.create_conversation(owner="ann").id

    out, [gen] = say(service, conv, "generate a red fox in snow", settings=ChatSettings(steps=2, seed=3, size="1:1"))
    assert gen.node.kind == "generate" and gen.node.params["seed"] == 3
    assert gen.node.params["backend"] == "tiny" and "note" in gen.node.params["info"]
    assert store.conversation(conv).title == "a red fox in snow"

    out, _ = say(service, conv, "", files=[("astronaut.png", png(fixtures_dir / "astronaut.png"))])
    assert out.node.number == 2 and store.head(conv).number == 2

    out, [edit] = say(service, conv, "make the background darker and add rain")
    assert (edit.node.parent_number, edit.node.input_numbers) == (2, [2])
    assert (edit.node.width, edit.node.height) == (256, 256)  # Picture 1's size comes back

    out, [ref] = say(service, conv, "put the cat from this photo next to her",
                     files=[("chelsea.png", png(fixtures_dir / "chelsea.png"))])
    assert ref.node.input_numbers == [3, 4] and ref.node.parent_number == 3
    assert ref.node.params["info"]["input_sizes"][1] == [451, 300]

    assert say(service, conv, "undo")[0].node.number == 3
    assert say(service, conv, "redo")[0].node.number == 5
    assert say(service, conv, "go back to #2")[0].node.number == 2
    _, [branch] = say(service, conv, "branch from #3 and make it night")
    assert branch.node.parent_number == 3 and branch.node.instruction == "make it night"

    out, vars_ = say(service, conv, "give me 2 variations")
    assert [v.node.kind for v in vars_] == ["variation", "variation"]
    assert {v.node.parent_number for v in vars_} == {3}
    assert len({v.seed for v in vars_} | {branch.seed}) == 3

    out, _ = say(service, conv, "/history")
    assert out.show_history
    out, _ = say(service, conv, "export as png")
    assert read_recipe(out.export.data)["steps"][-1]["instruction"] == "make it night"
    out, _ = say(service, conv, "save the whole history")
    names = zipfile.ZipFile(io.BytesIO(out.export.data)).namelist()
    assert "recipe.json" in names and "images/0004-upload.png" in names
    out, _ = say(service, conv, "/help")
    assert "/undo" in out.message and not out.is_error


def test_same_seed_reproduces_through_the_service(service, fixtures_dir):
    store = service.store
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("coffee.png", png(fixtures_dir / "coffee.png"))])
    fixed = ChatSettings(steps=2, seed=1234)
    _, [a] = say(service, conv, "make it blue", settings=fixed)
    say(service, conv, "go back to #1")
    _, [b] = say(service, conv, "make it blue", settings=fixed)
    assert a.node.sha256 == b.node.sha256
    assert Image.open(io.BytesIO(store.image_bytes(a.node))).size == (600, 400)
