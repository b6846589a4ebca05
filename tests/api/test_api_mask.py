"""The messages route's `mask` field: a painted region for an edit.

On the tiny model every output pixel is new, so the region decides alone what may
change: outside the mask, away from its feathered edge, the result equals the input.
A mask of another size is scaled to the picture; a mask with no edit is refused.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from api_support import API, fixture_bytes, poll_job
from test_api_local import api, new_conversation, token  # noqa: F401  (fixtures)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_outside_the_mask_the_input_is_kept_exactly(api):
    conv = new_conversation(api)
    photo = fixture_bytes("coffee.png")  # 600x400
    r = api.post(f"{API}/conversations/{conv}/messages", files=[("images", ("c.png", photo, "image/png"))])
    assert r.status_code == 200, r.text
    mask = Image.new("L", (150, 100), 0)  # a quarter of the size: scaled up to 600x400
    ImageDraw.Draw(mask).rectangle((30, 20, 80, 60), fill=255)
    r = api.post(f"{API}/conversations/{conv}/messages", data={"text": "make it red"},
                 files=[("mask", ("m.png", _png(mask), "image/png"))])
    assert r.status_code == 202, r.text
    job = poll_job(api, r.json()["jobs"][0])
    assert job["status"] == "succeeded", job
    before = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    after = np.asarray(Image.open(io.BytesIO(api.get(job["image_url"]).content)).convert("RGB"))
    assert after.shape == before.shape
    band = np.asarray(mask.resize((600, 400), Image.NEAREST).filter(ImageFilter.MaxFilter(41)))
    outside = band == 0
    assert np.array_equal(after[outside], before[outside])
    inside = np.asarray(mask.resize((600, 400), Image.NEAREST)) == 255
    assert np.abs(after[inside].astype(int) - before[inside]).mean() > 10  # the tiny model's noise
    node = {n["number"]: n for n in api.get(f"{API}/conversations/{conv}").json()["nodes"]}[job["node"]]
    assert node["params"]["request"]["region"] and node["params"]["guard"]


def test_a_mask_needs_an_edit_and_must_be_an_image(api):
    conv = new_conversation(api)
    api.post(f"{API}/conversations/{conv}/messages",
             files=[("images", ("c.png", fixture_bytes("coffee.png"), "image/png"))])
    mask = _png(Image.new("L", (10, 10), 255))
    r = api.post(f"{API}/conversations/{conv}/messages", data={"text": "/undo"},
                 files=[("mask", ("m.png", mask, "image/png"))])
    assert r.status_code == 422
    r = api.post(f"{API}/conversations/{conv}/messages", data={"text": "undo"},
                 files=[("mask", ("m.png", mask, "image/png"))])
    assert r.status_code == 422 and "edit instruction" in r.json()["detail"]
    r = api.post(f"{API}/conversations/{conv}/messages", data={"text": "make it red"},
                 files=[("mask", ("m.png", b"not an image", "image/png"))])
    assert r.status_code == 422 and "mask" in r.json()["detail"].lower()
