"""assistant/op_words.py: which messages are exact whole-picture operations, and which op."""

from __future__ import annotations

import pytest

from assistant.op_words import normalise, parse
from pipelines import exact


def rot(degrees, **kw):
    return {"name": "rotate", "degrees": degrees, **kw}


def flip(axis="horizontal"):
    return {"name": "flip", "axis": axis}


def aspect(ratio):
    return {"name": "crop", "aspect": ratio}


def keep(side, fraction):
    return {"name": "crop", "keep": side, "fraction": fraction}


def resize(**kw):
    return {"name": "resize", **kw}


def adjust(**kw):
    return {"name": "adjust", **kw}


GRAY = {"name": "grayscale"}
SEPIA = {"name": "sepia"}

MUST_PARSE = [
    # rotate
    ("rotate it 90 degrees", rot(90)),
    ("rotate right", rot(90)),
    ("rotate left", rot(-90)),
    ("rotate 180", rot(180)),
    ("turn it upside down", rot(180)),
    ("rotate by 15°", rot(15)),
    ("rotate it -5 degrees", rot(-5)),
    ("Could you rotate the photo 90° clockwise, please?", rot(90)),
    ("rotate it counterclockwise", rot(-90)),
    ("rotate it 90 degrees counter-clockwise", rot(-90)),
    ("rotate 90 degrees to the left", rot(-90)),
    ("rotate left 90 degrees", rot(-90)),
    ("rotate left by 45 degrees", rot(-45)),
    ("rotate it clockwise by 90 degrees", rot(90)),
    ("rotate the whole picture by 90", rot(90)),
    ("rotate it ninety degrees", rot(90)),
    ("rotate it a quarter turn", rot(90)),
    ("rotate it half a turn", rot(180)),
    ("rotate 270", rot(270)),
    ("rotate 1.5 degrees", rot(1.5)),
    ("turn it 45 degrees", rot(45)),
    ("turn it to the right", rot(90)),
    ("turn it clockwise", rot(90)),
    ("tilt it 3 degrees to the right", rot(3)),
    ("rotate 15 degrees without cropping", rot(15, crop_to_fit=False)),
    ("rotate", rot(90)),
    ("Rotate the image 90°.", rot(90)),
    # flip
    ("flip it", flip()),
    ("flip horizontally", flip()),
    ("mirror the image", flip()),
    ("mirror it", flip()),
    ("flip vertically", flip("vertical")),
    ("flip it upside down", flip("vertical")),
    ("please flip the photo vertically", flip("vertical")),
    ("flip the picture left to right", flip()),
    ("make a mirror image", flip()),
    ("horizontal flip", flip()),
    # crop to a ratio
    ("crop it to a square", aspect("1:1")),
    ("crop to 16:9", aspect("16:9")),
    ("make it 4:3", aspect("4:3")),
    ("make it square", aspect("1:1")),
    ("make it a square", aspect("1:1")),
    ("make the photo 16:9", aspect("16:9")),
    ("square crop", aspect("1:1")),
    ("crop to widescreen", aspect("16:9")),
    ("change the aspect ratio to 16:9", aspect("16:9")),
    ("crop the image to 3:2", aspect("3:2")),
    ("crop to 2.39:1", aspect("2.39:1")),
    ("crop to 800x600", aspect("4:3")),
    ("make it 4x3", aspect("4:3")),
    # crop to a part
    ("keep the left half", keep("left", 0.5)),
    ("keep only the right side", keep("right", 0.5)),
    ("keep the middle third", keep("center", 1 / 3)),
    ("crop to the top third", keep("top", 1 / 3)),
    ("crop it to the top half of the image", keep("top", 0.5)),
    ("crop to the left two thirds", keep("left", 2 / 3)),
    ("crop the top third", keep("bottom", 2 / 3)),
    ("crop off the right third", keep("left", 2 / 3)),
    ("cut off the bottom quarter", keep("top", 0.75)),
    ("remove the left 10%", keep("right", 0.9)),
    # resize
    ("resize to 1024 wide", resize(width=1024)),
    ("resize to 800x600", resize(width=800, height=600)),
    ("make it 1024x768", resize(width=1024, height=768)),
    ("make it 768 pixels tall", resize(height=768)),
    ("resize to a width of 1024", resize(width=1024)),
    ("set the width to 800", resize(width=800)),
    ("resize to 1024", resize(longest=1024)),
    ("resize it to 2048 px on the long side", resize(longest=2048)),
    ("half the size", resize(scale=0.5)),
    ("make it smaller by half", resize(scale=0.5)),
    ("halve the size", resize(scale=0.5)),
    ("scale it to 50%", resize(scale=0.5)),
    ("make it 50% smaller", resize(scale=0.5)),
    ("shrink it by 25%", resize(scale=0.75)),
    ("scale it by 0.5", resize(scale=0.5)),
    ("scale 2x", resize(scale=2)),
    ("downscale by 2", resize(scale=0.5)),
    ("double the size", resize(scale=2)),
    # black and white, sepia
    ("make it black and white", GRAY),
    ("black and white", GRAY),
    ("grayscale", GRAY),
    ("greyscale please", GRAY),
    ("b&w", GRAY),
    ("monochrome", GRAY),
    ("convert to grayscale", GRAY),
    ("turn it into black and white", GRAY),
    ("give me a black and white version", GRAY),
    ("I'd like a black and white version", GRAY),
    ("remove the color", GRAY),
    ("desaturate it completely", GRAY),
    ("sepia", SEPIA),
    ("make it sepia", SEPIA),
    ("make it look sepia", SEPIA),
    ("apply a sepia filter", SEPIA),
    ("give it a sepia tone", SEPIA),
    ("can I get it in sepia", SEPIA),
    # brightness, contrast, saturation, warmth
    ("make it brighter", adjust(brightness=1.2)),
    ("brighter", adjust(brightness=1.2)),
    ("a bit brighter", adjust(brightness=1.1)),
    ("could you please make it a little bit brighter?", adjust(brightness=1.1)),
    ("much darker", adjust(brightness=0.6)),
    ("darken it", adjust(brightness=0.8)),
    ("darker please", adjust(brightness=0.8)),
    ("thanks, make it brighter", adjust(brightness=1.2)),
    ("make the whole picture darker", adjust(brightness=0.8)),
    ("brighten it up a bit", adjust(brightness=1.1)),
    ("increase brightness by 20%", adjust(brightness=1.2)),
    ("20% brighter", adjust(brightness=1.2)),
    ("brighter by 20%", adjust(brightness=1.2)),
    ("brightness +20%", adjust(brightness=1.2)),
    ("more brightness", adjust(brightness=1.2)),
    ("lower the exposure", adjust(brightness=0.8)),
    ("I want it brighter", adjust(brightness=1.2)),
    ("it's too dark", adjust(brightness=1.2)),
    ("way too dark", adjust(brightness=1.4)),
    ("more contrast", adjust(contrast=1.2)),
    ("a bit more contrast", adjust(contrast=1.1)),
    ("less contrast", adjust(contrast=0.8)),
    ("increase the contrast a lot", adjust(contrast=1.4)),
    ("add some contrast", adjust(contrast=1.2)),
    ("contrast up a bit", adjust(contrast=1.1)),
    ("contrast -10%", adjust(contrast=0.9)),
    ("it looks too flat", adjust(contrast=1.2)),
    ("less saturated", adjust(saturation=0.8)),
    ("more saturated", adjust(saturation=1.2)),
    ("more vivid", adjust(saturation=1.2)),
    ("desaturate", adjust(saturation=0.8)),
    ("boost the saturation", adjust(saturation=1.2)),
    ("reduce saturation by 50%", adjust(saturation=0.5)),
    ("make the colours more vivid", adjust(saturation=1.2)),
    ("warmer", adjust(warmth=0.5)),
    ("make it warmer", adjust(warmth=0.5)),
    ("cooler", adjust(warmth=-0.5)),
    ("a little cooler", adjust(warmth=-0.25)),
    ("warm it up", adjust(warmth=0.5)),
    ("cool it down a little", adjust(warmth=-0.25)),
    ("make the colors warmer", adjust(warmth=0.5)),
    ("a bit too warm", adjust(warmth=-0.25)),
    ("less warm", adjust(warmth=-0.5)),
    ("make it cooler", adjust(warmth=-0.5)),
    ("make it a little darker and a lot warmer", adjust(brightness=0.9, warmth=1)),
    ("make it brighter and warmer", adjust(brightness=1.2, warmth=0.5)),
    ("make the picture warmer and less saturated", adjust(warmth=0.5, saturation=0.8)),
    ("make it a bit brighter, more contrast and warmer", adjust(brightness=1.1, contrast=1.2, warmth=0.5)),
]

