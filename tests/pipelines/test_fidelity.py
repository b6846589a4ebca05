"""The drift guard (pipelines.fidelity): untouched pixels stay exact, edits survive.

The model's drift is simulated the way Qwen-Image-Edit drifts: the input is resized to
the model's grid (multiples of 32, about 1 MP), then shifted by a few sub-pixels,
sometimes zoomed, blurred a little, given a small colour cast and a little noise.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from pipelines import fidelity
from pipelines.fidelity import GuardResult, composite, feather_mask, guard
from pipelines.sizes import VAE_AREA, pipeline_size

DRIFT = dict(shift=(2.6, -1.4), blur=0.6, gain=(1.03, 0.98, 1.02), offset=(3, -2, 4), noise=1.5)


# --------------------------------------------------------------------------- helpers


def photo(fixtures_dir, name="coffee.png", size=(1024, 683)) -> Image.Image:
    img = Image.open(fixtures_dir / name).convert("RGB")
    return img.resize(size, Image.LANCZOS)


def model_output(
    edited: Image.Image,
    *,
    grid=None,
    shift=(0.0, 0.0),
    zoom=1.0,
    blur=0.0,
    gain=(1.0, 1.0, 1.0),
    offset=(0.0, 0.0, 0.0),
    noise=0.0,
    seed=0,
) -> Image.Image:
    """What a drifting model returns for ``edited`` (the asked edit, done perfectly).

    On ``grid`` (default: the pipeline's ~1 MP grid for the input), the content at
    grid place p shows up at c + zoom * (p - c) + shift.
    """
    if grid is None:
        grid = pipeline_size(edited.width, edited.height, VAE_AREA)
    img = edited.resize(grid, Image.BICUBIC) if grid != edited.size else edited
    w, h = grid
    cx, cy = w / 2, h / 2
    ax = 1 / zoom
    bx = cx - (cx + shift[0]) / zoom
    by = cy - (cy + shift[1]) / zoom
    pad = 80
    padded = Image.fromarray(np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
    img = padded.resize(grid, Image.BICUBIC, box=(bx + pad, by + pad, ax * w + bx + pad, ax * h + by + pad))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(img, dtype=np.float32) * np.float32(gain) + np.float32(offset)
    if noise:
        a = a + np.random.default_rng(seed).normal(0, noise, a.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def ideal(edited: Image.Image, blur: float = 0.6, grid=None) -> Image.Image:
    """The model's rendition of ``edited`` without drift: its grid and blur, no move."""
    if grid is None:
        grid = pipeline_size(edited.width, edited.height, VAE_AREA)
    img = edited.resize(grid, Image.BICUBIC) if grid != edited.size else edited
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    return img.resize(edited.size, Image.BICUBIC) if grid != edited.size else img


def paint_object(img: Image.Image, box, seed=1) -> Image.Image:
    """A distinct object in ``box``: a striped ellipse in colours the photo lacks."""
    out = img.copy()
    d = ImageDraw.Draw(out)
    x0, y0, x1, y1 = box
    d.ellipse(box, fill=(30, 200, 60), outline=(250, 240, 20), width=3)
    for x in range(x0 + 8, x1 - 8, 14):
        d.line((x, y0 + 10, x + 6, y1 - 10), fill=(200, 20, 200), width=3)
    return out


def arr(img) -> np.ndarray:
    return np.asarray(img).astype(np.int16)


def outside(size, box, margin) -> np.ndarray:
    """True away from ``box`` grown by ``margin`` px."""
    w, h = size
    m = np.ones((h, w), bool)
    x0, y0, x1, y1 = box
    m[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    return m


def inside(size, box, margin) -> np.ndarray:
    """True inside the object painted in ``box`` (an ellipse), shrunk by ``margin`` px."""
    m = Image.new("1", size, 0)
    x0, y0, x1, y1 = box
    ImageDraw.Draw(m).ellipse((x0 + margin, y0 + margin, x1 - margin, y1 - margin), fill=1)
    return np.asarray(m)


def check_exact_where_unmasked(result: GuardResult, before: Image.Image) -> np.ndarray:
    mask = np.asarray(result.mask)
    kept = mask == 0
    assert np.array_equal(arr(result.image)[kept], arr(before)[kept])
    return kept


# ----------------------------------------------------------------------------- local


def test_local_edit_under_drift_keeps_the_rest_bit_for_bit(fixtures_dir):
    before = photo(fixtures_dir)
    box = (560, 120, 700, 250)
    edited = paint_object(before, box)
    after = model_output(edited, **DRIFT)
    assert after.size == (1248, 832)

    result = guard(before, after)

    assert result.image.size == before.size and result.image.mode == "RGB"
    assert result.mask.size == before.size and result.mask.mode == "L"
    assert not result.global_edit
    kept = check_exact_where_unmasked(result, before)
    # Everything but the edit and a narrow band around it is the input, exactly.
    assert kept[outside(before.size, box, 20)].all()
    # The edit is the model's: the object, moved back to where it was asked.
    obj = inside(before.size, box, 6)
    assert np.asarray(result.mask)[obj].min() == 255
    assert np.abs(arr(result.image)[obj] - arr(ideal(edited))[obj]).mean() < 3
    assert np.abs(arr(result.image)[obj] - arr(before)[obj]).mean() > 40
    # Left as the model returned it, the object would sit 2 px off.
    as_is = arr(after.resize(before.size, Image.BICUBIC))
    err = np.abs(arr(result.image)[obj] - arr(ideal(edited))[obj]).mean()
    assert np.abs(as_is[obj] - arr(ideal(edited))[obj]).mean() > 3 * err
    # The drift it undid, in input pixels.
    kx, ky = before.width / after.width, before.height / after.height
    assert result.shift[0] == pytest.approx(2.6 * kx, abs=0.05)
    assert result.shift[1] == pytest.approx(-1.4 * ky, abs=0.05)
    assert result.scale == pytest.approx(1.0, abs=1e-3)
    assert 0.01 < result.changed < 0.06
    summary = result.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert set(summary) == {"changed", "global", "shift_px", "dx", "dy", "scale"}
    assert summary["global"] is False
    assert summary["shift_px"] == pytest.approx(math.hypot(*result.shift), abs=1e-3)


def test_output_already_at_the_inputs_size(fixtures_dir):
    before = photo(fixtures_dir, "chelsea.png", (900, 600))
    box = (100, 300, 260, 420)
    edited = paint_object(before, box)
    after = model_output(edited, grid=before.size, shift=(-1.7, 2.2), blur=0.5, noise=1.0)
    result = guard(before, after)
    kept = check_exact_where_unmasked(result, before)
    assert kept[outside(before.size, box, 20)].all()
    obj = inside(before.size, box, 6)
    # Two sub-pixel resamplings (the model's move and ours back) soften the stripes a
    # little; left as returned, the object would be 40 levels off.
    assert np.abs(arr(result.image)[obj] - arr(ideal(edited, 0.5, before.size))[obj]).mean() < 6
    assert np.abs(arr(after)[obj] - arr(ideal(edited, 0.5, before.size))[obj]).mean() > 30


def test_tiny_dot_and_thin_text_survive(fixtures_dir):
    before = photo(fixtures_dir, "astronaut.png", (1024, 1024))
    edited = before.copy()
    d = ImageDraw.Draw(edited)
    d.rectangle((700, 300, 711, 311), fill=(255, 0, 0))  # 12 x 12 px
    d.text((120, 860), "Hello drift", fill=(255, 255, 255))  # the default bitmap font: 1 px strokes
    after = model_output(edited, **DRIFT)
    result = guard(before, after)
    assert not result.global_edit
    dot = (slice(302, 310), slice(702, 710))
    assert np.abs(arr(result.image)[dot] - np.array([255, 0, 0])).mean() < 25
    text = np.abs(arr(edited) - arr(before)).max(axis=2) > 60
    text[:800] = False
    assert text.sum() > 40
    assert (np.asarray(result.mask)[text] == 255).all()
    # 1 px strokes lose a little contrast in the two sub-pixel resamplings, no more.
    gain = (arr(result.image) - arr(before))[text].mean() / (arr(ideal(edited)) - arr(before))[text].mean()
    assert gain > 0.7
    check_exact_where_unmasked(result, before)
    assert result.changed < 0.01


def test_faint_local_edit_survives(fixtures_dir):
    """A patch made a little warmer (+10/+5/-5 levels): under the per-pixel threshold,
    found by its block means."""
    before = photo(fixtures_dir)
    box = (300, 200, 500, 350)
    a = np.asarray(before, np.int16).copy()
    a[box[1] : box[3], box[0] : box[2]] += np.array([10, 5, -5], np.int16)
    edited = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    # A cast that darkens: one that brightens would clip the highlights, and what is
    # clipped in the output cannot be brought back.
    drift = dict(DRIFT, gain=(0.98, 0.99, 0.98), offset=(-2, -1, -3))
    result = guard(before, model_output(edited, **drift))
    assert not result.global_edit
    mask = np.asarray(result.mask)
    inner = np.zeros(mask.shape, bool)
    inner[box[1] + 4 : box[3] - 4, box[0] + 4 : box[2] - 4] = True
    assert (mask[inner] == 255).mean() > 0.97
    kept = check_exact_where_unmasked(result, before)
    assert kept[outside(before.size, box, 24)].all()
    moved = (arr(result.image) - arr(before))[inner].mean(axis=0)
    asked = (arr(edited) - arr(before))[inner].mean(axis=0)  # +10/+5/-5, less where clipped
    assert np.allclose(moved, asked, atol=1.5), (moved, asked)


def test_edits_touching_the_border(fixtures_dir):
    before = photo(fixtures_dir)
    W, H = before.size
    boxes = [(W - 150, 60, W, 200), (0, H - 110, 170, H)]
    edited = before
    for box in boxes:
        edited = paint_object(edited, box)
    after = model_output(edited, **DRIFT)
    result = guard(before, after)
    assert not result.global_edit
    kept = check_exact_where_unmasked(result, before)
    far = outside(before.size, boxes[0], 20) & outside(before.size, boxes[1], 20)
    assert kept[far].all()
    for box in boxes:
        # Up to the picture's edge: everything the object changed there.
        obj = inside(before.size, box, 4) | (np.abs(arr(edited) - arr(before)).max(axis=2) > 80)
        x0, y0, x1, y1 = box
        obj[:, : max(0, x0 - 4)] = obj[:, x1 + 4 :] = False
        obj[: max(0, y0 - 4)] = obj[y1 + 4 :] = False
        assert np.asarray(result.mask)[obj].min() == 255
        assert np.abs(arr(result.image)[obj] - arr(ideal(edited))[obj]).mean() < 4


def test_zoom_is_corrected_to_a_quarter_pixel_at_the_corners(fixtures_dir):
    before = photo(fixtures_dir, "rocket.jpg", (1024, 683))
    edited = paint_object(before, (100, 100, 220, 220))
    after = model_output(edited, grid=before.size, zoom=1.02, shift=(0.8, -0.5), blur=0.5, noise=1.0)
    result = guard(before, after)
    W, H = before.size
    c = np.array([W / 2, H / 2])
    for corner in ([0, 0], [W, 0], [0, H], [W, H]):
        p = np.array(corner, float)
        true = c + 1.02 * (p - c) + np.array([0.8, -0.5])
        est = c + result.scale * (p - c) + np.array(result.shift)
        assert np.hypot(*(true - est)) < 0.25, (corner, true, est)
    kept = check_exact_where_unmasked(result, before)
    assert kept[outside(before.size, (100, 100, 220, 220), 20)].all()


def test_repeating_pattern_aligns_to_the_nearest_repeat():
    """A tiled picture (12 px period): every repeat matches, the smallest move is drift."""
    before = Image.new("RGB", (1024, 683), (200, 200, 200))
    d = ImageDraw.Draw(before)
    for x in range(0, 1024, 12):
        d.line((x, 0, x, 683), fill=(40, 40, 40), width=3)
    for y in range(0, 683, 12):
        d.line((0, y, 1024, y), fill=(90, 40, 40), width=2)
    box = (300, 200, 450, 330)
    edited = paint_object(before, box)
    after = model_output(edited, **DRIFT)
    result = guard(before, after)
    assert not result.global_edit
    kx, ky = before.width / after.width, before.height / after.height
    assert result.shift[0] == pytest.approx(2.6 * kx, abs=0.25)
    assert result.shift[1] == pytest.approx(-1.4 * ky, abs=0.25)
    kept = check_exact_where_unmasked(result, before)
    assert kept[outside(before.size, box, 20)].all()


# ---------------------------------------------------------------------------- global


@pytest.mark.parametrize(
    "name",
    ["darker by 35 %", "strong colour grade", "posterize and blur", "watercolour-ish"],
)
def test_global_edits_are_kept_whole(fixtures_dir, name):
    before = photo(fixtures_dir, "chelsea.png", (900, 600))
    a = np.asarray(before, dtype=np.float32)
    if name == "darker by 35 %":
        edited = Image.fromarray(np.clip(a * 0.65, 0, 255).astype(np.uint8))
    elif name == "strong colour grade":
        edited = Image.fromarray(np.clip(a * [1.18, 1.0, 0.78] + [12, 0, -10], 0, 255).astype(np.uint8))
    elif name == "posterize and blur":
        edited = ImageOps.posterize(before, 3).filter(ImageFilter.GaussianBlur(1.5))
    else:
        edited = before.filter(ImageFilter.ModeFilter(7)).filter(ImageFilter.SMOOTH_MORE)
        edited = ImageOps.posterize(edited, 4)
    after = model_output(edited, **DRIFT)
    result = guard(before, after)
    assert result.global_edit, result.summary()
    assert result.changed == 1.0
    assert np.asarray(result.mask).min() == 255
    # Geometry is still realigned: the result sits on the edited picture, not shifted.
    err = np.abs(arr(result.image) - arr(edited))[10:-10, 10:-10].mean()
    shifted = np.abs(arr(after.resize(before.size, Image.BICUBIC)) - arr(edited))[10:-10, 10:-10].mean()
    assert err < shifted


def test_a_flipped_picture_is_global_and_not_shifted(fixtures_dir):
    """Nothing to align with: the output is kept whole and not moved by a wrong match."""
    before = photo(fixtures_dir)
    edited = ImageOps.mirror(before)
    result = guard(before, model_output(edited, **DRIFT))
    assert result.global_edit
    assert result.shift == (0.0, 0.0) and result.scale == 1.0


def test_mixed_strong_tint_and_object_is_global(fixtures_dir):
    """A tint past drift (here +12 % red) with an object: the whole output is the edit."""
    before = photo(fixtures_dir)
    box = (300, 200, 450, 330)
    edited = paint_object(before, box)
    edited = Image.fromarray(np.clip(np.asarray(edited, np.float32) * [1.12, 1.0, 0.9], 0, 255).astype(np.uint8))
    result = guard(before, model_output(edited, **DRIFT))
    assert result.global_edit


def test_mixed_mild_tint_and_object_keeps_only_the_object(fixtures_dir):
    """A tint within drift (gain 3 %, offset 4) is taken for drift: only the object is kept."""
    before = photo(fixtures_dir)
    box = (300, 200, 450, 330)
    edited = paint_object(before, box)
    after = model_output(edited, shift=(1.2, 0.4), blur=0.6, gain=(1.03, 1.0, 0.97), offset=(4, 0, -3), noise=1.5)
    result = guard(before, after)
    assert not result.global_edit
    kept = check_exact_where_unmasked(result, before)
    assert kept[outside(before.size, box, 20)].all()
    obj = inside(before.size, box, 6)
    # The object's colours are brought back from the cast, so it sits in the input's.
    assert np.abs(arr(result.image)[obj] - arr(ideal(edited))[obj]).mean() < 3


# -------------------------------------------------------------------------- 12 MP


def test_12_mp_upload_with_a_1_mp_output(fixtures_dir):
    rng = np.random.default_rng(5)
    # A 12 MP photo with texture of its own: the fixture enlarged, plus film grain.
    base = Image.open(fixtures_dir / "coffee.png").convert("RGB").resize((4000, 3000), Image.BICUBIC)
    grain = Image.fromarray(rng.integers(116, 141, (750, 1000), dtype=np.uint8))
    grain = np.asarray(grain.resize((4000, 3000), Image.BILINEAR), np.int16) - 128
    pixels = np.asarray(base, np.int16) + grain[..., None]
    before = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    box = (2400, 500, 2900, 950)
    edited = paint_object(before, box)
    after = model_output(edited, shift=(1.8, -1.1), blur=0.6, gain=(1.02, 0.99, 1.02), offset=(2, -1, 3), noise=1.5)
    assert after.size == (1184, 896)

    fidelity.guard(before.resize((1024, 768)), after)  # warm up numpy/PIL code paths
    t0 = time.perf_counter()
    result = guard(before, after)
    elapsed = time.perf_counter() - t0

    assert result.image.size == (4000, 3000) and result.mask.size == (4000, 3000)
    assert not result.global_edit
    kept = check_exact_where_unmasked(result, before)
    assert kept[outside(before.size, box, 80)].all()
    obj = inside(before.size, box, 30)
    assert np.abs(arr(result.image)[obj] - arr(ideal(edited))[obj]).mean() < 4
    assert elapsed < 6.0  # about 0.5 s on an idle 2-core machine; generous for loaded CI


# ---------------------------------------------------------------------------- region


def test_painted_region_of_another_size(fixtures_dir):
    before = photo(fixtures_dir)
    box = (400, 300, 600, 450)
    edited = paint_object(before, box)
    # The model also changed something outside the painted region: it must not pass.
    edited = paint_object(edited, (50, 50, 150, 150))
    after = model_output(edited, **DRIFT)
    region = Image.new("L", (256, 171), 0)
    ImageDraw.Draw(region).rectangle((100, 75, 150, 112), fill=255)  # the same box at 1/4
    result = guard(before, after, region=region)
    assert not result.global_edit
    kept = check_exact_where_unmasked(result, before)
    assert kept[outside(before.size, box, 24)].all()
    obj = inside(before.size, box, 6)
    assert np.asarray(result.mask)[obj].min() == 255
    assert np.abs(arr(result.image)[obj] - arr(ideal(edited))[obj]).mean() < 3


def test_feather_mask_grows_outward_and_reads_any_mode():
    region = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    ImageDraw.Draw(region).rectangle((50, 25, 99, 74), fill=(255, 255, 255, 255))
    mask = np.asarray(feather_mask(region, (800, 400), feather_px=8))
    assert mask.shape == (400, 800)
    assert mask[100:300, 200:400].min() == 255  # the painted area changes fully
    assert mask[:, :160].max() == 0 and mask[:, 440:].max() == 0  # exact far outside
    assert 0 < mask[200, 404] < 255  # feathered just outside
    assert feather_mask(Image.new("1", (10, 10), 0), (50, 50)).getbbox() is None


def test_composite_is_exact_where_the_mask_is_zero(fixtures_dir):
    before = photo(fixtures_dir, "chelsea.png", (451, 300))
    after = ImageOps.invert(before).resize((640, 426))
    mask = Image.new("L", (90, 60), 0)
    ImageDraw.Draw(mask).rectangle((30, 20, 60, 40), fill=255)
    out = composite(before, after, mask)
    big = np.asarray(mask.resize(before.size, Image.BILINEAR))
    assert np.array_equal(arr(out)[big == 0], arr(before)[big == 0])
    inv = arr(ImageOps.invert(before))
    full = big == 255
    assert np.abs(arr(out)[full] - inv[full]).mean() < 8


# ------------------------------------------------------------------------- no change


def test_identical_pictures_change_nothing(fixtures_dir):
    before = photo(fixtures_dir, "astronaut.png", (512, 512))
    result = guard(before, before.copy())
    assert result.changed == 0.0 and not result.global_edit
    assert np.array_equal(arr(result.image), arr(before))
    assert result.shift == (0.0, 0.0) and result.scale == 1.0


def test_drift_without_an_edit_changes_nothing(fixtures_dir):
    before = photo(fixtures_dir, "rocket.jpg", (1024, 683))
    result = guard(before, model_output(before, **DRIFT))
    assert result.changed == 0.0 and not result.global_edit
    assert np.array_equal(arr(result.image), arr(before))


# --------------------------------------------------------------------------- bench


def test_bench_chain_runs_two_turns():
    """``bench/fidelity.py``'s chain, two turns each way, so the bench never rots."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "fidelity.py"
    spec = importlib.util.spec_from_file_location("bench_fidelity", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    on = bench.run_chain(True, turns=2, seed=1)
    off = bench.run_chain(False, turns=2, seed=1)
    assert [r["turn"] for r in on] == [1, 2]
    assert all(math.isinf(r["psnr_db"]) and r["kept"] == r["asked"] for r in on)
    assert all(r["shift_max_px"] < 0.25 and r["sharpness"] > 0.98 for r in on)
    assert off[-1]["psnr_db"] < 30 and off[-1]["shift_max_px"] > 0.5
