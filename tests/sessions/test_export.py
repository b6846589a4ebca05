"""Exports: formats, the PNG recipe, no upload metadata, the history zip, deletion."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from PIL import Image

from sessions import HistoryError, NotFound, read_recipe


def _history(store):
    conv = store.create_conversation(owner="ann", title="Street").id
    store.add_node(conv, Image.new("RGB", (40, 30), "gray"), kind="upload", instruction="")
    store.add_node(conv, Image.new("RGB", (40, 30), "navy"), kind="edit", parent=1, inputs=[1],
                   instruction="make it night", prompt="make it night",
                   params={"seed": 11, "steps": 4, "model": "tiny", "backend": "tiny",
                           "true_cfg_scale": 4.0})
    store.add_node(conv, Image.new("RGB", (40, 30), "teal"), kind="edit", parent=2, inputs=[2],
                   instruction="add rain", prompt="add rain", params={"seed": 12, "steps": 4})
    store.checkout(conv, 1)
    store.add_node(conv, Image.new("RGB", (40, 30), "olive"), kind="edit", parent=1, inputs=[1],
                   instruction="make it autumn", prompt="make it autumn", params={"seed": 13})
    store.checkout(conv, 3)
    return conv


def test_png_round_trips_its_recipe(store):
    conv = _history(store)
    data = store.export_image(conv)
    recipe = read_recipe(data)
    assert [s["number"] for s in recipe["steps"]] == [1, 2, 3]
    assert recipe["steps"][1]["instruction"] == "make it night"
    assert recipe["steps"][1]["seed"] == 11 and recipe["steps"][1]["model"] == "tiny"
    assert recipe["steps"][2]["prompt"] == "add rain"
    assert Image.open(io.BytesIO(data)).getpixel((0, 0)) == Image.new("RGB", (1, 1), "teal").getpixel((0, 0))
    assert read_recipe(store.export_image(conv, embed_recipe=False)) is None


@pytest.mark.parametrize("fmt,pil", [("png", "PNG"), ("jpeg", "JPEG"), ("jpg", "JPEG"), ("webp", "WEBP")])
def test_formats_of_any_node(store, fmt, pil):
    conv = _history(store)
    data = store.export_image(conv, 4, fmt=fmt)
    out = Image.open(io.BytesIO(data))
    assert out.format == pil and out.size == (40, 30)


def test_bad_format_and_number(store):
    conv = _history(store)
    with pytest.raises(HistoryError, match="png, jpeg or webp"):
        store.export_image(conv, fmt="gif")
    with pytest.raises(NotFound, match="no #9"):
        store.export_image(conv, 9)
    empty = store.create_conversation(owner="ann").id
    with pytest.raises(HistoryError, match="no image"):
        store.export_image(empty)


def _jpeg_with_gps() -> bytes:
    img = Image.new("RGB", (32, 24), "orange")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 1  # orientation
    gps = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}
    exif[0x8825] = gps
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the fixture really has GPS
    return data


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_upload_with_gps_exports_without_it(store, fmt):
    conv = store.create_conversation(owner="ann").id
    store.add_node(conv, _jpeg_with_gps(), kind="upload")
    data = store.export_image(conv, fmt=fmt)
    out = Image.open(io.BytesIO(data))
    assert b"PhoneMaker" not in data
    assert not out.getexif().get_ifd(0x8825)
    assert "exif" not in out.info
    # the stored blob itself carries none either
    assert b"PhoneMaker" not in store.image_bytes(store.head(conv))


def test_exif_orientation_is_applied_on_store(store):
    img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    conv = store.create_conversation(owner="ann").id
    node = store.add_node(conv, buf.getvalue(), kind="upload")
    assert (node.width, node.height) == (20, 40)


def test_history_zip_holds_every_node_recipe_and_sheet(store):
    conv = _history(store)
    zf = zipfile.ZipFile(io.BytesIO(store.export_history(conv)))
    names = set(zf.namelist())
    assert {"recipe.json", "contact-sheet.png", "images/0001-upload.png", "images/0002-edit.png",
            "images/0003-edit.png", "images/0004-edit.png"} <= names
    recipe = json.loads(zf.read("recipe.json"))
    assert recipe["format"] == "qwen-edit-chat/history"
    assert recipe["conversation"]["head"] == 3 and recipe["conversation"]["title"] == "Street"
    by_number = {n["number"]: n for n in recipe["nodes"]}
    assert sorted(by_number) == [1, 2, 3, 4]
    assert by_number[4]["parent"] == 1 and by_number[4]["inputs"] == [1]
    assert by_number[2]["params"]["seed"] == 11
    assert by_number[3]["instruction"] == "add rain"
    for n in recipe["nodes"]:
        assert hashlib.sha256(zf.read(n["file"])).hexdigest() == n["sha256"]
    sheet = Image.open(io.BytesIO(zf.read("contact-sheet.png")))
    assert sheet.width > sheet.height  # three thumbnails side by side (the lineage 1-2-3)


def test_delete_conversation_removes_rows_and_unshared_blobs(store):
    keep = store.create_conversation(owner="ann").id
    gone = store.create_conversation(owner="ann").id
    shared = Image.new("RGB", (8, 8), "red")
    store.add_node(keep, shared, kind="upload")
    store.add_node(gone, shared, kind="upload")
    own = store.add_node(gone, Image.new("RGB", (8, 8), "blue"), kind="edit", parent=1)
    store.create_job(gone, kind="edit")
    removed = store.delete_conversation(gone)
    assert removed == 1
    assert not store.blobs.exists(own.sha256)
    with pytest.raises(NotFound):
        store.conversation(gone)
    assert store.image(store.head(keep)).getpixel((0, 0)) == (255, 0, 0)
    assert store.jobs(gone) == []