MUST_STAY_MODEL_EDITS = [
    "make the background darker",
    "rotate the car",
    "flip the sign",
    "make the sky brighter",
    "crop out the person",
    "make her hair black and white",
    "make it night",
    "make it look like a watercolor",
    "brighter colors on the flowers",
    "rotate the camera angle",
    "turn the car around",
    "mirror his pose",
    "make the shirt warmer colors",
    "resize the dog",
    "make it dark",
    "turn left",
    "turn around",
    "make it smaller",
    "make it bigger",
    "crop it",
    "crop the top off",
    "make it brighter and add a rainbow",
    "make it black and white and brighter",
    "rotate it 90 degrees and make it brighter",
    "warm",
    "make the colors brighter",
    "brighter colors",
    "make him smile",
    "make the car red",
    "flip the pancake",
    "rotate his head",
    "make the lights warmer",
    "the sky is too dark",
    "add a sepia photo frame to the wall",
    "make it look old",
    "turn it into a painting",
    "make it look like night",
    "zoom in",
    "remove the background",
    "make the dog bigger",
    "upscale it",
    "mirror the text on the sign",
    "make the shadows darker",
    "increase the size of the logo",
    "make it pop",
    "black and white cat",
    "make everything blue",
    "darker eyes",
    "make it look cooler",
    "make it warmer, like a sunset",
    "make it 16:9 and extend the sky",
    "make it square by adding sky",
    "rotate it 90 degrees so he faces left",
    "rotate the horizon 2 degrees",
    "black and white photo of a dog",
    "brighten the face",
    "straighten it",
    "",
    "   ",
    "please",
]


