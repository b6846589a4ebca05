"""Exact whole-picture operations: the edits a diffusion model should not be asked to do.

Owns the operations themselves, their parameters and their caption words: rotate,
flip, crop, resize, black and white, sepia, and brightness/contrast/saturation/warmth.
They are done with Pillow alone, in milliseconds, and are exact: the same picture and
the same op always give the same pixels. Nothing here knows about torch, chainlit,
the node tree or the chat's words (``assistant/op_words.py`` turns text into an op).

An op is a plain dict, ``{"name": ..., **params}``, safe to store as JSON on the node
it made. ``validate`` returns its normalised form (numbers as int/float, defaults
filled); that is the form to record. Every bad parameter raises ``ValueError`` with a
message that can be shown to the user as it is.

The ops, their normalised keys and semantics:

``{"name": "rotate", "degrees": d, "crop_to_fit": True}``
    ``degrees`` positive = clockwise, as people say it ("rotate right"); negative =
    counter-clockwise. Normalised to (-180, 180] (so 270 becomes -90), rounded to
    0.01°; an int when whole. A zero turn (0, 360, ...) is refused. Multiples of 90°
    use ``Image.transpose``: lossless, exact, width and height swap for ±90°. Other
    angles rotate with bicubic resampling about the centre; with ``crop_to_fit`` (the
    default, what photo apps do) the result is the largest axis-aligned rectangle
    inside the rotated picture, centred, less a one-pixel safety margin, so no fill
    colour shows anywhere. With ``crop_to_fit=False`` the canvas grows to hold the
    whole rotated picture and the corners are filled white (``ROTATE_FILL``).

``{"name": "flip", "axis": "horizontal" | "vertical"}``
    horizontal mirrors left to right (``ImageOps.mirror``), vertical turns it upside
    down (``ImageOps.flip``). Default horizontal. Lossless.

``{"name": "crop", "aspect": "W:H"}``
    the largest centred box of that aspect ratio ("1:1", "16:9", "2.39:1"); whole
    numbers are reduced ("32:18" -> "16:9"), ratios run from 1:100 to 100:1. A
    picture already at that ratio comes back unchanged.
``{"name": "crop", "keep": side, "fraction": f}``
    keep one part: ``side`` is left, right, top, bottom (the full other dimension) or
    center (the middle ``f`` of *both* width and height: a centred zoom-in);
    0 < f < 1, default 0.5. Box edges are rounded half up, at least 1 px.

``{"name": "resize", "width": w}`` / ``{"height": h}`` / ``{"width": w, "height": h}``
``{"name": "resize", "scale": s}`` / ``{"name": "resize", "longest": n}``
    Lanczos resampling. One side given keeps the aspect ratio; both given set the size
    exactly. ``scale`` multiplies both sides; ``longest`` sets the longer side. Every
    side must end up within 16..8192 px. ``resolve(op, size)`` turns any form into the
    explicit width-and-height one once the picture's size is known.

``{"name": "grayscale"}``
    ``ImageOps.grayscale`` (ITU-R 601-2 luma), back in RGB.

``{"name": "sepia"}``
    the classic sepia matrix (Microsoft's, also the CSS ``sepia(1)`` filter)::

        R' = .393 R + .769 G + .189 B
        G' = .349 R + .686 G + .168 B
        B' = .272 R + .534 G + .131 B

    done by ``Image.convert("RGB", matrix)``: rounded, clipped at 255.

``{"name": "adjust", "brightness": b, "contrast": c, "saturation": s, "warmth": w}``
    b, c, s are ``ImageEnhance`` factors (1.0 = unchanged, 1.2 = +20%), each 0..4;
    saturation is ``ImageEnhance.Color``. ``warmth`` runs -1..1 (0 = unchanged):
    red is scaled by ``1 + 0.2 w`` and blue by ``1 - 0.2 w`` (``WARMTH_GAIN``), green
    is kept, each rounded half up and clipped to 0..255. Applied in the fixed order
    brightness, contrast, saturation, warmth; unchanged ones are skipped. Missing
    keys are filled with their neutral value; at least one must differ from it.

Every op returns a new RGB picture. A picture with transparency is first laid on
white; any other mode is converted to RGB. Only rotate (other than 180°), crop and
resize change the size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Tuple

from PIL import Image, ImageEnhance, ImageOps

OPS = ("rotate", "flip", "crop", "resize", "grayscale", "sepia", "adjust")

MIN_SIDE = 16
MAX_SIDE = 8192
ROTATE_FILL = (255, 255, 255)  # the corners of an uncropped any-angle rotation
ROTATE_MARGIN = 1  # pixels trimmed inside the exact inscribed rectangle
SEPIA_MATRIX = (
    0.393, 0.769, 0.189, 0.0,
    0.349, 0.686, 0.168, 0.0,
    0.272, 0.534, 0.131, 0.0,
)
WARMTH_GAIN = 0.2  # warmth 1.0: red x1.2, blue x0.8
FACTOR_MIN = 0.0
FACTOR_MAX = 4.0
ADJUST_ORDER = ("brightness", "contrast", "saturation", "warmth")
NEUTRAL = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "warmth": 0.0}
CROP_SIDES = ("left", "right", "top", "bottom", "center")
MAX_ASPECT = 100

_SIDE_ALIASES = {
    "left": "left", "right": "right", "top": "top", "bottom": "bottom",
    "upper": "top", "lower": "bottom",
    "center": "center", "centre": "center", "middle": "center",
}
_AXIS_ALIASES = {
    "horizontal": "horizontal", "horizontally": "horizontal", "h": "horizontal",
    "vertical": "vertical", "vertically": "vertical", "v": "vertical",
}
_PARAMS = {
    "rotate": ("degrees", "crop_to_fit"),
    "flip": ("axis",),
    "crop": ("aspect", "keep", "fraction"),
    "resize": ("width", "height", "scale", "longest"),
    "grayscale": (),
    "sepia": (),
    "adjust": ADJUST_ORDER,
}
_FRACTION_WORDS = {
    Fraction(1, 2): "half", Fraction(1, 3): "third", Fraction(2, 3): "two thirds",
    Fraction(1, 4): "quarter", Fraction(3, 4): "three quarters", Fraction(1, 5): "fifth",
    Fraction(2, 5): "two fifths", Fraction(3, 5): "three fifths", Fraction(4, 5): "four fifths",
    Fraction(1, 10): "tenth",
}

Size = Tuple[int, int]


# --------------------------------------------------------------------------- public API


def validate(op: Mapping[str, Any]) -> dict:
    """The normalised op (see the module docstring), or ``ValueError`` saying what is wrong."""
    if not isinstance(op, Mapping):
        raise ValueError("An image operation is a dict with a 'name'.")
    name = op.get("name")
    if name not in OPS:
        raise ValueError(f"Unknown image operation {name!r}; known ones: {', '.join(OPS)}.")
    params = {k: v for k, v in op.items() if k != "name"}
    unknown = sorted(set(params) - set(_PARAMS[name]), key=str)
    if unknown:
        allowed = ", ".join(_PARAMS[name]) or "no settings"
        raise ValueError(f"{name.capitalize()} takes {allowed}, not {', '.join(map(str, unknown))}.")
    return {"name": name, **_VALIDATORS[name](params)}


def apply(image: Image.Image, op: Mapping[str, Any]) -> Image.Image:
    """``image`` with ``op`` done to it: a new RGB picture. ``ValueError`` on bad params."""
    op = validate(op)
    rgb = _rgb(image)
    return _APPLIERS[op["name"]](rgb, op)


def describe(op: Mapping[str, Any]) -> str:
    """Short caption words for ``op``: "rotated 90° clockwise", "brightness +20%", ..."""
    op = validate(op)
    return _DESCRIBERS[op["name"]](op)


def resolve(op: Mapping[str, Any], size: Size) -> dict:
    """``validate(op)`` with what depends on the picture's ``size`` (width, height) made explicit.

    A resize becomes ``{"name": "resize", "width": w, "height": h}`` (and its size limits
    are checked), so the recorded node and its caption carry the real pixel size. Other
    ops come back as ``validate`` gives them.
    """
    op = validate(op)
    if op["name"] == "resize":
        width, height = _resize_target(op, size)
        return {"name": "resize", "width": width, "height": height}
    return op


# --------------------------------------------------------------------------- helpers


def _rgb(image: Image.Image) -> Image.Image:
    """An RGB picture: transparency laid on white, other modes converted."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "RGBa", "La", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return image.convert("RGB")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be a number.")
    if isinstance(value, str):
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{what} must be a number, not {value!r}.") from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number.") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number.")
    return number


