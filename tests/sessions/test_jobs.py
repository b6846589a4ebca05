"""Jobs: queued -> running -> succeeded | failed | cancelled, and crash recovery."""

from __future__ import annotations

import os
import socket

import pytest
from PIL import Image

from sessions import JobStateError, NotFound, Store
from sessions import store as store_module
from sessions.store import CRASH_REASON


def _conv_with_upload(store):
    conv = store.create_conversation(owner="ann").id
    store.add_node(conv, Image.new("RGB", (8, 8), "red"), kind="upload")
    return conv


def test_job_lifecycle_commits_node_and_head_together(store):
    conv = _conv_with_upload(store)
    job = store.create_job(conv, kind="edit", request={"prompt": "add rain", "seed": 7})
    assert (job.status, job.request["seed"]) == ("queued", 7)
    assert store.start_job(job.id).status == "running"
    node = store.finish_job(job.id, Image.new("RGB", (8, 8), "blue"), kind="edit", parent=1,
                            inputs=[1], instruction="add rain", prompt="add rain", params={"seed": 7})
    done = store.job(job.id)
    assert (done.status, done.node_number, done.error) == ("succeeded", node.number, None)
    assert done.finished_at is not None and done.started_at is not None
    assert store.head(conv).number == node.number == 2


def test_failed_finish_commits_nothing(store):
    conv = _conv_with_upload(store)
    job = store.create_job(conv, kind="edit")
    store.start_job(job.id)
    with pytest.raises(NotFound):  # parent #9 does not exist: the whole transaction rolls back
        store.finish_job(job.id, Image.new("RGB", (8, 8)), kind="edit", parent=9)
    assert store.job(job.id).status == "running"
    assert [n.number for n in store.nodes(conv)] == [1]
    assert store.head(conv).number == 1


def test_fail_and_cancel(store):
    conv = _conv_with_upload(store)
    a = store.create_job(conv, kind="edit")
    store.start_job(a.id)
    failed = store.fail_job(a.id, "The GPU ran out of memory.")
    assert (failed.status, failed.error) == ("failed", "The GPU ran out of memory.")
    b = store.create_job(conv, kind="edit")
    assert store.cancel_job(b.id).status == "cancelled"
    with pytest.raises(JobStateError, match="already cancelled"):
        store.start_job(b.id)
    assert store.head(conv).number == 1


def test_cancelled_job_cannot_commit(store):
    conv = _conv_with_upload(store)
    job = store.create_job(conv, kind="edit")
    store.start_job(job.id)
    store.cancel_job(job.id)
    with pytest.raises(JobStateError):
        store.finish_job(job.id, Image.new("RGB", (8, 8)), kind="edit", parent=1)
    assert len(store.nodes(conv)) == 1 and store.head(conv).number == 1


def test_job_owner_check(store):
    conv = _conv_with_upload(store)
    job = store.create_job(conv, kind="edit")
    assert store.job(job.id, owner="ann").id == job.id
    with pytest.raises(NotFound):
        store.job(job.id, owner="bob")
    with pytest.raises(NotFound):
        store.job("does-not-exist")
    assert [j.id for j in store.jobs(conv)] == [job.id]


def test_job_left_running_is_failed_on_reopen(tmp_path, monkeypatch):
    url, blobs = f"sqlite:///{tmp_path}/j.db", tmp_path / "blobs"
    # The jobs belong to an earlier process that had this pid (as after a restart).
    monkeypatch.setattr(store_module, "WORKER_ID", f"{socket.gethostname()}:{os.getpid()}:old")
    s = Store.open(database_url=url, blob_dir=blobs)
    conv = _conv_with_upload(s)
    running = s.create_job(conv, kind="edit")
    s.start_job(running.id)
    queued = s.create_job(conv, kind="edit")
    done = s.create_job(conv, kind="edit")
    s.start_job(done.id)
    s.finish_job(done.id, Image.new("RGB", (8, 8)), kind="edit", parent=1)
    s.close()  # the "crash"

    monkeypatch.undo()
    s2 = Store.open(database_url=url, blob_dir=blobs)
    assert s2.job(running.id).status == "running"  # opening alone touches no job
    assert s2.recover_interrupted_jobs() == 2
    r = s2.job(running.id)
    assert r.status == "failed" and r.error == CRASH_REASON
    assert "server stopped" in r.error
    assert s2.job(queued.id).status == "failed"
    assert s2.job(done.id).status == "succeeded"
    assert s2.head(conv).number == 2


def test_jobs_of_a_live_process_are_not_recovered(tmp_path):
    url, blobs = f"sqlite:///{tmp_path}/j.db", tmp_path / "blobs"
    s = Store.open(database_url=url, blob_dir=blobs)
    conv = _conv_with_upload(s)
    job = s.create_job(conv, kind="edit")
    s.start_job(job.id)
    # Another process (a `users` command, a second server) opening the same database
    # and recovering must not fail a job this live process is running.
    other = Store.open(database_url=url, blob_dir=blobs)
    assert other.recover_interrupted_jobs() == 0
    assert other.job(job.id).status == "running"