@pytest.mark.parametrize("text, op", MUST_PARSE, ids=[t for t, _ in MUST_PARSE])
def test_whole_picture_requests_parse(text, op):
    assert parse(text) == op


@pytest.mark.parametrize("text", MUST_STAY_MODEL_EDITS)
def test_requests_about_a_part_stay_model_edits(text):
    assert parse(text) is None


@pytest.mark.parametrize("text, op", MUST_PARSE, ids=[t for t, _ in MUST_PARSE])
def test_parsed_ops_are_valid(text, op):
    normalised = exact.validate(parse(text))
    assert normalised["name"] == op["name"]
    assert exact.describe(normalised)


def test_the_lists_are_long_enough():
    assert len(MUST_PARSE) >= 40
    assert len(MUST_STAY_MODEL_EDITS) >= 25
    assert {op["name"] for _, op in MUST_PARSE} == set(exact.OPS)


@pytest.mark.parametrize("text, op", [
    # Out of range: still an exact op, so exact's message reaches the user.
    ("resize to 20000 wide", resize(width=20000)),
    ("rotate 360", rot(360)),
])
def test_out_of_range_requests_still_parse(text, op):
    assert parse(text) == op
    with pytest.raises(ValueError):
        exact.validate(op)


@pytest.mark.parametrize("text, expected", [
    ("Please, could you make it brighter?", "make it brighter"),
    ("  Rotate   it  90° ,  please!! ", "rotate it 90°"),
    ("Can you just flip it, thanks.", "flip it"),
    ("I’d like it warmer", "make it warmer"),
    ("rotate −5º", "rotate -5°"),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_not_text():
    assert parse(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("text, words", [
    ("rotate left", "rotated 90° counter-clockwise"),
    ("turn it upside down", "rotated 180°"),
    ("mirror the image", "flipped left to right"),
    ("crop to 16:9", "cropped to 16:9"),
    ("keep the left half", "kept the left half"),
    ("crop the top third", "kept the bottom two thirds"),
    ("make it black and white", "black and white"),
    ("make it brighter", "brightness +20%"),
    ("a bit more contrast and less saturated", "contrast +10%, saturation -20%"),
    ("make it warmer", "warmer"),
])
def test_caption_words_from_phrases(text, words):
    assert exact.describe(parse(text)) == words