def _tidy(number: float, places: int = 4) -> int | float:
    """Rounded to ``places``; an int when whole."""
    number = round(number, places) + 0.0  # + 0.0 turns -0.0 into 0.0
    return int(number) if number == int(number) else number


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _side(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise ValueError(f"{what} must be a whole number of pixels.")
    return _check_side(int(number))


def _check_side(pixels: int) -> int:
    if pixels > MAX_SIDE:
        raise ValueError(f"Resize to at most {MAX_SIDE} px a side.")
    if pixels < MIN_SIDE:
        raise ValueError(f"Resize to at least {MIN_SIDE} px a side.")
    return pixels


def _percent(factor: float) -> str:
    pct = (factor - 1.0) * 100.0
    text = f"{pct:.0f}" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}"
    if text in ("-0", "0", "-0.0", "0.0"):
        text = "0"
    return f"{text}%" if text.startswith("-") else f"+{text}%"


# --------------------------------------------------------------------------- rotate


def _validate_rotate(params: dict) -> dict:
    if "degrees" not in params:
        raise ValueError("Say how far to rotate, in degrees (positive turns clockwise).")
    degrees = _number(params["degrees"], "The rotation angle") % 360.0
    if degrees > 180.0:
        degrees -= 360.0
    degrees = _tidy(degrees, 2)
    if degrees == 0:
        raise ValueError("That rotation leaves the picture as it is; give an angle that is not a whole turn.")
    crop_to_fit = params.get("crop_to_fit", True)
    if not isinstance(crop_to_fit, bool):
        raise ValueError("crop_to_fit must be true or false.")
    return {"degrees": degrees, "crop_to_fit": crop_to_fit}


