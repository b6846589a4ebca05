"""Words for exact whole-picture operations: a chat message in, an op dict (or None) out.

Owns the phrasings of the requests that ``pipelines/exact.py`` does better than the
edit model: rotate, flip, crop, resize, black and white, sepia, and brightness /
contrast / saturation / warmth. Pure text, no I/O and no imports from the rest of the
project; ``exact.validate`` checks the numbers and fills in defaults, so an
out-of-range request ("resize to 20000 wide") still parses and gets exact's clear
message instead of being handed to the model.

``parse`` matches only when the *whole* message is such a request about the whole
picture: "it", "this", "the image/picture/photo", "the whole picture", "everything",
or no object at all. A request that names a part ("make the background darker",
"rotate the car", "flip the sign") returns None and stays a model edit, as does
anything with a second request in it ("make it brighter and add a rainbow").

Before matching, the message is lower-cased, curly quotes and spaces tidied, end
punctuation dropped, polite openings ("please", "can you", "could you", "I'd like you
to", "just", ...) and endings ("please", "thanks", "for me") stripped.

Decisions on ambiguous phrasings:

* "rotate it" with no angle: 90° clockwise. "rotate right/left": ±90°. "rotate 270":
  kept as 270 (exact normalises it to -90, the same turn).
* "turn it upside down" rotates 180°; "flip it upside down" is a vertical flip.
  "turn"/"spin"/"tilt" need an angle or a direction ("turn it 90°", "turn it
  clockwise"), never just "turn around" (a model edit: "turn the car around").
* "crop the top third" (also "crop off", "cut off", "trim", "remove") *removes* that
  part, i.e. keeps the other two thirds; "crop to the top third" and "keep the top
  third" keep it. Removal needs an amount ("crop the top off" stays a model edit).
* "keep the left side/part" keeps half. "keep the middle third" keeps the middle
  third of both width and height.
* "crop to 800x600" crops to the 4:3 ratio (exact has no crop-to-pixel-size); "make
  it 800x600" / "resize to 800x600" resize. "make it 4x3" (both under 16) is a ratio.
* "resize to 1024" (no side named) sets the long side.
* "make it darker/brighter", also of "the whole picture", is a brightness change;
  "make it dark", "make it night" are not (model edits).
* "desaturate" lowers saturation like "less saturated"; "desaturate completely",
  "remove the colour" are black and white.
* "brighter colors" is left to the model; "warmer tones/colors" is warmth.
  "make it cooler" is warmth, "make it look cooler" is left to the model (style).
* Intensity: "a bit/slightly/a little" = small, plain = normal, "much/a lot/way" =
  large: brightness, contrast and saturation factors 1 ± 0.1 / 0.2 / 0.4, warmth
  ±0.25 / 0.5 / 1.0. "by 20%" sets the factor to 1.2 (or 0.8 going down); for warmth
  a percentage is of its full -1..1 range ("20% warmer" = 0.2).
* "it's too dark" means "brighter" (and so on for bright, warm, cold, flat, dull).
* "upscale" is not matched (a user may expect a super-resolution model, not Lanczos).
"""

from __future__ import annotations

import re
from fractions import Fraction
from math import gcd
from typing import Callable, Optional

# --------------------------------------------------------------------------- vocabulary

_PIC = r"(?:image|picture|pic|photo|photograph|shot|frame|thing)"
OBJ = (rf"(?:it|this|that|this one|that one|everything|the whole thing"
       rf"|(?:the|this|that|my)(?: (?:whole|entire|full))? {_PIC}|(?:whole|entire) {_PIC})")
_O = rf"(?: {OBJ})?"  # an optional object after a verb
_OF_OBJ = rf"(?: of {OBJ})?"

