"""Draw the chat's brand images: the source of the PNGs in public/.

Makes, from code only (Pillow and a system font):

- public/logo_light.png, public/logo_dark.png: the mark and the words "Qwen Edit
  Chat", for a light and a dark page. Chainlit serves them at /logo?theme=light|dark
  and shows them on the welcome screen (200 px wide) and the sign-in page (150 px).
- public/favicon.png: the mark alone, 64 px. Chainlit serves the first
  public/favicon.* at /favicon, so keep only one favicon file there.
- public/avatars/qwen_edit_chat.png: the assistant's round avatar. Chainlit asks for
  /avatars/<author>; the author is the config's [UI] name, "Qwen Edit Chat", which it
  lowers and joins with "_" to find public/avatars/qwen_edit_chat.*.

The mark is a speech bubble holding a picture (mountains and a sun): you edit a
picture by talking. public/theme.json (written by hand) sets Chainlit's accent to
ACCENT_LIGHT and VIOLET, in HSL, to match. Everything is drawn SCALE times larger and shrunk, which
smooths the edges.

Re-make them (after changing a colour, say) with:

    .venv/bin/python tools/make_brand.py

The output is deterministic for a given Pillow version and font file.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / "public"
SCALE = 4  # supersampling factor
LOGO_HEIGHT = 120  # px, the logo files' height

# Colours (RGB).
VIOLET = (139, 92, 246)      # gradient start, top left
INDIGO = (67, 56, 202)       # gradient end, bottom right
SUN = (251, 191, 36)         # amber
WHITE = (255, 255, 255)
INK_LIGHT = (24, 24, 27)     # the words on a light page
INK_DARK = (250, 250, 250)   # the words on a dark page
ACCENT_LIGHT = (109, 40, 217)  # "Edit Chat" on a light page
ACCENT_DARK = (167, 139, 250)  # "Edit Chat" on a dark page

FONT_CANDIDATES = [  # the first one found is used
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSansCondensed-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
]


def _font(size: int) -> ImageFont.FreeTypeFont:
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    raise SystemExit("make_brand: no bold sans font found; install fonts-dejavu-core "
                     "or add a path to FONT_CANDIDATES")


def _gradient(size: int) -> Image.Image:
    """A square, VIOLET at the top left to INDIGO at the bottom right."""
    small = Image.new("RGB", (64, 64))
    px = small.load()
    for y in range(64):
        for x in range(64):
            t = (x + y) / 126
            px[x, y] = tuple(round(a + (b - a) * t) for a, b in zip(VIOLET, INDIGO))
    return small.resize((size, size), Image.BICUBIC)


def _glyph(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float]) -> None:
    """The picture inside the mark: a sun and two mountains, in box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0

    def p(u: float, v: float) -> tuple[float, float]:
        return (x0 + u * w, y0 + v * h)

    sx, sy = p(0.74, 0.22)
    r = 0.13 * w
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=SUN)
    draw.polygon([p(0.0, 1.0), p(0.36, 0.34), p(0.58, 0.70), p(0.70, 0.52),
                  p(1.0, 1.0)], fill=WHITE)


def mark(size: int, *, round_avatar: bool = False) -> Image.Image:
    """The mark, size x size, transparent around it.

    The default is the speech bubble (its tail at the bottom left); round_avatar gives
    a full disc instead, for the avatar that Chainlit crops to a circle anyway.
    """
    S = size * SCALE
    shape = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(shape)
    if round_avatar:
        d.ellipse((0, 0, S - 1, S - 1), fill=255)
        glyph_box = (0.24 * S, 0.26 * S, 0.76 * S, 0.70 * S)
    else:
        # Bubble body, with room below for the tail.
        d.rounded_rectangle((0.02 * S, 0.04 * S, 0.98 * S, 0.84 * S), radius=0.22 * S, fill=255)
        d.polygon([(0.16 * S, 0.70 * S), (0.14 * S, 0.98 * S), (0.44 * S, 0.80 * S)], fill=255)
        glyph_box = (0.20 * S, 0.18 * S, 0.80 * S, 0.66 * S)
    img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    img.paste(_gradient(S), (0, 0), shape)
    # The picture, clipped to a rounded frame so the mountains' feet are square.
    pic = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    _glyph(ImageDraw.Draw(pic), glyph_box)
    frame = Image.new("L", (S, S), 0)
    gx0, gy0, gx1, gy1 = glyph_box
    ImageDraw.Draw(frame).rectangle((gx0 - S, gy0 - S, gx1 + S, gy1), fill=255)
    img.alpha_composite(Image.composite(pic, Image.new("RGBA", (S, S), (0, 0, 0, 0)), frame))
    return img.resize((size, size), Image.LANCZOS)


def logo(ink: tuple[int, int, int], accent: tuple[int, int, int]) -> Image.Image:
    """The mark and the words, LOGO_HEIGHT px high, trimmed on the right.

    Laid out on a 200 px high canvas, then shrunk: the page shows the logo about 43 px
    high, so LOGO_HEIGHT stays sharp on a 2x screen and the file small.
    """
    W, H = 1000, 200
    S = SCALE
    img = Image.new("RGBA", (W * S, H * S), (0, 0, 0, 0))
    m = mark(H - 24)
    img.alpha_composite(m.resize((m.width * S, m.height * S), Image.LANCZOS), (4 * S, 12 * S))
    d = ImageDraw.Draw(img)
    font = _font(92 * S)
    x = (H + 12) * S
    # Baseline below the middle by half the cap height (70 px), so the words sit
    # centred on the mark.
    y = (H // 2 + 35) * S
    first, rest = "Qwen", " Edit Chat"
    d.text((x, y), first, font=font, fill=ink, anchor="ls")
    x += d.textlength(first, font=font)
    d.text((x, y), rest, font=font, fill=accent, anchor="ls")
    img = img.resize((W, H), Image.LANCZOS)
    bbox = img.getbbox()  # trim the empty right end, keep the height
    img = img.crop((0, 0, min(W, bbox[2] + 8), H))
    return img.resize((round(img.width * LOGO_HEIGHT / H), LOGO_HEIGHT), Image.LANCZOS)


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}  {img.width}x{img.height}  {path.stat().st_size} bytes")


def main() -> None:
    _save(logo(INK_LIGHT, ACCENT_LIGHT), PUBLIC / "logo_light.png")
    _save(logo(INK_DARK, ACCENT_DARK), PUBLIC / "logo_dark.png")
    _save(mark(64), PUBLIC / "favicon.png")
    _save(mark(128, round_avatar=True), PUBLIC / "avatars" / "qwen_edit_chat.png")


if __name__ == "__main__":
    main()