_QUARTER_TURNS = {
    90: Image.Transpose.ROTATE_270,  # Pillow's ROTATE_n turn counter-clockwise
    -90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
}


def inscribed_size(width: int, height: int, degrees: float) -> Tuple[float, float]:
    """The largest axis-aligned rectangle (w, h) inside a width×height one turned by ``degrees``."""
    angle = math.radians(degrees)
    sin_a, cos_a = abs(math.sin(angle)), abs(math.cos(angle))
    long_side, short_side = (width, height) if width >= height else (height, width)
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        # Half constrained: two corners of the box touch the long sides.
        x = 0.5 * short_side
        w, h = (x / sin_a, x / cos_a) if width >= height else (x / cos_a, x / sin_a)
    else:
        # Fully constrained: all four corners touch the rotated rectangle's sides.
        cos_2a = cos_a * cos_a - sin_a * sin_a
        w = (width * cos_a - height * sin_a) / cos_2a
        h = (height * cos_a - width * sin_a) / cos_2a
    return w, h


def _apply_rotate(image: Image.Image, op: dict) -> Image.Image:
    degrees = op["degrees"]
    if degrees in _QUARTER_TURNS:
        return image.transpose(_QUARTER_TURNS[degrees])
    rotated = image.rotate(-degrees, resample=Image.Resampling.BICUBIC, expand=True,
                           fillcolor=ROTATE_FILL)
    if not op["crop_to_fit"]:
        return rotated
    w, h = inscribed_size(image.width, image.height, degrees)
    # Pillow's expand keeps the picture's centre at the canvas centre.
    cx, cy = rotated.width / 2.0, rotated.height / 2.0
    left = math.ceil(cx - w / 2.0) + ROTATE_MARGIN
    top = math.ceil(cy - h / 2.0) + ROTATE_MARGIN
    right = math.floor(cx + w / 2.0) - ROTATE_MARGIN
    bottom = math.floor(cy + h / 2.0) - ROTATE_MARGIN
    if right <= left or bottom <= top:
        raise ValueError("The picture is too thin to rotate by that angle and still fill the frame.")
    return rotated.crop((left, top, right, bottom))