_POLITE_PREFIX = re.compile(
    r"^(?:please|pls|plz|kindly|(?:can|could|would|will) (?:you|u|we|ya)(?: please| just| maybe)?"
    r"|i(?:'d| would) like you to|i (?:want|need) you to|go ahead and|let's|lets|just|now|ok(?:ay)?"
    r"|alright|hey|hi|hello|oh|also|and then|and|then|so|maybe|try to|try and|thanks|thank you)\b[\s,.!:;-]*"
)
_POLITE_SUFFIX = re.compile(
    r"(?:[\s,]+(?:please|pls|plz|thanks|thank you|thx|ty|cheers|for me|if you can|if possible"
    r"|if you could|for me please))+$"
)
# "I want it brighter", "I'd like the image in black and white" read as "make it ...".
_WISH = re.compile(rf"^(?:i(?:'d| would) like|i (?:want|need)|(?:can|could) i (?:get|have)|give me) (?P<obj>{OBJ}) ")

_SMALL = (r"(?:a (?:little|tiny|wee) bit|a little|a bit|a tad|a touch|a smidge|a hair|slightly|somewhat"
          r"|just a (?:bit|little|touch|tad)|marginally|a bit more|a little more|little)")
_LARGE = (r"(?:much|a lot|lots|way|far|significantly|considerably|substantially|a great deal|dramatically"
          r"|a whole lot|very much|heavily|strongly|really|lot|way more|much more|a lot more)")
_PLAIN = r"(?:even|more|noticeably|some|somewhat more)"
_INTENSITY = rf"(?:{_SMALL}|{_LARGE}|{_PLAIN})"
_PCT = r"(?P<pct>\d+(?:\.\d+)?) ?(?:%|percent|per cent)"
_PCT2 = _PCT.replace("?P<pct>", "?P<pct2>")

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_ANGLE_WORDS = {
    "five": 5, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30, "forty five": 45,
    "forty-five": 45, "sixty": 60, "ninety": 90, "one eighty": 180, "one hundred eighty": 180,
    "one hundred and eighty": 180, "a hundred and eighty": 180, "two seventy": 270,
    "two hundred seventy": 270, "two hundred and seventy": 270,
}
_ANGLE = rf"(?:{_NUMBER}|{'|'.join(sorted(map(re.escape, _ANGLE_WORDS), key=len, reverse=True))})"
_UNIT = r"(?: ?°| ?degrees?| ?degs?\.?)"
_CW = r"(?:clockwise|clock-wise|cw|to the right|right)"
_CCW = r"(?:counter[- ]?clockwise|anti[- ]?clockwise|ccw|to the left|left)"
_DIR = rf"(?:{_CCW}|{_CW})"  # counter-clockwise first: "counterclockwise" contains "clockwise"

_FRACTIONS = {
    "half": Fraction(1, 2), "third": Fraction(1, 3), "two thirds": Fraction(2, 3),
    "quarter": Fraction(1, 4), "fourth": Fraction(1, 4), "three quarters": Fraction(3, 4),
    "three fourths": Fraction(3, 4), "fifth": Fraction(1, 5), "tenth": Fraction(1, 10),
}
_FRACTION = (r"(?P<frac>" + "|".join(sorted(_FRACTIONS, key=len, reverse=True))
             + r"|\d+(?:\.\d+)? ?(?:%|percent))")
_SIDES = {"left": "left", "right": "right", "top": "top", "bottom": "bottom", "upper": "top",
          "lower": "bottom", "center": "center", "centre": "center", "middle": "center"}
_OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}

_BW = (r"(?:black (?:and|&|n|'n') white|black-and-white|b ?& ?w|b/w|bw|gr[ae]y ?scale|gr[ae]y-scale"
       r"|monochrome|monochromatic)")
_SEPIA = r"(?:sepia(?: ?tone[ds]?| ?tint(?:ed)?| filter| effect| look| colou?rs?| version| style)?)"
_MAKE = r"(?:make|turn|convert|change|switch|render|set|put|have|do|get|give)"
_ASK = r"(?:give me|show me|i(?:'d| would) like|i (?:want|need)|(?:can|could) i (?:get|have|see))"

