"""The service against a controllable backend: every intent, queueing, cancel, failure."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import zipfile

import pytest
from PIL import Image

from assistant.queue import JobQueue
from assistant.router import Intent, route
from assistant.service import BackendPool, ChatService, ChatSettings
from pipelines import BackendError, Cancelled
from sessions import HistoryError, Store
from sessions import store as store_module

from .fakes import GateBackend


def png(color="red", size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def world(tmp_path):
    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    backend = GateBackend()
    queue = JobQueue(workers=1)
    service = ChatService(store, BackendPool("gate", lambda name, model: backend), queue, job_timeout=30)
    yield store, backend, service
    queue.shutdown()
    store.close()


def say(service, conv, text, files=(), settings=None, events=None):
    uploads = service.add_uploads(conv, list(files)) if files else []
    has_image = service.store.head(conv) is not None
    intent = route(text, has_image=has_image, attachments=len(uploads))
    out = service.apply(conv, intent, uploads=uploads, settings=settings,
                        on_event=(lambda r, e: events.append(e)) if events is not None else None)
    results = [r.wait(20) for r in out.runs]
    return out, results


def test_generate_then_edit_then_moves(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    events = []
    out, [res] = say(service, conv, "a red fox in snow", events=events)
    assert res.node.number == 1 and res.node.kind == "generate" and res.source is None
    assert res.node.prompt == "a red fox in snow"
    assert [e.kind for e in events][:2] == ["started", "progress"]
    assert [e.step for e in events if e.kind == "progress"] == [1, 2, 3, 4]
    assert any(e.preview is not None for e in events)
    assert events[-1].eta_s == 0

    out, [res] = say(service, conv, "make the background darker and add rain")
    assert (res.node.number, res.node.parent_number, res.node.input_numbers) == (2, 1, [1])
    assert res.node.instruction == "make the background darker and add rain"
    assert res.node.params["seed"] == 1234 and res.node.params["backend"] == "gate"
    assert store.job(out.runs[0].job.id).status == "succeeded"

    out, _ = say(service, conv, "undo")
    assert out.node.number == 1 and store.head(conv).number == 1
    out, _ = say(service, conv, "redo")
    assert out.node.number == 2
    out, _ = say(service, conv, "go back to #1")
    assert out.node.number == 1
    out, [res] = say(service, conv, "branch from #2 and make it night")
    assert res.node.parent_number == 2 and res.node.instruction == "make it night"
    assert [n.number for n in store.lineage(conv)] == [1, 2, 3]


def test_upload_then_edit_with_a_reference(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    out, _ = say(service, conv, "", files=[("me.png", png("white", (64, 48)))])
    assert out.node.kind == "upload" and store.head(conv).number == 1
    out, [res] = say(service, conv, "put the hat from this photo on him",
                     files=[("hat.png", png("black"))])
    assert res.node.input_numbers == [1, 2] and res.node.parent_number == 1
    assert res.node.width == 64  # Picture 1's size
    assert store.node(conv, 2).kind == "upload"


def test_attachments_with_text_and_no_image_yet(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    out, [res] = say(service, conv, "combine these", files=[("a.png", png("red")), ("b.png", png("blue"))])
    assert res.node.input_numbers == [1, 2]


def test_too_many_images_is_refused(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("a.png", png())])
    files = [(f"{i}.png", png((i, i, i))) for i in range(3)]
    # Read as references for #1 (the words say so), three photos make four pictures.
    out, results = say(service, conv, "put these on it", files=files)
    assert out.is_error and "at most 3 images" in out.message and results == []
    assert store.head(conv).number == 1


def test_bad_upload_loses_nothing(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("a.png", png())])
    with pytest.raises(Exception, match="not a PNG, JPEG or WebP"):
        service.add_uploads(conv, [("ok.png", png()), ("doc.png", b"%PDF-1.7 ...")])
    assert [n.number for n in store.nodes(conv)] == [1]


def test_variations_are_siblings_with_new_seeds(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("a.png", png())])
    _, [first] = say(service, conv, "add rain", settings=ChatSettings(seed=7))
    out, results = say(service, conv, "give me 3 variations", settings=ChatSettings(seed=7))
    assert len(results) == 3
    for r in results:
        assert r.node.parent_number == 1 and r.node.kind == "variation"
        assert r.node.instruction == "add rain" and r.node.input_numbers == [1]
    seeds_asked = [json.loads(json.dumps(store.job(r.job.id).request))["seed"] for r in out.runs]
    assert seeds_asked == [None, None, None]  # fixed seed setting is not reused for variations


def test_variations_of_an_upload_is_explained(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("a.png", png())])
    out, _ = say(service, conv, "try again")
    assert out.is_error and "upload" in out.message


def test_user_errors_are_messages(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    out, _ = say(service, conv, "undo")
    assert out.is_error and "nothing to undo" in out.message.lower()
    say(service, conv, "a cat")
    out, _ = say(service, conv, "go back to #12")
    assert out.is_error and out.message == "There is no #12 in this conversation; the latest is #1."
    out, _ = say(service, conv, "/frobnicate")
    assert out.is_error and "/frobnicate" in out.message


def test_export_and_history(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann", title="Fox in snow").id
    say(service, conv, "a fox")
    say(service, conv, "add snow")
    out, _ = say(service, conv, "export as jpeg")
    assert out.export.filename == "fox-in-snow-2.jpg" and out.export.mime == "image/jpeg"
    assert Image.open(io.BytesIO(out.export.data)).format == "JPEG"
    out, _ = say(service, conv, "save the whole history")
    assert out.export.filename.endswith("history.zip")
    assert "recipe.json" in zipfile.ZipFile(io.BytesIO(out.export.data)).namelist()
    out, _ = say(service, conv, "/history")
    assert out.show_history


def test_settings_shape_the_request(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    _, [res] = say(service, conv, "a fox", settings=ChatSettings(seed=99, steps=6, size="16:9"))
    assert res.node.params["seed"] == 99
    assert (res.node.width, res.node.height) == (1376, 768)  # on the VAE grid of 32
    assert res.node.params["request"]["steps"] == 6


def test_second_message_is_queued_behind_the_running_one(world):
    store, backend, service = world
    backend.hold = True
    conv = store.create_conversation(owner="ann").id
    first = service.apply(conv, Intent("generate", "one")).runs[0]
    assert backend.entered.acquire(timeout=5)
    second = service.apply(conv, Intent("generate", "two")).runs[0]
    assert second.ahead == 1
    assert store.job(second.job.id).status == "queued"
    backend.release("one")
    backend.release("two")
    assert first.wait(10).node.number == 1
    assert second.wait(10).node.number == 2


def test_fairness_between_two_conversations(world):
    store, backend, service = world
    backend.hold = True
    a = store.create_conversation(owner="ann").id
    b = store.create_conversation(owner="bob").id
    runs = [service.apply(a, Intent("generate", "a1")).runs[0]]
    assert backend.entered.acquire(timeout=5)
    runs += [service.apply(a, Intent("generate", p)).runs[0] for p in ("a2", "a3")]
    runs += [service.apply(b, Intent("generate", "b1")).runs[0]]
    for p in ("a1", "a2", "a3", "b1"):
        backend.release(p)
    for r in runs:
        r.wait(10)
    assert backend.started == ["a1", "b1", "a2", "a3"]


def test_cancel_running_and_queued_commits_nothing(world):
    store, backend, service = world
    backend.hold = True
    conv = store.create_conversation(owner="ann").id
    running = service.apply(conv, Intent("generate", "slow")).runs[0]
    assert backend.entered.acquire(timeout=5)
    queued = service.apply(conv, Intent("generate", "next")).runs[0]
    assert service.cancel(conv) == 2
    with pytest.raises(Cancelled):
        running.wait(5)
    assert store.job(running.job.id).status == "cancelled"
    assert store.job(queued.job.id).status == "cancelled"
    assert store.nodes(conv) == [] and store.head(conv) is None


def test_failing_backend_marks_job_failed_and_keeps_head(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "a fox")
    backend.fail = RuntimeError("CUDA out of memory")
    out = service.apply(conv, Intent("edit", "add snow"))
    with pytest.raises(BackendError, match="CUDA out of memory") as e:
        out.runs[0].wait(5)
    assert "current image is unchanged" in str(e.value)
    job = store.job(out.runs[0].job.id)
    assert job.status == "failed" and "out of memory" in job.error
    assert store.head(conv).number == 1 and len(store.nodes(conv)) == 1


def test_timeout_stops_the_job(world):
    store, backend, service = world
    service.job_timeout = 0.2
    backend.hold = True
    conv = store.create_conversation(owner="ann").id
    run = service.apply(conv, Intent("generate", "forever")).runs[0]
    with pytest.raises(BackendError, match="longer than"):
        run.wait(10)
    assert store.job(run.job.id).status == "failed"
    assert store.nodes(conv) == []


def test_job_cut_short_by_a_restart_is_reported_once_and_retried(tmp_path, monkeypatch):
    url, blobs = f"sqlite:///{tmp_path}/r.db", tmp_path / "blobs"
    # The job belongs to an earlier server process that had this pid.
    monkeypatch.setattr(store_module, "WORKER_ID", f"{socket.gethostname()}:{os.getpid()}:old")
    store = Store.open(database_url=url, blob_dir=blobs)
    conv = store.create_conversation(owner="ann").id
    job = store.create_job(conv, kind="generate", request={
        "op": "generate", "prompt": "a fox", "seed": 5, "steps": None, "true_cfg_scale": None,
        "negative_prompt": None, "width": None, "height": None, "inputs": [], "parent": None,
        "backend": None, "model": None})
    store.start_job(job.id)
    store.close()  # the server dies mid-run

    monkeypatch.undo()
    store = Store.open(database_url=url, blob_dir=blobs)
    store.recover_interrupted_jobs()  # what the restarted server does first
    backend, queue = GateBackend(), JobQueue(workers=1)
    service = ChatService(store, BackendPool("gate", lambda n, m: backend), queue)
    try:
        assert [j.id for j in service.interrupted_jobs(conv)] == [job.id]
        assert service.interrupted_jobs(conv) == []  # told once
        out = service.retry(conv, job.id)
        res = out.runs[0].wait(10)
        assert res.node.number == 1 and res.node.params["seed"] == 5 and res.node.prompt == "a fox"
        again = service.retry(conv, out.runs[0].job.id)
        assert again.is_error and "succeeded" in again.message
        other = store.create_conversation(owner="ann").id
        assert service.retry(other, job.id).is_error
    finally:
        queue.shutdown()
        store.close()


def test_settings_from_the_panel_are_checked():
    from assistant.service import settings_from_panel

    s = settings_from_panel({"backend": "tiny", "steps": 8, "guidance": 0, "seed": " 42 ",
                             "size": "16:9", "variations": 4, "model": ""})
    assert (s.steps, s.guidance, s.seed, s.size, s.variations, s.model) == (8, None, 42, "16:9", 4, None)
    for bad in ({"size": "abc"}, {"variations": 10_000}, {"variations": 0.5}, {"seed": "x1"},
                {"steps": 1}, {"steps": "many"}, {"backend": "evil"}, {"guidance": 99}):
        with pytest.raises(HistoryError):
            settings_from_panel(bad)
    with pytest.raises(HistoryError, match="offers the models"):
        settings_from_panel({"model": "someone/else"}, allowed_models=["Qwen/Qwen-Image-Edit-2511"])
    assert settings_from_panel({"model": "x"}, allowed_models=None).model == "x"
    # Saved settings that are no longer valid fall back to the defaults.
    assert ChatSettings.from_dict({"size": "abc"}) == ChatSettings()


def test_an_edit_sent_while_one_runs_edits_its_result(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "a fox")
    backend.hold = True
    first = service.apply(conv, Intent("edit", "make it darker")).runs[0]
    assert backend.entered.acquire(timeout=5)
    second = service.apply(conv, Intent("edit", "add rain")).runs[0]
    assert second.description == "Editing the latest image"
    backend.release("make it darker")
    backend.release("add rain")
    a, b = first.wait(10), second.wait(10)
    assert (a.node.number, a.node.parent_number) == (2, 1)
    assert (b.node.number, b.node.parent_number, b.node.input_numbers) == (3, 2, [2])
    assert [n.number for n in store.lineage(conv)] == [1, 2, 3]


def test_undo_under_an_older_image_goes_to_its_parent(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    for text in ("a fox", "add snow", "add rain"):
        say(service, conv, text)
    out = service.apply(conv, Intent("undo", base=2))  # the button under #2
    assert out.node.number == 1
    out = service.apply(conv, Intent("undo", base=1))
    assert out.is_error and "#1 is where" in out.message
    assert store.head(conv).number == 1


def test_deleting_stops_the_conversations_jobs(world):
    store, backend, service = world
    backend.hold = True
    conv = store.create_conversation(owner="ann").id
    running = service.apply(conv, Intent("generate", "slow")).runs[0]
    assert backend.entered.acquire(timeout=5)
    queued = service.apply(conv, Intent("generate", "next")).runs[0]
    service.delete_conversation(conv)
    with pytest.raises(Exception):
        running.wait(5)
    assert queued.future.cancelled()
    assert service.active_runs(conv) == []


def test_too_many_waiting_jobs_is_a_message_and_no_job_is_left_queued(tmp_path):
    store = Store.open(database_url=f"sqlite:///{tmp_path}/q.db", blob_dir=tmp_path / "blobs")
    backend, queue = GateBackend(hold=True), JobQueue(workers=1, max_waiting_per_owner=1)
    service = ChatService(store, BackendPool("gate", lambda n, m: backend), queue)
    conv = store.create_conversation(owner="ann").id
    try:
        service.apply(conv, Intent("generate", "one"))
        assert backend.entered.acquire(timeout=5)
        service.apply(conv, Intent("generate", "two"))
        out = service.apply(conv, Intent("generate", "three"))
        assert out.is_error and "already waiting" in out.message
        assert [j.status for j in store.jobs(conv)] == ["running", "queued", "cancelled"]
    finally:
        for p in ("one", "two"):
            backend.release(p)
        queue.shutdown()
        store.close()


def test_the_local_mode_caps_waiting_jobs_per_conversation(tmp_path):
    """One person, many API clients: one conversation's flood does not block another's."""
    store = Store.open(database_url=f"sqlite:///{tmp_path}/q.db", blob_dir=tmp_path / "blobs")
    backend, queue = GateBackend(hold=True), JobQueue(workers=1, max_waiting_per_owner=1)
    service = ChatService(store, BackendPool("gate", lambda n, m: backend), queue,
                          cap_per_conversation=True)
    a, b = (store.create_conversation(owner="local").id for _ in range(2))
    try:
        service.apply(a, Intent("generate", "one"))
        assert backend.entered.acquire(timeout=5)
        service.apply(a, Intent("generate", "two"))
        assert service.apply(a, Intent("generate", "three")).is_error  # a is full
        out = service.apply(b, Intent("generate", "four"))
        assert not out.is_error, out.message  # b still has room
    finally:
        for p in ("one", "two", "four"):
            backend.release(p)
        queue.shutdown()
        store.close()


def test_variations_without_a_number_use_the_conversations_setting(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "a fox")
    _, results = say(service, conv, "give me variations", settings=ChatSettings(variations=2))
    assert len(results) == 2
    _, results = say(service, conv, "give me 3 variations", settings=ChatSettings(variations=2))
    assert len(results) == 3
