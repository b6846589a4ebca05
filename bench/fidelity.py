"""Ten chained local edits on a drifting model, with and without the drift guard.

Owns the figures of the drift issue: a simulated model (``DriftingModel``) that does
each asked local edit and drifts the way Qwen-Image-Edit does (its ~1 MP grid, a
sub-pixel shift of 1-3 px, now and then a slight zoom, a slight blur, a small colour
cast, a little noise), and a chain of 10 edits in different places run twice: guard on
(``pipelines.fidelity.guard`` on each turn) and guard off (today: the output resized
back to the input's size and kept as is). Per turn it prints, for the areas never
edited: PSNR against the upload, the residual shift (phase correlation of 128 px
patches against the upload: median and worst patch), sharpness (mean gradient
magnitude against the upload's, 1.00 = as sharp); how many of the edits made so far
are still there, and how far the worst of them sits from where it was asked. Then the
goals as PASS/FAIL lines, and the guard's time per call at 1 MP (median of the chain)
and at 12 MP.

``run_chain(guard_on, turns, seed)`` is the chain step, one dict a turn; a later
version can drive the real service through it instead of calling the guard directly.

Run: .venv/bin/python bench/fidelity.py [--turns 10] [--seed 0] [--no-12mp]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from pipelines.fidelity import guard  # noqa: E402
from pipelines.sizes import VAE_AREA, pipeline_size  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "fixtures" / "coffee.png"
UPLOAD_SIZE = (1200, 800)
BAND = 24  # px around each edit box not counted as never edited (the guard's feather)
PATCH = 128
KEPT_LEVELS = 10  # mean abs difference (8-bit levels) to the painted object: still there

Box = Tuple[int, int, int, int]

GOALS = {"psnr_db": 38.0, "shift_px": 0.25, "sharpness": 0.98}


def upload() -> Image.Image:
    """The first picture: a real photo at about 1 MP."""
    return Image.open(PHOTO).convert("RGB").resize(UPLOAD_SIZE, Image.LANCZOS)


class DriftingModel:
    """Does the asked local edit and drifts like Qwen-Image-Edit.

    Turn ``k`` asks for a distinct object (a striped ellipse in its own colours) in the
    k-th box of a grid over the picture, visited in a shuffled order. The output is on
    the model's grid (multiples of 32, ~1 MP): the input with the object drawn in its
    place, resized to the grid, then moved by 1-3 px in a random direction (sub-pixel), on
    every third turn zoomed by 0.6-1.2 %, blurred (sigma 0.5-0.7 px), given a colour
    cast (gain 0.97-1.03, offset -4..4 per channel) and noise (sigma 1.5 levels).
    """

    def __init__(self, size: Tuple[int, int], seed: int = 0, turns: int = 10) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        W, H = size
        cols, rows = 4, 3
        cells = [(c, r) for r in range(rows) for c in range(cols)]
        order = self.rng.permutation(len(cells))
        side = int(min(W / cols, H / rows) * 0.55)
        self.boxes: List[Box] = []
        for k in range(turns):
            c, r = cells[order[k % len(cells)]]
            cw, ch = W / cols, H / rows
            x0 = int(c * cw + self.rng.uniform(0.05, 0.95) * (cw - side))
            y0 = int(r * ch + self.rng.uniform(0.05, 0.95) * (ch - side))
            self.boxes.append((x0, y0, x0 + side, y0 + side))
        self.colours = [
            tuple(int(v) for v in self.rng.integers(0, 256, 3)) for _ in range(turns)
        ]

    def paint(self, image: Image.Image, turn: int, box: Optional[Box] = None) -> Image.Image:
        """``image`` with turn ``turn``'s object drawn in ``box`` (default: its place)."""
        x0, y0, x1, y1 = box or self.boxes[turn]
        out = image.copy()
        d = ImageDraw.Draw(out)
        fill = self.colours[turn]
        stripe = tuple(255 - v for v in fill)
        lw = max(3, round((x1 - x0) / 24))
        d.ellipse((x0, y0, x1, y1), fill=fill, outline=(250, 240, 20), width=lw)
        step = max(9, round((x1 - x0) / 6))
        for x in range(int(x0 + step), int(x1 - step), step):
            d.line((x, y0 + step, x + step // 2, y1 - step), fill=stripe, width=lw)
        return out

    def object_mask(self, turn: int, shrink: int = 4) -> np.ndarray:
        """Where turn ``turn``'s object is, in the upload's pixels (edges left out)."""
        x0, y0, x1, y1 = self.boxes[turn]
        m = Image.new("1", self.size, 0)
        ImageDraw.Draw(m).ellipse((x0 + shrink, y0 + shrink, x1 - shrink, y1 - shrink), fill=1)
        return np.asarray(m)

    def edit(self, image: Image.Image, turn: int) -> Tuple[Image.Image, Box]:
        W, H = image.size
        grid = pipeline_size(W, H, VAE_AREA)
        # The asked edit, done as asked in the input's own pixels, then on the grid.
        canvas = self.paint(image, turn).resize(grid, Image.LANCZOS)
        rng = self.rng
        angle = rng.uniform(0, 2 * math.pi)
        mag = rng.uniform(1.0, 3.0)
        shift = (mag * math.cos(angle), mag * math.sin(angle))
        zoom = 1.0 + rng.uniform(0.006, 0.012) * rng.choice([-1, 1]) if turn % 3 == 2 else 1.0
        out = _move(canvas, shift, zoom)
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 0.7)))
        gain = rng.uniform(0.97, 1.03, 3).astype(np.float32)
        offset = rng.uniform(-4, 4, 3).astype(np.float32)
        a = np.asarray(out, np.float32) * gain + offset
        a += rng.normal(0, 1.5, a.shape).astype(np.float32)
        out = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
        return out, self.boxes[turn]


