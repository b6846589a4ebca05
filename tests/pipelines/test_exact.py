"""pipelines/exact.py against Pillow's own results, on real photos."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from pipelines import exact

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module", params=PHOTOS)
def photo(request) -> Image.Image:
    with Image.open(FIXTURES / request.param) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    with Image.open(FIXTURES / "chelsea.png") as im:
        return im.convert("RGB")  # 451×300


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- rotate


@pytest.mark.parametrize("degrees, transpose", [
    (90, Image.Transpose.ROTATE_270),  # Pillow turns counter-clockwise; ours clockwise
    (-90, Image.Transpose.ROTATE_90),
    (270, Image.Transpose.ROTATE_90),
    (180, Image.Transpose.ROTATE_180),
    (-180, Image.Transpose.ROTATE_180),
    (450, Image.Transpose.ROTATE_270),
])
def test_right_angles_are_transposes(photo, degrees, transpose):
    out = exact.apply(photo, {"name": "rotate", "degrees": degrees})
    assert same(out, photo.transpose(transpose))


def test_rotate_clockwise_means_clockwise():
    # A picture whose top-left pixel is red: a clockwise quarter turn puts it top-right.
    im = Image.new("RGB", (40, 20), "white")
    im.putpixel((0, 0), (255, 0, 0))
    out = exact.apply(im, {"name": "rotate", "degrees": 90})
    assert out.size == (20, 40)
    assert out.getpixel((19, 0)) == (255, 0, 0)
    out = exact.apply(im, {"name": "rotate", "degrees": -90})
    assert out.getpixel((0, 39)) == (255, 0, 0)


@pytest.mark.parametrize("degrees", [1, -5, 15, 33.3, 45, -60, 89.5, 135])
def test_any_angle_crops_to_the_inscribed_rectangle_without_fill(photo, degrees, monkeypatch):
    # Done twice with opposite fill colours: if any fill reached the result, they differ.
    monkeypatch.setattr(exact, "ROTATE_FILL", (0, 0, 0))
    dark = exact.apply(photo, {"name": "rotate", "degrees": degrees})
    monkeypatch.setattr(exact, "ROTATE_FILL", (255, 255, 255))
    light = exact.apply(photo, {"name": "rotate", "degrees": degrees})
    assert same(dark, light)
    w, h = exact.inscribed_size(photo.width, photo.height, degrees)
    assert dark.mode == "RGB"
    assert w - 2 - 2 * exact.ROTATE_MARGIN <= dark.width <= w
    assert h - 2 - 2 * exact.ROTATE_MARGIN <= dark.height <= h


def test_any_angle_pixels_are_pillows_rotation(chelsea):
    out = exact.apply(chelsea, {"name": "rotate", "degrees": 10})
    full = chelsea.rotate(-10, resample=Image.Resampling.BICUBIC, expand=True)
    # The result is a centred window (to a pixel) of Pillow's own clockwise rotation.
    left = (full.width - out.width) // 2
    top = (full.height - out.height) // 2
    assert any(
        same(full.crop((left + dx, top + dy, left + dx + out.width, top + dy + out.height)), out)
        for dx in (-1, 0, 1) for dy in (-1, 0, 1)
    )


def test_inscribed_size_known_values():
    # A square turned 45° holds a square of side s/√2.
    w, h = exact.inscribed_size(100, 100, 45)
    assert w == pytest.approx(100 / math.sqrt(2)) and h == pytest.approx(100 / math.sqrt(2))
    assert exact.inscribed_size(300, 200, 0.0) == pytest.approx((300, 200))
    w, h = exact.inscribed_size(400, 100, 30)  # half-constrained: a long thin picture
    assert h == pytest.approx(50 / math.cos(math.radians(30)))
    assert w == pytest.approx(50 / math.sin(math.radians(30)))


def test_rotate_without_crop_expands_and_fills_white(chelsea):
    out = exact.apply(chelsea, {"name": "rotate", "degrees": 20, "crop_to_fit": False})
    expected = chelsea.rotate(-20, resample=Image.Resampling.BICUBIC, expand=True,
                              fillcolor=(255, 255, 255))
    assert same(out, expected)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((out.width - 1, out.height - 1)) == (255, 255, 255)


# --------------------------------------------------------------------------- flip


def test_flip_horizontal_is_mirror(photo):
    assert same(exact.apply(photo, {"name": "flip", "axis": "horizontal"}), ImageOps.mirror(photo))
    assert same(exact.apply(photo, {"name": "flip"}), ImageOps.mirror(photo))


def test_flip_vertical_is_flip(photo):
    assert same(exact.apply(photo, {"name": "flip", "axis": "vertical"}), ImageOps.flip(photo))


def test_flip_twice_is_lossless(photo):
    once = exact.apply(photo, {"name": "flip"})
    assert same(exact.apply(once, {"name": "flip"}), photo)


# --------------------------------------------------------------------------- crop


@pytest.mark.parametrize("op, box", [
    # chelsea is 451×300 (ratio 1.503)
    ({"aspect": "1:1"}, (75, 0, 375, 300)),
    ({"aspect": "16:9"}, (0, 23, 451, 277)),  # 451 * 9/16 = 253.7 -> 254 tall
    ({"aspect": "32:18"}, (0, 23, 451, 277)),
    ({"aspect": "4:3"}, (25, 0, 425, 300)),  # 300 * 4/3 = 400 wide
    ({"aspect": "3:4"}, (113, 0, 338, 300)),  # 300 * 3/4 = 225 wide
    ({"aspect": "2.39:1"}, (0, 55, 451, 244)),  # 451 / 2.39 = 188.7 -> 189 tall
    ({"keep": "left", "fraction": 0.5}, (0, 0, 226, 300)),  # 225.5 rounds half up
    ({"keep": "right", "fraction": 0.5}, (225, 0, 451, 300)),
    ({"keep": "top", "fraction": 1 / 3}, (0, 0, 451, 100)),
    ({"keep": "bottom", "fraction": 2 / 3}, (0, 100, 451, 300)),
    ({"keep": "center", "fraction": 0.5}, (112, 75, 338, 225)),
])
def test_crop_boxes(chelsea, op, box):
    out = exact.apply(chelsea, {"name": "crop", **op})
    assert exact.crop_box(chelsea.size, {"name": "crop", **op}) == box
    assert same(out, chelsea.crop(box))


@pytest.mark.parametrize("aspect", ["1:1", "16:9", "9:16", "4:3", "3:2", "21:9"])
def test_aspect_crop_keeps_the_most_area(photo, aspect):
    a, b = map(int, aspect.split(":"))
    out = exact.apply(photo, {"name": "crop", "aspect": aspect})
    assert abs(out.width / out.height - a / b) < 2 / min(out.size)
    assert out.width == photo.width or out.height == photo.height
    left, top, right, bottom = exact.crop_box(photo.size, {"name": "crop", "aspect": aspect})
    assert abs(left - (photo.width - right)) <= 1 and abs(top - (photo.height - bottom)) <= 1
    assert same(out, photo.crop((left, top, right, bottom)))


def test_crop_to_the_ratio_it_has_is_unchanged():
    square = Image.new("RGB", (64, 64), (10, 20, 30))
    out = exact.apply(square, {"name": "crop", "aspect": "1:1"})
    assert same(out, square) and out is not square


# --------------------------------------------------------------------------- resize


@pytest.mark.parametrize("op, size", [
    ({"width": 1024}, (1024, 681)),  # 300 * 1024/451 = 681.1
    ({"height": 150}, (226, 150)),  # 451 / 2 = 225.5 rounds half up
    ({"width": 800, "height": 600}, (800, 600)),
    ({"scale": 0.5}, (226, 150)),
    ({"scale": 2}, (902, 600)),
    ({"longest": 1000}, (1000, 665)),  # 300 * 1000/451 = 665.2
])
def test_resize_is_lanczos(chelsea, op, size):
    out = exact.apply(chelsea, {"name": "resize", **op})
    assert out.size == size
    assert same(out, chelsea.resize(size, Image.Resampling.LANCZOS))
    assert exact.resolve({"name": "resize", **op}, chelsea.size) == {
        "name": "resize", "width": size[0], "height": size[1]}


def test_resize_longest_on_a_portrait_picture(chelsea):
    portrait = chelsea.transpose(Image.Transpose.ROTATE_90)  # 300×451
    out = exact.apply(portrait, {"name": "resize", "longest": 902})
    assert out.size == (600, 902)


@pytest.mark.parametrize("op, message", [
    ({"width": 9000}, "Resize to at most 8192 px a side."),
    ({"height": 8}, "Resize to at least 16 px a side."),
    ({"longest": 100000}, "Resize to at most 8192 px a side."),
])
def test_resize_limits_at_validation(op, message):
    with pytest.raises(ValueError) as err:
        exact.validate({"name": "resize", **op})
    assert str(err.value) == message


@pytest.mark.parametrize("op, message", [
    ({"scale": 20}, "Resize to at most 8192 px a side."),  # 451 * 20 = 9020
    ({"scale": 0.05}, "Resize to at least 16 px a side."),  # 300 * 0.05 = 15
    ({"width": 16}, "Resize to at least 16 px a side."),  # height 300 * 16/451 = 11
])
def test_resize_limits_depend_on_the_picture(chelsea, op, message):
    with pytest.raises(ValueError) as err:
        exact.apply(chelsea, {"name": "resize", **op})
    assert str(err.value) == message


# --------------------------------------------------------------------------- colour


def test_grayscale_is_imageops(photo):
    out = exact.apply(photo, {"name": "grayscale"})
    assert same(out, ImageOps.grayscale(photo).convert("RGB"))


def test_sepia_matches_the_matrix(photo):
    out = np.asarray(exact.apply(photo, {"name": "sepia"}), dtype=np.int64)
    rgb = np.asarray(photo, dtype=np.float64)
    matrix = np.array([[0.393, 0.769, 0.189],
                       [0.349, 0.686, 0.168],
                       [0.272, 0.534, 0.131]])
    expected = np.clip(np.floor(rgb @ matrix.T + 0.5), 0, 255).astype(np.int64)
    diff = np.abs(out - expected)
    assert diff.max() <= 1  # float rounding at exact .5 boundaries
    assert (diff > 0).mean() < 0.001
    assert out.shape == expected.shape


@pytest.mark.parametrize("key, enhancer", [
    ("brightness", ImageEnhance.Brightness),
    ("contrast", ImageEnhance.Contrast),
    ("saturation", ImageEnhance.Color),
])
@pytest.mark.parametrize("factor", [0.6, 0.9, 1.1, 1.2, 1.4])
def test_enhancements_are_imageenhance(photo, key, enhancer, factor):
    out = exact.apply(photo, {"name": "adjust", key: factor})
    assert same(out, enhancer(photo).enhance(factor))


def test_combined_adjust_runs_in_the_documented_order(chelsea):
    op = {"name": "adjust", "saturation": 0.8, "contrast": 1.15, "brightness": 1.1, "warmth": 0.5}
    out = exact.apply(chelsea, op)
    step = ImageEnhance.Brightness(chelsea).enhance(1.1)
    step = ImageEnhance.Contrast(step).enhance(1.15)
    step = ImageEnhance.Color(step).enhance(0.8)
    rgb = np.asarray(step, dtype=np.float64)
    expected = rgb.copy()
    expected[..., 0] = np.clip(np.floor(rgb[..., 0] * 1.1 + 0.5), 0, 255)
    expected[..., 2] = np.clip(np.floor(rgb[..., 2] * 0.9 + 0.5), 0, 255)
    assert np.array_equal(np.asarray(out), expected.astype(np.uint8))


@pytest.mark.parametrize("warmth", [1.0, 0.5, 0.25, -0.25, -1.0])
def test_warmth_scales_red_and_blue(photo, warmth):
    out = np.asarray(exact.apply(photo, {"name": "adjust", "warmth": warmth}), dtype=np.int64)
    rgb = np.asarray(photo, dtype=np.float64)
    gain = exact.WARMTH_GAIN * warmth
    assert np.array_equal(out[..., 0], np.clip(np.floor(rgb[..., 0] * (1 + gain) + 0.5), 0, 255))
    assert np.array_equal(out[..., 1], rgb[..., 1])
    assert np.array_equal(out[..., 2], np.clip(np.floor(rgb[..., 2] * (1 - gain) + 0.5), 0, 255))
    if warmth > 0:
        assert out[..., 0].mean() > rgb[..., 0].mean() and out[..., 2].mean() < rgb[..., 2].mean()


# --------------------------------------------------------------------------- modes and sizes


def test_transparency_is_laid_on_white():
    im = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    im.putpixel((0, 0), (0, 0, 255, 255))
    out = exact.apply(im, {"name": "flip"})
    assert out.mode == "RGB"
    assert out.getpixel((31, 0)) == (0, 0, 255)
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_grayscale_input_becomes_rgb(chelsea):
    gray = chelsea.convert("L")
    out = exact.apply(gray, {"name": "adjust", "brightness": 1.2})
    assert out.mode == "RGB"
    assert same(out, ImageEnhance.Brightness(gray.convert("RGB")).enhance(1.2))


@pytest.mark.parametrize("op", [
    {"name": "flip"}, {"name": "grayscale"}, {"name": "sepia"},
    {"name": "adjust", "contrast": 1.3}, {"name": "rotate", "degrees": 180},
])
def test_size_kept(chelsea, op):
    out = exact.apply(chelsea, op)
    assert out.size == chelsea.size and out.mode == "RGB" and out is not chelsea


def test_the_input_is_not_touched(chelsea):
    before = np.asarray(chelsea).copy()
    for op in ({"name": "flip"}, {"name": "adjust", "warmth": 1}, {"name": "crop", "aspect": "1:1"}):
        exact.apply(chelsea, op)
    assert np.array_equal(np.asarray(chelsea), before)


# --------------------------------------------------------------------------- validate


@pytest.mark.parametrize("op, normalised", [
    ({"name": "rotate", "degrees": 90}, {"name": "rotate", "degrees": 90, "crop_to_fit": True}),
    ({"name": "rotate", "degrees": 270.0}, {"name": "rotate", "degrees": -90, "crop_to_fit": True}),
    ({"name": "rotate", "degrees": -180}, {"name": "rotate", "degrees": 180, "crop_to_fit": True}),
    ({"name": "rotate", "degrees": "15.5"}, {"name": "rotate", "degrees": 15.5, "crop_to_fit": True}),
    ({"name": "rotate", "degrees": 2.123456}, {"name": "rotate", "degrees": 2.12, "crop_to_fit": True}),
    ({"name": "flip"}, {"name": "flip", "axis": "horizontal"}),
    ({"name": "flip", "axis": "Vertically"}, {"name": "flip", "axis": "vertical"}),
    ({"name": "crop", "aspect": "square"}, {"name": "crop", "aspect": "1:1"}),
    ({"name": "crop", "aspect": "1920x1080"}, {"name": "crop", "aspect": "16:9"}),
    ({"name": "crop", "aspect": (4, 3)}, {"name": "crop", "aspect": "4:3"}),
    ({"name": "crop", "aspect": "2.39:1"}, {"name": "crop", "aspect": "2.39:1"}),
    ({"name": "crop", "keep": "left"}, {"name": "crop", "keep": "left", "fraction": 0.5}),
    ({"name": "crop", "keep": "middle", "fraction": "1/3"}, {"name": "crop", "keep": "center", "fraction": 1 / 3}),
    ({"name": "crop", "keep": "upper", "fraction": 0.25}, {"name": "crop", "keep": "top", "fraction": 0.25}),
    ({"name": "resize", "width": 1024.0}, {"name": "resize", "width": 1024}),
    ({"name": "resize", "scale": 0.5}, {"name": "resize", "scale": 0.5}),
    ({"name": "grayscale"}, {"name": "grayscale"}),
    ({"name": "adjust", "brightness": 1.2},
     {"name": "adjust", "brightness": 1.2, "contrast": 1.0, "saturation": 1.0, "warmth": 0.0}),
    ({"name": "adjust", "warmth": -0.5},
     {"name": "adjust", "brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "warmth": -0.5}),
])
def test_validate_normalises(op, normalised):
    out = exact.validate(op)
    assert out == normalised
    assert exact.validate(out) == out  # idempotent: a recorded op validates as itself
    assert type(out.get("degrees", 0)) in (int, float)


KNOWN = "known ones: rotate, flip, crop, resize, grayscale, sepia, adjust."
EITHER_CROP = "Crop either to an aspect ratio (like 16:9) or to one part (like the left half)."
ONE_RESIZE = "Resize to a width and/or height, by a scale, or by the long side: one of them."


@pytest.mark.parametrize("op, message", [
    ({"name": "blur"}, f"Unknown image operation 'blur'; {KNOWN}"),
    ({}, f"Unknown image operation None; {KNOWN}"),
    ({"name": "rotate"}, "Say how far to rotate, in degrees (positive turns clockwise)."),
    ({"name": "rotate", "degrees": 360},
     "That rotation leaves the picture as it is; give an angle that is not a whole turn."),
    ({"name": "rotate", "degrees": "a lot"}, "The rotation angle must be a number, not 'a lot'."),
    ({"name": "rotate", "degrees": True}, "The rotation angle must be a number."),
    ({"name": "rotate", "degrees": float("nan")}, "The rotation angle must be a finite number."),
    ({"name": "rotate", "degrees": 10, "crop_to_fit": "yes"}, "crop_to_fit must be true or false."),
    ({"name": "flip", "axis": "diagonal"}, "Flip horizontally (left to right) or vertically (upside down)."),
    ({"name": "crop"}, EITHER_CROP),
    ({"name": "crop", "aspect": "1:1", "keep": "left"}, EITHER_CROP),
    ({"name": "crop", "aspect": "wide"}, "Give the aspect ratio as width:height, like 16:9."),
    ({"name": "crop", "aspect": "0:1"}, "Both sides of an aspect ratio must be positive, like 16:9."),
    ({"name": "crop", "aspect": "1000:1"}, "Aspect ratios run from 1:100 to 100:1."),
    ({"name": "crop", "keep": "diagonal"}, "Keep the left, right, top, bottom or center part."),
    ({"name": "crop", "keep": "left", "fraction": 1},
     "Keep a part between 0 and 1 of the picture, like 0.5 for half."),
    ({"name": "resize"}, ONE_RESIZE),
    ({"name": "resize", "width": 100, "scale": 2}, ONE_RESIZE),
    ({"name": "resize", "width": 100.5}, "The width must be a whole number of pixels."),
    ({"name": "resize", "scale": 0}, "Scale by a positive factor, like 0.5 for half the size."),
    ({"name": "resize", "scale": 1}, "Scaling by 1 leaves the picture as it is."),
    ({"name": "resize", "scale": 1000}, "Resize to at most 8192 px a side."),
    ({"name": "sepia", "amount": 0.5}, "Sepia takes no settings, not amount."),
    ({"name": "flip", "angle": 3}, "Flip takes axis, not angle."),
    ({"name": "adjust"}, "Say what to change: brightness, contrast, saturation or warmth."),
    ({"name": "adjust", "brightness": 1.0}, "Say what to change: brightness, contrast, saturation or warmth."),
    ({"name": "adjust", "brightness": 5}, "Brightness can change by -100% to +300%."),
    ({"name": "adjust", "contrast": -0.1}, "Contrast can change by -100% to +300%."),
    ({"name": "adjust", "saturation": "lots"}, "Saturation must be a number, not 'lots'."),
    ({"name": "adjust", "warmth": 1.5}, "Warmth runs from -1 (cooler) to 1 (warmer)."),
    ({"name": "adjust", "sharpness": 2}, "Adjust takes brightness, contrast, saturation, warmth, not sharpness."),
])
def test_validation_messages(op, message):
    with pytest.raises(ValueError) as err:
        exact.validate(op)
    assert str(err.value) == message
    with pytest.raises(ValueError):
        exact.apply(Image.new("RGB", (64, 64)), op)


def test_not_a_dict():
    with pytest.raises(ValueError, match="dict"):
        exact.validate(["rotate", 90])


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize("op, words", [
    ({"name": "rotate", "degrees": 90}, "rotated 90° clockwise"),
    ({"name": "rotate", "degrees": -90}, "rotated 90° counter-clockwise"),
    ({"name": "rotate", "degrees": 270}, "rotated 90° counter-clockwise"),
    ({"name": "rotate", "degrees": 180}, "rotated 180°"),
    ({"name": "rotate", "degrees": 15}, "rotated 15° clockwise"),
    ({"name": "rotate", "degrees": -2.5}, "rotated 2.5° counter-clockwise"),
    ({"name": "rotate", "degrees": 15, "crop_to_fit": False}, "rotated 15° clockwise, corners filled white"),
    ({"name": "flip"}, "flipped left to right"),
    ({"name": "flip", "axis": "vertical"}, "flipped upside down"),
    ({"name": "crop", "aspect": "16:9"}, "cropped to 16:9"),
    ({"name": "crop", "aspect": "1:1"}, "cropped to a square"),
    ({"name": "crop", "keep": "left", "fraction": 0.5}, "kept the left half"),
    ({"name": "crop", "keep": "bottom", "fraction": 2 / 3}, "kept the bottom two thirds"),
    ({"name": "crop", "keep": "center", "fraction": 1 / 3}, "kept the middle third"),
    ({"name": "crop", "keep": "top", "fraction": 0.9}, "kept the top 90%"),
    ({"name": "resize", "width": 1024, "height": 768}, "resized to 1024×768"),
    ({"name": "resize", "width": 1024}, "resized to 1024 px wide"),
    ({"name": "resize", "height": 768}, "resized to 768 px tall"),
    ({"name": "resize", "scale": 0.5}, "resized to 50%"),
    ({"name": "resize", "longest": 2048}, "resized to 2048 px on the long side"),
    ({"name": "grayscale"}, "black and white"),
    ({"name": "sepia"}, "sepia"),
    ({"name": "adjust", "brightness": 1.2}, "brightness +20%"),
    ({"name": "adjust", "brightness": 0.8}, "brightness -20%"),
    ({"name": "adjust", "contrast": 1.15, "saturation": 0.8}, "contrast +15%, saturation -20%"),
    ({"name": "adjust", "warmth": 0.5}, "warmer"),
    ({"name": "adjust", "warmth": -0.25}, "a bit cooler"),
    ({"name": "adjust", "warmth": 1.0}, "much warmer"),
    ({"name": "adjust", "brightness": 1.1, "warmth": 0.5}, "brightness +10%, warmer"),
])
def test_describe(op, words):
    assert exact.describe(op) == words


def test_describe_a_resolved_resize(chelsea):
    op = exact.resolve({"name": "resize", "scale": 0.5}, chelsea.size)
    assert exact.describe(op) == "resized to 226×150"


def test_resolve_keeps_other_ops():
    assert exact.resolve({"name": "flip"}, (10, 10)) == {"name": "flip", "axis": "horizontal"}
    with pytest.raises(ValueError, match="at least 16 px"):
        exact.resolve({"name": "resize", "scale": 0.5}, (20, 20))


def test_every_op_is_covered():
    assert set(exact.OPS) == {"rotate", "flip", "crop", "resize", "grayscale", "sepia", "adjust"}
