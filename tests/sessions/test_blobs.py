"""The content-addressed blob store: keys, dedup, verified reads, atomic writes."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from sessions import BadImage, BlobCorrupted, BlobStore, NotFound


def test_key_is_sha256_and_files_are_sharded(tmp_path):
    blobs = BlobStore(tmp_path)
    key = blobs.put(b"hello")
    assert key == hashlib.sha256(b"hello").hexdigest()
    assert (tmp_path / key[:2] / key).read_bytes() == b"hello"
    assert blobs.get(key) == b"hello"


def test_same_bytes_twice_is_one_file(tmp_path):
    blobs = BlobStore(tmp_path)
    assert blobs.put(b"x" * 100) == blobs.put(b"x" * 100)
    assert len(list(tmp_path.glob("??/*"))) == 1
    assert not list(tmp_path.glob("??/.tmp-*"))  # no temp files left behind


def test_corrupted_file_is_reported_not_returned(tmp_path):
    blobs = BlobStore(tmp_path)
    key = blobs.put(b"original bytes")
    blobs.path(key).write_bytes(b"original bytez")
    with pytest.raises(BlobCorrupted, match="changed or damaged"):
        blobs.get(key)


def test_corrupted_blob_put_again_is_repaired(tmp_path):
    blobs = BlobStore(tmp_path)
    key = blobs.put(b"abc")
    blobs.path(key).write_bytes(b"xyz")
    blobs.put(b"abc")
    assert blobs.get(key) == b"abc"


def test_missing_file_and_bad_keys(tmp_path):
    blobs = BlobStore(tmp_path)
    with pytest.raises(BlobCorrupted, match="missing"):
        blobs.get("0" * 64)
    with pytest.raises(NotFound):
        blobs.get("../../etc/passwd")


def test_store_reports_corrupted_image(store):
    conv = store.create_conversation(owner="ann").id
    node = store.add_node(conv, Image.new("RGB", (8, 8), "red"), kind="upload")
    path = store.blobs.path(node.sha256)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BlobCorrupted):
        store.image(node)
    with pytest.raises(BlobCorrupted):
        store.export_image(conv)


def test_same_upload_twice_is_one_blob(store, fixtures_dir):
    conv = store.create_conversation(owner="ann").id
    data = (fixtures_dir / "chelsea.png").read_bytes()
    a = store.add_node(conv, data, kind="upload")
    b = store.add_node(conv, data, kind="upload")
    assert (a.number, b.number) == (1, 2)
    assert a.sha256 == b.sha256
    assert store.blobs.keys() == {a.sha256}


def test_blob_is_on_disk_before_any_row(store, monkeypatch):
    conv = store.create_conversation(owner="ann").id
    seen = {}
    real = store.blobs.put

    def spy(data):
        key = real(data)
        seen["on_disk_before_row"] = store.blobs.exists(key) and store.nodes(conv) == []
        return key

    monkeypatch.setattr(store.blobs, "put", spy)
    store.add_node(conv, Image.new("RGB", (4, 4)), kind="upload")
    assert seen["on_disk_before_row"] is True


def test_bytes_that_are_not_an_image(store):
    conv = store.create_conversation(owner="ann").id
    with pytest.raises(BadImage, match="could not be read"):
        store.add_node(conv, b"%PDF-1.4 not a picture", kind="upload")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="PNG")
    with pytest.raises(BadImage):
        store.add_node(conv, buf.getvalue()[:60], kind="upload")  # truncated
    assert store.nodes(conv) == []