def _move(img: Image.Image, shift, zoom: float) -> Image.Image:
    """Content at p shows at c + zoom (p - c) + shift (edges repeated)."""
    w, h = img.size
    cx, cy = w / 2, h / 2
    ax = 1 / zoom
    bx = cx - (cx + shift[0]) / zoom
    by = cy - (cy + shift[1]) / zoom
    pad = 64
    a = np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    box = (bx + pad, by + pad, ax * w + bx + pad, ax * h + by + pad)
    return Image.fromarray(a).resize((w, h), Image.BICUBIC, box=box)


# --------------------------------------------------------------------------- figures


def never_edited(size, boxes: List[Box]) -> np.ndarray:
    W, H = size
    m = np.ones((H, W), bool)
    for x0, y0, x1, y1 in boxes:
        m[max(0, y0 - BAND) : y1 + BAND, max(0, x0 - BAND) : x1 + BAND] = False
    return m


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    d = a.astype(np.float64)[where] - b.astype(np.float64)[where]
    mse = float((d * d).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _grey(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def residual_shift(up: np.ndarray, cur: np.ndarray, where: np.ndarray) -> Tuple[float, float]:
    """Median and worst displacement (px) of 128 px patches lying in ``where``."""
    gu, gc = _grey(up), _grey(cur)
    H, W = where.shape
    mags = []
    for y in range(0, H - PATCH + 1, PATCH // 2):
        for x in range(0, W - PATCH + 1, PATCH // 2):
            if not where[y : y + PATCH, x : x + PATCH].all():
                continue
            a = gu[y : y + PATCH, x : x + PATCH]
            if a.std() < 4:  # flat: says nothing
                continue
            mags.append(math.hypot(*patch_shift(a, gc[y : y + PATCH, x : x + PATCH])))
    if not mags:
        return math.nan, math.nan
    return float(np.median(mags)), float(np.max(mags))


def patch_shift(a: np.ndarray, b: np.ndarray) -> Tuple[float, float]:
    """How far ``b`` is moved against ``a`` (same-size grey patches): windowed phase
    correlation, sub-pixel by a parabola through the peak."""
    if np.array_equal(a, b):
        return 0.0, 0.0
    h, w = a.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    lowpass = np.exp(-(fx**2 + fy**2) / (2 * 0.2**2))
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    r = fb * np.conj(fa)
    r /= np.abs(r) + 1e-9
    c = np.real(np.fft.ifft2(r * lowpass))
    py, px = np.unravel_index(int(np.argmax(c)), c.shape)
    dy = _parabola(c[(py - 1) % h, px], c[py, px], c[(py + 1) % h, px])
    dx = _parabola(c[py, (px - 1) % w], c[py, px], c[py, (px + 1) % w])
    return (px if px <= w // 2 else px - w) + dx, (py if py <= h // 2 else py - h) + dy


def edit_offset(model: "DriftingModel", up_img: Image.Image, cur: np.ndarray, done: int) -> float:
    """Worst displacement (px) of the objects made so far against where they were asked."""
    gc = _grey(cur)
    worst = 0.0
    for k in range(done):
        x0, y0, x1, y1 = model.boxes[k]
        want = _grey(np.asarray(model.paint(up_img, k)))[y0:y1, x0:x1]
        worst = max(worst, math.hypot(*patch_shift(want, gc[y0:y1, x0:x1])))
    return worst


def _parabola(a, b, c) -> float:
    d = a - 2 * b + c
    return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))


def sharpness(up: np.ndarray, cur: np.ndarray, where: np.ndarray) -> float:
    def grad(a):
        g = _grey(a)
        gx = np.zeros_like(g)
        gy = np.zeros_like(g)
        gx[:, 1:-1] = g[:, 2:] - g[:, :-2]
        gy[1:-1] = g[2:] - g[:-2]
        return np.hypot(gx, gy)[where].mean()

    return float(grad(cur) / grad(up))


def edits_kept(model: DriftingModel, up_img: Image.Image, cur_img: Image.Image, done: int) -> int:
    """How many of the first ``done`` objects are still there, as painted.

    An object is there when, over its inside, the picture is close to the object as
    painted on the upload and far from the upload: mean absolute difference to the
    painted object at most ``KEPT_LEVELS`` and under a quarter of the difference to
    the upload. Both sides are compared softened (a 3 px blur), so that where the
    model's grid put a stripe's edge half a pixel away does not count, a moved or
    washed-out object does.
    """
    soft = ImageFilter.GaussianBlur(3.0)
    up = np.asarray(up_img.filter(soft)).astype(np.int16)
    cur = np.asarray(cur_img.filter(soft)).astype(np.int16)
    kept = 0
    for k in range(done):
        want = np.asarray(model.paint(up_img, k).filter(soft)).astype(np.int16)
        m = model.object_mask(k)
        to_want = np.abs(cur[m] - want[m]).mean()
        to_up = np.abs(cur[m] - up[m]).mean()
        if to_want <= KEPT_LEVELS and to_want < to_up / 4:
            kept += 1
    return kept


# ----------------------------------------------------------------------------- chain


def run_chain(guard_on: bool, turns: int = 10, seed: int = 0) -> List[dict]:
    """``turns`` chained local edits from the upload; one row of figures per turn."""
    first = upload()
    model = DriftingModel(first.size, seed=seed, turns=turns)
    where = never_edited(first.size, model.boxes)
    up = np.asarray(first)
    current = first
    rows = []
    for turn in range(turns):
        output, _box = model.edit(current, turn)
        t0 = time.perf_counter()
        if guard_on:
            result = guard(current, output)
            current = result.image
            info = result.summary()
        else:
            current = output.resize(current.size, Image.LANCZOS)
            info = {}
        elapsed = time.perf_counter() - t0
        cur = np.asarray(current)
        med, worst = residual_shift(up, cur, where)
        rows.append(
            {
                "turn": turn + 1,
                "psnr_db": psnr(up, cur, where),
                "shift_med_px": med,
                "shift_max_px": worst,
                "sharpness": sharpness(up, cur, where),
                "kept": edits_kept(model, first, current, turn + 1),
                "edit_offset_px": edit_offset(model, first, cur, turn + 1),
                "asked": turn + 1,
                "seconds": elapsed,
                "guard": info,
            }
        )
    return rows


def time_12mp(repeats: int = 3) -> float:
    """Median seconds of one guard call on a 4000x3000 upload with a ~1 MP output."""
    rng = np.random.default_rng(3)
    base = Image.open(PHOTO).convert("RGB").resize((4000, 3000), Image.BICUBIC)
    grain = rng.integers(0, 25, (750, 1000), dtype=np.uint8)
    grain = np.asarray(Image.fromarray(grain).resize((4000, 3000), Image.BILINEAR), np.int16) - 12
    pixels = np.asarray(base, np.int16) + grain[..., None]
    big = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    model = DriftingModel(big.size, seed=7, turns=1)
    output, _ = model.edit(big, 0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        guard(big, output)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------- print


def _db(v: float) -> str:
    return "exact" if math.isinf(v) else f"{v:5.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-12mp", action="store_true", help="skip the 12 MP timing")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    on = run_chain(True, args.turns, args.seed)
    off = run_chain(False, args.turns, args.seed)

    print(f"upload {UPLOAD_SIZE[0]}x{UPLOAD_SIZE[1]} ({PHOTO.name}), model grid "
          f"{'x'.join(map(str, pipeline_size(*UPLOAD_SIZE, VAE_AREA)))}, {args.turns} local edits, seed {args.seed}")
    print("never-edited areas: PSNR vs upload (dB), residual shift px (median/worst patch), "
          "sharpness vs upload; edits still there, and the worst edit's offset from its place (px)")
    head = (f"{'turn':>4} | {'PSNR on':>7} {'off':>6} | {'shift on':>11} {'off':>11} | "
            f"{'sharp on':>8} {'off':>5} | {'kept on':>7} {'off':>5} | {'edit px on':>10} {'off':>5} | "
            "guard: changed shift   ms")
    print(head)
    print("-" * len(head))
    for a, b in zip(on, off):
        g = a["guard"]
        print(
            f"{a['turn']:>4} | {_db(a['psnr_db']):>7} {_db(b['psnr_db']):>6} | "
            f"{a['shift_med_px']:5.2f}/{a['shift_max_px']:<5.2f} {b['shift_med_px']:5.2f}/{b['shift_max_px']:<5.2f} | "
            f"{a['sharpness']:8.3f} {b['sharpness']:5.3f} | "
            f"{a['kept']:>3}/{a['asked']:<3} {b['kept']:>2}/{b['asked']:<2} | "
            f"{a['edit_offset_px']:10.2f} {b['edit_offset_px']:5.2f} | "
            f"{g['changed']:14.3f} {g['shift_px']:5.2f} {a['seconds'] * 1000:4.0f}"
        )
    last = on[-1]
    median_ms = statistics.median(r["seconds"] for r in on) * 1000
    print()
    goals = [
        ("untouched areas >= 38 dB after the last turn", last["psnr_db"] >= GOALS["psnr_db"],
         _db(last["psnr_db"]).strip() + (" dB" if not math.isinf(last["psnr_db"]) else "")),
        ("residual shift < 0.25 px (worst patch)", last["shift_max_px"] < GOALS["shift_px"],
         f"{last['shift_max_px']:.3f} px"),
        ("sharpness >= 0.98 of the upload's", last["sharpness"] >= GOALS["sharpness"],
         f"{last['sharpness']:.3f}"),
        ("every intended edit kept", all(r["kept"] == r["asked"] for r in on),
         f"{last['kept']}/{last['asked']}"),
    ]
    for name, ok, value in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    print(f"guard off, after the last turn: {_db(off[-1]['psnr_db']).strip()} dB, "
          f"shift {off[-1]['shift_max_px']:.2f} px, sharpness {off[-1]['sharpness']:.3f}, "
          f"{off[-1]['kept']}/{off[-1]['asked']} edits kept")
    print(f"guard time per call, {UPLOAD_SIZE[0]}x{UPLOAD_SIZE[1]}: median {median_ms:.0f} ms")
    if not args.no_12mp:
        print(f"guard time per call, 4000x3000 with a 1184x896 output: median {time_12mp() * 1000:.0f} ms")
    print(f"bench wall time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