def _describe_rotate(op: dict) -> str:
    degrees = op["degrees"]
    if degrees == 180:
        return "rotated 180°"
    way = "clockwise" if degrees > 0 else "counter-clockwise"
    text = f"rotated {_tidy(abs(degrees), 2)}° {way}"
    if degrees not in _QUARTER_TURNS and not op["crop_to_fit"]:
        text += ", corners filled white"
    return text


# --------------------------------------------------------------------------- flip


def _validate_flip(params: dict) -> dict:
    axis = params.get("axis", "horizontal")
    key = axis.strip().lower() if isinstance(axis, str) else None
    if key not in _AXIS_ALIASES:
        raise ValueError("Flip horizontally (left to right) or vertically (upside down).")
    return {"axis": _AXIS_ALIASES[key]}


def _apply_flip(image: Image.Image, op: dict) -> Image.Image:
    return ImageOps.mirror(image) if op["axis"] == "horizontal" else ImageOps.flip(image)


def _describe_flip(op: dict) -> str:
    return "flipped left to right" if op["axis"] == "horizontal" else "flipped upside down"


# --------------------------------------------------------------------------- crop


def _aspect_parts(value: Any) -> Tuple[float, float]:
    message = "Give the aspect ratio as width:height, like 16:9."
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "square":
            return 1.0, 1.0
        for sep in (":", "/", "x", "×"):
            if sep in text:
                a, _, b = text.partition(sep)
                break
        else:
            raise ValueError(message)
        try:
            return float(a), float(b)
        except ValueError:
            raise ValueError(message) from None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return _number(value[0], "The aspect width"), _number(value[1], "The aspect height")
    raise ValueError(message)


def _validate_crop(params: dict) -> dict:
    if ("aspect" in params) == ("keep" in params):
        raise ValueError("Crop either to an aspect ratio (like 16:9) or to one part (like the left half).")
    if "aspect" in params:
        if "fraction" in params:
            raise ValueError("A crop to an aspect ratio takes no fraction.")
        a, b = _aspect_parts(params["aspect"])
        if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
            raise ValueError("Both sides of an aspect ratio must be positive, like 16:9.")
        if not (1 / MAX_ASPECT <= a / b <= MAX_ASPECT):
            raise ValueError(f"Aspect ratios run from 1:{MAX_ASPECT} to {MAX_ASPECT}:1.")
        a, b = _tidy(a), _tidy(b)
        if isinstance(a, int) and isinstance(b, int):
            g = math.gcd(a, b)
            a, b = a // g, b // g
        return {"aspect": f"{a}:{b}"}
    keep = params["keep"]
    side = _SIDE_ALIASES.get(keep.strip().lower()) if isinstance(keep, str) else None
    if side is None:
        raise ValueError("Keep the left, right, top, bottom or center part.")
    fraction = _number(params.get("fraction", 0.5), "The part to keep")
    if not 0.0 < fraction < 1.0:
        raise ValueError("Keep a part between 0 and 1 of the picture, like 0.5 for half.")
    return {"keep": side, "fraction": fraction}