# Adjust vocabulary: each key's words going up and going down.
_ADJ_UP = {
    "brightness": r"(?:brighter|lighter|less dark)",
    "contrast": r"(?:more contrast(?:y)?|higher contrast|contrastier|punchier)",
    "saturation": (r"(?:more saturated|more saturation|more vivid|more vibrant|more colou?rful"
                   r"|more intense colou?rs)"),
    "warmth": r"(?:warmer(?: (?:tones?|colou?rs?|look|feel|light(?:ing)?|cast))?|less (?:cold|cool|blue))",
}
_ADJ_DOWN = {
    "brightness": r"(?:darker|dimmer|less bright)",
    "contrast": r"(?:less contrast(?:y)?|lower contrast|flatter|softer contrast)",
    "saturation": (r"(?:less saturated|less saturation|less vivid|less vibrant|less colou?rful"
                   r"|more muted|muted|duller)"),
    "warmth": r"(?:less warm|(?:cooler|colder)(?: (?:tones?|colou?rs?|look|feel|light(?:ing)?|cast))?)",
}
_NOUNS = {
    "brightness": r"(?:brightness|exposure|lightness)",
    "contrast": r"(?:contrast)",
    "saturation": r"(?:saturation|colou?r saturation|vibrance|vibrancy|colou?r intensity)",
    "warmth": r"(?:warmth|colou?r temperature|temperature)",
}
_VERB_UP = (r"(?:increase|raise|boost|up|bump up|bump|turn up|crank up|push|pump up|amp up|add|add more"
            r"|add some|add a bit of|add a little|bring up|enhance|more)")
_VERB_DOWN = r"(?:decrease|reduce|lower|drop|turn down|cut|tone down|dial down|lessen|bring down|less|remove some)"
_VERBS = {  # verb form: "brighten it up a bit", "warm it up", "desaturate"
    ("brightness", +1): r"(?:brighten|lighten)", ("brightness", -1): r"(?:darken|dim)",
    ("saturation", +1): r"(?:saturate)", ("saturation", -1): r"(?:desaturate|mute)",
    ("warmth", +1): r"(?:warm)", ("warmth", -1): r"(?:cool)",
}
_FACTOR_STEP = {"small": 0.1, "normal": 0.2, "large": 0.4}
_WARMTH_STEP = {"small": 0.25, "normal": 0.5, "large": 1.0}
_TOO = {  # "it's too dark" -> brightness up, ...
    "dark": ("brightness", +1), "dim": ("brightness", +1), "gloomy": ("brightness", +1),
    "bright": ("brightness", -1), "light": ("brightness", -1),
    "warm": ("warmth", -1), "yellow": ("warmth", -1), "orange": ("warmth", -1),
    "cold": ("warmth", +1), "cool": ("warmth", +1), "blue": ("warmth", +1),
    "saturated": ("saturation", -1), "colorful": ("saturation", -1), "colourful": ("saturation", -1),
    "dull": ("saturation", +1), "washed out": ("saturation", +1), "desaturated": ("saturation", +1),
    "flat": ("contrast", +1), "contrasty": ("contrast", -1), "harsh": ("contrast", -1),
}


# --------------------------------------------------------------------------- public API


def parse(text: str) -> Optional[dict]:
    """The exact op a whole-picture request asks for, or None (a model edit)."""
    if not isinstance(text, str):
        return None
    s = normalise(text)
    if not s:
        return None
    for parser in _PARSERS:
        op = parser(s)
        if op is not None:
            return op
    return None


