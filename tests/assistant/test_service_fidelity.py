"""Edits that keep what they do not touch, through the service as the chat runs them.

A stand-in model does the asked edit in one place and drifts like the real one (a
shift of a few pixels, a slight blur, a small colour cast), at about 1 MP whatever
the input's size. The drift guard then keeps the untouched pixels of the input
exactly; a painted region limits the change; exact operations need no model; /squash
re-runs a line of edits as one edit on a new branch.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from assistant.queue import JobQueue
from assistant.router import Intent
from assistant.service import BackendPool, ChatService, ChatSettings
from pipelines import Capabilities, Result
from sessions import Store

from .test_service import say

EDIT_BOX = (0.55, 0.2, 0.8, 0.45)  # where the stand-in paints, as fractions of the picture


class DriftingBackend:
    """Paints a red square where asked and drifts the rest, at about 1 MP."""

    name = "drift"
    capabilities = Capabilities()

    def __init__(self, *, shift=(2.4, -1.6), area=1024 * 1024):
        self.shift, self.area = shift, area

    def _grid(self, w, h):
        s = min(1.0, (self.area / (w * h)) ** 0.5)
        return max(32, round(w * s / 32) * 32), max(32, round(h * s / 32) * 32)

    def edit(self, request, *, progress=None, cancel=None):
        src = request.images[0].convert("RGB")
        w, h = self._grid(*src.size)
        out = src.resize((w, h), Image.BICUBIC)
        dx, dy = self.shift
        out = out.transform(out.size, Image.AFFINE, (1, 0, -dx, 0, 1, -dy), resample=Image.BICUBIC)
        out = out.filter(ImageFilter.GaussianBlur(0.6))
        a = np.asarray(out, dtype=np.float32) * np.array([1.03, 1.0, 0.97]) + 2
        out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        x0, y0, x1, y1 = (int(EDIT_BOX[0] * w), int(EDIT_BOX[1] * h), int(EDIT_BOX[2] * w), int(EDIT_BOX[3] * h))
        ImageDraw.Draw(out).rectangle((x0, y0, x1, y1), fill=(220, 20, 30))
        if progress:
            progress(1, 1, None)
        return Result(out, request.seed or 7, 1, 0.01, {"backend": "drift", "model": "drift-1"})

    def generate(self, request, *, progress=None, cancel=None):
        return Result(Image.new("RGB", (64, 64), "gray"), 1, 1, 0.01, {"backend": "drift"})


@pytest.fixture
def drift(tmp_path):
    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    queue = JobQueue(workers=1)
    service = ChatService(store, BackendPool("drift", lambda name, model: DriftingBackend()), queue,
                          job_timeout=60)
    yield store, service
    queue.shutdown()
    store.close()


def photo(size=(640, 480), seed=0) -> Image.Image:
    """A textured, photo-like picture: a real sample upscaled with fine noise."""
    base = Image.open("tests/fixtures/coffee.png").convert("RGB").resize(size, Image.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 6, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def encoded(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=92)
    return buf.getvalue()


def outside(box_fraction, size, margin):
    """A boolean mask of the pixels well away from the edit box."""
    w, h = size
    keep = np.ones((h, w), bool)
    x0, y0, x1, y1 = box_fraction
    keep[max(0, int(y0 * h) - margin):int(y1 * h) + margin, max(0, int(x0 * w) - margin):int(x1 * w) + margin] = False
    return keep


def test_the_guard_keeps_untouched_pixels_exact_and_says_so(drift):
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    upload = photo()
    say(service, conv, "", files=[("p.png", encoded(upload))])
    out, [res] = say(service, conv, "put a red sticker on the cup")
    result = store.image(res.node)
    assert result.size == upload.size
    keep = outside(EDIT_BOX, upload.size, margin=40)
    assert np.array_equal(np.asarray(result)[keep], np.asarray(upload)[keep])
    # The edit itself is there: the box is red.
    w, h = upload.size
    r, g, b = result.getpixel((int(0.67 * w), int(0.32 * h)))
    assert r > 180 and g < 80 and b < 80
    g = res.node.params["guard"]
    assert not g["global"] and 0.02 < g["changed"] < 0.3 and g["shift_px"] > 1.5
    from assistant.render import describe
    caption = describe(res.node)
    assert "rest kept exact" in caption and "shift" in caption and "changed" in caption


def test_with_the_guard_off_the_drift_stays(drift):
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    upload = photo()
    say(service, conv, "", files=[("p.png", encoded(upload))])
    out, [res] = say(service, conv, "put a red sticker on the cup", settings=ChatSettings(guard=False))
    keep = outside(EDIT_BOX, upload.size, margin=40)
    assert not np.array_equal(np.asarray(store.image(res.node).resize(upload.size))[keep], np.asarray(upload)[keep])
    assert res.node.params["guard"] is None


def test_a_12_mp_photo_comes_back_at_12_mp_with_untouched_areas_unchanged(drift):
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    upload = photo((4000, 3000), seed=3)
    (node,) = service.add_uploads(conv, [("phone.jpg", encoded(upload, "JPEG"))])
    store.checkout(conv, node.number)
    stored = np.asarray(store.image(node))
    out, [res] = say(service, conv, "put a red sticker on the cup")
    result = store.image(res.node)
    assert result.size == (4000, 3000)
    keep = outside(EDIT_BOX, (4000, 3000), margin=160)
    assert np.array_equal(np.asarray(result)[keep], stored[keep])


def test_a_painted_region_limits_the_change_and_travels_with_the_export(drift, tmp_path):
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    upload = photo()
    say(service, conv, "", files=[("p.png", encoded(upload))])
    # The region covers the stand-in's box and more, drawn at another size (scaled).
    mask = Image.new("L", (320, 240), 0)
    ImageDraw.Draw(mask).rectangle((160, 30, 280, 130), fill=255)
    region = service.set_region(conv, encoded(mask), base=1)
    out, [res] = say(service, conv, "put a red sticker on the cup")
    assert res.node.params["request"]["region"] == region["sha"]
    result = np.asarray(store.image(res.node))
    keep = np.asarray(mask.resize(upload.size, Image.NEAREST).filter(ImageFilter.MaxFilter(41))) == 0
    assert np.array_equal(result[keep], np.asarray(upload)[keep])
    assert store.conversation(conv).meta.get("region") is None  # used up by that edit
    with zipfile.ZipFile(io.BytesIO(store.export_history(conv))) as z:
        assert f"masks/{region['sha']}.png" in z.namelist()
    # Deleting the conversation takes the mask's file too.
    assert store.blobs.exists(region["sha"])
    store.delete_conversation(conv)
    assert not store.blobs.exists(region["sha"])


def test_exact_operations_make_op_nodes_that_undo_like_any_other(drift):
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    upload = photo()
    say(service, conv, "", files=[("p.png", encoded(upload))])
    out, results = say(service, conv, "rotate it 90 degrees clockwise")
    assert results == [] and out.node.kind == "op" and out.node.parent_number == 1
    assert np.array_equal(np.asarray(store.image(out.node)), np.asarray(upload.transpose(Image.Transpose.ROTATE_270)))
    from assistant.render import describe
    assert describe(out.node).endswith("· exact")
    out, _ = say(service, conv, "make it black and white")
    assert store.image(out.node).size == (480, 640)
    assert "Back to #2" in service.apply(conv, Intent("undo")).message


def test_squash_runs_the_line_as_one_edit_on_a_sibling_branch(drift):
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("p.png", encoded(photo()))])
    say(service, conv, "make the cup blue")
    say(service, conv, "add steam")
    say(service, conv, "add a spoon")
    out, [res] = say(service, conv, "do all of that in one go")
    node = res.node
    assert node.parent_number == 1 and node.input_numbers == [1]
    assert node.instruction == "make the cup blue; then add steam; then add a spoon"
    assert store.node(conv, 2).parent_number == 1  # the chain is still there, beside it
    assert node.params["request"]["squash"] == [2, 3, 4]
    out, _ = say(service, conv, "/squash")
    assert out.is_error and "nothing to squash" in out.message


def test_the_guard_setting_comes_from_the_panel():
    from assistant.service import settings_from_panel
    assert settings_from_panel({"guard": False}).guard is False
    assert settings_from_panel({}).guard is True


def test_1mp_and_aspect_sizes_sit_on_picture_1s_grid(drift):
    from pipelines.sizes import VAE_AREA, pipeline_size
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("p.png", encoded(photo((640, 480))))])
    grid = pipeline_size(640, 480, VAE_AREA)
    assert grid[0] % 32 == 0 and grid[1] % 32 == 0
    for size in ("1mp", "4:3"):
        out, [res] = say(service, conv, "put a red sticker on the cup", settings=ChatSettings(size=size))
        asked = res.node.params["request"]
        assert (asked["width"], asked["height"]) == grid, size


def test_a_whole_picture_word_after_painting_a_region_changes_only_the_region(drift):
    store, service = drift
    conv = store.create_conversation(owner="ann").id
    upload = photo()
    say(service, conv, "", files=[("p.png", encoded(upload))])
    mask = Image.new("L", upload.size, 0)
    ImageDraw.Draw(mask).rectangle((350, 90, 520, 220), fill=255)
    service.set_region(conv, encoded(mask), base=1)
    out, [res] = say(service, conv, "make it brighter")  # exact on the whole picture, but a region waits
    assert res.node.kind == "edit" and res.node.params["request"]["region"]
    keep = np.asarray(mask.filter(ImageFilter.MaxFilter(41))) == 0
    assert np.array_equal(np.asarray(store.image(res.node))[keep], np.asarray(upload)[keep])