def crop_box(size: Size, op: Mapping[str, Any]) -> Tuple[int, int, int, int]:
    """The (left, top, right, bottom) box a crop op cuts from a picture of ``size``."""
    op = validate(op)
    if op["name"] != "crop":
        raise ValueError("crop_box takes a crop op.")
    width, height = size
    if "aspect" in op:
        a, b = (float(x) for x in op["aspect"].split(":"))
        ratio = a / b
        if width / height > ratio:
            new_w, new_h = max(1, min(width, _round_half_up(height * ratio))), height
        else:
            new_w, new_h = width, max(1, min(height, _round_half_up(width / ratio)))
        left, top = (width - new_w) // 2, (height - new_h) // 2
        return left, top, left + new_w, top + new_h
    side, f = op["keep"], op["fraction"]
    part_w = max(1, _round_half_up(width * f))
    part_h = max(1, _round_half_up(height * f))
    if side == "left":
        return 0, 0, part_w, height
    if side == "right":
        return width - part_w, 0, width, height
    if side == "top":
        return 0, 0, width, part_h
    if side == "bottom":
        return 0, height - part_h, width, height
    left, top = (width - part_w) // 2, (height - part_h) // 2
    return left, top, left + part_w, top + part_h


def _apply_crop(image: Image.Image, op: dict) -> Image.Image:
    box = crop_box(image.size, op)
    if box == (0, 0, image.width, image.height):
        return image.copy()
    return image.crop(box)


def _fraction_words(fraction: float) -> str:
    for exact, words in _FRACTION_WORDS.items():
        if abs(fraction - float(exact)) < 1e-3:
            return words
    return f"{_tidy(fraction * 100, 1)}%"


def _describe_crop(op: dict) -> str:
    if "aspect" in op:
        return "cropped to a square" if op["aspect"] == "1:1" else f"cropped to {op['aspect']}"
    side = "middle" if op["keep"] == "center" else op["keep"]
    return f"kept the {side} {_fraction_words(op['fraction'])}"


# --------------------------------------------------------------------------- resize


def _validate_resize(params: dict) -> dict:
    forms = [bool({"width", "height"} & set(params)), "scale" in params, "longest" in params]
    if sum(forms) != 1:
        raise ValueError("Resize to a width and/or height, by a scale, or by the long side: one of them.")
    if "scale" in params:
        scale = _number(params["scale"], "The scale")
        if scale <= 0:
            raise ValueError("Scale by a positive factor, like 0.5 for half the size.")
        if scale == 1:
            raise ValueError("Scaling by 1 leaves the picture as it is.")
        if scale > MAX_SIDE / MIN_SIDE:
            raise ValueError(f"Resize to at most {MAX_SIDE} px a side.")
        return {"scale": _tidy(scale, 6)}
    if "longest" in params:
        return {"longest": _side(params["longest"], "The long side")}
    out = {}
    if "width" in params:
        out["width"] = _side(params["width"], "The width")
    if "height" in params:
        out["height"] = _side(params["height"], "The height")
    return out


def _resize_target(op: dict, size: Size) -> Size:
    width, height = size
    if "scale" in op:
        new = (_round_half_up(width * op["scale"]), _round_half_up(height * op["scale"]))
    elif "longest" in op:
        n = op["longest"]
        new = (n, _round_half_up(height * n / width)) if width >= height else (
            _round_half_up(width * n / height), n)
    elif "width" in op and "height" in op:
        new = (op["width"], op["height"])
    elif "width" in op:
        new = (op["width"], _round_half_up(height * op["width"] / width))
    else:
        new = (_round_half_up(width * op["height"] / height), op["height"])
    if max(new) > MAX_SIDE:
        _check_side(max(new))
    _check_side(min(new))
    return new


def _apply_resize(image: Image.Image, op: dict) -> Image.Image:
    target = _resize_target(op, image.size)
    if target == image.size:
        return image.copy()
    return image.resize(target, Image.Resampling.LANCZOS)