def normalise(text: str) -> str:
    """Lower case, tidy quotes and spaces, no end punctuation, no politeness."""
    s = text.lower()
    for a, b in (("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'), ("−", "-"), ("–", "-"),
                 ("º", "°"), ("˚", "°"), ("\u00a0", " ")):
        s = s.replace(a, b)
    s = re.sub(r"\s+", " ", s).strip()
    previous = None
    while s != previous:
        previous = s
        s = s.strip(" \"'`")
        s = re.sub(r"[\s.!?…;:,]+$", "", s)
        s = _POLITE_SUFFIX.sub("", s)
        s = _POLITE_PREFIX.sub("", s)
    m = _WISH.match(s)
    if m:
        s = f"make {m.group('obj')} " + s[m.end():]
    return s


# --------------------------------------------------------------------------- helpers


def _full(pattern: str, s: str) -> Optional[re.Match]:
    return re.fullmatch(pattern, s)


def _num(text: str) -> int | float:
    value = float(text)
    return int(value) if value == int(value) else value


def _tidy(value: float) -> int | float:
    value = round(value, 4) + 0.0
    return int(value) if value == int(value) else value


def _fraction(word: str) -> Fraction:
    if word in _FRACTIONS:
        return _FRACTIONS[word]
    number = re.match(r"\d+(?:\.\d+)?", word).group(0)
    return Fraction(number) / 100


def _intensity(words: Optional[str]) -> str:
    if not words:
        return "normal"
    if _full(_SMALL, words):
        return "small"
    if _full(_LARGE, words):
        return "large"
    return "normal"


# --------------------------------------------------------------------------- rotate


def _angle(text: str) -> int | float:
    return _ANGLE_WORDS[text] if text in _ANGLE_WORDS else _num(text)


def _rotate(s: str) -> Optional[dict]:
    if _full(rf"(?:turn|rotate|put|make|spin|set|have){_O} (?:upside[- ]down|on its head)"
             rf"|(?:rotate|turn|spin){_O} (?:by )?(?:a |one )?half(?: a)? turn"
             r"|upside[- ]down", s):
        return {"name": "rotate", "degrees": 180}
    m = _full(rf"(?:rotate|turn|spin){_O} (?:by )?(?:a |one )?quarter(?: of a)?(?: turn)?(?: (?P<dir>{_DIR}))?", s)
    if m:
        return {"name": "rotate", "degrees": -90 if _is_ccw(m.group("dir")) else 90}
    # "rotate it 90 degrees clockwise", "rotate by -5°", "turn it 45° to the left",
    # "rotate it clockwise by 90 degrees", "rotate left 90", "tilt it 3 degrees left".
    m = (_full(rf"(?P<verb>rotate|turn|spin|tilt){_O}(?: (?P<dir1>{_DIR}))?(?: by| through| to)? "
               rf"(?P<deg>{_ANGLE})(?P<unit>{_UNIT})?(?: (?P<dir2>{_DIR}))?{_O}(?P<fit> without cropping)?", s))
    if m:
        degrees = _angle(m.group("deg"))
        direction = m.group("dir1") or m.group("dir2")
        if m.group("dir1") and m.group("dir2"):
            return None
        if _is_ccw(direction):
            degrees = -degrees
        op = {"name": "rotate", "degrees": degrees}
        if m.group("fit"):
            op["crop_to_fit"] = False
        return op
    # No angle: "rotate right", "rotate it counterclockwise", "turn it clockwise", "rotate it".
    m = _full(rf"(?P<verb>rotate|turn|spin){_O}(?: (?P<dir>{_DIR}))?", s)
    if m:
        verb, direction = m.group("verb"), m.group("dir")
        if verb != "rotate":
            # "turn left" alone is too easily about a subject; need an object or "clockwise".
            if not direction or (not re.search(r"clockwise|cw", direction) and not _has_object(s, verb, direction)):
                return None
        return {"name": "rotate", "degrees": -90 if _is_ccw(direction) else 90}
    return None


def _has_object(s: str, verb: str, direction: str) -> bool:
    middle = s[len(verb):len(s) - len(direction)].strip()
    return bool(middle)


def _is_ccw(direction: Optional[str]) -> bool:
    return bool(direction) and bool(_full(_CCW, direction))


# --------------------------------------------------------------------------- flip


_AXIS_H = r"(?:horizontally|horizontal|left to right|right to left|left-right|left/right|side to side|sideways)"
_AXIS_V = r"(?:vertically|vertical|upside[- ]down|top to bottom|bottom to top|top-bottom|up-down|upside down)"


def _flip(s: str) -> Optional[dict]:
    m = _full(rf"(?:flip|mirror|reflect){_O}(?: over| around)?(?: (?P<axis>{_AXIS_H}|{_AXIS_V}))?", s)
    if not m:
        m = _full(rf"(?:(?:make|do|give me|create) )?(?:{OBJ} )?(?:into )?(?:an? )?(?P<axis>horizontal|vertical)? ?"
                  rf"(?:flip|mirror(?: image)?|mirrored version)(?: of it| of {OBJ})?", s)
        if not m:
            return None
    axis = m.group("axis")
    vertical = bool(axis) and bool(_full(_AXIS_V, axis))
    return {"name": "flip", "axis": "vertical" if vertical else "horizontal"}


# --------------------------------------------------------------------------- crop


_RATIO = r"(?P<a>\d+(?:\.\d+)?) ?(?::|/|x|×| by ) ?(?P<b>\d+(?:\.\d+)?)"
_RATIO_COLON = r"(?P<a>\d+(?:\.\d+)?) ?(?::|/| by ) ?(?P<b>\d+(?:\.\d+)?)"
_RATIO_TAIL = r"(?: (?:aspect(?: ratio)?|ratio|format|crop|frame|shape))?"
_CROP = r"(?:crop|cut|trim)"


def _aspect(a: str, b: str) -> str:
    x, y = _num(a), _num(b)
    if isinstance(x, int) and isinstance(y, int) and x and y:
        g = gcd(x, y)
        x, y = x // g, y // g
    return f"{x}:{y}"


def _crop(s: str) -> Optional[dict]:
    shape = r"(?:square|widescreen)"
    noun = r"(?: (?:aspect(?: ratio)?|ratio|format|crop|frame|shape|image|picture|photo))?"
    if (_full(rf"(?:{_CROP}|make|turn|change|set){_O}(?: (?:to|into|as|in))?(?: an?)? {shape}{noun}", s)
            or _full(r"(?:an? )?(?:square|widescreen) crop(?: it)?", s)):
        return {"name": "crop", "aspect": "16:9" if "widescreen" in s else "1:1"}
    m = (_full(rf"{_CROP}{_O}(?: (?:to|into|as|at|in))?(?: an?)? {_RATIO}{_RATIO_TAIL}", s)
         or _full(rf"(?:make|turn|change|set){_O}(?: (?:to|into))?(?: an?)? {_RATIO_COLON}{_RATIO_TAIL}", s)
         or _full(rf"(?:change|set|make) the (?:aspect ratio|aspect|ratio|format){_OF_OBJ} (?:to |into )?{_RATIO}", s)
         or _full(rf"(?:an? )?{_RATIO} crop(?: it)?", s)
         or _full(rf"(?:aspect ratio|aspect) (?:of |to )?{_RATIO}", s))
    if m:
        return {"name": "crop", "aspect": _aspect(m.group("a"), m.group("b"))}
    # Keep a part: "keep the left half", "crop to the top third", "keep only the middle".
    sides = "|".join(_SIDES)
    m = _full(rf"(?:keep|keep only|only keep|leave only|just keep|(?:{_CROP}){_O}(?: down)? to|(?:{_CROP}) down to"
              rf"|(?:{_CROP}) it so only) (?:only )?the (?P<side>{sides})"
              rf"(?: (?:{_FRACTION}|(?P<part>side|part|portion|section|bit)))?{_OF_OBJ}(?: is left| remains)?", s)
    if m:
        if not (m.group("frac") or m.group("part")) and m.group("side") not in ("center", "centre", "middle"):
            return None
        fraction = _fraction(m.group("frac")) if m.group("frac") else Fraction(1, 2)
        return {"name": "crop", "keep": _SIDES[m.group("side")], "fraction": float(fraction)}
    # Remove a part: "crop the top third", "cut off the left quarter", "remove the bottom 10%".
    m = (_full(rf"(?:crop|cut|trim|chop|slice)(?: off| away| out)? the (?P<side>left|right|top|bottom|upper|lower) "
               rf"{_FRACTION}{_OF_OBJ}(?: off| away)?", s)
         or _full(rf"(?:remove|delete|drop|get rid of|lose) the (?P<side>left|right|top|bottom|upper|lower) "
                  rf"{_FRACTION}{_OF_OBJ}", s))
    if m:
        removed = _fraction(m.group("frac"))
        if not 0 < removed < 1:
            return None
        side = _OPPOSITE[_SIDES[m.group("side")]]
        return {"name": "crop", "keep": side, "fraction": float(1 - removed)}
    return None


# --------------------------------------------------------------------------- resize


_PX = r"(?: ?(?:px|pixels?))?"
_RESIZE = r"(?:resize|rescale|scale|size|downscale|downsize|shrink|enlarge)"
_UPDOWN = r"(?: down| up)?"


def _resize(s: str) -> Optional[dict]:
    # Width or height: "resize to 1024 wide", "make it 768 pixels tall", "resize to a width of 1024".
    m = _full(rf"(?:{_RESIZE}|make){_O}{_UPDOWN}(?: to)?(?: be)? (?P<n>\d+){_PX} "
              r"(?P<dim>wide|in width|across|tall|high|in height)", s)
    if not m:
        m = _full(rf"(?:{_RESIZE}{_O}{_UPDOWN} to (?:an? |the )?|(?:set|change|make) the )(?P<dim>width|height)"
                  rf"(?: of{_O})?(?: to| of)? (?P<n>\d+){_PX}", s)
    if m:
        key = "width" if m.group("dim") in ("wide", "in width", "across", "width") else "height"
        return {"name": "resize", key: int(m.group("n"))}
    # Both: "resize to 800x600", "make it 1024 by 768 pixels".
    m = _full(rf"(?P<verb>{_RESIZE}|make|change){_O}{_UPDOWN}(?: to)?(?: be)? "
              rf"(?P<w>\d+){_PX} ?(?:x|×|by|\*) ?(?P<h>\d+){_PX}", s)
    if m:
        w, h = int(m.group("w")), int(m.group("h"))
        if m.group("verb") in ("make", "change") and min(w, h) < 16:
            return {"name": "crop", "aspect": _aspect(m.group("w"), m.group("h"))}
        return {"name": "resize", "width": w, "height": h}
    # Long side: "resize to 1024", "scale it down to 2048 px on the long side".
    m = _full(rf"{_RESIZE}{_O}{_UPDOWN} to (?P<n>\d+){_PX}"
              r"(?: (?:on|along|for|at) the (?:long(?:est)?|large(?:st)?|big(?:gest)?|longer|larger)"
              r" (?:side|edge|dimension))?", s)
    if m:
        return {"name": "resize", "longest": int(m.group("n"))}
    # Percentages: "scale it to 50%", "shrink it by 25%", "make it 50% smaller".
    m = _full(rf"(?P<verb>{_RESIZE}|reduce|make|reduce the size of|change the size of){_O}(?P<dir>{_UPDOWN})"
              rf"(?: (?P<prep>to|by))? (?P<pct>\d+(?:\.\d+)?) ?(?:%|percent)"
              r"(?: of (?:the |its )?(?:original |current )?size)?", s)
    if m:
        p = float(m.group("pct")) / 100
        verb, direction, prep = m.group("verb"), (m.group("dir") or "").strip(), m.group("prep")
        shrinking = verb in ("shrink", "reduce", "downscale", "downsize", "reduce the size of")
        if prep == "by" and (direction == "down" or shrinking):
            scale = 1 - p
        elif prep == "by" and (direction == "up" or verb == "enlarge"):
            scale = 1 + p
        elif verb == "make" and not prep:
            scale = p  # "make it 50%"
        else:
            scale = p
        return {"name": "resize", "scale": _tidy(scale)}
    m = _full(rf"(?:make{_O} )?(?P<pct>\d+(?:\.\d+)?) ?(?:%|percent) (?P<way>smaller|bigger|larger)", s)
    if m:
        p = float(m.group("pct")) / 100
        return {"name": "resize", "scale": _tidy(1 - p if m.group("way") == "smaller" else 1 + p)}
    # Factors: "scale it by 0.5", "scale 2x", "resize by a factor of 2".
    m = _full(rf"(?P<verb>{_RESIZE}){_O}(?P<dir>{_UPDOWN})(?P<by> by)?(?: a factor of)? "
              r"(?P<f>\d+(?:\.\d+)?) ?(?P<x>x|times)?", s)
    if m and (m.group("x") or m.group("by")):
        factor = float(m.group("f"))
        shrinking = m.group("dir") == " down" or m.group("verb") in ("shrink", "downscale", "downsize")
        if shrinking and factor > 1:
            factor = 1 / factor  # "shrink it by 2x", "scale down by 4"
        return {"name": "resize", "scale": _tidy(factor)}
    # Words: "half the size", "make it smaller by half", "double the size".
    size = r"(?:size|resolution|dimensions)"
    half = (rf"(?:make{_O} |resize{_O} to |scale{_O}(?: down)? to |shrink{_O} to |reduce{_O} to )?"
            rf"half (?:the|its) {size}"
            rf"|(?:make{_O} )?half[- ]size|halve (?:the {size}(?: of {OBJ})?|{OBJ})(?: in size)?"
            rf"|(?:make{_O} )?smaller by (?:half|50%|a half)"
            rf"|(?:shrink|reduce|scale|resize|downscale|downsize){_O}(?: down)? by (?:half|a half)"
            rf"|(?:shrink|cut|reduce){_O}(?: size)? in half|(?:cut|reduce) the size(?: of {OBJ})?(?: in| by) half"
            rf"|(?:make{_O} )?2x smaller|(?:make{_O} )?twice as small")
    if _full(half, s):
        return {"name": "resize", "scale": 0.5}
    double = (rf"(?:make{_O} )?(?:twice|double) (?:the|its) {size}"
              rf"|double (?:the {size}(?: of {OBJ})?|{OBJ} in size)"
              rf"|(?:make{_O} )?(?:twice as (?:big|large)|2x (?:bigger|larger)|double[- ]size)")
    if _full(double, s):
        return {"name": "resize", "scale": 2}
    quarter = rf"(?:make{_O} )?(?:a )?quarter (?:of )?(?:the|its) size"
    if _full(quarter, s):
        return {"name": "resize", "scale": 0.25}
    return None


# --------------------------------------------------------------------------- black and white, sepia


def _grayscale(s: str) -> Optional[dict]:
    lead = rf"(?:(?:{_MAKE}|apply|add|use|{_ASK}){_O}(?: look)?(?: (?:in|into|to|as))? )?"
    tail = (r"(?: (?:version|photo|image|picture|filter|mode|effect|conversion|look|style|only|instead))?"
            rf"(?: (?:of|for|to|on) {OBJ})?")
    if (_full(rf"{lead}(?:an? )?{_BW}{tail}", s)
            or _full(rf"(?:remove|drop|strip|take out|take away|get rid of|drain) (?:all )?(?:the |of the )?"
                     rf"colou?rs?(?: (?:from|of|in) {OBJ})?", s)
            or _full(rf"(?:desaturate|decolou?ri[sz]e){_O} (?:completely|fully|entirely|totally|all the way)"
                     rf"|(?:completely|fully|entirely|totally) desaturate{_O}", s)
            or _full(rf"(?:{_MAKE}{_O} )?(?:no|without) colou?rs?", s)):
        return {"name": "grayscale"}
    return None


def _sepia(s: str) -> Optional[dict]:
    lead = rf"(?:(?:{_MAKE}|apply|add|use|{_ASK}){_O}(?: look)?(?: (?:in|into|to|as))? )?"
    if _full(rf"{lead}(?:an? )?{_SEPIA}(?: (?:to|on|for) {OBJ})?", s):
        return {"name": "sepia"}
    return None


# --------------------------------------------------------------------------- adjust


_LEAD = (rf"(?:(?:make|get|have|render|turn|let) {OBJ} (?:look |appear |be |seem )?"
         r"|(?:make|turn) the colou?rs (?:look )?)")


def _adjust(s: str) -> Optional[dict]:
    m = _full(rf"(?:{OBJ}(?:'s|s| is| looks| seems| feels| came out| is looking| got)? |it's |its |that's |this is )?"
              rf"(?:(?P<int>{_INTENSITY}) )?too (?P<adj>{'|'.join(_TOO)})", s)
    if m:
        key, sign = _TOO[m.group("adj")]
        return {"name": "adjust", key: _value(key, sign, _intensity(m.group("int")), None)}
    if re.search(r"\blooks? cooler\b", s):
        return None  # "make it look cooler" is as likely about style as about colour
    colours_lead = bool(re.match(r"(?:make|turn) the colou?rs ", s))
    clauses = re.split(r"\s*,\s*(?:and |but |then |plus )?|\s+(?:and|but|plus|with|while)\s+", s)
    op: dict = {"name": "adjust"}
    for i, clause in enumerate(clauses):
        clause = clause.strip()
        if i > 0 and clause == "":
            return None
        if i > 0:
            clause = _POLITE_PREFIX.sub("", clause)
        clause = re.sub(rf"^{_LEAD}", "", clause, count=1)
        parsed = _adjust_clause(clause)
        if parsed is None:
            return None
        key, value = parsed
        if key in op:
            return None
        if colours_lead and key not in ("saturation", "warmth"):
            return None  # "make the colours brighter" is not clearly brightness
        op[key] = value
    return op if len(op) > 1 else None


def _value(key: str, sign: int, intensity: str, pct: Optional[str]) -> float:
    if key == "warmth":
        step = float(pct) / 100 if pct else _WARMTH_STEP[intensity]
        return _tidy(sign * step)
    step = float(pct) / 100 if pct else _FACTOR_STEP[intensity]
    return _tidy(1 + sign * step)


def _adjust_clause(c: str) -> Optional[tuple]:
    after = rf"(?: (?:by )?(?:{_PCT2}|(?P<int2>{_INTENSITY})))?"
    for sign, table in ((+1, _ADJ_UP), (-1, _ADJ_DOWN)):
        for key, words in table.items():
            # "a bit brighter", "20% brighter", "brighter by 20%", "much more contrast".
            m = _full(rf"(?:(?:{_PCT}|(?P<int>{_INTENSITY})) )?{words}{after}{_O}", c)
            if m:
                if m.group("int") and m.group("int2"):
                    return None
                pct = m.group("pct") or m.group("pct2")
                return key, _value(key, sign, _intensity(m.group("int") or m.group("int2")), pct)
    for sign, verbs in ((+1, _VERB_UP), (-1, _VERB_DOWN)):
        for key, noun in _NOUNS.items():
            # "increase the brightness by 20%", "a bit more contrast", "boost saturation a lot".
            m = _full(rf"(?:(?P<int>{_INTENSITY}) )?{verbs} (?:(?P<int3>{_INTENSITY}) )?"
                      rf"(?:the |some |a bit of |a little )?{noun}(?: (?:of|in|on) {OBJ})?{after}", c)
            if m:
                intensity = m.group("int") or m.group("int3") or m.group("int2")
                return key, _value(key, sign, _intensity(intensity), m.group("pct2"))
    for key, noun in _NOUNS.items():
        # "brightness +20%", "contrast up a bit", "+20% brightness", "saturation -10%".
        m = (_full(rf"{noun} (?P<s>[-+]) ?(?P<pct>\d+(?:\.\d+)?) ?(?:%|percent)", c)
             or _full(rf"(?P<s>[-+]) ?(?P<pct>\d+(?:\.\d+)?) ?(?:%|percent) {noun}", c))
        if m:
            return key, _value(key, -1 if m.group("s") == "-" else +1, "normal", m.group("pct"))
        m = _full(rf"{noun} (?P<way>up|down){after}", c)
        if m:
            sign = +1 if m.group("way") == "up" else -1
            return key, _value(key, sign, _intensity(m.group("int2")), m.group("pct2"))
    for (key, sign), verb in _VERBS.items():
        # "brighten it up a bit", "darken the image slightly", "warm it up", "desaturate".
        m = _full(rf"(?:(?P<int>{_INTENSITY}) )?{verb}{_O}(?: (?:up|down))?{_O}{after}", c)
        if m:
            if key == "warmth" and not re.search(r"\b(?:up|down)\b", c) and not re.search(OBJ, c):
                return None  # bare "warm"/"cool" is too short to be sure of
            return key, _value(key, sign, _intensity(m.group("int") or m.group("int2")), m.group("pct2"))
    return None


_PARSERS: tuple[Callable[[str], Optional[dict]], ...] = (
    _rotate, _flip, _grayscale, _sepia, _crop, _resize, _adjust,
)