def _describe_resize(op: dict) -> str:
    if "scale" in op:
        return f"resized to {_tidy(op['scale'] * 100, 1)}%"
    if "longest" in op:
        return f"resized to {op['longest']} px on the long side"
    if "width" in op and "height" in op:
        return f"resized to {op['width']}×{op['height']}"
    if "width" in op:
        return f"resized to {op['width']} px wide"
    return f"resized to {op['height']} px tall"


# --------------------------------------------------------------------------- colour


def _validate_plain(params: dict) -> dict:
    return {}


def _apply_grayscale(image: Image.Image, op: dict) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def _apply_sepia(image: Image.Image, op: dict) -> Image.Image:
    return image.convert("RGB", SEPIA_MATRIX)


_LABELS = {"brightness": "Brightness", "contrast": "Contrast", "saturation": "Saturation"}


def _validate_adjust(params: dict) -> dict:
    out = dict(NEUTRAL)
    for key in ("brightness", "contrast", "saturation"):
        if key in params:
            factor = _number(params[key], _LABELS[key])
            if not FACTOR_MIN <= factor <= FACTOR_MAX:
                raise ValueError(f"{_LABELS[key]} can change by -100% to +300%.")
            out[key] = float(round(factor, 4))
    if "warmth" in params:
        warmth = _number(params["warmth"], "Warmth")
        if not -1.0 <= warmth <= 1.0:
            raise ValueError("Warmth runs from -1 (cooler) to 1 (warmer).")
        out["warmth"] = float(round(warmth, 4)) + 0.0
    if out == NEUTRAL:
        raise ValueError("Say what to change: brightness, contrast, saturation or warmth.")
    return out


def warmth_tables(warmth: float) -> list:
    """The 768-entry ``Image.point`` table for ``warmth``: red and blue scaled, green kept."""
    red = 1.0 + WARMTH_GAIN * warmth
    blue = 1.0 - WARMTH_GAIN * warmth
    def table(gain: float) -> list:
        return [min(255, max(0, _round_half_up(i * gain))) for i in range(256)]
    return table(red) + list(range(256)) + table(blue)


_ENHANCERS = {
    "brightness": ImageEnhance.Brightness,
    "contrast": ImageEnhance.Contrast,
    "saturation": ImageEnhance.Color,
}


def _apply_adjust(image: Image.Image, op: dict) -> Image.Image:
    out = image
    for key in ADJUST_ORDER:
        value = op[key]
        if value == NEUTRAL[key]:
            continue
        if key == "warmth":
            out = out.point(warmth_tables(value))
        else:
            out = _ENHANCERS[key](out).enhance(value)
    return out.copy() if out is image else out


def _describe_adjust(op: dict) -> str:
    parts = [f"{key} {_percent(op[key])}" for key in ("brightness", "contrast", "saturation")
             if op[key] != NEUTRAL[key]]
    warmth = op["warmth"]
    if warmth:
        word = "warmer" if warmth > 0 else "cooler"
        size = abs(warmth)
        parts.append(f"a bit {word}" if size < 0.375 else f"much {word}" if size > 0.75 else word)
    return ", ".join(parts)


_VALIDATORS = {
    "rotate": _validate_rotate, "flip": _validate_flip, "crop": _validate_crop,
    "resize": _validate_resize, "grayscale": _validate_plain, "sepia": _validate_plain,
    "adjust": _validate_adjust,
}
_APPLIERS = {
    "rotate": _apply_rotate, "flip": _apply_flip, "crop": _apply_crop,
    "resize": _apply_resize, "grayscale": _apply_grayscale, "sepia": _apply_sepia,
    "adjust": _apply_adjust,
}
_DESCRIBERS = {
    "rotate": _describe_rotate, "flip": _describe_flip, "crop": _describe_crop,
    "resize": _describe_resize, "grayscale": lambda op: "black and white",
    "sepia": lambda op: "sepia", "adjust": _describe_adjust,
}
